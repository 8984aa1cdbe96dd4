//! MTA-STS (RFC 8461) and DANE (RFC 7672) for MX delivery, through the
//! real binary: a fake DNS server (NAMESERVER, on loopback: trusted for
//! the AD bit), fake SMTP servers with STARTTLS on 127.0.0.N:25 and a fake
//! HTTPS policy server on 127.0.0.N:443 (root binds both), certificates
//! from a test CA in CAFILE.
//!
//! Each test has addresses of its own (tests run in parallel).

#[path = "support/dns.rs"]
mod fakedns;
#[path = "support/https.rs"]
mod https;
#[path = "support/smtpd.rs"]
mod smtpd;
mod support;
#[path = "support/tlsworld.rs"]
mod tlsworld;

use fakedns::{FakeDns, Record};
use https::{Answer, FakeHttps};
use sha2::{Digest, Sha256};
use smtpd::{Behavior, FakeSmtp};
use support::*;
use tlsworld::*;

const MSG: &str = "Subject: policy\n\nbody\n";

/// The policy host on 127.0.0.`last`:443, its certificate from `ca`.
fn web(last: u8, ca: &Ca, domain: &str, answer: Answer) -> FakeHttps {
    let leaf = ca.leaf(&format!("mta-sts.{domain}"), false);
    FakeHttps::start(&format!("127.0.0.{last}:443"), server_config(&leaf), answer)
}

/// An installation asking `dns`, trusting `ca`.
fn env(dns: &FakeDns, ca: &Ca, extra: &str) -> Env {
    let env = Env::new("");
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.issuer.pem()).unwrap();
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\nCAFILE {}\n{extra}",
        dns.addr(),
        ca_file.display()
    ));
    env
}

/// Sends to `rcpt` with -v; the log lines.
fn send(env: &Env, rcpt: &str) -> String {
    let run = env.send(&["-v", "-f", "s@sender.test", rcpt], MSG);
    run.expect(0, env);
    run.stderr()
}

fn mailq(env: &Env) -> String {
    env.mailq().stdout()
}

#[test]
fn mta_sts_enforce_delivers_to_a_listed_mx_over_verified_starttls() {
    if !need_root("mta_sts_enforce") {
        return;
    }
    let ca = Ca::new();
    let mx_leaf = ca.leaf("mx.sts1.test", false);
    let dns = FakeDns::start(vec![
        mx("sts1.test", "mx.sts1.test"),
        a("mx.sts1.test", 41),
        txt("_mta-sts.sts1.test", "v=STSv1; id=2026a"),
        a("mta-sts.sts1.test", 42),
    ]);
    let server = smtp(41, Some(&mx_leaf));
    let site = web(
        42,
        &ca,
        "sts1.test",
        Answer::Policy(policy("enforce", &["mx.sts1.test"])),
    );
    // dma.conf asks for no TLS at all: the policy does.
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@sts1.test");
    let m = server.messages();
    assert_eq!(m.len(), 1, "{log}\n{}", mailq(&env));
    assert!(m[0].tls, "not over TLS: {log}");
    assert!(
        log.contains("MTA-STS policy of sts1.test (enforce, id 2026a, fresh) applies"),
        "{log}"
    );
    assert!(
        log.contains("TLS with mx.sts1.test [127.0.0.41]: certificate verified, as MTA-STS policy of sts1.test (enforce, id 2026a, fresh) requires"),
        "{log}"
    );
    let req = site.requests();
    assert_eq!(req.len(), 1);
    assert!(
        req[0].starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
            && req[0].contains("Host: mta-sts.sts1.test"),
        "{req:?}"
    );
    assert!(env.spool.join("mta-sts/sts1.test").exists());
    // The next message: the same id, the cached policy, no fetch.
    let log = send(&env, "b@sts1.test");
    assert!(log.contains("(enforce, id 2026a, cached) applies"), "{log}");
    assert_eq!(site.requests().len(), 1);
    assert_eq!(server.messages().len(), 2);
}

