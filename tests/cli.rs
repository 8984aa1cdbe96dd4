//! Command-line, configuration and input errors: the messages and exit codes
//! dma gives, and that nothing is queued on error.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::*;

fn run(env: &Env, prog: &str, args: &[&str], stdin: &str) -> Run {
    let mut c = env.cmd(prog);
    c.args(args);
    env.run(c, stdin.as_bytes(), None)
}

#[test]
fn config_errors_exit_78_with_file_and_line() {
    let env = Env::new("");
    // The lines of the harness's base config come first.
    const B: usize = 7;
    for (extra, line, what) in [
        ("FOO bar\n", B + 1, "unknown key"),
        ("STARTTLS yes\n", B + 1, "takes no value"),
        ("# c\nSMARTHOST\n", B + 2, "needs a value"),
        ("PORT http\n", B + 1, "PORT"),
        ("FINGERPRINT 1234\n", B + 1, "FINGERPRINT"),
        ("SECURE\n", B + 1, "unknown key"),
        ("QUEUE_LIFETIME soon\n", B + 1, "duration"),
    ] {
        env.write_conf(extra);
        let r = run(&env, "sendmail", &["root"], "x\n");
        r.expect(78, &env);
        let want = format!("sendmail: syntax error in {}:{line}", env.conf.display());
        assert!(
            r.stderr().starts_with(&want) && r.stderr().contains(what),
            "{extra:?}\n{}",
            r.show()
        );
        // mailq reads the config too.
        run(&env, "mailq", &[], "").expect(78, &env);
    }
    env.write_conf("NULLCLIENT\n");
    assert!(
        run(&env, "sendmail", &["root"], "x\n")
            .expect(78, &env)
            .stderr()
            .contains("NULLCLIENT needs SMARTHOST")
    );
    assert!(env.queue_ids().is_empty());
}

#[test]
fn auth_file_errors() {
    let env = Env::new("");
    let auth = env.dir.path().join("auth.conf");
    env.write_conf(&format!("AUTHPATH {}\n", auth.display()));
    // Unreadable (missing): 66, as dma.
    run(&env, "mailq", &[], "").expect(66, &env);
    std::fs::write(&auth, "# creds\nuser|host:pw\nbroken line\n").unwrap();
    let r = run(&env, "mailq", &[], "");
    r.expect(78, &env);
    assert!(
        r.stderr()
            .contains(&format!("syntax error in authfile {}:3", auth.display())),
        "{}",
        r.show()
    );
    std::fs::write(&auth, "user|host:pw\n").unwrap();
    run(&env, "mailq", &[], "").expect(0, &env);
}

#[test]
fn usage_errors_exit_64() {
    let env = Env::new("");
    for (prog, args, msg) in [
        ("sendmail", &["-Z", "root"][..], "invalid argument: `-Z'"),
        (
            "sendmail",
            &["-bp", "root"][..],
            "sending mail and queue operations are mutually exclusive",
        ),
        (
            "sendmail",
            &["-bp", "-q"][..],
            "conflicting queue operations",
        ),
        ("mailq", &["root"][..], "invalid arguments"),
    ] {
        let r = run(&env, prog, args, "x\n");
        r.expect(64, &env);
        assert_eq!(r.stderr(), format!("{prog}: {msg}\n"), "{}", r.show());
    }
}

