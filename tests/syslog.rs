//! Log lines reach syslog with facility mail, dma's tag and dma's words.
//!
//! This machine has no /dev/log (and every other test shows that nothing
//! fails without one). Here a private mount namespace gets a /dev of its own
//! whose `log` leads to a datagram socket the test reads.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::*;

#[test]
fn delivery_logs_to_syslog_facility_mail() {
    if !need_root("syslog") {
        return;
    }
    let env = Env::new("");
    let t = env.dir.path();
    let sock = t.join("log.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    std::fs::write(t.join("null"), "").unwrap();
    let script = format!(
        "set -e; mount --bind /dev/null {t}/null; mount -t tmpfs none /dev; \
         touch /dev/null; mount --bind {t}/null /dev/null; ln -s {sock} /dev/log; \
         printf 'Subject: s\\n\\nx\\n' | {bin} -C {conf} -odi -L mytag {BOB}",
        t = t.display(),
        sock = sock.display(),
        bin = bin().display(),
        conf = env.conf.display(),
    );
    let mut c = std::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    env.run(c, b"", None).expect(0, &env);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = rx.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let all = lines.join("\n");
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    // <22> = mail.info; the tag carries the queue id once it is known.
    assert!(
        all.contains("<22>")
            && all.contains("]: new mail from user=root uid=0 envelope_from=<root@test.example>"),
        "{all}"
    );
    assert!(all.contains("]: mail to=<dmt-bob> queued as "), "{all}");
    assert!(
        all.contains("mytag[") && all.contains("]: <dmt-bob> delivery successful"),
        "{all}"
    );
}
