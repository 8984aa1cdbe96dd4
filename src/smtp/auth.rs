//! SASL client mechanisms for SMTP AUTH (RFC 4954), without any I/O.
//!
//! The SMTP session picks a mechanism with [`choose`] from what the server
//! announced in its EHLO reply, then drives one [`Exchange`]: it sends the
//! line from [`Exchange::start`], answers every `334` challenge with
//! [`Exchange::respond`] and, on the final `235`, asks
//! [`Exchange::finish_with`] (or [`Exchange::finish`]) whether the server
//! proved itself where the mechanism can (SCRAM). Any error means: cancel
//! with `*` (if a challenge is pending) and treat the authentication as
//! failed.
//!
//! Supported mechanisms, strongest first for a password: SCRAM-SHA-256
//! (RFC 5802, RFC 7677; no channel binding), CRAM-MD5 (RFC 2195), PLAIN
//! (RFC 4616) and LOGIN (draft-murchison-sasl-login); for an OAuth2 access
//! token, XOAUTH2 (Google's and Microsoft's bearer-token mechanism).
//!
//! # Policy on unencrypted connections
//! PLAIN and LOGIN send the password itself, so they are used only over TLS
//! or when the `INSECURE` key allows it. SCRAM-SHA-256 and CRAM-MD5 never send
//! the password, but a passive eavesdropper who records the exchange can
//! still run an offline dictionary attack against it (and CRAM-MD5's
//! HMAC-MD5 is cheap to attack). We therefore treat them exactly like PLAIN:
//! without TLS they, too, need `INSECURE`. Without TLS and without
//! `INSECURE`, [`choose`] returns `None` and the client does not
//! authenticate at all.
//!
//! # SCRAM and SASLprep
//! RFC 5802 asks for the password to be prepared with SASLprep (RFC 4013).
//! We do not implement the Unicode tables: only passwords made of printable
//! ASCII (space to `~`), for which SASLprep changes nothing, are accepted.
//! For any other password [`choose`] skips SCRAM-SHA-256 and an
//! [`Exchange`] for it fails ([`Exchange::check`], [`Exchange::respond`]).
//! The login is sent as it is (UTF-8, with `,` and `=` escaped), assuming it
//! is already in normal form.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// The most PBKDF2 iterations a SCRAM server may ask for: a hostile server
/// must not make us spin for minutes (RFC 7677 asks for at least 4096).
pub const MAX_SCRAM_ITERATIONS: u32 = 10_000_000;

/// How many random bytes make a SCRAM client nonce (base64-encoded).
const NONCE_BYTES: usize = 24;

/// A SASL mechanism we can run as a client.
///
/// The order of the variants is the order of preference for a password
/// (XOAUTH2 is only ever used for a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// `LOGIN`: username and password, each in answer to a prompt.
    Login,
    /// `PLAIN` (RFC 4616): username and password in one initial response.
    Plain,
    /// `CRAM-MD5` (RFC 2195): an HMAC-MD5 of the server's challenge.
    CramMd5,
    /// `SCRAM-SHA-256` (RFC 7677): salted challenge-response with mutual
    /// authentication, without channel binding.
    ScramSha256,
    /// `XOAUTH2`: an OAuth2 bearer token.
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, in order of preference (weakest first).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Login,
        Mechanism::Plain,
        Mechanism::CramMd5,
        Mechanism::ScramSha256,
        Mechanism::XOAuth2,
    ];

    /// The name in the `AUTH` command and the EHLO reply, e.g. `"CRAM-MD5"`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Login => "LOGIN",
            Mechanism::Plain => "PLAIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The bit smtp-proto sets in `EhloResponse::auth_mechanisms` when the
    /// server offers this mechanism.
    pub fn capability(self) -> u64 {
        match self {
            Mechanism::Login => smtp_proto::AUTH_LOGIN,
            Mechanism::Plain => smtp_proto::AUTH_PLAIN,
            Mechanism::CramMd5 => smtp_proto::AUTH_CRAM_MD5,
            Mechanism::ScramSha256 => smtp_proto::AUTH_SCRAM_SHA_256,
            Mechanism::XOAuth2 => smtp_proto::AUTH_XOAUTH2,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The secret: a password, or an OAuth2 access token (for XOAUTH2 only).
///
/// `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password, for LOGIN, PLAIN, CRAM-MD5 and SCRAM-SHA-256.
    Password(String),
    /// An OAuth2 access token, for XOAUTH2 only.
    OAuthToken(String),
}

impl Secret {
    fn expose(&self) -> &str {
        match self {
            Secret::Password(s) | Secret::OAuthToken(s) => s,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::OAuthToken(_) => f.write_str("OAuthToken(<redacted>)"),
        }
    }
}

/// Who we authenticate as, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The SASL authentication identity (user name).
    pub login: String,
    /// The password or token.
    pub secret: Secret,
}

