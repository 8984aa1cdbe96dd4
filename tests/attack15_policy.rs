//! attack15: MTA-STS (RFC 8461) and DANE (RFC 7672) for MX delivery,
//! attacked as a hostile network peer would (DNS answers, the MX host,
//! the policy web server) and as an ordinary local user would. Each test
//! asserts the SAFE outcome: a failing test is an attack that worked.
//! Five attacks worked when first written (b3092ec) and were mended:
//! `an_aaaa_servfail_does_not_strip_dane`,
//! `a_user_can_not_take_the_cache_directory`,
//! `unusable_tlsa_does_not_weaken_an_enforce_policy`,
//! `bv_shows_mx_names_escaped`, `a_dead_policy_host_costs_one_deadline_per_run`.
//!
//! Every test has its own addresses in 127.0.0.100-127.0.0.140 (root binds
//! port 25 and 443 there); run as root:
//! `DMA_TESTS_REQUIRE_ROOT=1 cargo test --locked --test attack15_policy`.

#[path = "support/dns.rs"]
mod fakedns;
#[path = "support/https.rs"]
mod https;
#[path = "support/smtpd.rs"]
mod smtpd;
mod support;
#[path = "support/tlsworld.rs"]
mod tlsworld;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fakedns::{FakeDns, Record};
use https::{Answer, FakeHttps};
use sha2::{Digest, Sha256};
use smtpd::{Behavior, FakeSmtp};
use support::installed::*;
use support::*;
use tlsworld::*;

const MSG: &str = "Subject: attack15\n\nSECRET-BODY-15\n";

// ---------------------------------------------------------------------
// Certificates

fn fingerprint(leaf: &Leaf) -> String {
    Sha256::digest(leaf.cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------
// DNS records

fn mx_pref(domain: &str, pref: u16, host: &str) -> Record {
    Record::Mx(domain.into(), pref, host.into())
}

/// A signed MX domain `domain` -> `mx.<domain>` at 127.0.0.`last`, with
/// a `3 1 1` record for `leaf`, everything signed.
fn dane_domain(domain: &str, last: u8, leaf: &Leaf) -> Vec<Record> {
    let host = format!("mx.{domain}");
    vec![
        mx(domain, &host),
        secure(domain),
        a(&host, last),
        secure(&host),
        tlsa_311(&host, leaf),
        secure(&format!("_25._tcp.{host}")),
    ]
}

/// An MTA-STS domain `domain` -> `mx.<domain>` at 127.0.0.`last`, its
/// TXT record with `id`, its policy host at 127.0.0.`web`.
fn sts_domain(domain: &str, last: u8, id: &str, web: u8) -> Vec<Record> {
    let host = format!("mx.{domain}");
    vec![
        mx(domain, &host),
        a(&host, last),
        txt(&format!("_mta-sts.{domain}"), &format!("v=STSv1; id={id}")),
        a(&format!("mta-sts.{domain}"), web),
    ]
}

// ---------------------------------------------------------------------
// Servers

/// A server on 127.0.0.`last`:25 that offers STARTTLS and answers it 454.
fn smtp_454(last: u8) -> FakeSmtp {
    FakeSmtp::start_on(
        &format!("127.0.0.{last}:25"),
        Behavior {
            ehlo: vec!["PIPELINING".into(), "8BITMIME".into(), "STARTTLS".into()],
            ..Behavior::default()
        },
    )
}

/// Whether a fake SMTP server saw a transaction start (any MAIL command),
/// in plain text or not.
fn saw_mail(s: &FakeSmtp) -> bool {
    s.commands()
        .iter()
        .any(|c| c.to_uppercase().starts_with("MAIL"))
}

/// A server on 127.0.0.`last`:25 that offers STARTTLS, says 220 to it,
/// reads the ClientHello, answers with a fatal TLS alert and hangs up;
/// it answers everything else as a mail server would (to catch a
/// plain-text retry). Its command log.
fn smtp_breaks_tls(last: u8) -> Arc<Mutex<Vec<String>>> {
    let l = TcpListener::bind(format!("127.0.0.{last}:25")).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let log = log2.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut w = c.try_clone()?;
                let mut r = BufReader::new(c);
                w.write_all(b"220 broken.test ESMTP\r\n")?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let cmd = line.trim_end().to_string();
                    log.lock().unwrap().push(cmd.clone());
                    let up = cmd.to_ascii_uppercase();
                    if up.starts_with("EHLO") {
                        w.write_all(b"250-broken.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")?;
                    } else if up == "STARTTLS" {
                        w.write_all(b"220 2.0.0 go ahead\r\n")?;
                        let mut hello = [0; 5];
                        r.read_exact(&mut hello)?;
                        // alert(21), TLS 1.2, length 2: fatal handshake_failure
                        w.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])?;
                        return Ok(());
                    } else if up == "DATA" {
                        w.write_all(b"354 go\r\n")?;
                    } else if up == "QUIT" {
                        w.write_all(b"221 bye\r\n")?;
                        return Ok(());
                    } else {
                        w.write_all(b"250 ok\r\n")?;
                    }
                }
            });
        }
    });
    log
}

/// The policy host on 127.0.0.`last`:443 for `domains`, its certificate
/// from `ca`.
fn web(last: u8, ca: &Ca, domains: &[&str], answer: Answer) -> FakeHttps {
    let names: Vec<String> = domains.iter().map(|d| format!("mta-sts.{d}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let leaf = ca.make(&refs, "mta-sts", false, false);
    FakeHttps::start(&format!("127.0.0.{last}:443"), server_config(&leaf), answer)
}

/// A policy host on 127.0.0.`last`:443 that takes connections and never
/// says a word (a dead web server). Connections accepted so far.
fn dead_web(last: u8) -> Arc<Mutex<usize>> {
    let l = TcpListener::bind(format!("127.0.0.{last}:443")).unwrap();
    let count = Arc::new(Mutex::new(0));
    let c2 = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            *c2.lock().unwrap() += 1;
            held.push(c);
        }
    });
    count
}

/// A policy host on 127.0.0.`last`:443 (a valid certificate from `ca`)
/// whose answer is a 200 text/plain with a body that never ends, sent as
/// fast as it is read.
fn endless_web(last: u8, ca: &Ca, domain: &str) {
    let l = TcpListener::bind(format!("127.0.0.{last}:443")).unwrap();
    let cfg = server_config(&ca.leaf(&format!("mta-sts.{domain}"), false));
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let cfg = cfg.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, c);
                let mut head = Vec::new();
                let mut b = [0; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b)? == 0 {
                        return Ok(());
                    }
                    head.push(b[0]);
                }
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\nmode: enforce\r\nmx: evil.test\r\nmax_age: 86400\r\n")?;
                let chunk = "x-pad: 0123456789abcdef\r\n".repeat(1000);
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(60) {
                    s.write_all(chunk.as_bytes())?;
                }
                Ok(())
            });
        }
    });
}

/// What a [`dns_proxy`] does to the questions of one name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SERVFAIL instead of the answer.
    ServFail,
    /// The upstream answer with its last byte cut off (an RDATA shorter
    /// than its RDLENGTH says).
    Chop,
}

