//! DKIM signing through the real binary, checked by an independent
//! verifier: mail goes by MX (a fake DNS server, NAMESERVER) to fake SMTP
//! servers on 127.0.15.N:25 (root binds port 25), and Python's dkimpy
//! (tests/support/dkim_verify.py) verifies what they received against the
//! keys published in the same fake DNS. Keys are made with `openssl
//! genpkey`, and their DNS records with `openssl pkey -pubout`, not by us.
//! A real exim verifies them on receipt too, its resolver pointed at the
//! fake DNS (exim in a mount namespace with a resolv.conf of its own).

#[path = "support/dkimworld.rs"]
mod dkimworld;
#[path = "support/exim.rs"]
mod exim;
#[path = "support/dns.rs"]
mod fakedns;
#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dkimworld::*;
use fakedns::{FakeDns, Record};
use smtpd::{Behavior, FakeSmtp};
use support::*;

/// The keys, made once per test run (an RSA key takes a moment).
struct Keys {
    rsa: TestKey,
    ed25519: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: make_key(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "rsa",
        ),
        ed25519: make_key(&["-algorithm", "ed25519"], "ed25519"),
    })
}

/// Writes `key` into the installation, mode `mode`; its path.
fn install_key(env: &Env, name: &str, key: &TestKey, mode: u32) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, &key.pem).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// A server without 8BITMIME.
fn seven_bit() -> Behavior {
    Behavior {
        ehlo: vec!["PIPELINING".into(), "SIZE 10000000".into()],
        ..Behavior::default()
    }
}

/// Points `env` at `dns`, logs to a file, and appends `extra` (the DKIM
/// keys, which live in the installation's directory).
fn configure(env: &Env, dns: &FakeDns, extra: &str) {
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 5s\nCONNECT_TIMEOUT 2s\nLOGFILE {}\n{extra}",
        dns.addr(),
        env.dir.path().join("log").display()
    ));
}

/// One test's world: a fake DNS server with the MX of remote.test at
/// 127.0.15.`n`, `more` records, and the TXT record of each of `keys`; a
/// server there that behaves as `b`; an installation that signs with
/// `keys` (each with its selector, mode 600) for `signing`, with `extra`
/// in its configuration.
struct World {
    dns: FakeDns,
    fake: FakeSmtp,
    env: Env,
}

fn world(
    n: u8,
    b: Behavior,
    signing: &str,
    keys: &[(&TestKey, &str)],
    extra: &str,
    more: Vec<Record>,
) -> World {
    let mut records = mx("remote.test", n);
    records.extend(more);
    let env = Env::new("");
    let mut conf = extra.to_string();
    for (key, selector) in keys {
        records.push(txt(selector, signing, key));
        let p = install_key(&env, &format!("{selector}.pem"), key, 0o600);
        conf.push_str(&format!("DKIM_KEY {} {selector}\n", p.display()));
    }
    let dns = FakeDns::start(records);
    configure(&env, &dns, &conf);
    World {
        fake: listen(n, b),
        dns,
        env,
    }
}

/// The only message `fake` received, as it was sent.
fn received(fake: &FakeSmtp, env: &Env) -> String {
    let m = fake.messages();
    assert_eq!(m.len(), 1, "{}\n{}", env.mailq().stdout(), env.dump());
    unstuffed(&m[0].data)
}

/// Asserts that every signature of `msg` verifies; dkimpy's lines.
fn assert_verifies(dns: &FakeDns, msg: &str) -> String {
    let (code, out) = verify(dns, msg);
    assert_eq!(code, 0, "dkimpy: {out}\nmessage:\n{msg}");
    out
}

fn assert_fails(dns: &FakeDns, msg: &str, what: &str) {
    let (code, out) = verify(dns, msg);
    assert_eq!(code, 1, "{what}: dkimpy: {out}\nmessage:\n{msg}");
}