#[test]
fn mta_sts_enforce_defers_an_unlisted_mx_a_bad_certificate_and_no_starttls() {
    if !need_root("mta_sts_refusals") {
        return;
    }
    let ca = Ca::new();
    let other = Ca::new();
    let dns = FakeDns::start(vec![
        // Its only MX is not in the policy.
        mx("sts2.test", "mx.elsewhere.test"),
        a("mx.elsewhere.test", 43),
        txt("_mta-sts.sts2.test", "v=STSv1; id=1"),
        a("mta-sts.sts2.test", 44),
        // A listed MX whose certificate is signed by a CA not trusted.
        mx("sts3.test", "mx.sts3.test"),
        a("mx.sts3.test", 45),
        txt("_mta-sts.sts3.test", "v=STSv1; id=1"),
        a("mta-sts.sts3.test", 44),
        // A listed MX without STARTTLS.
        mx("sts4.test", "mx.sts4.test"),
        a("mx.sts4.test", 46),
        txt("_mta-sts.sts4.test", "v=STSv1; id=1"),
        a("mta-sts.sts4.test", 44),
    ]);
    let elsewhere = smtp(43, None);
    let untrusted = smtp(45, Some(&other.leaf("mx.sts3.test", false)));
    let plain = smtp(46, None);
    // One policy host serves the three domains (a certificate for each
    // name is not needed: one for sts2 will not do for sts3 and sts4).
    let mut p = policy("enforce", &["mx.sts2.test", "mx.sts3.test", "*.sts4.test"]);
    p.push_str("\r\n");
    let names = [
        "mta-sts.sts2.test",
        "mta-sts.sts3.test",
        "mta-sts.sts4.test",
    ];
    let leaf = ca.make(&names, "mta-sts", false, false);
    let _site = FakeHttps::start("127.0.0.44:443", server_config(&leaf), Answer::Policy(p));
    let env = env(&dns, &ca, "SECURETRANSFER\nSTARTTLS\nOPPORTUNISTIC_TLS\n");
    let log = send(&env, "a@sts2.test");
    send(&env, "b@sts3.test");
    send(&env, "c@sts4.test");
    let q = mailq(&env);
    assert!(
        q.contains(
            "4.7.5 MTA-STS policy of sts2.test (enforce, id 1, fresh): MX host mx.elsewhere.test matches none of its mx patterns"
        ),
        "{log}\n{q}"
    );
    assert!(
        q.contains("MTA-STS policy of sts3.test (enforce, id 1, fresh): TLS with mx.sts3.test [127.0.0.45] failed"),
        "{q}"
    );
    assert!(
        q.contains(
            "4.7.5 MTA-STS policy of sts4.test (enforce, id 1, fresh): mx.sts4.test [127.0.0.46] does not offer STARTTLS"
        ),
        "{q}"
    );
    // Nothing went anywhere: not to the unlisted host, not in plain text
    // after the refused certificate (OPPORTUNISTIC_TLS notwithstanding).
    assert_eq!(elsewhere.connections(), 0);
    assert!(untrusted.messages().is_empty());
    assert!(
        !untrusted.commands().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        untrusted.commands()
    );
    assert!(plain.messages().is_empty());
    assert_eq!(env.queue_ids().len(), 3);
}

#[test]
fn mta_sts_testing_mode_delivers_and_logs() {
    if !need_root("mta_sts_testing") {
        return;
    }
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx("sts5.test", "mx.unlisted.test"),
        a("mx.unlisted.test", 47),
        txt("_mta-sts.sts5.test", "v=STSv1; id=t1"),
        a("mta-sts.sts5.test", 48),
    ]);
    let server = smtp(47, None);
    let _site = web(
        48,
        &ca,
        "sts5.test",
        Answer::Policy(policy("testing", &["mx.sts5.test"])),
    );
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@sts5.test");
    assert_eq!(server.messages().len(), 1, "{log}");
    assert!(!server.messages()[0].tls);
    assert!(
        log.contains("MTA-STS policy of sts5.test (testing, id t1, fresh): MX host mx.unlisted.test matches none of its mx patterns (\"mx.sts5.test\"): enforce mode would not try it"),
        "{log}"
    );
    assert!(
        log.contains("mx.unlisted.test [127.0.0.47]: no TLS; enforce mode would not deliver here"),
        "{log}"
    );
}

#[test]
fn a_cached_mta_sts_policy_survives_a_failed_fetch() {
    if !need_root("mta_sts_stale") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.sts6.test", false);
    let dns = FakeDns::start(vec![
        mx("sts6.test", "mx.sts6.test"),
        a("mx.sts6.test", 49),
        txt("_mta-sts.sts6.test", "v=STSv1; id=1"),
        a("mta-sts.sts6.test", 50),
    ]);
    let good = smtp(49, Some(&leaf));
    let site = web(
        50,
        &ca,
        "sts6.test",
        Answer::Policy(policy("enforce", &["mx.sts6.test"])),
    );
    let env = env(&dns, &ca, "");
    send(&env, "a@sts6.test");
    assert_eq!(good.messages().len(), 1);
    drop(site);
    // An attacker now answers DNS: a new id, an MX of theirs without TLS,
    // and the policy host unreachable.
    let evil_dns = FakeDns::start(vec![
        mx("sts6.test", "mx.evil.test"),
        a("mx.evil.test", 51),
        txt("_mta-sts.sts6.test", "v=STSv1; id=2"),
        a("mta-sts.sts6.test", 50),
    ]);
    let evil = smtp(51, None);
    let ca_file = env.dir.path().join("ca.pem");
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\nCAFILE {}\n",
        evil_dns.addr(),
        ca_file.display()
    ));
    let log = send(&env, "b@sts6.test");
    assert_eq!(evil.connections(), 0, "{log}");
    assert!(log.contains("fetching https://mta-sts.sts6.test/"), "{log}");
    let q = mailq(&env);
    assert!(
        q.contains("4.7.5 MTA-STS policy of sts6.test (enforce, id 1, stale): MX host mx.evil.test matches none"),
        "{log}\n{q}"
    );
}

