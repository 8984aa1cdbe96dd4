//! TLS to the smarthost: verified by default, pinned with FINGERPRINT,
//! and every bad certificate deferred with nothing sent.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use smtpd::{Behavior, FakeSmtp};
use support::*;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// Who signs a test leaf.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// The CA in CAFILE.
    Ca,
    /// Itself, as an ordinary leaf (CA:FALSE).
    Itself,
    /// Itself, marked CA:TRUE (as `openssl req -x509` makes it).
    ItselfAsCa,
    /// A CA that is not in CAFILE (`CN=other CA`).
    OtherCa,
}

/// When a test leaf is valid.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dates {
    Now,
    /// 2001-01-01 to 2002-01-01.
    Expired,
    /// From 2090-01-01.
    Future,
}

impl Ca {
    fn new() -> Ca {
        Ca::named("dma-rs test CA")
    }

    fn named(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
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
        let signer = if self_signed {
            Signer::Itself
        } else {
            Signer::Ca
        };
        let dates = if expired { Dates::Expired } else { Dates::Now };
        self.leaf_with(names, signer, dates)
    }

    /// A leaf for `names` with the subject `CN=leaf.test`.
    fn leaf_with(
        &self,
        names: &[&str],
        signer: Signer,
        dates: Dates,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        self.leaf_named("leaf.test", names, signer, dates)
    }