/// The signed header names (`h=`) of an unfolded signature, lower case.
fn signed_names(sig: &str) -> Vec<String> {
    let h = sig
        .split(';')
        .find_map(|t| t.trim().strip_prefix("h="))
        .unwrap();
    h.split(':')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect()
}

const MSG: &str = "From: Alice <alice@example.org>\nTo: x@remote.test\nSubject: signed\n\nHello,\n.a line with a dot\n";

#[test]
fn rsa_signatures_verify_and_changes_in_transit_do_not() {
    if !need_root("dkim_rsa") {
        return;
    }
    let k = keys();
    let World { dns, fake, env } = world(
        1,
        Behavior::default(),
        "example.org",
        &[(&k.rsa, "rsa2026")],
        "DKIM_DOMAIN example.org\n",
        Vec::new(),
    );
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let msg = received(&fake, &env);
    let out = assert_verifies(&dns, &msg);
    assert_eq!(out.trim(), "ok d=example.org s=rsa2026 a=rsa-sha256");
    assert!(
        log(&env).contains("dkim: signed d=example.org s=rsa2026 a=rsa-sha256"),
        "{}",
        log(&env)
    );
    // The signature is on top; From is signed twice (none can be added),
    // Received is not signed; no l=.
    let sigs = signatures(&msg);
    assert_eq!(sigs.len(), 1);
    assert!(
        msg.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{msg}"
    );
    let names = signed_names(&sigs[0]);
    assert_eq!(
        names.iter().filter(|n| *n == "from").count(),
        2,
        "{names:?}"
    );
    for n in ["to", "subject", "date", "message-id", "reply-to", "cc"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    assert!(!names.iter().any(|x| x == "received"), "{names:?}");
    assert!(!sigs[0].contains("l="), "{}", sigs[0]);
    assert!(sigs[0].contains("c=relaxed/relaxed"), "{}", sigs[0]);

    // A field we did not sign may be added on the way (as a next hop adds
    // Received); nothing we signed may change.
    assert_verifies(&dns, &format!("X-Added: later\r\n{msg}"));
    assert_fails(
        &dns,
        &msg.replace("Hello,", "Hello!"),
        "the body changed after signing",
    );
    assert_fails(&dns, &format!("{msg}one more line\r\n"), "a line appended");
    let (head, body) = msg.split_once("\r\n\r\n").unwrap();
    assert_fails(
        &dns,
        &format!("{head}\r\nReply-To: mallory@evil.test\r\n\r\n{body}"),
        "a Reply-To added",
    );
    assert_fails(
        &dns,
        &format!("{head}\r\nFrom: mallory@evil.test\r\n\r\n{body}"),
        "a second From added",
    );
    assert_fails(
        &dns,
        &msg.replace("Subject: signed", "Subject: changed"),
        "the subject changed",
    );
}

#[test]
fn ed25519_signs_for_the_mail_name_and_its_subdomains() {
    if !need_root("dkim_ed25519") {
        return;
    }
    let k = keys();
    // No DKIM_DOMAIN: the mail name (test.example) signs, for mail from
    // below it too.
    let World { dns, fake, env } = world(
        2,
        Behavior::default(),
        HOST,
        &[(&k.ed25519, "ed")],
        "",
        Vec::new(),
    );
    // A line longer than SMTP allows is folded as it is sent, and signed
    // so; the body has no final newline.
    let long = "x".repeat(1500);
    let msg = format!("From: lists@Lists.{HOST}\nTo: x@remote.test\nSubject: ed\n\nbody\n{long}");
    env.send(&["-f", "root", "x@remote.test"], &msg)
        .expect(0, &env);
    let got = received(&fake, &env);
    assert!(
        got.ends_with(&format!("\r\n {}\r\n", &long[997..])),
        "{got}"
    );
    let out = assert_verifies(&dns, &got);
    assert_eq!(out.trim(), format!("ok d={HOST} s=ed a=ed25519-sha256"));
    assert_fails(&dns, &got.replace("body", "bodY"), "the body changed");
    // A message of header fields only.
    env.send(
        &["-f", "root", "x@remote.test"],
        &format!("From: root@{HOST}\nSubject: no body"),
    )
    .expect(0, &env);
    let m = fake.messages();
    assert_eq!(m.len(), 2, "{}", env.dump());
    assert_verifies(&dns, &unstuffed(&m[1].data));
}

#[test]
fn rsa_and_ed25519_together_make_two_signatures() {
    if !need_root("dkim_dual") {
        return;
    }
    let k = keys();
    let World { dns, fake, env } = world(
        3,
        Behavior::default(),
        "example.org",
        &[(&k.rsa, "rsa"), (&k.ed25519, "ed")],
        "DKIM_DOMAIN example.org\n",
        Vec::new(),
    );
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let got = received(&fake, &env);
    let out = assert_verifies(&dns, &got);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "ok d=example.org s=rsa a=rsa-sha256",
            "ok d=example.org s=ed a=ed25519-sha256"
        ],
        "{out}"
    );
    let (code, out) = verify(&dns, got.replace("Hello,", "Goodbye,"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("fail ").count(), 2, "{out}");
}

