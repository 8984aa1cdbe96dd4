//! Remote delivery against our scripted SMTP server: the faults a real
//! server will not produce on demand, and proof of pipelining.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use smtpd::{Behavior, FakeSmtp, Trickle};
use support::*;

fn by_local_part() -> Box<dyn Fn(&str) -> String + Send + Sync> {
    Box::new(|a: &str| {
        if a.starts_with("reject") {
            "550 5.1.1 no such user".into()
        } else if a.starts_with("defer") {
            "451 4.3.0 try again later".into()
        } else {
            "250 2.1.5 ok".into()
        }
    })
}

fn env_for(fake: &FakeSmtp, extra: &str) -> Env {
    Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 2s\n{extra}",
        fake.port()
    ))
}

const MSG: &str = "Subject: remote\n\n.leading dot\nbody\n";

#[test]
fn one_pipelined_transaction_with_per_recipient_outcomes() {
    let fake = FakeSmtp::start(Behavior {
        rcpt: by_local_part(),
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    env.send(
        &[
            "-f",
            "root",
            "ok1@remote.example",
            "reject1@remote.example",
            "defer1@remote.example",
            "ok2@other.example",
        ],
        MSG,
    )
    .expect(0, &env);
    // One connection, one transaction, all commands of the group in one read.
    assert_eq!(fake.connections(), 1);
    let cmds = fake.commands();
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("MAIL FROM")).count(),
        1,
        "{cmds:?}"
    );
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("RCPT TO")).count(),
        4,
        "{cmds:?}"
    );
    let group = fake
        .reads()
        .into_iter()
        .find(|r| r.contains("MAIL FROM"))
        .unwrap();
    assert!(
        group.contains("RCPT TO:<ok2@other.example>\r\nDATA\r\n"),
        "not one group: {group:?}"
    );
    let m = fake.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rcpts, ["ok1@remote.example", "ok2@other.example"]);
    assert!(
        m[0].data.contains("\r\n..leading dot\r\nbody\r\n"),
        "{}",
        m[0].data
    );
    // The deferred one waits, the rejected one was bounced (locally).
    let q = env.mailq().stdout();
    assert!(
        q.contains("To\t: defer1@remote.example\nStatus\t: deferred, 1 attempt"),
        "{q}"
    );
    assert!(
        q.contains("451 4.3.0 try again later (in reply to RCPT TO)"),
        "{q}"
    );
    assert!(q.contains("To\t: reject1@remote.example\nStatus\t: failed, bounced: 5.1.1 127.0.0.1 [127.0.0.1] said 550 5.1.1 no such user (in reply to RCPT TO)"), "{q}");
    // The delivered ones are no longer listed as if queued (issue 10, 8).
    assert!(
        !q.contains("ok1@remote.example") && q.contains("Done\t: 2 recipients delivered\n"),
        "{q}"
    );
}