#[test]
fn mta_sts_policy_responses_too_big_or_too_slow_are_cut_off() {
    if !need_root("mta_sts_bounds") {
        return;
    }
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx("sts7.test", "mx.sts7.test"),
        a("mx.sts7.test", 52),
        txt("_mta-sts.sts7.test", "v=STSv1; id=1"),
        a("mta-sts.sts7.test", 53),
    ]);
    let server = smtp(52, None);
    let mut big = policy("enforce", &["mx.other.test"]);
    big.push_str(&"x-padding: 0123456789abcdef0123456789abcdef\r\n".repeat(1700));
    let site = web(53, &ca, "sts7.test", Answer::Policy(big));
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@sts7.test");
    assert!(log.contains("more than 64 KiB"), "{log}");
    // No policy in force: delivered as dma.conf says.
    assert_eq!(server.messages().len(), 1, "{log}");
    // One byte every 200 ms: given up within SMTP_TIMEOUT (3s).
    site.set(Answer::Trickle);
    let start = std::time::Instant::now();
    let log = send(&env, "b@sts7.test");
    assert!(log.contains("timeout after 3s"), "{log}");
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    assert_eq!(server.messages().len(), 2, "{log}");
    // A redirect is not followed.
    site.set(Answer::Raw(
        b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    let log = send(&env, "c@sts7.test");
    assert!(log.contains("HTTP 301"), "{log}");
    assert_eq!(site.requests().len(), 3);
}

#[test]
fn dane_3_1_1_delivers_to_a_self_signed_server_and_a_mismatch_defers() {
    if !need_root("dane_311") {
        return;
    }
    let ca = Ca::new();
    // Self-signed, for a name that is not the MX's: DANE-EE checks neither.
    let leaf = ca.leaf("whatever.invalid", true);
    let wrong = ca.leaf("whatever.invalid", true);
    let dns = FakeDns::start(vec![
        mx("dane1.test", "mx.dane1.test"),
        secure("dane1.test"),
        a("mx.dane1.test", 54),
        secure("mx.dane1.test"),
        tlsa_311("mx.dane1.test", &leaf),
        secure("_25._tcp.mx.dane1.test"),
        mx("dane2.test", "mx.dane2.test"),
        secure("dane2.test"),
        a("mx.dane2.test", 55),
        secure("mx.dane2.test"),
        tlsa_311("mx.dane2.test", &wrong),
        secure("_25._tcp.mx.dane2.test"),
    ]);
    let good = smtp(54, Some(&leaf));
    let bad = smtp(55, Some(&leaf));
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@dane1.test");
    let m = good.messages();
    assert_eq!(m.len(), 1, "{log}\n{}", mailq(&env));
    assert!(m[0].tls);
    assert!(
        log.contains("DANE for mx.dane1.test: TLS required"),
        "{log}"
    );
    assert!(
        log.contains("TLS with mx.dane1.test [127.0.0.54]: certificate verified, as DANE (TLSA records of _25._tcp.mx.dane1.test: 3 1 1 "),
        "{log}"
    );
    let log = send(&env, "b@dane2.test");
    assert!(bad.messages().is_empty(), "{log}");
    let q = mailq(&env);
    assert!(
        q.contains("4.7.5 DANE (TLSA records of _25._tcp.mx.dane2.test: 3 1 1 "),
        "{log}\n{q}"
    );
    assert!(
        q.contains("TLS with mx.dane2.test [127.0.0.55] failed"),
        "{q}"
    );
}

#[test]
fn dane_needs_starttls_and_a_tlsa_answer() {
    if !need_root("dane_failures") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.dane3.test", true);
    let dns = FakeDns::start(vec![
        // TLSA, but the server offers no STARTTLS.
        mx("dane3.test", "mx.dane3.test"),
        secure("dane3.test"),
        a("mx.dane3.test", 56),
        secure("mx.dane3.test"),
        tlsa_311("mx.dane3.test", &leaf),
        secure("_25._tcp.mx.dane3.test"),
        // The TLSA lookup fails: the host is not used.
        mx("dane4.test", "mx.dane4.test"),
        secure("dane4.test"),
        a("mx.dane4.test", 57),
        secure("mx.dane4.test"),
        Record::ServFail("_25._tcp.mx.dane4.test".into()),
    ]);
    let plain = smtp(56, None);
    let other = smtp(57, None);
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@dane3.test");
    send(&env, "b@dane4.test");
    assert!(plain.messages().is_empty(), "{log}");
    assert_eq!(other.connections(), 0);
    let q = mailq(&env);
    assert!(
        q.contains("4.7.5 DANE (TLSA records of _25._tcp.mx.dane3.test: 3 1 1")
            && q.contains("mx.dane3.test [127.0.0.56] does not offer STARTTLS"),
        "{log}\n{q}"
    );
    assert!(
        q.contains("4.7.5 DANE: TLSA lookup for _25._tcp.mx.dane4.test failed"),
        "{q}"
    );
}

#[test]
fn without_the_ad_bit_there_is_no_dane_and_the_log_says_why() {
    if !need_root("dane_insecure") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.dane5.test", true);
    // The same TLSA record, but nothing is signed.
    let dns = FakeDns::start(vec![
        mx("dane5.test", "mx.dane5.test"),
        a("mx.dane5.test", 58),
        tlsa_311("mx.dane5.test", &leaf),
    ]);
    let server = smtp(58, None);
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@dane5.test");
    assert_eq!(server.messages().len(), 1, "{log}");
    assert!(!server.messages()[0].tls);
    assert!(
        log.contains(
            "DANE not used for dane5.test: the MX records of dane5.test are not DNSSEC-signed"
        ),
        "{log}"
    );
}

#[test]
fn dane_wins_over_mta_sts_and_tls_policy_turns_either_off() {
    if !need_root("dane_and_sts") {
        return;
    }
    let ca = Ca::new();
    // Self-signed: MTA-STS alone would refuse it.
    let leaf = ca.leaf("mx.both.test", true);
    let dns = FakeDns::start(vec![
        mx("both.test", "mx.both.test"),
        secure("both.test"),
        a("mx.both.test", 59),
        secure("mx.both.test"),
        tlsa_311("mx.both.test", &leaf),
        secure("_25._tcp.mx.both.test"),
        txt("_mta-sts.both.test", "v=STSv1; id=1"),
        a("mta-sts.both.test", 60),
    ]);
    let server = smtp(59, Some(&leaf));
    let site = web(
        60,
        &ca,
        "both.test",
        // It does not even list the host: DANE decides there all the same.
        Answer::Policy(policy("enforce", &["mx.listed.test"])),
    );
    let env = env(&dns, &ca, "");
    let log = send(&env, "a@both.test");
    assert_eq!(server.messages().len(), 1, "{log}\n{}", mailq(&env));
    assert!(server.messages()[0].tls);
    // MTA-STS alone: the host is not listed.
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\nCAFILE {}\nTLS_POLICY mta-sts\n",
        dns.addr(),
        env.dir.path().join("ca.pem").display()
    ));
    let log = send(&env, "b@both.test");
    assert_eq!(server.messages().len(), 1, "{log}");
    assert!(
        mailq(&env).contains(
            "4.7.5 MTA-STS policy of both.test (enforce, id 1, cached): MX host mx.both.test matches none"
        ),
        "{log}"
    );
    // Neither: delivered as dma.conf says (plain text), no policy fetched.
    let fetched = site.requests().len();
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\nTLS_POLICY none\n",
        dns.addr(),
    ));
    let log = send(&env, "c@both.test");
    let m = server.messages();
    assert_eq!(m.len(), 2, "{log}");
    assert!(!m[1].tls);
    assert_eq!(site.requests().len(), fetched);
}

