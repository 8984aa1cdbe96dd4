//! Faults through an installed system (set-id `dma` and `dma-local`, the
//! system configuration at its compiled-in path): a `.forward` command that
//! holds its input open, a dotlock from the future, a delivery process
//! killed while it holds the mailbox's dotlock. Each ends in a defined
//! state, and the queue run always ends.
//!
//! Each test uses a user of its own (their home directories are shared
//! with the other test programs, which run one at a time).

mod support;

use std::time::{Duration, Instant};

use support::installed::*;
use support::*;

/// `user`'s `.forward`, removed when dropped.
/// Holds the test homes (see `support::Homes`) while it is set.
struct Forward(std::path::PathBuf, #[allow(dead_code)] support::Homes);

impl Forward {
    /// Writes it owned by the user, mode 0644 (what `.forward` rules want).
    fn set(user: &str, text: &str) -> Forward {
        let homes = support::Homes::take();
        let home = nix::unistd::User::from_name(user).unwrap().unwrap().dir;
        let p = home.join(".forward");
        std::fs::write(&p, text).unwrap();
        let ids = support::user(user);
        chown_mode(&p, ids.uid, ids.gid, 0o644);
        Forward(p, homes)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A message of about `kib` KiB.
fn big_message(kib: usize) -> String {
    let mut m = String::from("Subject: big\n\n");
    let line = format!("{}\n", "x".repeat(63));
    for _ in 0..kib * 16 {
        m.push_str(&line);
    }
    m
}

/// The queue as root sees it (`mailq`), with what the spool holds.
fn mailq(inst: &Installed) -> String {
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-bp"], "");
    format!(
        "{}{}\nspool: {:?}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        inst.spool_files()
    )
}

#[test]
fn a_forward_command_that_holds_its_input_does_not_hang_the_queue_run() {
    if !need_root("installed_forward_hold") {
        return;
    }
    let inst = Installed::new();
    inst.add_conf("PIPE_TIMEOUT 2s\n");
    let _f = Forward::set(BOB, "\"|setsid sleep 1000\"\n");
    let msg = big_message(280);
    let start = Instant::now();
    let o = inst.run(None, &[&inst.path("sbin/sendmail"), "-odi", BOB], &msg);
    let submit_took = start.elapsed();
    let queued = mailq(&inst);
    let start = Instant::now();
    let q = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    let run_took = start.elapsed();
    let requeued = mailq(&inst);
    // What the command left behind in sessions of their own was killed at
    // the time limit too (dma-local adopts it); whatever is left, killed
    // here, fails the test.
    let left = std::process::Command::new("pkill")
        .args(["-KILL", "-u", BOB, "-x", "sleep"])
        .status()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        submit_took < Duration::from_secs(30),
        "sendmail -odi took {submit_took:?}\n{}",
        show(&o)
    );
    assert!(
        run_took < Duration::from_secs(30),
        "dma -q took {run_took:?}\n{}",
        show(&q)
    );
    for text in [&queued, &requeued] {
        assert!(
            text.contains(BOB) && text.contains("4.3.0"),
            "not deferred:\n{text}\n{}",
            show(&o)
        );
    }
    assert_eq!(inst.mailbox(BOB), "");
    assert_eq!(
        left.code(),
        Some(1),
        "bob's detached sleep outlived PIPE_TIMEOUT"
    );
}

#[test]
fn a_stale_dotlock_from_the_future_does_not_stop_delivery() {
    if !need_root("installed_future_lock") {
        return;
    }
    let inst = Installed::new();
    let lock = inst.root.join("mail").join(format!("{CAROL}.lock"));
    let o = inst.run_sh(None, &format!("touch -d '+1 day' '{}'", lock.display()), "");
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(
        None,
        &[&inst.path("sbin/sendmail"), "-odi", CAROL],
        "Subject: future\n\nthrough the lock\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let text = inst.mailbox(CAROL);
    assert!(
        text.contains("\nthrough the lock\n"),
        "{}\n{}\nmailbox: {text}",
        show(&o),
        mailq(&inst)
    );
    assert!(!lock.exists());
}

/// The pids of `user`'s processes named `name`.
fn pids_of(user: &str, name: &str) -> Vec<i32> {
    let o = std::process::Command::new("pgrep")
        .args(["-u", user, "-x", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_killed_delivery_process_leaves_no_dotlock() {
    if !need_root("installed_killed_writer") {
        return;
    }
    use nix::sys::signal::Signal;
    let inst = Installed::new();
    let ids = user(ALICE);
    let mbox = inst.root.join("mail").join(ALICE);
    let lock = inst.root.join("mail").join(format!("{ALICE}.lock"));
    std::fs::write(&mbox, "").unwrap();
    chown_mode(&mbox, ids.uid, ids.gid, 0o600);
    // We hold the mailbox's fcntl lock: Alice's delivery process waits for
    // it, holding the dotlock its root parent took. Alice (or anything)
    // kills it.
    let held = std::fs::OpenOptions::new().write(true).open(&mbox).unwrap();
    dma_rs::local::mbox::fcntl_lock(&held, Duration::ZERO).unwrap();
    for sig in [Signal::SIGTERM, Signal::SIGKILL, Signal::SIGSEGV] {
        let sending = std::thread::scope(|s| {
            let sent = s.spawn(|| {
                inst.run(
                    None,
                    &[&inst.path("sbin/sendmail"), "-odi", ALICE],
                    &format!("Subject: {sig}\n\nkilled by {sig}\n"),
                )
            });
            let start = Instant::now();
            let pids = loop {
                let p = pids_of(ALICE, "dma-local");
                if !p.is_empty() || start.elapsed() > Duration::from_secs(20) {
                    break p;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(!pids.is_empty(), "{sig}: no delivery process appeared");
            assert!(lock.exists(), "{sig}: no dotlock while delivering");
            // The run may retry earlier messages too: each of its delivery
            // processes gets the signal.
            let start = Instant::now();
            let mut pids = pids;
            while !sent.is_finished() && start.elapsed() < Duration::from_secs(60) {
                for &p in &pids {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
                }
                std::thread::sleep(Duration::from_millis(20));
                pids = pids_of(ALICE, "dma-local");
            }
            sent.join().unwrap()
        });
        assert!(sending.status.success(), "{sig}: {}", show(&sending));
        assert!(
            !lock.exists(),
            "{sig}: the dotlock was left behind\n{}",
            mailq(&inst)
        );
        let q = mailq(&inst);
        assert!(q.contains(ALICE) && q.contains("4.3.0"), "{sig}: {q}");
    }
    drop(held);
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let text = inst.mailbox(ALICE);
    for sig in ["SIGTERM", "SIGKILL", "SIGSEGV"] {
        assert!(
            text.contains(&format!("\nkilled by {sig}\n")),
            "{sig}: {text}\n{}",
            mailq(&inst)
        );
    }
    assert!(!lock.exists());
}
