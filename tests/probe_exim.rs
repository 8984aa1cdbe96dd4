//! `dma --probe` against a real exim (issue 14): what it prints, its exit
//! code, and that it sends no mail. Plain text, STARTTLS and implicit TLS
//! with a CA-verified certificate, a self-signed certificate that is not in
//! CAFILE (refused; accepted unverified under OPPORTUNISTIC_TLS), `--auth`
//! with a right and a wrong password, and a port where nothing listens.
//! Needs root and the unpacked exim (see tests/support/exim.rs); traffic
//! only on loopback.

#[path = "support/exim.rs"]
mod exim;
mod support;

use exim::{Exim, EximOptions, need_exim};
use support::*;

/// `dma -C conf --probe ARGS`.
fn probe(env: &Env, args: &[&str]) -> Run {
    let mut c = env.cmd("dma");
    c.arg("--probe").args(args);
    env.run(c, b"", None)
}

/// Every line `want` is a line of the probe's output.
fn has_lines(r: &Run, want: &[&str]) {
    let out = r.stdout();
    for w in want {
        assert!(out.lines().any(|l| l == *w), "want {w:?} in\n{}", r.show());
    }
}

/// The probe failed with `code` and said why on one line of stderr, which
/// is also the last line of its output.
fn failed(r: &Run, code: i32, why: &str) {
    assert_eq!(r.code(), code, "{}", r.show());
    let err = r.stderr();
    assert_eq!(err.lines().count(), 1, "{}", r.show());
    assert!(
        err.starts_with("dma: ") && err.contains(why),
        "want {why:?}: {}",
        r.show()
    );
    let last = r.stdout().lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        format!("failed: {}", &err["dma: ".len()..].trim_end())
    );
}

/// Exim saw a connection, and no mail transaction on it.
fn no_mail(exim: &Exim) {
    assert!(exim.messages().is_empty(), "{}", exim.log());
    let log = exim.log();
    assert!(log.contains("no MAIL in SMTP connection"), "{log}");
    assert!(!log.contains(" <= "), "{log}");
}

fn tls_conf(exim: &Exim, cafile: &std::path::Path, extra: &str) -> String {
    format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nSTARTTLS\nCAFILE {}\nSMTP_TIMEOUT 5s\n{extra}",
        exim.port(),
        cafile.display()
    )
}

/// A self-signed certificate for `localhost` and 127.0.0.1 named `cn`:
/// (cert PEM, key PEM).
fn self_signed(cn: &str) -> (String, String) {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn plain_text_shows_greeting_capabilities_and_auth_and_sends_nothing() {
    if !need_exim("probe_plain") {
        return;
    }
    let exim = Exim::start(EximOptions::default());
    let env = Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 5s\n",
        exim.port()
    ));
    let r = probe(&env, &[]);
    r.expect(0, &env);
    has_lines(
        &r,
        &[
            &format!("server: 127.0.0.1 [127.0.0.1] port {}", exim.port()),
            "tls: none: not configured (SECURETRANSFER is off)",
            "capability: PIPELINING",
            "auth mechanisms: PLAIN LOGIN CRAM-MD5",
            "result: ok: a delivery would get through",
        ],
    );
    let out = r.stdout();
    assert!(out.contains("\ngreeting: 220 "), "{}", r.show());
    assert!(!out.contains("verification:"), "{}", r.show());
    assert!(r.stderr().is_empty(), "{}", r.show());
    no_mail(&exim);
}

#[test]
fn starttls_and_implicit_tls_with_a_ca_verified_certificate() {
    if !need_exim("probe_tls_verified") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        ..EximOptions::default()
    });
    let env = Env::new("");
    env.write_conf(&tls_conf(&exim, &exim.ca_path(), ""));
    let verified = format!(
        "verification: verified (CAFILE {})",
        exim.ca_path().display()
    );
    let r = probe(&env, &[]);
    r.expect(0, &env);
    has_lines(
        &r,
        &[
            "tls: STARTTLS",
            "certificate subject: CN=localhost",
            "certificate issuer: CN=dma-rs test CA",
            "certificate names: localhost, 127.0.0.1",
            &verified,
            "result: ok: a delivery would get through",
        ],
    );
    let out = r.stdout();
    for want in [
        "\ntls version: TLS 1.",
        "\ncipher suite: TLS",
        "\ncertificate valid: from ",
    ] {
        assert!(out.contains(want), "want {want:?} in\n{}", r.show());
    }
    // The capabilities are those offered over TLS: STARTTLS no more.
    assert!(!out.contains("capability: STARTTLS"), "{}", r.show());
    // The host named on the command line, on the implicit TLS port.
    env.write_conf(&format!(
        "SECURETRANSFER\nCAFILE {}\nSMTP_TIMEOUT 5s\n",
        exim.ca_path().display()
    ));
    let r = probe(&env, &[&format!("localhost:{}", exim.tls_port())]);
    r.expect(0, &env);
    has_lines(
        &r,
        &[
            &format!("server: localhost [127.0.0.1] port {}", exim.tls_port()),
            "tls: implicit TLS",
            "certificate subject: CN=localhost",
            &verified,
        ],
    );
    assert!(r.stdout().contains("\ngreeting: 220 "), "{}", r.show());
    no_mail(&exim);
}

