//! What a local user can feed an installed `dma` (set-group-id mail): a
//! message over MESSAGE_SIZE_LIMIT, a submission when the spool is short of
//! SPOOL_MIN_FREE, a bad `-L` tag, a `TZ` naming a file group mail may read;
//! and what a server can feed the administrator: control bytes in a reply.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use smtpd::{Behavior, FakeSmtp};
use support::installed::*;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_message_over_the_size_limit_is_refused_and_leaves_nothing() {
    if !need_root("installed_size_limit") {
        return;
    }
    let inst = Installed::new();
    inst.add_conf("MESSAGE_SIZE_LIMIT 100K\n");
    let sendmail = inst.path("sbin/sendmail");
    let line = format!("{}\n", "z".repeat(99));
    let big = format!("Subject: big\n\n{}", line.repeat(3000));
    let o = inst.run(Some(ALICE), &[&sendmail, "-odq", BOB], &big);
    assert_eq!(o.status.code(), Some(73), "{}", show(&o));
    assert!(
        stderr(&o).contains("message too large: over the limit of 100K (MESSAGE_SIZE_LIMIT)"),
        "{}",
        show(&o)
    );
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    // The same with -t; and a message under the limit goes through.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odq", "-t"],
        &format!("To: {BOB}\n{big}"),
    );
    assert_eq!(o.status.code(), Some(73), "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odq", BOB],
        "Subject: small\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(inst.spool_files().len(), 2, "{:?}", inst.spool_files());
}

#[test]
fn below_the_free_space_reserve_only_root_may_queue() {
    if !need_root("installed_min_free") {
        return;
    }
    let inst = Installed::new();
    // No test file system is 99% free.
    inst.add_conf("SPOOL_MIN_FREE 99%\n");
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(Some(ALICE), &[&sendmail, "-odq", BOB], "Subject: s\n\nx\n");
    assert_eq!(o.status.code(), Some(75), "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("spool {} has less than", inst.path("spool")))
            && stderr(&o).contains("free (SPOOL_MIN_FREE 99%)"),
        "{}",
        show(&o)
    );
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    let o = inst.run(None, &[&sendmail, "-odq", BOB], "Subject: from root\n\nx\n");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(inst.spool_files().len(), 2, "{:?}", inst.spool_files());
}

/// An intake that goes below the reserve while it writes stops there, not
/// when its sender closes the input: many slow intakes at once can no
/// longer fill the file system (each one overshoots by at most a MiB).
#[test]
fn an_intake_stops_at_the_reserve_while_it_writes() {
    if !need_root("installed_min_free_during") {
        return;
    }
    let inst = Installed::new();
    let st = nix::sys::statvfs::statvfs(&inst.root.join("spool")).unwrap();
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    // 24 MiB above what is free now: a message of 40 MiB crosses it. (With
    // 3 MiB, other programs writing to the same file system between the
    // statvfs and the intake made it refuse at the start.)
    inst.add_conf(&format!("SPOOL_MIN_FREE {}\n", free - (24 << 20)));
    let sendmail = inst.path("sbin/sendmail");
    // The sender keeps its end open for 10 s after the data.
    let o = inst.run_sh(
        Some(ALICE),
        &format!(
            "start=$(date +%s); \
             {{ echo Subject: big; echo; head -c 30000000 /dev/zero | base64; sleep 10; }} | \
             {{ {sendmail} -odq {BOB}; echo \"exit $? after $(( $(date +%s) - start ))s\"; }}"
        ),
        "",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let after: u64 = out
        .trim()
        .strip_prefix("exit 75 after ")
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{}", show(&o)));
    assert!(stderr(&o).contains("SPOOL_MIN_FREE"), "{}", show(&o));
    // It did not wait for the end of its input.
    assert!(after < 6, "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
}

/// One user writes at most 16 messages into the spool at once (the 17th
/// waits for a slot): with the reserve checked every MiB, one user's
/// intakes together go at most 16 MiB below SPOOL_MIN_FREE, and root and
/// the bounces keep the rest of it.
#[test]
fn one_user_writes_at_most_sixteen_messages_at_once() {
    if !need_root("installed_intake_slots") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let spool = inst.root.join("spool");
    // Data files, and of those the ones still being written (no envelope).
    let count_msg = |writing: bool| {
        std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".msg").map(str::to_string)
            })
            .filter(|id| !writing || !spool.join(format!("{id}.env")).exists())
            .count()
    };
    let (o, most) = std::thread::scope(|s| {
        let t = s.spawn(|| {
            inst.run_sh(
                Some(ALICE),
                &format!(
                    "for i in $(seq 20); do \
                     ( printf 'Subject: s\\n\\nx\\n'; sleep 4 ) | {sendmail} -odq {BOB} & \
                     done; wait"
                ),
                "",
            )
        });
        let mut most = 0;
        while !t.is_finished() {
            most = most.max(count_msg(true));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (t.join().unwrap(), most)
    });
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(most, 16, "intakes at once: {}", show(&o));
    // The four that waited went through.
    assert_eq!(count_msg(false), 20);
}

