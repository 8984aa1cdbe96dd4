//! What a server's certificate says about itself (subject, names, dates,
//! read with x509-parser), and every TLS failure in words for the log and
//! `mailq`: what is wrong and with which certificate, never a rustls or
//! webpki enum name.

use std::io;

use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};

/// What a certificate says about itself, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertInfo {
    pub(super) subject: String,
    pub(super) issuer: String,
    pub(super) self_issued: bool,
    /// Seconds since the epoch.
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// Its DNS names and IP addresses (subjectAltName).
    pub(super) names: Vec<String>,
    /// The subject's common names.
    pub(super) cns: Vec<String>,
}

impl CertInfo {
    pub(super) fn parse(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::extensions::GeneralName;
        let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push(clean(d)),
                    GeneralName::IPAddress(b) => names.push(ip_text(b)),
                    _ => {}
                }
            }
        }
        Some(CertInfo {
            subject: clean(&c.subject().to_string()),
            issuer: clean(&c.issuer().to_string()),
            self_issued: c.subject().as_raw() == c.issuer().as_raw(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            names,
            cns: c
                .subject()
                .iter_common_name()
                .filter_map(|a| a.as_str().ok().map(clean))
                .collect(),
        })
    }
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap()).to_string(),
        _ => "(a malformed IP address)".to_string(),
    }
}

/// Text from a certificate, safe for a log line and a queue file: no
/// control characters, at most 200 characters.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// `subject CN=...` of a certificate, or a note that it could not be read.
pub(super) fn subject_of(der: &[u8]) -> String {
    match CertInfo::parse(der) {
        Some(i) if i.subject.is_empty() => "empty subject".to_string(),
        Some(i) => format!("subject {}", i.subject),
        None => "a certificate that could not be parsed".to_string(),
    }
}

/// A time as `2002-01-01 00:00:00 UTC`.
fn date(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{secs} seconds after 1970"),
    }
}

/// A refused certificate in words: what is wrong, with its subject.
pub(super) fn describe_cert(err: &Error, der: &[u8], host: &str, source: &str) -> String {
    let info = CertInfo::parse(der);
    let subject = subject_of(der);
    let cert = format!("the certificate of {host} ({subject})");
    let Error::InvalidCertificate(ce) = err else {
        return format!("{cert} was refused: {}", describe(err));
    };
    match ce {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => match &info {
            Some(i) => format!("{cert} expired on {}", date(i.not_after)),
            None => format!("{cert} has expired"),
        },
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            match &info {
                Some(i) => format!("{cert} is not valid before {}", date(i.not_before)),
                None => format!("{cert} is not valid yet"),
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = info.as_ref().map(|i| i.names.clone()).unwrap_or_default();
            if names.is_empty() {
                format!(
                    "wrong name: {cert} names no host (no DNS name or IP address in subjectAltName), not {host}"
                )
            } else {
                format!(
                    "wrong name: {cert} is for {}, not for {host}",
                    names.join(", ")
                )
            }
        }
        CertificateError::UnknownIssuer => match &info {
            Some(i) if i.self_issued => {
                format!("unknown issuer: {cert} is self-signed and not in {source}")
            }
            Some(i) => format!(
                "unknown issuer: {cert} is issued by {}, which is not in {source}",
                if i.issuer.is_empty() {
                    "an empty name"
                } else {
                    &i.issuer
                }
            ),
            None => format!("unknown issuer: {cert} is not issued by a CA in {source}"),
        },
        CertificateError::BadSignature => format!("{cert} has a bad signature"),
        CertificateError::Revoked => format!("{cert} has been revoked"),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("{cert} is not for TLS servers (its extended key usage)")
        }
        CertificateError::BadEncoding => format!("the certificate of {host} is malformed"),
        CertificateError::UnhandledCriticalExtension => {
            format!("{cert} has a critical extension that dma-rs does not know")
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            format!("{cert} is signed with an algorithm that dma-rs does not support")
        }
        CertificateError::UnknownRevocationStatus
        | CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => {
            format!("{cert} has an unknown revocation status")
        }
        CertificateError::Other(other) => {
            let text = other.to_string();
            if text.contains("CaUsedAsEndEntity") {
                format!(
                    "CA certificate used as server certificate: {cert} is a CA certificate (CA:TRUE), and it is not in {source} byte for byte (put this very certificate in CAFILE to trust it)"
                )
            } else {
                format!("{cert} was refused: {}", words(&text))
            }
        }
        other => format!("{cert} was refused: {}", words(&format!("{other:?}"))),
    }
}

