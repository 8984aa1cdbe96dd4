//! Faults through an installed system (set-id `dma` and `dma-local`, the
//! system configuration at its compiled-in path): a `.forward` command that
//! holds its input open, a dotlock from the future, a delivery process
//! killed while it holds the mailbox's dotlock, a writer killed in the
//! middle of a message (mailbox, `/file`, Maildir). Each ends in a defined
//! state, and the queue run always ends.
//!
//! Alice and Carol each belong to one test; Bob belongs to whoever holds
//! the test homes (`support::Homes`, which `Forward` takes).

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
            let pids = wait_for_pids(ALICE, "dma-local", Duration::from_secs(20));
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

/// Delivers the queue (`dma -q`, as root) and kills `user`'s writer in the
/// middle of its append to `target`: we hold `target`'s fcntl lock until the
/// writer (`user`'s `dma-local`) waits for it, let go, and SIGKILL the
/// writer once `target` has grown by `at` bytes. Returns the run and the
/// length `target` had reached at the kill (before any cut back).
fn kill_writer_at(
    inst: &Installed,
    user: &str,
    target: &std::path::Path,
    at: u64,
) -> (std::process::Output, u64) {
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .unwrap();
    dma_rs::local::mbox::fcntl_lock(&held, Duration::ZERO).unwrap();
    let base = std::fs::metadata(target).unwrap().len();
    std::thread::scope(|s| {
        let run = s.spawn(|| inst.run(None, &[&inst.path("sbin/dma"), "-q"], ""));
        let start = Instant::now();
        let pids = loop {
            let p = writers_of(user, target);
            if !p.is_empty() || start.elapsed() > Duration::from_secs(30) {
                break p;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(!pids.is_empty(), "no writer of {user} appeared");
        drop(held);
        let mut reached = base;
        let start = Instant::now();
        while !run.is_finished() && start.elapsed() < Duration::from_secs(60) {
            reached = std::fs::metadata(target).unwrap().len();
            if reached >= base + at {
                sigkill(&pids);
                break;
            }
            std::hint::spin_loop();
        }
        (run.join().unwrap(), reached)
    })
}

/// Checks that `text` is an mbox of exactly `bodies.len()` whole messages:
/// each `From ` line starts a line after a blank line (or the file), and
/// message i ends with `bodies[i]` then the blank line that separates it.
fn assert_whole_messages(text: &str, bodies: &[&str], context: &str) {
    let msgs = split_mbox(text);
    let lens: Vec<usize> = msgs.iter().map(String::len).collect();
    assert_eq!(
        msgs.len(),
        bodies.len(),
        "messages of lengths {lens:?}\n{context}"
    );
    assert_eq!(msgs.concat(), text, "bytes before the first From line");
    for (i, (m, body)) in msgs.iter().zip(bodies).enumerate() {
        let (head, rest) = m.split_once("\n\n").unwrap();
        assert!(head.starts_with("From "), "message {i}: {head}");
        assert_eq!(
            rest.len(),
            body.len() + 1,
            "message {i}: body length (lengths {lens:?})\n{context}"
        );
        assert!(
            rest.strip_suffix('\n') == Some(body),
            "message {i}: not whole (lengths {lens:?})\n{context}"
        );
    }
}

/// The body of a message (what follows the blank line after its header).
fn body_of(msg: &str) -> &str {
    msg.split_once("\n\n").unwrap().1
}

/// Queues a first small message and a 40 MB one to `rcpt`, delivers the
/// first, and kills the writer of the big one a few MB in: `target` (where
/// `rcpt`'s mail lands) must be byte for byte what it was, the big one
/// deferred; the next run delivers it whole.
fn a_killed_writer_leaves_no_partial_message(
    inst: &Installed,
    rcpt: &str,
    target: &std::path::Path,
) {
    let small = "Subject: first\n\nthe first message\n";
    let o = inst.run(None, &[&inst.path("sbin/sendmail"), "-odi", rcpt], small);
    assert!(o.status.success(), "{}", show(&o));
    let before = std::fs::read(target).unwrap();
    assert_whole_messages(
        &String::from_utf8_lossy(&before),
        &[body_of(small)],
        "first",
    );
    let big = big_message(40 * 1024);
    let o = inst.run(None, &[&inst.path("sbin/sendmail"), "-odq", rcpt], &big);
    assert!(o.status.success(), "{}", show(&o));
    let at = 4 << 20;
    let (run, reached) = kill_writer_at(inst, rcpt, target, at);
    let after = std::fs::read(target).unwrap();
    let q = mailq(inst);
    let seen = format!(
        "writer killed at {reached} bytes ({} before)\n{}\n{q}",
        before.len(),
        show(&run)
    );
    assert!(
        reached >= before.len() as u64 + at && reached < (before.len() + big.len()) as u64,
        "the writer was not killed mid-message\n{seen}"
    );
    assert!(run.status.success(), "{seen}");
    assert!(
        after == before,
        "{} left with {} bytes instead of {}\n{seen}",
        target.display(),
        after.len(),
        before.len()
    );
    assert!(
        q.contains(rcpt) && q.contains("deferred") && q.contains("4.3.0"),
        "not deferred\n{seen}"
    );
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(inst.spool_files().is_empty(), "{}", mailq(inst));
    let text = String::from_utf8(std::fs::read(target).unwrap()).unwrap();
    assert!(text.starts_with(std::str::from_utf8(&before).unwrap()));
    assert_whole_messages(&text, &[body_of(small), body_of(&big)], &seen);
}

#[test]
fn a_mailbox_writer_killed_mid_message_leaves_the_mailbox_as_it_was() {
    if !need_root("installed_killed_mbox_writer") {
        return;
    }
    // Bob's processes are killed: Bob is ours (as in `Forward`).
    let _homes = Homes::take();
    let inst = Installed::new();
    let mbox = inst.root.join("mail").join(BOB);
    a_killed_writer_leaves_no_partial_message(&inst, BOB, &mbox);
    assert!(!inst.root.join("mail").join(format!("{BOB}.lock")).exists());
}

#[test]
fn a_forward_file_writer_killed_mid_message_leaves_the_file_as_it_was() {
    if !need_root("installed_killed_file_writer") {
        return;
    }
    let copy = home(BOB).join("out.copy");
    let _f = Forward::set(BOB, &format!("{}\n", copy.display()));
    let inst = Installed::new();
    a_killed_writer_leaves_no_partial_message(&inst, BOB, &copy);
    assert_eq!(inst.mailbox(BOB), "");
}

#[test]
fn a_maildir_writer_killed_mid_message_leaves_nothing_in_new() {
    if !need_root("installed_killed_maildir_writer") {
        return;
    }
    let md = home(BOB).join("t.maildir");
    let _f = Forward::set(BOB, &format!("{}/\n", md.display()));
    let inst = Installed::new();
    let o = inst.run(
        None,
        &[&inst.path("sbin/sendmail"), "-odq", BOB],
        &big_message(40 * 1024),
    );
    assert!(o.status.success(), "{}", show(&o));
    let files = |sub: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(md.join(sub))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    // Kill the writer once its file in tmp/ has a few MB.
    let (run, reached) = std::thread::scope(|s| {
        let run = s.spawn(|| inst.run(None, &[&inst.path("sbin/dma"), "-q"], ""));
        let start = Instant::now();
        let mut reached = 0;
        while !run.is_finished() && start.elapsed() < Duration::from_secs(60) {
            if let Some(t) = files("tmp").first() {
                reached = std::fs::metadata(t).map(|m| m.len()).unwrap_or(0);
                if reached >= 4 << 20 {
                    sigkill(&writers_of(BOB, t));
                    break;
                }
            }
        }
        (run.join().unwrap(), reached)
    });
    let seen = format!(
        "killed at {reached} bytes\n{}\n{}",
        show(&run),
        mailq(&inst)
    );
    assert!(reached >= 4 << 20, "{seen}");
    assert!(files("new").is_empty(), "{seen}");
    // What it leaves is in tmp/ only: a partial file (the Maildir rule is
    // that tmp/ is cleaned by readers of old files), and the message is
    // still queued.
    assert_eq!(files("tmp").len(), 1, "{seen}");
    assert!(mailq(&inst).contains("deferred"), "{seen}");
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let new = files("new");
    assert_eq!(new.len(), 1, "{seen}");
    let text = std::fs::read_to_string(&new[0]).unwrap();
    assert!(text.ends_with(&big_message(40 * 1024)[14..]), "{seen}");
}

/// A queue run delivers a mailbox's messages in one batch (issue 11); its
/// writer killed in the middle of one leaves the mailbox as it was before
/// the batch: none of them is in it, each is deferred, and the next run
/// delivers each whole, once.
#[test]
fn a_batch_writer_killed_mid_message_leaves_the_mailbox_as_it_was() {
    if !need_root("installed_killed_batch_writer") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    let mbox = inst.root.join("mail").join(BOB);
    let sendmail = inst.path("sbin/sendmail");
    let first = "Subject: first\n\nthe first message\n";
    let o = inst.run(None, &[&sendmail, "-odi", BOB], first);
    assert!(o.status.success(), "{}", show(&o));
    let before = std::fs::read(&mbox).unwrap();
    let big = big_message(40 * 1024);
    let mut msgs: Vec<String> = (1..=3)
        .map(|i| format!("Subject: small {i}\n\nsmall message {i}\n"))
        .collect();
    msgs.push(big.clone());
    for m in &msgs {
        let o = inst.run(None, &[&sendmail, "-odq", BOB], m);
        assert!(o.status.success(), "{}", show(&o));
    }
    let (run, reached) = kill_writer_at(&inst, BOB, &mbox, 4 << 20);
    let q = mailq(&inst);
    let seen = format!("killed at {reached} bytes\n{}\n{q}", show(&run));
    assert!(run.status.success(), "{seen}");
    assert!(
        reached >= before.len() as u64 + (4 << 20),
        "not killed mid-message\n{seen}"
    );
    assert_eq!(std::fs::read(&mbox).unwrap(), before, "{seen}");
    assert_eq!(q.matches("4.3.0").count(), 4, "{seen}");
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(inst.spool_files().is_empty(), "{}", mailq(&inst));
    let text = String::from_utf8(std::fs::read(&mbox).unwrap()).unwrap();
    assert!(text.starts_with(std::str::from_utf8(&before).unwrap()));
    // Each whole, once (in queue order: ids of one second are in no
    // particular order).
    let mut got: Vec<String> = split_mbox(&text[before.len()..])
        .iter()
        .map(|m| m.split_once("\n\n").unwrap().1.to_string())
        .collect();
    let mut want: Vec<String> = msgs.iter().map(|m| format!("{}\n", body_of(m))).collect();
    got.sort();
    want.sort();
    assert!(
        got == want,
        "{} messages of lengths {:?}",
        got.len(),
        got.iter().map(String::len).collect::<Vec<_>>()
    );
}