/// Why an exchange failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The server's challenge could not be understood (bad base64, a
    /// malformed SCRAM message, a SCRAM nonce that is not ours...).
    #[error("bad challenge from the server: {0}")]
    BadChallenge(String),
    /// The SCRAM server signature was wrong or missing: the server does not
    /// know the password, so it is not the server we meant to talk to.
    #[error("the server failed to prove that it knows the password (SCRAM server signature)")]
    ServerSignature,
    /// Anything else out of place: a challenge where none was expected, an
    /// error the server reported, credentials that do not fit the mechanism.
    #[error("{0}")]
    Unexpected(String),
}

/// The strongest mechanism both sides support, or `None` if we must not
/// authenticate.
///
/// `offered` is smtp-proto's `auth_mechanisms` bit set from the EHLO reply,
/// `encrypted` whether TLS is up and `insecure` whether the `INSECURE` key
/// allows secrets over a plain connection.
///
/// For a password the order is SCRAM-SHA-256 > CRAM-MD5 > PLAIN > LOGIN;
/// SCRAM-SHA-256 is skipped for a password we cannot use with it (not
/// printable ASCII, see the module docs). PLAIN and LOGIN send the password
/// in the clear, and SCRAM and CRAM-MD5 expose it to offline guessing by an
/// eavesdropper, so without TLS every mechanism needs `insecure` (a
/// deliberate decision, see the module docs). An OAuth2 token is only ever
/// used with XOAUTH2, under the same condition, and XOAUTH2 never with a
/// password.
pub fn choose(offered: u64, secret: &Secret, encrypted: bool, insecure: bool) -> Option<Mechanism> {
    if !(encrypted || insecure) {
        return None;
    }
    let has = |m: Mechanism| offered & m.capability() != 0;
    match secret {
        Secret::OAuthToken(_) => Some(Mechanism::XOAuth2).filter(|&m| has(m)),
        Secret::Password(pw) => [
            Mechanism::ScramSha256,
            Mechanism::CramMd5,
            Mechanism::Plain,
            Mechanism::Login,
        ]
        .into_iter()
        .filter(|&m| m != Mechanism::ScramSha256 || scram_password_ok(pw))
        .find(|&m| has(m)),
    }
}

/// Whether SASLprep leaves `pw` as it is and we can therefore use it with
/// SCRAM: printable ASCII only.
fn scram_password_ok(pw: &str) -> bool {
    pw.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Where an exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `start` has not been called.
    New,
    /// LOGIN: the next challenge asks for the user name.
    LoginUser,
    /// LOGIN: the next challenge asks for the password.
    LoginPassword,
    /// PLAIN: the initial response carried everything.
    PlainSent,
    /// CRAM-MD5: waiting for the challenge.
    CramChallenge,
    /// SCRAM: client-first sent, waiting for server-first.
    ScramServerFirst {
        /// The client-first message without the GS2 header.
        client_first_bare: String,
    },
    /// SCRAM: client-final sent, waiting for server-final (`v=`).
    ScramServerFinal {
        /// The ServerSignature the server must send.
        expected: [u8; 32],
    },
    /// XOAUTH2: the initial response is out.
    XOAuth2Sent,
    /// XOAUTH2: the server answered with an error report (JSON).
    XOAuth2Error(String),
    /// Nothing more is expected; the exchange went well so far (LOGIN and
    /// CRAM-MD5 answered, SCRAM server signature verified).
    Done,
    /// The exchange failed with this error.
    Failed(AuthError),
}