/// A failed handshake (no certificate finding recorded) in words.
pub(super) fn describe_io(err: &io::Error) -> String {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(e) => describe(e),
        None => format!("the connection failed during the TLS handshake: {err}"),
    }
}

/// A rustls error in words.
fn describe(e: &Error) -> String {
    match e {
        Error::AlertReceived(AlertDescription::HandshakeFailure) => {
            "handshake failure: the server found nothing in common with dma-rs (TLS version: dma-rs needs 1.2 or 1.3; cipher suite, key exchange or signature scheme)".into()
        }
        Error::AlertReceived(AlertDescription::ProtocolVersion) => {
            "protocol version: the server does not speak TLS 1.2 or 1.3, which dma-rs needs".into()
        }
        Error::AlertReceived(a) => format!(
            "the server ended the TLS handshake with the alert \"{}\"",
            words(&format!("{a:?}"))
        ),
        Error::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ) => "protocol version: the server does not speak TLS 1.2 or 1.3, which dma-rs needs".into(),
        Error::PeerIncompatible(p) => format!(
            "handshake failure: the server's TLS is incompatible with dma-rs ({})",
            words(&format!("{p:?}"))
        ),
        Error::PeerMisbehaved(p) => format!(
            "the server broke the TLS protocol ({})",
            words(&format!("{p:?}"))
        ),
        Error::NoCertificatesPresented => "the server presented no certificate".into(),
        Error::InvalidCertificate(c) => {
            format!("the server's certificate was refused ({})", words(&format!("{c:?}")))
        }
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            "the server sent something that is not TLS (is this port for TLS?)".into()
        }
        other => words(&other.to_string()),
    }
}

/// An enum name made readable: `CaUsedAsEndEntity` -> `ca used as end
/// entity`; parentheses and quotes dropped, struct fields (from `{`) too.
/// For the rare failures without words of their own.
fn words(debug: &str) -> String {
    let debug = debug.split('{').next().unwrap_or("");
    let mut out = String::new();
    let mut prev_lower = false;
    for c in debug.chars() {
        match c {
            '(' | ')' | '{' | '}' | '"' | '[' | ']' => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
                prev_lower = false;
            }
            c if c.is_ascii_uppercase() => {
                if prev_lower {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
                prev_lower = false;
            }
            c => {
                out.push(c);
                prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            }
        }
    }
    clean(out.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_become_words() {
        for (given, want) in [
            ("CaUsedAsEndEntity", "ca used as end entity"),
            (
                "Other(OtherError(CaUsedAsEndEntity))",
                "other other error ca used as end entity",
            ),
            ("BadCertificate", "bad certificate"),
            ("SomeContext { id: [1, 2] }", "some context"),
            ("plain words", "plain words"),
        ] {
            assert_eq!(words(given), want, "{given}");
        }
    }

    #[test]
    fn handshake_failures_in_words() {
        for (e, want) in [
            (
                Error::AlertReceived(AlertDescription::HandshakeFailure),
                "handshake failure: the server found nothing in common",
            ),
            (
                Error::AlertReceived(AlertDescription::ProtocolVersion),
                "protocol version: the server does not speak TLS 1.2 or 1.3",
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13),
                "protocol version: the server does not speak TLS 1.2 or 1.3",
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate),
                "the server ended the TLS handshake with the alert \"bad certificate\"",
            ),
        ] {
            let got = describe_io(&io::Error::new(io::ErrorKind::InvalidData, e));
            assert!(got.starts_with(want), "{got}");
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(1009843200), "2002-01-01 00:00:00 UTC");
    }

    #[test]
    fn certificate_text_is_made_safe() {
        assert_eq!(clean("CN=a\nb\r"), "CN=a?b?");
        assert!(clean(&"x".repeat(500)).ends_with("..."));
    }
}
