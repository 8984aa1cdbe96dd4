//! TLS for the SMTP client, on rustls: certificates verified against the
//! system roots (or CAFILE) and the host name by default; FINGERPRINT pins
//! the server's leaf certificate (SHA-256) instead; TLS_NO_VERIFY turns
//! verification off (insecure, logged at every use); CERTFILE is a client
//! certificate (chain and key in one PEM file, as in dma).
//!
//! A server certificate byte-identical to one in CAFILE is trusted whatever
//! its basic constraints, as OpenSSL trusts a self-signed anchor (OpenSSL 3's
//! `openssl req -x509` marks such a certificate CA:TRUE, which webpki
//! refuses as an end entity); its host name and its validity dates are still
//! checked.
//!
//! Under OPPORTUNISTIC_TLS (with STARTTLS) a certificate that fails
//! verification is accepted all the same: the connection is encrypted but
//! unverified, and [`Client::unverified`] says why. A FINGERPRINT mismatch
//! is never accepted.
//!
//! Under DANE ([`client_dane`], RFC 7672) the server's TLSA records decide
//! instead of CAs, CAFILE and the other settings above: see [`dane`].
//!
//! Every failure is described in words ([`Client::why`]): what is wrong, and
//! the certificate's subject, never a rustls enum name.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WantsClientCert, WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, Error, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::config::Config;

pub mod dane;
mod words;
pub use dane::Tlsa;
use words::{CertInfo, describe_cert, describe_io, subject_of};

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// CA chain and host name (the default).
    Verify,
    /// Only the SHA-256 of the leaf certificate (FINGERPRINT).
    Pin([u8; 32]),
    /// Nothing (TLS_NO_VERIFY): insecure.
    None,
}