    /// A leaf for `names` with the subject `CN=<cn>`.
    fn leaf_named(
        &self,
        cn: &str,
        names: &[&str],
        signer: Signer,
        dates: Dates,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        match dates {
            Dates::Now => {}
            Dates::Expired => {
                p.not_before = rcgen::date_time_ymd(2001, 1, 1);
                p.not_after = rcgen::date_time_ymd(2002, 1, 1);
            }
            Dates::Future => {
                p.not_before = rcgen::date_time_ymd(2090, 1, 1);
                p.not_after = rcgen::date_time_ymd(2091, 1, 1);
            }
        }
        if signer == Signer::ItselfAsCa {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate().unwrap();
        let cert = match signer {
            Signer::Itself | Signer::ItselfAsCa => p.self_signed(&key).unwrap(),
            Signer::Ca => p.signed_by(&key, &self.issuer).unwrap(),
            Signer::OtherCa => p.signed_by(&key, &Ca::named("other CA").issuer).unwrap(),
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

/// A server with a leaf for `names` from `signer`, valid at `dates`: the
/// message is deferred, nothing is sent, and mailq and the log give
/// `4.4.1 TLS with 127.0.0.1 [127.0.0.1] failed: ` and `why` (where
/// `{cafile}` stands for CAFILE's path), in words and no enum name.
fn refused_in_words(names: &[&str], signer: Signer, dates: Dates, why: &str) {
    let ca = Ca::new();
    let (c, k) = ca.leaf_with(names, signer, dates);
    let fake = server(c, k);
    let env = env_for(&fake, &ca, "");
    let r = env.send(&["-v", "-f", "s@example.org", "a@remote.example"], MSG);
    r.expect(0, &env);
    let why = why.replace(
        "{cafile}",
        &env.dir.path().join("ca.pem").display().to_string(),
    );
    let want = format!("4.4.1 TLS with 127.0.0.1 [127.0.0.1] failed: {why}\n");
    deferred_and_nothing_sent(&env, &fake, "");
    let q = env.mailq().stdout();
    assert!(q.contains(&want), "want {want:?} in\n{q}");
    let logged = want.trim_start_matches("4.4.1 ");
    assert!(
        r.stderr().contains(logged),
        "want {logged:?} in\n{}",
        r.show()
    );
    for text in [&q, &r.stderr()] {
        for enum_name in [
            "Other(",
            "OtherError",
            "Context",
            "CaUsedAsEndEntity",
            "DnsName(",
        ] {
            assert!(!text.contains(enum_name), "{enum_name} in\n{text}");
        }
    }
}

#[test]
fn a_wrong_host_name_defers_with_the_names_the_certificate_has() {
    refused_in_words(
        &["other.example", "mx.other.example"],
        Signer::Ca,
        Dates::Now,
        "wrong name: the certificate of 127.0.0.1 (subject CN=leaf.test) is for other.example, \
         mx.other.example, not for 127.0.0.1",
    );
}

#[test]
fn a_self_signed_certificate_without_pin_defers_as_an_unknown_issuer() {
    refused_in_words(
        &["127.0.0.1"],
        Signer::Itself,
        Dates::Now,
        "unknown issuer: the certificate of 127.0.0.1 (subject CN=leaf.test) is self-signed and \
         not in CAFILE {cafile}",
    );
}

#[test]
fn a_certificate_from_another_ca_defers_as_an_unknown_issuer() {
    refused_in_words(
        &["127.0.0.1"],
        Signer::OtherCa,
        Dates::Now,
        "unknown issuer: the certificate of 127.0.0.1 (subject CN=leaf.test) is issued by \
         CN=other CA, which is not in CAFILE {cafile}",
    );
}

#[test]
fn an_expired_certificate_defers_with_its_date() {
    refused_in_words(
        &["127.0.0.1"],
        Signer::Ca,
        Dates::Expired,
        "the certificate of 127.0.0.1 (subject CN=leaf.test) expired on 2002-01-01 00:00:00 UTC",
    );
}

#[test]
fn a_certificate_not_yet_valid_defers_with_its_date() {
    refused_in_words(
        &["127.0.0.1"],
        Signer::Ca,
        Dates::Future,
        "the certificate of 127.0.0.1 (subject CN=leaf.test) is not valid before 2090-01-01 \
         00:00:00 UTC",
    );
}

#[test]
fn a_ca_certificate_as_server_certificate_not_in_cafile_defers() {
    refused_in_words(
        &["127.0.0.1"],
        Signer::ItselfAsCa,
        Dates::Now,
        "CA certificate used as server certificate: the certificate of 127.0.0.1 (subject \
         CN=leaf.test) is a CA certificate (CA:TRUE), and it is not in CAFILE {cafile} byte for \
         byte (put this very certificate in CAFILE to trust it)",
    );
}

/// A server whose certificate (CA:TRUE, self-signed, as `openssl req -x509`
/// makes it) is itself in CAFILE, valid at `dates`, for `names`.
fn env_trusting_the_very_certificate(names: &[&str], dates: Dates) -> (Env, FakeSmtp) {
    env_trusting_the_very_certificate_of("leaf.test", names, dates)
}

fn env_trusting_the_very_certificate_of(cn: &str, names: &[&str], dates: Dates) -> (Env, FakeSmtp) {
    let ca = Ca::new();
    let (c, k) = ca.leaf_named(cn, names, Signer::ItselfAsCa, dates);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64_lines(c.as_ref())
    );
    let fake = server(c, k);
    let env = env_for(&fake, &ca, "");
    // CAFILE: the harness CA, then the server's own certificate.
    std::fs::write(env.dir.path().join("ca.pem"), format!("{}{pem}", ca.pem())).unwrap();
    (env, fake)
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    b.as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_ca_certificate_that_is_itself_in_cafile_delivers() {
    let (env, fake) = env_trusting_the_very_certificate(&["localhost", "127.0.0.1"], Dates::Now);
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
    assert!(env.queue_ids().is_empty());
}

#[test]
fn a_certificate_in_cafile_without_subject_alt_name_is_matched_by_its_cn() {
    // `openssl req -x509 -subj /CN=localhost` without -addext: no
    // subjectAltName. OpenSSL then takes the CN for the host name; so do we,
    // for a certificate trusted as it is.
    let (env, fake) = env_trusting_the_very_certificate_of("localhost", &[], Dates::Now);
    let cafile = env.dir.path().join("ca.pem");
    let conf = |host: &str| {
        format!(
            "SMARTHOST {host}\nPORT {}\nSECURETRANSFER\nCAFILE {}\nSMTP_TIMEOUT 3s\n",
            fake.port(),
            cafile.display()
        )
    };
    // An IP address is never matched against a CN (nor by OpenSSL).
    env.write_conf(&conf("127.0.0.1"));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains(
            "wrong name: the certificate of 127.0.0.1 (subject CN=localhost) names no host \
             (no DNS name or IP address in subjectAltName), not 127.0.0.1"
        ),
        "{q}"
    );
    assert!(fake.messages().is_empty());
    // The CN names localhost.
    env.write_conf(&conf("localhost"));
    env.flush().expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
    assert!(env.queue_ids().is_empty());
}

#[test]
fn a_certificate_in_cafile_must_still_name_the_host_and_be_valid() {
    for (names, dates, why) in [
        (
            &["other.example"][..],
            Dates::Now,
            "wrong name: the certificate of 127.0.0.1 (subject CN=leaf.test) is for \
             other.example, not for 127.0.0.1",
        ),
        (
            &["127.0.0.1"][..],
            Dates::Expired,
            "the certificate of 127.0.0.1 (subject CN=leaf.test) expired on 2002-01-01 00:00:00 UTC",
        ),
    ] {
        let (env, fake) = env_trusting_the_very_certificate(names, dates);
        env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
            .expect(0, &env);
        deferred_and_nothing_sent(&env, &fake, "");
        let q = env.mailq().stdout();
        assert!(q.contains(why), "want {why:?} in\n{q}");
    }
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
    let want = format!(
        "4.4.1 TLS with 127.0.0.1 [127.0.0.1] failed: fingerprints do not match: the certificate \
         of 127.0.0.1 (subject CN=leaf.test) has SHA-256 {right}, FINGERPRINT is {}\n",
        "00".repeat(32)
    );
    let q = env.mailq().stdout();
    assert!(q.contains(&want), "want {want:?} in\n{q}");
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

#[test]
fn a_starttls_handshake_that_times_out_under_opportunistic_tls_is_retried_in_plain_text() {
    // The server answers STARTTLS, then trickles its handshake: cut off at
    // SMTP_TIMEOUT; OPPORTUNISTIC_TLS then delivers on a new plain-text
    // connection (Postfix's "may"), and says why.
    let fake = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into(), "STARTTLS".into()],
        trickle: Some(smtpd::Trickle::StartTls),
        ..Behavior::default()
    });
    let ca = Ca::new();
    let env = env_for(&fake, &ca, "STARTTLS\nOPPORTUNISTIC_TLS\n");
    let r = env.send(&["-v", "-f", "s@example.org", "a@remote.example"], MSG);
    r.expect(0, &env);
    assert_eq!(fake.messages().len(), 1, "{}", env.mailq().stdout());
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.commands()
            .iter()
            .filter(|c| c.starts_with("STARTTLS"))
            .count(),
        1,
        "{:?}",
        fake.commands()
    );
    assert!(
        r.stderr().contains(
            "in opportunistic TLS mode, TLS with 127.0.0.1 [127.0.0.1] failed: the connection \
             failed during the TLS handshake: timeout after 3s; trying again in plain text"
        ),
        "{}",
        r.show()
    );
}

