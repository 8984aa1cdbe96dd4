//! attack14: issue 14 (queue administration, mailq --json, queue selection,
//! the run summary, backoff by age) attacked on a private installation.
//! Each test asserts the safe outcome: a failure is a hole.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::time::{Duration, Instant};

use smtpd::{Behavior, FakeSmtp};
use support::*;

const MSG: &str = "Subject: attack14\n\nbody\n";

fn auth_ehlo() -> Vec<String> {
    vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into()]
}

/// The summary pipe of a queue run (`run_queue`'s `tallies`) is made
/// without O_CLOEXEC: every program a worker starts inherits its write
/// end. A password command (auth.conf `login|host|command`) that leaves a
/// process behind (an agent: gpg-agent for `pass`, ssh-agent, a keyring
/// daemon) then keeps the run waiting for EOF on that pipe after all
/// deliveries are done, and `dma -q` with it, for as long as that process
/// lives.
#[test]
fn a_password_command_left_running_does_not_hang_the_queue_run() {
    let fake = FakeSmtp::start(Behavior {
        ehlo: auth_ehlo(),
        ..Behavior::default()
    });
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    // The "agent": 25 s, its stdio on /dev/null (so the command's own
    // pipes are closed and the password is read at once).
    std::fs::write(
        &auth,
        "user|127.0.0.1|sleep 25 </dev/null >/dev/null 2>&1 & echo secret\n",
    )
    .unwrap();
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1:{}\nAUTHPATH {}\nINSECURE\n",
        fake.port(),
        auth.display()
    ));
    let mut c = env.cmd("sendmail");
    c.args(["-odq", "-f", "s@example.org", "a@remote.example"]);
    env.run(c, MSG.as_bytes(), None).expect(0, &env);
    let start = Instant::now();
    env.flush().expect(0, &env);
    let took = start.elapsed();
    assert_eq!(fake.messages().len(), 1, "{}", env.dump());
    assert!(
        took < Duration::from_secs(12),
        "dma -q took {took:?}: the run waited on its summary pipe, held by what the password command left running"
    );
}

/// `-Q delete --deferred-older-than D`: a D of 2^64-1 seconds is cast to
/// i64 (-1), `now - D` becomes now+1, and every deferred message is
/// deleted: the widest age deletes the most instead of nothing.
#[test]
fn a_huge_deferred_older_than_deletes_nothing() {
    let fake = FakeSmtp::start(Behavior {
        rcpt: Box::new(|_| "451 4.3.0 try again later".into()),
        ..Behavior::default()
    });
    let env = Env::new(&format!("SMARTHOST 127.0.0.1:{}\n", fake.port()));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    assert!(env.mailq().stdout().contains("deferred"), "{}", env.dump());
    std::thread::sleep(Duration::from_millis(1100));
    for d in ["18446744073709551615s", "18446744073709551615"] {
        let mut c = env.cmd("dma");
        c.args(["-Q", "delete", "--deferred-older-than", d]);
        let r = env.run(c, b"", None);
        assert!(!r.stderr().contains("panicked"), "{d}: {}", r.show());
        assert_eq!(
            env.queue_ids(),
            ids,
            "-Q delete --deferred-older-than {d} deleted a message queued a second ago: {}",
            r.show()
        );
    }
}

/// Replies with quotes, backslashes, C1 controls and line separators
/// reach `mailq --json` as data, never as structure.
#[test]
fn hostile_replies_stay_inside_their_json_strings() {
    let nasty =
        "450 4.2.0 \"}],\"injected\":1,\"x\":[{\" \\ \\\" \u{2028}\u{2029}\u{9b}2J\u{202e}end";
    let reply = nasty.to_string();
    let fake = FakeSmtp::start(Behavior {
        rcpt: Box::new(move |_| reply.clone()),
        greeting: "220 \"evil\\\" host\u{85}".into(),
        ..Behavior::default()
    });
    let env = Env::new(&format!("SMARTHOST 127.0.0.1:{}\n", fake.port()));
    env.send(
        &["-f", "s\"x\\y\"@example.org", "\"a\\\"b\"@remote.example"],
        MSG,
    )
    .expect(0, &env);
    let mut c = env.cmd("mailq");
    c.arg("--json");
    let r = env.run(c, b"", None);
    assert_eq!(r.code(), 0, "{}", r.show());
    let doc: serde_json::Value =
        serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.show()));
    let obj = doc.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["corrupt", "messages", "version", "view"], "{doc:#}");
    let m = &doc["messages"][0];
    assert_eq!(m["sender"], "s\"x\\y\"@example.org", "{doc:#}");
    let r0 = &m["recipients"][0];
    assert_eq!(r0["address"], "\"a\\\"b\"@remote.example", "{doc:#}");
    let last = r0["last_reply"].as_str().unwrap_or_default();
    assert!(last.contains("\"}],\"injected\":1"), "{doc:#}");
    // Nothing raw that moves a terminal or a JavaScript reader.
    let text = r.stdout();
    for c in ['\u{2028}', '\u{2029}', '\u{9b}', '\u{202e}', '\u{85}'] {
        assert!(!text.contains(c), "raw {:?} in mailq --json: {text}", c);
    }
}

