//! A runner reads its configuration again before each message when it
//! changed: an edited aliases file, dma.conf or auth.conf is read again,
//! SMTP connections kept from the previous message under the old settings
//! are closed, and a dma.conf that no longer parses stops the runner. (The
//! runner here is busy with a first message, held by the test, while the
//! files change and the next message is left to it: a runner that sits
//! idle waits only a second for more, too short a window for a loaded
//! machine; it reaches the same check before each message.)
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
use std::sync::atomic::{AtomicBool, Ordering};
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

    /// The lines, once `done` says they are all there (or after 10 s):
    /// the runner may be a line ahead of our reader.
    fn until(&self, done: impl Fn(&str) -> bool) -> String {
        wait(|| done(&self.text()));
        self.text()
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
/// size or the mtime telling: a new file with the old mtime, renamed over
/// it (as editors and `install` do).
fn rewrite_unseen(path: &Path, text: &str) {
    let old = std::fs::metadata(path).unwrap();
    assert_eq!(old.len() as usize, text.len());
    let new = path.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&new)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    std::fs::rename(&new, path).unwrap();
    let now = std::fs::metadata(path).unwrap();
    assert_eq!(
        (now.len(), now.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
}

/// A fake smarthost that holds the RCPT of `r1@...` until the gate opens:
/// meanwhile the runner that delivers it is busy, and (QUEUE_WORKERS 1)
/// mail submitted then is left to it, however long the submission takes.
/// (A runner waits only a second for more once idle: too short a window
/// for a loaded machine.)
fn held_first(b: Behavior) -> (FakeSmtp, Arc<AtomicBool>) {
    let gate = Arc::new(AtomicBool::new(false));
    let held = gate.clone();
    let fake = FakeSmtp::start(Behavior {
        rcpt: Box::new(move |addr: &str| {
            let start = Instant::now();
            while addr.starts_with("r1@")
                && !held.load(Ordering::SeqCst)
                && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            "250 2.1.5 ok".into()
        }),
        ..b
    });
    (fake, gate)
}

/// Waits until `fake` holds the first message's RCPT.
fn wait_held(fake: &FakeSmtp) {
    wait(|| {
        fake.commands()
            .iter()
            .any(|c| c.starts_with("RCPT TO:<r1@"))
    });
}

fn smarthost(fake: &FakeSmtp, extra: &str) -> String {
    format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nQUEUE_WORKERS 1\nSMTP_TIMEOUT 60s\n{extra}",
        fake.port()
    )
}

#[test]
fn an_alias_added_while_the_runner_is_busy_is_known_to_it() {
    if !need_root("reload aliases") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("QUEUE_WORKERS 1\n");
    // The first message goes to a pipe that waits for the test: the runner
    // is busy meanwhile.
    let flags = env.dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    std::fs::set_permissions(&flags, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let f = flags.display();
    let hold = format!(
        "hold: \"|/bin/sh -c 'touch {f}/started; while [ ! -e {f}/go ]; do sleep 0.01; done'\"\n"
    );
    env.set_aliases(&format!("{hold}oldalias: dmt-bob\n"));
    let rx = send_logged(&env, &["-f", "root", "hold"], MSG);
    wait(|| flags.join("started").exists());
    assert!(flags.join("started").exists(), "{}", env.dump());
    // A new file renamed over the old one, of the same size and mtime.
    rewrite_unseen(&env.aliases, &format!("{hold}newalias: dmt-bob\n"));
    send_background(&env, &["-f", "root", "newalias"]);
    std::fs::write(flags.join("go"), "").unwrap();
    assert_eq!(env.wait_for(BOB, 1).len(), 1, "{}", env.dump());
    // No "unknown user" bounce, and the runner that read the first
    // version delivered it.
    wait(|| env.queue_ids().is_empty());
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert!(env.messages("root").is_empty(), "{}", env.dump());
    let log = rx.until(|l| l.contains("<dmt-bob> delivery successful"));
    assert!(log.contains("<dmt-bob> delivery successful"), "{log}");
}

#[test]
fn a_new_smarthost_gets_the_next_message_and_the_old_connection_is_closed() {
    if !need_root("reload smarthost") {
        return;
    }
    let (a, gate) = held_first(Behavior::default());
    let b = FakeSmtp::start(Behavior::default());
    let env = Env::new(&smarthost(&a, ""));
    let rx = send_logged(&env, &["-f", "s@example.org", "r1@remote.example"], MSG);
    wait_held(&a);
    env.write_conf(&smarthost(&b, ""));
    send_background(&env, &["-f", "s@example.org", "r2@remote.example"]);
    gate.store(true, Ordering::SeqCst);
    wait(|| b.messages().len() == 1);
    // A was told goodbye first: the kept connection was not used again.
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
    let changed = format!("{} changed: read again", env.conf.display());
    let log = rx.until(|l| deliveries(l) == 2 && l.contains(&changed));
    assert!(log.contains(&changed), "{log}");
    assert_eq!(deliveries(&log), 2, "{log}");
}

#[test]
fn a_changed_auth_conf_closes_the_kept_connection() {
    if !need_root("reload auth") {
        return;
    }
    let (a, gate) = held_first(Behavior {
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
    wait_held(&a);
    rewrite_unseen(&auth, "user|127.0.0.1:secret2\n");
    send_background(&env, &["-f", "s@example.org", "r2@remote.example"]);
    gate.store(true, Ordering::SeqCst);
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
    let log = rx.until(|l| deliveries(l) == 2);
    assert_eq!(deliveries(&log), 2, "{log}");
}

#[test]
fn a_broken_dma_conf_stops_the_runner_and_the_mail_stays_queued() {
    if !need_root("reload broken conf") {
        return;
    }
    let (a, gate) = held_first(Behavior::default());
    let env = Env::new(&smarthost(&a, ""));
    // A second configuration of the same installation, to submit with once
    // the first is broken (a broken one refuses submissions).
    let good = std::fs::read_to_string(&env.conf).unwrap();
    let other = env.dir.path().join("other.conf");
    std::fs::write(&other, &good).unwrap();
    let rx = send_logged(&env, &["-f", "s@example.org", "r1@remote.example"], MSG);
    wait_held(&a);
    std::fs::write(&env.conf, format!("{good}BOGUS_KEY\n")).unwrap();
    let line = good.lines().count() + 1;
    let mut c = std::process::Command::new(bin());
    c.arg("-C").arg(&other);
    c.args(["-f", "s@example.org", "r2@remote.example"]);
    env.run(c, MSG.as_bytes(), None).expect(0, &env);
    gate.store(true, Ordering::SeqCst);
    // The runner delivers the first, takes the second, reads the file, and
    // stops.
    wait(|| runner_pids(&env).is_empty());
    assert!(runner_pids(&env).is_empty());
    let why = format!(
        "syntax error in {}:{line}: unknown key `BOGUS_KEY'",
        env.conf.display()
    );
    let log = rx.until(|l| l.contains(&why));
    // <19>: facility mail, level err.
    assert!(
        log.lines()
            .any(|l| l.starts_with("<19>") && l.contains(&why)),
        "{log}\n{:?}\n{}",
        a.commands(),
        env.dump()
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
