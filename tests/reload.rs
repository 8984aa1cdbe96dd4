//! A runner that lingers for more mail (after a background delivery it waits
//! a moment, its connections kept open) delivers the next message with the
//! configuration as it is now: an edited aliases file, dma.conf or
//! auth.conf is read again, connections opened under the old settings are
//! closed, and a dma.conf that no longer parses stops the runner.
//!
//! The first submission of each test runs in a mount namespace whose
//! /dev/log leads to a socket the test reads (as in tests/syslog.rs): its
//! runner's log lines come there, and only its (a submission made outside
//! starts a runner that logs nowhere), which shows what that runner did.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtpd::{Behavior, FakeSmtp};
use support::*;

const MSG: &str = "Subject: reload\n\nbody\n";

/// A runner's log lines, read as they come (a syslog socket that is not
/// read holds up its writers after a few lines).
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// The lines that came so far.
    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// `sendmail -C conf ARGS` (background delivery) with `msg`, in a mount
/// namespace whose /dev/log is a socket of ours: the runner it starts logs
/// there.
fn send_logged(env: &Env, args: &[&str], msg: &str) -> Log {
    let t = env.dir.path();
    let sock = t.join("log.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let theirs = Arc::downgrade(&lines);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Until the test is done with it.
        while let Some(lines) = theirs.upgrade() {
            if let Ok(n) = rx.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                lines.lock().unwrap().push(line);
            }
        }
    });
    std::fs::write(t.join("null"), "").unwrap();
    let script = format!(
        "set -e; mount --bind /dev/null {t}/null; mount -t tmpfs none /dev; \
         touch /dev/null; mount --bind {t}/null /dev/null; ln -s {sock} /dev/log; \
         exec {bin} -C {conf} \"$@\"",
        t = t.display(),
        sock = sock.display(),
        bin = bin().display(),
        conf = env.conf.display(),
    );
    let mut c = std::process::Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ]);
    c.args(args);
    env.run(c, msg.as_bytes(), None).expect(0, env);
    Log(lines)
}

/// How many messages the log says were delivered (a remote delivery also
/// has a line with the server's reply).
fn deliveries(log: &str) -> usize {
    log.lines()
        .filter(|l| l.ends_with("delivery successful"))
        .count()
}

/// `sendmail -C conf ARGS` (background delivery: the mail is left to the
/// lingering runner).
fn send_background(env: &Env, args: &[&str]) {
    let mut c = env.cmd("sendmail");
    c.args(args);
    env.run(c, MSG.as_bytes(), None).expect(0, env);
}

