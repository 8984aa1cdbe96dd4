//! TLS as dma users have it, against a real exim smarthost: a self-signed
//! certificate made by `openssl req -x509` (CA:TRUE) trusted through CAFILE,
//! and OPPORTUNISTIC_TLS with a certificate that cannot be verified (issue
//! 13). Needs root and the unpacked exim (see tests/support/exim.rs).

#[path = "support/exim.rs"]
mod exim;
mod support;

use exim::{Exim, EximOptions, need_exim};
use support::*;

const MSG: &str = "Subject: tls\n\nline one\n.leading dot\nlast line\n";

/// A self-signed certificate for `localhost` and 127.0.0.1 as OpenSSL 3's
/// `openssl req -x509` makes it (basicConstraints critical CA:TRUE): (cert
/// PEM, key PEM). Made by the openssl command when there is one, else by
/// rcgen with the same basic constraints.
fn openssl_req_x509(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("x509.pem"), dir.join("x509.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout).to_string();
        assert!(text.contains("CA:TRUE"), "{text}");
        return (
            std::fs::read_to_string(&cert).unwrap(),
            std::fs::read_to_string(&key).unwrap(),
        );
    }
    eprintln!("no openssl command: an rcgen certificate with CA:TRUE instead");
    self_signed("localhost", true)
}

/// A self-signed certificate for `localhost` and 127.0.0.1 with the common
/// name `cn`, CA:TRUE or not: (cert PEM, key PEM).
fn self_signed(cn: &str, ca: bool) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn conf(exim: &Exim, cafile: &std::path::Path, extra: &str) -> String {
    format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nSTARTTLS\nCAFILE {}\nSMTP_TIMEOUT 5s\n{extra}",
        exim.port(),
        cafile.display()
    )
}

/// The message arrived whole: our headers, then the body byte for byte.
fn arrived_whole(exim: &Exim, n: usize) {
    let m = exim.messages();
    assert_eq!(m.len(), n, "{}", exim.log());
    let last = &m[n - 1];
    assert_eq!(last.rcpts, ["ok@example.org"]);
    assert_eq!(last.sender, "s@example.net");
    assert!(last.data.contains("\nSubject: tls\n"), "{}", last.data);
    assert!(
        last.data
            .ends_with("\n\nline one\n.leading dot\nlast line\n"),
        "{}",
        last.data
    );
}

#[test]
fn cafile_trusts_a_self_signed_ca_certificate_from_openssl_req_x509() {
    if !need_exim("exim_cafile_self_signed") {
        return;
    }
    let env = Env::new("");
    let (cert, key) = openssl_req_x509(env.dir.path());
    let exim = Exim::start(EximOptions {
        tls: true,
        certificate: Some((cert.clone(), key)),
        ..EximOptions::default()
    });
    let cafile = env.dir.path().join("server.pem");
    std::fs::write(&cafile, &cert).unwrap();
    env.write_conf(&conf(&exim, &cafile, ""));
    let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
    r.expect(0, &env);
    arrived_whole(&exim, 1);
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
    // Over TLS, verified: exim logs the cipher; we log nothing unverified.
    assert!(exim.log().contains(" X=TLS"), "{}", exim.log());
    assert!(!r.stderr().contains("unverified"), "{}", r.show());
}

#[test]
fn opportunistic_tls_delivers_over_an_unverified_certificate_and_says_so_each_time() {
    if !need_exim("exim_opportunistic_unverified") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        certificate: Some(self_signed("opportunistic.test", false)),
        ..EximOptions::default()
    });
    let env = Env::new("");
    // CAFILE holds the harness's CA, which did not sign what exim shows.
    env.write_conf(&conf(&exim, &exim.ca_path(), "OPPORTUNISTIC_TLS\n"));
    let want = format!(
        "TLS with 127.0.0.1 [127.0.0.1] is unverified: unknown issuer: the certificate of 127.0.0.1 \
         (subject CN=opportunistic.test) is self-signed and not in CAFILE {}; OPPORTUNISTIC_TLS \
         delivers over it all the same",
        exim.ca_path().display()
    );
    for n in 1..=2 {
        let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
        r.expect(0, &env);
        arrived_whole(&exim, n);
        assert!(r.stderr().contains(&want), "want {want:?} in\n{}", r.show());
    }
    assert_eq!(exim.log().matches(" X=TLS").count(), 2, "{}", exim.log());
    assert!(env.queue_ids().is_empty());
}

