//! Remote delivery against a real exim smarthost (Debian's
//! exim4-daemon-light, unpacked by scripts/exim-setup.sh).

#[path = "support/exim.rs"]
mod exim;
mod support;

use exim::{Exim, EximOptions, need_exim};
use support::*;

const MSG: &str = "Subject: via exim\n\n.leading dot\nbody\n";

fn auth_file(env: &Env, line: &str) -> std::path::PathBuf {
    let p = env.dir.path().join("auth.conf");
    std::fs::write(&p, line).unwrap();
    p
}

#[test]
fn one_transaction_with_per_recipient_outcomes_and_a_later_retry() {
    if !need_exim("exim_outcomes") {
        return;
    }
    let exim = Exim::start(EximOptions::default());
    exim.set_defer(true);
    let env = Env::new(&format!("SMARTHOST 127.0.0.1\nPORT {}\n", exim.port()));
    env.send(
        &[
            "-f",
            "root",
            "ok1@example.org",
            "reject1@example.org",
            "defer1@example.org",
            "ok2@other.org",
        ],
        MSG,
    )
    .expect(0, &env);
    let m = exim.messages();
    assert_eq!(m.len(), 1, "{}", exim.log());
    assert_eq!(m[0].rcpts, ["ok1@example.org", "ok2@other.org"]);
    assert_eq!(m[0].sender, "root@test.example");
    assert!(
        m[0].data.contains("\n.leading dot\nbody\n"),
        "{}",
        m[0].data
    );
    // Exim offers CHUNKING: the message went as BDAT ("K" on exim's "<="
    // line), and arrived unstuffed and whole all the same.
    assert!(
        exim.log()
            .lines()
            .any(|l| l.contains(" <= root@test.example ") && l.contains(" P=esmtp K ")),
        "{}",
        exim.log()
    );
    // One session: one connection in exim's log.
    assert_eq!(
        exim.log().matches("SMTP connection from").count(),
        1,
        "{}",
        exim.log()
    );
    // The rejected one is bounced with exim's reply; the deferred one waits.
    let b = env.messages("root");
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("Final-Recipient: rfc822; reject1@example.org"),
        "{}",
        b[0]
    );
    assert!(
        b[0].contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"),
        "{}",
        b[0]
    );
    let q = env.mailq().stdout();
    assert!(
        q.contains("To\t: defer1@example.org\nStatus\t: deferred, 1 attempt"),
        "{q}"
    );
    assert!(q.contains("451 4.3.0"), "{q}");
    // Once exim accepts it, a queue run delivers the deferred one, alone.
    exim.set_defer(false);
    env.flush().expect(0, &env);
    let m = exim.messages();
    assert_eq!(m.len(), 2, "{}", exim.log());
    assert_eq!(m[1].rcpts, ["defer1@example.org"]);
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
}

#[test]
fn starttls_with_each_sasl_mechanism() {
    if !need_exim("exim_auth") {
        return;
    }
    for (mech, logged) in [
        ("PLAIN", "A=PLAIN:"),
        ("LOGIN", "A=LOGIN:"),
        ("CRAM-MD5", "A=CRAM_MD5:"),
    ] {
        let exim = Exim::start(EximOptions {
            users: vec![("user".into(), "s3cret pass".into())],
            tls: true,
            mechanisms: vec![mech.into()],
            ..EximOptions::default()
        });
        let env = Env::new("");
        let auth = auth_file(&env, "user|127.0.0.1:s3cret pass\n");
        env.write_conf(&format!(
            "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nSTARTTLS\nCAFILE {}\nAUTHPATH {}\n",
            exim.port(),
            exim.ca_path().display(),
            auth.display()
        ));
        env.send(&["-f", "s@example.net", "ok@example.org"], MSG)
            .expect(0, &env);
        assert_eq!(
            exim.messages().len(),
            1,
            "{mech}: {}\n{}",
            env.mailq().stdout(),
            exim.log()
        );
        let log = exim.log();
        assert!(
            log.contains(logged) && log.contains("X=TLS"),
            "{mech}: {log}"
        );
        assert!(env.queue_ids().is_empty());
    }
}