#[test]
fn bounce_names_remote_mta_and_reply() {
    let fake = FakeSmtp::start(Behavior {
        rcpt: by_local_part(),
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    env.send(&["-f", BOB, "reject9@remote.example"], MSG)
        .expect(0, &env);
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let b = env.messages(BOB);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(b[0].contains("Remote-MTA: dns; 127.0.0.1\n"), "{}", b[0]);
    assert!(
        b[0].contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\n"),
        "{}",
        b[0]
    );
    assert!(b[0].contains("Status: 5.1.1\n"), "{}", b[0]);
    assert!(b[0].contains("(in reply to RCPT TO)"), "{}", b[0]);
}

#[test]
fn no_accepted_recipient_sends_no_data() {
    let fake = FakeSmtp::start(Behavior {
        rcpt: by_local_part(),
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    env.send(
        &[
            "-f",
            "s@example.org",
            "defer1@remote.example",
            "defer2@remote.example",
        ],
        MSG,
    )
    .expect(0, &env);
    assert!(fake.messages().is_empty());
    assert!(
        fake.commands().contains(&"RSET".to_string()),
        "{:?}",
        fake.commands()
    );
    assert_eq!(env.queue_ids().len(), 1);
}

#[test]
fn a_connection_lost_after_data_defers() {
    let fake = FakeSmtp::start(Behavior {
        drop_after_data: true,
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains("Status\t: deferred") && q.contains("end of data"),
        "{q}"
    );
}

#[test]
fn a_silent_server_times_out_and_defers() {
    let fake = FakeSmtp::start(Behavior {
        stall_on: Some("RCPT".into()),
        ehlo: vec![],
        ..Behavior::default()
    });
    let env = env_for(&fake, "SMTP_TIMEOUT 1s\n");
    let start = std::time::Instant::now();
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert!(start.elapsed().as_secs() < 10);
    let q = env.mailq().stdout();
    assert!(q.contains("deferred") && q.contains("timeout"), "{q}");
}

/// A server that trickles `what` (one byte every 500 ms, or 200 ms in a
/// TLS handshake, for over a minute: no per-read timeout trips) is cut off
/// at SMTP_TIMEOUT 3s, however long it would go on: `dma -q` ends within
/// the deadline plus slack, exits 0, and the message stays queued with a
/// reason that names the timeout and `where_` it happened.
fn a_trickle_is_cut_off_at_the_deadline(fake: Behavior, msg: &str, extra: &str, where_: &str) {
    let fake = FakeSmtp::start(fake);
    let env = env_for(&fake, &format!("SMTP_TIMEOUT 3s\n{extra}"));
    let mut queue = env.cmd("sendmail");
    queue.args(["-odq", "-f", "s@example.org", "a@remote.example"]);
    env.run(queue, msg.as_bytes(), None).expect(0, &env);
    let start = std::time::Instant::now();
    let run = env.flush();
    let took = start.elapsed();
    run.expect(0, &env);
    assert!(
        took < std::time::Duration::from_secs(8),
        "dma -q took {took:?} against a trickling server\n{}",
        run.show()
    );
    assert_eq!(fake.connections(), 1);
    assert!(fake.messages().is_empty());
    assert_eq!(env.queue_ids().len(), 1, "{}", env.dump());
    let q = env.mailq().stdout();
    assert!(
        q.contains("Status\t: deferred") && q.contains("timeout after 3s") && q.contains(where_),
        "{q}"
    );
}

#[test]
fn a_trickled_greeting_is_cut_off_at_the_deadline() {
    let b = Behavior {
        trickle: Some(Trickle::Greeting),
        ..Behavior::default()
    };
    a_trickle_is_cut_off_at_the_deadline(b, MSG, "", "(after greeting)");
}

#[test]
fn a_trickled_rcpt_reply_is_cut_off_at_the_deadline() {
    let b = Behavior {
        trickle: Some(Trickle::Rcpt),
        ..Behavior::default()
    };
    a_trickle_is_cut_off_at_the_deadline(b, MSG, "", "(after RCPT TO)");
}

#[test]
fn a_trickled_final_reply_is_cut_off_at_the_deadline() {
    let b = Behavior {
        trickle: Some(Trickle::DataReply),
        ..Behavior::default()
    };
    a_trickle_is_cut_off_at_the_deadline(b, MSG, "", "end of data");
}

#[test]
fn a_server_that_reads_the_data_slowly_is_cut_off_at_the_deadline() {
    // 2 KiB a second: each write makes progress (the old per-write timeout
    // never tripped: these 9 MB would take over an hour), but a 64 KiB
    // block takes 32 s, past its deadline. 9 MB: more than the client's
    // socket buffer can hold (Linux grows it to 4 MB), less than the fake's
    // SIZE.
    let b = Behavior {
        trickle: Some(Trickle::DataRead),
        ..Behavior::default()
    };
    let big = format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(1 << 19));
    a_trickle_is_cut_off_at_the_deadline(b, &big, "", "(in reply to message data)");
}

#[test]
fn a_trickled_implicit_tls_handshake_is_cut_off_at_the_deadline() {
    let b = Behavior {
        trickle: Some(Trickle::ImplicitTls),
        ..Behavior::default()
    };
    a_trickle_is_cut_off_at_the_deadline(b, MSG, "SECURETRANSFER\nTLS_NO_VERIFY\n", "TLS with");
}

#[test]
fn a_trickled_starttls_handshake_is_cut_off_at_the_deadline() {
    let b = Behavior {
        ehlo: vec!["PIPELINING".into(), "STARTTLS".into()],
        trickle: Some(Trickle::StartTls),
        ..Behavior::default()
    };
    let extra = "SECURETRANSFER\nSTARTTLS\nTLS_NO_VERIFY\n";
    a_trickle_is_cut_off_at_the_deadline(b, MSG, extra, "TLS with");
}

#[test]
fn malformed_and_huge_replies_defer() {
    for raw in [
        "hello there\r\n".to_string(),
        format!("250-{}\r\n", "x".repeat(100)).repeat(2000),
    ] {
        let fake = FakeSmtp::start(Behavior {
            mail_reply_raw: Some(raw),
            ..Behavior::default()
        });
        let env = env_for(&fake, "");
        env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
            .expect(0, &env);
        let q = env.mailq().stdout();
        assert!(q.contains("deferred"), "{q}");
        assert!(fake.messages().is_empty());
    }
}

#[test]
fn control_bytes_in_a_greeting_reach_no_output_raw() {
    // A malformed greeting and a refusing one, each with ESC, BEL and a
    // bare CR: the stored reply, mailq and the -v log show them escaped.
    for (greeting, shown) in [
        (
            "22\x1b0 \x07evil\rgreeting",
            "22\\x1b0 \\x07evil\\rgreeting",
        ),
        ("421 \x1b[2J\x07busy\rnow", "421 \\x1b[2J\\x07busy\\rnow"),
    ] {
        let fake = FakeSmtp::start(Behavior {
            greeting: greeting.into(),
            ..Behavior::default()
        });
        let env = env_for(&fake, "");
        let run = env.send(
            &["-v", "-odi", "-f", "s@example.org", "a@remote.example"],
            MSG,
        );
        run.expect(0, &env);
        let raw = |b: &u8| matches!(b, 0x1b | 0x07 | b'\r');
        assert!(!run.stderr().bytes().any(|b| raw(&b)), "{}", run.show());
        assert!(run.stderr().contains(shown), "{}", run.show());
        let q = env.mailq().stdout();
        assert!(q.contains("deferred") && q.contains(shown), "{q}");
        assert!(!q.bytes().any(|b| raw(&b)), "{q:?}");
    }
}

#[test]
fn starttls_injection_is_refused() {
    let fake = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into(), "STARTTLS".into()],
        starttls_inject: Some("250 injected\r\n".into()),
        ..Behavior::default()
    });
    let env = env_for(&fake, "SECURETRANSFER\nSTARTTLS\n");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert!(
        !fake.commands().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        fake.commands()
    );
    let q = env.mailq().stdout();
    assert!(q.contains("deferred") && q.contains("injection"), "{q}");
}

#[test]
fn tls_required_but_not_offered_defers_unless_opportunistic() {
    let fake = FakeSmtp::start(Behavior::default());
    let env = env_for(&fake, "SECURETRANSFER\nSTARTTLS\n");
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert!(fake.messages().is_empty());
    assert!(
        !fake.commands().iter().any(|c| c == "STARTTLS"),
        "STARTTLS sent although not offered"
    );
    assert!(env.mailq().stdout().contains("does not offer STARTTLS"));
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nSTARTTLS\nOPPORTUNISTIC_TLS\n",
        fake.port()
    ));
    env.flush().expect(0, &env);
    assert_eq!(fake.messages().len(), 1);
}

