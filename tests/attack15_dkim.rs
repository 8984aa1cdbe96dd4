//! attack15 (DKIM signing): the runner's key and what it signs, attacked
//! as an ordinary local user would (dmt-alice, on the installed set-id
//! build where that matters) and with messages crafted to get signed what
//! should not be. Each test asserts the SAFE outcome: a failing test is an
//! attack that worked. Six attacks worked when written (24f4c75) and were
//! mended:
//! `a_bare_cr_smuggles_no_foreign_from_into_a_signed_message`,
//! `a_from_past_the_first_mebibyte_is_not_overlooked`,
//! `a_second_subject_or_reply_to_breaks_the_signature`,
//! `a_fifo_as_the_key_does_not_hang_the_runner`,
//! `check_is_bounded_on_odd_key_files`,
//! `check_warns_of_a_key_in_a_directory_alice_can_write`.
//!
//! What signs is judged as a receiver judges it: dkimpy verifies
//! (tests/support/dkim_verify.py) and Python's email parser reads the
//! From: addresses of the message as it came over the wire; a message
//! whose From: the receiver sees outside the signing domain must not carry
//! a signature of the domain that verifies.
//!
//! Every test has its own server address in 127.0.15.40-127.0.15.70 (root
//! binds port 25 there; tests/dkim.rs has 1-11); run as root:
//! `DMA_TESTS_REQUIRE_ROOT=1 cargo test --locked --test attack15_dkim`.

#[path = "support/dkimworld.rs"]
mod dkimworld;
#[path = "support/dns.rs"]
mod fakedns;
#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dkimworld::*;
use fakedns::FakeDns;
use smtpd::{Behavior, FakeSmtp};
use support::installed::{Installed, chown_mode, show};
use support::*;

/// The signing domain of every test.
const DOMAIN: &str = "example.org";

/// intake's (and the signer's) limit on the header section.
const MAX_HEADER: usize = 1 << 20;

// ---------------------------------------------------------------------
// Keys, made by openssl

/// Keys that sign, and key material that must be refused.
struct Keys {
    rsa: TestKey,
    ed25519: TestKey,
    rsa1024: String,
    ec_pkcs8: String,
    ec_sec1: String,
    rsa_encrypted: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ec = genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        let ec_sec1 =
            String::from_utf8(openssl(&["pkey", "-traditional"], Some(ec.as_bytes()))).unwrap();
        let rsa = make_key(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "rsa",
        );
        let rsa_encrypted = String::from_utf8(openssl(
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes256",
                "-passout",
                "pass:secret",
            ],
            Some(rsa.pem.as_bytes()),
        ))
        .unwrap();
        Keys {
            ed25519: make_key(&["-algorithm", "ed25519"], "ed25519"),
            rsa1024: genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
            ec_pkcs8: ec,
            ec_sec1,
            rsa_encrypted,
            rsa,
        }
    })
}

/// The base64 lines of a PEM key: none may show up anywhere a user sees.
fn secret_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