/// Root's `dma -Q show` (and `mailq`) print what a local user chose (an
/// envelope sender, a recipient address) raw: characters that reorder
/// what a terminal shows (U+202E) or are 8-bit controls (U+009B, CSI)
/// get to root's terminal from any user. Everything else in these
/// listings goes through escape::controls.
#[test]
fn qadmin_show_and_mailq_escape_what_a_user_chose() {
    let _h = Homes::take();
    let env = Env::new("");
    let sender = "x\u{202e}fdp.exe\u{9b}2J@example.org";
    let rcpt = "y\u{202e}gpj\u{9b}1m@remote.example";
    let r = env.send_as(ALICE, &["-odq", "-f", sender, rcpt], MSG);
    if r.code() != 0 {
        // Refused at intake: safe.
        return;
    }
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    let mut c = env.cmd("dma");
    c.args(["-Q", "show", &ids[0]]);
    let shown = env.run(c, b"", None);
    assert_eq!(shown.code(), 0, "{}", shown.show());
    let q = env.mailq();
    let qa = env.run(env.cmd("mailq"), b"", Some(ALICE));
    let mut raw = Vec::new();
    // Into a pipe, `show` gives the message itself byte for byte after its
    // envelope (a terminal gets it escaped: the next test): the envelope
    // part is what must be escaped here.
    let out = shown.stdout();
    let envelope = out.split("\n\n").next().unwrap_or_default().to_string();
    for (what, out) in [
        ("dma -Q show", envelope),
        ("mailq (root)", q.stdout()),
        ("mailq (alice)", qa.stdout()),
    ] {
        for ch in ['\u{202e}', '\u{9b}'] {
            if out.contains(ch) {
                raw.push(format!("{what}: {ch:?}"));
            }
        }
    }
    assert!(
        raw.is_empty(),
        "a user's characters printed raw: {raw:?}\n{}",
        shown.stdout()
    );
}

/// `dma -Q show` copies the message, which its sender wrote, to root's
/// terminal byte for byte: escape sequences in it (OSC 52 writes root's
/// clipboard, OSC 0 the window title, CSI the screen) are then the
/// sender's to play. On a terminal it must not pass them through.
#[test]
fn qadmin_show_on_a_terminal_passes_no_escape_sequences() {
    let _h = Homes::take();
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no script(1)");
        return;
    }
    let env = Env::new("");
    let body = "Subject: hi\n\nline\x1b]0;PWNED-TITLE\x07\x1b]52;c;cm0gLXJmIH4K\x07\x1b[2J\n";
    let r = env.send_as(ALICE, &["-odq", BOB], body);
    assert_eq!(r.code(), 0, "{}", r.show());
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    let cmdline = format!(
        "{} -C {} -Q show {}",
        bin().display(),
        env.conf.display(),
        ids[0]
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ID\t: ") || out.contains("ID"), "{out:?}");
    assert!(
        !out.contains("\x1b]52;") && !out.contains("\x1b]0;PWNED") && !out.contains("\x1b[2J"),
        "dma -Q show on a terminal passes the sender's escape sequences: {out:?}"
    );
}

/// A hostile (but well-formed) envelope: extreme times and counts, a held
/// time far out of range. No verb panics, and mailq --json stays valid.
#[test]
fn extreme_envelope_values_break_no_verb() {
    let env = Env::new("");
    env.send(&["-odq", "-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let id = env.queue_ids().remove(0);
    let p = env.spool.join(format!("{id}.env"));
    let text = std::fs::read_to_string(&p).unwrap();
    let created = text
        .lines()
        .find(|l| l.starts_with("created "))
        .unwrap()
        .to_string();
    let text = text.replace(
        &format!("{created}\n"),
        "created -9223372036854775808\nheld 9223372036854775807\n",
    );
    let text = text.replace(
        "state pending\n",
        "state deferred\nattempts 4294967295\nnext-try -9223372036854775808\nreply %e2%80%ae%c2%9b\n",
    );
    std::fs::write(&p, &text).unwrap();
    let run = |args: &[&str]| {
        let mut c = env.cmd("dma");
        c.args(args);
        let r = env.run(c, b"", None);
        assert!(
            !r.stderr().contains("panicked") && r.code() != 101 && r.code() != 134,
            "{args:?}: {}\n{text}",
            r.show()
        );
        r
    };
    let r = run(&["-bp", "--json"]);
    let _: serde_json::Value =
        serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.show()));
    run(&["-bp"]);
    run(&["-Q", "show", &id]);
    run(&["-Q", "requeue", "ALL"]);
    run(&["-Q", "delete", "--deferred-older-than", "1s"]);
    run(&["-Q", "release", &id]);
    run(&["--check"]);
    // Last: the runner (`expired`: now - created).
    run(&["-q"]);
}