/// A DNS proxy on `bind` (UDP only) in front of `upstream`: questions
/// about a (name, qtype) in `faults` get the fault, the others go to
/// `upstream` and its reply comes back unchanged (AD bit and all).
fn dns_proxy(bind: &str, upstream: SocketAddr, faults: Vec<(String, u16, Fault)>) -> SocketAddr {
    let sock = UdpSocket::bind(bind).unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 65535];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = buf[..n].to_vec();
            let Some((name, qtype)) = question(&q) else {
                continue;
            };
            let fault = faults
                .iter()
                .find(|(nm, t, _)| nm.eq_ignore_ascii_case(&name) && *t == qtype)
                .map(|f| f.2);
            let reply = if fault == Some(Fault::ServFail) {
                let mut r = q.clone();
                r[2] |= 0x80; // QR
                r[3] = (r[3] & 0xf0) | 0x80 | 2; // RA, SERVFAIL
                r
            } else {
                let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                up.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                up.connect(upstream).unwrap();
                up.send(&q).unwrap();
                let mut rb = [0; 65535];
                match up.recv(&mut rb) {
                    Ok(m) if fault == Some(Fault::Chop) => rb[..m - 1].to_vec(),
                    Ok(m) => rb[..m].to_vec(),
                    Err(_) => continue,
                }
            };
            let _ = sock.send_to(&reply, from);
        }
    });
    addr
}

/// The question of a DNS query: its name (dotted, no final dot) and type.
fn question(q: &[u8]) -> Option<(String, u16)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).into_owned());
        i += 1 + len;
    }
    let t = q.get(i + 1..i + 3)?;
    Some((labels.join("."), u16::from_be_bytes([t[0], t[1]])))
}

// ---------------------------------------------------------------------
// The installation

/// An installation asking `ns`, trusting `ca`, with `extra` config lines.
fn env_ns(ns: SocketAddr, ca: &Ca, extra: &str) -> Env {
    let env = Env::new("");
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.issuer.pem()).unwrap();
    env.write_conf(&conf_lines(ns, &ca_file, extra));
    env
}

fn conf_lines(ns: SocketAddr, ca_file: &std::path::Path, extra: &str) -> String {
    format!(
        "NAMESERVER {ns}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\nCAFILE {}\n{extra}",
        ca_file.display()
    )
}

fn env(dns: &FakeDns, ca: &Ca, extra: &str) -> Env {
    env_ns(dns.addr(), ca, extra)
}

/// Sends to `rcpt` with -v (delivery in the foreground); the log lines.
fn send(env: &Env, rcpt: &str) -> String {
    let run = env.send(&["-v", "-f", "s@sender.test", rcpt], MSG);
    run.expect(0, env);
    run.stderr()
}

/// Queues for `rcpt` without delivering.
fn queue_only(env: &Env, rcpt: &str) {
    let mut c = env.cmd("sendmail");
    c.args(["-odq", "-f", "s@sender.test", rcpt]);
    env.run(c, MSG.as_bytes(), None).expect(0, env);
}

fn mailq(env: &Env) -> String {
    env.mailq().stdout()
}

