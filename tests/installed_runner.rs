//! Issue 9 through an installed copy (`dma` set-group-id mail, `dma-local`
//! set-user-id root): the submitter's process only queues. Each test is an
//! attack by an ordinary local user (`dmt-alice`) on the delivery of other
//! users' mail, and asserts that it did not work.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use smtpd::{Behavior, FakeSmtp};
use support::installed::*;
use support::*;

/// Waits up to `secs` for `f` to hold.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Messages in the spool (runner lock files aside).
fn queued(inst: &Installed) -> usize {
    inst.spool_files()
        .iter()
        .filter(|f| f.ends_with(".env"))
        .count()
}

/// A shell function for the attacker: the pids of every process that runs
/// our programs but is not the attacker's own shell's child `sendmail`.
const FIND_DELIVERY: &str = r#"delivery_pids() {
    for d in /proc/[0-9]*; do
        c=$(tr '\0' '\n' < "$d/cmdline" 2>/dev/null | head -n 1) || continue
        case "$c" in */dma-local) echo "${d#/proc/}";; esac
    done
}
"#;

/// The probe a victim's `.forward` runs: it records the process state it
/// was given. Signals are read by `grep` from its own status: dash blocks
/// every signal around its vfork, so the shell's own status, read by a
/// child, is a race.
const PROBE: &str = r#"cat > "$HOME/t.got"
umask > "$HOME/t.umask"
ulimit -f > "$HOME/t.fsize"
ulimit -n > "$HOME/t.nofile"
nice > "$HOME/t.nice"
ls -l /proc/$$/fd/ > "$HOME/t.fds"
{ cat /proc/self/oom_score_adj; chrt -p $$; ionice -p $$; uname -r; } > "$HOME/t.sched"
grep -E '^(SigIgn|SigBlk)' /proc/self/status > "$HOME/t.sig"
"#;

/// The invoker's process state: umask 000, 64 descriptors at most (a
/// soft limit), one of them open on a file of hers, ignored signals, the
/// first in line for the OOM killer (and, through the commands of
/// [`LOWLY`], the idle scheduling and I/O classes, the lowest priority and
/// the Linux 2.6 personality).
const HOSTILE: &str = "umask 000; ulimit -S -n 64; exec 7>>/tmp/t.alice-fd; \
     trap '' HUP TERM USR1; echo 500 > /proc/self/oom_score_adj; ";

/// Commands that start `sendmail` in the worst place a user can put it.
const LOWLY: &str = "chrt -i 0 ionice -c3 setarch --uname-2.6 nice -n 19";

fn assert_clean_state(case: &str) {
    let got = t_file(BOB, "got");
    assert!(
        got.contains("Subject: to bob") && got.contains(&"y".repeat(70)),
        "{case}: bob's program did not get the whole message:\n{}",
        &got[..got.len().min(500)]
    );
    assert!(got.len() > 20_000, "{case}: {} bytes", got.len());
    let meta = std::fs::metadata(home(BOB).join("t.got")).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (user(BOB).uid, 0o600),
        "{case}: the file bob's program wrote"
    );
    assert_eq!(t_file(BOB, "umask").trim(), "0077", "{case}");
    assert_eq!(t_file(BOB, "fsize").trim(), "unlimited", "{case}");
    assert_eq!(t_file(BOB, "nofile").trim(), "1024", "{case}");
    assert_eq!(t_file(BOB, "nice").trim(), "0", "{case}");
    let sched = t_file(BOB, "sched");
    assert!(
        sched.starts_with("0\n")
            && sched.contains("SCHED_OTHER")
            && !sched.contains("idle")
            && !sched.contains("\n2.6."),
        "{case}: {sched}"
    );
    let fds = t_file(BOB, "fds");
    assert!(!fds.contains("alice"), "{case}: an fd of alice's:\n{fds}");
    assert!(!fds.contains(" 7 ->"), "{case}: fd 7 inherited:\n{fds}");
    let sig = t_file(BOB, "sig");
    assert_eq!(
        sig, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        "{case}"
    );
}

fn big_message() -> String {
    let mut m = String::from("Subject: to bob\n\n");
    for _ in 0..300 {
        m.push_str(&"y".repeat(70));
        m.push('\n');
    }
    m
}

/// Bob's `.forward` runs the probe; Carol's big message to him waits in
/// the queue.
fn carol_queues_for_bobs_probe(inst: &Installed) {
    let probe = script(BOB, "probe", PROBE);
    set_forward(BOB, &format!("\"|{probe}\"\n"));
    let o = inst.run_sh(
        Some(CAROL),
        &format!("exec {} -odq {BOB}", inst.path("sbin/sendmail")),
        &big_message(),
    );
    assert!(o.status.success(), "{}", show(&o));
}

