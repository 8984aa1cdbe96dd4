//! The queue on an operator's worst day (issue 10): a full spool, corrupt
//! entries, clocks stepped back and forward. Each case goes through the
//! real binaries; the full spool is a small tmpfs mounted in a private
//! mount namespace over an installed system's spool.

mod support;

use std::path::Path;

use support::installed::*;
use support::*;

/// Unix seconds now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The `key` line's value in an envelope file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")).map(str::to_string))
}

/// Rewrites the `key` line of envelope `path` (every one of them).
fn set_field(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let out: String = text
        .split_inclusive('\n')
        .map(|l| match l.strip_prefix(&format!("{key} ")) {
            Some(_) => format!("{key} {value}\n"),
            None => l.to_string(),
        })
        .collect();
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_full_spool_delivers_nothing_twice() {
    if !need_root("full_spool") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    let spool = inst.path("spool");
    let mail_gid = nix::unistd::Group::from_name("mail").unwrap().unwrap().gid;
    // Five messages to two local users, queued; then the spool is filled
    // and four due-only runs come and go; then space comes back.
    let script = format!(
        "mount -t tmpfs -o size=512k,mode=2770,gid={gid} tmpfs {spool}
         for i in 1 2 3 4 5; do
             printf 'Subject: m%s\\n\\nbody %s\\n' $i $i | {sendmail} -odq {ALICE} {BOB} || exit 9
         done
         dd if=/dev/zero of={spool}/fill bs=4k 2>/dev/null
         for i in 1 2 3 4; do
             {dma} -q5m 2>>{spool}/../q.err; echo \"q5m=$?\"
         done
         printf 'Subject: late\\n\\nx\\n' | {sendmail} -odq {ALICE} 2>{spool}/../submit.err; echo \"submit=$?\"
         echo \"left: $(ls -A {spool} | grep -v -e '^\\.runner' -e '^\\.intake' -e '^\\.spare' | tr '\\n' ' ')\"
         rm {spool}/fill
         {dma} -q; echo \"q=$?\"
         echo \"after: $(ls -A {spool} | grep -v -e '^\\.runner' -e '^\\.intake' -e '^\\.spare' | tr '\\n' ' ')\"",
        gid = mail_gid,
        sendmail = inst.path("sbin/sendmail"),
        dma = inst.path("sbin/dma"),
    );
    let o = inst.run_sh(None, &script, "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let q_err = std::fs::read_to_string(inst.root.join("q.err")).unwrap_or_default();
    let submit_err = std::fs::read_to_string(inst.root.join("submit.err")).unwrap_or_default();
    let all = format!("{}\nq.err: {q_err}\nsubmit.err: {submit_err}", show(&o));
    // Every run on the full spool says so and fails; nothing was delivered.
    assert_eq!(out.matches("q5m=73").count(), 4, "{all}");
    // (Each queue worker stops at its first failure: one line or more a run.)
    assert!(
        q_err.matches("No space left on device").count() >= 4,
        "{all}"
    );
    assert!(q_err.contains(&format!("can not write {spool}/")), "{all}");
    // A submission on the full spool: 73, naming the file, leaving nothing
    // (no data file, no temporary envelope).
    assert!(out.contains("submit=73"), "{all}");
    assert!(
        submit_err.contains(&format!("can not write {spool}/"))
            && submit_err.contains("No space left on device"),
        "{all}"
    );
    let left = out.lines().find_map(|l| l.strip_prefix("left: ")).unwrap();
    assert_eq!(left.split_whitespace().count(), 11, "{all}");
    assert!(!left.contains(".tmp"), "{all}");
    // Space is back: one run delivers each message exactly once.
    assert!(out.contains("q=0"), "{all}");
    let after = out.lines().find_map(|l| l.strip_prefix("after: ")).unwrap();
    assert_eq!(after.trim(), "", "{all}");
    for user in [ALICE, BOB] {
        let msgs = split_mbox(&inst.mailbox(user));
        assert_eq!(msgs.len(), 5, "{user}: {all}\n{msgs:?}");
        for i in 1..=5 {
            let n = msgs
                .iter()
                .filter(|m| m.contains(&format!("\nSubject: m{i}\n")))
                .count();
            assert_eq!(n, 1, "{user} got message {i} {n} times");
        }
    }
}

/// Queues a message to `rcpts` as root (`-odq`) and returns its id.
fn queue(inst: &Installed, subject: &str, rcpts: &[&str]) -> String {
    let before = inst.spool_files();
    let mut argv = vec![inst.path("sbin/sendmail"), "-odq".into()];
    argv.extend(rcpts.iter().map(|r| r.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let o = inst.run(None, &argv, &format!("Subject: {subject}\n\nx\n"));
    assert!(o.status.success(), "{}", show(&o));
    let after = inst.spool_files();
    let new: Vec<&String> = after
        .iter()
        .filter(|f| f.ends_with(".env") && !before.contains(f))
        .collect();
    assert_eq!(new.len(), 1, "{after:?}");
    new[0].trim_end_matches(".env").to_string()
}

#[test]
fn corrupt_entries_are_moved_aside_listed_and_never_delivered() {
    if !need_root("corrupt_entries") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    let spool = inst.root.join("spool");
    let env_of = |id: &str| spool.join(format!("{id}.env"));
    let good = queue(&inst, "good", &[BOB]);
    // An entry written by an earlier release (format 1): still delivered.
    let old = queue(&inst, "old", &[BOB]);
    let text = std::fs::read_to_string(env_of(&old)).unwrap();
    let v1 = text
        .replace("dma-rs-queue 2\n", "dma-rs-queue 1\n")
        .lines()
        .filter(|l| !l.starts_with("size ") && !l.starts_with("end "))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    std::fs::write(env_of(&old), v1).unwrap();
    // Not UTF-8.
    let utf8 = queue(&inst, "utf8", &[BOB]);
    let mut bytes = std::fs::read(env_of(&utf8)).unwrap();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    std::fs::write(env_of(&utf8), bytes).unwrap();
    // Not readable by the queue (root's, 0600).
    let unreadable = queue(&inst, "unreadable", &[BOB]);
    chown_mode(&env_of(&unreadable), 0, 0, 0o600);
    // An empty data file.
    let empty = queue(&inst, "empty", &[BOB]);
    std::fs::write(spool.join(format!("{empty}.msg")), "").unwrap();
    // Cut at a line boundary after the first recipient.
    let cut = queue(&inst, "cut", &[BOB, CAROL]);
    let text = std::fs::read_to_string(env_of(&cut)).unwrap();
    let end = text.find(&format!("rcpt {CAROL}")).unwrap();
    std::fs::write(env_of(&cut), &text[..end]).unwrap();
    // No data file at all.
    let nodata = queue(&inst, "nodata", &[BOB]);
    std::fs::remove_file(spool.join(format!("{nodata}.msg"))).unwrap();
    let bad = [
        (&utf8, "valid UTF-8"),
        (&unreadable, "Permission denied"),
        (&empty, "data file is 0 bytes long"),
        (&cut, "cut short"),
        (&nodata, "envelope without data file"),
    ];
    // mailq (an ordinary user's) lists the good ones and then each bad one
    // in a section of its own, with the reason; it goes on past them.
    let q = inst.run(Some(ALICE), &[&inst.path("sbin/dma"), "-bp"], "");
    let text = String::from_utf8_lossy(&q.stdout).into_owned();
    assert!(q.status.success(), "{}", show(&q));
    let (queued, corrupt) = text
        .split_once("== Corrupt entries, never delivered")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(queued.contains(&format!("ID\t: {good}\n")), "{text}");
    assert!(queued.contains(&format!("ID\t: {old}\n")), "{text}");
    for (id, why) in bad {
        assert!(!queued.contains(id.as_str()), "{text}");
        let block = corrupt.split(&format!("ID\t: {id}\n")).nth(1).unwrap_or("");
        let status = block.lines().next().unwrap_or("");
        assert!(
            status.starts_with("Status\t: corrupt, to be moved") && status.contains(why),
            "{id} ({why}):\n{text}"
        );
    }
    // A queue run moves them aside, says so, and delivers the rest.
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q", "-v"], "");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        err.matches("corrupt queue entry moved to").count(),
        5,
        "{err}"
    );
    let msgs = split_mbox(&inst.mailbox(BOB));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("Subject: good\n")));
    assert!(msgs.iter().any(|m| m.contains("Subject: old\n")));
    assert_eq!(inst.mailbox(CAROL), "");
    let files = inst.spool_files();
    assert_eq!(files, vec!["corrupt".to_string()], "{files:?}");
    let moved = spool.join("corrupt");
    for (id, why) in bad {
        let note = std::fs::read_to_string(moved.join(format!("{id}.why"))).unwrap();
        assert!(note.contains(why), "{id}: {note}");
        assert!(moved.join(format!("{id}.env")).exists(), "{id}");
        assert_eq!(
            moved.join(format!("{id}.msg")).exists(),
            id != &nodata,
            "{id}"
        );
    }
    // Still listed, as moved.
    let q = inst.run(Some(ALICE), &[&inst.path("sbin/dma"), "-bp"], "");
    let text = String::from_utf8_lossy(&q.stdout).into_owned();
    assert!(
        text.starts_with("Mail queue is empty\n== Corrupt entries"),
        "{text}"
    );
    assert_eq!(
        text.matches("Status\t: corrupt, moved there ").count(),
        5,
        "{text}"
    );
    // With when and why, for an ordinary user too.
    for (id, why) in bad {
        let block = text.split(&format!("ID\t: {id}\n")).nth(1).unwrap_or("");
        let status = block.lines().next().unwrap_or("");
        assert!(
            status.contains(why) && !status.contains("1970"),
            "{id}: {text}"
        );
    }
    // And never delivered by later runs.
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(split_mbox(&inst.mailbox(BOB)).len(), 2);
}

#[test]
fn a_clock_stepped_back_delays_retries_by_retry_max_at_most() {
    if !need_root("clock_back") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("RETRY_MIN 1s\nRETRY_MAX 2s\n");
    // Bob's mailbox is a directory: every attempt defers.
    std::fs::create_dir(env.mbox_path(BOB)).unwrap();
    env.send(&["-f", CAROL, BOB], "Subject: s\n\nx\n")
        .expect(0, &env);
    let id = env.queue_ids().pop().unwrap();
    let path = env.spool.join(format!("{id}.env"));
    // Its retry time as a clock a day ahead set it.
    set_field(&path, "next-try", &(now() + 86400).to_string());
    let mut c = env.cmd("dma");
    c.arg("-q5m");
    env.run(c, b"", None).expect(0, &env);
    // Brought back within RETRY_MAX, and kept so.
    let next: i64 = field(&std::fs::read_to_string(&path).unwrap(), "next-try")
        .unwrap()
        .parse()
        .unwrap();
    assert!(next <= now() + 2, "next try {next}, now {}", now());
    std::fs::remove_dir(env.mbox_path(BOB)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let mut c = env.cmd("dma");
    c.arg("-q5m");
    env.run(c, b"", None).expect(0, &env);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert_eq!(env.messages(BOB).len(), 1);
}

#[test]
fn a_clock_stepped_forward_bounces_nothing_before_three_attempts() {
    if !need_root("clock_forward") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("QUEUE_LIFETIME 1h\nRETRY_MIN 1h\nRETRY_MAX 2h\n");
    std::fs::create_dir(env.mbox_path(BOB)).unwrap();
    let mut c = env.cmd("sendmail");
    c.args(["-odq", "-f", CAROL, BOB]);
    env.run(c, b"Subject: s\n\nx\n", None).expect(0, &env);
    let id = env.queue_ids().pop().unwrap();
    let path = env.spool.join(format!("{id}.env"));
    // The clock jumped ten days ahead since it was queued.
    set_field(&path, "created", &(now() - 10 * 86400).to_string());
    for attempt in 1..=2 {
        env.flush().expect(0, &env);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(field(&text, "attempts"), Some(attempt.to_string()));
        assert_eq!(field(&text, "state").as_deref(), Some("deferred"));
        assert!(env.messages(CAROL).is_empty(), "bounced after {attempt}");
    }
    // The third failed attempt gives up.
    env.flush().expect(0, &env);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    let b = env.messages(CAROL);
    assert_eq!(b.len(), 1);
    assert!(b[0].contains("Status: 4.4.7"), "{}", b[0]);
}

#[test]
fn a_local_delivery_found_in_flight_is_made_again_and_said_so() {
    if !need_root("inflight_local") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("");
    let mut c = env.cmd("sendmail");
    c.args(["-odq", BOB]);
    env.run(c, b"Subject: s\n\nx\n", None).expect(0, &env);
    let id = env.queue_ids().pop().unwrap();
    let path = env.spool.join(format!("{id}.env"));
    // As a run that died between the mailbox write and the state write
    // leaves it.
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "state pending\n",
        &format!("state pending\ninflight {}\n", now() - 7),
    );
    std::fs::write(&path, text).unwrap();
    let mut c = env.cmd("dma");
    c.args(["-q", "-v"]);
    let r = env.run(c, b"", None);
    r.expect(0, &env);
    assert!(
        r.stderr().contains(&format!(
            "<{BOB}> possible duplicate: an earlier delivery (started 7s ago)"
        )),
        "{}",
        r.show()
    );
    assert_eq!(env.messages(BOB).len(), 1);
    assert!(env.queue_ids().is_empty());
}

#[test]
fn a_mail_spool_out_of_inodes_defers_naming_the_file() {
    if !need_root("mailspool_inodes") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    let mail = inst.path("mail");
    let script = format!(
        "mount -t tmpfs -o size=1m,nr_inodes=8,mode=1777 tmpfs {mail}
         i=0; while touch {mail}/f$i 2>/dev/null; do i=$((i+1)); done
         printf 'Subject: s\\n\\nx\\n' | {sendmail} -odi {BOB}; echo \"send=$?\"
         {dma} -bp",
        sendmail = inst.path("sbin/sendmail"),
        dma = inst.path("sbin/dma"),
    );
    let o = inst.run_sh(None, &script, "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("send=0"), "{}", show(&o));
    assert!(
        out.contains("deferred, 1 attempt, next try ")
            && out.contains(&format!(
                "4.2.0 can not create {mail}/{BOB}.lock: No space left on device"
            )),
        "{}",
        show(&o)
    );
}

#[test]
fn a_spool_that_fills_during_a_delivery_still_records_it() {
    if !need_root("spool_fills_during_delivery") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("");
    let spot = env.dir.path().join("spot");
    std::fs::create_dir(&spot).unwrap();
    std::fs::set_permissions(&spot, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A command that fills the spool while it is delivered to (as another
    // writer might), and counts its copies.
    let filler = spot.join("fill.sh");
    std::fs::write(
        &filler,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho copy >> {s}/copies\n\
             dd if=/dev/zero of={spool}/fill bs=4k 2>/dev/null\nexit 0\n",
            s = spot.display(),
            spool = env.spool.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&filler, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Alice comes after the command.
    env.set_aliases(&format!("filler: \"|{}\", {ALICE}\n", filler.display()));
    // Each run, space comes back: the old code delivered the command's
    // copy again every time (its outcome could not be recorded).
    let script = format!(
        "mount -t tmpfs -o size=256k,mode=1777 tmpfs {spool}
         printf 'Subject: s\\n\\nx\\n' | {dma} -C {conf} -odq filler || exit 9
         for i in 1 2 3; do
             {dma} -C {conf} -q 2>>{s}/q.err; echo \"q=$?\"
             rm -f {spool}/fill
         done
         echo \"left: $(ls {spool} | tr '\\n' ' ')\"",
        spool = env.spool.display(),
        dma = bin().display(),
        conf = env.conf.display(),
        s = spot.display(),
    );
    let o = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = std::fs::read_to_string(spot.join("q.err")).unwrap_or_default();
    let all = format!("{}\nq.err: {err}", show(&o));
    let copies = std::fs::read_to_string(spot.join("copies")).unwrap_or_default();
    assert_eq!(copies.lines().count(), 1, "{all}");
    // The command's outcome was recorded in the room taken before it ran
    // (the room its old envelope gives back then is enough for Alice's).
    assert_eq!(env.messages(ALICE).len(), 1, "{all}");
    assert!(out.contains("left: \n"), "{all}");
}

#[test]
fn a_fifo_in_the_queue_hangs_nothing() {
    if !need_root("fifo_in_queue") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("");
    let mut c = env.cmd("sendmail");
    c.args(["-odq", BOB]);
    env.run(c, b"Subject: good\n\nx\n", None).expect(0, &env);
    for name in ["0123456789abcdef.env", "0123456789abcdee.msg"] {
        nix::unistd::mkfifo(
            &env.spool.join(name),
            nix::sys::stat::Mode::from_bits_truncate(0o660),
        )
        .unwrap();
    }
    std::fs::write(env.spool.join("0123456789abcdee.env"), "x").unwrap();
    let start = std::time::Instant::now();
    let q = env.mailq();
    q.expect(0, &env);
    assert!(q.stdout().contains("not a regular file"), "{}", q.show());
    env.flush().expect(0, &env);
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert_eq!(env.messages(BOB).len(), 1);
    let moved = env.spool.join("corrupt");
    assert!(
        moved.join("0123456789abcdef.env").exists(),
        "{}",
        env.dump()
    );
    assert!(
        moved.join("0123456789abcdee.msg").exists(),
        "{}",
        env.dump()
    );
}

#[test]
fn a_user_cannot_use_up_the_spools_inodes() {
    if !need_root("spool_inodes") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    inst.add_conf("SPOOL_MIN_FREE 1M\n");
    let spool = inst.path("spool");
    let gid = nix::unistd::Group::from_name("mail").unwrap().unwrap().gid;
    // Alice queues until she is refused; root's queue run still works.
    let script = format!(
        "mount -t tmpfs -o size=8m,nr_inodes=64,mode=2770,gid={gid} tmpfs {spool}
         i=0; while [ $i -lt 60 ]; do
             printf 'Subject: m\\n\\nx\\n' | runuser -u {ALICE} -- {sendmail} -odq {BOB} 2>{spool}/../refused || break
             i=$((i+1))
         done
         echo \"queued=$i\"
         {dma} -q; echo \"q=$?\"",
        sendmail = inst.path("sbin/sendmail"),
        dma = inst.path("sbin/dma"),
    );
    let o = inst.run_sh(None, &script, "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let refused = std::fs::read_to_string(inst.root.join("refused")).unwrap_or_default();
    let all = format!("{}\nrefused: {refused}", show(&o));
    assert!(refused.contains("free inodes (SPOOL_MIN_FREE)"), "{all}");
    let queued: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("queued="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(queued > 0 && queued < 60, "{all}");
    assert!(out.contains("q=0"), "{all}");
    assert_eq!(split_mbox(&inst.mailbox(BOB)).len(), queued, "{all}");
}

/// A queue run hands one mailbox's messages to one delivery (issue 11);
/// when the mailbox's file system fills up in the middle, the messages
/// before the one that did not fit are delivered, each whole and once,
/// and that one and the rest stay queued, to be delivered once there is
/// room again.
#[test]
fn a_batch_cut_short_by_a_full_disk_delivers_the_first_ones_and_queues_the_rest() {
    if !need_root("batch_disk_full") {
        return;
    }
    let _homes = Homes::take();
    let inst = Installed::new();
    let mail = inst.path("mail");
    // 12 messages of about 3 KiB; the mailbox's file system holds 16 KiB.
    let body = "x".repeat(74) + "\n";
    let mut script = format!("mount -t tmpfs -o size=16k,mode=1777 tmpfs {mail}\n");
    for i in 1..=12 {
        script.push_str(&format!(
            "printf 'Subject: m{i}\\n\\n%s' \"$BODY\" | {sendmail} -odq {BOB} || exit 9\n",
            sendmail = inst.path("sbin/sendmail"),
        ));
    }
    script.push_str(&format!(
        "{dma} -q -v 2>&1; echo \"q=$?\"
         echo; echo MAILQ; {dma} -bp
         cp {mail}/{BOB} {mail}.first 2>/dev/null || : > {mail}.first
         mount -o remount,size=1m {mail}
         {dma} -q; echo \"q2=$?\"
         cp {mail}/{BOB} {mail}.all",
        dma = inst.path("sbin/dma"),
    ));
    let o = inst.run_sh(None, &format!("BODY=\"{}\"\n{script}", body.repeat(40)), "");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = show(&o);
    assert!(out.contains("q=0") && out.contains("q2=0"), "{all}");
    assert!(
        out.contains(&format!(
            "12 messages for the mailbox of {BOB}, in one delivery"
        )),
        "{all}"
    );
    // Whole messages, in order, each once.
    let subjects = |text: &str| -> Vec<String> {
        if !text.is_empty() {
            assert!(text.ends_with(&format!("{body}\n")), "torn end: {text:?}");
        }
        for m in text.split("\nFrom ").filter(|m| !m.is_empty()) {
            assert_eq!(m.matches(body.as_str()).count(), 40, "torn: {m:?}");
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
            .collect()
    };
    let first = subjects(&std::fs::read_to_string(format!("{mail}.first")).unwrap());
    let n = first.len();
    assert!(
        (1..12).contains(&n),
        "{n} delivered before the disk was full\n{all}"
    );
    // (In queue order: ids of one second are in no particular order.)
    let mut want: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();
    want.sort();
    let mut once = first.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), n, "{first:?}\n{all}");
    let mailq = out.split("MAILQ").nth(1).unwrap_or_default();
    assert_eq!(
        mailq.matches("No space left on device").count(),
        12 - n,
        "{all}"
    );
    // Room again: the rest, once each.
    let mut after = subjects(&std::fs::read_to_string(format!("{mail}.all")).unwrap());
    assert_eq!(after[..n], first, "{all}");
    after.sort();
    assert_eq!(after, want, "{all}");
    assert!(inst.spool_files().is_empty(), "{:?}", inst.spool_files());
}