#[test]
fn a_bad_log_tag_is_a_usage_error() {
    if !need_root("installed_log_tag") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    for tag in ["two words", "dma[1]", &"x".repeat(33)] {
        let o = inst.run(Some(ALICE), &[&sendmail, "-odq", "-L", tag, BOB], "x\n");
        assert_eq!(o.status.code(), Some(64), "{tag}: {}", show(&o));
        assert!(stderr(&o).contains("invalid -L tag"), "{}", show(&o));
    }
    assert_eq!(inst.spool_files(), Vec::<String>::new());
    let o = inst.run(Some(ALICE), &[&sendmail, "-odq", "-L", "cron", BOB], "x\n");
    assert!(o.status.success(), "{}", show(&o));
}

/// The Date header of the one message in the spool.
fn spooled_date(inst: &Installed) -> String {
    let msg = inst
        .spool_files()
        .into_iter()
        .find(|f| f.ends_with(".msg"))
        .expect("a queued message");
    let text = std::fs::read_to_string(inst.root.join("spool").join(msg)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Date: "))
        .expect("a Date header")
        .to_string()
}

#[test]
fn tz_never_names_a_file_in_a_set_id_run() {
    if !need_root("installed_tz") {
        return;
    }
    let inst = Installed::new();
    // A time zone file only group mail can read, with an offset no test
    // host has: a Date header in +0545 would show it was read.
    let zone = inst.root.join("etc/secret-zone");
    std::fs::copy("/usr/share/zoneinfo/Asia/Kathmandu", &zone).unwrap();
    let mail_gid = nix::unistd::Group::from_name("mail")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    chown_mode(&zone, 0, mail_gid, 0o640);
    let sendmail = inst.path("sbin/sendmail");
    let huge = "A".repeat(100_000);
    for (tz, kathmandu) in [
        (format!("../../../..{}", zone.display()), false),
        (format!(":{}", zone.display()), false),
        (format!("{}", zone.display()), false),
        (huge, false),
        // A zoneinfo name is honoured, set-id or not.
        (":Asia/Kathmandu".to_string(), true),
    ] {
        // (Every value here is free of shell quotes.)
        let o = inst.run_sh(
            Some(ALICE),
            &format!("TZ='{tz}' exec '{sendmail}' -odq {BOB}"),
            "Subject: tz\n\nx\n",
        );
        assert!(o.status.success(), "{}", show(&o));
        let date = spooled_date(&inst);
        assert!(
            jiff::fmt::rfc2822::parse(&date).is_ok() && date.ends_with("+0545") == kathmandu,
            "TZ {}: Date: {date}",
            &tz[..tz.len().min(80)]
        );
        for f in inst.spool_files() {
            std::fs::remove_file(inst.root.join("spool").join(f)).unwrap();
        }
    }
}

#[test]
fn tz_is_a_zoneinfo_name_or_nothing() {
    // Without set-id privilege too, a zoneinfo name is honoured; a path or
    // a POSIX rule is not.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dma.conf");
    std::fs::write(
        &conf,
        format!(
            "SPOOLDIR {}\nMAILNAME {HOST}\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    for (tz, kathmandu) in [
        (":Asia/Kathmandu", true),
        ("/usr/share/zoneinfo/Asia/Kathmandu", false),
        ("../zoneinfo/Asia/Kathmandu", false),
        ("NPT-5:45", false),
    ] {
        let out = std::process::Command::new(bin())
            .args(["-C", conf.to_str().unwrap(), "-odq", "-t"])
            .env("TZ", tz)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"To: someone\n\nx\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let spool = dir.path().join("spool");
        let msg = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "msg"))
            .unwrap();
        let text = std::fs::read_to_string(&msg).unwrap();
        let date = text.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        assert_eq!(date.ends_with("+0545"), kathmandu, "TZ {tz}: {date}");
        std::fs::remove_dir_all(&spool).unwrap();
    }
}

#[test]
fn control_bytes_from_a_server_reach_mailq_escaped() {
    if !need_root("installed_reply_escape") {
        return;
    }
    let fake = FakeSmtp::start(Behavior {
        greeting: "421 \x1b[2J\x1b]0;owned\x07\rbusy".into(),
        ..Behavior::default()
    });
    let inst = Installed::new();
    inst.add_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 2s\n",
        fake.port()
    ));
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(None, &[&sendmail, "-odq", "x@remote.example"], "x\n");
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q", "-v"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !o.stderr
            .iter()
            .any(|&b| b == 0x1b || b == 0x07 || b == b'\r')
    );
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-bp"], "");
    let q = String::from_utf8_lossy(&o.stdout);
    assert!(
        q.contains("421 \\x1b[2J\\x1b]0;owned\\x07\\rbusy"),
        "{}",
        show(&o)
    );
    assert!(
        !o.stdout
            .iter()
            .any(|&b| b == 0x1b || b == 0x07 || b == b'\r')
    );
}
