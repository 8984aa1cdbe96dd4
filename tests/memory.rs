//! A 100 MB message is streamed, never held in memory: peak RSS of intake and
//! of delivery (dma and dma-local) stays far below the message size.
//! (This test binary runs alone in its process, so RUSAGE_CHILDREN covers
//! exactly the programs it starts.)

mod support;

use std::io::Write;
use std::process::Stdio;

use nix::sys::resource::{UsageWho, getrusage};
use support::*;

const MB: usize = 1024 * 1024;

fn children_max_rss_kb() -> i64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss()
}

#[test]
fn hundred_megabyte_message_in_bounded_memory() {
    let env = Env::new("MESSAGE_SIZE_LIMIT 0\n");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let line = "0123456789".repeat(10) + "\n";
    // One ordinary part and one 30 MB line without a newline in between.
    let mut c = env.cmd("sendmail");
    c.args(["-odq", &me]).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut si = child.stdin.take().unwrap();
    si.write_all(b"Subject: big\n\n").unwrap();
    let chunk = line.repeat(MB / line.len());
    for _ in 0..70 {
        si.write_all(chunk.as_bytes()).unwrap();
    }
    let long = "x".repeat(MB);
    for _ in 0..30 {
        si.write_all(long.as_bytes()).unwrap();
    }
    si.write_all(b"\nend\n").unwrap();
    drop(si);
    assert!(child.wait().unwrap().success());
    let intake_kb = children_max_rss_kb();
    env.flush().expect(0, &env);
    let deliver_kb = children_max_rss_kb();
    let size = std::fs::metadata(env.mbox_path(&me)).unwrap().len() as usize;
    assert!(size > 99 * MB, "mailbox only {size} bytes\n{}", env.dump());
    eprintln!(
        "peak RSS: intake {intake_kb} KiB, intake+delivery {deliver_kb} KiB, message {} MiB",
        size / MB
    );
    assert!(intake_kb < 32 * 1024, "intake peak RSS {intake_kb} KiB");
    assert!(deliver_kb < 32 * 1024, "delivery peak RSS {deliver_kb} KiB");
    assert!(env.mbox(&me).ends_with("\nend\n\n"));
}