/// Waits up to 10 s for `done`.
fn wait(done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replaces `path` with `text` (the same length as before) without the
/// size or the mtime telling: in place with the old mtime put back
/// (`in_place`), or as a new file with the old mtime renamed over it.
fn rewrite_unseen(path: &Path, text: &str, in_place: bool) {
    let old = std::fs::metadata(path).unwrap();
    assert_eq!(old.len() as usize, text.len());
    let target = if in_place {
        path.to_path_buf()
    } else {
        path.with_extension("new")
    };
    std::fs::write(&target, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    if !in_place {
        std::fs::rename(&target, path).unwrap();
    }
    let new = std::fs::metadata(path).unwrap();
    assert_eq!(
        (new.len(), new.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
}

#[test]
fn an_alias_added_while_the_runner_lingers_is_known_to_it() {
    if !need_root("reload aliases") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("");
    env.set_aliases("oldalias: dmt-bob\n");
    let rx = send_logged(&env, &["-f", "root", BOB], MSG);
    assert_eq!(env.wait_for(BOB, 1).len(), 1, "{}", env.dump());
    // A new file renamed over the old one, of the same size and mtime.
    rewrite_unseen(&env.aliases, "newalias: dmt-bob\n", false);
    send_background(&env, &["-f", "root", "newalias"]);
    assert_eq!(env.wait_for(BOB, 2).len(), 2, "{}", env.dump());
    // The same file rewritten in place, size and mtime put back.
    rewrite_unseen(&env.aliases, "nexalias: dmt-bob\n", true);
    send_background(&env, &["-f", "root", "nexalias"]);
    assert_eq!(env.wait_for(BOB, 3).len(), 3, "{}", env.dump());
    // No "unknown user" bounce, and the runner that read the first
    // version delivered all three.
    assert!(env.messages("root").is_empty(), "{}", env.dump());
    wait(|| env.queue_ids().is_empty());
    let log = rx.text();
    assert_eq!(deliveries(&log), 3, "{log}");
}

fn smarthost(fake: &FakeSmtp, extra: &str) -> String {
    format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 5s\n{extra}",
        fake.port()
    )
}

#[test]
fn a_new_smarthost_gets_the_next_message_and_the_old_connection_is_closed() {
    if !need_root("reload smarthost") {
        return;
    }
    let a = FakeSmtp::start(Behavior::default());
    let b = FakeSmtp::start(Behavior::default());
    let env = Env::new(&smarthost(&a, ""));
    let rx = send_logged(&env, &["-f", "s@example.org", "r1@remote.example"], MSG);
    wait(|| a.messages().len() == 1);
    assert_eq!(a.messages().len(), 1, "{:?}", a.commands());
    env.write_conf(&smarthost(&b, ""));
    send_background(&env, &["-f", "s@example.org", "r2@remote.example"]);
    wait(|| b.messages().len() == 1);
    // A said goodbye to first: the kept connection was not used again.
    let a_cmds = a.commands();
    assert_eq!(
        b.messages().len(),
        1,
        "A: {a_cmds:?}\nB: {:?}",
        b.commands()
    );
    assert_eq!(b.messages()[0].rcpts, ["r2@remote.example"]);
    assert_eq!(a.messages().len(), 1, "{a_cmds:?}");
    assert_eq!(a.connections(), 1);
    assert_eq!(
        a_cmds.last().map(String::as_str),
        Some("QUIT"),
        "{a_cmds:?}"
    );
    wait(|| env.queue_ids().is_empty());
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    // By the runner that delivered the first.
    let log = rx.text();
    assert!(
        log.contains(&format!("{} changed: read again", env.conf.display())),
        "{log}"
    );
    assert_eq!(deliveries(&log), 2, "{log}");
}

#[test]
fn a_changed_auth_conf_closes_the_kept_connection() {
    if !need_root("reload auth") {
        return;
    }
    let a = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into(), "AUTH PLAIN".into()],
        ..Behavior::default()
    });
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    std::fs::write(&auth, "user|127.0.0.1:secret1\n").unwrap();
    env.write_conf(&smarthost(
        &a,
        &format!("AUTHPATH {}\nINSECURE\n", auth.display()),
    ));
    let rx = send_logged(&env, &["-f", "s@example.org", "r1@remote.example"], MSG);
    wait(|| a.messages().len() == 1);
    rewrite_unseen(&auth, "user|127.0.0.1:secret2\n", false);
    send_background(&env, &["-f", "s@example.org", "r2@remote.example"]);
    wait(|| a.messages().len() == 2);
    let cmds = a.commands();
    assert_eq!(a.messages().len(), 2, "{cmds:?}");
    // A new connection, authenticated with the new password, after the old
    // one was closed.
    assert_eq!(a.connections(), 2, "{cmds:?}");
    use base64::Engine as _;
    let plain = |p: &str| {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("AUTH PLAIN {}", b64.encode(format!("\0user\0{p}")))
    };
    let auths: Vec<&String> = cmds.iter().filter(|c| c.starts_with("AUTH")).collect();
    assert_eq!(auths, [&plain("secret1"), &plain("secret2")], "{cmds:?}");
    let quit = cmds.iter().position(|c| c == "QUIT");
    let second = cmds.iter().position(|c| *c == plain("secret2"));
    assert!(quit.is_some() && quit < second, "{cmds:?}");
    let log = rx.text();
    assert_eq!(deliveries(&log), 2, "{log}");
}

#[test]
fn a_broken_dma_conf_stops_the_runner_and_the_mail_stays_queued() {
    if !need_root("reload broken conf") {
        return;
    }
    let a = FakeSmtp::start(Behavior::default());
    let env = Env::new(&smarthost(&a, ""));
    // A second configuration of the same installation, to submit with once
    // the first is broken (a broken one refuses submissions).
    let good = std::fs::read_to_string(&env.conf).unwrap();
    let other = env.dir.path().join("other.conf");
    std::fs::write(&other, &good).unwrap();
    let rx = send_logged(&env, &["-f", "s@example.org", "r1@remote.example"], MSG);
    wait(|| a.messages().len() == 1);
    std::fs::write(&env.conf, format!("{good}BOGUS_KEY\n")).unwrap();
    let line = good.lines().count() + 1;
    let mut c = std::process::Command::new(bin());
    c.arg("-C").arg(&other);
    c.args(["-f", "s@example.org", "r2@remote.example"]);
    env.run(c, MSG.as_bytes(), None).expect(0, &env);
    // The lingering runner takes it, reads the file, and stops.
    wait(|| runner_pids(&env).is_empty());
    assert!(runner_pids(&env).is_empty());
    let log = rx.text();
    let why = format!(
        "syntax error in {}:{line}: unknown key `BOGUS_KEY'",
        env.conf.display()
    );
    // <19>: facility mail, level err.
    assert!(
        log.lines()
            .any(|l| l.starts_with("<19>") && l.contains(&why)),
        "{log}"
    );
    assert_eq!(a.messages().len(), 1, "{:?}", a.commands());
    assert_eq!(a.commands().last().map(String::as_str), Some("QUIT"));
    assert_eq!(env.queue_ids().len(), 1, "{}", env.dump());
    // The next run says the same.
    let q = env.flush();
    assert_eq!(q.code(), 78, "{}", q.show());
    assert!(q.stderr().contains(&why), "{}", q.show());
    assert_eq!(env.queue_ids().len(), 1, "{}", env.dump());
}