#[test]
fn unimplemented_b_modes_exit_64_and_read_nothing() {
    use std::io::{Read, Write};
    let env = Env::new("");
    for mode in ["-bt", "-bh", "-bH", "-bP", "-bd", "-bD", "-bz", "-At"] {
        // stdin is a pipe holding a message; it must stay unread.
        let (mut rx, mut tx) = std::io::pipe().unwrap();
        tx.write_all(b"Subject: must not be sent\n\nbody\n")
            .unwrap();
        drop(tx);
        let mut c = env.cmd("sendmail");
        c.args([mode, "root"]).stdin(rx.try_clone().unwrap());
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{mode}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let shown = mode.replace("-A", "-b");
        assert!(
            err.starts_with(&format!("sendmail: {shown} is not supported"))
                && err.lines().count() == 1,
            "{mode}: {err}"
        );
        let mut left = String::new();
        rx.read_to_string(&mut left).unwrap();
        assert_eq!(
            left, "Subject: must not be sent\n\nbody\n",
            "{mode} read stdin"
        );
    }
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn bad_addresses_exit_65_and_queue_nothing() {
    let env = Env::new("");
    for args in [
        &["bob\nrcpt", "x"][..],
        &["-oQ/tmp/evil"][..],
        &["--", "-oQ/tmp"][..],
        &["-f", "a\r\nb@x", "root"][..],
        &["-f", "-oQ@x", "root"][..],
        &["-F", "Name\nBcc: x", "root"][..],
        &["bo\u{1}b"][..],
    ] {
        let r = run(&env, "sendmail", args, "Subject: s\n\nx\n");
        // -oQ/tmp/evil is an (ignored) option, leaving no recipient: 66.
        let want = if args[0] == "-oQ/tmp/evil" { 66 } else { 65 };
        r.expect(want, &env);
    }
    let r = run(&env, "sendmail", &["-t"], "To: -oQ/tmp@x\n\nbody\n");
    r.expect(65, &env);
    assert!(
        r.stderr().contains("invalid address in header"),
        "{}",
        r.show()
    );
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert!(
        std::fs::read_dir(&env.spool).unwrap().next().is_none(),
        "no leftovers: {}",
        env.dump()
    );
}

#[test]
fn no_recipients_exit_66() {
    let env = Env::new("");
    let r = run(&env, "sendmail", &[], "x\n");
    r.expect(66, &env);
    assert_eq!(r.stderr(), "sendmail: no recipients\n");
}

#[test]
fn newaliases_checks_the_file_from_any_path() {
    let env = Env::new("");
    env.set_aliases("postmaster: root\nteam: a, b\n  c\n");
    let r = run(&env, "newaliases", &[], "");
    r.expect(0, &env);
    assert_eq!(
        r.stdout(),
        format!("{}: 2 aliases\n", env.aliases.display())
    );
    // Called by a full path, as /usr/bin/newaliases (dma 0.13 failed there).
    let mut c = std::process::Command::new(env.dir.path().join("newaliases"));
    c.arg("-C").arg(&env.conf);
    env.run(c, b"", None).expect(0, &env);
    // -bi is newaliases too.
    run(&env, "sendmail", &["-bi"], "").expect(0, &env);
    env.set_aliases("postmaster: root\n\nteam a, b\n");
    let r = run(&env, "newaliases", &[], "");
    r.expect(70, &env);
    assert!(
        r.stderr().starts_with(&format!(
            "newaliases: {}:3: syntax error",
            env.aliases.display()
        )),
        "{}",
        r.show()
    );
}

#[test]
fn broken_aliases_defer_local_mail_instead_of_losing_it() {
    let env = Env::new("");
    env.set_aliases("broken line\n");
    run(&env, "sendmail", &["-odi", "root"], "Subject: s\n\nx\n").expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains("Status\t: deferred") && q.contains(":1: syntax error"),
        "{q}"
    );
}

#[test]
fn defer_and_bq_only_queue() {
    let env = Env::new("DEFER\n");
    run(&env, "sendmail", &["-odi", "root"], "x\n").expect(0, &env);
    assert_eq!(env.queue_ids().len(), 1);
    env.write_conf("");
    run(&env, "sendmail", &["-bq", "root"], "x\n").expect(0, &env);
    run(&env, "sendmail", &["-odq", "root"], "x\n").expect(0, &env);
    assert_eq!(env.queue_ids().len(), 3);
    let q = env.mailq().stdout();
    assert_eq!(q.matches("Status\t: pending").count(), 3, "{q}");
    assert_eq!(q.matches("\n--\n").count(), 2, "{q}");
}