#[test]
fn folded_fields_trailing_blank_lines_and_8bit_bodies_verify_everywhere() {
    if !need_root("dkim_8bit") {
        return;
    }
    let k = keys();
    // remote.test's server has no 8BITMIME, other.test's has: both get
    // the message converted to 7 bit, as it was signed.
    let World {
        dns,
        fake: seven,
        env,
    } = world(
        4,
        seven_bit(),
        "example.org",
        &[(&k.rsa, "rsa")],
        "DKIM_DOMAIN example.org\n",
        mx("other.test", 5),
    );
    let eight = listen(5, Behavior::default());
    // Blanks and tabs where relaxed canonicalization squeezes or drops
    // them: inside, at the end of, and around folded values; an empty Cc.
    let msg = "From: Alice\n  <alice@example.org>\nTo: x@remote.test,\n\ty@other.test \t\n\
               Subject:\ta subject \n   folded  over\n\tthree lines\t\n\
               Cc:\nReply-To:    alice@example.org   \n\
               Content-Type: text/plain;\n charset=utf-8\n\n\
               Gr\u{fc}\u{df}e aus K\u{f6}ln,  with   blanks \n\t\nund so weiter\n\n\n\n";
    env.send(
        &["-f", "alice@example.org", "x@remote.test", "y@other.test"],
        msg,
    )
    .expect(0, &env);
    let a = received(&seven, &env);
    let b = received(&eight, &env);
    assert_verifies(&dns, &a);
    assert_eq!(a, b, "the two servers got different bytes");
    assert!(a.is_ascii(), "{a}");
    assert!(
        a.contains("Content-Transfer-Encoding: quoted-printable"),
        "{a}"
    );
    assert!(a.contains("Subject:\ta subject \r\n   folded  over\r\n\tthree lines\t\r\n"));
    assert!(a.ends_with("\r\n\r\n\r\n"), "{a:?}");
    // The trailing blank lines are not signed (relaxed): one less or more
    // verifies; a changed word does not.
    assert_verifies(&dns, a.trim_end_matches("\r\n"));
    assert_fails(&dns, &a.replace("weiter", "Weiter"), "a word changed");
    let eight_cmds = eight.commands();
    assert!(
        !eight_cmds.iter().any(|c| c.contains("BODY=8BITMIME")),
        "{eight_cmds:?}"
    );
}