#[test]
fn opportunistic_tls_sends_no_password_over_an_unverified_certificate_and_defers() {
    if !need_exim("exim_opportunistic_auth") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        users: vec![("user".into(), "s3cret".into())],
        mechanisms: vec!["PLAIN".into()],
        require_auth: true,
        certificate: Some(self_signed("opportunistic.test", false)),
        ..EximOptions::default()
    });
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    std::fs::write(&auth, "user|127.0.0.1:s3cret\n").unwrap();
    let base = conf(
        &exim,
        &exim.ca_path(),
        &format!("OPPORTUNISTIC_TLS\nAUTHPATH {}\n", auth.display()),
    );
    env.write_conf(&base);
    let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
    r.expect(0, &env);
    // No AUTH command reached exim; exim refused MAIL with 530; we deferred.
    assert!(
        !exim.log().contains("harness: AUTH command received"),
        "{}",
        exim.log()
    );
    assert!(exim.messages().is_empty());
    let reason = format!(
        "4.7.0 no password sent to 127.0.0.1 [127.0.0.1]: TLS is unverified (unknown issuer: the \
         certificate of 127.0.0.1 (subject CN=opportunistic.test) is self-signed and not in CAFILE \
         {}), and INSECURE is not set; 127.0.0.1 [127.0.0.1] said 530 5.7.0 authentication \
         required (in reply to MAIL FROM)",
        exim.ca_path().display()
    );
    let q = env.mailq().stdout();
    assert!(q.contains("Status\t: deferred, 1 attempt"), "{q}");
    assert!(q.contains(&reason), "want {reason:?} in\n{q}");
    assert!(
        r.stderr()
            .contains("no password sent to 127.0.0.1 [127.0.0.1]: TLS is unverified"),
        "{}",
        r.show()
    );
    assert_eq!(env.queue_ids().len(), 1);
    // INSECURE allows the password over the unverified connection.
    env.write_conf(&format!("{base}INSECURE\n"));
    env.flush().expect(0, &env);
    arrived_whole(&exim, 1);
    let log = exim.log();
    assert!(log.contains("harness: AUTH command received"), "{log}");
    assert!(
        log.contains("A=PLAIN:user") && log.contains(" X=TLS"),
        "{log}"
    );
    assert!(env.queue_ids().is_empty());
}

#[test]
fn opportunistic_tls_without_starttls_offered_delivers_in_plain_text() {
    if !need_exim("exim_opportunistic_plain") {
        return;
    }
    let exim = Exim::start(EximOptions::default());
    let env = Env::new("");
    let cafile = env.dir.path().join("none.pem");
    std::fs::write(&cafile, self_signed("unused", true).0).unwrap();
    env.write_conf(&conf(&exim, &cafile, "OPPORTUNISTIC_TLS\n"));
    let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
    r.expect(0, &env);
    arrived_whole(&exim, 1);
    assert!(!exim.log().contains(" X=TLS"), "{}", exim.log());
    assert!(
        r.stderr()
            .contains("in opportunistic TLS mode, STARTTLS not available at 127.0.0.1 [127.0.0.1]"),
        "{}",
        r.show()
    );
}

#[test]
fn a_failed_handshake_defers_in_words_or_under_opportunistic_tls_goes_plain() {
    if !need_exim("exim_handshake_failure") {
        return;
    }
    // Exim (GnuTLS) that speaks nothing rustls does: TLS 1.0 only.
    let exim = Exim::start(EximOptions {
        tls: true,
        tls_priority: Some("NORMAL:-VERS-ALL:+VERS-TLS1.0".into()),
        ..EximOptions::default()
    });
    let env = Env::new("");
    env.write_conf(&conf(&exim, &exim.ca_path(), ""));
    env.send(&["-f", "s@example.net", "ok@example.org"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains("4.4.1 TLS with 127.0.0.1 [127.0.0.1] failed: handshake failure: "),
        "{q}"
    );
    assert!(exim.messages().is_empty());
    // OPPORTUNISTIC_TLS: plain text on a new connection, as Postfix's "may".
    env.write_conf(&conf(&exim, &exim.ca_path(), "OPPORTUNISTIC_TLS\n"));
    let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
    r.expect(0, &env);
    assert!(
        r.stderr().contains(
            "in opportunistic TLS mode, TLS with 127.0.0.1 [127.0.0.1] failed: handshake failure: "
        ) && r.stderr().contains("trying again in plain text"),
        "{}",
        r.show()
    );
    arrived_whole(&exim, 1);
    assert!(!exim.log().contains(" X=TLS"), "{}", exim.log());
}

#[test]
fn a_fingerprint_mismatch_is_never_downgraded_by_opportunistic_tls() {
    if !need_exim("exim_opportunistic_pin") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        ..EximOptions::default()
    });
    let env = Env::new("");
    env.write_conf(&conf(
        &exim,
        &exim.ca_path(),
        &format!("OPPORTUNISTIC_TLS\nFINGERPRINT {}\n", "00".repeat(32)),
    ));
    let r = env.send(&["-v", "-f", "s@example.net", "ok@example.org"], MSG);
    r.expect(0, &env);
    assert!(exim.messages().is_empty(), "{}", exim.log());
    assert!(
        !r.stderr().contains("trying again in plain text"),
        "{}",
        r.show()
    );
    let q = env.mailq().stdout();
    assert!(
        q.contains(
            "4.4.1 TLS with 127.0.0.1 [127.0.0.1] failed: fingerprints do not match: the \
             certificate of 127.0.0.1 (subject CN=localhost) has SHA-256 "
        ),
        "{q}"
    );
}