#[test]
fn verbose_mirrors_dma_log_lines() {
    if !need_root("verbose_log") {
        return;
    }
    let env = Env::new("");
    let r = run(
        &env,
        "sendmail",
        &["-v", "-odi", "root"],
        "Subject: s\n\nx\n",
    );
    r.expect(0, &env);
    let e = r.stderr();
    let id = &env.messages("root")[0];
    assert!(id.contains("\n\tid "));
    let queued = e
        .split("queued as ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no queue id in\n{e}"));
    // The lines about a message carry its queue id, as in the log.
    for want in [
        format!("sendmail[{queued}]: new mail from user=root uid=0 envelope_from=<root@{HOST}>"),
        format!("sendmail[{queued}]: mail to=<root> queued as {queued}"),
        format!("sendmail[{queued}]: <root> trying delivery"),
        format!("sendmail[{queued}]: <root> delivery successful"),
    ] {
        assert!(e.contains(&want), "missing {want:?} in\n{e}");
    }
}

/// `dma -q` says what it did in one line, with -v (or on a terminal); not
/// otherwise (cron mails whatever a job prints).
#[test]
fn a_queue_run_ends_with_a_summary() {
    if !need_root("queue_summary") {
        return;
    }
    let env = Env::new("");
    for to in ["root", "nosuchuser-here"] {
        run(&env, "sendmail", &["-odq", to], "Subject: s\n\nx\n").expect(0, &env);
    }
    let r = run(&env, "dma", &["-q"], "");
    r.expect(0, &env);
    assert!(!r.stderr().contains("queue run"), "{}", r.show());
    run(&env, "sendmail", &["-odq", "root"], "Subject: s\n\nx\n").expect(0, &env);
    let r = run(&env, "dma", &["-v", "-q"], "");
    r.expect(0, &env);
    assert!(
        r.stderr().contains(
            "dma: queue run: 1 message tried; recipients: 1 delivered, 0 deferred, 0 bounced; 0 messages left in the queue\n"
        ),
        "{}",
        r.show()
    );
}

#[test]
fn spool_write_failure_exits_cleanly_and_leaves_nothing() {
    let env = Env::new("");
    let mut c = std::process::Command::new("prlimit");
    c.args(["--fsize=2000", "--"])
        .arg(bin())
        .arg("-C")
        .arg(&env.conf)
        .args(["-odq", "root"]);
    let r = env.run(c, "x".repeat(10_000).as_bytes(), None);
    // 73, as the README says for a spool that cannot be written, naming
    // the file.
    r.expect(73, &env);
    assert!(
        r.stderr()
            .contains(&format!("can not write {}/", env.spool.display()))
            && r.stderr().contains(".msg: File too large"),
        "{}",
        r.show()
    );
    assert!(
        std::fs::read_dir(&env.spool).unwrap().next().is_none(),
        "{}",
        env.dump()
    );
}

#[test]
fn masquerade_rewrites_the_sender_and_the_from_header_we_add() {
    if !need_root("masquerade") {
        return;
    }
    let env = Env::new("MASQUERADE noreply@example.com\n");
    let r = run(
        &env,
        "sendmail",
        &["-odi", "-v", "root"],
        "Subject: s\n\nx\n",
    );
    r.expect(0, &env);
    let m = &env.messages("root")[0];
    assert!(m.starts_with("From noreply@example.com "), "{m}");
    assert!(m.contains("\nFrom: <noreply@example.com>\n"), "{m}");
    // A From: the user wrote is kept.
    run(
        &env,
        "sendmail",
        &["-odi", "root"],
        "From: Me <me@example.org>\n\nx\n",
    )
    .expect(0, &env);
    let m = &env.messages("root")[1];
    assert!(
        m.contains("\nFrom: Me <me@example.org>\n") && m.starts_with("From noreply@example.com "),
        "{m}"
    );
}