/// No raw control character (but newline and tab, which mailq uses) and
/// no bidi or line-separator character in `s`.
fn clean(s: &str) -> bool {
    !s.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// The dma.conf variants a downgrade must not care about.
fn tls_variants(pinned: &Leaf) -> Vec<String> {
    vec![
        String::new(),
        "OPPORTUNISTIC_TLS\n".into(),
        "SECURETRANSFER\nSTARTTLS\nOPPORTUNISTIC_TLS\n".into(),
        "SECURETRANSFER\nSTARTTLS\nTLS_NO_VERIFY\n".into(),
        "TLS_NO_VERIFY\nOPPORTUNISTIC_TLS\n".into(),
        format!(
            "SECURETRANSFER\nSTARTTLS\nFINGERPRINT {}\n",
            fingerprint(pinned)
        ),
        format!("FINGERPRINT {}\nOPPORTUNISTIC_TLS\n", fingerprint(pinned)),
    ]
}

// ---------------------------------------------------------------------
// 1. Downgrades

/// MTA-STS enforce: an MX that strips STARTTLS, answers it 454, shows a
/// certificate for another name, an expired one, a self-signed one (the
/// one FINGERPRINT pins, in two variants), or breaks the handshake: no
/// MAIL command ever reaches it, whatever dma.conf says of TLS, and mailq
/// says why (4.7.5, naming the policy).
#[test]
fn sts_enforce_never_downgrades() {
    if !need_root("attack15_sts_downgrade") {
        return;
    }
    let ca = Ca::new();
    let doms = [
        "strip.a15.test",
        "s454.a15.test",
        "wrongname.a15.test",
        "expired.a15.test",
        "selfsigned.a15.test",
        "breaks.a15.test",
    ];
    let mut records = Vec::new();
    for (i, d) in doms.iter().enumerate() {
        records.extend(sts_domain(d, 100 + i as u8, "1", 106));
    }
    let dns = FakeDns::start(records);
    let strip = smtp(100, None);
    let s454 = smtp_454(101);
    let wrongname = smtp(102, Some(&ca.leaf("mx.other.a15.test", false)));
    let expired = smtp(
        103,
        Some(&ca.make(&["mx.expired.a15.test"], "mx.expired.a15.test", false, true)),
    );
    let self_leaf = ca.make(
        &["mx.selfsigned.a15.test"],
        "mx.selfsigned.a15.test",
        true,
        false,
    );
    let selfsigned = smtp(104, Some(&self_leaf));
    let breaks = smtp_breaks_tls(105);
    let p = policy("enforce", &["*.strip.a15.test", "*.s454.a15.test"])
        + "mx: *.wrongname.a15.test\r\nmx: *.expired.a15.test\r\nmx: *.selfsigned.a15.test\r\nmx: *.breaks.a15.test\r\n";
    let _site = web(106, &ca, &doms, Answer::Policy(p));
    let want = [
        "mx.strip.a15.test [127.0.0.100] does not offer STARTTLS",
        "mx.s454.a15.test [127.0.0.101] refused STARTTLS",
        "TLS with mx.wrongname.a15.test [127.0.0.102] failed",
        "TLS with mx.expired.a15.test [127.0.0.103] failed",
        "TLS with mx.selfsigned.a15.test [127.0.0.104] failed",
        "mx.breaks.a15.test [127.0.0.105]",
    ];
    for extra in tls_variants(&self_leaf) {
        let env = env(&dns, &ca, &extra);
        let mut logs = String::new();
        for d in doms {
            logs.push_str(&send(&env, &format!("u@{d}")));
        }
        let q = mailq(&env);
        for (d, w) in doms.iter().zip(want) {
            let head = format!("4.7.5 MTA-STS policy of {d} (enforce, id 1, fresh): ");
            assert!(
                q.lines().any(|l| l.contains(&head) && l.contains(w)),
                "[{extra}] {d}: want {head}...{w}\n{q}\n{logs}"
            );
        }
        assert_eq!(env.queue_ids().len(), doms.len(), "[{extra}] {q}");
        for (s, name) in [
            (&strip, "strip"),
            (&s454, "454"),
            (&wrongname, "wrongname"),
            (&expired, "expired"),
            (&selfsigned, "selfsigned"),
        ] {
            assert!(
                !saw_mail(s) && s.messages().is_empty(),
                "[{extra}] {name}: a transaction reached it: {:?}\n{logs}",
                s.commands()
            );
        }
        let b = breaks.lock().unwrap().clone();
        assert!(
            !b.iter().any(|c| c.to_uppercase().starts_with("MAIL")),
            "[{extra}] breaks: plain-text retry: {b:?}\n{logs}"
        );
        assert!(!logs.contains("SECRET-BODY"), "{logs}");
    }
}

/// DANE (usable `3 1 1` records, everything signed): the same MX
/// misbehaviours, and a host whose TLSA records are all unusable (TLS
/// still mandatory): no MAIL command reaches any, whatever dma.conf says,
/// and mailq names DANE with 4.7.5.
#[test]
fn dane_never_downgrades() {
    if !need_root("attack15_dane_downgrade") {
        return;
    }
    let ca = Ca::new();
    let good = ca.make(&["whatever.invalid"], "whatever.invalid", true, false);
    let other = ca.make(&["whatever.invalid"], "whatever.invalid", true, false);
    let mut records = Vec::new();
    records.extend(dane_domain("strip.d15.test", 107, &good));
    records.extend(dane_domain("s454.d15.test", 108, &good));
    records.extend(dane_domain("mismatch.d15.test", 109, &good));
    records.extend(dane_domain("breaks.d15.test", 110, &good));
    // Only unusable records: PKIX-EE (1), a short digest, a 2-byte rdata.
    let host = "mx.unusable.d15.test";
    let tl = format!("_25._tcp.{host}");
    records.extend([
        mx("unusable.d15.test", host),
        secure("unusable.d15.test"),
        a(host, 111),
        secure(host),
        Record::Tlsa(tl.clone(), 1, 1, 1, Sha256::digest(&good.spki).to_vec()),
        Record::Tlsa(
            tl.clone(),
            3,
            1,
            1,
            Sha256::digest(&good.spki)[..31].to_vec(),
        ),
        Record::Tlsa(tl.clone(), 3, 1, 9, vec![1, 2, 3]),
        secure(&tl),
    ]);
    // DANE-TA records that make the server's own (self-signed) certificate
    // or its bare key the trust anchor: the MX name must still be in it.
    for (d, rec) in [
        (
            "ta1.d15.test",
            (2, 0, 1, Sha256::digest(other.cert.as_ref()).to_vec()),
        ),
        ("ta2.d15.test", (2, 1, 0, other.spki.clone())),
    ] {
        let host = format!("mx.{d}");
        let tl = format!("_25._tcp.{host}");
        records.extend([
            mx(d, &host),
            secure(d),
            a(&host, 109),
            secure(&host),
            Record::Tlsa(tl.clone(), rec.0, rec.1, rec.2, rec.3),
            secure(&tl),
        ]);
    }
    let dns = FakeDns::start(records);
    let strip = smtp(107, None);
    let s454 = smtp_454(108);
    let mismatch = smtp(109, Some(&other));
    let breaks = smtp_breaks_tls(110);
    let unusable = smtp(111, None);
    for extra in tls_variants(&other) {
        let env = env(&dns, &ca, &extra);
        let mut logs = String::new();
        for d in [
            "strip.d15.test",
            "s454.d15.test",
            "mismatch.d15.test",
            "breaks.d15.test",
            "unusable.d15.test",
            "ta1.d15.test",
            "ta2.d15.test",
        ] {
            logs.push_str(&send(&env, &format!("u@{d}")));
        }
        let q = mailq(&env);
        for (d, w) in [
            (
                "strip",
                "mx.strip.d15.test [127.0.0.107] does not offer STARTTLS",
            ),
            ("s454", "mx.s454.d15.test [127.0.0.108] refused STARTTLS"),
            (
                "mismatch",
                "TLS with mx.mismatch.d15.test [127.0.0.109] failed",
            ),
            ("breaks", "mx.breaks.d15.test [127.0.0.110]"),
        ] {
            let head = format!("4.7.5 DANE (TLSA records of _25._tcp.mx.{d}.d15.test: 3 1 1 ");
            assert!(
                q.lines().any(|l| l.contains(&head) && l.contains(w)),
                "[{extra}] {d}: want {head}...{w}\n{q}\n{logs}"
            );
        }
        for (d, params) in [("ta1", "2 0 1 "), ("ta2", "2 1 0 ")] {
            let head = format!("4.7.5 DANE (TLSA records of _25._tcp.mx.{d}.d15.test: {params}");
            let w = format!("TLS with mx.{d}.d15.test [127.0.0.109] failed: wrong name");
            assert!(
                q.lines().any(|l| l.contains(&head) && l.contains(&w)),
                "[{extra}] {d}: want {head}...{w}\n{q}\n{logs}"
            );
        }
        assert!(
            q.contains(
                "4.7.5 DANE (TLSA records of _25._tcp.mx.unusable.d15.test, none usable): mx.unusable.d15.test [127.0.0.111] does not offer STARTTLS"
            ),
            "[{extra}] unusable\n{q}\n{logs}"
        );
        assert_eq!(env.queue_ids().len(), 7, "[{extra}] {q}");
        for (s, name) in [
            (&strip, "strip"),
            (&s454, "454"),
            (&mismatch, "mismatch"),
            (&unusable, "unusable"),
        ] {
            assert!(
                !saw_mail(s) && s.messages().is_empty(),
                "[{extra}] {name}: a transaction reached it: {:?}\n{logs}",
                s.commands()
            );
        }
        let b = breaks.lock().unwrap().clone();
        assert!(
            !b.iter().any(|c| c.to_uppercase().starts_with("MAIL")),
            "[{extra}] breaks: plain-text retry: {b:?}\n{logs}"
        );
    }
}

// ---------------------------------------------------------------------
// 2. Connection reuse in a queue run

/// One queue run (one worker), a message to a domain without a policy
/// first, then one to an MTA-STS enforce domain whose MX is the same host
/// (same name, same address; then another name for the same address):
/// the plain-text session of the first is never reused for the second,
/// which goes over verified TLS on a connection of its own.
#[test]
fn a_plain_session_is_not_reused_for_an_enforce_domain() {
    if !need_root("attack15_reuse") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.make(
        &["mx.shared.r15.test", "mx2.shared.r15.test"],
        "mx.shared.r15.test",
        false,
        false,
    );
    let dns = FakeDns::start(vec![
        // Same MX name for both domains.
        mx("a-plain.r15.test", "mx.shared.r15.test"),
        mx("z-enf.r15.test", "mx.shared.r15.test"),
        a("mx.shared.r15.test", 112),
        txt("_mta-sts.z-enf.r15.test", "v=STSv1; id=1"),
        a("mta-sts.z-enf.r15.test", 113),
        // Another name for the same address.
        mx("a-plain2.r15.test", "mx2.shared.r15.test"),
        mx("z-enf2.r15.test", "mx.shared.r15.test"),
        a("mx2.shared.r15.test", 112),
        txt("_mta-sts.z-enf2.r15.test", "v=STSv1; id=1"),
        a("mta-sts.z-enf2.r15.test", 113),
        // A name the certificate does not carry: OPPORTUNISTIC_TLS makes
        // the session encrypted but unverified.
        mx("a-plain3.r15.test", "mx3.shared.r15.test"),
        a("mx3.shared.r15.test", 112),
    ]);
    let server = smtp(112, Some(&leaf));
    let _site = web(
        113,
        &ca,
        &["z-enf.r15.test", "z-enf2.r15.test"],
        Answer::Policy(policy("enforce", &["mx.shared.r15.test"])),
    );
    for (plain, enf, extra, plain_tls) in [
        // dma.conf asks for no TLS: the first session is plain text.
        ("a-plain.r15.test", "z-enf.r15.test", "", false),
        ("a-plain2.r15.test", "z-enf2.r15.test", "", false),
        (
            "a-plain3.r15.test",
            "z-enf.r15.test",
            "SECURETRANSFER\nSTARTTLS\nOPPORTUNISTIC_TLS\n",
            true,
        ),
    ] {
        let env = env(&dns, &ca, &format!("QUEUE_WORKERS 1\n{extra}"));
        let before = server.messages().len();
        let conns = server.connections();
        // Queue order within a worker is by domain: a-plain first.
        queue_only(&env, &format!("p@{plain}"));
        queue_only(&env, &format!("e@{enf}"));
        let run = env.flush();
        run.expect(0, &env);
        let m = server.messages();
        assert_eq!(
            m.len(),
            before + 2,
            "{}\n{}\n{}",
            run.stderr(),
            mailq(&env),
            env.dump()
        );
        // The plain one first (its session then waits in the pool), the
        // enforce one over TLS on a connection of its own.
        assert!(
            m[before].rcpts.iter().all(|r| r.ends_with(plain)) && m[before].tls == plain_tls,
            "{:?}",
            &m[before..]
        );
        let enf_msg = &m[before + 1];
        assert!(enf_msg.rcpts.iter().all(|r| r.ends_with(enf)));
        assert!(enf_msg.tls, "{enf}: delivered without TLS: {enf_msg:?}");
        assert_eq!(
            server.connections(),
            conns + 2,
            "{plain} then {enf}: a session was reused\n{}",
            run.stderr()
        );
    }
}

// ---------------------------------------------------------------------
// 3. DNS

/// The AD bit is believed only from a resolver on loopback (unit level):
/// a nameserver elsewhere, an IPv4-mapped loopback, the unspecified
/// address are not trusted.
#[test]
fn the_ad_bit_counts_only_from_loopback() {
    use dma_rs::smtp::dns::Resolver;
    for (ns, want) in [
        ("127.0.0.1:53", true),
        ("127.0.0.53:53", true),
        ("[::1]:53", true),
        ("192.0.2.2:53", false),
        ("8.8.8.8:53", false),
        ("0.0.0.0:53", false),
        ("[::ffff:127.0.0.1]:53", false),
        ("[::]:53", false),
        ("[fd00::2]:53", false),
    ] {
        let r = Resolver::with_server(ns.parse().unwrap());
        assert_eq!(r.trust_ad, want, "{ns}");
    }
}

/// Forged DANE must not win over MTA-STS: an attacker who answers DNS
/// names their own key in a TLSA record, for an MTA-STS enforce domain,
/// and presents a self-signed certificate with that key:
/// - through a CNAME from the signed TLSA name to an unsigned one: that
///   RRset is not validated;
/// - through a nameserver that is this host's own non-loopback address
///   (a proxy in front of the fake, AD bit passed through): not believed.
///
/// Either way DANE stays off, MTA-STS applies, and the certificate is
/// refused.
#[test]
fn forged_dane_does_not_override_mta_sts() {
    if !need_root("attack15_forged_dane") {
        return;
    }
    let ca = Ca::new();
    let evil = ca.make(
        &["mx.adr15.test", "mx.cn15.test"],
        "mx.adr15.test",
        true,
        false,
    );
    let mut records = dane_domain("adr15.test", 114, &evil);
    records.extend([
        txt("_mta-sts.adr15.test", "v=STSv1; id=1"),
        a("mta-sts.adr15.test", 115),
        mx("cn15.test", "mx.cn15.test"),
        secure("cn15.test"),
        a("mx.cn15.test", 114),
        secure("mx.cn15.test"),
        Record::BareCname(
            "_25._tcp.mx.cn15.test".into(),
            "tlsa.unsigned15.test".into(),
        ),
        secure("_25._tcp.mx.cn15.test"),
        Record::Tlsa(
            "tlsa.unsigned15.test".into(),
            3,
            1,
            1,
            Sha256::digest(&evil.spki).to_vec(),
        ),
        txt("_mta-sts.cn15.test", "v=STSv1; id=1"),
        a("mta-sts.cn15.test", 115),
    ]);
    let dns = FakeDns::start(records);
    let server = smtp(114, Some(&evil));
    let _site = web(
        115,
        &ca,
        &["adr15.test", "cn15.test"],
        Answer::Policy(policy("enforce", &["mx.adr15.test", "mx.cn15.test"])),
    );
    // The CNAME, through the trusted (loopback) fake.
    let env1 = env(&dns, &ca, "");
    let log = send(&env1, "u@cn15.test");
    assert!(server.messages().is_empty(), "{log}\n{}", mailq(&env1));
    assert!(
        log.contains("the TLSA records at _25._tcp.mx.cn15.test are not DNSSEC-signed"),
        "{log}"
    );
    assert!(
        mailq(&env1).contains("4.7.5 MTA-STS policy of cn15.test"),
        "{log}"
    );
    // The AD bit from a nameserver not on loopback.
    let Some(host_ip) = non_loopback_v4() else {
        eprintln!("SKIPPED the non-loopback part: no non-loopback IPv4 address");
        return;
    };
    let ns = dns_proxy(&format!("{host_ip}:0"), dns.addr(), Vec::new());
    let env2 = env_ns(ns, &ca, "");
    let log = send(&env2, "u@adr15.test");
    assert!(server.messages().is_empty(), "{log}");
    assert!(log.contains("the resolver is not trusted"), "{log}");
    assert!(
        mailq(&env2).contains("4.7.5 MTA-STS policy of adr15.test"),
        "{log}"
    );
}

fn non_loopback_v4() -> Option<Ipv4Addr> {
    // The address a UDP socket would send from towards a public address.
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.200:9").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}

/// A domain with an MTA-STS enforce policy whose signed MX host also has
/// TLSA records, none of them usable for SMTP (`1 1 1`, PKIX-EE, which
/// some domains publish): RFC 7672 then asks only for unauthenticated
/// TLS, but the domain's MTA-STS policy still asks for a certificate that
/// verifies. A self-signed certificate must not be accepted.
#[test]
fn unusable_tlsa_does_not_weaken_an_enforce_policy() {
    if !need_root("attack15_unusable_vs_sts") {
        return;
    }
    let ca = Ca::new();
    let selfsigned = ca.make(&["mx.un15.test"], "mx.un15.test", true, false);
    let host = "mx.un15.test";
    let tl = format!("_25._tcp.{host}");
    let dns = FakeDns::start(vec![
        mx("un15.test", host),
        secure("un15.test"),
        a(host, 119),
        secure(host),
        Record::Tlsa(
            tl.clone(),
            1,
            1,
            1,
            Sha256::digest(&selfsigned.spki).to_vec(),
        ),
        secure(&tl),
        txt("_mta-sts.un15.test", "v=STSv1; id=1"),
        a("mta-sts.un15.test", 120),
    ]);
    let server = smtp(119, Some(&selfsigned));
    let _site = web(
        120,
        &ca,
        &["un15.test"],
        Answer::Policy(policy("enforce", &[host])),
    );
    let env = env(&dns, &ca, "");
    let log = send(&env, "u@un15.test");
    assert!(
        server.messages().is_empty(),
        "delivered over TLS with an unverified self-signed certificate despite the enforce policy\n{log}"
    );
    assert!(mailq(&env).contains("4.7.5"), "{log}");
}

/// The TLSA lookup of the first MX fails (SERVFAIL): that host is not
/// used (RFC 7672 §2.2); the second MX, signed and without TLSA records,
/// gets the mail as dma.conf says (here: plain text). This is what the RFC
/// asks; the test pins it, and that the failing host gets no connection.
#[test]
fn a_tlsa_servfail_skips_that_mx_only() {
    if !need_root("attack15_tlsa_servfail") {
        return;
    }
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx_pref("sf15.test", 10, "mx1.sf15.test"),
        mx_pref("sf15.test", 20, "mx2.sf15.test"),
        secure("sf15.test"),
        a("mx1.sf15.test", 116),
        secure("mx1.sf15.test"),
        Record::ServFail("_25._tcp.mx1.sf15.test".into()),
        a("mx2.sf15.test", 117),
        secure("mx2.sf15.test"),
        Record::NxDomain("_25._tcp.mx2.sf15.test".into()),
    ]);
    let mx1 = smtp(116, None);
    let mx2 = smtp(117, None);
    let env = env(&dns, &ca, "");
    let log = send(&env, "u@sf15.test");
    assert_eq!(mx1.connections(), 0, "{log}");
    assert!(
        log.contains("DANE: TLSA lookup for _25._tcp.mx1.sf15.test failed"),
        "{log}"
    );
    assert_eq!(mx2.messages().len(), 1, "{log}\n{}", mailq(&env));
}

