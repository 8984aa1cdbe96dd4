//! attack14 on an installed system (`dma` set-group-id mail, `dma-local`
//! set-user-id root for group mail): an ordinary user against -Q, the
//! queue selection words, held messages, mailq --json, --check and
//! --probe. Each test asserts the safe outcome: a failure is a hole.

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use support::installed::*;
use support::*;

fn ids(inst: &Installed) -> Vec<String> {
    inst.spool_files()
        .iter()
        .filter_map(|n| n.strip_suffix(".env").map(str::to_string))
        .collect()
}

/// Queues a message as `who` without delivering it; returns its id.
fn queue(inst: &Installed, who: Option<&str>, rcpt: &str, body: &str) -> String {
    let before = ids(inst);
    let o = inst.run(who, &[&inst.path("sbin/sendmail"), "-odq", rcpt], body);
    assert!(o.status.success(), "{}", show(&o));
    let new: Vec<String> = ids(inst)
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(new.len(), 1, "{:?}", inst.spool_files());
    new[0].clone()
}

/// Bob's message, with a secret in it; alice tries every way around the
/// -Q check: -C (her own config naming the system spool, or the system
/// config itself), odd spellings of -Q, argv[0] names, a faked LOGNAME.
#[test]
fn alice_reaches_no_message_through_q() {
    if !need_root("attack14_q_argv") {
        return;
    }
    let inst = Installed::new();
    let id = queue(&inst, Some(BOB), CAROL, "Subject: s\n\nSECRET-BODY-4711\n");
    let env_path = inst.root.join(format!("spool/{id}.env"));
    let before = std::fs::read(&env_path).unwrap();
    let dma = inst.path("sbin/dma");
    // Her own config, naming the system spool.
    let mine = format!("/tmp/attack14-{}.conf", std::process::id());
    std::fs::write(
        &mine,
        format!(
            "SPOOLDIR {}\nMAILSPOOL {}\nMAILNAME {HOST}\n",
            inst.path("spool"),
            inst.path("mail")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&mine, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let scripts = [
        format!("exec '{dma}' -Qshow {id}"),
        format!("exec '{dma}' -v -Q show {id}"),
        format!("exec '{dma}' -C {mine} -Q show {id}"),
        format!("exec '{dma}' -C /etc/dma/dma.conf -Q show {id}"),
        format!("exec '{dma}' -C {mine} -Q delete ALL"),
        format!("exec '{dma}' -C {mine} -Q hold {id}"),
        format!("exec '{dma}' -C {mine} -Q flush {id}"),
        format!("LOGNAME=root USER=root exec '{dma}' -Q show {id}"),
        format!("exec -a mailq '{dma}' -Q show {id}"),
        format!("exec -a dma-local '{dma}' -Q show {id}"),
        format!("exec -a newaliases '{dma}' -Q delete ALL"),
        format!("exec -a /usr/sbin/sendmail '{dma}' -Q show {id}"),
        format!("exec '{dma}' -bp -Q show {id}"),
        format!("exec '{dma}' -q -Q delete {id}"),
        format!("exec '{dma}' -Q show {id} -C {mine}"),
        format!("exec '{dma}' -Q delete -- {id}"),
        format!("exec '{dma}' -Q show ../spool/{id}"),
    ];
    for s in &scripts {
        let o = inst.run_sh(Some(ALICE), s, "");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !out.contains("SECRET-BODY") && !err.contains("SECRET-BODY"),
            "{s}: bob's message shown to alice: {}",
            show(&o)
        );
        assert_eq!(
            std::fs::read(&env_path).ok().as_deref(),
            Some(&before[..]),
            "{s}: bob's message changed or gone: {}",
            show(&o)
        );
        assert!(
            !out.contains(&format!("{id}: ")),
            "{s}: a verb reports success to alice: {}",
            show(&o)
        );
    }
    let _ = std::fs::remove_file(&mine);
    assert_eq!(inst.mailbox(CAROL), "");
}

/// A held message is never delivered, whatever an ordinary user runs:
/// -q, -qI<id>, -q!I, -qR, -qS, or a submission of her own (a background
/// runner).
#[test]
fn alice_can_not_get_a_held_message_delivered() {
    if !need_root("attack14_held") {
        return;
    }
    let inst = Installed::new();
    let dma = inst.path("sbin/dma");
    let id = queue(&inst, Some(ALICE), BOB, "Subject: held-one\n\nx\n");
    let o = inst.run(None, &[&dma, "-Q", "hold", &id], "");
    assert!(o.status.success(), "{}", show(&o));
    let qi = format!("-qI{id}");
    let qsub = format!("-qI{}", &id[..8]);
    for argv in [
        vec![dma.as_str(), "-q"],
        vec![dma.as_str(), qi.as_str()],
        vec![dma.as_str(), qsub.as_str()],
        vec![dma.as_str(), "-q!Ixxxxxxxxxxxxxxxxx"],
        vec![dma.as_str(), "-qR", BOB],
        vec![dma.as_str(), "-qRdmt"],
        vec![dma.as_str(), "-qS", ALICE],
        vec![dma.as_str(), "-q1s"],
        vec![dma.as_str(), "-v", "-q"],
    ] {
        let o = inst.run(Some(ALICE), &argv, "");
        assert!(
            !inst.mailbox(BOB).contains("held-one"),
            "{argv:?} delivered a held message: {}",
            show(&o)
        );
    }
    // A submission of hers starts a background runner.
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), BOB],
        "Subject: other\n\ny\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !inst.mailbox(BOB).contains("held-one"),
        "a background runner delivered a held message"
    );
    assert!(ids(&inst).contains(&id), "{:?}", inst.spool_files());
}

