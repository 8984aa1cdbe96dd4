//! `.forward`, pipes, files and alias programs, with real users.
//!
//! The tests of this file share the test users' home directories, so they
//! run one at a time (a lock) and each removes what it put there.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::*;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn pipe_runs_as_the_user_with_the_promised_environment() {
    if !need_root("pipe_env") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    set_forward(
        BOB,
        "# keep a copy and run a program\n\\dmt-bob, \"|id -u > out.uid; id -G > out.groups; pwd > out.pwd; env > out.env; echo $$ > out.pid; cut -d' ' -f6 /proc/$$/stat > out.sid; cat > out.msg\"\n",
    );
    env.send_as(ALICE, &["-odq", BOB], "Subject: piped\n\nhello pipe\n")
        .expect(0, &env);
    env.flush().expect(0, &env);
    let h = home(BOB);
    let bob = user(BOB);
    assert_eq!(
        read(&h.join("out.uid")).trim(),
        bob.uid.to_string(),
        "{}",
        env.dump()
    );
    assert_eq!(read(&h.join("out.groups")).trim(), bob.gid.to_string());
    assert_eq!(read(&h.join("out.pwd")).trim(), h.display().to_string());
    // Its own session: the shell is the session leader.
    assert_eq!(
        read(&h.join("out.sid")).trim(),
        read(&h.join("out.pid")).trim()
    );
    let vars: std::collections::BTreeMap<String, String> = read(&h.join("out.env"))
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let expect = [
        ("HOME", h.display().to_string()),
        ("USER", BOB.to_string()),
        ("LOGNAME", BOB.to_string()),
        ("SENDER", format!("{ALICE}@{HOST}")),
        ("RECIPIENT", format!("{BOB}@{HOST}")),
        ("LOCAL", BOB.to_string()),
        ("DOMAIN", HOST.to_string()),
        ("ORIGINAL_RECIPIENT", format!("{BOB}@{HOST}")),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
    ];
    for (k, v) in &expect {
        assert_eq!(vars.get(*k), Some(v), "{k} in {vars:?}");
    }
    assert!(vars.contains_key("SHELL"));
    // Nothing else from our environment leaks in (sh adds PWD and the like).
    for k in vars.keys() {
        assert!(
            expect.iter().any(|(e, _)| e == k)
                || ["SHELL", "PWD", "OLDPWD", "SHLVL", "_"].contains(&k.as_str()),
            "unexpected variable {k} in the pipe's environment"
        );
    }
    let msg = read(&h.join("out.msg"));
    assert!(msg.starts_with(&format!("From {ALICE}@{HOST} ")), "{msg}");
    assert!(
        msg.contains(&format!(
            "\nReturn-Path: <{ALICE}@{HOST}>\nDelivered-To: {BOB}@{HOST}\nReceived: "
        )),
        "{msg}"
    );
    assert!(msg.ends_with("\nhello pipe\n"), "{msg}");
    // The mailbox copy, without Delivered-To.
    let m = env.messages(BOB);
    assert_eq!(m.len(), 1);
    assert!(!m[0].contains("Delivered-To"));
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn exit_75_defers_and_is_retried_and_exit_1_bounces_with_output() {
    if !need_root("pipe_status") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    set_forward(
        BOB,
        "\"|test -f t.ok || { echo not yet; exit 75; }; cat > out.msg\"\n",
    );
    env.send(&["-f", ALICE, BOB], "Subject: retry\n\nx\n")
        .expect(0, &env);
    let q = env.mailq().stdout();
    assert!(
        q.contains("Status\t: deferred, 1 attempt") && q.contains("exit 75): not yet"),
        "{q}"
    );
    std::fs::write(home(BOB).join("t.ok"), "").unwrap();
    env.flush().expect(0, &env);
    assert!(read(&home(BOB).join("out.msg")).contains("Subject: retry"));
    assert!(env.queue_ids().is_empty(), "{}", env.dump());

    set_forward(CAROL, "\"|echo no such list member >&2; exit 1\"\n");
    env.send(&["-f", ALICE, CAROL], "Subject: bounce me\n\nx\n")
        .expect(0, &env);
    let b = env.messages(ALICE);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(b[0].contains("Status: 5.3.0"), "{}", b[0]);
    assert!(
        b[0].contains("command failed (exit 1): no such list member"),
        "{}",
        b[0]
    );
    assert!(
        b[0].contains(&format!("Final-Recipient: rfc822; {CAROL}@{HOST}\n")),
        "{}",
        b[0]
    );
    // What failed, not how carol wrote it.
    assert!(
        b[0].contains(&format!(
            "(delivering to a command in the .forward of {CAROL}): 5.3.0"
        )) && !b[0].contains("|echo"),
        "{}",
        b[0]
    );
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn unsafe_forward_files_are_ignored() {
    if !need_root("unsafe_forward") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    // Group-writable: ignored, mail goes to the mailbox.
    let f = set_forward(BOB, &format!("{CAROL}\n"));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
    let r = env.send(&["-v", BOB], "Subject: one\n\nx\n");
    r.expect(0, &env);
    assert!(
        r.stderr().contains("group- or world-writable"),
        "{}",
        r.show()
    );
    // A symbolic link: ignored.
    std::fs::remove_file(&f).unwrap();
    let real = home(BOB).join("t.real");
    std::fs::write(&real, format!("{CAROL}\n")).unwrap();
    std::os::unix::fs::symlink(&real, &f).unwrap();
    let r = env.send(&["-v", BOB], "Subject: two\n\nx\n");
    assert!(r.stderr().contains("symbolic link"), "{}", r.show());
    // Owned by another user: ignored.
    std::fs::remove_file(&f).unwrap();
    std::fs::write(&f, format!("{CAROL}\n")).unwrap();
    let a = user(ALICE);
    std::os::unix::fs::chown(&f, Some(a.uid), Some(a.gid)).unwrap();
    env.send(&[BOB], "Subject: three\n\nx\n").expect(0, &env);
    // Malformed: ignored, with file and line in the log.
    set_forward(BOB, "ok@example.org\n\"|unterminated\n");
    let r = env.send(&["-v", BOB], "Subject: four\n\nx\n");
    assert!(
        r.stderr().contains(".forward:2: unterminated double quote"),
        "{}",
        r.show()
    );
    assert_eq!(env.messages(BOB).len(), 4, "{}", env.dump());
    assert!(env.messages(CAROL).is_empty());
    // Empty or comments only: normal delivery.
    set_forward(BOB, "# nothing here\n\n");
    env.send(&[BOB], "Subject: five\n\nx\n").expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 5);
}