/// Malformed TLSA data: records too short to hold usage, selector and
/// matching type are no records (unit level), and a TLSA answer whose
/// last RDATA is cut short (the message does not parse) is a failed
/// lookup: the host is skipped, never tried without DANE.
#[test]
fn malformed_tlsa_answers_skip_the_host() {
    use dma_rs::smtp::tls::Tlsa;
    assert_eq!(Tlsa::from_rdata(&[]), None);
    assert_eq!(Tlsa::from_rdata(&[3, 1]), None);
    assert!(!Tlsa::from_rdata(&[3, 1, 1]).unwrap().usable());
    assert!(!Tlsa::from_rdata(&[3, 1, 1, 0xab]).unwrap().usable());
    assert!(!Tlsa::from_rdata(&[3, 1, 0]).unwrap().usable());
    if !need_root("attack15_tlsa_malformed") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.make(&["mx.bad15.test"], "mx.bad15.test", true, false);
    // Nothing listens on .126: a try would show in the log.
    let dns = FakeDns::start(dane_domain("bad15.test", 126, &leaf));
    let ns = dns_proxy(
        "127.0.0.1:0",
        dns.addr(),
        vec![("_25._tcp.mx.bad15.test".into(), 52, Fault::Chop)],
    );
    let env = env_ns(ns, &ca, "");
    let log = send(&env, "u@bad15.test");
    assert!(
        log.contains("DANE: TLSA lookup for _25._tcp.mx.bad15.test failed"),
        "{log}"
    );
    assert!(!log.contains("trying remote delivery"), "{log}");
    assert!(
        mailq(&env).contains("4.7.5 DANE: TLSA lookup for _25._tcp.mx.bad15.test failed"),
        "{}",
        mailq(&env)
    );
}