/// Selection words reach the runner as `--select <word>` pairs: a word
/// that looks like a runner option is a pattern, nothing more.
#[test]
fn selection_words_smuggle_no_runner_arguments() {
    if !need_root("attack14_select") {
        return;
    }
    let inst = Installed::new();
    let dma = inst.path("sbin/dma");
    let id = queue(&inst, Some(BOB), CAROL, "Subject: sel\n\nx\n");
    let o = inst.run(None, &[&dma, "-Q", "hold", &id], "");
    assert!(o.status.success(), "{}", show(&o));
    let evil = format!("/tmp/attack14-sel-{}.conf", std::process::id());
    std::fs::write(&evil, "SPOOLDIR /tmp\nMAILNAME evil.example\n").unwrap();
    for argv in [
        vec!["-qR--config", &format!("-qR{evil}")],
        vec!["-qI--caller-uid", "-qI0", "-v"],
        vec!["-qS--job", "-qSmessage", "-qS--id", &format!("-qS{id}")],
        vec!["-qR --config /tmp -v"],
        vec!["-q!R--summary", "-q!Ryes"],
    ] {
        let mut a = vec![dma.as_str()];
        a.extend(argv.iter().copied());
        let o = inst.run(Some(ALICE), &a, "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("bad runner arguments"),
            "{argv:?}: {}",
            show(&o)
        );
        assert!(
            !inst.mailbox(CAROL).contains("Subject: sel"),
            "{argv:?}: {}",
            show(&o)
        );
        // Root's -v lines (another user's message) are not hers.
        assert!(!err.contains(&id), "{argv:?}: {}", show(&o));
    }
    let _ = std::fs::remove_file(&evil);
}

/// mailq --json for alice: nothing of bob's .forward (its commands, its
/// addresses, the hosts and replies of its destinations).
#[test]
fn json_shows_alice_nothing_of_bobs_forward() {
    if !need_root("attack14_json_forward") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    set_forward(
        BOB,
        "\"|exit 75 # SECRET-CMD-0815\", secret.partner@nowhere.invalid\n",
    );
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), "-odi", BOB],
        "Subject: f\n\nx\n",
    );
    let _ = o;
    let q = |who: Option<&str>, json: bool| {
        let mut a = vec![inst.path("sbin/sendmail"), "-bp".to_string()];
        if json {
            a.push("--json".into());
        }
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        inst.run(who, &a, "")
    };
    let root = q(None, true);
    let alice = q(Some(ALICE), true);
    let plain = q(Some(ALICE), false);
    let doc: serde_json::Value =
        serde_json::from_slice(&alice.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&alice)));
    let text = doc.to_string();
    // The setup worked: root sees the expansion.
    assert!(
        String::from_utf8_lossy(&root.stdout).contains("secret.partner"),
        "{}",
        show(&root)
    );
    for secret in ["SECRET-CMD", "secret.partner", "nowhere.invalid", "exit 75"] {
        assert!(
            !text.contains(secret),
            "mailq --json shows alice {secret:?} of bob's .forward: {text}\nroot: {}",
            String::from_utf8_lossy(&root.stdout)
        );
        assert!(
            !String::from_utf8_lossy(&plain.stdout).contains(secret),
            "{}",
            show(&plain)
        );
    }
}

