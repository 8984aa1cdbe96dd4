//! attack13: a hostile TLS server's certificate text in mailq and the log.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use smtpd::{Behavior, FakeSmtp};
use support::*;

const NAMES: usize = 1000;

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "attack CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A trusted CA signs a certificate with thousands of wrong names and a
/// subject full of Unicode line/format controls: the refusal in mailq stays
/// one short line per recipient, without line separators or bidi overrides.
#[test]
fn attack13_certificate_names_cannot_flood_or_forge_mailq_lines() {
    let issuer = ca();
    let names: Vec<String> = (0..NAMES)
        .map(|i| format!("n{i:04}-{}.evil.example", "x".repeat(40)))
        .collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name.push(
        DnType::CommonName,
        "evil\u{2028}Status\t: delivered\u{202e}gnp.exe\u{2029}",
    );
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let fake = FakeSmtp::start(Behavior {
        tls: Some(Arc::new(cfg)),
        ..Behavior::default()
    });
    let env = Env::new("");
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, issuer.pem()).unwrap();
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nCAFILE {}\nSMTP_TIMEOUT 3s\n",
        fake.port(),
        ca_file.display()
    ));
    env.send(&["bob@remote.example"], "Subject: x\n\nx\n");
    let q = env.mailq().stdout();
    assert!(q.contains("Status\t: deferred"), "{q}");
    let longest = q.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 8192,
        "a mailq line of {longest} bytes from the certificate's names"
    );
    for bad in ['\u{2028}', '\u{2029}', '\u{202e}'] {
        assert!(
            !q.contains(bad),
            "{bad:?} (Unicode line separator / bidi override) from the certificate subject in mailq"
        );
    }
}