/// Item 1: `umask 000; ulimit -f 8; exec 7>>...; dma -q` (and the same
/// around a submission) shaped the process that ran another user's
/// `.forward` program: a world-readable file with someone else's mail, a
/// bounce ("File too large"), a leaked descriptor.
#[test]
fn the_invokers_process_state_never_reaches_another_users_program() {
    if !need_root("installed_process_state") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    // Carol's mail waits in the queue; Alice runs the queue.
    carol_queues_for_bobs_probe(&inst);
    let o = inst.run_sh(
        Some(ALICE),
        // And a 4 KB file size limit (a submission could not spool the
        // message under it).
        &format!("{HOSTILE} ulimit -S -f 8; exec {LOWLY} {sendmail} -q"),
        "",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_clean_state("alice's dma -q");
    assert_eq!(queued(&inst), 0, "{:?}", inst.spool_files());

    // Hard limits: root raises them again where it may (CAP_SYS_RESOURCE);
    // where it may not (a container), no runner starts under them, and the
    // message waits, whole, for one that has them.
    clean();
    carol_queues_for_bobs_probe(&inst);
    let o = inst.run_sh(
        Some(ALICE),
        &format!("{HOSTILE} ulimit -H -f 8; exec {LOWLY} {sendmail} -q"),
        "",
    );
    if !o.status.success() {
        assert_eq!(o.status.code(), Some(75), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("RLIMIT_FSIZE is 4096"),
            "{}",
            show(&o)
        );
        assert_eq!(t_file(BOB, "got"), "", "bob's program ran");
        assert_eq!(queued(&inst), 1);
        let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
        assert!(o.status.success(), "{}", show(&o));
    }
    assert_clean_state("alice's dma -q under a hard limit");
    assert_eq!(queued(&inst), 0, "{:?}", inst.spool_files());

    // Alice's own submission, in the background (the default) and with
    // -odi: the runner is as clean.
    for mode in ["-odb", "-odi"] {
        clean();
        let probe = script(BOB, "probe", PROBE);
        set_forward(BOB, &format!("\"|{probe}\"\n"));
        let o = inst.run_sh(
            Some(ALICE),
            &format!("{HOSTILE} exec {LOWLY} {sendmail} {mode} {BOB}"),
            &big_message(),
        );
        assert!(o.status.success(), "{}", show(&o));
        assert!(
            wait_for(10, || t_file(BOB, "sig").contains("SigIgn")),
            "{mode}: bob's program never ran"
        );
        assert_clean_state(&format!("alice's sendmail {mode}"));
    }
    let _ = std::fs::remove_file("/tmp/t.alice-fd");
}

/// Items 2 and 3: the invoker can signal none of the processes that
/// deliver (SIGSTOP on the runner held everyone's fresh mail; SIGKILL on
/// `dma-local` left a root-owned dotlock on another user's mailbox), and a
/// SIGSTOPped submitter holds no one's mail.
#[test]
fn the_invoker_can_neither_stop_nor_kill_a_delivery() {
    if !need_root("installed_signals") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    inst.add_conf("QUEUE_WORKERS 1\n");
    let sendmail = inst.path("sbin/sendmail");
    // Bob's program takes 3 s: long enough to be attacked.
    let slow = script(BOB, "slow", "cat > \"$HOME/t.got\"; sleep 3\n");
    set_forward(BOB, &format!("\"|{slow}\", \\{BOB}\n"));
    for to in [BOB, CAROL] {
        let o = inst.run(
            Some(CAROL),
            &[&sendmail, "-odq", to],
            "Subject: carol's\n\nx\n",
        );
        assert!(o.status.success(), "{}", show(&o));
    }
    assert_eq!(queued(&inst), 2);

    // Alice runs the queue, then stops her own sendmail, and tries to stop
    // and kill every process that delivers. Her stopped process must hold
    // no one's mail: the queue empties while it is stopped.
    let spool = inst.root.join("spool");
    let attack = format!(
        "{FIND_DELIVERY}
        {sendmail} -q & me=$!
        sleep 1
        kill -STOP $me
        pids=$(delivery_pids)
        echo \"PIDS $pids\"
        for p in $pids; do
            grep '^Uid:' /proc/$p/status | sed \"s/^/UID $p /\"
            kill -STOP $p 2>/dev/null && echo STOPPED $p
            kill -KILL $p 2>/dev/null && echo KILLED $p
        done
        sleep 6
        kill -CONT $me
        wait $me
        echo DONE $?"
    );
    let (emptied, o) = std::thread::scope(|s| {
        let t = s.spawn(|| inst.run_sh(Some(ALICE), &attack, ""));
        let emptied = wait_for(6, || {
            std::fs::read_dir(&spool)
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".env"))
        });
        (emptied, t.join().unwrap())
    });
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("DONE 0"), "{}", show(&o));
    let pids = out
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .unwrap_or("");
    assert!(!pids.trim().is_empty(), "no delivery process seen: {out}");
    assert!(
        !out.contains("STOPPED") && !out.contains("KILLED"),
        "alice signalled a delivery process:\n{out}"
    );
    let alice = user(ALICE).uid.to_string();
    for l in out.lines().filter(|l| l.starts_with("UID ")) {
        assert!(
            !l.split_whitespace().skip(3).any(|id| id == alice),
            "a delivery process with alice's ids: {l}"
        );
    }
    assert!(
        emptied,
        "the queue did not empty while alice's sendmail was stopped: {:?}",
        inst.spool_files()
    );
    let mailboxes = || {
        format!(
            "{}\nbob's t.got: {:?}\nbob's mailbox:\n{}\ncarol's mailbox:\n{}",
            show(&o),
            t_file(BOB, "got"),
            inst.mailbox(BOB),
            inst.mailbox(CAROL)
        )
    };
    assert!(t_file(BOB, "got").contains("carol's"), "{}", mailboxes());
    assert!(inst.mailbox(BOB).contains("carol's"), "{}", mailboxes());
    assert!(inst.mailbox(CAROL).contains("carol's"), "{}", mailboxes());
    assert!(!inst.root.join(format!("mail/{BOB}.lock")).exists());
}