#[test]
fn bv_with_v_shows_the_policy_of_each_mx() {
    if !need_root("bv_policy") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.show.test", true);
    let dns = FakeDns::start(vec![
        mx("show.test", "mx.show.test"),
        secure("show.test"),
        a("mx.show.test", 61),
        secure("mx.show.test"),
        tlsa_311("mx.show.test", &leaf),
        secure("_25._tcp.mx.show.test"),
        mx("plain.test", "mx.plain.test"),
        a("mx.plain.test", 62),
    ]);
    let env = env(&dns, &ca, "");
    let mut c = env.cmd("sendmail");
    c.args(["-bv", "-v", "a@show.test", "b@plain.test"]);
    let run = env.run(c, b"", None);
    run.expect(0, &env);
    let out = run.stdout();
    assert!(out.contains("MX hosts of show.test, in order:\n"), "{out}");
    assert!(
        out.contains("  mx.show.test [127.0.0.61]: TLS required by DANE (TLSA records of _25._tcp.mx.show.test: 3 1 1 "),
        "{out}"
    );
    assert!(
        out.contains("  (DANE not used for plain.test: the MX records of plain.test are not DNSSEC-signed)\n  mx.plain.test [127.0.0.62]: TLS as dma.conf says\n"),
        "{out}"
    );
    // Without -v, no lookups.
    let mut c = env.cmd("sendmail");
    c.args(["-bv", "a@show.test"]);
    let before = dns.queries();
    let run = env.run(c, b"", None);
    run.expect(0, &env);
    assert!(!run.stdout().contains(", in order:"), "{}", run.stdout());
    assert_eq!(dns.queries(), before);
}

