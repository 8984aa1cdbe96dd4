//! attack13: an ordinary user against LOGFILE and `-bs` on an installed
//! set-id system. Each test asserts the safe outcome.

mod support;

use std::os::unix::fs::MetadataExt;

use support::installed::*;
use support::*;

/// The administrator points LOGFILE into a world-writable sticky
/// directory (/var/tmp style). Alice makes the file first, as her own:
/// the runners must not then write everyone's log lines (Bob's
/// recipients, deliveries) into a file that a user owns ("no user ever
/// owns it", logging.rs).
#[test]
fn attack13_logfile_owned_by_a_user_is_not_written_by_the_runner() {
    if !need_root("attack13_logfile_user_owned") {
        return;
    }
    let inst = Installed::new();
    let tmp = inst.root.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    chown_mode(&tmp, 0, 0, 0o1777);
    let file = tmp.join("dma.log");
    inst.add_conf(&format!("LOGFILE {}\nLOG_SYSLOG off\n", file.display()));
    let sendmail = inst.path("sbin/sendmail");
    // Alice's file, readable and writable by her.
    let o = inst.run_sh(
        Some(ALICE),
        &format!("umask 0; : > {f}; chmod 666 {f}", f = file.display()),
        "",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), user(ALICE).uid);
    // Bob mails a secret recipient.
    let o = inst.run(
        Some(BOB),
        &[&sendmail, "-odi", "secret-rcpt@remote.invalid", BOB],
        "Subject: private\n\nhi\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("secret-rcpt") && !text.contains(BOB),
        "the runner/dma wrote other users' log lines into Alice's file:\n{text}"
    );
}

/// LOGFILE in a subdirectory of a world-writable directory that does not
/// exist yet: Alice makes that directory a symlink to a directory of her
/// choice; the runner's pre-creation as root must not make a file there.
#[test]
fn attack13_logfile_precreate_does_not_follow_a_users_directory_symlink() {
    if !need_root("attack13_logfile_dir_symlink") {
        return;
    }
    let inst = Installed::new();
    let tmp = inst.root.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    chown_mode(&tmp, 0, 0, 0o1777);
    // A root-only directory Alice may not write in.
    let victim = inst.root.join("rootonly");
    std::fs::create_dir(&victim).unwrap();
    chown_mode(&victim, 0, 0, 0o755);
    let file = tmp.join("logs/dma.log");
    inst.add_conf(&format!("LOGFILE {}\n", file.display()));
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run_sh(
        Some(ALICE),
        &format!("ln -s {} {}", victim.display(), tmp.join("logs").display()),
        "",
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(Some(ALICE), &[&sendmail, "-odi", BOB], "Subject: x\n\nx\n");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !victim.join("dma.log").exists(),
        "root created {} (owner {}) through Alice's symlink",
        victim.join("dma.log").display(),
        std::fs::metadata(victim.join("dma.log"))
            .map(|m| m.uid())
            .unwrap_or(0)
    );
}

fn bs(inst: &Installed, user: &str, dialogue: &str) -> std::process::Output {
    let sendmail = inst.path("sbin/sendmail");
    inst.run(Some(user), &[&sendmail, "-bs", "-odi"], dialogue)
}

/// `-bs`: Alice's message claims to be Bob's (MAIL FROM bob, a forged
/// Received line in the data): the spooled/delivered message still names
/// Alice as the submitter.
#[test]
fn attack13_bs_message_is_the_callers_whatever_it_claims() {
    if !need_root("attack13_bs_claims") {
        return;
    }
    let inst = Installed::new();
    let d = format!(
        "EHLO x\r\nMAIL FROM:<{BOB}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n\
         Received: from {BOB} by {HOST} (uid 1234)\r\nFrom: {BOB}\r\nSubject: forged\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let o = bs(&inst, ALICE, &d);
    assert!(o.status.success(), "{}", show(&o));
    let mbox = inst.mailbox(BOB);
    let alice_uid = user(ALICE).uid;
    // Our Received line (the first) names Alice's uid.
    let first_received = mbox
        .lines()
        .find(|l| l.starts_with("Received:"))
        .unwrap_or_default()
        .to_string();
    let block: String = mbox
        .split("\nReceived: from ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    assert!(
        format!("{first_received}{block}").contains(&format!("uid {alice_uid}"))
            || mbox.contains(ALICE),
        "Alice's -bs message does not name her:\n{mbox}"
    );
}

/// `-bs` BDAT declaring an enormous chunk, then a few bytes and EOF: no
/// memory blow-up, nothing queued, and the process ends.
#[test]
fn attack13_bs_huge_bdat_declared_size() {
    if !need_root("attack13_bs_bdat") {
        return;
    }
    let inst = Installed::new();
    inst.add_conf("MESSAGE_SIZE_LIMIT 0\n");
    let d = format!(
        "EHLO x\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n\
         BDAT 18446744073709551615\r\nSubject: x\r\n\r\nabc\r\n"
    );
    let o = bs(&inst, ALICE, &d);
    assert!(!o.status.success(), "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    // Two chunks whose sizes overflow a u64 sum: no panic, no wrap.
    let d = format!(
        "EHLO x\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n\
         BDAT 0\r\nBDAT 18446744073709551615\r\nxyz"
    );
    let o = bs(&inst, ALICE, &d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    let d = format!(
        "EHLO x\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n\
         BDAT 1\r\nxBDAT 18446744073709551615\r\nxyz"
    );
    let o = bs(&inst, ALICE, &d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
}
