//! Whole-program delivery tests: real binary, real users, real mailboxes.

mod support;

use mail_parser::MimeHeaders;
use support::*;

const MSG: &str = "From: Alice <alice@example.org>\nTo: bob\nSubject: hello\nDate: Sun, 29 Nov 2026 10:00:00 +0000\nMessage-ID: <m1@example.org>\n\nFrom the start\n>From quoted\nline two\n";

#[test]
fn user_to_user_lands_byte_exact_owned_by_recipient() {
    if !need_root("user_to_user") {
        return;
    }
    let env = Env::new("");
    // Alice submits; she has no privilege, so her own delivery attempt must
    // not write Bob's mailbox: it stays queued for a privileged run.
    env.send_as(ALICE, &["-odq", BOB], MSG).expect(0, &env);
    assert_eq!(env.queue_ids().len(), 1, "{}", env.dump());
    assert!(!env.mbox_path(BOB).exists());
    env.flush().expect(0, &env);
    let msgs = env.messages(BOB);
    assert_eq!(msgs.len(), 1, "{}", env.dump());
    let m = &msgs[0];
    assert!(m.starts_with(&format!("From {ALICE}@{HOST} ")), "{m}");
    let alice = user(ALICE);
    assert!(
        m.contains(&format!(
            "Received: from {ALICE} (uid {})\n\t(envelope-from {ALICE}@{HOST})\n\tid ",
            alice.uid
        )),
        "{m}"
    );
    assert_eq!(
        strip_trace(m),
        format!(
            "From: Alice <alice@example.org>\nTo: bob@{HOST}\nSubject: hello\nDate: Sun, 29 Nov 2026 10:00:00 +0000\nMessage-ID: <m1@example.org>\n\n>From the start\n>>From quoted\nline two\n\n"
        )
    );
    let bob = user(BOB);
    assert_eq!(owner_mode(&env.mbox_path(BOB)), (bob.uid, 0o600));
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert!(!env.mail.join(format!("{BOB}.lock")).exists());
}

#[test]
fn submitter_cannot_deliver_as_another_user() {
    if !need_root("submitter_cannot_deliver") {
        return;
    }
    let env = Env::new("");
    env.send_as(ALICE, &["-odi", BOB], MSG).expect(0, &env);
    assert!(!env.mbox_path(BOB).exists(), "{}", env.dump());
    let q = env.mailq().stdout();
    assert!(q.contains("Status\t: deferred, 1 attempt"), "{q}");
    assert!(q.contains("not privileged to deliver to dmt-bob"), "{q}");
    env.flush().expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
}

#[test]
fn background_delivery_is_the_default() {
    if !need_root("background_delivery") {
        return;
    }
    let env = Env::new("");
    let mut c = env.cmd("sendmail");
    c.arg(BOB);
    env.run(c, MSG.as_bytes(), None).expect(0, &env);
    assert_eq!(env.wait_for(BOB, 1).len(), 1, "{}", env.dump());
}

