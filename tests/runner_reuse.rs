//! Runner reuse (issue 11): fresh remote mail goes to the runner that holds
//! a session to its next hop, not to a new runner and a new session; a
//! stuck runner attracts no mail; and mail left to a runner as it stops is
//! delivered all the same.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::time::{Duration, Instant};

use smtpd::{Behavior, FakeSmtp};
use support::*;

const MSG: &str = "Subject: reuse\n\nbody\n";

fn env_for(fake: &FakeSmtp, extra: &str) -> Env {
    Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\n{extra}",
        fake.port()
    ))
}

/// Waits up to `secs` for `f` to hold.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A background submission (the default) to `rcpt`.
fn submit(env: &Env, rcpt: &str) {
    let mut c = env.cmd("sendmail");
    c.args(["-f", "s@example.org", rcpt]);
    env.run(c, MSG.as_bytes(), None).expect(0, env);
}

/// Whether the fake got a message for `rcpt`.
fn got(fake: &FakeSmtp, rcpt: &str) -> bool {
    fake.messages()
        .iter()
        .any(|m| m.rcpts.iter().any(|r| r == rcpt))
}

#[test]
fn a_burst_to_one_smarthost_goes_over_few_sessions() {
    // Submitted one by one, as cron jobs and scripts do: before runner
    // reuse, a submission that found the runner busy started one of its
    // own, with a session of its own (about one session per two messages).
    let fake = FakeSmtp::start(Behavior::default());
    let env = env_for(&fake, "");
    let n = 60;
    for i in 0..n {
        submit(&env, &format!("r{i}@remote.example"));
    }
    assert!(
        wait_for(30, || fake.messages().len() >= n),
        "{} of {n} delivered\n{}",
        fake.messages().len(),
        env.mailq().stdout()
    );
    assert!(
        wait_for(10, || env.queue_ids().is_empty()),
        "{:?}",
        env.queue_ids()
    );
    assert_eq!(fake.messages().len(), n);
    // Every runner that starts opens one session; a few may start before
    // the first one holds the hop lock, or while it is slow.
    assert!(
        fake.connections() <= n / 6,
        "{n} messages used {} sessions",
        fake.connections()
    );
}

#[test]
fn a_stuck_runner_attracts_no_mail() {
    // The first session stalls after the data (for 30 s, within the SMTP
    // timeout): its runner, with the hop lock, makes no progress.
    let fake = FakeSmtp::start(Behavior {
        stall_after_first_data: true,
        ..Behavior::default()
    });
    let env = env_for(&fake, "SMTP_TIMEOUT 60s\n");
    submit(&env, "first@remote.example");
    assert!(
        wait_for(10, || fake
            .commands()
            .iter()
            .any(|c| c == "<stalled after data>")),
        "{:?}",
        fake.commands()
    );
    // Its heartbeat (2 s) goes stale: mail submitted now gets a runner of
    // its own, and a session of its own, long before the stall ends.
    std::thread::sleep(Duration::from_secs(3));
    submit(&env, "second@remote.example");
    assert!(
        wait_for(15, || got(&fake, "second@remote.example")),
        "the second message waited for the stuck runner: {:?}",
        fake.commands()
    );
    assert!(!got(&fake, "first@remote.example"));
    assert_eq!(fake.connections(), 2);
}

#[test]
fn mail_left_to_a_runner_as_it_stops_is_delivered() {
    // Each message comes about when the runner of the one before stops
    // waiting for more (it lingers 1 s): left to it just before it lets go
    // of its locks, or just after. Nothing runs the queue here: a message
    // left behind would stay queued.
    let fake = FakeSmtp::start(Behavior::default());
    let env = env_for(&fake, "");
    let rounds = 12;
    for i in 0..rounds {
        let rcpt = format!("r{i}@remote.example");
        submit(&env, &rcpt);
        assert!(
            wait_for(15, || got(&fake, &rcpt)),
            "{rcpt} was left behind\n{}",
            env.mailq().stdout()
        );
        // From 0.85 s to 1.15 s after the delivery: around the end of the
        // runner's wait, on either side.
        std::thread::sleep(Duration::from_millis(850 + 300 * i as u64 / rounds as u64));
    }
    assert!(
        wait_for(10, || env.queue_ids().is_empty()),
        "{:?}",
        env.queue_ids()
    );
    assert_eq!(fake.messages().len(), rounds);
}