/// Item 2: a runner that does not make progress (here: busy with a slow
/// `.forward` program) does not hold other users' fresh mail: after its
/// heartbeat goes stale, submissions start a runner of their own.
#[test]
fn a_busy_runner_does_not_hold_fresh_mail_hostage() {
    if !need_root("installed_liveness") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let slow = script(BOB, "slow", "cat > \"$HOME/t.got\"; sleep 12\n");
    set_forward(BOB, &format!("\"|{slow}\"\n"));
    let o = inst.run_sh(
        Some(ALICE),
        &format!("exec {sendmail} {BOB}"),
        "Subject: slow\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(wait_for(5, || t_file(BOB, "got").contains("slow")));
    // The runner that waits for local mail is now stuck in bob's program.
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    let o = inst.run_sh(
        Some(CAROL),
        &format!("exec {sendmail} {CAROL}"),
        "Subject: fresh\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        wait_for(5, || inst.mailbox(CAROL).contains("fresh")),
        "carol's mail waited for bob's program: {:?}",
        inst.spool_files()
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    let _ = std::process::Command::new("pkill")
        .args(["-u", BOB, "sleep"])
        .status();
}

/// Item 5: password commands (`login|host|command`) run in the runner, as
/// mail (they work from a user's submission: the command may read a file
/// only group mail can read), and neither the command nor its output goes
/// into the queue or `mailq`.
#[test]
fn password_commands_run_privileged_and_stay_out_of_the_queue() {
    if !need_root("installed_password_command") {
        return;
    }
    let fake = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into()],
        ..Behavior::default()
    });
    let inst = Installed::new();
    let mail_gid = nix::unistd::Group::from_name("mail")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let secret = inst.root.join("etc/secret");
    std::fs::write(&secret, "s3cret-pw\n").unwrap();
    chown_mode(&secret, 0, mail_gid, 0o640);
    let auth = inst.root.join("etc/auth.conf");
    std::fs::write(&auth, "user|127.0.0.1|cat /etc/dma/secret\n").unwrap();
    chown_mode(&auth, 0, mail_gid, 0o640);
    inst.add_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nAUTHPATH /etc/dma/auth.conf\nINSECURE\nSMTP_TIMEOUT 5s\n",
        fake.port()
    ));
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odi", "r@remote.example"],
        "Subject: auth\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD.encode("\0user\0s3cret-pw");
    assert!(
        fake.commands().iter().any(|c| c.contains(&plain)),
        "no AUTH with the password: {:?}\n{:?}",
        fake.commands(),
        inst.run(None, &[&sendmail, "-bp"], "")
    );
    assert_eq!(fake.messages().len(), 1);

    // A failing command: the recipient waits, and nobody sees the command
    // or what it printed (syslog only).
    std::fs::write(
        &auth,
        "user|127.0.0.1|echo LEAKED-OUTPUT >&2; echo LEAKED-OUT; exit 3\n",
    )
    .unwrap();
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odi", "-v", "r@remote.example"],
        "Subject: auth2\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(queued(&inst), 1);
    for who in [Some(ALICE), None] {
        let q = inst.run(who, &[&sendmail, "-bp"], "");
        let text = String::from_utf8_lossy(&q.stdout);
        assert!(text.contains("deferred"), "{}", show(&q));
        assert!(
            !text.contains("LEAKED") && !text.contains("echo"),
            "{who:?}: {text}"
        );
    }
    assert!(!String::from_utf8_lossy(&o.stderr).contains("LEAKED"));
    for f in inst.spool_files() {
        let text = std::fs::read_to_string(inst.root.join("spool").join(&f)).unwrap_or_default();
        assert!(!text.contains("LEAKED") && !text.contains("echo"), "{f}");
    }
}

