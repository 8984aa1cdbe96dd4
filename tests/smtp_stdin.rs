//! `sendmail -bs` driven by a real client: Python's smtplib speaking to the
//! binary over a pipe (tests/bs_client.py), as alpine and PHP mailers do.
//! What the client is told, and what lands in the queue and the mailboxes.

mod support;

use std::process::Command;

use support::*;

/// Runs `bs_client.py SCENARIO` against `sendmail -C conf -bs ARGS`, as
/// `as_user` (root when `None`); the client's lines.
fn client(env: &Env, scenario: &str, args: &[&str], as_user: Option<&str>) -> (Vec<String>, Run) {
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut c = Command::new(python);
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bs_client.py"))
        .arg(scenario)
        .arg(env.dir.path().join("sendmail"))
        .arg("-C")
        .arg(&env.conf)
        .arg("-bs")
        .args(args)
        .env_remove("EMAIL");
    let run = env.run(c, b"", as_user);
    assert_eq!(
        run.code(),
        0,
        "client failed\n{}\n{}",
        run.show(),
        env.dump()
    );
    let lines = run.stdout().lines().map(str::to_string).collect();
    (lines, run)
}

/// Asserts the client's lines, with `ID` standing for any queue id.
fn expect_lines(got: &[String], want: &[&str], run: &Run, env: &Env) {
    let norm: Vec<String> = got
        .iter()
        .map(|l| match l.find("queued as ") {
            Some(i) => format!("{}queued as ID", &l[..i]),
            None => l.clone(),
        })
        .collect();
    assert_eq!(norm, want, "\n{}\n{}", run.show(), env.dump());
}

const EHLO: &str = "250 test.example greets client.example|PIPELINING|SIZE 2048|8BITMIME|\
                    CHUNKING|SMTPUTF8|ENHANCEDSTATUSCODES";