#[test]
fn a_queue_run_asks_a_failing_policy_host_once() {
    if !need_root("mta_sts_memo") {
        return;
    }
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx("sts8.test", "mx.sts8.test"),
        a("mx.sts8.test", 63),
        txt("_mta-sts.sts8.test", "v=STSv1; id=1"),
        a("mta-sts.sts8.test", 64),
    ]);
    let server = smtp(63, None);
    let site = web(
        64,
        &ca,
        "sts8.test",
        Answer::Raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()),
    );
    // One worker for the hop (several would each ask once, at the same
    // time).
    let env = env(&dns, &ca, "DEFER\nHOP_SESSIONS 1\n");
    for rcpt in ["a@sts8.test", "b@sts8.test", "c@sts8.test"] {
        env.send(&["-f", "s@sender.test", rcpt], MSG)
            .expect(0, &env);
    }
    assert_eq!(env.queue_ids().len(), 3);
    let mut c = env.cmd("sendmail");
    c.args(["-q", "-v"]);
    let run = env.run(c, b"", None);
    run.expect(0, &env);
    // Three messages, one fetch (and no policy: delivered as configured);
    // the second and third message do not wait for a policy host that has
    // just failed.
    assert_eq!(server.messages().len(), 3, "{}", run.show());
    assert_eq!(site.requests().len(), 1, "{}", run.show());
}

#[test]
fn dane_ta_takes_the_mx_name_or_the_recipient_domain() {
    if !need_root("dane_ta_names") {
        return;
    }
    // The CA is not in CAFILE: the TLSA record alone makes it the anchor,
    // and the server sends it in its chain.
    let ca = Ca::new();
    let env_ca = Ca::new();
    let anchor = Sha256::digest(ca.issuer.der().as_ref()).to_vec();
    let chained = |leaf: &Leaf, last: u8| {
        FakeSmtp::start_on(
            &format!("127.0.0.{last}:25"),
            Behavior {
                starttls: Some(server_config_with(leaf, &[ca.issuer.der().clone()])),
                ..Behavior::default()
            },
        )
    };
    let mut records = Vec::new();
    for (domain, last) in [("ta1.test", 65), ("ta2.test", 66), ("ta3.test", 67)] {
        let host = format!("mx.{domain}");
        records.extend([
            mx(domain, &host),
            secure(domain),
            a(&host, last),
            secure(&host),
            Record::Tlsa(format!("_25._tcp.{host}"), 2, 0, 1, anchor.clone()),
            secure(&format!("_25._tcp.{host}")),
        ]);
    }
    let dns = FakeDns::start(records);
    // ta1: the certificate names the recipient domain only; ta2: the MX
    // host; ta3: neither.
    let by_domain = chained(&ca.leaf("ta1.test", false), 65);
    let by_host = chained(&ca.leaf("mx.ta2.test", false), 66);
    let by_neither = chained(&ca.leaf("elsewhere.test", false), 67);
    let env = env(&dns, &env_ca, "");
    let log = send(&env, "a@ta1.test");
    send(&env, "b@ta2.test");
    send(&env, "c@ta3.test");
    assert_eq!(by_domain.messages().len(), 1, "{log}\n{}", mailq(&env));
    assert!(by_domain.messages()[0].tls);
    assert_eq!(by_host.messages().len(), 1, "{}", mailq(&env));
    assert!(by_neither.messages().is_empty());
    let q = mailq(&env);
    assert!(
        q.contains("4.7.5 DANE (TLSA records of _25._tcp.mx.ta3.test: 2 0 1 "),
        "{q}"
    );
    assert_eq!(env.queue_ids().len(), 1);
}