/// One SASL exchange as a state machine: [`start`](Exchange::start), then
/// [`respond`](Exchange::respond) to each `334` challenge, then
/// [`finish_with`](Exchange::finish_with) on `235`.
///
/// Credentials that do not fit the mechanism (a token for anything but
/// XOAUTH2, a password for XOAUTH2, a NUL in a PLAIN login or password, a
/// `\x01` in an XOAUTH2 login or token, a password SCRAM cannot use, no
/// random nonce) make the exchange unusable: `start` still returns a bare
/// `AUTH` line, but `respond` and `finish` fail. [`check`](Exchange::check)
/// tells beforehand, to save the round trip.
pub struct Exchange {
    mech: Mechanism,
    login: String,
    secret: Secret,
    /// The SCRAM client nonce (printable ASCII without `,`).
    nonce: String,
    /// Why this exchange cannot succeed, if it cannot.
    unusable: Option<String>,
    step: Step,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("mech", &self.mech)
            .field("login", &self.login)
            .field("unusable", &self.unusable)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// An exchange for `mech` with `creds`; SCRAM gets a random client
    /// nonce (24 bytes from the system's random source, base64-encoded).
    pub fn new(mech: Mechanism, creds: &Credentials) -> Exchange {
        let mut bytes = [0u8; NONCE_BYTES];
        match getrandom::fill(&mut bytes) {
            Ok(()) => Exchange::with_nonce(mech, creds, &STANDARD.encode(bytes)),
            Err(e) => {
                let mut x = Exchange::with_nonce(mech, creds, "unused");
                if mech == Mechanism::ScramSha256 {
                    x.unusable = Some(format!("no random SCRAM nonce: {e}"));
                }
                x
            }
        }
    }