#[test]
fn utf8_header_text_is_signed_as_it_is() {
    if !need_root("dkim_utf8") {
        return;
    }
    let k = keys();
    let World { dns, fake, env } = world(
        11,
        Behavior {
            ehlo: vec!["PIPELINING".into(), "8BITMIME".into(), "SMTPUTF8".into()],
            ..Behavior::default()
        },
        "example.org",
        &[(&k.ed25519, "ed")],
        "DKIM_DOMAIN example.org\n",
        Vec::new(),
    );
    // The header stays UTF-8 (RFC 6532, SMTPUTF8); the body goes 7-bit.
    env.send(
        &["-f", "alice@example.org", "x@remote.test"],
        "From: J\u{fc}rgen <alice@example.org>\nTo: x@remote.test\nSubject: Gr\u{fc}\u{df}e\n\nK\u{f6}ln\n",
    )
    .expect(0, &env);
    let got = received(&fake, &env);
    assert!(got.contains("Subject: Gr\u{fc}\u{df}e\r\n"), "{got}");
    assert!(got.contains("K=C3=B6ln"), "{got}");
    assert_verifies(&dns, &got);
    let mail = fake
        .commands()
        .into_iter()
        .find(|c| c.starts_with("MAIL FROM"));
    assert!(
        mail.as_deref()
            .is_some_and(|m| m.contains("BODY=8BITMIME") && m.contains("SMTPUTF8")),
        "{mail:?}"
    );
}

#[test]
fn other_domains_and_local_copies_are_not_signed() {
    if !need_root("dkim_unsigned") {
        return;
    }
    let k = keys();
    let World { dns, fake, env } = world(
        6,
        Behavior::default(),
        "example.org",
        &[(&k.rsa, "rsa")],
        "DKIM_DOMAIN example.org\n",
        Vec::new(),
    );
    // From another domain (a look-alike): not signed, and the log says why.
    env.send(
        &["-f", "bob@elsewhere.test", "x@remote.test"],
        "From: bob@notexample.org\nTo: x@remote.test\nSubject: not ours\n\nbody\n",
    )
    .expect(0, &env);
    let got = received(&fake, &env);
    assert!(signatures(&got).is_empty(), "{got}");
    assert_eq!(verify(&dns, &got).0, 2);
    assert!(
        log(&env).contains(
            "dkim: not signed: From: <bob@notexample.org> is not in example.org (DKIM_DOMAIN)"
        ),
        "{}",
        log(&env)
    );
    // Ours, to a local mailbox and a remote one: only the remote copy is
    // signed.
    env.send(
        &["-f", "alice@example.org", BOB, "y@remote.test"],
        &MSG.replace("To: x@remote.test", &format!("To: {BOB}, y@remote.test")),
    )
    .expect(0, &env);
    let m = fake.messages();
    assert_eq!(m.len(), 2, "{}", env.dump());
    assert_verifies(&dns, &unstuffed(&m[1].data));
    let local = env.messages(BOB);
    assert_eq!(local.len(), 1, "{}", env.dump());
    assert!(
        !local[0].to_ascii_lowercase().contains("dkim-signature"),
        "{}",
        local[0]
    );
}

/// The message data in a client's stream as `fake` read it: after DATA,
/// up to the final dot.
fn data_read(fake: &FakeSmtp) -> String {
    let all: String = fake.reads().concat();
    let start = all.find("DATA\r\n").expect("no DATA") + "DATA\r\n".len();
    let len = all[start..].find("\r\n.\r\n").expect("no final dot") + 2;
    unstuffed(&all[start..start + len])
}

