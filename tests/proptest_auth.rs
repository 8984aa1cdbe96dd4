//! proptest over SMTP AUTH: the `auth.conf` parser never panics and its
//! errors name a bad line of the file; every line a SASL exchange sends is
//! one clean SMTP line (base64 after the command word, CRLF only at the
//! end), whatever the login and password; and no challenge a server can
//! send makes an exchange panic.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dma_rs::config::auth::AuthFile;
use dma_rs::smtp::auth::{Credentials, Exchange, Mechanism, Secret};
use proptest::collection::vec;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that looks like an auth file more often than random text does.
fn auth_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[^\n]{0,30}",
        "[a-z|#: \t\r]{0,12}",
        "[a-z]{0,5}\\|[a-z.]{0,8}[:| \t][^\n]{0,10}",
        "#[^\n]{0,10}",
        Just(String::new()),
    ];
    (vec(line, 0..8), any::<bool>())
        .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }))
}

/// Any text without NUL.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

/// A line that must be `{prefix}` followed by base64 and CRLF and nothing
/// else; returns the decoded bytes.
fn clean_line(line: &str, prefix: &str) -> Result<Vec<u8>, TestCaseError> {
    let body = line.strip_suffix("\r\n");
    prop_assert!(body.is_some(), "no CRLF at the end: {:?}", line);
    let body = body.unwrap();
    prop_assert!(!body.contains(['\r', '\n']), "bare CR or LF: {:?}", line);
    let b64 = body.strip_prefix(prefix);
    prop_assert!(b64.is_some(), "{:?} does not start with {:?}", line, prefix);
    let decoded = STANDARD.decode(b64.unwrap());
    prop_assert!(decoded.is_ok(), "not base64: {:?}", line);
    Ok(decoded.unwrap())
}

/// A start line: `AUTH MECH` alone or with ` base64`; returns the initial
/// response, if any.
fn clean_start(line: &str, mech: Mechanism) -> Result<Option<Vec<u8>>, TestCaseError> {
    let bare = format!("AUTH {}\r\n", mech.name());
    if line == bare {
        return Ok(None);
    }
    clean_line(line, &format!("AUTH {} ", mech.name())).map(Some)
}

/// A challenge a server might send, or garbage.
fn challenge() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=]{0,60}",
        vec(any::<u8>(), 0..60).prop_map(|b| STANDARD.encode(b)),
        "[^\u{0}]{0,40}".prop_map(|t| STANDARD.encode(t)),
        "(v|e|r|s|i|m)=[A-Za-z0-9+/=,]{0,40}".prop_map(|t| STANDARD.encode(t)),
    ]
}

/// A SCRAM server-first message for client nonce `nonce`, mostly valid,
/// with a small iteration count so that the test stays fast.
fn server_first(nonce: &'static str) -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9%$)(!/+]{0,12}",
        vec(any::<u8>(), 0..20),
        0u32..8,
        "(,[a-z]=[a-z]{0,4}){0,2}",
    )
        .prop_map(move |(suffix, salt, i, ext)| {
            STANDARD.encode(format!(
                "r={nonce}{suffix},s={},i={i}{ext}",
                STANDARD.encode(salt)
            ))
        })
}