    /// An exchange with a fixed SCRAM client `nonce` (ignored by the other
    /// mechanisms), for tests against published vectors. The nonce must be
    /// printable ASCII without `,`; otherwise a SCRAM exchange is unusable.
    pub fn with_nonce(mech: Mechanism, creds: &Credentials, nonce: &str) -> Exchange {
        let mut x = Exchange {
            mech,
            login: creds.login.clone(),
            secret: creds.secret.clone(),
            nonce: nonce.to_string(),
            unusable: None,
            step: Step::New,
        };
        x.unusable = x.why_unusable();
        x
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    fn why_unusable(&self) -> Option<String> {
        let secret = self.secret.expose();
        match (self.mech, &self.secret) {
            (Mechanism::XOAuth2, Secret::Password(_)) => {
                return Some("XOAUTH2 needs an OAuth2 access token, not a password".into());
            }
            (m, Secret::OAuthToken(_)) if m != Mechanism::XOAuth2 => {
                return Some(format!("an OAuth2 token cannot be used with {m}"));
            }
            _ => {}
        }
        match self.mech {
            Mechanism::Plain if self.login.contains('\0') || secret.contains('\0') => {
                Some("PLAIN cannot carry a NUL in the login or password".into())
            }
            Mechanism::XOAuth2 if self.login.contains('\x01') || secret.contains('\x01') => {
                Some("XOAUTH2 cannot carry a \\x01 in the login or token".into())
            }
            Mechanism::ScramSha256 if !scram_password_ok(secret) => Some(
                "SCRAM-SHA-256 is only supported for passwords of printable ASCII \
                 (no SASLprep)"
                    .into(),
            ),
            Mechanism::ScramSha256
                if self.nonce.is_empty()
                    || !self
                        .nonce
                        .bytes()
                        .all(|b| (0x21..0x7f).contains(&b) && b != b',') =>
            {
                Some("bad SCRAM client nonce".into())
            }
            _ => None,
        }
    }

    /// Whether the credentials fit the mechanism; if not, the exchange is
    /// bound to fail and the reason is in the error.
    pub fn check(&self) -> Result<(), AuthError> {
        match &self.unusable {
            Some(why) => Err(AuthError::Unexpected(why.clone())),
            None => Ok(()),
        }
    }

    /// The AUTH command line, with an initial response where the mechanism
    /// has one (PLAIN, XOAUTH2, SCRAM client-first), e.g.
    /// `"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"`, `"AUTH LOGIN\r\n"`,
    /// `"AUTH CRAM-MD5\r\n"`.
    ///
    /// Calling it again starts the exchange over (with the same nonce).
    pub fn start(&mut self) -> String {
        let name = self.mech.name();
        if self.unusable.is_some() {
            self.step = Step::New;
            return format!("AUTH {name}\r\n");
        }
        let secret = self.secret.expose();
        let (step, initial) = match self.mech {
            Mechanism::Login => (Step::LoginUser, None),
            Mechanism::Plain => (Step::PlainSent, Some(format!("\0{}\0{secret}", self.login))),
            Mechanism::CramMd5 => (Step::CramChallenge, None),
            Mechanism::ScramSha256 => {
                let bare = format!("n={},r={}", sasl_name(&self.login), self.nonce);
                let first = format!("n,,{bare}");
                (
                    Step::ScramServerFirst {
                        client_first_bare: bare,
                    },
                    Some(first),
                )
            }
            Mechanism::XOAuth2 => (
                Step::XOAuth2Sent,
                Some(format!(
                    "user={}\x01auth=Bearer {secret}\x01\x01",
                    self.login
                )),
            ),
        };
        self.step = step;
        match initial {
            Some(ir) => format!("AUTH {name} {}\r\n", STANDARD.encode(ir)),
            None => format!("AUTH {name}\r\n"),
        }
    }

    /// The answer to a `334` challenge (`challenge` = the base64 text after
    /// `"334 "`, as sent by the server), as a full line ending in `"\r\n"`.
    ///
    /// LOGIN answers the first challenge with the login and the second with
    /// the password, whatever the prompts say. A SCRAM server-final (`v=`)
    /// sent as a challenge is verified here: the answer is an empty line,
    /// or [`AuthError::ServerSignature`] if the signature is wrong (then
    /// cancel with `*`; [`finish`](Exchange::finish) fails as well). An
    /// XOAUTH2 challenge is the server's error report: the answer is an
    /// empty line and `finish` fails with the report.
    pub fn respond(&mut self, challenge: &str) -> Result<String, AuthError> {
        if let Some(why) = &self.unusable {
            return Err(AuthError::Unexpected(why.clone()));
        }
        let challenge = challenge.trim();
        let step = std::mem::replace(&mut self.step, Step::New);
        let (step, answer) = self.advance(step, challenge);
        self.step = match &answer {
            Err(e) => Step::Failed(e.clone()),
            Ok(_) => step,
        };
        answer.map(|bytes| format!("{}\r\n", STANDARD.encode(bytes)))
    }

    /// One step of the state machine: the next step and the raw answer.
    fn advance(&self, step: Step, challenge: &str) -> (Step, Result<Vec<u8>, AuthError>) {
        let secret = self.secret.expose();
        match step {
            Step::LoginUser => (Step::LoginPassword, Ok(self.login.as_bytes().to_vec())),
            Step::LoginPassword => (Step::Done, Ok(secret.as_bytes().to_vec())),
            Step::CramChallenge => {
                let answer = decode(challenge).and_then(|c| {
                    if c.is_empty() {
                        return Err(AuthError::BadChallenge("empty CRAM-MD5 challenge".into()));
                    }
                    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(secret.as_bytes())
                        .expect("HMAC takes keys of any length");
                    mac.update(&c);
                    let digest = mac.finalize().into_bytes();
                    Ok(format!("{} {}", self.login, hex(&digest)).into_bytes())
                });
                (Step::Done, answer)
            }
            Step::ScramServerFirst { client_first_bare } => {
                match self.client_final(&client_first_bare, challenge) {
                    Ok((expected, message)) => (
                        Step::ScramServerFinal { expected },
                        Ok(message.into_bytes()),
                    ),
                    Err(e) => (Step::New, Err(e)),
                }
            }
            Step::ScramServerFinal { expected } => {
                let result = decode_text(challenge).and_then(|t| server_final(&expected, &t));
                (Step::Done, result.map(|()| Vec::new()))
            }
            Step::XOAuth2Sent => {
                // The report is JSON in base64; keep whatever we got.
                let report = match decode(challenge) {
                    Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
                    Err(_) => challenge.to_string(),
                };
                (Step::XOAuth2Error(report), Ok(Vec::new()))
            }
            Step::Failed(e) => (Step::New, Err(e)),
            Step::New => (
                Step::New,
                Err(AuthError::Unexpected(format!(
                    "a {} challenge before the AUTH command",
                    self.mech
                ))),
            ),
            Step::PlainSent | Step::XOAuth2Error(_) | Step::Done => (
                Step::New,
                Err(AuthError::Unexpected(format!(
                    "unexpected {} challenge {:?}",
                    self.mech,
                    shorten(challenge)
                ))),
            ),
        }
    }

    /// SCRAM: the client-final message for the server-first `challenge`,
    /// and the ServerSignature to expect.
    fn client_final(
        &self,
        client_first_bare: &str,
        challenge: &str,
    ) -> Result<([u8; 32], String), AuthError> {
        let server_first = decode_text(challenge)?;
        let (nonce, salt, iterations) = parse_server_first(&server_first, &self.nonce)?;
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            self.secret.expose().as_bytes(),
            &salt,
            iterations,
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        // "biws" is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac_sha256(&salted, b"Server Key");
        let expected = hmac_sha256(&server_key, auth_message.as_bytes());
        Ok((
            expected,
            format!("{without_proof},p={}", STANDARD.encode(proof)),
        ))
    }

    /// Called on the `235` reply: whether the exchange completed as it
    /// must. For SCRAM-SHA-256 the server signature must have arrived and
    /// matched (sent in a `334` before, or given to
    /// [`finish_with`](Exchange::finish_with)); XOAUTH2 fails if the server
    /// sent an error report; an unusable exchange fails; anything else is
    /// fine.
    pub fn finish(&self) -> Result<(), AuthError> {
        self.check()?;
        match &self.step {
            Step::Failed(e) => Err(e.clone()),
            Step::XOAuth2Error(report) => Err(AuthError::Unexpected(report.clone())),
            Step::ScramServerFinal { .. } => Err(AuthError::ServerSignature),
            Step::ScramServerFirst { .. } => Err(AuthError::Unexpected(
                "SCRAM-SHA-256 succeeded before the server sent its first message".into(),
            )),
            Step::New if self.mech == Mechanism::ScramSha256 => Err(AuthError::Unexpected(
                "SCRAM-SHA-256 exchange not started".into(),
            )),
            _ => Ok(()),
        }
    }

    /// [`finish`](Exchange::finish), given the text after `"235 "`: RFC 4954
    /// lets the server put SCRAM's server-final message there, base64
    /// encoded, instead of sending it as a `334` challenge. Text that does
    /// not decode to a server-final message (`v=` or `e=`), such as
    /// `"2.7.0 Authentication successful"`, is ignored.
    pub fn finish_with(&mut self, success_data: Option<&str>) -> Result<(), AuthError> {
        if let (Step::ScramServerFinal { expected }, Some(data)) = (&self.step, success_data)
            && let Ok(text) = decode_text(data.trim())
            && (text.starts_with("v=") || text.starts_with("e="))
        {
            self.step = match server_final(expected, &text) {
                Ok(()) => Step::Done,
                Err(e) => Step::Failed(e),
            };
        }
        self.finish()
    }
}

/// SCRAM `saslname`: the login with `=` and `,` escaped.
fn sasl_name(login: &str) -> String {
    login.replace('=', "=3D").replace(',', "=2C")
}

/// Parses a SCRAM server-first message: the full nonce (which must extend
/// ours), the salt and the iteration count.
fn parse_server_first(text: &str, client_nonce: &str) -> Result<(String, Vec<u8>, u32), AuthError> {
    let bad = |why: &str| AuthError::BadChallenge(format!("SCRAM server-first message: {why}"));
    if let Some(e) = text.strip_prefix("e=") {
        return Err(AuthError::Unexpected(format!(
            "SCRAM server error: {}",
            shorten(e)
        )));
    }
    let mut attrs = text.split(',');
    let mut next = |key: &str| {
        attrs
            .next()
            .and_then(|a| a.strip_prefix(key))
            .ok_or_else(|| bad(&format!("no {key}")))
    };
    if text.starts_with("m=") {
        return Err(bad("unsupported mandatory extension"));
    }
    let nonce = next("r=")?;
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
        return Err(bad("the nonce does not extend ours"));
    }
    if !nonce.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(bad("bad nonce"));
    }
    let salt = STANDARD_PAD_INDIFFERENT
        .decode(next("s=")?)
        .map_err(|_| bad("bad salt"))?;
    if salt.is_empty() {
        return Err(bad("empty salt"));
    }
    let iterations: u32 = next("i=")?
        .parse()
        .map_err(|_| bad("bad iteration count"))?;
    if iterations == 0 || iterations > MAX_SCRAM_ITERATIONS {
        return Err(bad(&format!("iteration count {iterations} out of range")));
    }
    Ok((nonce.to_string(), salt, iterations))
}