/// Panics if `text` holds any of `secrets` (or the first 24 octets of one).
fn assert_no_secret(text: &str, secrets: &[String], what: &str) {
    for s in secrets {
        let head = &s[..24.min(s.len())];
        assert!(
            !text.contains(head),
            "{what}: the private key shows:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------
// The world: a fake DNS with MX and key records, a fake SMTP server,
// dkimpy, and a receiver's parser

/// A private installation (root runs it, with `-C`) whose mail to
/// remote.test goes to 127.0.15.`n`, signing for example.org with the RSA
/// key (selector `rsa`) and the Ed25519 key (selector `ed`).
struct World {
    dns: FakeDns,
    fake: FakeSmtp,
    env: Env,
}

fn world(n: u8, b: Behavior) -> World {
    let k = keys();
    let mut records = mx("remote.test", n);
    records.push(txt("rsa", DOMAIN, &k.rsa));
    records.push(txt("ed", DOMAIN, &k.ed25519));
    let dns = FakeDns::start(records);
    let env = Env::new("");
    let mut conf = String::new();
    for (key, sel) in [(&k.rsa, "rsa"), (&k.ed25519, "ed")] {
        let p = env.dir.path().join(format!("{sel}.pem"));
        std::fs::write(&p, &key.pem).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        conf.push_str(&format!("DKIM_KEY {} {sel}\n", p.display()));
    }
    configure(&env, &dns, &conf);
    World {
        fake: listen(n, b),
        dns,
        env,
    }
}

/// Points `env` at `dns`, logs to a file, signs for example.org with the
/// keys of `keys_conf`.
fn configure(env: &Env, dns: &FakeDns, keys_conf: &str) {
    env.write_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 10s\nCONNECT_TIMEOUT 2s\nLOGFILE {}\nDKIM_DOMAIN {DOMAIN}\n{keys_conf}",
        dns.addr(),
        env.dir.path().join("log").display()
    ));
}

/// The From: addresses of `msg` as a receiver reads them: Python's email
/// parser and `email.utils.getaddresses` (its strict mode, after
/// unfolding), over the bytes as they came.
fn receiver_froms(msg: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("msg");
    std::fs::write(&f, msg).unwrap();
    let o = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import re, sys, email, email.utils\n\
             m = email.message_from_bytes(open(sys.argv[1], 'rb').read())\n\
             v = [re.sub(r'\\r?\\n(?=[ \\t])', '', f) for f in m.get_all('From', [])]\n\
             for _, a in email.utils.getaddresses(v):\n    print(repr(a))\n",
        )
        .arg(&f)
        .output()
        .expect("/usr/bin/python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect()
}

/// Whether `addr` is in example.org or below it.
fn in_domain(addr: &str) -> bool {
    let Some((_, d)) = addr.rsplit_once('@') else {
        return false;
    };
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    d == DOMAIN || d.ends_with(&format!(".{DOMAIN}"))
}

/// The SAFE outcome for a message as received: if a signature of
/// example.org verifies, every From: address the receiver sees is in
/// example.org (and there is one). Else what went wrong.
fn signed_for_others(dns: &FakeDns, msg: &[u8], what: &str) -> Option<String> {
    let (code, out) = verify(dns, msg);
    let froms = receiver_froms(msg);
    let ours = !froms.is_empty() && froms.iter().all(|a| in_domain(a));
    let head = String::from_utf8_lossy(msg);
    let head = head.split("\r\n\r\n").next().unwrap_or("");
    let shown: String = head.chars().take(2500).collect();
    (code == 0 && !ours).then(|| {
        format!(
            "{what}: signed for {DOMAIN} and dkimpy says `{}', but the receiver's From: addresses are {froms:?}\nheader (first 2500 chars):\n{shown}\n",
            out.trim().replace('\n', "; ")
        )
    })
}

fn assert_not_signed_for_others(dns: &FakeDns, msg: &[u8], what: &str) {
    if let Some(why) = signed_for_others(dns, msg, what) {
        panic!("{why}");
    }
}

/// [`signed_for_others`] of each of `got`, named by `names`: all that
/// went wrong.
fn assert_none_signed_for_others<'a>(
    dns: &FakeDns,
    names: impl Iterator<Item = &'a str>,
    got: &[String],
) {
    let wrong: Vec<String> = names
        .zip(got)
        .filter_map(|(what, m)| signed_for_others(dns, m.as_bytes(), what))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The messages `fake` received, as sent; waits up to 20 s for `n`.
fn wait_messages(fake: &FakeSmtp, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let m = fake.messages();
        if m.len() >= n || start.elapsed() > Duration::from_secs(20) {
            return m.iter().map(|m| unstuffed(&m.data)).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const MSG: &str = "From: Alice <alice@example.org>\nTo: x@remote.test\nReply-To: alice@example.org\nSubject: signed\n\nHello,\nthe body\n";

// ---------------------------------------------------------------------
// 2. Getting a message signed that should not be

/// A bare CR inside a header line: the spool keeps it, the signer's From:
/// check (mail-parser) reads past it as part of the line, but the message
/// goes out (and is signed) with the CR made a line end (smtp::body, to
/// stop SMTP smuggling). So `X-A: x<CR>From: mallory@evil.test` is an
/// X-A field to the check and a From: field to the receiver, and
/// `X-B: y<CR><CR>X-C: z` ends the header the receiver sees before the
/// From: the check saw.
///
/// Reproduce: `printf 'X-A: x\rFrom: mallory@evil.test\nFrom:
/// alice@example.org\nSubject: s\n\nbody\n' | sendmail x@remote.test`
/// with DKIM_DOMAIN example.org: the remote server gets `From:
/// alice@example.org` and `From: mallory@evil.test`, signed d=example.org
/// (dkimpy: ok); the second message below arrives with only `From:
/// mallory@evil.test` in its header, signed d=example.org, verifying.
#[test]
fn a_bare_cr_smuggles_no_foreign_from_into_a_signed_message() {
    if !need_root("attack15_dkim_bare_cr") {
        return;
    }
    let World { dns, fake, env } = world(40, Behavior::default());
    let msgs = [
        (
            "a second From: field",
            "X-A: x\rFrom: mallory@evil.test\nFrom: alice@example.org\nTo: x@remote.test\nSubject: bare cr\n\nbody\n",
        ),
        (
            "the only From: the receiver sees",
            "X-A: x\rFrom: Mallory <mallory@evil.test>\nTo: x@remote.test\nSubject: bare cr 2\n\
             Date: Mon, 1 Dec 2025 10:00:00 +0000\nMessage-ID: <cr2@evil.test>\n\
             X-B: y\r\rX-C: z\nFrom: alice@example.org\n\nbody\n",
        ),
    ];
    for (_, m) in msgs {
        env.send(&["-f", "alice@example.org", "x@remote.test"], m)
            .expect(0, &env);
    }
    let got = wait_messages(&fake, msgs.len());
    assert_eq!(got.len(), msgs.len(), "{}", env.dump());
    assert_none_signed_for_others(&dns, msgs.iter().map(|(w, _)| *w), &got);
}

/// A header section of intake's limit (1 MiB of the user's lines) is
/// stored with our Received: in front, so it is longer than 1 MiB; the
/// signer reads only the first 1 MiB for its From: check. A From: field
/// (or the rest of a folded From: field) in the last ~200 bytes is not
/// seen, and is signed and sent.
///
/// Reproduce: a message whose header is `From: alice@example.org`, 1 MiB
/// of `X-Pad:` lines, and `From: mallory@evil.test` as its last line
/// (exactly 1048576 bytes of header), to x@remote.test: signed
/// d=example.org, verifying, with From: mallory@evil.test in it. The same
/// with one From: whose comment is folded over 1 MiB and ends `),
/// mallory@evil.test`.
#[test]
fn a_from_past_the_first_mebibyte_is_not_overlooked() {
    if !need_root("attack15_dkim_big_header") {
        return;
    }
    let World { dns, fake, env } = world(41, Behavior::default());
    let fixed = "To: x@remote.test\nSubject: big\nDate: Mon, 1 Dec 2025 10:00:00 +0000\n\
                 Message-ID: <big@example.org>\n";
    // Two From: fields, the foreign one last.
    let head = format!("{fixed}From: alice@example.org\n");
    let tail = "From: mallory@evil.test\n";
    let two = format!("{}\nbody\n", pad_to(head, "X-Pad: ", "\n", tail));
    // One From: field, its comment folded past the limit.
    let head = format!("{fixed}From: alice@example.org (");
    let tail = " ),\n mallory@evil.test\n";
    let one = format!("{}\nbody\n", pad_to(head, "\n padding", "", tail));
    let msgs = [
        ("a second From: field at the end", two),
        ("a folded From: field", one),
    ];
    for (_, m) in &msgs {
        env.send(&["-f", "alice@example.org", "x@remote.test"], m)
            .expect(0, &env);
    }
    let got = wait_messages(&fake, msgs.len());
    assert_eq!(got.len(), msgs.len(), "{}", env.mailq().stdout());
    assert_none_signed_for_others(&dns, msgs.iter().map(|(w, _)| *w), &got);
}

/// `head`, then lines `prefix` + padding + `suffix`, then `tail`: exactly
/// [`MAX_HEADER`] bytes (intake's limit, which it accepts).
fn pad_to(mut head: String, prefix: &str, suffix: &str, tail: &str) -> String {
    let line = |n: usize| format!("{prefix}{}{suffix}", "p".repeat(n));
    while head.len() + tail.len() + 300 < MAX_HEADER {
        head.push_str(&line(90));
    }
    let rest = MAX_HEADER - head.len() - tail.len();
    // The last line takes what is left.
    head.push_str(&line(rest - prefix.len() - suffix.len()));
    head.push_str(tail);
    assert_eq!(head.len(), MAX_HEADER);
    head
}

/// From: fields a receiver reads as (also) outside example.org, however
/// written: none is signed. (And one where both agree it is ours, which
/// is.)
#[test]
fn obfuscated_foreign_froms_are_not_signed() {
    if !need_root("attack15_dkim_obfuscated") {
        return;
    }
    let World { dns, fake, env } = world(42, Behavior::default());
    let long = "x".repeat(1200);
    let cases: Vec<(&str, &str, String)> = vec![
        ("two addresses", "alice@example.org", "From: alice@example.org, mallory@evil.test\n".into()),
        ("two fields", "alice@example.org", "From: alice@example.org\nFrom: mallory@evil.test\n".into()),
        ("two fields, foreign first", "alice@example.org", "From: mallory@evil.test\nFrom: alice@example.org\n".into()),
        ("folded list", "alice@example.org", "From: alice@example.org,\n\tmallory@evil.test\n".into()),
        ("ours in a comment", "alice@example.org", "From: mallory@evil.test (alice@example.org)\n".into()),
        ("ours as a quoted name", "alice@example.org", "From: \"alice@example.org\" <mallory@evil.test>\n".into()),
        ("ours RFC 2047-encoded as the name", "alice@example.org", "From: =?utf-8?q?alice=40example.org?= <mallory@evil.test>\n".into()),
        ("the foreign one RFC 2047-encoded", "alice@example.org", "From: =?us-ascii?q?mallory=40evil.test?=\n".into()),
        ("a group", "alice@example.org", "From: team: alice@example.org, mallory@evil.test;\n".into()),
        ("angle then bare", "alice@example.org", "From: <alice@example.org>mallory@evil.test\n".into()),
        ("a look-alike below another domain", "alice@example.org", "From: alice@example.org.evil.test\n".into()),
        ("a look-alike suffix", "alice@example.org", "From: alice@notexample.org\n".into()),
        ("Sender and Resent-From ours", "alice@example.org", "From: mallory@evil.test\nSender: alice@example.org\nResent-From: alice@example.org\n".into()),
        ("upper-case field name", "alice@example.org", "FROM: mallory@evil.test\n".into()),
        ("no blank after the colon", "alice@example.org", "from:mallory@evil.test\n".into()),
        ("a NUL in the address", "alice@example.org", "From: alice@example.org\0mallory@evil.test\n".into()),
        ("a line over 998 octets (folded on the wire)", "alice@example.org", format!("From: \"{long}\" <mallory@evil.test>\n")),
        ("an escaped parenthesis (ours, both agree)", "alice@example.org", "From: alice@example.org (x\\) mallory@evil.test)\n".into()),
        (
            "From: only in a MIME part, the envelope sender foreign",
            "mallory@evil.test",
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nFrom: alice@example.org\n\npart\n--b--\n".into(),
        ),
    ];
    for (_, sender, head) in &cases {
        let m = if head.starts_with("MIME") {
            format!("To: x@remote.test\nSubject: mime\n{head}")
        } else {
            format!("{head}To: x@remote.test\nSubject: obfuscated\n\nbody\n")
        };
        env.send(&["-f", sender, "x@remote.test"], &m)
            .expect(0, &env);
    }
    let got = wait_messages(&fake, cases.len());
    assert_eq!(got.len(), cases.len(), "{}", env.mailq().stdout());
    assert_none_signed_for_others(&dns, cases.iter().map(|(w, _, _)| *w), &got);
    // The control: ours, and signed.
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let got = wait_messages(&fake, cases.len() + 1);
    let last = got.last().unwrap();
    assert_eq!(verify(&dns, last.as_bytes()).0, 0, "{last}\n{}", log(&env));
}

/// The message as received, with `field` inserted at `at` (0: on top;
/// `usize::MAX`: at the end of the header; else after that many lines).
fn with_field(msg: &str, field: &str, at: usize) -> String {
    let (head, body) = msg.split_once("\r\n\r\n").unwrap();
    let mut lines: Vec<&str> = head.split("\r\n").collect();
    let i = at.min(lines.len());
    lines.insert(i, field);
    format!("{}\r\n\r\n{body}", lines.join("\r\n"))
}

/// A second From: added after signing, wherever in the header (on top,
/// as a replay would; next to the first; at the end): dkimpy fails it.
#[test]
fn a_from_added_anywhere_breaks_the_signature() {
    if !need_root("attack15_dkim_added_from") {
        return;
    }
    let World { dns, fake, env } = world(43, Behavior::default());
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let got = wait_messages(&fake, 1);
    let msg = &got[0];
    let (code, out) = verify(&dns, msg.as_bytes());
    assert_eq!(code, 0, "{out}\n{msg}");
    let n = msg.split("\r\n\r\n").next().unwrap().split("\r\n").count();
    for at in [0, 1, n / 2, n - 1, usize::MAX] {
        for field in ["From: mallory@evil.test", "from:mallory@evil.test"] {
            let forged = with_field(msg, field, at);
            let (code, out) = verify(&dns, forged.as_bytes());
            assert_eq!(
                code, 1,
                "`{field}' added at line {at} still verifies: {out}\n{forged}"
            );
        }
    }
}

/// Fields signed once that the message has (Subject, To, Reply-To, Date,
/// Message-ID) are not over-signed: one more of each, added on top after
/// signing (a replay: most mail readers show the first Subject, and reply
/// to the first Reply-To), still verifies: dkimpy takes the bottom one.
/// Only From: is over-signed (h= lists it twice).
///
/// Reproduce: take any message dma-rs signed, put `Reply-To:
/// mallory@evil.test` (or `Subject: urgent: new bank details`) on top,
/// verify with dkimpy: `ok`.
#[test]
fn a_second_subject_or_reply_to_breaks_the_signature() {
    if !need_root("attack15_dkim_added_fields") {
        return;
    }
    let World { dns, fake, env } = world(44, Behavior::default());
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let got = wait_messages(&fake, 1);
    let msg = &got[0];
    assert_eq!(verify(&dns, msg.as_bytes()).0, 0, "{msg}");
    let mut verified = Vec::new();
    for field in [
        "Subject: urgent: our new bank details",
        "Reply-To: mallory@evil.test",
        "To: victim@remote.test",
        "Date: Tue, 1 Jan 2030 00:00:00 +0000",
        "Message-ID: <replayed@evil.test>",
    ] {
        let forged = with_field(msg, field, 0);
        let (code, out) = verify(&dns, forged.as_bytes());
        if code != 1 {
            verified.push(format!("{field}: {}", out.trim()));
        }
    }
    assert!(
        verified.is_empty(),
        "added on top after signing, and still verifying:\n{}\n\n{msg}",
        verified.join("\n")
    );
}

// ---------------------------------------------------------------------
// 1. Reading the key, as alice on the installed system

/// An installed system (`dma` set-group-id mail, `dma-local` set-user-id
/// root, runners as `mail`) whose mail to remote.test goes to
/// 127.0.15.`n`, signing for example.org with the RSA key at
/// /etc/dma/dkim.pem (mail:mail 600), with `extra` in dma.conf.
struct Inst {
    inst: Installed,
    dns: FakeDns,
    fake: FakeSmtp,
}

fn mail_ids() -> (u32, u32) {
    let mail = nix::unistd::User::from_name("mail").unwrap().unwrap();
    (mail.uid.as_raw(), mail.gid.as_raw())
}

fn installed(n: u8, b: Behavior, extra: &str) -> Inst {
    let k = keys();
    let mut records = mx("remote.test", n);
    records.push(txt("rsa", DOMAIN, &k.rsa));
    let dns = FakeDns::start(records);
    let fake = listen(n, b);
    let inst = Installed::new();
    let key = inst.root.join("etc/dkim.pem");
    std::fs::write(&key, &k.rsa.pem).unwrap();
    let (uid, gid) = mail_ids();
    chown_mode(&key, uid, gid, 0o600);
    inst.add_conf(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 5s\nCONNECT_TIMEOUT 2s\nDKIM_DOMAIN {DOMAIN}\nDKIM_KEY /etc/dma/dkim.pem rsa\n{extra}",
        dns.addr()
    ));
    Inst { inst, dns, fake }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The ids of the installation's queued messages.
fn queue_ids(inst: &Installed) -> Vec<String> {
    inst.spool_files()
        .iter()
        .filter_map(|f| f.strip_suffix(".env").map(str::to_string))
        .collect()
}

/// Alice tries every way a command of ours could show her the key: as a
/// `-C` configuration (of `sendmail -bp`, `dma --check`, `-bv`), through
/// `dma --check` of the system configuration, `-bv`, `mailq`, `-Q show`,
/// `-t` recipients naming it (as a file, a pipe, an include), her
/// `.forward` naming it (as a mailbox file, and a pipe that cats it);
/// and the runner signs her mail meanwhile. No output, mailbox, bounce or
/// file of hers holds a line of the key, and the key is as it was.
#[test]
fn alice_reads_no_key_through_our_commands() {
    if !need_root("attack15_dkim_read_key") {
        return;
    }
    let _homes = Homes::take();
    let k = keys();
    let Inst { inst, dns, fake } = installed(45, Behavior::default(), "");
    let secrets = secret_lines(&k.rsa.pem);
    let key = inst.root.join("etc/dkim.pem");
    let before = std::fs::metadata(&key).unwrap();
    let sm = inst.path("sbin/sendmail");
    let dma = inst.path("sbin/dma");
    let cat = script(
        ALICE,
        "cat",
        "/bin/cat /etc/dma/dkim.pem > \"$HOME/t.out\" 2>&1\n/bin/cat > /dev/null\n",
    );
    set_forward(ALICE, &format!("/etc/dma/dkim.pem\n\"|{cat}\"\n"));

    let mut seen = String::new();
    let mut run = |argv: &[&str], stdin: &str| {
        let o = inst.run(Some(ALICE), argv, stdin);
        seen.push_str(&format!("$ {argv:?}\n{}\n", text(&o)));
        o
    };
    let o = run(&["cat", "/etc/dma/dkim.pem"], "");
    assert!(
        !o.status.success(),
        "alice reads the key itself: {}",
        show(&o)
    );
    run(&[&sm, "-C", "/etc/dma/dkim.pem", "-bp"], "");
    run(&[&dma, "-C", "/etc/dma/dkim.pem", "--check"], "");
    run(
        &[&sm, "-C", "/etc/dma/dkim.pem", "-bv", "x@remote.test"],
        "",
    );
    run(&[&dma, "--check"], "");
    run(
        &[
            &sm,
            "-bv",
            "x@remote.test",
            ALICE,
            "/etc/dma/dkim.pem",
            "|/bin/cat /etc/dma/dkim.pem",
        ],
        "",
    );
    // Signed mail of hers goes out: the runner has the key.
    let o = run(
        &[&sm, "-odi", "-f", "alice@example.org", "x@remote.test"],
        MSG,
    );
    assert!(o.status.success(), "{}", show(&o));
    // Her .forward: the key as her mailbox file, and a pipe that cats it.
    run(&[&sm, "-odi", ALICE], "Subject: to my forward\n\nbody\n");
    // Recipients from the header naming it.
    run(
        &[&sm, "-odi", "-t"],
        "From: alice@example.org\nTo: /etc/dma/dkim.pem, \"|/bin/cat /etc/dma/dkim.pem\"\n\
         Cc: :include:/etc/dma/dkim.pem\nSubject: t\n\nbody\n",
    );
    // A message of hers waits (no server for it); -Q show and mailq.
    run(
        &[&sm, "-odq", "-f", "alice@example.org", "y@remote.test"],
        MSG,
    );
    for id in queue_ids(&inst) {
        run(&[&dma, "-Q", "show", &id], "");
    }
    run(&[&sm, "-bp"], "");
    run(&[&dma, "-bp", "-v"], "");

    // Everything she saw, her files, every mailbox (bounces).
    seen.push_str(&t_file(ALICE, "out"));
    for e in std::fs::read_dir(inst.root.join("mail")).unwrap().flatten() {
        seen.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    assert_no_secret(&seen, &secrets, "alice's commands");
    eprintln!("what alice saw:\n{seen}");
    // Her message was signed (so the runner did read the key meanwhile).
    let got = wait_messages(&fake, 1);
    assert!(!got.is_empty(), "{seen}\n{:?}", inst.spool_files());
    assert_eq!(verify(&dns, got[0].as_bytes()).0, 0, "{}", got[0]);
    // The key is as it was.
    let after = std::fs::metadata(&key).unwrap();
    assert_eq!(std::fs::read_to_string(&key).unwrap(), k.rsa.pem);
    assert_eq!(
        (after.uid(), after.gid(), after.mode()),
        (before.uid(), before.gid(), before.mode())
    );
}

/// While the runner that signed alice's message waits on the server (it
/// signed before its first byte went out): it holds no descriptor of the
/// key, writes no core, and alice can read none of its /proc files
/// (memory, maps, environment, descriptors, stack) nor signal it.
#[test]
fn the_signing_runner_keeps_no_key_open_and_shows_alice_nothing() {
    if !need_root("attack15_dkim_runner_proc") {
        return;
    }
    let Inst {
        inst,
        fake,
        dns: _dns,
    } = installed(
        46,
        Behavior {
            stall_on: Some("DATA".into()),
            ..Behavior::default()
        },
        "SMTP_TIMEOUT 20s\n",
    );
    let sm = inst.path("sbin/sendmail");
    // In the background (the default): the runner is not hers.
    let o = inst.run_sh(
        Some(ALICE),
        &format!("{sm} -f alice@example.org x@remote.test >/dev/null 2>&1"),
        MSG,
    );
    assert!(o.status.success(), "{}", show(&o));
    let start = Instant::now();
    while !fake.commands().iter().any(|c| c.starts_with("DATA")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no DATA: {:?}\n{:?}\n{}",
            fake.commands(),
            inst.spool_files(),
            text(&inst.run(None, &[&sm, "-bp", "-v"], ""))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Live ones: a zombie (a runner's parent that went into the
    // background) has no memory, and shows its empty maps to anyone.
    let zombie = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
    };
    let pids: Vec<i32> = pids_of("mail", "dma-local")
        .into_iter()
        .filter(|p| !zombie(p))
        .collect();
    assert!(!pids.is_empty(), "no runner of mail's found");
    let mut probe = String::new();
    for pid in &pids {
        // As root: what it has open, and its core limit.
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                let t = std::fs::read_link(fd.path()).unwrap_or_default();
                assert!(
                    !t.to_string_lossy().contains("dkim"),
                    "runner {pid} holds the key open: {}",
                    t.display()
                );
            }
        }
        if let Ok(limits) = std::fs::read_to_string(format!("/proc/{pid}/limits")) {
            let core = limits
                .lines()
                .find(|l| l.starts_with("Max core file size"))
                .unwrap_or("");
            assert!(
                core.split_whitespace().nth(4) == Some("0"),
                "runner {pid} may dump core: {core}"
            );
        }
        for cmd in [
            format!("cat /proc/{pid}/environ"),
            format!("cat /proc/{pid}/maps"),
            format!("head -c 16 /proc/{pid}/mem"),
            format!("dd if=/proc/{pid}/mem bs=1 count=1 skip=4194304"),
            format!("ls /proc/{pid}/fd/"),
            format!("cat /proc/{pid}/stack"),
            format!("cat /proc/{pid}/syscall"),
            format!("kill -0 {pid}"),
            format!("kill -SEGV {pid}"),
            format!("kill -QUIT {pid}"),
        ] {
            probe.push_str(&format!(
                "if {cmd} >/dev/null 2>&1 && ! grep -q '^State:.*Z' /proc/{pid}/status; then echo 'WORKED: {cmd}'; fi\n"
            ));
        }
    }
    let o = inst.run_sh(Some(ALICE), &probe, "");
    let out = text(&o);
    let mut status = String::new();
    for pid in &pids {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        status.push_str(&format!(
            "{pid}: {:?}\n{}\n",
            String::from_utf8_lossy(&cmd).replace('\0', " "),
            st.lines()
                .filter(|l| l.starts_with("Uid")
                    || l.starts_with("Gid")
                    || l.starts_with("PPid")
                    || l.starts_with("Name"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    assert!(!out.contains("WORKED"), "{out}\n{status}");
}

/// Alice's `.forward` program runs in the same queue run right after the
/// runner signed a message (queued first): nothing of the key is open in
/// it, nor in its environment.
#[test]
fn a_forward_program_after_signing_inherits_nothing_of_the_key() {
    if !need_root("attack15_dkim_forward_fds") {
        return;
    }
    let _homes = Homes::take();
    let Inst { inst, dns, fake } = installed(47, Behavior::default(), "");
    let probe = script(
        ALICE,
        "probe",
        "ls -l /proc/$$/fd/ > \"$HOME/t.fds\" 2>&1\ncat /proc/$$/environ | tr '\\0' '\\n' >> \"$HOME/t.fds\"\ncat > /dev/null\n",
    );
    set_forward(ALICE, &format!("\"|{probe}\"\n"));
    let sm = inst.path("sbin/sendmail");
    let o = inst.run(
        Some(ALICE),
        &[&sm, "-odq", "-f", "alice@example.org", "x@remote.test"],
        MSG,
    );
    assert!(o.status.success(), "{}", show(&o));
    std::thread::sleep(Duration::from_millis(1100));
    let o = inst.run(Some(ALICE), &[&sm, "-odq", ALICE], "Subject: me\n\nbody\n");
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(None, &[&sm, "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let got = wait_messages(&fake, 1);
    assert_eq!(got.len(), 1, "{:?}", inst.spool_files());
    assert_eq!(verify(&dns, got[0].as_bytes()).0, 0, "{}", got[0]);
    let start = Instant::now();
    while t_file(ALICE, "fds").is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fds = t_file(ALICE, "fds");
    assert!(!fds.is_empty(), "the program did not run");
    assert!(!fds.contains("dkim") && !fds.contains("BEGIN"), "{fds}");
    assert_no_secret(&fds, &secret_lines(&keys().rsa.pem), "the program's fds");
}

// ---------------------------------------------------------------------
// 3 and 4. The queue: no dkim line of the user's, no change to what was
// signed

/// Alice submits with every envelope value she controls carrying a `dkim`
/// line (sender, recipients, -N, -R, -V, and through `-bs` ENVID and
/// ORCPT with xtext line ends), and tries the spool files directly: every
/// envelope intake wrote is version 2 with no `dkim` line, she reaches no
/// queue file, and what goes out carries only the runner's signature.
#[test]
fn intake_writes_no_dkim_line_and_alice_reaches_no_queue_file() {
    if !need_root("attack15_dkim_envelope") {
        return;
    }
    let Inst { inst, dns, fake } = installed(48, Behavior::default(), "");
    let sm = inst.path("sbin/sendmail");
    let forged = "dkim DKIM-Signature: v=1; a=rsa-sha256; d=evil.test; s=x; h=from; bh=x; b=x";
    let mut runs = Vec::new();
    for argv in [
        vec![
            "-odq",
            "-f",
            "alice@example.org",
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            forged,
            "x@remote.test",
        ],
        vec![
            "-odq",
            "-f",
            "alice@example.org",
            "-V",
            "dkim",
            "dkim@remote.test",
        ],
        vec![
            "-odq",
            "-f",
            "dkim@example.org",
            "-V",
            "DKIM-Signature:v=1",
            "x@remote.test",
        ],
        vec!["-odq", "-f", forged, "x@remote.test"],
        vec!["-odq", "-f", "alice@example.org", forged],
    ] {
        let mut a = vec![sm.as_str()];
        a.extend(argv);
        let o = inst.run(Some(ALICE), &a, MSG);
        runs.push(format!("{a:?}: {}", show(&o)));
    }
    // -bs takes no DSN parameters (ENVID, ORCPT: 555): plain addresses.
    let bs = "EHLO x\r\n\
              MAIL FROM:<dkim@example.org>\r\n\
              RCPT TO:<dkim@remote.test>\r\n\
              DATA\r\n\
              From: alice@example.org\r\nTo: x@remote.test\r\nSubject: bs\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let o = inst.run(Some(ALICE), &[&sm, "-bs", "-odq"], bs);
    runs.push(format!("-bs: {}", show(&o)));
    let runs = runs.join("\n");
    let ids = queue_ids(&inst);
    assert!(ids.len() >= 3, "too few accepted:\n{runs}");
    for id in &ids {
        let e = std::fs::read_to_string(inst.root.join(format!("spool/{id}.env"))).unwrap();
        assert!(e.starts_with("dma-rs-queue 2\n"), "{id}:\n{e}");
        assert!(
            !e.lines().any(|l| l.starts_with("dkim")),
            "{id}: a dkim line:\n{e}"
        );
    }
    // The spool itself, as alice (with no set-id program in between).
    let spool = inst.path("spool");
    let id = &ids[0];
    let mut probe = String::new();
    for cmd in [
        format!("ls {spool}"),
        format!("cat {spool}/{id}.env"),
        format!("cat {spool}/{id}.msg"),
        format!("sh -c 'echo dkim x >> {spool}/{id}.env'"),
        format!("sh -c 'echo From: mallory@evil.test >> {spool}/{id}.msg'"),
        format!("ln -s /tmp {spool}/x"),
        format!("rm -f {spool}/{id}.env"),
    ] {
        probe.push_str(&format!(
            "if {cmd} >/dev/null 2>&1; then echo 'WORKED: {cmd}'; fi\n"
        ));
    }
    let o = inst.run_sh(Some(ALICE), &probe, "");
    assert!(!text(&o).contains("WORKED"), "{}", text(&o));
    // Delivered: only our signature, and it verifies.
    let o = inst.run(None, &[&sm, "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let got = wait_messages(&fake, ids.len());
    assert_eq!(got.len(), ids.len(), "{:?}", inst.spool_files());
    for m in &got {
        let sigs = signatures(m);
        assert!(
            sigs.iter()
                .all(|s| s.contains("d=example.org") && !s.contains("evil")),
            "{m}"
        );
        if !sigs.is_empty() {
            assert_eq!(verify(&dns, m.as_bytes()).0, 0, "{m}");
        }
    }
}

// ---------------------------------------------------------------------
// 5. Keeping others' mail from being signed (or sent)

/// Messages made to strain the signer and the 7-bit form it signs: a
/// 1 MiB header of 60 000 From: addresses (all ours), an 8-bit message
/// with a 300 KiB header (over the converter's limit), 3 000 nested
/// multiparts around an 8-bit leaf, NUL octets, one header line of
/// nearly 1 MiB, a body of bare CRs. One queue run takes them all and
/// the ordinary message queued after them: that one is signed and sent,
/// every other ends delivered or waiting with a reason, nothing panics,
/// and no foreign From: is signed.
#[test]
fn messages_that_strain_the_signer_hold_up_nothing_else() {
    if !need_root("attack15_dkim_strain") {
        return;
    }
    let World { dns, fake, env } = world(49, Behavior::default());
    let mut msgs: Vec<(&str, Vec<u8>)> = Vec::new();
    // 60 000 From: addresses.
    let mut m = String::from("To: x@remote.test\nSubject: many\nFrom: a0@example.org");
    for i in 1..60_000 {
        m.push_str(&format!(",\n a{i}@example.org"));
        if m.len() > MAX_HEADER - 2000 {
            break;
        }
    }
    m.push_str("\n\nbody\n");
    msgs.push(("many From: addresses", m.into_bytes()));
    // An 8-bit message with a 300 KiB header.
    let mut m = String::from("From: alice@example.org\nTo: x@remote.test\nSubject: big 8bit\n");
    while m.len() < 300 * 1024 {
        m.push_str(&format!("X-Pad: {}\n", "q".repeat(90)));
    }
    m.push_str("\nGr\u{fc}\u{df}e\n");
    msgs.push(("an 8-bit message with a 300 KiB header", m.into_bytes()));
    // 3 000 nested multiparts.
    let depth = 3000;
    let mut m = String::from(
        "From: alice@example.org\nTo: x@remote.test\nSubject: deep\nMIME-Version: 1.0\n",
    );
    for i in 0..depth {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
        ));
    }
    m.push_str(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nK\u{f6}ln\n",
    );
    for i in (0..depth).rev() {
        m.push_str(&format!("--b{i}--\n"));
    }
    msgs.push(("3000 nested multiparts", m.into_bytes()));
    // NUL octets.
    msgs.push((
        "NUL octets",
        b"From: alice@example.org\nTo: x@remote.test\nSubject: nul\0here\nX-Nul: \0\0\0\n\nbo\0dy\n\0\n".to_vec(),
    ));
    // One header line of nearly 1 MiB.
    let m = format!(
        "From: alice@example.org\nTo: x@remote.test\nSubject: long\nX-Long: {}\n\nbody\n",
        "z".repeat(MAX_HEADER - 200)
    );
    msgs.push(("a header line of nearly 1 MiB", m.into_bytes()));
    // A body of bare CRs (each a line end on the wire).
    let mut m = b"From: alice@example.org\nTo: x@remote.test\nSubject: crs\n\n".to_vec();
    m.extend(std::iter::repeat_n(b'\r', 1 << 20));
    m.extend(b"\n");
    msgs.push(("a body of bare CRs", m));
    for (what, m) in &msgs {
        let mut c = env.cmd("sendmail");
        c.args(["-odq", "-f", "alice@example.org", "x@remote.test"]);
        let r = env.run(c, m, None);
        assert_eq!(r.code(), 0, "{what}: {}", r.show());
    }
    std::thread::sleep(Duration::from_millis(1100));
    env.send(&["-odq", "-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let start = Instant::now();
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "180"])
        .arg(bin())
        .arg("-C")
        .arg(&env.conf)
        .arg("-q");
    let run = env.run(c, b"", None);
    let took = start.elapsed();
    assert!(
        !run.stderr().contains("panicked") && !log(&env).contains("panicked"),
        "{}\n{}",
        run.show(),
        log(&env)
    );
    assert_eq!(run.code(), 0, "after {took:?}: {}", run.show());
    assert!(
        took < Duration::from_secs(120),
        "the queue run took {took:?}"
    );
    let got = wait_messages(&fake, 1);
    let ordinary = got
        .iter()
        .find(|m| m.contains("Subject: signed"))
        .unwrap_or_else(|| panic!("the ordinary message did not go: {}", env.mailq().stdout()));
    assert_eq!(verify(&dns, ordinary.as_bytes()).0, 0, "{ordinary}");
    for m in &got {
        assert_not_signed_for_others(&dns, m.as_bytes(), "a strained message");
    }
    // What waits says why.
    let q = env.mailq().stdout();
    for id in env.queue_ids() {
        let e = std::fs::read_to_string(env.spool.join(format!("{id}.env"))).unwrap();
        assert!(
            e.contains("\nreply "),
            "{id} waits without a reason:\n{e}\n{q}"
        );
    }
    eprintln!(
        "strain: {} of {} sent in {took:?}; waiting:\n{q}",
        got.len(),
        msgs.len() + 1
    );
}

// ---------------------------------------------------------------------
// 6. Bad key material

/// A file of `text` at `p`, owned by `uid`, mode `mode`.
fn put(p: &Path, text: &str, uid: u32, mode: u32) {
    std::fs::write(p, text).unwrap();
    chown_mode(p, uid, uid_gid(uid), mode);
}

fn uid_gid(uid: u32) -> u32 {
    nix::unistd::User::from_uid(uid.into())
        .unwrap()
        .map_or(0, |u| u.gid.as_raw())
}

/// Key files that must not sign, each named in root's configuration: the
/// mail waits with `4.3.5 DKIM_KEY <path>: <why>` in mailq, and nothing
/// goes out unsigned. (The runner here is root: `-C`.)
#[test]
fn bad_key_material_holds_the_mail_with_4_3_5() {
    if !need_root("attack15_dkim_bad_keys") {
        return;
    }
    let k = keys();
    let alice = user(ALICE);
    let dns = FakeDns::start(mx("remote.test", 50));
    let fake = listen(50, Behavior::default());
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let at = |n: &str| scratch.path().join(n);
    // Alice's own directory, and her key in it.
    let adir = at("alice");
    std::fs::create_dir(&adir).unwrap();
    chown_mode(&adir, alice.uid, alice.gid, 0o755);
    put(&adir.join("k.pem"), &k.rsa.pem, alice.uid, 0o600);
    std::os::unix::fs::symlink(adir.join("k.pem"), at("to-alices")).unwrap();
    put(&at("rsa1024.pem"), &k.rsa1024, 0, 0o600);
    put(&at("ec.pem"), &k.ec_pkcs8, 0, 0o600);
    put(&at("ec-sec1.pem"), &k.ec_sec1, 0, 0o600);
    put(&at("encrypted.pem"), &k.rsa_encrypted, 0, 0o600);
    put(&at("empty.pem"), "", 0, 0o600);
    put(
        &at("cert-only.pem"),
        "-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n",
        0,
        0o600,
    );
    let huge = at("huge.pem");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(2 << 30).unwrap();
    chown_mode(&huge, 0, 0, 0o600);
    let hers = format!("is owned by uid {}", alice.uid);
    let cases: Vec<(PathBuf, &str)> = vec![
        ("/dev/zero".into(), "is not a regular file"),
        (scratch.path().to_path_buf(), "is not a regular file"),
        (huge.clone(), "is larger than 65536 bytes"),
        (adir.join("k.pem"), &hers),
        (at("to-alices"), &hers),
        (at("rsa1024.pem"), "holds a 1024-bit RSA key"),
        (at("ec.pem"), "holds a key of another kind"),
        (at("ec-sec1.pem"), "holds an EC key"),
        (at("encrypted.pem"), "holds no PEM private key"),
        (at("empty.pem"), "holds no PEM private key"),
        (at("cert-only.pem"), "holds no PEM private key"),
    ];
    let mut wrong = Vec::new();
    for (path, why) in &cases {
        let env = Env::new("");
        configure(&env, &dns, &format!("DKIM_KEY {} rsa\n", path.display()));
        let start = Instant::now();
        env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
            .expect(0, &env);
        let q = env.mailq().stdout();
        let want = format!("4.3.5 DKIM_KEY {}: {why}", path.display());
        if !q.contains(&want)
            || env.queue_ids().len() != 1
            || start.elapsed() > Duration::from_secs(20)
        {
            wrong.push(format!(
                "{}: want `{want}' ({:?}):\n{q}",
                path.display(),
                start.elapsed()
            ));
        }
    }
    assert_eq!(
        fake.messages().len(),
        0,
        "sent unsigned (or signed with a refused key)"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The control: a symbolic link of root's to a good key of root's signs.
    put(&at("good.pem"), &k.ed25519.pem, 0, 0o600);
    std::os::unix::fs::symlink(at("good.pem"), at("to-good")).unwrap();
    let dns2 = FakeDns::start({
        let mut r = mx("remote.test", 50);
        r.push(txt("ed", DOMAIN, &k.ed25519));
        r
    });
    let env = Env::new("");
    configure(
        &env,
        &dns2,
        &format!("DKIM_KEY {} ed\n", at("to-good").display()),
    );
    env.send(&["-f", "alice@example.org", "x@remote.test"], MSG)
        .expect(0, &env);
    let got = wait_messages(&fake, 1);
    assert_eq!(got.len(), 1, "{}", env.mailq().stdout());
    assert_eq!(verify(&dns2, got[0].as_bytes()).0, 0, "{}", got[0]);
}

/// Runs `sendmail -odi` of `env` as root with `msg`; gives it `limit`,
/// then (if it still runs) opens `fifo` for writing, which lets a reader
/// blocked in open(2) go on. Whether it ended within the limit, and the
/// run.
fn send_within(env: &Env, msg: &str, limit: Duration, fifo: &Path) -> (bool, Run) {
    use std::io::Write;
    let mut c = env.cmd("sendmail");
    c.args(["-odi", "-f", "alice@example.org", "x@remote.test"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let text = format!("{c:?}");
    let mut child = c.spawn().unwrap();
    let mut si = child.stdin.take().unwrap();
    si.write_all(msg.as_bytes()).unwrap();
    drop(si);
    let start = Instant::now();
    let mut in_time = true;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            in_time = false;
            release_fifo(fifo);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        in_time,
        Run {
            cmd: text,
            user: None,
            out,
        },
    )
}

/// Opens `fifo` for writing and closes it: a reader blocked in open(2)
/// then reads an end of file.
fn release_fifo(fifo: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo);
}

/// A FIFO named as the key (root's mistake, or, where the key's directory
/// is writable by a user, that user's doing): the runner opens it before
/// it looks at what it is, and open(2) on a FIFO waits for a writer,
/// forever: the runner hangs (holding the message), `sendmail -odi`
/// with it, and every later runner that comes to a message to sign.
///
/// Reproduce: `mkfifo /etc/dma/dkim.pem` (or, with the key in a directory
/// alice can write, alice: `mv dkim.pem x; mkfifo dkim.pem`), then
/// `echo | sendmail -odi -f alice@example.org x@remote.test`: it never
/// returns (`dma -q` likewise); `dma --check` hangs too.
#[test]
fn a_fifo_as_the_key_does_not_hang_the_runner() {
    if !need_root("attack15_dkim_fifo") {
        return;
    }
    let dns = FakeDns::start(mx("remote.test", 51));
    let fake = listen(51, Behavior::default());
    let env = Env::new("");
    let fifo = env.dir.path().join("dkim.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    configure(&env, &dns, &format!("DKIM_KEY {} rsa\n", fifo.display()));
    let (in_time, run) = send_within(&env, MSG, Duration::from_secs(30), &fifo);
    // Let any runner still blocked go.
    release_fifo(&fifo);
    assert!(
        in_time,
        "sendmail -odi hung for 30 s on a FIFO as the key: {}",
        run.show()
    );
    let q = env.mailq().stdout();
    assert!(
        q.contains(&format!(
            "4.3.5 DKIM_KEY {}: is not a regular file",
            fifo.display()
        )),
        "{q}"
    );
    assert_eq!(fake.messages().len(), 0);
}

/// `dma --check` on key files that are not what they claim: /dev/zero, a
/// FIFO, an 8 GiB (sparse) file; under a 300 MB address-space limit, so
/// that reading one whole shows as `out of memory`. It reads the whole
/// file, whatever it is (after warning that the runner refuses it):
/// /dev/zero until memory runs out, the FIFO forever (open(2) waits for a
/// writer), the big file whole.
///
/// Reproduce: `DKIM_KEY /dev/zero s` in dma.conf, `dma --check` as root:
/// it takes all the memory it may (`warning: DKIM_KEY /dev/zero: out of
/// memory` under `ulimit -v`; 530 MB resident under a 1 GB limit, in
/// 0.3 s); `mkfifo /tmp/k.pem`, `DKIM_KEY /tmp/k.pem s`: it never
/// returns.
#[test]
fn check_is_bounded_on_odd_key_files() {
    if !need_root("attack15_dkim_check_bounded") {
        return;
    }
    let env = Env::new("");
    let fifo = env.dir.path().join("fifo.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = env.dir.path().join("big.pem");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut wrong = Vec::new();
    for path in [PathBuf::from("/dev/zero"), fifo.clone(), big] {
        env.write_conf(&format!(
            "DKIM_DOMAIN {DOMAIN}\nDKIM_KEY {} s\n",
            path.display()
        ));
        let start = Instant::now();
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "20", "sh", "-c"]).arg(format!(
            "ulimit -v 300000; exec {} -C {} --check",
            bin().display(),
            env.conf.display()
        ));
        let r = env.run(c, b"", None);
        release_fifo(&fifo);
        let took = start.elapsed();
        if r.code() != 78
            || !r
                .stdout()
                .contains(&format!("warning: DKIM_KEY {}", path.display()))
            || r.stdout().contains("out of memory")
            || took > Duration::from_secs(10)
        {
            wrong.push(format!(
                "{} ({took:?}): exit {:?}\n{}",
                path.display(),
                r.out.status,
                r.stdout()
                    .lines()
                    .filter(|l| l.contains("DKIM"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The key in a directory alice can write (root put it there: her home,
/// a shared directory): she can take the key's name. `dma --check` (root
/// or hers) says nothing of it: it checks the file, not the directories
/// that lead to it (as it does for LOGFILE).
///
/// Reproduce: `mkdir /srv/keys; chown alice /srv/keys`, the key there
/// (mail 600), `DKIM_KEY /srv/keys/dkim.pem s`: `dma --check` has no
/// warning.
#[test]
fn check_warns_of_a_key_in_a_directory_alice_can_write() {
    if !need_root("attack15_dkim_key_dir") {
        return;
    }
    let k = keys();
    let alice = user(ALICE);
    let inst = Installed::new();
    let dir = inst.root.join("etc/alice-keys");
    std::fs::create_dir(&dir).unwrap();
    chown_mode(&dir, alice.uid, alice.gid, 0o755);
    let (uid, gid) = mail_ids();
    let key = dir.join("dkim.pem");
    std::fs::write(&key, &k.rsa.pem).unwrap();
    chown_mode(&key, uid, gid, 0o600);
    inst.add_conf(&format!(
        "DKIM_DOMAIN {DOMAIN}\nDKIM_KEY /etc/dma/alice-keys/dkim.pem rsa\n"
    ));
    let o = inst.run(None, &[&inst.path("sbin/dma"), "--check"], "");
    let out = text(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: DKIM_KEY /etc/dma/alice-keys/dkim.pem")),
        "{out}"
    );
}

/// With the key in a directory of alice's (root's mistake), alice swaps
/// it: for a key of her own (with a link, or her file under the key's
/// name), /dev/zero. The runner refuses each, the mail waits with 4.3.5,
/// and nothing goes out signed with her key.
#[test]
fn a_key_swapped_by_alice_holds_the_mail_and_signs_nothing() {
    if !need_root("attack15_dkim_key_swap") {
        return;
    }
    let k = keys();
    let alice = user(ALICE);
    let Inst {
        inst,
        fake,
        dns: _dns,
    } = installed(52, Behavior::default(), "");
    let dir = inst.root.join("etc/alice-keys");
    std::fs::create_dir(&dir).unwrap();
    chown_mode(&dir, alice.uid, alice.gid, 0o755);
    let (uid, gid) = mail_ids();
    let key = dir.join("dkim.pem");
    std::fs::write(&key, &k.rsa.pem).unwrap();
    chown_mode(&key, uid, gid, 0o600);
    // Her key: the Ed25519 one (it is not published under `rsa`), in
    // her directory, readable by all (so that the runner gets to judge it).
    let mine = dir.join("mine.pem");
    std::fs::write(&mine, &k.ed25519.pem).unwrap();
    chown_mode(&mine, alice.uid, alice.gid, 0o644);
    let conf = inst.root.join("etc/dma.conf");
    let text0 = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text0.replace("/etc/dma/dkim.pem", "/etc/dma/alice-keys/dkim.pem"),
    )
    .unwrap();
    let sm = inst.path("sbin/sendmail");
    let d = "/etc/dma/alice-keys";
    for (swap, why) in [
        (
            format!(
                "mv {d}/dkim.pem {d}/old; cp {d}/mine.pem {d}/dkim.pem; chmod 644 {d}/dkim.pem"
            ),
            format!("is owned by uid {}", alice.uid),
        ),
        (
            format!("rm -f {d}/dkim.pem; ln -s {d}/mine.pem {d}/dkim.pem"),
            format!("is owned by uid {}", alice.uid),
        ),
        (
            format!("rm -f {d}/dkim.pem; ln -s /dev/zero {d}/dkim.pem"),
            "is not a regular file".to_string(),
        ),
    ] {
        let o = inst.run_sh(Some(ALICE), &swap, "");
        assert!(o.status.success(), "{swap}: {}", show(&o));
        let before = queue_ids(&inst).len();
        let o = inst.run(
            None,
            &[&sm, "-odi", "-f", "alice@example.org", "x@remote.test"],
            MSG,
        );
        assert!(o.status.success(), "{}", show(&o));
        let q = text(&inst.run(None, &[&sm, "-bp"], ""));
        assert_eq!(queue_ids(&inst).len(), before + 1, "{swap}: not held\n{q}");
        assert!(
            q.contains(&format!(
                "4.3.5 DKIM_KEY /etc/dma/alice-keys/dkim.pem: {why}"
            )),
            "{swap}:\n{q}"
        );
    }
    assert_eq!(
        fake.messages().len(),
        0,
        "sent with alice's key or unsigned"
    );
}