#[test]
fn too_many_recipients_go_in_further_transactions() {
    let fake = FakeSmtp::start(Behavior {
        max_rcpts: Some(2),
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    let rcpts: Vec<String> = (1..=5).map(|i| format!("r{i}@remote.example")).collect();
    let mut args = vec!["-f", "s@example.org"];
    args.extend(rcpts.iter().map(String::as_str));
    env.send(&args, MSG).expect(0, &env);
    let m = fake.messages();
    assert_eq!(
        m.iter().map(|m| m.rcpts.len()).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    assert_eq!(fake.connections(), 1);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

/// EHLO keywords of a server that offers AUTH.
fn auth_ehlo() -> Vec<String> {
    vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into()]
}

/// An environment and its auth.conf, with a password for 127.0.0.1.
fn env_with_auth() -> (Env, std::path::PathBuf) {
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    std::fs::write(&auth, "user|127.0.0.1:secret\n").unwrap();
    (env, auth)
}

#[test]
fn auth_failure_defers_and_the_next_smarthost_is_used() {
    let bad = FakeSmtp::start(Behavior {
        ehlo: auth_ehlo(),
        auth_reply: "535 5.7.8 authentication failed".into(),
        ..Behavior::default()
    });
    let good = FakeSmtp::start(Behavior {
        ehlo: auth_ehlo(),
        ..Behavior::default()
    });
    let (env, auth) = env_with_auth();
    // Only one smarthost: the 535 defers, nothing bounces.
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1:{}\nAUTHPATH {}\nINSECURE\n",
        bad.port(),
        auth.display()
    ));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains("deferred") && q.contains("authentication failed"),
        "{q}"
    );
    // A good fallback after the bad one.
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1:{} 127.0.0.1:{}\nAUTHPATH {}\nINSECURE\n",
        bad.port(),
        good.port(),
        auth.display()
    ));
    env.flush().expect(0, &env);
    assert_eq!(good.messages().len(), 1);
    assert!(good.commands().iter().any(|c| c.starts_with("AUTH ")));
    assert!(env.queue_ids().is_empty());
}