#[test]
fn bv_says_where_remote_and_local_addresses_go() {
    let env = Env::new("");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap();
    let r = run(
        &env,
        "sendmail",
        &["-bv", "far@remote.example", &me.name],
        "not read\n",
    );
    r.expect(0, &env);
    assert_eq!(
        r.stdout(),
        format!(
            "far@remote.example: remote, to the MX hosts of remote.example (SMTP, port 25)\n\
             {0}: mailbox {1} (user {0}, uid {2})\n",
            me.name,
            env.mbox_path(&me.name).display(),
            me.uid
        ),
        "{}",
        r.show()
    );
    // Smarthosts, each with its port, in the order they are tried.
    env.write_conf("SMARTHOST relay1.example, [2001:db8::1]:2525\nPORT 587\n");
    let r = run(&env, "sendmail", &["-bv", "far@remote.example"], "");
    r.expect(0, &env);
    assert_eq!(
        r.stdout(),
        "far@remote.example: remote, to the smarthosts relay1.example:587, \
         [2001:db8::1]:2525, in this order\n"
    );
    env.write_conf("SMARTHOST relay1.example\n");
    let r = run(&env, "sendmail", &["-bv", "far@remote.example"], "");
    assert_eq!(
        r.expect(0, &env).stdout(),
        "far@remote.example: remote, to the smarthost relay1.example:25\n"
    );
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn help_and_version_print_and_exit_0_under_every_name() {
    // Neither the configuration nor stdin is read: a broken config and a
    // message on stdin change nothing, and nothing is queued.
    let env = Env::new("FOO broken\n");
    for prog in ["sendmail", "mailq", "newaliases", "dma"] {
        let r = run(&env, prog, &["--help"], "Subject: s\n\nx\n");
        r.expect(0, &env);
        let out = r.stdout();
        assert!(
            out.starts_with("usage: sendmail [flags] [--] recipient...")
                && out.contains("\n  -t ")
                && out.contains("configuration: ")
                && out.contains("manual: dma(8)"),
            "{}",
            r.show()
        );
        assert!(out.lines().count() < 24 && out.lines().all(|l| l.len() <= 80));
        assert_eq!(r.stderr(), "");
        let r = run(&env, prog, &["--version"], "Subject: s\n\nx\n");
        r.expect(0, &env);
        let out = r.stdout();
        let first = out.lines().next().unwrap_or_default();
        assert!(
            first == format!("dma-rs {}", env!("CARGO_PKG_VERSION"))
                || first.starts_with(&format!("dma-rs {} (git ", env!("CARGO_PKG_VERSION"))),
            "{}",
            r.show()
        );
        for want in [
            "configuration file:    /",
            "/dma.conf\n",
            "local delivery helper: /",
            "/dma-local\n",
            "spool directory:       /var/spool/dma",
        ] {
            assert!(out.contains(want), "{want:?} in {}", r.show());
        }
        assert_eq!(r.stderr(), "");
    }
    // With stdin a pipe nobody closes, it still ends: stdin is not read.
    for flag in ["--help", "--version"] {
        let mut c = env.cmd("sendmail");
        let mut child = c
            .arg(flag)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{flag} with an open stdin"
        );
    }
    // -h is sendmail's hop count, not help.
    run(&env, "sendmail", &["-h"], "").expect(64, &env);
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn log_syslog_off_needs_a_logfile() {
    let env = Env::new("LOG_SYSLOG off\n");
    let r = run(&env, "sendmail", &["-odq", "root"], "x\n");
    r.expect(78, &env);
    assert!(
        r.stderr().contains("LOG_SYSLOG off needs a LOGFILE"),
        "{}",
        r.show()
    );
    env.write_conf("LOGFILE relative.log\n");
    let r = run(&env, "sendmail", &["-odq", "root"], "x\n");
    r.expect(78, &env);
    assert!(
        r.stderr().contains("LOGFILE needs an absolute path"),
        "{}",
        r.show()
    );
}

/// `dma --check` as root with `extra` config lines, in a mount namespace
/// where host names come from /etc/hosts only: a name that does not
/// resolve never leaves the machine as a DNS query.
fn check(env: &Env, extra: &str) -> Run {
    env.write_conf(extra);
    let nss = env.dir.path().join("nsswitch.conf");
    std::fs::write(&nss, "passwd: files\ngroup: files\nhosts: files\n").unwrap();
    let mut c = std::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/nsswitch.conf && exec \"$0\" \"$@\"",
            nss.display()
        ))
        .arg(bin())
        .arg("-C")
        .arg(&env.conf)
        .arg("--check");
    env.run(c, b"", None)
}