/// A signed MX host with usable TLSA records and a signed A record, whose
/// AAAA lookup fails (an attacker makes the validating resolver answer
/// SERVFAIL for AAAA, say by corrupting the authoritative answers):
/// DANE must still apply to the A address, or the host must be skipped;
/// it must not be delivered to in plain text.
#[test]
fn an_aaaa_servfail_does_not_strip_dane() {
    if !need_root("attack15_aaaa_servfail") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.make(&["mx.aaaa15.test"], "mx.aaaa15.test", true, false);
    let dns = FakeDns::start(dane_domain("aaaa15.test", 118, &leaf));
    // A resolver on loopback (trusted), failing only the AAAA question.
    let ns = dns_proxy(
        "127.0.0.1:0",
        dns.addr(),
        vec![("mx.aaaa15.test".into(), 28, Fault::ServFail)],
    );
    // The attacker's MX at the same address: no STARTTLS.
    let server = smtp(118, None);
    let env = env_ns(ns, &ca, "");
    let log = send(&env, "u@aaaa15.test");
    assert!(
        server.messages().is_empty() && !saw_mail(&server),
        "DANE stripped by an AAAA SERVFAIL: delivered in plain text\n{log}"
    );
    assert_eq!(env.queue_ids().len(), 1, "{log}");
}

/// Huge TXT records (one of 30 000 bytes, not ours, and an STSv1 record of
/// 20 000 bytes with its id among padding: a reply near the 64 KiB a DNS
/// message can hold): the TXT lookup still works and
/// the policy is enforced. Then two STSv1 records (an attacker's extra
/// one): no live policy, so the cached one applies (stale), not none.
#[test]
fn huge_and_duplicate_txt_records() {
    if !need_root("attack15_txt") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.txt15.test", false);
    let pad = "a".repeat(10_000);
    let dns = FakeDns::start(vec![
        mx("txt15.test", "mx.txt15.test"),
        a("mx.txt15.test", 121),
        Record::Txt("_mta-sts.txt15.test".into(), vec!["x".repeat(30_000)]),
        Record::Txt(
            "_mta-sts.txt15.test".into(),
            vec![format!("v=STSv1; ext={pad}; id=big1; more={pad}")],
        ),
        a("mta-sts.txt15.test", 122),
    ]);
    let good = smtp(121, Some(&leaf));
    let _site = web(
        122,
        &ca,
        &["txt15.test"],
        Answer::Policy(policy("enforce", &["mx.txt15.test"])),
    );
    let env = env(&dns, &ca, "");
    let log = send(&env, "u@txt15.test");
    assert!(
        log.contains("MTA-STS policy of txt15.test (enforce, id big1, fresh) applies"),
        "{log}"
    );
    assert_eq!(good.messages().len(), 1, "{log}");
    assert!(good.messages()[0].tls);
    // Now the attacker: two STSv1 records and an MX of theirs.
    let evil_dns = FakeDns::start(vec![
        mx("txt15.test", "mx.evil15.test"),
        a("mx.evil15.test", 123),
        txt("_mta-sts.txt15.test", "v=STSv1; id=big1"),
        txt("_mta-sts.txt15.test", "v=STSv1; id=evil"),
        a("mta-sts.txt15.test", 122),
    ]);
    let evil = smtp(123, None);
    env.write_conf(&conf_lines(
        evil_dns.addr(),
        &env.dir.path().join("ca.pem"),
        "",
    ));
    let log = send(&env, "v@txt15.test");
    assert_eq!(evil.connections(), 0, "{log}");
    assert!(
        mailq(&env).contains("4.7.5 MTA-STS policy of txt15.test (enforce, id big1, stale)"),
        "{log}\n{}",
        mailq(&env)
    );
}

// ---------------------------------------------------------------------
// 4. The policy host, and text from the network

/// Overly broad or bad MX patterns: `*`, `*.*.x`, `mx*.x` make the whole
/// policy invalid; `*.com`-style patterns parse (the domain's own choice)
/// and match one label only.
#[test]
fn broad_mx_patterns() {
    use dma_rs::smtp::mta_sts::Policy;
    let p = |mx: &str| {
        Policy::parse(&format!(
            "version: STSv1\nmode: enforce\nmax_age: 1\nmx: {mx}\n"
        ))
    };
    for bad in [
        "*",
        "*.",
        "*.*.example",
        "mx*.example",
        ".",
        "",
        "*example.com",
        "**.com",
    ] {
        assert!(p(bad).is_err(), "{bad:?} accepted: {:?}", p(bad));
    }
    let com = p("*.com").unwrap();
    assert!(com.allows("evil.com"));
    assert!(!com.allows("a.evil.com"));
    assert!(!com.allows("com"));
    assert!(!com.allows("*.com"));
}