const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn auth_file_parse_never_panics(text in auth_text()) {
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        match AuthFile::parse(Path::new("/etc/dma/auth.conf"), &text) {
            Ok(f) => {
                let meaningful = lines
                    .iter()
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .count();
                prop_assert_eq!(f.entries.len(), meaningful);
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.line <= lines.len(), "{:?}", e);
                prop_assert_eq!(
                    e.to_string(),
                    format!("syntax error in authfile /etc/dma/auth.conf:{}", e.line)
                );
                let bad = lines[e.line - 1];
                prop_assert!(!bad.is_empty() && !bad.starts_with('#'), "{:?}", bad);
                let well_formed = bad
                    .split_once('|')
                    .is_some_and(|(_, rest)| rest.contains([':', '|', ' ', '\t']));
                prop_assert!(!well_formed, "line {:?} is fine", bad);
            }
        }
    }

    #[test]
    fn plain_lines_are_clean(login in text(), password in text()) {
        let creds = Credentials { login: login.clone(), secret: Secret::Password(password.clone()) };
        let mut x = Exchange::new(Mechanism::Plain, &creds);
        let ir = clean_start(&x.start(), Mechanism::Plain)?;
        prop_assert_eq!(ir, Some(format!("\0{login}\0{password}").into_bytes()));
    }

    #[test]
    fn login_lines_are_clean(
        login in text(),
        password in text(),
        prompts in vec(challenge(), 2),
    ) {
        let creds = Credentials { login: login.clone(), secret: Secret::Password(password.clone()) };
        let mut x = Exchange::new(Mechanism::Login, &creds);
        prop_assert_eq!(clean_start(&x.start(), Mechanism::Login)?, None);
        let user = clean_line(&x.respond(&prompts[0]).unwrap(), "")?;
        prop_assert_eq!(user, login.into_bytes());
        let pass = clean_line(&x.respond(&prompts[1]).unwrap(), "")?;
        prop_assert_eq!(pass, password.into_bytes());
        prop_assert!(x.finish().is_ok());
    }

    #[test]
    fn cram_md5_lines_are_clean(
        login in text(),
        password in text(),
        challenge in vec(any::<u8>(), 1..80),
    ) {
        let creds = Credentials { login: login.clone(), secret: Secret::Password(password) };
        let mut x = Exchange::new(Mechanism::CramMd5, &creds);
        prop_assert_eq!(clean_start(&x.start(), Mechanism::CramMd5)?, None);
        let answer = clean_line(&x.respond(&STANDARD.encode(challenge)).unwrap(), "")?;
        let answer = String::from_utf8(answer).unwrap();
        let (who, digest) = answer.rsplit_once(' ').unwrap();
        prop_assert_eq!(who, login);
        prop_assert!(digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
        prop_assert!(x.finish().is_ok());
    }

    #[test]
    fn xoauth2_lines_are_clean(login in text(), token in text(), report in text()) {
        let creds = Credentials { login: login.clone(), secret: Secret::OAuthToken(token.clone()) };
        let mut x = Exchange::new(Mechanism::XOAuth2, &creds);
        let ir = clean_start(&x.start(), Mechanism::XOAuth2)?;
        if x.check().is_ok() {
            prop_assert_eq!(
                ir,
                Some(format!("user={login}\x01auth=Bearer {token}\x01\x01").into_bytes())
            );
            let empty = clean_line(&x.respond(&STANDARD.encode(&report)).unwrap(), "")?;
            prop_assert!(empty.is_empty());
            prop_assert!(x.finish().is_err());
        } else {
            // Only a \x01 inside makes the credentials unusable.
            prop_assert!(login.contains('\x01') || token.contains('\x01'));
            prop_assert_eq!(ir, None);
        }
    }

    #[test]
    fn scram_lines_are_clean(
        login in text(),
        password in "[ -~]{0,20}",
        first in server_first(NONCE),
    ) {
        let creds = Credentials { login, secret: Secret::Password(password) };
        let mut x = Exchange::with_nonce(Mechanism::ScramSha256, &creds, NONCE);
        let ir = clean_start(&x.start(), Mechanism::ScramSha256)?;
        prop_assert!(ir.is_some());
        if let Ok(line) = x.respond(&first) {
            let client_final = String::from_utf8(clean_line(&line, "")?).unwrap();
            prop_assert!(client_final.starts_with("c=biws,r="), "{}", client_final);
        }
    }

    #[test]
    fn respond_never_panics(
        mech in proptest::sample::select(&Mechanism::ALL[..]),
        token in any::<bool>(),
        login in any::<String>(),
        secret in any::<String>(),
        challenges in vec(
            prop_oneof![challenge(), server_first(NONCE)],
            0..5,
        ),
        success in proptest::option::of(challenge()),
    ) {
        let secret = if token { Secret::OAuthToken(secret) } else { Secret::Password(secret) };
        let creds = Credentials { login, secret };
        let mut x = Exchange::with_nonce(mech, &creds, NONCE);
        let _ = x.respond("before start");
        let start = x.start();
        let want = format!("AUTH {}", mech.name());
        prop_assert!(start.starts_with(&want), "{:?}", start);
        for c in &challenges {
            if let Ok(line) = x.respond(c) {
                prop_assert!(line.ends_with("\r\n"));
                prop_assert!(!line[..line.len() - 2].contains(['\r', '\n']), "{:?}", line);
            }
        }
        let _ = x.finish();
        let _ = x.finish_with(success.as_deref());
        let _ = x.respond("after the end");
    }
}