/// Checks a SCRAM server-final message against the expected signature.
fn server_final(expected: &[u8; 32], text: &str) -> Result<(), AuthError> {
    let first = text.split(',').next().unwrap_or("");
    if let Some(e) = first.strip_prefix("e=") {
        return Err(AuthError::Unexpected(format!(
            "SCRAM server error: {}",
            shorten(e)
        )));
    }
    let Some(v) = first.strip_prefix("v=") else {
        return Err(AuthError::BadChallenge(format!(
            "SCRAM server-final message {:?}",
            shorten(text)
        )));
    };
    let got = STANDARD_PAD_INDIFFERENT
        .decode(v)
        .map_err(|_| AuthError::ServerSignature)?;
    // Constant time, for good measure.
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(AuthError::ServerSignature)
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Decodes a base64 challenge (padding optional).
fn decode(challenge: &str) -> Result<Vec<u8>, AuthError> {
    STANDARD_PAD_INDIFFERENT
        .decode(challenge)
        .map_err(|_| AuthError::BadChallenge(format!("not base64: {:?}", shorten(challenge))))
}

/// Decodes a base64 challenge that must be UTF-8 text.
fn decode_text(challenge: &str) -> Result<String, AuthError> {
    String::from_utf8(decode(challenge)?)
        .map_err(|_| AuthError::BadChallenge("challenge is not UTF-8".into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// At most 100 characters of server text, for error messages.
fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_proto::{AUTH_CRAM_MD5, AUTH_LOGIN, AUTH_PLAIN, AUTH_SCRAM_SHA_256, AUTH_XOAUTH2};

    fn pw(login: &str, password: &str) -> Credentials {
        Credentials {
            login: login.into(),
            secret: Secret::Password(password.into()),
        }
    }

    fn token(login: &str, token: &str) -> Credentials {
        Credentials {
            login: login.into(),
            secret: Secret::OAuthToken(token.into()),
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn names_and_bits() {
        let names: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            ["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2"]
        );
        assert_eq!(Mechanism::CramMd5.to_string(), "CRAM-MD5");
        assert_eq!(Mechanism::Plain.capability(), AUTH_PLAIN);
        assert_eq!(Mechanism::ScramSha256.capability(), AUTH_SCRAM_SHA_256);
    }

    #[test]
    fn choose_table() {
        use Mechanism::*;
        let p = Secret::Password("pencil".into());
        let utf8 = Secret::Password("pässword".into());
        let t = Secret::OAuthToken("ya29.x".into());
        let all = AUTH_LOGIN | AUTH_PLAIN | AUTH_CRAM_MD5 | AUTH_SCRAM_SHA_256 | AUTH_XOAUTH2;
        let clear = AUTH_LOGIN | AUTH_PLAIN;
        // (offered, secret, encrypted, insecure, expected)
        let table: &[(u64, &Secret, bool, bool, Option<Mechanism>)] = &[
            (all, &p, true, false, Some(ScramSha256)),
            (all, &p, false, true, Some(ScramSha256)),
            (all, &p, false, false, None),
            (all & !AUTH_SCRAM_SHA_256, &p, true, false, Some(CramMd5)),
            (clear, &p, true, false, Some(Plain)),
            (AUTH_LOGIN, &p, true, false, Some(Login)),
            (AUTH_LOGIN, &p, false, false, None),
            (AUTH_LOGIN, &p, false, true, Some(Login)),
            (clear, &p, false, false, None),
            (clear, &p, false, true, Some(Plain)),
            (AUTH_CRAM_MD5, &p, false, false, None),
            (AUTH_CRAM_MD5, &p, false, true, Some(CramMd5)),
            (AUTH_SCRAM_SHA_256, &p, false, false, None),
            (AUTH_XOAUTH2, &p, true, true, None),
            (0, &p, true, true, None),
            (smtp_proto::AUTH_SCRAM_SHA_256_PLUS, &p, true, false, None),
            // No SCRAM for a password SASLprep would change.
            (all, &utf8, true, false, Some(CramMd5)),
            (
                AUTH_SCRAM_SHA_256 | AUTH_PLAIN,
                &utf8,
                true,
                false,
                Some(Plain),
            ),
            (AUTH_SCRAM_SHA_256, &utf8, true, false, None),
            // A token: XOAUTH2 or nothing.
            (all, &t, true, false, Some(XOAuth2)),
            (all, &t, false, true, Some(XOAuth2)),
            (all, &t, false, false, None),
            (all & !AUTH_XOAUTH2, &t, true, true, None),
        ];
        for &(offered, secret, encrypted, insecure, want) in table {
            assert_eq!(
                choose(offered, secret, encrypted, insecure),
                want,
                "{offered:#x} {secret:?} encrypted={encrypted} insecure={insecure}"
            );
        }
    }

    #[test]
    fn plain() {
        let mut x = Exchange::new(Mechanism::Plain, &pw("alice", "secret"));
        assert_eq!(x.start(), "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(x.finish(), Ok(()));
        let mut x = Exchange::new(Mechanism::Plain, &pw("alice", "secret"));
        x.start();
        assert!(matches!(x.respond(""), Err(AuthError::Unexpected(_))));
        assert!(x.finish().is_err());
    }

    #[test]
    fn login() {
        let mut x = Exchange::new(Mechanism::Login, &pw("alice", "secret"));
        assert_eq!(x.start(), "AUTH LOGIN\r\n");
        assert_eq!(x.respond("VXNlcm5hbWU6").unwrap(), "YWxpY2U=\r\n");
        assert_eq!(x.respond("UGFzc3dvcmQ6 ").unwrap(), "c2VjcmV0\r\n");
        assert_eq!(x.finish(), Ok(()));
        assert!(x.respond("VXNlcm5hbWU6").is_err());
        // Any prompt will do; an empty password is an empty line.
        let mut x = Exchange::new(Mechanism::Login, &pw("bob", ""));
        x.start();
        assert_eq!(x.respond("not base64 at all!").unwrap(), "Ym9i\r\n");
        assert_eq!(x.respond("").unwrap(), "\r\n");
    }

    #[test]
    fn cram_md5_rfc2195() {
        let mut x = Exchange::new(Mechanism::CramMd5, &pw("tim", "tanstaaftanstaaf"));
        assert_eq!(x.start(), "AUTH CRAM-MD5\r\n");
        let challenge = b64("<1896.697170952@postoffice.reston.mci.net>");
        assert_eq!(
            challenge,
            "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        );
        assert_eq!(
            x.respond(&challenge).unwrap(),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"
        );
        assert_eq!(x.finish(), Ok(()));
        assert!(x.respond(&challenge).is_err());
    }

    #[test]
    fn cram_md5_bad_challenges() {
        for c in ["%%%", ""] {
            let mut x = Exchange::new(Mechanism::CramMd5, &pw("tim", "x"));
            x.start();
            assert!(
                matches!(x.respond(c), Err(AuthError::BadChallenge(_))),
                "{c:?}"
            );
            assert!(x.finish().is_err());
        }
    }

    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    const WRONG_FINAL: &str = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// An RFC 7677 §3 exchange up to the client-final message.
    fn scram_rfc7677() -> Exchange {
        let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &pw("user", "pencil"), NONCE);
        assert_eq!(x.check(), Ok(()));
        assert_eq!(
            x.start(),
            format!(
                "AUTH SCRAM-SHA-256 {}\r\n",
                b64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            )
        );
        assert_eq!(
            x.respond(&b64(SERVER_FIRST)).unwrap(),
            format!("{}\r\n", b64(CLIENT_FINAL))
        );
        x
    }

    #[test]
    fn scram_rfc7677_final_as_challenge() {
        let mut x = scram_rfc7677();
        assert_eq!(
            x.finish(),
            Err(AuthError::ServerSignature),
            "not yet verified"
        );
        assert_eq!(x.respond(&b64(SERVER_FINAL)).unwrap(), "\r\n");
        assert_eq!(x.finish(), Ok(()));
        assert_eq!(
            x.finish_with(Some("2.7.0 Authentication successful")),
            Ok(())
        );
        assert!(x.respond(&b64(SERVER_FINAL)).is_err());
    }

    #[test]
    fn scram_rfc7677_wrong_signature_as_challenge() {
        let mut x = scram_rfc7677();
        assert_eq!(
            x.respond(&b64(WRONG_FINAL)),
            Err(AuthError::ServerSignature)
        );
        assert_eq!(x.finish(), Err(AuthError::ServerSignature));
    }

    #[test]
    fn scram_rfc7677_final_in_235() {
        let mut x = scram_rfc7677();
        assert_eq!(x.finish_with(Some(&b64(SERVER_FINAL))), Ok(()));
        assert_eq!(x.finish(), Ok(()));

        let mut x = scram_rfc7677();
        assert_eq!(
            x.finish_with(Some(&b64(WRONG_FINAL))),
            Err(AuthError::ServerSignature)
        );
        assert_eq!(x.finish(), Err(AuthError::ServerSignature));

        // Missing: the 235 has only human text, or nothing.
        for data in [Some("2.7.0 Authentication successful"), Some(""), None] {
            let mut x = scram_rfc7677();
            assert_eq!(
                x.finish_with(data),
                Err(AuthError::ServerSignature),
                "{data:?}"
            );
        }

        // A server error instead of a signature.
        let mut x = scram_rfc7677();
        assert!(matches!(
            x.finish_with(Some(&b64("e=invalid-proof"))),
            Err(AuthError::Unexpected(_))
        ));
    }

    #[test]
    fn scram_bad_server_first() {
        let bad = [
            // Not our nonce, or not extended.
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_string(),
            format!("r={NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            format!("r={NONCE}x,s=***,i=4096"),
            format!("r={NONCE}x,s=,i=4096"),
            format!("r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0"),
            format!("r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967295"),
            format!("r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1"),
            format!("r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ=="),
            format!("m=ext,r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            "e=other-error".to_string(),
            String::new(),
        ];
        for text in &bad {
            let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &pw("user", "pencil"), NONCE);
            x.start();
            assert!(x.respond(&b64(text)).is_err(), "{text:?}");
            assert!(x.finish().is_err(), "{text:?}");
        }
        let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &pw("user", "pencil"), NONCE);
        x.start();
        assert!(matches!(x.respond("@@@"), Err(AuthError::BadChallenge(_))));
    }

    #[test]
    fn scram_escapes_the_login_and_makes_a_nonce() {
        let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &pw("a=b,c", "p"), "n0nce");
        assert_eq!(
            x.start(),
            format!("AUTH SCRAM-SHA-256 {}\r\n", b64("n,,n=a=3Db=2Cc,r=n0nce"))
        );
        let mut a = Exchange::new(Mechanism::ScramSha256, &pw("u", "p"));
        let mut b = Exchange::new(Mechanism::ScramSha256, &pw("u", "p"));
        assert_eq!(a.check(), Ok(()));
        assert_ne!(a.start(), b.start(), "random nonces");
    }

    #[test]
    fn scram_refuses_what_it_cannot_prepare() {
        for (creds, nonce) in [
            (pw("user", "pässword"), NONCE),
            (pw("user", "tab\there"), NONCE),
            (pw("user", "pencil"), "has,comma"),
            (pw("user", "pencil"), ""),
        ] {
            let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &creds, nonce);
            assert!(x.check().is_err());
            assert_eq!(x.start(), "AUTH SCRAM-SHA-256\r\n");
            assert!(matches!(x.respond(""), Err(AuthError::Unexpected(_))));
            assert!(x.finish().is_err());
        }
    }

    #[test]
    fn xoauth2() {
        // The example from Google's XOAUTH2 documentation.
        let creds = token(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        let mut x = Exchange::new(Mechanism::XOAuth2, &creds);
        assert_eq!(
            x.start(),
            "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n"
        );
        assert_eq!(x.finish(), Ok(()));

        let json = r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        let mut x = Exchange::new(Mechanism::XOAuth2, &creds);
        x.start();
        assert_eq!(x.respond(&b64(json)).unwrap(), "\r\n");
        assert_eq!(x.finish(), Err(AuthError::Unexpected(json.to_string())));
        assert!(x.respond(&b64(json)).is_err());
    }

    #[test]
    fn secrets_must_fit_the_mechanism() {
        let t = token("u", "tok");
        for m in [
            Mechanism::Login,
            Mechanism::Plain,
            Mechanism::CramMd5,
            Mechanism::ScramSha256,
        ] {
            let mut x = Exchange::new(m, &t);
            assert!(x.check().is_err(), "{m}");
            assert_eq!(x.start(), format!("AUTH {m}\r\n"));
            assert!(x.respond("VXNlcm5hbWU6").is_err(), "{m}");
            assert!(x.finish().is_err(), "{m}");
        }
        let mut x = Exchange::new(Mechanism::XOAuth2, &pw("u", "p"));
        assert!(x.check().is_err());
        assert_eq!(x.start(), "AUTH XOAUTH2\r\n");
        assert!(x.finish().is_err());
        // Separators inside the values.
        assert!(
            Exchange::new(Mechanism::Plain, &pw("u\0v", "p"))
                .check()
                .is_err()
        );
        assert!(
            Exchange::new(Mechanism::XOAuth2, &token("u", "t\x01"))
                .check()
                .is_err()
        );
    }

    #[test]
    fn challenge_before_start() {
        let mut x = Exchange::new(Mechanism::Login, &pw("u", "p"));
        assert!(matches!(
            x.respond("VXNlcm5hbWU6"),
            Err(AuthError::Unexpected(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = pw("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let x = Exchange::new(Mechanism::Plain, &c);
        assert!(!format!("{x:?}").contains("hunter2"));
        assert!(!format!("{:?}", token("a", "tok3n")).contains("tok3n"));
    }
}