#[test]
fn a_retry_sends_the_same_signature() {
    if !need_root("dkim_retry") {
        return;
    }
    let k = keys();
    // The first attempt goes to a server that says 451 after the data.
    let World {
        dns,
        fake: busy,
        env,
    } = world(
        7,
        Behavior {
            data_reply: "451 4.3.0 try again later".into(),
            ..Behavior::default()
        },
        "example.org",
        &[(&k.rsa, "rsa")],
        "DKIM_DOMAIN example.org\n",
        Vec::new(),
    );
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(q.contains("try again later"), "{q}");
    let first_try = data_read(&busy);
    // The signature is in the queue, and the queue file says so.
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1);
    let envelope = std::fs::read_to_string(env.spool.join(format!("{}.env", ids[0]))).unwrap();
    assert!(envelope.starts_with("dma-rs-queue 3\n"), "{envelope}");
    assert!(envelope.contains("\ndkim DKIM-Signature:"), "{envelope}");

    // A second later (t= would change if it were signed again), another
    // server takes it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut second = mx("remote.test", 8);
    second.push(txt("rsa", "example.org", &k.rsa));
    let dns2 = FakeDns::start(second);
    let ok = listen(8, Behavior::default());
    // The configuration as it was, but for the DNS server.
    let conf = std::fs::read_to_string(&env.conf).unwrap();
    std::fs::write(
        &env.conf,
        conf.replace(&dns.addr().to_string(), &dns2.addr().to_string()),
    )
    .unwrap();
    env.flush().expect(0, &env);
    let delivered = received(&ok, &env);
    assert_eq!(delivered, first_try, "the retry sent other bytes");
    assert_verifies(&dns2, &delivered);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn an_unsafe_key_holds_the_mail_and_check_says_why() {
    if !need_root("dkim_key_modes") {
        return;
    }
    let k = keys();
    // No server: the key is refused before any connection.
    let dns = FakeDns::start(mx("remote.test", 9));
    let env = Env::new("");
    let key = install_key(&env, "rsa.pem", &k.rsa, 0o640);
    configure(
        &env,
        &dns,
        &format!("DKIM_DOMAIN example.org\nDKIM_KEY {} rsa\n", key.display()),
    );
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains(&format!(
            "4.3.5 DKIM_KEY {}: has mode 640: a private key must give the group and others no access",
            key.display()
        )),
        "{q}"
    );
    assert_eq!(env.queue_ids().len(), 1);

    let check = |env: &Env| {
        let mut c = env.cmd("dma");
        c.arg("--check");
        env.run(c, b"", None)
    };
    let r = check(&env);
    assert_eq!(r.code(), 78, "{}", r.show());
    let out = r.stdout();
    assert!(
        out.contains(&format!(
            "warning: DKIM_KEY {}: has mode 640: a private key must give the group and others no access (600 or 400)",
            key.display()
        )),
        "{out}"
    );
    // The record to publish, as openssl computes it, in strings of at
    // most 255 octets.
    let rec = &k.rsa.record;
    let want = format!(
        "rsa._domainkey.example.org. IN TXT \"{}\" \"{}\"",
        &rec[..255],
        &rec[255..]
    );
    assert!(out.lines().any(|l| l == want), "{out}\nwant: {want}");

    // Made private, the key signs what waited.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check(&env).stdout();
    assert!(!out.contains("warning: DKIM_KEY"), "{out}");
    assert!(out.lines().any(|l| l == want), "{out}");
    assert_key_record(&env, &k.ed25519, &key);
}

/// `--check` prints an Ed25519 key's record as openssl computes it.
fn assert_key_record(env: &Env, ed: &TestKey, rsa: &Path) {
    let p = install_key(env, "ed.pem", ed, 0o600);
    env.write_conf(&format!(
        "DKIM_DOMAIN example.org\nDKIM_KEY {} rsa\nDKIM_KEY {} ed\n",
        rsa.display(),
        p.display()
    ));
    let mut c = env.cmd("dma");
    c.arg("--check");
    let out = env.run(c, b"", None).stdout();
    let want = format!("ed._domainkey.example.org. IN TXT \"{}\"", ed.record);
    assert!(out.lines().any(|l| l == want), "{out}\nwant: {want}");
}