#[test]
fn files_maildirs_and_forwarding_to_users() {
    if !need_root("files_maildirs") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    let h = home(BOB);
    set_forward(
        BOB,
        &format!(
            "{}/out.archive, {}/out.Maildir/\n{BOB}, {CAROL}, far@remote.example\n",
            h.display(),
            h.display()
        ),
    );
    env.send(&["-f", ALICE, BOB], "Subject: fan out\n\nFrom here\n")
        .expect(0, &env);
    let archive = read(&h.join("out.archive"));
    assert!(
        archive.starts_with(&format!("From {ALICE}@{HOST} ")),
        "{archive}"
    );
    assert!(
        archive.contains(&format!("\nDelivered-To: {BOB}@{HOST}\n"))
            && archive.contains("\n>From here\n"),
        "{archive}"
    );
    assert_eq!(owner_mode(&h.join("out.archive")), (user(BOB).uid, 0o600));
    let new: Vec<_> = std::fs::read_dir(h.join("out.Maildir/new"))
        .unwrap()
        .collect();
    assert_eq!(new.len(), 1);
    // Listing oneself is the mailbox; another user gets a Delivered-To.
    assert_eq!(env.messages(BOB).len(), 1);
    let c = env.messages(CAROL);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].contains(&format!("Delivered-To: {BOB}@{HOST}")),
        "{}",
        c[0]
    );
    // The remote forward waits for remote delivery, recorded as such.
    let q = env.mailq().stdout();
    assert!(
        q.contains(&format!(
            "To\t: far@remote.example (via {BOB})\nStatus\t: deferred"
        )),
        "{q}"
    );
}

