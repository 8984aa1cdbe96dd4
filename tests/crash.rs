//! Crash safety: SIGKILL at random points during intake and during delivery.
//!
//! Afterwards every message whose submission exited 0 is in the mailbox or
//! still queued (and is delivered by the next run), every message in the
//! mailbox is whole, and a submission that did not exit 0 is either fully
//! queued or absent. Duplicates are allowed (at-least-once), loss is not.
//!
//! When only the process that writes the mailbox (the one that runs as the
//! recipient) is killed, the rule is stricter: what it wrote is cut back,
//! the message stays queued, and in the end every message is in the mailbox
//! exactly once, whole, after what was there before.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::*;

const LINES: usize = 4000;

/// A message whose body proves it is whole: numbered lines and an end mark.
fn message(token: &str) -> String {
    message_of(token, LINES)
}

/// [`message`] with `lines` numbered lines.
fn message_of(token: &str, lines: usize) -> String {
    let mut m = format!("Subject: {token}\n\n");
    for i in 0..lines {
        m.push_str(&format!(
            "{token} line {i:07} ..................................\n"
        ));
    }
    m.push_str(&format!("{token} END\n"));
    m
}

fn whole(msg: &str, token: &str) -> bool {
    whole_of(msg, token, LINES)
}

/// Whether `msg` holds the body of [`message_of`]`(token, lines)`, whole.
fn whole_of(msg: &str, token: &str, lines: usize) -> bool {
    let body: Vec<&str> = msg.lines().filter(|l| l.starts_with(token)).collect();
    body.len() == lines + 1
        && body
            .iter()
            .take(lines)
            .enumerate()
            .all(|(i, l)| l.starts_with(&format!("{token} line {i:07} ")))
        && body[lines] == format!("{token} END")
}

fn rand_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u64::from_le_bytes(b) % n
}

fn kill_after(mut child: Child, max_ms: u64) -> Option<i32> {
    std::thread::sleep(Duration::from_millis(rand_below(max_ms)));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    child.wait().unwrap().code()
}

#[test]
fn sigkill_during_intake_and_delivery_loses_nothing() {
    let env = Env::new("");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    // Intake, killed at random points.
    let mut accepted = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..40 {
        let token = format!("TOKEN{i:03}X");
        let mut c = env.cmd("sendmail");
        c.args(["-odq", &me])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let body = message(&token);
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(body.as_bytes());
        });
        let code = kill_after(child, 40);
        let _ = writer.join();
        if code == Some(0) {
            accepted.push(token.clone());
        }
        tokens.push(token);
    }
    // What is queued is whole: mailq reads every envelope without complaint.
    let q = env.mailq();
    q.expect(0, &env);
    assert!(!q.stdout().contains("unreadable"), "{}", q.stdout());
    let queued = env.queue_ids().len();
    assert!(
        queued >= accepted.len(),
        "accepted {} but {queued} queued\n{}",
        accepted.len(),
        env.dump()
    );

    // Delivery, killed at random points, many times.
    for _ in 0..40 {
        let mut c = env.cmd("dma");
        c.arg("-q").stdout(Stdio::null()).stderr(Stdio::null());
        kill_after(c.spawn().unwrap(), 60);
    }
    // Helpers that outlived their killed parent finish within their lock
    // timeouts; a final undisturbed run delivers the rest.
    for _ in 0..50 {
        env.flush().expect(0, &env);
        if env.queue_ids().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        env.queue_ids().is_empty(),
        "queue not drained:\n{}",
        env.mailq().stdout()
    );

    let msgs = env.messages(&me);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &msgs {
        let token = tokens
            .iter()
            .find(|t| m.contains(&format!("Subject: {t}\n")))
            .unwrap_or_else(|| panic!("unknown message in mbox: {}", &m[..m.len().min(500)]));
        assert!(whole(m, token), "partial message {token} in mbox");
        *seen.entry(token.clone()).or_default() += 1;
    }
    for t in &accepted {
        assert!(
            seen.contains_key(t),
            "accepted {t} was lost; mailbox has {:?}",
            seen
        );
    }
    eprintln!(
        "crash test: {} submissions, {} accepted, {} delivered distinct, {} duplicates",
        tokens.len(),
        accepted.len(),
        seen.len(),
        seen.values().map(|n| n - 1).sum::<usize>()
    );
}

/// Lines of a big message: about 11 MB each.
const BIG_LINES: usize = 200_000;