impl Policy {
    /// The policy `config` asks for.
    pub fn of(config: &Config) -> Policy {
        match (config.fingerprint, config.tls_no_verify) {
            (Some(fp), _) => Policy::Pin(fp),
            (None, true) => Policy::None,
            (None, false) => Policy::Verify,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A rustls client configuration for one connection, with what its
/// certificate check found.
pub struct Client {
    /// The configuration for the handshake.
    pub config: Arc<ClientConfig>,
    /// The verifier's finding, in words: why the certificate was refused (or,
    /// when lenient, accepted unverified). Empty when it verified.
    verdict: Verdict,
}

impl Client {
    /// Why the handshake that ended in `err` failed, in words; and whether
    /// it was our refusal of the certificate (`true`) rather than a failed
    /// handshake (no protocol in common, an alert, a lost connection).
    pub fn why(&self, err: &io::Error) -> (String, bool) {
        let verdict = self
            .verdict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A finding the verifier accepted (lenient) is not why a later step
        // of the handshake failed.
        let refused = matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<Error>()),
            Some(Error::InvalidCertificate(_))
        );
        match verdict {
            Some(v) if refused => (v, true),
            _ => (describe_io(err), false),
        }
    }

    /// After a handshake that succeeded: why the certificate could not be
    /// verified (OPPORTUNISTIC_TLS accepted it all the same), or `None` when
    /// it was verified (or TLS_NO_VERIFY asked for no check).
    pub fn unverified(&self) -> Option<String> {
        self.verdict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The rustls client configuration for `config`, for one connection.
/// `lenient` (OPPORTUNISTIC_TLS with STARTTLS): accept a certificate that
/// fails verification, and record why. Errors name the file.
pub fn client(config: &Config, lenient: bool) -> Result<Client, String> {
    let check = match Policy::of(config) {
        Policy::Verify => chain(config.cafile.as_deref())?,
        Policy::Pin(fp) => Check::Pin(fp),
        Policy::None => Check::Nothing,
    };
    build(config, check, lenient)
}

/// The rustls client configuration for a server with DANE TLSA records
/// (RFC 7672): its certificate must match one of the usable records in
/// `tlsa`; FINGERPRINT, CAFILE, TLS_NO_VERIFY and OPPORTUNISTIC_TLS do not
/// apply (a failure is never accepted). CERTFILE is still presented.
///
/// `names` are the names a DANE-TA (usage 2) certificate may carry: the MX
/// host name (the TLSA base domain) and, if the caller accepts it, the
/// next-hop domain (RFC 7672 §3.2.2); empty means the name the connection
/// is made to (its SNI). DANE-EE (usage 3) checks no name and no dates.
///
/// Unusable records ([`Tlsa::usable`]) are dropped. With none left this is
/// an error: RFC 7672 §2.2 then asks for TLS without authentication, which
/// is the caller's decision, not a verifier that refuses every certificate.
pub fn client_dane(config: &Config, tlsa: Vec<Tlsa>, names: Vec<String>) -> Result<Client, String> {
    let tlsa: Vec<Tlsa> = tlsa.into_iter().filter(Tlsa::usable).collect();
    if tlsa.is_empty() {
        return Err("no usable TLSA records (DANE needs usage 2 or 3, selector 0 or 1, matching type 0, 1 or 2)".into());
    }
    let names = names
        .iter()
        .map(|n| server_name(n.strip_suffix('.').unwrap_or(n)))
        .collect::<Result<_, _>>()?;
    build(config, Check::Dane { tlsa, names }, false)
}

/// The configuration around `check`, with CERTFILE if set.
fn build(config: &Config, check: Check, lenient: bool) -> Result<Client, String> {
    let (builder, verdict) = checking(check, lenient)?;
    let cfg = match &config.certfile {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let shown = path.display();
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(path)
                .map_err(|e| format!("CERTFILE {shown}: no private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?
        }
    };
    Ok(Client {
        config: Arc::new(cfg),
        verdict,
    })
}

/// A rustls client configuration that always verifies the chain to
/// `cafile`'s CAs (or the system's) and the host name, and shows no client
/// certificate: for an MTA-STS policy fetch, where only that counts (RFC
/// 8461 §3.3), whatever FINGERPRINT, TLS_NO_VERIFY, OPPORTUNISTIC_TLS and
/// CERTFILE say for SMTP.
pub fn webpki_client(cafile: Option<&Path>) -> Result<Client, String> {
    let (builder, verdict) = checking(chain(cafile)?, false)?;
    Ok(Client {
        config: Arc::new(builder.with_no_client_auth()),
        verdict,
    })
}

type Verdict = Arc<Mutex<Option<String>>>;

/// A configuration builder whose verifier does `check`, and where it
/// records its finding.
fn checking(
    check: Check,
    lenient: bool,
) -> Result<(ConfigBuilder<ClientConfig, WantsClientCert>, Verdict), String> {
    let verdict = Arc::new(Mutex::new(None));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            check,
            lenient,
            verdict: verdict.clone(),
            provider: provider(),
        }));
    Ok((builder, verdict))
}

/// The chain-and-name check against `cafile`'s CAs, or the system's.
fn chain(cafile: Option<&Path>) -> Result<Check, String> {
    let (roots, anchors) = roots(cafile)?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("certificate verifier: {e}"))?;
    Ok(Check::Chain {
        inner,
        anchors,
        source: match cafile {
            Some(p) => format!("CAFILE {}", p.display()),
            None => "the system's trusted CAs".to_string(),
        },
    })
}

/// CAFILE's certificates (also returned as they are, for the exact-match
/// rule), or the system's.
fn roots(cafile: Option<&Path>) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    match cafile {
        Some(path) => {
            for c in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CAFILE {}: {e}", path.display()))?
            {
                let c = c.map_err(|e| format!("CAFILE {}: {e}", path.display()))?;
                roots
                    .add(c.clone())
                    .map_err(|e| format!("CAFILE {}: {e}", path.display()))?;
                anchors.push(c);
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (install ca-certificates, or set CAFILE)".into());
    }
    Ok((roots, anchors))
}

/// The name to check the certificate against (and send as SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|e| format!("{host}: {e}"))
}

/// What a server's certificate says about itself, in words (`dma
/// --probe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its subject (`CN=localhost`).
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Its DNS names and IP addresses (subjectAltName).
    pub names: Vec<String>,
    /// notBefore, as `2002-01-01 00:00:00 UTC`.
    pub not_before: String,
    /// notAfter, likewise.
    pub not_after: String,
}

/// What the certificate `der` says about itself, or `None` if it can not
/// be parsed.
pub fn summary(der: &[u8]) -> Option<Summary> {
    let i = CertInfo::parse(der)?;
    Some(Summary {
        subject: i.subject,
        issuer: i.issuer,
        names: i.names,
        not_before: words::date(i.not_before),
        not_after: words::date(i.not_after),
    })
}