#[test]
fn no_password_in_the_clear_without_insecure() {
    let fake = FakeSmtp::start(Behavior {
        ehlo: auth_ehlo(),
        ..Behavior::default()
    });
    let (env, auth) = env_with_auth();
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1:{}\nAUTHPATH {}\n",
        fake.port(),
        auth.display()
    ));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert!(
        !fake.commands().iter().any(|c| c.starts_with("AUTH")),
        "{:?}",
        fake.commands()
    );
}

#[test]
fn the_next_smarthost_is_used_when_the_first_is_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fake = FakeSmtp::start(Behavior::default());
    let env = Env::new(&format!(
        "SMARTHOST 127.0.0.1:{closed},127.0.0.1:{}\n",
        fake.port()
    ));
    env.send(&["-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    assert_eq!(fake.messages().len(), 1);
    assert!(env.queue_ids().is_empty());
}

#[test]
fn dsn_requests_are_passed_on_and_honoured() {
    let fake = FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into(), "DSN".into()],
        rcpt: by_local_part(),
        ..Behavior::default()
    });
    let env = env_for(&fake, "");
    env.send(
        &[
            "-N",
            "failure,delay",
            "-R",
            "hdrs",
            "-V",
            "env+id",
            "-f",
            "root",
            "ok@remote.example",
            "reject@remote.example",
        ],
        MSG,
    )
    .expect(0, &env);
    let cmds = fake.commands();
    assert!(
        cmds.contains(&"MAIL FROM:<root@test.example> RET=HDRS ENVID=env+2Bid".to_string()),
        "{cmds:?}"
    );
    assert!(
        cmds.contains(
            &"RCPT TO:<ok@remote.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;ok@remote.example"
                .to_string()
        ),
        "{cmds:?}"
    );
    // NOTIFY=NEVER: a failure is not bounced.
    if nix::unistd::geteuid().is_root() {
        assert_eq!(env.messages("root").len(), 1, "{}", env.dump());
        env.send(
            &["-N", "never", "-f", "root", "reject2@remote.example"],
            MSG,
        )
        .expect(0, &env);
        assert_eq!(env.messages("root").len(), 1, "{}", env.dump());
    }
    // Bad -N and -R are usage errors.
    assert_eq!(
        env.send(&["-N", "sometimes", "a@remote.example"], MSG)
            .code(),
        64
    );
    assert_eq!(
        env.send(&["-R", "most", "a@remote.example"], MSG).code(),
        64
    );
}

/// Three messages queued, then one queue run over one connection: what the
/// fake server read.
fn three_over_one_connection(fake: &FakeSmtp) -> Env {
    let env = env_for(fake, "HOP_SESSIONS 1\n");
    for i in 0..3 {
        env.send(
            &[
                "-odq",
                "-f",
                "s@example.org",
                &format!("r{i}@remote.example"),
            ],
            MSG,
        )
        .expect(0, &env);
    }
    env.flush().expect(0, &env);
    assert_eq!(fake.connections(), 1, "{:?}", fake.commands());
    assert_eq!(fake.commands().iter().filter(|c| *c == "QUIT").count(), 1);
    env
}

#[test]
fn a_queue_run_reuses_one_connection_per_host() {
    let fake = FakeSmtp::start(Behavior::default());
    let env = three_over_one_connection(&fake);
    assert_eq!(fake.messages().len(), 3);
    // A 2xx final reply ends a transaction cleanly: the next MAIL FROM
    // follows without RSET, in one group with its RCPT and DATA.
    assert_eq!(fake.commands().iter().filter(|c| *c == "RSET").count(), 0);
    let groups = fake
        .reads()
        .into_iter()
        .filter(|r| r.starts_with("MAIL FROM") && r.ends_with("DATA\r\n"))
        .count();
    assert_eq!(groups, 3, "{:?}", fake.reads());
    assert!(env.queue_ids().is_empty());
    // After a refused final reply the next transaction starts with RSET,
    // sent in one group with its MAIL FROM.
    let fake = FakeSmtp::start(Behavior {
        data_reply: "451 4.3.0 try again later".into(),
        ..Behavior::default()
    });
    let env = three_over_one_connection(&fake);
    assert_eq!(fake.commands().iter().filter(|c| *c == "RSET").count(), 2);
    let group = fake
        .reads()
        .into_iter()
        .filter(|r| r.starts_with("RSET\r\nMAIL FROM"))
        .count();
    assert_eq!(group, 2, "{:?}", fake.reads());
    assert_eq!(env.queue_ids().len(), 3);
}