#[test]
fn sigkill_of_the_mailbox_writer_mid_append_leaves_whole_messages_once() {
    if !need_root("crash_killed_writer") {
        return;
    }
    // Bob's .forward is read by the delivery: the homes are ours.
    let _homes = Homes::take();
    let env = Env::new("");
    let mbox = env.mbox_path(BOB);
    // Bob's mailbox holds a message already.
    env.send(&[BOB], "Subject: old\n\nthe old message\n")
        .expect(0, &env);
    let before = std::fs::read(&mbox).unwrap();
    let mut tokens = Vec::new();
    for i in 0..4 {
        let token = format!("BIG{i:02}X");
        let mut c = env.cmd("sendmail");
        c.args(["-odq", BOB]);
        env.run(c, message_of(&token, BIG_LINES).as_bytes(), None)
            .expect(0, &env);
        tokens.push(token);
    }
    let size = message_of("BIG00X", BIG_LINES).len() as u64;
    // Rounds of `dma -q`: we hold the mailbox's fcntl lock, so each writer
    // of Bob's waits for it; we let one go at a time, and kill it at a
    // random point of its appends (or, one time in four, let it finish).
    let mut kills = Vec::new();
    for _round in 0..8 {
        if env.queue_ids().is_empty() {
            break;
        }
        let held = std::fs::OpenOptions::new().write(true).open(&mbox).unwrap();
        dma_rs::local::mbox::fcntl_lock(&held, Duration::ZERO).unwrap();
        let mut held = Some(held);
        let mut seen: Vec<i32> = Vec::new();
        std::thread::scope(|s| {
            let run = s.spawn(|| env.flush());
            while !run.is_finished() {
                let new: Vec<i32> = writers_of(BOB, &mbox)
                    .into_iter()
                    .filter(|p| !seen.contains(p))
                    .collect();
                if new.is_empty() {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                seen.extend(&new);
                let base = std::fs::metadata(&mbox).unwrap().len();
                // The first writer always (a queue run hands all of
                // Bob's messages to one writer: without a kill the first
                // round may deliver them all), anywhere in what it has to
                // write.
                let kill = kills.is_empty() || rand_below(4) != 0;
                let at = rand_below(size * env.queue_ids().len().max(1) as u64);
                drop(held.take());
                let alive = || {
                    new.iter()
                        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
                };
                while alive() {
                    let reached = std::fs::metadata(&mbox).unwrap().len();
                    if kill && reached >= base + at {
                        sigkill(&new);
                        kills.push(reached - base);
                        break;
                    }
                    if !kill && reached > base {
                        // It has the lock: ours waits for its end.
                        break;
                    }
                    std::hint::spin_loop();
                }
                // Hold the lock again for the next writer.
                let h = std::fs::OpenOptions::new().write(true).open(&mbox).unwrap();
                dma_rs::local::mbox::fcntl_lock(&h, Duration::from_secs(100)).unwrap();
                held = Some(h);
            }
            run.join().unwrap().expect(0, &env);
        });
        drop(held);
        // After each round: the mailbox is whole messages after what was
        // there, nothing partial.
        let text = env.mbox(BOB);
        assert!(text.as_bytes().starts_with(&before));
        for m in split_mbox(&text).iter().skip(1) {
            let t = tokens
                .iter()
                .find(|t| m.contains(&format!("Subject: {t}\n")));
            assert!(
                t.is_some_and(|t| whole_of(m, t, BIG_LINES)),
                "partial message in the mailbox after kills at {kills:?}: {}...",
                &m[..m.len().min(300)]
            );
        }
    }
    // A last undisturbed run delivers what is left.
    env.flush().expect(0, &env);
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
    let text = env.mbox(BOB);
    assert!(
        text.as_bytes().starts_with(&before),
        "the old message was touched"
    );
    let msgs = split_mbox(&text);
    assert_eq!(msgs.concat(), text);
    assert!(msgs[0].ends_with("\nthe old message\n\n"), "{}", msgs[0]);
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for m in &msgs[1..] {
        let t = tokens
            .iter()
            .find(|t| m.contains(&format!("Subject: {t}\n")))
            .unwrap_or_else(|| panic!("unknown message: {}", &m[..m.len().min(300)]));
        assert!(whole_of(m, t, BIG_LINES), "partial {t}; kills at {kills:?}");
        *copies.entry(t.as_str()).or_default() += 1;
    }
    for t in &tokens {
        assert_eq!(
            copies.get(t.as_str()),
            Some(&1),
            "{t}: copies {copies:?}, kills at {kills:?}"
        );
    }
    assert!(!kills.is_empty(), "no writer was killed");
    eprintln!(
        "crash test: {} writers killed at {kills:?} bytes into their append; every message once",
        kills.len()
    );
}