/// Text an attacker controls (the MX certificate's subject with an escape
/// sequence and a bidi override, an MX host name with a control byte, a
/// redirect's Location and reason phrase) never reaches mailq or the log
/// raw.
#[test]
fn attacker_text_reaches_mailq_and_the_log_escaped() {
    if !need_root("attack15_escapes") {
        return;
    }
    let ca = Ca::new();
    let evil_cn = "mx\u{1b}[31m.esc15.test\u{202e}moc.evil\r\nX-Injected: 1";
    let leaf = ca.make(&["other.esc15.test"], evil_cn, false, false);
    let dns = FakeDns::start(vec![
        // A listed MX whose certificate names another host.
        mx("esc15.test", "mx.esc15.test"),
        a("mx.esc15.test", 124),
        txt("_mta-sts.esc15.test", "v=STSv1; id=1"),
        a("mta-sts.esc15.test", 125),
        // An unlisted MX whose name has an escape byte.
        mx("esc16.test", "mx\u{1b}]0;pwned\u{7}.esc16.test"),
        a("mx\u{1b}]0;pwned\u{7}.esc16.test", 124),
        txt("_mta-sts.esc16.test", "v=STSv1; id=1"),
        a("mta-sts.esc16.test", 125),
        // A policy host that redirects, with escapes in the reason.
        mx("esc17.test", "mx.esc17.test"),
        a("mx.esc17.test", 124),
        txt("_mta-sts.esc17.test", "v=STSv1; id=1"),
        a("mta-sts.esc17.test", 128),
    ]);
    // One server for the three: STARTTLS offered (with the evil
    // certificate), not required.
    let plain = smtp(124, Some(&leaf));
    let _site = web(
        125,
        &ca,
        &["esc15.test", "esc16.test"],
        Answer::Policy(policy("enforce", &["mx.esc15.test", "mx.esc16.test"])),
    );
    let _redirect = web(
        128,
        &ca,
        &["esc17.test"],
        Answer::Raw(
            "HTTP/1.1 301 \u{202e}devoM\u{1b}[2J\r\nLocation: https://x.test/\u{2028}\u{1b}]0;t\u{7}\r\nContent-Length: 0\r\n\r\n"
                .as_bytes()
                .to_vec(),
        ),
    );
    let env = env(&dns, &ca, "");
    let mut logs = String::new();
    for r in ["u@esc15.test", "u@esc16.test", "u@esc17.test"] {
        logs.push_str(&send(&env, r));
    }
    let q = mailq(&env);
    assert!(q.contains("MTA-STS policy of esc15.test"), "{q}\n{logs}");
    assert!(clean(&q), "raw control or bidi text in mailq: {q:?}");
    assert!(
        clean(&logs),
        "raw control or bidi text in the log: {logs:?}"
    );
    assert!(!q.contains("\nX-Injected"), "{q}");
    let mut c = env.cmd("mailq");
    c.arg("--json");
    let json = env.run(c, b"", None).stdout();
    assert!(
        clean(&json),
        "raw control or bidi text in mailq --json: {json:?}"
    );
    // The redirect was not followed, and no policy applied.
    assert_eq!(plain.messages().len(), 1, "{logs}");
}

/// `sendmail -bv -v` prints the MX hosts of a domain and their policy
/// notes: an MX host name with an escape sequence (any domain's owner
/// publishes what MX names they like) must not reach the terminal raw.
#[test]
fn bv_shows_mx_names_escaped() {
    if !need_root("attack15_bv_escapes") {
        return;
    }
    let ca = Ca::new();
    let host = "mx\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}.bv15.test";
    let dns = FakeDns::start(vec![
        mx("bv15.test", host),
        // Nothing listens there: -bv connects to no MX.
        a(host, 126),
    ]);
    let env = env(&dns, &ca, "");
    let mut c = env.cmd("sendmail");
    c.args(["-bv", "-v", "u@bv15.test"]);
    let run = env.run(c, b"", None);
    run.expect(0, &env);
    let out = run.stdout();
    assert!(out.contains("MX hosts of bv15.test"), "{out}");
    assert!(clean(&out), "raw escape in -bv -v output: {out:?}");
    assert!(clean(&run.stderr()), "{:?}", run.stderr());
}

/// A policy host that abuses HTTP: a huge header block, chunked encoding
/// with an absurd size or negative size or a lying chunk, a Content-Length
/// larger than what comes, two Content-Lengths, no Content-Type, a body
/// that never ends (sent as fast as it is read), max_age beyond a year:
/// no policy from any (the MX gets the mail as dma.conf says), and each
/// attempt ends within the fetch deadline.
#[test]
fn a_policy_host_that_abuses_http_gives_no_policy_and_no_hang() {
    if !need_root("attack15_http") {
        return;
    }
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx("http15.test", "mx.http15.test"),
        a("mx.http15.test", 129),
        txt("_mta-sts.http15.test", "v=STSv1; id=1"),
        a("mta-sts.http15.test", 130),
        mx("endless15.test", "mx.http15.test"),
        txt("_mta-sts.endless15.test", "v=STSv1; id=1"),
        a("mta-sts.endless15.test", 131),
    ]);
    let plain = smtp(129, None);
    let good_body = policy("enforce", &["mx.nowhere.test"]);
    let site = web(130, &ca, &["http15.test"], Answer::Raw(Vec::new()));
    endless_web(131, &ca, "endless15.test");
    let env = env(&dns, &ca, "");
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-Pad: y\r\n".repeat(10_000)).into_bytes(),
            "more than 16 KiB of header fields",
        ),
        (
            format!("{head}Transfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n{good_body}").into_bytes(),
            "more than 64 KiB",
        ),
        (
            format!("{head}Transfer-Encoding: chunked\r\n\r\n-1\r\n{good_body}").into_bytes(),
            "is not a hexadecimal number",
        ),
        (
            format!("{head}Transfer-Encoding: chunked\r\n\r\n5\r\n{good_body}\r\n0\r\n\r\n")
                .into_bytes(),
            "a line longer than 2 bytes in the end of a chunk",
        ),
        (
            format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n{good_body}").into_bytes(),
            "only chunked is understood",
        ),
        (
            format!("{head}Content-Length: 99999\r\n\r\n{good_body}").into_bytes(),
            "more than 64 KiB",
        ),
        (
            format!("{head}Content-Length: 9999\r\n\r\n{good_body}").into_bytes(),
            "the connection closed after",
        ),
        (
            format!(
                "{head}Content-Length: {}\r\nContent-Length: 3\r\n\r\n{good_body}",
                good_body.len()
            )
            .into_bytes(),
            "two different Content-Length fields",
        ),
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{good_body}",
                good_body.len()
            )
            .into_bytes(),
            "no Content-Type",
        ),
        (
            {
                let b = good_body.replace("86400", "99999999999");
                format!("{head}Content-Length: {}\r\n\r\n{b}", b.len()).into_bytes()
            },
            "is not a number of seconds",
        ),
        (
            {
                let b = good_body.replace("86400", "31557601");
                format!("{head}Content-Length: {}\r\n\r\n{b}", b.len()).into_bytes()
            },
            "is more than 31557600",
        ),
        (
            {
                let b = "version: STSv1\r\nmode: enforce\r\nmx: *\r\nmax_age: 86400\r\n";
                format!("{head}Content-Length: {}\r\n\r\n{b}", b.len()).into_bytes()
            },
            "is not a host name or *.domain",
        ),
    ];
    let mut delivered = 0;
    for (wire, want) in cases {
        site.set(Answer::Raw(wire));
        let start = Instant::now();
        let log = send(&env, "u@http15.test");
        delivered += 1;
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{want}: took {:?}",
            start.elapsed()
        );
        assert!(log.contains(want), "want {want:?} in\n{log}");
        assert!(!log.contains(") applies"), "a policy applied: {log}");
        assert_eq!(plain.messages().len(), delivered, "{want}\n{log}");
    }
    let start = Instant::now();
    let log = send(&env, "u@endless15.test");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "endless body: took {:?}",
        start.elapsed()
    );
    assert!(log.contains("more than 64 KiB"), "{log}");
    assert_eq!(plain.messages().len(), delivered + 1, "{log}");
}