#[test]
fn implicit_tls_and_a_wrong_password() {
    if !need_exim("exim_tls") {
        return;
    }
    let exim = Exim::start(EximOptions {
        users: vec![("user".into(), "right".into())],
        tls: true,
        mechanisms: vec![],
        ..EximOptions::default()
    });
    let env = Env::new("");
    let auth = auth_file(&env, "user|127.0.0.1:wrong\n");
    env.write_conf(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSECURETRANSFER\nCAFILE {}\nAUTHPATH {}\n",
        exim.tls_port(),
        exim.ca_path().display(),
        auth.display()
    ));
    env.send(&["-f", "s@example.net", "ok@example.org"], MSG)
        .expect(0, &env);
    // 535: deferred (a password problem never bounces mail), said clearly.
    assert!(exim.messages().is_empty());
    let q = env.mailq().stdout();
    assert!(
        q.contains("deferred") && q.contains("authentication failed") && q.contains("535"),
        "{q}"
    );
    // With the right password the queue run delivers it over implicit TLS.
    std::fs::write(&auth, "user|127.0.0.1:right\n").unwrap();
    env.flush().expect(0, &env);
    assert_eq!(exim.messages().len(), 1, "{}", exim.log());
    assert!(exim.log().contains("X=TLS"));
}

/// A cron job's mail (Debian cron: `sendmail -FCronDaemon -i -B8BITMIME
/// -oem USER`, headers with bare local names) reaches the smarthost with
/// those names qualified with our mail name, not left for exim to qualify
/// with its own; the comment is kept byte for byte.
#[test]
fn a_cron_message_reaches_the_smarthost_with_qualified_headers() {
    if !need_exim("exim_qualified_headers") {
        return;
    }
    let exim = Exim::start(EximOptions::default());
    let env = Env::new(&format!("SMARTHOST 127.0.0.1\nPORT {}\n", exim.port()));
    let cron = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> /usr/bin/backup\n\
                MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\
                X-Cron-Env: <MAILTO=ops@example.org>\n\nbackup done\n";
    env.send(
        &[
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "ops@example.org",
        ],
        cron,
    )
    .expect(0, &env);
    let m = exim.messages();
    assert_eq!(m.len(), 1, "{}", exim.log());
    let data = &m[0].data;
    assert!(
        data.contains(
            "\nFrom: root@test.example (Cron Daemon)\nTo: root@test.example\n\
             Subject: Cron <root@h> /usr/bin/backup\n"
        ),
        "{data}"
    );
    assert!(
        data.contains("\nX-Cron-Env: <MAILTO=ops@example.org>\n"),
        "{data}"
    );
    assert!(data.ends_with("\n\nbackup done\n"), "{data}");
}

/// The retry delay follows the message's age, not the count of attempts:
/// three `dma -q` run by hand within seconds leave the next try where one
/// would (RETRY_MIN, 5 minutes, give or take the 20 % jitter), instead of
/// doubling it each time.
#[test]
fn forced_runs_do_not_push_the_next_retry_away() {
    if !need_exim("exim_backoff_by_age") {
        return;
    }
    let exim = Exim::start(EximOptions::default());
    exim.set_defer(true);
    let env = Env::new(&format!("SMARTHOST 127.0.0.1\nPORT {}\n", exim.port()));
    env.send(&["-odq", "defer1@example.org"], MSG)
        .expect(0, &env);
    let id = env.queue_ids().pop().expect("queued");
    for _ in 0..3 {
        env.flush().expect(0, &env);
    }
    let envelope = std::fs::read_to_string(env.spool.join(format!("{id}.env"))).unwrap();
    let field = |name: &str| -> i64 {
        envelope
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {envelope}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(field("attempts "), 3, "{envelope}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let wait = field("next-try ") - now;
    assert!(
        (230..=362).contains(&wait),
        "next try in {wait}s:\n{envelope}"
    );
}
