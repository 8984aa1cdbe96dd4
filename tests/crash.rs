//! Crash safety: SIGKILL at random points during intake and during delivery.
//!
//! Afterwards every message whose submission exited 0 is in the mailbox or
//! still queued (and is delivered by the next run), every message in the
//! mailbox is whole, and a submission that did not exit 0 is either fully
//! queued or absent. Duplicates are allowed (at-least-once), loss is not.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::*;

const LINES: usize = 4000;

/// A message whose body proves it is whole: numbered lines and an end mark.
fn message(token: &str) -> String {
    let mut m = format!("Subject: {token}\n\n");
    for i in 0..LINES {
        m.push_str(&format!(
            "{token} line {i:05} ..................................\n"
        ));
    }
    m.push_str(&format!("{token} END\n"));
    m
}

fn whole(msg: &str, token: &str) -> bool {
    let body: Vec<&str> = msg.lines().filter(|l| l.starts_with(token)).collect();
    body.len() == LINES + 1
        && body
            .iter()
            .take(LINES)
            .enumerate()
            .all(|(i, l)| l.starts_with(&format!("{token} line {i:05} ")))
        && body[LINES] == format!("{token} END")
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