/// `--check` as alice runs with group mail: a broken auth.conf (root:mail
/// 0640) must be reported without a byte of its contents.
#[test]
fn check_as_alice_quotes_nothing_of_auth_conf() {
    if !need_root("attack14_check_auth") {
        return;
    }
    let inst = Installed::new();
    let mail_gid = nix::unistd::Group::from_name("mail")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let auth = inst.root.join("etc/auth.conf");
    std::fs::write(
        &auth,
        "good|smtp.example:PASSWORD-GOOD-1\nbroken-line-PASSWORD-BAD-2\nx|y|PASSWORD-CMD-3\n",
    )
    .unwrap();
    chown_mode(&auth, 0, mail_gid, 0o640);
    inst.add_conf(&format!(
        "AUTHPATH {}\nSMARTHOST smtp.example\n",
        auth.display()
    ));
    let dma = inst.path("sbin/dma");
    for argv in [
        vec![dma.as_str(), "--check"],
        vec![dma.as_str(), "--probe"],
        vec![dma.as_str(), "--probe", "--auth"],
        vec![dma.as_str(), "-bp"],
        vec![dma.as_str(), "-bp", "--json"],
        vec![dma.as_str(), "-Q", "show", "0000000000000000"],
    ] {
        let o = inst.run(Some(ALICE), &argv, "");
        let all = show(&o);
        assert!(
            !all.contains("PASSWORD") && !all.contains("good|") && !all.contains("broken-line"),
            "{argv:?} shows alice auth.conf: {all}"
        );
    }
    // Readable by every user is warned about; root's view is root's.
    chown_mode(&auth, 0, mail_gid, 0o644);
    let o = inst.run(Some(ALICE), &[&dma, "--check"], "");
    assert!(!show(&o).contains("PASSWORD"), "{}", show(&o));
}

/// `--probe` as alice: no login, no password, no AUTH sent, with or
/// without -C (her -C config naming the system auth.conf).
#[test]
fn probe_as_alice_sends_no_credentials() {
    if !need_root("attack14_probe") {
        return;
    }
    let fake = smtpd::FakeSmtp::start(smtpd::Behavior {
        ehlo: vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into()],
        ..smtpd::Behavior::default()
    });
    let inst = Installed::new();
    let mail_gid = nix::unistd::Group::from_name("mail")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let auth = inst.root.join("etc/auth.conf");
    std::fs::write(&auth, "LOGIN-ROOT|127.0.0.1:PASSWORD-ROOT\n").unwrap();
    chown_mode(&auth, 0, mail_gid, 0o640);
    inst.add_conf(&format!(
        "AUTHPATH {}\nSMARTHOST 127.0.0.1:{}\nINSECURE\n",
        auth.display(),
        fake.port()
    ));
    let mine = format!("/tmp/attack14-probe-{}.conf", std::process::id());
    std::fs::write(
        &mine,
        format!(
            "AUTHPATH {}\nSMARTHOST 127.0.0.1:{}\nINSECURE\nMAILNAME {HOST}\nSPOOLDIR /tmp\n",
            auth.display(),
            fake.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&mine, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let dma = inst.path("sbin/dma");
    let port = format!("127.0.0.1:{}", fake.port());
    for argv in [
        vec![dma.as_str(), "--probe"],
        vec![dma.as_str(), "--probe", &port],
        vec![dma.as_str(), "--auth", "--probe"],
        vec![dma.as_str(), "--probe", "--auth", &port],
        vec![dma.as_str(), "-C", &mine, "--probe", "--auth"],
        vec![dma.as_str(), "--probe=127.0.0.1", "--auth", "-C", &mine],
    ] {
        let o = inst.run(Some(ALICE), &argv, "");
        let all = show(&o);
        assert!(
            !all.contains("LOGIN-ROOT") && !all.contains("PASSWORD-ROOT"),
            "{argv:?}: {all}"
        );
    }
    let _ = std::fs::remove_file(&mine);
    assert!(
        !fake
            .commands()
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("AUTH")),
        "alice's probe sent AUTH: {:?}",
        fake.commands()
    );
}