/// Policy lifetimes: an id change whose fetch fails (500, then an invalid
/// policy) leaves the cached enforce policy in force (stale); a fetched
/// `mode: none` withdraws it (RFC 8461 §3.2) and is cached; max_age 0
/// applies to the message at hand only.
#[test]
fn stale_withdrawal_and_max_age_zero() {
    if !need_root("attack15_lifetimes") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.life15.test", false);
    let records = |id: &str, mxhost: &str, last: u8| {
        vec![
            mx("life15.test", mxhost),
            a(mxhost, last),
            txt("_mta-sts.life15.test", &format!("v=STSv1; id={id}")),
            a("mta-sts.life15.test", 133),
        ]
    };
    let dns1 = FakeDns::start(records("1", "mx.life15.test", 132));
    let good = smtp(132, Some(&leaf));
    let site = web(
        133,
        &ca,
        &["life15.test"],
        Answer::Policy(policy("enforce", &["mx.life15.test"])),
    );
    let env = env(&dns1, &ca, "");
    send(&env, "a@life15.test");
    assert_eq!(good.messages().len(), 1);
    // The attacker's DNS: a new id, their MX (listed by no policy).
    let dns2 = FakeDns::start(records("2", "mx.evil-life15.test", 134));
    let evil = smtp(134, None);
    let ca_file = env.dir.path().join("ca.pem");
    env.write_conf(&conf_lines(dns2.addr(), &ca_file, ""));
    for answer in [
        Answer::Raw(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec()),
        Answer::Policy("mode: none\r\n".into()),
        Answer::Policy(policy("testing", &["*"])),
    ] {
        site.set(answer.clone());
        let log = send(&env, "b@life15.test");
        assert_eq!(evil.connections(), 0, "{answer:?}: {log}");
        assert!(
            log.contains("(enforce, id 1, stale) applies"),
            "{answer:?}: {log}"
        );
    }
    // The domain withdraws its policy: mode none, id 3, fetched and cached.
    let dns3 = FakeDns::start(records("3", "mx.life15.test", 132));
    env.write_conf(&conf_lines(dns3.addr(), &ca_file, ""));
    site.set(Answer::Policy(
        "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n".into(),
    ));
    let log = send(&env, "c@life15.test");
    assert!(
        log.contains("(none, id 3, fresh): nothing to apply"),
        "{log}"
    );
    let cached = std::fs::read_to_string(env.spool.join("mta-sts/life15.test")).unwrap();
    assert!(cached.contains("mode none"), "{cached}");
    // max_age 0: in force for this message, never from the cache.
    let dns4 = FakeDns::start(records("4", "mx.life15.test", 132));
    env.write_conf(&conf_lines(dns4.addr(), &ca_file, ""));
    site.set(Answer::Policy(
        policy("enforce", &["mx.life15.test"]).replace("86400", "0"),
    ));
    let log = send(&env, "d@life15.test");
    assert!(log.contains("(enforce, id 4, fresh) applies"), "{log}");
    let log = send(&env, "e@life15.test");
    assert!(log.contains("(enforce, id 4, fresh) applies"), "{log}");
    assert_eq!(site.requests().len(), 1 + 3 + 1 + 2, "{log}");
}

// ---------------------------------------------------------------------
// 5. The cache, and local users

/// Files planted in the runner's cache directory (as a user with write
/// access there might leave them): a symbolic link to a forged policy, a
/// FIFO, a file of another user's, a group-writable one, a hard link, a
/// forged `mode none` for another domain renamed: none is believed, none
/// blocks, and the enforce policy is fetched and applied.
#[test]
fn planted_cache_files_are_not_believed() {
    if !need_root("attack15_cache_files") {
        return;
    }
    let ca = Ca::new();
    let leaf = ca.leaf("mx.cache15.test", false);
    let dns = FakeDns::start(vec![
        mx("cache15.test", "mx.cache15.test"),
        a("mx.cache15.test", 135),
        txt("_mta-sts.cache15.test", "v=STSv1; id=1"),
        a("mta-sts.cache15.test", 136),
    ]);
    let good = smtp(135, Some(&leaf));
    let site = web(
        136,
        &ca,
        &["cache15.test"],
        Answer::Policy(policy("enforce", &["mx.cache15.test"])),
    );
    let env = env(&dns, &ca, "");
    // Make the cache directory (a first delivery), then empty it.
    send(&env, "a@cache15.test");
    let dir = env.spool.join("mta-sts");
    let file = dir.join("cache15.test");
    let alice = user(ALICE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = |domain: &str| {
        format!(
            "dma-rs-mta-sts 1\ndomain {domain}\nid 1\nfetched {now}\nmax_age 31557600\nmode none\n"
        )
    };
    let outside = env.dir.path().join("forged");
    std::fs::write(&outside, forged("cache15.test")).unwrap();
    type Plant<'a> = Box<dyn Fn(&std::path::Path) + 'a>;
    let plants: Vec<(&str, Plant)> = vec![
        (
            "symlink",
            Box::new(|f| std::os::unix::fs::symlink(&outside, f).unwrap()),
        ),
        (
            "fifo",
            Box::new(|f| {
                nix::unistd::mkfifo(f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }),
        ),
        (
            "foreign owner",
            Box::new(|f| {
                std::fs::write(f, forged("cache15.test")).unwrap();
                std::os::unix::fs::chown(f, Some(alice.uid), Some(alice.gid)).unwrap();
            }),
        ),
        (
            "group-writable",
            Box::new(|f| {
                std::fs::write(f, forged("cache15.test")).unwrap();
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o620)).unwrap();
            }),
        ),
        (
            "hard link",
            Box::new(|f| {
                let other = f.with_file_name("hl-source");
                std::fs::write(&other, forged("cache15.test")).unwrap();
                std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::fs::hard_link(&other, f).unwrap();
            }),
        ),
        (
            "renamed from another domain",
            Box::new(|f| {
                std::fs::write(f, forged("other15.test")).unwrap();
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
            }),
        ),
    ];
    for (what, plant) in plants {
        let fetched = site.requests().len();
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(dir.join("hl-source"));
        plant(&file);
        let start = Instant::now();
        let log = send(&env, "b@cache15.test");
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: blocked");
        assert!(
            log.contains("(enforce, id 1, fresh) applies"),
            "{what}: the planted file was believed\n{log}"
        );
        assert_eq!(site.requests().len(), fetched + 1, "{what}");
    }
    assert!(good.messages().iter().all(|m| m.tls));
}