#[test]
fn a_self_signed_certificate_fails_and_opportunistic_tls_takes_it_unverified() {
    if !need_exim("probe_tls_self_signed") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        certificate: Some(self_signed("probe.test")),
        ..EximOptions::default()
    });
    let env = Env::new("");
    // CAFILE holds the harness's CA, which did not sign what exim shows.
    env.write_conf(&tls_conf(&exim, &exim.ca_path(), ""));
    let why = format!(
        "unknown issuer: the certificate of 127.0.0.1 (subject CN=probe.test) is self-signed \
         and not in CAFILE {}",
        exim.ca_path().display()
    );
    let r = probe(&env, &[]);
    has_lines(
        &r,
        &["tls: STARTTLS", &format!("verification: failed: {why}")],
    );
    failed(
        &r,
        69,
        &format!("TLS with 127.0.0.1 [127.0.0.1] failed: {why}"),
    );
    // The same words as a delivery leaves in the queue for mailq.
    env.send(
        &["-f", "s@example.net", "ok@example.org"],
        "Subject: x\n\nx\n",
    )
    .expect(0, &env);
    assert!(env.mailq().stdout().contains(&why), "{}", env.dump());

    env.write_conf(&tls_conf(&exim, &exim.ca_path(), "OPPORTUNISTIC_TLS\n"));
    let r = probe(&env, &[]);
    r.expect(0, &env);
    has_lines(
        &r,
        &[
            "tls: STARTTLS",
            "certificate subject: CN=probe.test",
            "certificate issuer: CN=probe.test",
            &format!("verification: unverified: {why}"),
            "result: ok: a delivery would get through",
        ],
    );
}

#[test]
fn auth_tries_the_credentials_from_auth_conf_and_sends_no_mail() {
    if !need_exim("probe_auth") {
        return;
    }
    let exim = Exim::start(EximOptions {
        tls: true,
        users: vec![("user".into(), "s3cret".into())],
        mechanisms: vec!["PLAIN".into()],
        ..EximOptions::default()
    });
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    let conf = tls_conf(
        &exim,
        &exim.ca_path(),
        &format!("AUTHPATH {}\n", auth.display()),
    );
    env.write_conf(&conf);
    std::fs::write(&auth, "user|127.0.0.1:s3cret\n").unwrap();
    let r = probe(&env, &["--auth"]);
    r.expect(0, &env);
    has_lines(
        &r,
        &[
            "auth mechanisms: PLAIN",
            "auth login: user",
            "auth: accepted (PLAIN)",
            "result: ok: a delivery would get through",
        ],
    );
    assert!(!r.stdout().contains("s3cret"), "{}", r.show());
    let log = exim.log();
    assert!(log.contains("harness: AUTH command received"), "{log}");
    no_mail(&exim);

    // A wrong password: refused, 77; the password shown nowhere.
    std::fs::write(&auth, "user|127.0.0.1:wrong-pw\n").unwrap();
    let r = probe(&env, &["--auth"]);
    failed(
        &r,
        77,
        "authentication failed: 127.0.0.1 [127.0.0.1] said 535",
    );
    assert!(!r.show().contains("wrong-pw"), "{}", r.show());
    no_mail(&exim);

    // No credentials for this host: nothing to try, 78.
    std::fs::write(&auth, "user|elsewhere.test:s3cret\n").unwrap();
    let r = probe(&env, &["--auth"]);
    failed(&r, 78, "has no credentials for 127.0.0.1");

    // Without TLS the password is not sent (no INSECURE): 78, no AUTH.
    std::fs::write(&auth, "user|127.0.0.1:s3cret\n").unwrap();
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nAUTHPATH {}\n",
        exim.port(),
        auth.display()
    ));
    let before = exim.log().matches("harness: AUTH command received").count();
    let r = probe(&env, &["--auth"]);
    failed(
        &r,
        78,
        "no password sent to 127.0.0.1 [127.0.0.1]: the connection is not encrypted",
    );
    let after = exim.log().matches("harness: AUTH command received").count();
    assert_eq!(before, after, "{}", exim.log());
}

#[test]
fn a_port_where_nothing_listens_is_unavailable() {
    // No exim needed: a loopback port that was free a moment ago.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {port}\nCONNECT_TIMEOUT 5s\n"
    ));
    let r = probe(&env, &[]);
    has_lines(&r, &[&format!("server: 127.0.0.1 [127.0.0.1] port {port}")]);
    failed(&r, 69, "connect to 127.0.0.1 [127.0.0.1] failed");
    // No SMARTHOST and no host named: a usage error.
    env.write_conf("");
    let r = probe(&env, &[]);
    assert_eq!(r.code(), 64, "{}", r.show());
    assert!(
        r.stderr().contains("no SMARTHOST in dma.conf"),
        "{}",
        r.show()
    );
}

#[test]
fn auth_is_refused_to_an_ordinary_user_without_c() {
    if !need_root("probe_auth_root_only") {
        return;
    }
    // Without -C (the system's auth.conf): refused before anything is read.
    let mut c = std::process::Command::new(bin());
    c.args(["--probe", "--auth", "127.0.0.1:9"]);
    let env = Env::new("");
    let r = env.run(c, b"", Some("nobody"));
    assert_eq!(r.code(), 77, "{}", r.show());
    assert!(
        r.stderr().contains("--probe --auth is for root"),
        "{}",
        r.show()
    );
    assert!(r.stdout().is_empty(), "{}", r.show());
}