#[test]
fn installed_the_runner_as_mail_signs_with_a_key_only_it_reads() {
    if !need_root("dkim_installed") {
        return;
    }
    use support::installed::{Installed, chown_mode, show};
    let k = keys();
    let mut records = mx("remote.test", 10);
    records.push(txt("rsa", "example.org", &k.rsa));
    let dns = FakeDns::start(records);
    let fake = listen(10, Behavior::default());
    let inst = Installed::new();
    let mail = nix::unistd::User::from_name("mail").unwrap().unwrap();
    let (mail_uid, mail_gid) = (mail.uid.as_raw(), mail.gid.as_raw());
    // /etc/dma/dkim.pem inside the installation's namespace.
    let key = inst.root.join("etc/dkim.pem");
    std::fs::write(&key, &k.rsa.pem).unwrap();
    chown_mode(&key, mail_uid, mail_gid, 0o600);
    inst.add_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 5s\nDKIM_DOMAIN example.org\nDKIM_KEY /etc/dma/dkim.pem rsa\n",
        dns.addr()
    ));
    // Alice submits (set-group-id mail, her own uid): she can not read the
    // key, the runner (mail) that delivers her mail signs with it.
    let o = inst.run(Some(ALICE), &["cat", "/etc/dma/dkim.pem"], "");
    assert!(!o.status.success(), "{}", show(&o));
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), "-odi", "x@remote.test"],
        "From: alice@example.org\nTo: x@remote.test\nSubject: installed\n\nbody\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let m = fake.messages();
    assert_eq!(m.len(), 1, "{:?}", inst.spool_files());
    let out = assert_verifies(&dns, &unstuffed(&m[0].data));
    assert_eq!(out.trim(), "ok d=example.org s=rsa a=rsa-sha256");

    // --check: as root, the record; as Alice, that she can not see it.
    let dma = inst.path("sbin/dma");
    let o = inst.run(None, &[&dma, "--check"], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("warning: DKIM_KEY"), "{text}");
    assert!(
        text.contains("rsa._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p="),
        "{text}"
    );
    let o = inst.run(Some(ALICE), &[&dma, "--check"], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("# DKIM_KEY /etc/dma/dkim.pem: not readable by this user"),
        "{text}"
    );
    // A key of root's the runners can not read: --check says so, and the
    // mail waits.
    chown_mode(&key, 0, 0, 0o600);
    let o = inst.run(None, &[&dma, "--check"], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "warning: DKIM_KEY /etc/dma/dkim.pem belongs to root, and the runners (user mail) can not read it"
        ),
        "{text}"
    );
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), "-odi", "x@remote.test"],
        "From: alice@example.org\nTo: x@remote.test\nSubject: waits\n\nbody\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(fake.messages().len(), 1);
    let o = inst.run(None, &[&inst.path("sbin/sendmail"), "-bp"], "");
    let q = String::from_utf8_lossy(&o.stdout);
    assert!(
        q.contains("4.3.5 DKIM_KEY /etc/dma/dkim.pem: Permission denied"),
        "{q}"
    );
}

#[test]
fn exim_verifies_the_signatures_on_receipt() {
    if !need_root("dkim_exim") || !exim::need_exim("dkim_exim") {
        return;
    }
    let k = keys();
    // exim asks its resolver (port 53 of the address in its own
    // resolv.conf) for the keys.
    let dns = FakeDns::start_on(
        "127.0.15.53:53",
        vec![
            txt("rsa", "example.org", &k.rsa),
            txt("ed", "example.org", &k.ed25519),
        ],
    );
    let server = exim::Exim::start(exim::EximOptions {
        nameserver: Some(Ipv4Addr::new(127, 0, 15, 53)),
        ..Default::default()
    });
    let env = Env::new("");
    let rsa = install_key(&env, "rsa.pem", &k.rsa, 0o600);
    let ed = install_key(&env, "ed.pem", &k.ed25519, 0o600);
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 5s\nDKIM_DOMAIN example.org\n\
         DKIM_KEY {} rsa\nDKIM_KEY {} ed\n",
        server.port(),
        rsa.display(),
        ed.display()
    ));
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    assert_eq!(server.messages().len(), 1, "{}", env.dump());
    let log = server.log();
    for (s, a) in [("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("DKIM: d=example.org s={s} ")))
            .unwrap_or_else(|| panic!("no DKIM line for s={s}:\n{log}"));
        assert!(
            line.contains(&format!("a={a}")) && line.contains("[verification succeeded]"),
            "{line}"
        );
    }
    assert!(dns.queries() >= 2);
}
