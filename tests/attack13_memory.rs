//! attack13: the 8BITMIME downconversion must stream like the rest of
//! delivery: a large 8-bit message to a server without 8BITMIME must not
//! make the runner hold the message (or one huge line of it) in memory.
//! (Alone in its binary: RUSAGE_CHILDREN covers only the programs started.)

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::io::Write;
use std::process::Stdio;

use nix::sys::resource::{UsageWho, getrusage};
use smtpd::{Behavior, FakeSmtp};
use support::*;

const MB: usize = 1024 * 1024;

fn children_max_rss_kb() -> i64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss()
}

#[test]
fn downconverting_a_large_8bit_message_stays_in_bounded_memory() {
    // No 8BITMIME, no SIZE: the message must be converted to 7 bit.
    let fake = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into()],
        ..Behavior::default()
    });
    let env = Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 30s\nMESSAGE_SIZE_LIMIT 0\n",
        fake.port()
    ));
    let mut c = env.cmd("sendmail");
    c.args(["-odq", "bob@remote.example"]).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut si = child.stdin.take().unwrap();
    si.write_all(b"Subject: big 8-bit\n\n").unwrap();
    // 40 MB of ordinary 8-bit lines, then one 20 MB 8-bit line.
    let line = "gr\u{fc}\u{df}e ".repeat(12) + "\n";
    let chunk = line.repeat(MB / line.len());
    for _ in 0..40 {
        si.write_all(chunk.as_bytes()).unwrap();
    }
    let long = "\u{e9}".repeat(MB / 2);
    for _ in 0..20 {
        si.write_all(long.as_bytes()).unwrap();
    }
    si.write_all(b"\nend\n").unwrap();
    drop(si);
    assert!(child.wait().unwrap().success());
    let intake_kb = children_max_rss_kb();
    env.flush();
    let deliver_kb = children_max_rss_kb();
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 1, "not delivered\n{}", env.dump());
    eprintln!("peak RSS: intake {intake_kb} KiB, intake+delivery {deliver_kb} KiB");
    assert!(intake_kb < 32 * 1024, "intake peak RSS {intake_kb} KiB");
    assert!(
        deliver_kb < 32 * 1024,
        "delivery (downconversion) peak RSS {deliver_kb} KiB for a 60 MB message"
    );
}