/// The SHA-256 of a certificate, as FINGERPRINT writes it (hex).
pub fn fingerprint(cert: &[u8]) -> String {
    hex(&Sha256::digest(cert))
}

/// Bytes in lower-case hex, as FINGERPRINT and TLSA records are written.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the verifier checks.
#[derive(Debug)]
enum Check {
    /// The chain to a trusted CA and the name; or, for a certificate that is
    /// itself in CAFILE, the name and the dates.
    Chain {
        inner: Arc<WebPkiServerVerifier>,
        anchors: Vec<CertificateDer<'static>>,
        /// Where the trusted CAs come from, for messages.
        source: String,
    },
    /// The leaf's SHA-256.
    Pin([u8; 32]),
    /// Nothing (TLS_NO_VERIFY). Handshake signatures are still checked.
    Nothing,
    /// DANE: one of the usable TLSA records matches; `names` for a DANE-TA
    /// chain (empty: the SNI name).
    Dane {
        tlsa: Vec<Tlsa>,
        names: Vec<ServerName<'static>>,
    },
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    lenient: bool,
    verdict: Verdict,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn record(&self, words: String) {
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(words);
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let host = name.to_str();
        match &self.check {
            Check::Nothing => Ok(ServerCertVerified::assertion()),
            Check::Dane { tlsa, names } => {
                let names = if names.is_empty() {
                    std::slice::from_ref(name)
                } else {
                    names.as_slice()
                };
                let algs = self.provider.signature_verification_algorithms.all;
                match dane::verify(tlsa, names, end_entity, intermediates, &host, now, algs) {
                    Ok(()) => Ok(ServerCertVerified::assertion()),
                    // DANE is mandatory: never accepted unverified.
                    Err(refused) => {
                        self.record(refused.words);
                        Err(refused.error)
                    }
                }
            }
            Check::Pin(fp) => {
                let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                if got == *fp {
                    return Ok(ServerCertVerified::assertion());
                }
                // A pin is the administrator's explicit choice: never
                // accepted unverified, even when lenient.
                self.record(format!(
                    "fingerprints do not match: the certificate of {host} ({}) has SHA-256 {}, FINGERPRINT is {}",
                    subject_of(end_entity.as_ref()),
                    fingerprint(end_entity.as_ref()),
                    hex(fp)
                ));
                Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            Check::Chain {
                inner,
                anchors,
                source,
            } => {
                let r = if anchors.iter().any(|a| a.as_ref() == end_entity.as_ref()) {
                    trusted_as_is(end_entity, name, now)
                } else {
                    inner
                        .verify_server_cert(end_entity, intermediates, name, ocsp, now)
                        .map(|_| ())
                };
                match r {
                    Ok(()) => Ok(ServerCertVerified::assertion()),
                    Err(e) => {
                        self.record(describe_cert(&e, end_entity.as_ref(), &host, source));
                        if self.lenient {
                            Ok(ServerCertVerified::assertion())
                        } else {
                            Err(e)
                        }
                    }
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate found byte for byte in CAFILE: trusted as it is (no chain,
/// no basic constraints), but it must name the host and be valid now, as
/// OpenSSL checks a self-signed trust anchor.
fn trusted_as_is(
    end_entity: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), Error> {
    let parsed = ParsedCertificate::try_from(end_entity)?;
    let info = CertInfo::parse(end_entity.as_ref())
        .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if let Err(e) = verify_server_name(&parsed, name) {
        // OpenSSL's X509_check_host: without a DNS name or IP address in
        // subjectAltName, the subject's CN names the host (`openssl req
        // -x509 -subj /CN=host` has none). Only for a certificate trusted
        // as it is; a CA-issued one needs subjectAltName, as with rustls.
        let host = match name {
            ServerName::DnsName(d) => d.as_ref(),
            _ => return Err(e),
        };
        if !(info.names.is_empty() && info.cns.iter().any(|cn| cn.eq_ignore_ascii_case(host))) {
            return Err(e);
        }
    }
    let t = now.as_secs() as i64;
    if t < info.not_before {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if t > info.not_after {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}