#[test]
fn symlinked_file_target_is_refused() {
    if !need_root("symlinked_file") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    let h = home(BOB);
    std::fs::write(h.join("t.target"), "precious\n").unwrap();
    std::os::unix::fs::symlink(h.join("t.target"), h.join("t.link")).unwrap();
    set_forward(BOB, &format!("{}/t.link\n", h.display()));
    env.send(&[BOB], "Subject: s\n\nx\n").expect(0, &env);
    assert_eq!(read(&h.join("t.target")), "precious\n");
    let q = env.mailq().stdout();
    assert!(q.contains("deferred") && q.contains("symbolic link"), "{q}");
}

#[test]
fn a_forwarding_loop_is_bounced() {
    if !need_root("loop") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    set_forward(BOB, "someone@remote.example\n");
    let msg = format!("Delivered-To: {BOB}@{HOST}\nSubject: looped\n\nx\n");
    env.send(&["-f", ALICE, BOB], &msg).expect(0, &env);
    let b = env.messages(ALICE);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("Status: 5.4.6") && b[0].contains("mail forwarding loop"),
        "{}",
        b[0]
    );
    assert!(env.queue_ids().is_empty());
    // Two users forwarding to each other: each ends in a mailbox.
    set_forward(BOB, &format!("{CAROL}\n"));
    set_forward(CAROL, &format!("{BOB}\n"));
    env.send(&[BOB], "Subject: ping\n\nx\n").expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    assert!(env.queue_ids().is_empty());
}

#[test]
fn nobody_can_make_another_users_command_run() {
    if !need_root("forged") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    let flag = env.dir.path().join("pwned");
    // From the command line or a header: refused at once.
    let r = env.send_as(
        ALICE,
        &["-odq", &format!("|touch {}", flag.display())],
        "x\n",
    );
    r.expect(65, &env);
    // Alice's own .forward runs as Alice, not as anybody else.
    let spot = env.dir.path().join("spot");
    std::fs::create_dir(&spot).unwrap();
    std::fs::set_permissions(&spot, std::fs::Permissions::from_mode(0o777)).unwrap();
    set_forward(
        ALICE,
        &format!("\"|id -u > {}/alice.uid\"\n", spot.display()),
    );
    env.send_as(BOB, &["-odq", ALICE], "x\n").expect(0, &env);
    env.flush().expect(0, &env);
    assert_eq!(
        read(&spot.join("alice.uid")).trim(),
        user(ALICE).uid.to_string()
    );
    // A queue entry claiming Bob's authority for a command Bob never wrote
    // (a forged or stale envelope) is refused by dma-local.
    std::fs::remove_file(home(ALICE).join(".forward")).unwrap();
    set_forward(BOB, "\\dmt-bob\n");
    env.send(&["-odq", "-f", ALICE, BOB], "Subject: forged\n\nx\n")
        .expect(0, &env);
    let id = env.queue_ids().pop().unwrap();
    let envf = env.spool.join(format!("{id}.env"));
    let text = read(&envf);
    // Well formed: the recipient count at the end says two.
    let text = text
        .strip_suffix("end 1\n")
        .expect("an envelope of one recipient");
    let forged = format!(
        "{text}rcpt %7Ctouch%20{}\nparent 0\norigin forward:{BOB}\nstate pending\nend 2\n",
        flag.display().to_string().replace(' ', "%20")
    );
    let forged = forged.replace(
        "rcpt dmt-bob\nstate pending",
        "rcpt dmt-bob\nstate expanded",
    );
    std::fs::write(&envf, forged).unwrap();
    env.flush().expect(0, &env);
    assert!(!flag.exists(), "a forged command ran");
    let b = env.messages(ALICE);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("5.7.1 not authorized: not in the .forward of dmt-bob"),
        "{}",
        b[0]
    );
}