#[test]
fn a_530_after_our_own_refusal_to_send_a_password_in_plain_text_defers() {
    // A plain-text server that wants AUTH; auth.conf has a password, but
    // INSECURE is not set: nothing is sent, and the 530 defers (it is our
    // doing, not the recipient's). Without a password to withhold, the same
    // 530 bounces as any 5xx.
    for with_password in [true, false] {
        let fake = FakeSmtp::start(Behavior {
            ehlo: vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into()],
            mail_reply_raw: Some("530 5.7.0 Authentication required\r\n".into()),
            ..Behavior::default()
        });
        let env = Env::new("");
        let auth = env.dir.path().join("auth.conf");
        std::fs::write(&auth, "user|127.0.0.1:secret\n").unwrap();
        let authpath = if with_password {
            format!("AUTHPATH {}\n", auth.display())
        } else {
            String::new()
        };
        env.write_conf(&format!(
            "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 3s\n{authpath}",
            fake.port()
        ));
        env.send(&["-f", "root", "a@remote.example"], MSG)
            .expect(0, &env);
        assert!(
            !fake.commands().iter().any(|c| c.starts_with("AUTH")),
            "{:?}",
            fake.commands()
        );
        let q = env.mailq().stdout();
        if with_password {
            let want = "Status\t: deferred, 1 attempt";
            assert!(q.contains(want), "{q}");
            let want = "4.7.0 no password sent to 127.0.0.1 [127.0.0.1]: the connection is not \
                        encrypted, and INSECURE is not set; 127.0.0.1 [127.0.0.1] said 530 5.7.0 \
                        Authentication required (in reply to MAIL FROM)";
            assert!(q.contains(want), "want {want:?} in\n{q}");
            assert!(env.messages("root").is_empty(), "{}", env.dump());
        } else {
            assert!(env.queue_ids().is_empty(), "{q}");
            let b = env.messages("root");
            assert_eq!(b.len(), 1, "{}", env.dump());
            assert!(
                b[0].contains("530 5.7.0 Authentication required"),
                "{}",
                b[0]
            );
        }
    }
}