#[test]
fn a_burst_of_background_local_mail_is_delivered_completely_through_one_session() {
    if !need_root("background_delivery") {
        return;
    }
    let env = Env::new("");
    // Submissions leave their messages to the waiting runner, which delivers
    // them through one dma-local session; none may be lost or left queued.
    let users = [BOB, CAROL];
    for i in 0..30 {
        let mut c = env.cmd("sendmail");
        c.arg(users[i % 2]);
        let msg = format!("Subject: burst {i}\n\nmessage {i}\n");
        env.run(c, msg.as_bytes(), None).expect(0, &env);
    }
    for (k, u) in users.iter().enumerate() {
        let got = env.wait_for(u, 15);
        assert_eq!(got.len(), 15, "{}", env.dump());
        for i in (k..30).step_by(2) {
            let body = format!("\nmessage {i}\n");
            assert_eq!(
                got.iter().filter(|m| m.contains(&body)).count(),
                1,
                "{i}: {}",
                env.dump()
            );
        }
    }
    let start = std::time::Instant::now();
    while !env.queue_ids().is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn headers_added_without_blank_line_and_bcc_removed() {
    if !need_root("headers_added") {
        return;
    }
    let env = Env::new("");
    env.send(&["-F", "Root Admin", BOB], "test\n")
        .expect(0, &env);
    let m = strip_trace(&env.messages(BOB)[0]);
    let lines: Vec<&str> = m.lines().collect();
    assert!(lines[0].starts_with("Date: "), "{m}");
    assert!(
        lines[1].starts_with("Message-ID: <") && lines[1].ends_with(&format!("@{HOST}>")),
        "{m}"
    );
    assert_eq!(lines[2], format!("From: \"Root Admin\" <root@{HOST}>"));
    assert_eq!(&lines[3..], ["", "test", ""]);

    env.send(
        &[BOB],
        "Subject: s\nBcc: secret@example.org,\n  other@example.org\nTo: x\n\nbody\n",
    )
    .expect(0, &env);
    let m = &env.messages(BOB)[1];
    // (Not "bcc" anywhere: a hex queue id may contain it.)
    assert!(
        !m.lines().any(|l| l.to_lowercase().starts_with("bcc:")) && !m.contains("secret@"),
        "{m}"
    );
    // A bare name is qualified with our mail name.
    assert!(m.contains(&format!("\nSubject: s\nTo: x@{HOST}\n")), "{m}");
}

#[test]
fn t_flag_reads_folded_and_group_recipients_and_keeps_argv() {
    if !need_root("t_flag") {
        return;
    }
    let env = Env::new("");
    let msg = format!(
        "To: {BOB},\n\t\"Carol, C\" <{CAROL}@{HOST}>\nCc: team: {CAROL};\nBcc: {ALICE}\nSubject: t\n\nbody\n"
    );
    env.send(&["-t", "root"], &msg).expect(0, &env);
    for u in [BOB, CAROL, ALICE, "root"] {
        let m = env.messages(u);
        assert_eq!(m.len(), 1, "{u}: {}", env.dump());
        assert!(!m[0].lines().any(|l| l.starts_with("Bcc:")));
    }
    // -t without any recipient header: no recipients, exit 66.
    let r = env.send(&["-t"], "Subject: none\n\nx\n");
    r.expect(66, &env);
    assert!(r.stderr().contains("no recipients"), "{}", r.show());
    assert!(env.queue_ids().is_empty());
}

#[test]
fn dot_ends_input_unless_i() {
    if !need_root("dot_handling") {
        return;
    }
    let env = Env::new("");
    env.send(&[BOB], "Subject: a\n\none\n.\ntwo\n")
        .expect(0, &env);
    env.send(&["-i", BOB], "Subject: b\n\none\n.\ntwo\n")
        .expect(0, &env);
    env.send(&["-oi", BOB], "Subject: c\r\n\r\none\r\n.\r\ntwo\r\n")
        .expect(0, &env);
    let m = env.messages(BOB);
    assert!(m[0].ends_with("\n\none\n\n"), "{}", m[0]);
    assert!(m[1].ends_with("\n\none\n.\ntwo\n\n"), "{}", m[1]);
    assert!(
        m[2].ends_with("\n\none\n.\ntwo\n\n") && !m[2].contains('\r'),
        "{}",
        m[2]
    );
}

#[test]
fn aliases_catch_all_and_loops() {
    if !need_root("aliases") {
        return;
    }
    let env = Env::new("");
    env.set_aliases(&format!(
        "# aliases\nteam: {BOB}, {CAROL}\nself: self, {CAROL}\nloop1: loop2\nloop2: loop1\n{ALICE}: {ALICE}, {BOB}\n"
    ));
    env.send(&["team"], "Subject: team\n\nx\n").expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1);
    assert_eq!(env.messages(CAROL).len(), 1);
    // u: u, x delivers to u's own mailbox and to x; dma drops u.
    env.send(&[ALICE], "Subject: self\n\nx\n").expect(0, &env);
    assert_eq!(env.messages(ALICE).len(), 1, "{}", env.dump());
    assert_eq!(env.messages(BOB).len(), 2);
    // A loop with no real user at its end bounces, never vanishes.
    env.send(&["loop1"], "Subject: loop\n\nx\n").expect(0, &env);
    let root = env.messages("root");
    assert_eq!(root.len(), 1, "{}", env.dump());
    assert!(root[0].contains("loop1: unknown user"), "{}", root[0]);
    // Catch-all: top-level names without an alias, users included (dma).
    env.set_aliases(&format!("*: {CAROL}\n"));
    env.send(&["nosuchuser", BOB], "Subject: catch\n\nx\n")
        .expect(0, &env);
    assert_eq!(
        env.messages(CAROL).len(),
        2,
        "one copy per message: {}",
        env.dump()
    );
    assert_eq!(env.messages(BOB).len(), 2);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn unknown_user_bounces_with_rfc3464_report() {
    if !need_root("unknown_user_bounce") {
        return;
    }
    let env = Env::new("");
    let msg = "Subject: to nobody\nMessage-ID: <orig@x>\n\nsecret body\n";
    env.send_as(ALICE, &["-odq", "nosuchuser", BOB], msg)
        .expect(0, &env);
    env.flush().expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1);
    let bounces = env.messages(ALICE);
    assert_eq!(bounces.len(), 1, "{}", env.dump());
    let b = &bounces[0];
    assert!(b.starts_with("From MAILER-DAEMON "), "{b}");
    let raw = b.split_once('\n').unwrap().1;
    let parsed = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Mail delivery failed"));
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(parsed.parts.len(), 4, "{b}");
    let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
    assert!(
        status.contains(&format!("Reporting-MTA: dns; {HOST}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("Final-Recipient: rfc822; nosuchuser@{HOST}")),
        "{status}"
    );
    assert!(
        status.contains("Action: failed\nStatus: 5.1.1\nDiagnostic-Code: "),
        "{status}"
    );
    let headers = String::from_utf8_lossy(parsed.parts[3].contents()).into_owned();
    assert!(
        headers.contains("Message-ID: <orig@x>") && !headers.contains("secret body"),
        "{headers}"
    );
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn fullbounce_carries_the_whole_message() {
    if !need_root("fullbounce") {
        return;
    }
    let env = Env::new("FULLBOUNCE\n");
    env.send(&["nosuchuser"], "Subject: s\n\nsecret body\n")
        .expect(0, &env);
    let b = &env.messages("root")[0];
    assert!(
        b.contains("Content-Type: message/rfc822") && b.contains("secret body"),
        "{b}"
    );
}

#[test]
fn failed_bounce_goes_to_postmaster_once_or_is_dropped() {
    if !need_root("double_bounce") {
        return;
    }
    let env = Env::new("");
    // The sender is a local name that does not exist: its bounce fails too.
    env.send(&["-f", "ghost", "nosuchuser"], "Subject: s\n\nx\n")
        .expect(0, &env);
    assert!(
        env.queue_ids().is_empty(),
        "dropped, not retried forever: {}",
        env.dump()
    );
    env.set_aliases(&format!("postmaster: {CAROL}\n"));
    env.send(&["-f", "ghost", "nosuchuser"], "Subject: s\n\nx\n")
        .expect(0, &env);
    let c = env.messages(CAROL);
    assert_eq!(c.len(), 1, "{}", env.dump());
    assert!(c[0].contains("Subject: Undeliverable bounce"), "{}", c[0]);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn mailq_shows_state_and_q_retries_and_expiry_bounces() {
    if !need_root("mailq_q_expiry") {
        return;
    }
    let env = Env::new("QUEUE_LIFETIME 2s\nRETRY_MIN 1h\nRETRY_MAX 2h\n");
    assert_eq!(env.mailq().stdout(), "Mail queue is empty\n");
    // Bob's mailbox is a directory: every attempt defers.
    std::fs::create_dir(env.mbox_path(BOB)).unwrap();
    env.send(&["-f", CAROL, BOB], "Subject: s\n\nx\n")
        .expect(0, &env);
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    let q = env.mailq();
    q.expect(0, &env);
    let out = q.stdout();
    assert!(out.starts_with(&format!("ID\t: {}\nFrom\t: {CAROL}@{HOST}\nTo\t: {BOB}\nStatus\t: deferred, 1 attempt, next try ", ids[0])), "{out}");
    // A due-only run leaves it alone: its next try is an hour away.
    let mut c = env.cmd("dma");
    c.arg("-q5m");
    env.run(c, b"", None).expect(0, &env);
    assert!(env.mailq().stdout().contains("deferred, 1 attempt,"));
    // -q tries it now.
    env.flush().expect(0, &env);
    assert!(
        env.mailq().stdout().contains("deferred, 2 attempts,"),
        "{}",
        env.mailq().stdout()
    );
    // After QUEUE_LIFETIME, age alone is not enough (the clock may have
    // been stepped): with 2 failed attempts it waits for its next try.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut c = env.cmd("dma");
    c.arg("-q5m");
    env.run(c, b"", None).expect(0, &env);
    assert!(env.mailq().stdout().contains("deferred, 2 attempts,"));
    // The third failed attempt bounces it (4.4.7) to the sender.
    env.flush().expect(0, &env);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    let b = env.messages(CAROL);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("Status: 4.4.7") && b[0].contains("Action: failed"),
        "{}",
        b[0]
    );
}

#[test]
fn symlinked_mailbox_is_refused_and_target_untouched() {
    if !need_root("symlinked_mbox") {
        return;
    }
    let env = Env::new("");
    let target = env.dir.path().join("target");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, env.mbox_path(BOB)).unwrap();
    env.send(&[BOB], MSG).expect(0, &env);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let q = env.mailq().stdout();
    assert!(q.contains("symbolic link"), "{q}");
}

#[test]
fn remote_recipients_stay_queued() {
    if !need_root("remote_queued") {
        return;
    }
    let env = Env::new("");
    env.send(&["someone@remote.example", BOB], MSG)
        .expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1);
    let q = env.mailq().stdout();
    assert!(
        q.contains("To\t: someone@remote.example\nStatus\t: deferred"),
        "{q}"
    );
}

#[test]
fn bv_shows_the_expansion_tree() {
    if !need_root("bv") {
        return;
    }
    let env = Env::new("");
    env.set_aliases(&format!("team: {BOB}, far@remote.example\n"));
    let mut c = env.cmd("sendmail");
    c.args(["-bv", "team", "nosuchuser"]);
    let r = env.run(c, b"", None);
    r.expect(67, &env);
    let out = r.stdout();
    let bob = user(BOB);
    assert!(
        out.contains(&format!(
            "team: alias in {} -> {BOB}, far@remote.example\n",
            env.aliases.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  {BOB}: mailbox {} (user {BOB}, uid {})\n",
            env.mbox_path(BOB).display(),
            bob.uid
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "  far@remote.example: remote, to the MX hosts of remote.example (SMTP, port 25)\n"
        ),
        "{out}"
    );
    assert!(out.contains("nosuchuser: undeliverable: 5.1.1"), "{out}");
    assert!(env.queue_ids().is_empty() && !env.mbox_path(BOB).exists());
}

#[test]
fn mailx_sends_through_our_sendmail() {
    if !need_root("mailx") {
        return;
    }
    let env = Env::new("");
    // bsd-mailx runs `sendmail` from its `sendmail` variable; a wrapper adds
    // our private config, as a distribution would not need to.
    let wrapper = env.dir.path().join("sendmail-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -C {} -odi \"$@\"\n",
            bin().display(),
            env.conf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rc = env.dir.path().join("mailrc");
    std::fs::write(&rc, format!("set sendmail={}\n", wrapper.display())).unwrap();
    let mut c = std::process::Command::new("mailx");
    c.env("MAILRC", &rc).args(["-s", "from mailx", BOB]);
    let r = env.run(c, b"hello from mailx\n", Some(ALICE));
    r.expect(0, &env);
    // mailx may return before its sendmail child is done; Alice's own run
    // cannot write Bob's mailbox, so wait for the queue and run it as root.
    let start = std::time::Instant::now();
    while !env.mailq().stdout().contains("Status\t: deferred") && start.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    env.flush().expect(0, &env);
    let m = env.messages(BOB);
    assert_eq!(m.len(), 1, "{}\n{}", r.show(), env.dump());
    assert!(
        m[0].contains("Subject: from mailx\n") && m[0].contains("\nhello from mailx\n"),
        "{}",
        m[0]
    );
    assert!(
        m[0].starts_with(&format!("From {ALICE}@{HOST} ")),
        "{}",
        m[0]
    );
}

#[test]
fn failed_mailbox_write_is_cut_back_and_deferred() {
    if !need_root("mbox_truncate") {
        return;
    }
    let env = Env::new("");
    env.send(&[BOB], "Subject: first\n\nsmall\n")
        .expect(0, &env);
    let before = std::fs::read(env.mbox_path(BOB)).unwrap();
    // A file size limit a little above the current mailbox: the big message
    // cannot fit, the write fails half way (EFBIG) and must be undone.
    let big = format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(20_000));
    env.send(&["-odq", BOB], &big).expect(0, &env);
    let mut c = std::process::Command::new("prlimit");
    c.arg(format!("--fsize={}", before.len() + 4096))
        .arg("--")
        .arg(bin())
        .arg("-C")
        .arg(&env.conf)
        .arg("-q");
    env.run(c, b"", None).expect(0, &env);
    assert_eq!(
        std::fs::read(env.mbox_path(BOB)).unwrap(),
        before,
        "{}",
        env.dump()
    );
    let q = env.mailq().stdout();
    assert!(
        q.contains("Status\t: deferred") && q.contains("4.2.2"),
        "{q}"
    );
    // Without the limit the retry succeeds, whole.
    env.flush().expect(0, &env);
    let m = env.messages(BOB);
    assert_eq!(m.len(), 2);
    assert!(m[1].ends_with(&format!("{}\n", "0123456789abcdef\n".repeat(20_000))));
}

#[test]
fn concurrent_queue_runs_deliver_each_message_once() {
    if !need_root("concurrent_runs") {
        return;
    }
    let env = Env::new("");
    for i in 0..30 {
        env.send(
            &["-odq", BOB, CAROL],
            &format!("Subject: m{i}\n\nbody {i}\n"),
        )
        .expect(0, &env);
    }
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let mut c = env.cmd("dma");
            c.arg("-q")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    for mut r in runs {
        assert!(r.wait().unwrap().success());
    }
    for u in [BOB, CAROL] {
        let m = env.messages(u);
        assert_eq!(m.len(), 30, "{u}: {}", env.dump());
        for i in 0..30 {
            assert_eq!(
                m.iter()
                    .filter(|x| x.contains(&format!("Subject: m{i}\n")))
                    .count(),
                1,
                "m{i} for {u}"
            );
        }
    }
    assert!(env.queue_ids().is_empty());
}

/// sendmail's queue selection: `-qR`, `-qS`, `-qI` (and `-q!X`) run only
/// the matching messages; `-q 5m` (a word of its own) is `-q5m`.
#[test]
fn queue_runs_select_by_recipient_sender_and_id() {
    if !need_root("queue_select") {
        return;
    }
    let env = Env::new("");
    let q = |args: &[&str]| {
        let mut c = env.cmd("dma");
        c.args(args);
        env.run(c, b"", None).expect(0, &env);
    };
    env.send(&["-odq", "-f", "root", BOB], "Subject: 1\n\none\n")
        .expect(0, &env);
    env.send(
        &["-odq", "-f", "carol@else.example", ALICE],
        "Subject: 2\n\ntwo\n",
    )
    .expect(0, &env);
    env.send(&["-odq", "-f", "root", ALICE], "Subject: 3\n\nthree\n")
        .expect(0, &env);
    assert_eq!(env.queue_ids().len(), 3, "{}", env.dump());

    // Not due yet (never tried: due), but selected by nothing: untouched.
    q(&["-qRnobody-here"]);
    assert_eq!(env.queue_ids().len(), 3, "{}", env.dump());
    // By recipient, without regard to case.
    q(&[&format!("-qR{}", BOB.to_uppercase())]);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    assert!(env.messages(ALICE).is_empty(), "{}", env.dump());
    // By sender, negated: everything not from carol.
    q(&["-q!SCAROL@"]);
    let alice = env.messages(ALICE);
    assert_eq!(alice.len(), 1, "{}", env.dump());
    assert!(alice[0].contains("\nthree\n"), "{}", alice[0]);
    // By id; then `-q 5m` as two words runs (due) what is left.
    let id = env.queue_ids().pop().expect("carol's message is left");
    q(&["-qInot-an-id", &format!("-qI{}", &id[4..10])]);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert_eq!(env.messages(ALICE).len(), 2, "{}", env.dump());

    env.send(&["-odq", BOB], "Subject: 4\n\nfour\n")
        .expect(0, &env);
    q(&["-q", "5m"]);
    assert_eq!(env.messages(BOB).len(), 2, "{}", env.dump());

    // A selection without a substring, or of an unknown kind, is refused.
    for bad in ["-qR", "-qX5", "-q!"] {
        let mut c = env.cmd("dma");
        c.arg(bad);
        let r = env.run(c, b"", None);
        assert_eq!(r.code(), 64, "{bad}: {}", r.show());
        assert!(r.stderr().contains("invalid -q"), "{bad}: {}", r.show());
    }
}
