//! The privilege model of an installed system, for real: `dma` set-group-id
//! mail, `dma-local` set-user-id root runnable by group mail only, the spool
//! 2770 root:mail, the system configuration at its compiled-in path.
//!
//! The compiled-in paths (`/etc/dma/dma.conf`, `/usr/local/libexec/dma-rs`)
//! are bind-mounted from a test directory inside a private mount namespace
//! (`unshare --mount`), so nothing on the host is changed beyond two empty
//! mount points that scripts/test-setup.sh creates.

mod support;

use support::installed::*;
use support::*;

#[test]
fn installed_user_to_user_delivery_runs_as_the_recipient() {
    if !need_root("installed_privileges") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odi", BOB],
        "Subject: installed\n\nhello bob\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let mbox = inst.root.join("mail").join(BOB);
    let text = std::fs::read_to_string(&mbox).unwrap_or_default();
    assert!(
        text.starts_with(&format!("From {ALICE}@{HOST} ")),
        "{}\n{text}",
        show(&o)
    );
    assert!(text.contains("\nhello bob\n\n"), "{text}");
    assert_eq!(owner_mode(&mbox), (user(BOB).uid, 0o600));
    assert_eq!(inst.spool_files(), Vec::<String>::new());

    // Alice cannot look into the spool, nor run the helper herself.
    let o = inst.run(Some(ALICE), &["ls", &inst.path("spool")], "");
    assert!(
        !o.status.success(),
        "spool readable by a user: {}",
        show(&o)
    );
    let o = inst.run(
        Some(ALICE),
        &[
            &inst.path("libexec/dma-local"),
            "mbox",
            "--user",
            BOB,
            "--sender",
            "x",
        ],
        "forged\n",
    );
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        show(&o)
    );
    assert!(!std::fs::read_to_string(&mbox).unwrap().contains("forged"));

    // With -C, dma gives up group mail: Alice's private config cannot reach
    // the system spool.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-C", &inst.path("etc/dma.conf"), "-odq", BOB],
        "x\n",
    );
    assert_eq!(o.status.code(), Some(73), "{}", show(&o));
}

#[test]
fn root_becomes_mail_and_queue_files_are_not_users() {
    if !need_root("installed_root") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(
        None,
        &[&sendmail, "-odq", CAROL],
        "Subject: from root\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let mail_uid = nix::unistd::User::from_name("mail")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let files: Vec<_> = std::fs::read_dir(inst.root.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let (uid, mode) = owner_mode(f);
        assert_eq!((uid, mode & 0o007), (mail_uid, 0), "{}", f.display());
    }
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let text = std::fs::read_to_string(inst.root.join("mail").join(CAROL)).unwrap_or_default();
    // The Received header names the real caller, root.
    assert!(
        text.contains("Received: from root (uid 0)") && text.contains("Subject: from root"),
        "{}\n{text}",
        show(&o)
    );
}
