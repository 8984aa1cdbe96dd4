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

#[test]
fn root_submitter_has_exactly_mails_ids_and_group() {
    if !need_root("installed_root_groups") {
        return;
    }
    let inst = Installed::new();
    let mail = nix::unistd::User::from_name("mail").unwrap().unwrap();
    let (uid, gid) = (mail.uid.as_raw(), mail.gid.as_raw());
    // Root with supplementary groups of its own (adm, cdrom) submits with
    // stdin on a FIFO: while it waits for the message, its ids are read
    // from /proc. Neither root's groups nor anything from NSS may be left.
    let script = format!(
        "set -e; d=$(mktemp -d); mkfifo $d/in
         setpriv --groups 4,24 -- '{sendmail}' -odq {CAROL} < $d/in & pid=$!
         exec 3>$d/in
         i=0; until grep -Eq '^Uid:[[:space:]]+{uid}[[:space:]]' /proc/$pid/status; do
           i=$((i+1)); [ $i -lt 400 ] || exit 9; sleep 0.025; done
         grep -E '^(Uid|Gid|Groups):' /proc/$pid/status
         printf 'Subject: groups\\n\\nx\\n' >&3; exec 3>&-
         wait $pid; rm -r $d",
        sendmail = inst.path("sbin/sendmail"),
    );
    let o = inst.run_sh(None, &script, "");
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let field = |name: &str| -> Vec<u32> {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(field("Uid:"), vec![uid; 4], "{out}");
    assert_eq!(field("Gid:"), vec![gid; 4], "{out}");
    assert_eq!(field("Groups:"), vec![gid], "{out}");
    // And the message was queued.
    assert_eq!(inst.spool_files().len(), 2, "{:?}", inst.spool_files());
}

/// LOGFILE on an installed system: Alice's own `dma` (set-group-id mail)
/// never creates the file (no user may own the log); the runner does, mode
/// 0660 group mail, and it then holds both the submission's and the
/// delivery's lines, each tagged with the queue id. Moved away (logrotate),
/// it is made again; a symlink in its place is never written through.
#[test]
fn installed_logfile_is_never_a_users_and_follows_logrotate() {
    if !need_root("installed_logfile") {
        return;
    }
    let inst = Installed::new();
    let log = inst.root.join("log");
    std::fs::create_dir(&log).unwrap();
    let file = log.join("dma.log");
    inst.add_conf(&format!("LOGFILE {}\nLOG_SYSLOG off\n", file.display()));
    let sendmail = inst.path("sbin/sendmail");

    // Queued only: Alice's process alone runs, and may not create it.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odq", BOB],
        "Subject: 1\n\none\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(!file.exists(), "a user's dma created the log file");

    // Root's queue run (as mail) creates it.
    let o = inst.run(None, &[&sendmail, "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let mail = nix::unistd::User::from_name("mail").unwrap().unwrap();
    let meta = std::fs::metadata(&file).expect("the runner made the log file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), mail.uid.as_raw());
    assert_eq!(meta.mode() & 0o777, 0o660);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("]: info: <{BOB}> delivery successful\n")),
        "{text}"
    );
    assert!(inst.mailbox(BOB).contains("\none\n"));

    // Now it exists: Alice's submission appends its lines, with the id.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odi", BOB],
        "Subject: 2\n\ntwo\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    let new_mail = text
        .lines()
        .find(|l| l.contains(&format!("new mail from user={ALICE} ")))
        .unwrap_or_else(|| panic!("no submission line in\n{text}"));
    assert!(
        new_mail.contains(" dma[") || new_mail.contains(" sendmail["),
        "{new_mail}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), mail.uid.as_raw());

    // logrotate moves it away: the next lines go to a new file.
    std::fs::rename(&file, log.join("dma.log.1")).unwrap();
    let o = inst.run(None, &[&sendmail, "-odi", BOB], "Subject: 3\n\nthree\n");
    assert!(o.status.success(), "{}", show(&o));
    let fresh = std::fs::read_to_string(&file).expect("made again after the move");
    assert!(fresh.contains("delivery successful"), "{fresh}");
    assert!(!fresh.contains(&format!("user={ALICE} ")), "{fresh}");

    // A symlink in its place: nothing is written through it.
    std::fs::remove_file(&file).unwrap();
    let target = log.join("target");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let o = inst.run(None, &[&sendmail, "-odi", BOB], "Subject: 4\n\nfour\n");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    assert!(inst.mailbox(BOB).contains("\nfour\n"));
}