/// Everything in the spool directory.
fn spool_files(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&env.spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The body of a message (after the first empty line).
fn body(msg: &str) -> &str {
    msg.split_once("\n\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn pipelined_messages_in_one_session_reach_the_mailboxes() {
    if !need_root("pipelined_messages_in_one_session_reach_the_mailboxes") {
        return;
    }
    let _homes = Homes::take();
    let env = Env::new("MESSAGE_SIZE_LIMIT 2k\n");
    // -odb, the default, as alpine asks.
    let (lines, run) = client(&env, "two_and_more", &["-odb", "-oem"], None);
    expect_lines(
        &lines,
        &[
            "220 test.example ESMTP dma-rs",
            EHLO,
            "250 2.1.0 sender <sender@example.org> ok",
            "250 2.1.5 recipient <dmt-alice> ok",
            "250 2.1.5 recipient <dmt-bob@test.example> ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as ID",
            "250 2.1.0 sender <> ok",
            "250 2.1.5 recipient <dmt-bob> ok",
            "250 2.0.0 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as ID",
            "REFUSED {}",
            "250 2.0.0 Ok",
            "250 2.1.0 sender <chunks@example.org> ok",
            "250 2.1.5 recipient <dmt-alice> ok",
            "250 2.0.0 25 octets received",
            "250 2.0.0 Ok: queued as ID",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            "250 2.0.0 Ok",
            "221 2.0.0 test.example closing",
            "EXIT 0",
        ],
        &run,
        &env,
    );
    let alice = env.wait_for(ALICE, 3);
    let bob = env.wait_for(BOB, 2);
    assert_eq!((alice.len(), bob.len()), (3, 2), "{}", env.dump());
    // Each message once, whatever order the runners took them in.
    let find = |msgs: &[String], subject: &str| -> String {
        let m: Vec<&String> = msgs
            .iter()
            .filter(|m| m.contains(&format!("\nSubject: {subject}\n")))
            .collect();
        assert_eq!(m.len(), 1, "{subject}: {msgs:?}");
        m[0].clone()
    };
    let first = find(&alice, "first");
    assert_eq!(body(&first), body(&find(&bob, "first")));
    // Dot-stuffing undone, CRLF stored as LF, a lone dot inside kept.
    assert_eq!(
        body(&first),
        "line one\n.leading dot\n..two dots\n.\nend\n\n",
        "{first}"
    );
    assert!(first.starts_with("From sender@example.org "), "{first}");
    // Our Received line and added headers, as for a command-line submission.
    let rest = strip_trace(&first);
    assert!(rest.starts_with("Subject: first\nDate: "), "{rest}");
    assert!(rest.contains("\nMessage-ID: <") && rest.contains("\nFrom: <sender@example.org>\n"));
    assert!(
        first.contains("Received: from root (uid 0)\n\t(envelope-from sender@example.org)\n"),
        "{first}"
    );
    let second = find(&bob, "second");
    assert_eq!(body(&second), "from the null sender\n\n");
    assert!(
        second.contains("Received: from MAILER-DAEMON\n"),
        "{second}"
    );
    assert_eq!(body(&find(&alice, "third")), "via sendmail()\n\n");
    assert!(find(&alice, "third").starts_with("From third@example.org "));
    assert_eq!(body(&find(&alice, "fourth")), "in two chunks\n\n");
}

#[test]
fn refusals_are_replies_and_the_session_goes_on() {
    let env = Env::new("MESSAGE_SIZE_LIMIT 2k\n");
    let (lines, run) = client(&env, "errors", &["-odq"], None);
    expect_lines(
        &lines,
        &[
            "220 test.example ESMTP dma-rs",
            EHLO,
            "552 5.3.4 message size 5000 exceeds the limit of 2048 (MESSAGE_SIZE_LIMIT)",
            "250 2.1.0 sender <big@example.org> ok",
            "250 2.1.5 recipient <dmt-alice> ok",
            "552 5.3.4 message too large: over the limit of 2K (MESSAGE_SIZE_LIMIT)",
            "503 5.5.1 MAIL first",
            "501 5.1.7 bad sender address syntax: address starts with '-'",
            "250 2.1.0 sender <sender@example.org> ok",
            "501 5.1.3 bad recipient address syntax: malformed address",
            "501 5.1.3 bad recipient address syntax: empty domain",
            "554 5.5.1 no valid recipients",
            "250 2.0.0 Ok",
            "250 2.1.0 sender <many@example.org> ok",
            "250 x1000 2.1.5 recipient <user999@remote.example> ok",
            "452 x1 4.5.3 too many recipients (at most 1000)",
            "250 2.0.0 Ok: queued as ID",
            "221 2.0.0 test.example closing",
            "EXIT 0",
        ],
        &run,
        &env,
    );
    // Only the last message is queued, with its 1000 recipients.
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    assert_eq!(
        spool_files(&env),
        [format!("{}.env", ids[0]), format!("{}.msg", ids[0])]
    );
    let envelope = std::fs::read_to_string(env.spool.join(format!("{}.env", ids[0]))).unwrap();
    assert_eq!(
        envelope.lines().filter(|l| l.starts_with("rcpt ")).count(),
        1000
    );
    assert!(
        envelope.contains("\nsender many@example.org\n"),
        "{envelope}"
    );
    assert!(envelope.contains("\nrcpt user0@remote.example\n"));
    assert!(!envelope.contains("user1000@"));
}

#[test]
fn end_of_input_in_a_message_queues_nothing() {
    let env = Env::new("MESSAGE_SIZE_LIMIT 2k\n");
    let closing = "AFTER 421 4.4.2 test.example end of input in the middle of a message; closing|";
    for (scenario, want) in [
        (
            "eof_in_data",
            &[
                "220 test.example ESMTP dma-rs",
                EHLO,
                "250 2.1.0 sender <sender@example.org> ok",
                "250 2.1.5 recipient <dmt-alice> ok",
                "354 End data with <CR><LF>.<CR><LF>",
                closing,
                "EXIT 74",
            ][..],
        ),
        (
            "eof_in_bdat",
            &[
                "220 test.example ESMTP dma-rs",
                EHLO,
                "250 2.1.0 sender <s@example.org> ok",
                "250 2.1.5 recipient <dmt-alice> ok",
                "250 2.0.0 4 octets received",
                closing,
                "EXIT 74",
            ][..],
        ),
    ] {
        let (lines, run) = client(&env, scenario, &["-odq"], None);
        expect_lines(&lines, want, &run, &env);
        assert!(
            run.stderr().contains(
                "sendmail: -bs: end of input in the middle of a message: the message was not queued"
            ),
            "{}",
            run.show()
        );
        assert!(spool_files(&env).is_empty(), "{scenario}: {}", env.dump());
    }
}

#[test]
fn the_caller_is_the_submitter() {
    if !need_root("the_caller_is_the_submitter") {
        return;
    }
    let env = Env::new("");
    let (lines, run) = client(&env, "one", &["-odq"], Some(ALICE));
    assert_eq!(
        lines[lines.len() - 3..],
        ["REFUSED {}", "221 2.0.0 test.example closing", "EXIT 0"],
        "{}",
        run.show()
    );
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    let envelope = std::fs::read_to_string(env.spool.join(format!("{}.env", ids[0]))).unwrap();
    let uid = user(ALICE).uid;
    // MAIL FROM is the envelope sender, as -f would be; the submitter is
    // who ran the command.
    assert!(
        envelope.contains(&format!(
            "\nsender someone@example.org\nuser {ALICE}\nuid {uid}\n"
        )),
        "{envelope}"
    );
    let msg = std::fs::read_to_string(env.spool.join(format!("{}.msg", ids[0]))).unwrap();
    assert!(
        msg.starts_with(&format!(
            "Received: from {ALICE} (uid {uid})\n\t(envelope-from someone@example.org)\n"
        )),
        "{msg}"
    );
}
