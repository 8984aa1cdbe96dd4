//! TLS to the smarthost: verified by default, pinned with FINGERPRINT,
//! and every bad certificate deferred with nothing sent.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use smtpd::{Behavior, FakeSmtp};
use support::*;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, signed by this CA (or by itself), maybe expired.
    fn leaf(
        &self,
        names: &[&str],
        self_signed: bool,
        expired: bool,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        if expired {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = if self_signed {
            p.self_signed(&key).unwrap()
        } else {
            p.signed_by(&key, &self.issuer).unwrap()
        };
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

fn server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> FakeSmtp {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    FakeSmtp::start(Behavior {
        tls: Some(Arc::new(cfg)),
        ..Behavior::default()
    })
}

fn sha256_hex(der: &[u8]) -> String {
    dma_rs::smtp::tls::fingerprint(der)
}

fn env_for(fake: &FakeSmtp, ca: &Ca, extra: &str) -> Env {
    let env = Env::new("");
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nCAFILE {}\nSMTP_TIMEOUT 3s\n{extra}",
        fake.port(),
        ca_file.display()
    ));
    env
}

const MSG: &str = "Subject: tls\n\nsecret\n";

fn deferred_and_nothing_sent(env: &Env, fake: &FakeSmtp, why: &str) {
    let q = env.mailq().stdout();
    assert!(q.contains("Status\t: deferred"), "{q}");
    assert!(q.to_lowercase().contains(why), "want {why:?} in {q}");
    assert!(fake.messages().is_empty());
    assert!(
        !fake.commands().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        fake.commands()
    );
}

#[test]
fn a_verified_certificate_delivers() {
    let ca = Ca::new();
    let (c, k) = ca.leaf(&["localhost", "127.0.0.1"], false, false);
    let fake = server(c, k);
    let env = env_for(&fake, &ca, "");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
    assert!(env.queue_ids().is_empty());
}

/// A server with a leaf for `names` (self-signed or expired as asked): the
/// message is deferred for `why` and nothing is sent.
fn refused_certificate_defers(names: &[&str], self_signed: bool, expired: bool, why: &str) {
    let ca = Ca::new();
    let (c, k) = ca.leaf(names, self_signed, expired);
    let fake = server(c, k);
    let env = env_for(&fake, &ca, "");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    deferred_and_nothing_sent(&env, &fake, why);
}

#[test]
fn a_wrong_host_name_defers() {
    refused_certificate_defers(&["other.example"], false, false, "certificate");
}

#[test]
fn a_self_signed_certificate_without_pin_defers() {
    refused_certificate_defers(&["127.0.0.1"], true, false, "certificate");
}

#[test]
fn an_expired_certificate_defers() {
    refused_certificate_defers(&["127.0.0.1"], false, true, "expired");
}

#[test]
fn fingerprint_pins_the_leaf() {
    let ca = Ca::new();
    let (c, k) = ca.leaf(&["127.0.0.1"], true, false);
    let right = sha256_hex(c.as_ref());
    let fake = server(c, k);
    let env = env_for(&fake, &ca, &format!("FINGERPRINT {}\n", "00".repeat(32)));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    deferred_and_nothing_sent(&env, &fake, "fingerprints do not match");
    let ca_file = env.dir.path().join("ca.pem");
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nCAFILE {}\nFINGERPRINT {right}\n",
        fake.port(),
        ca_file.display()
    ));
    env.flush().expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
}

#[test]
fn tls_no_verify_delivers_and_says_so() {
    let ca = Ca::new();
    let (c, k) = ca.leaf(&["wrong.example"], true, false);
    let fake = server(c, k);
    let env = env_for(&fake, &ca, "TLS_NO_VERIFY\n");
    let r = env.send(&["-v", "-f", "s@example.org", "a@remote.example"], MSG);
    r.expect(0, &env);
    assert_eq!(fake.messages().len(), 1);
    assert!(
        r.stderr().contains("TLS_NO_VERIFY: not verifying"),
        "{}",
        r.show()
    );
}

#[test]
fn certfile_presents_a_client_certificate() {
    let ca = Ca::new();
    let (c, k) = ca.leaf(&["127.0.0.1"], false, false);
    // The server wants a client certificate signed by our CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![c], k)
        .unwrap();
    let fake = FakeSmtp::start(Behavior {
        tls: Some(Arc::new(cfg)),
        ..Behavior::default()
    });
    // Without CERTFILE the handshake fails: deferred, nothing sent.
    let env = env_for(&fake, &ca, "");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert!(fake.messages().is_empty());
    assert!(env.mailq().stdout().contains("deferred"));
    // With CERTFILE (chain and key in one PEM file, as dma has it): delivered.
    let mut p = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    p.is_ca = IsCa::NoCa;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let certfile = env.dir.path().join("client.pem");
    std::fs::write(&certfile, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    let ca_file = env.dir.path().join("ca.pem");
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nCAFILE {}\nCERTFILE {}\n",
        fake.port(),
        ca_file.display(),
        certfile.display()
    ));
    env.flush().expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
}