#[test]
fn background_mail_is_left_to_the_idle_runner_and_its_connection() {
    // The first submission's runner delivers and then waits a moment with
    // its connection open; the next submissions leave their mail to it:
    // one connection, no runner of their own.
    let fake = FakeSmtp::start(Behavior::default());
    let env = env_for(&fake, "");
    for i in 0..3 {
        let rcpt = format!("r{i}@remote.example");
        let mut c = env.cmd("sendmail");
        c.args(["-f", "s@example.org", &rcpt]);
        env.run(c, MSG.as_bytes(), None).expect(0, &env);
        let start = std::time::Instant::now();
        while fake.messages().len() <= i && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(fake.messages().len(), i + 1, "{:?}", fake.commands());
    }
    assert_eq!(fake.connections(), 1, "{:?}", fake.commands());
    // No RSET needed between them, and the queue is empty.
    assert_eq!(fake.commands().iter().filter(|c| *c == "RSET").count(), 0);
    // The fake counts a message when its data ends, a moment before the
    // runner reads the reply and removes the entry.
    let start = std::time::Instant::now();
    while !env.queue_ids().is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.queue_ids().is_empty(), "{:?}", env.queue_ids());
}

#[test]
fn queue_workers_deliver_side_by_side() {
    // The first session hangs after the data; a queue run with two workers
    // (and two sessions per host) delivers the other message meanwhile,
    // long before the hung one times out (with one worker it would wait for
    // that timeout).
    let fake = FakeSmtp::start(Behavior {
        stall_after_first_data: true,
        ..Behavior::default()
    });
    let env = env_for(&fake, "SMTP_TIMEOUT 10s\nQUEUE_WORKERS 2\nHOP_SESSIONS 2\n");
    for rcpt in ["a@remote.example", "b@remote.example"] {
        env.send(&["-odq", "-f", "s@example.org", rcpt], MSG)
            .expect(0, &env);
    }
    let mut child = env.cmd("dma").arg("-q").spawn().unwrap();
    let start = std::time::Instant::now();
    while !(fake.commands().iter().any(|c| c == "<stalled after data>")
        && fake.messages().len() == 1)
        && start.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let waited = start.elapsed();
    assert_eq!(fake.messages().len(), 1, "{:?}", fake.commands());
    assert!(
        waited.as_secs() < 5,
        "one message was delivered only after {waited:?}: the workers did not overlap"
    );
    assert_eq!(fake.connections(), 2);
    // The hung one times out and waits for the next run.
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
    assert_eq!(env.queue_ids().len(), 1, "{}", env.mailq().stdout());
}

#[test]
fn a_crash_before_the_final_reply_is_recorded_resends_and_says_so() {
    let fake = FakeSmtp::start(Behavior {
        stall_after_first_data: true,
        ..Behavior::default()
    });
    let env = env_for(&fake, "SMTP_TIMEOUT 60s\n");
    env.send(&["-odq", "-f", "s@example.org", "a@remote.example"], MSG)
        .expect(0, &env);
    let mut c = env.cmd("dma");
    c.arg("-q");
    let mut child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    while !fake.commands().iter().any(|c| c == "<stalled after data>")
        && start.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The crash: the runner itself (`dma -q` only waits for it).
    assert!(kill_runners(&env) > 0, "no runner found");
    child.wait().unwrap();
    // The next run sends it again: a possible duplicate, logged, never a loss.
    let mut c = env.cmd("dma");
    c.args(["-q", "-v"]);
    let r = env.run(c, b"", None);
    r.expect(0, &env);
    assert!(
        r.stderr().contains("<a@remote.example> possible duplicate"),
        "{}",
        r.show()
    );
    assert_eq!(fake.messages().len(), 1);
    assert!(env.queue_ids().is_empty());
}

#[test]
fn a_storm_of_background_submissions_is_delivered_completely() {
    let fake = FakeSmtp::start(Behavior::default());
    let env = env_for(&fake, "");
    // Background delivery (the default): runners hand messages over to each
    // other; none may be left behind in the queue.
    for i in 0..40 {
        let mut c = env.cmd("sendmail");
        c.args(["-f", "s@example.org", &format!("r{i}@remote.example")]);
        env.run(c, MSG.as_bytes(), None).expect(0, &env);
    }
    let start = std::time::Instant::now();
    while fake.messages().len() < 40 && start.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fake.messages().len(), 40, "{}", env.mailq().stdout());
    let start = std::time::Instant::now();
    while !env.queue_ids().is_empty() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
    eprintln!(
        "40 background submissions used {} connections",
        fake.connections()
    );
}