#[test]
fn check_prints_the_settings_and_warns_of_what_is_wrong() {
    if !need_root("check") {
        return;
    }
    let env = Env::new("");
    // The test configuration: its settings, no warning.
    let r = check(&env, "PORT 25\nQUEUE_WORKERS 2\n");
    r.expect(0, &env);
    let out = r.stdout();
    assert!(out.contains(&format!("\nMAILNAME {HOST}\n")), "{out}");
    assert!(out.contains("\nQUEUE_WORKERS 2\n"), "{out}");
    assert!(
        !out.contains("PORT"),
        "a default is not a difference: {out}"
    );
    assert!(out.ends_with("# no warnings\n"), "{out}");

    let auth = env.dir.path().join("auth.conf");
    std::fs::write(&auth, "alice|smarthost.test:secret\n").unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    let aliases = env.dir.path().join("bad-aliases");
    std::fs::write(&aliases, "postmaster root\n").unwrap();
    for (extra, want) in [
        (
            "STARTTLS\n",
            "warning: STARTTLS does nothing without SECURETRANSFER",
        ),
        (
            "SECURETRANSFER\nOPPORTUNISTIC_TLS\n",
            "warning: OPPORTUNISTIC_TLS does nothing without SECURETRANSFER and STARTTLS",
        ),
        (
            &format!("AUTHPATH {}\n", auth.display()),
            "is readable by every user (644 root:root): it holds passwords",
        ),
        (
            "AUTHPATH /nonexistent/auth.conf\n",
            "warning: AUTHPATH /nonexistent/auth.conf: No such file or directory",
        ),
        (
            "SMARTHOST no-such-host.test\n",
            "warning: SMARTHOST no-such-host.test does not resolve",
        ),
        (
            &format!("ALIASES {}\n", aliases.display()),
            &format!("warning: ALIASES: {}:1", aliases.display()),
        ),
        (
            "MAILNAME myhost\n",
            "warning: the mail name `myhost' is not a fully qualified domain name",
        ),
        (
            "LOGFILE /tmp/dma-rs-check-test.log\n",
            "warning: LOGFILE /tmp/dma-rs-check-test.log: its directory is writable by every user",
        ),
    ] {
        let r = check(&env, extra);
        r.expect(78, &env);
        assert!(
            r.stdout().contains(want),
            "{extra:?}: missing {want:?} in\n{}",
            r.show()
        );
        assert!(
            r.stdout().ends_with("# 1 warning\n"),
            "{extra:?}: {}",
            r.show()
        );
    }
    // A queue and mailbox directory anyone may write in (no sticky bit).
    std::fs::set_permissions(&env.spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&env.mail, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = check(&env, "");
    r.expect(78, &env);
    assert!(r.stdout().contains("warning: SPOOLDIR "), "{}", r.show());
    assert!(
        r.stdout()
            .contains("any user may remove or replace another's mailbox"),
        "{}",
        r.show()
    );
    assert!(r.stdout().ends_with("# 2 warnings\n"), "{}", r.show());
}

#[test]
fn check_says_whether_dane_can_work() {
    if !need_root("check_dane") {
        return;
    }
    let env = Env::new("");
    // The test config asks 127.0.0.1 (NAMESERVER): a resolver of this
    // host's, believed.
    let out = check(&env, "").stdout();
    assert!(
        out.contains("\n# DANE: the resolver (127.0.0.1) is believed when it says an answer is DNSSEC-validated\n"),
        "{out}"
    );
    let out = check(&env, "NAMESERVER 192.0.2.53\n").stdout();
    assert!(
        out.contains("\n# DANE: not in use: the resolver (192.0.2.53) is not on this host"),
        "{out}"
    );
    assert!(out.contains("\n# no warnings\n"), "{out}");
    for extra in ["TLS_POLICY mta-sts\n", "SMARTHOST relay.test\n"] {
        let out = check(&env, extra).stdout();
        assert!(!out.contains("# DANE"), "{extra}: {out}");
    }
}