/// The servers of the two installed-system tests, shared (they run one at
/// a time: a fake SMTP server never lets its address go).
struct InstServers {
    ca: Ca,
    dns: FakeDns,
    evil_dns: FakeDns,
    good: FakeSmtp,
    evil: FakeSmtp,
    site: FakeHttps,
    turn: Mutex<()>,
}

fn inst_servers() -> &'static InstServers {
    static S: std::sync::OnceLock<InstServers> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let ca = Ca::new();
        let leaf = ca.leaf("mx.inst15.test", false);
        InstServers {
            dns: FakeDns::start(sts_domain("inst15.test", 137, "1", 139)),
            // The attacker: a new id, an MX of theirs without TLS, the
            // policy host unreachable (nothing listens on .126).
            evil_dns: FakeDns::start(vec![
                mx("inst15.test", "mx.evil-inst15.test"),
                a("mx.evil-inst15.test", 138),
                txt("_mta-sts.inst15.test", "v=STSv1; id=2"),
                a("mta-sts.inst15.test", 126),
            ]),
            good: smtp(137, Some(&leaf)),
            evil: smtp(138, None),
            site: web(
                139,
                &ca,
                &["inst15.test"],
                Answer::Policy(policy("enforce", &["mx.inst15.test"])),
            ),
            ca,
            turn: Mutex::new(()),
        }
    })
}

/// On a fresh installed system: `alice_first`, alice runs `sendmail -bv
/// -v` for an MTA-STS domain; root sends a message to it (the policy is
/// fetched); then the attacker takes the network (new id, their MX, the
/// policy host unreachable) and root sends another. Returns what made
/// SPOOLDIR/mta-sts (after alice's turn), whether the attacker got
/// the second message, and mailq.
fn installed_cache_chain(alice_first: bool) -> (String, bool, String) {
    let srv = inst_servers();
    let _turn = srv.turn.lock().unwrap_or_else(|e| e.into_inner());
    let inst = Installed::new();
    let ca_file = inst.root.join("etc/ca.pem");
    std::fs::write(&ca_file, srv.ca.issuer.pem()).unwrap();
    std::fs::set_permissions(&ca_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let base = std::fs::read_to_string(inst.root.join("etc/dma.conf")).unwrap();
    let set_conf = |ns: SocketAddr| {
        std::fs::write(
            inst.root.join("etc/dma.conf"),
            format!("{base}{}", conf_lines(ns, &ca_file, "")),
        )
        .unwrap();
    };
    set_conf(srv.dns.addr());
    let sendmail = inst.path("sbin/sendmail");
    if alice_first {
        let o = inst.run(Some(ALICE), &[&sendmail, "-bv", "-v", "x@inst15.test"], "");
        assert!(o.status.success(), "{}", show(&o));
    }
    let dir = inst.root.join("spool/mta-sts");
    let mail_uid = nix::unistd::User::from_name("mail")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let made = std::fs::symlink_metadata(&dir)
        .map(|m| {
            format!(
                "{}: uid {} (mail is {mail_uid}), mode {:o}",
                dir.display(),
                m.uid(),
                m.mode() & 0o7777
            )
        })
        .unwrap_or_else(|e| format!("{}: {e}", dir.display()));
    let good_before = srv.good.messages().len();
    let o = inst.run(
        None,
        &[&sendmail, "-odi", "-f", "s@sender.test", "a@inst15.test"],
        MSG,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(srv.good.messages().len(), good_before + 1, "{}", show(&o));
    let fetches = srv.site.requests().len();
    set_conf(srv.evil_dns.addr());
    let evil_before = srv.evil.messages().len();
    let o = inst.run(
        None,
        &[&sendmail, "-odi", "-f", "s@sender.test", "b@inst15.test"],
        MSG,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(srv.site.requests().len(), fetches);
    let q = show(&inst.run(None, &[&sendmail, "-bp"], ""));
    (made, srv.evil.messages().len() > evil_before, q)
}

/// The control: on an installed system the runner's cache keeps an
/// enforce policy in force when the attacker blocks its fetch.
#[test]
fn installed_cache_outlives_a_blocked_fetch() {
    if !need_root("attack15_installed_cache") {
        return;
    }
    let (made, evil_got_it, q) = installed_cache_chain(false);
    assert!(!evil_got_it, "delivered to the attacker ({made})\n{q}");
    assert!(
        q.contains("4.7.5 MTA-STS policy of inst15.test (enforce, id 1, stale)"),
        "{q}"
    );
}

/// On an installed system (`dma` set-group-id mail, the spool 2770
/// root:mail, runners as `mail`), before any runner has made
/// SPOOLDIR/mta-sts, alice runs `sendmail -bv -v` for a domain with a
/// policy. The set-group-id process makes the cache directory, as alice
/// (mode 2700): the runner can then neither read nor write its cache, and
/// a cached enforce policy no longer outlives a blocked fetch: an attacker
/// on the network gets the next message in plain text.
#[test]
fn a_user_can_not_take_the_cache_directory() {
    if !need_root("attack15_installed_cache_dir") {
        return;
    }
    let (made, evil_got_it, q) = installed_cache_chain(true);
    assert!(
        !evil_got_it,
        "the cached enforce policy was not applied: delivered in plain text to the attacker (after alice's -bv: {made})\n{q}"
    );
}

// ---------------------------------------------------------------------
// 6. Time

/// A dead policy host (it accepts the connection and says nothing): one
/// queue run with N messages to the domain waits for the fetch deadline
/// once per message. Measured and printed; the assertion is that the run
/// does not take much longer than one deadline.
///
/// Measured (b3092ec): 4 messages, SMTP_TIMEOUT 2s, QUEUE_WORKERS 1:
/// 8.1 s (4 connections to the dead host); without SMTP_TIMEOUT (the 20 s
/// fetch deadline), QUEUE_WORKERS 1, 3 messages: 61.8 s; 16 messages with
/// the default 8 workers and HOP_SESSIONS 8, SMTP_TIMEOUT 2s: 4.5 s (each
/// worker waits once per message of its share).
#[test]
fn a_dead_policy_host_costs_one_deadline_per_run() {
    if !need_root("attack15_dead_web") {
        return;
    }
    const N: usize = 4;
    let ca = Ca::new();
    let dns = FakeDns::start(vec![
        mx("dead15.test", "mx.dead15.test"),
        a("mx.dead15.test", 140),
        txt("_mta-sts.dead15.test", "v=STSv1; id=1"),
        a("mta-sts.dead15.test", 127),
    ]);
    let server = smtp(140, None);
    let accepted = dead_web(127);
    let env = env(&dns, &ca, "SMTP_TIMEOUT 2s\nQUEUE_WORKERS 1\n");
    for i in 0..N {
        queue_only(&env, &format!("u{i}@dead15.test"));
    }
    let start = Instant::now();
    let run = env.flush();
    let took = start.elapsed();
    run.expect(0, &env);
    eprintln!(
        "dead policy host: {N} messages, one queue run: {took:?}, {} connections to it",
        accepted.lock().unwrap()
    );
    assert_eq!(server.messages().len(), N, "{}", run.stderr());
    assert!(
        took < Duration::from_secs(2 * 2 + 3),
        "{N} messages took {took:?}: one fetch deadline per message"
    );
}