#[test]
fn the_time_limit_kills_the_whole_process_group() {
    if !need_root("timeout") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("PIPE_TIMEOUT 1s\n");
    set_forward(CAROL, "\"|sleep 31 & sleep 32\"\n");
    let start = std::time::Instant::now();
    env.send(&[CAROL], "Subject: slow\n\nx\n").expect(0, &env);
    assert!(start.elapsed().as_secs() < 10);
    let q = env.mailq().stdout();
    assert!(
        q.contains("deferred") && q.contains("timed out after 1s"),
        "{q}"
    );
    let left = std::process::Command::new("pgrep")
        .args(["-u", CAROL, "-f", "sleep 3[12]"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn alias_commands_and_files_run_as_alias_user() {
    if !need_root("alias_programs") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    let spot = env.dir.path().join("spot");
    std::fs::create_dir(&spot).unwrap();
    std::fs::set_permissions(&spot, std::fs::Permissions::from_mode(0o777)).unwrap();
    let list = env.dir.path().join("list");
    std::fs::write(
        &list,
        format!(
            "# members\n{BOB}\n{CAROL}, \"|touch {}/from-include\"\n",
            spot.display()
        ),
    )
    .unwrap();
    env.set_aliases(&format!(
        "pager: \"|id -u > {s}/pager.uid\", {s}/pager.log\nlist: :include:{l}\n",
        s = spot.display(),
        l = list.display()
    ));
    env.send(&["pager", "list"], "Subject: to aliases\n\nx\n")
        .expect(0, &env);
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(
        read(&spot.join("pager.uid")).trim(),
        nobody.to_string(),
        "{}",
        env.dump()
    );
    assert!(read(&spot.join("pager.log")).contains("Delivered-To: pager@test.example"));
    assert_eq!(owner_mode(&spot.join("pager.log")).0, nobody);
    assert_eq!(env.messages(BOB).len(), 1);
    assert_eq!(env.messages(CAROL).len(), 1);
    // Commands in an :include: file are not run (as in Postfix).
    assert!(!spot.join("from-include").exists());
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn bv_shows_the_forward_tree_to_its_owner_only() {
    if !need_root("bv_forward") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    set_forward(BOB, &format!("\\{BOB}, \"|/usr/bin/notify-me\", {CAROL}\n"));
    let mut c = env.cmd("sendmail");
    c.args(["-bv", BOB]);
    let out = env.run(c, b"", None).expect(0, &env).stdout();
    assert!(
        out.contains(&format!(
            "{BOB}: forwarded by its .forward -> \\{BOB}, |/usr/bin/notify-me, {CAROL}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  |/usr/bin/notify-me: command `/usr/bin/notify-me', run as {BOB}"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("  {CAROL}: mailbox ")), "{out}");
    // Alice may not read Bob's .forward through -bv.
    let mut c = env.cmd("sendmail");
    c.args(["-bv", BOB]);
    let out = env.run(c, b"", Some(ALICE)).expect(0, &env).stdout();
    // What delivery would do without reading it: the mailbox, unless the
    // .forward says otherwise.
    assert_eq!(
        out,
        format!(
            "{BOB}: mailbox {} (user {BOB}, uid {})\n  (unless {BOB}'s .forward sends it elsewhere: only {BOB} and root may see that file)\n",
            env.mbox_path(BOB).display(),
            user(BOB).uid
        )
    );
    assert!(env.queue_ids().is_empty());
}

#[test]
fn a_kill_between_the_mailbox_copy_and_the_pipe_does_not_duplicate_the_copy() {
    if !need_root("crash_forward") {
        return;
    }
    let _h = Homes::take();
    let env = Env::new("");
    set_forward(BOB, "\\dmt-bob, \"|sleep 2; cat >> out.piped\"\n");
    env.send(&["-odq", BOB], "Subject: once\n\nx\n")
        .expect(0, &env);
    let mut c = env.cmd("dma");
    c.arg("-q");
    let mut child = c.spawn().unwrap();
    // Wait for the mailbox copy, then kill the queue run during the pipe.
    let start = std::time::Instant::now();
    while env.messages(BOB).is_empty() && start.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // The next runs finish the pipe; the copy is not made again.
    for _ in 0..50 {
        env.flush().expect(0, &env);
        if env.queue_ids().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    assert!(read(&home(BOB).join("out.piped")).contains("Subject: once"));
}