/// Item 6: another user's `.forward` (a command with its API key) leaked
/// through `dma -v -q` and `mailq`; only root sees expansions, and `-v`
/// shows the caller only the lines about their own messages.
#[test]
fn other_users_forward_files_do_not_leak() {
    if !need_root("installed_forward_leak") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let filter = script(BOB, "filter", "cat > /dev/null; exit 75\n");
    set_forward(BOB, &format!("\"|{filter} --api-key=TOPSECRET\"\n"));
    let o = inst.run(Some(CAROL), &[&sendmail, "-odq", BOB], "Subject: c\n\nx\n");
    assert!(o.status.success(), "{}", show(&o));
    // Alice runs the queue with -v, her own message in it too.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odq", ALICE],
        "Subject: a\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(Some(ALICE), &[&sendmail, "-v", "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("<{ALICE}> delivery successful")),
        "alice's own lines are missing: {}",
        show(&o)
    );
    assert!(
        !err.contains("TOPSECRET") && !err.contains(BOB),
        "lines about carol's message reached alice: {err}"
    );
    assert!(inst.mailbox(ALICE).contains("Subject: a"));
    // Alice's own message to bob: her -v shows her lines, not what bob's
    // .forward made of it.
    alice_verbose_to_bob_hides(&inst, &["TOPSECRET", "filter"]);
    // Carol's message waits (the filter deferred it), expanded.
    let q = inst.run(Some(ALICE), &[&sendmail, "-bp"], "");
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(
        text.contains(&format!("To\t: {BOB}\nStatus\t: expanded: 1 deferred")),
        "{text}"
    );
    assert!(
        !text.contains("TOPSECRET") && !text.contains("filter"),
        "{text}"
    );
    // Root sees it all: the assertion above could fail.
    let q = inst.run(None, &[&sendmail, "-bp"], "");
    assert!(String::from_utf8_lossy(&q.stdout).contains("TOPSECRET"));

    // What the router says about bob's .forward (a malformed entry,
    // quoted) is not alice's to read either.
    set_forward(BOB, "TOPNOTE@@bad\n");
    alice_verbose_to_bob_hides(&inst, &["TOPNOTE"]);
}

/// Alice sends to bob with `-v -odi`: her stderr has her lines about bob,
/// and none of `hidden`.
fn alice_verbose_to_bob_hides(inst: &Installed, hidden: &[&str]) {
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), "-v", "-odi", BOB],
        "Subject: to bob\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("<{BOB}> trying delivery")),
        "{}",
        show(&o)
    );
    for h in hidden {
        assert!(!err.contains(h), "bob's .forward reached alice's -v: {err}");
    }
}

/// Runner reuse (issue 11): the hop lock that remote mail is left to is
/// made by a runner, as mail, 0660 in the spool; an ordinary user can
/// neither open it (to hold it, or to fake a backlog) nor make one.
#[test]
fn hop_locks_are_the_runners_alone() {
    if !need_root("installed_hop_lock") {
        return;
    }
    let _h = Homes::take();
    let fake = FakeSmtp::start(Behavior::default());
    let inst = Installed::new();
    inst.add_conf(&format!("SMARTHOST 127.0.0.1\nPORT {}\n", fake.port()));
    let sendmail = inst.path("sbin/sendmail");
    for i in 0..3 {
        let o = inst.run(
            Some(CAROL),
            &[&sendmail, &format!("r{i}@remote.example")],
            "Subject: hop\n\nx\n",
        );
        assert!(o.status.success(), "{}", show(&o));
    }
    assert!(
        wait_for(15, || fake.messages().len() == 3 && queued(&inst) == 0),
        "{:?}",
        inst.spool_files()
    );
    let spool = inst.root.join("spool");
    let hop = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".runner.hop."))
        .expect("no hop lock in the spool");
    let m = hop.metadata().unwrap();
    let mail = nix::unistd::User::from_name("mail").unwrap().unwrap();
    assert_eq!(m.uid(), mail.uid.as_raw());
    assert_eq!(m.mode() & 0o7777, 0o660);
    let o = inst.run_sh(
        Some(ALICE),
        &format!(
            "(exec 3>>'{held}') 2>/dev/null && echo OPENED
            (: >> '{spool}/.runner.hop.00') 2>/dev/null && echo MADE
            echo DONE",
            held = hop.path().display(),
            spool = spool.display()
        ),
        "",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("DONE"), "{}", show(&o));
    assert!(!out.contains("OPENED") && !out.contains("MADE"), "{out}");
}
