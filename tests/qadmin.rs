//! Queue administration through the binary (`dma -C conf -Q <verb> ...` as
//! root), and `mailq --json`: what each verb leaves in the spool, what the
//! runners then do, and how a verb meets a runner that holds the message.

mod support;

use std::time::{Duration, Instant};

use support::*;

const MSG: &str = "Subject: admin test\n\nbody line\n";

fn q(env: &Env, args: &[&str]) -> Run {
    let mut c = env.cmd("dma");
    c.arg("-Q").args(args);
    env.run(c, b"", None)
}

/// `dma -q5m`: only what is due.
fn run_due(env: &Env) -> Run {
    let mut c = env.cmd("dma");
    c.arg("-q5m");
    env.run(c, b"", None)
}

/// Queues `MSG` to `rcpt` as root without delivering it; returns its id.
fn queue(env: &Env, rcpt: &str) -> String {
    let before = env.queue_ids();
    let mut c = env.cmd("sendmail");
    c.args(["-odq", rcpt]);
    env.run(c, MSG.as_bytes(), None).expect(0, env);
    let ids: Vec<String> = env
        .queue_ids()
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    ids[0].clone()
}

/// Alice's message to Bob, deferred: her own runner may not write Bob's
/// mailbox. Returns its id.
fn deferred(env: &Env) -> String {
    env.send_as(ALICE, &["-odi", BOB], MSG).expect(0, env);
    let ids = env.queue_ids();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    let q = env.mailq().stdout();
    assert!(q.contains("Status\t: deferred, 1 attempt"), "{q}");
    ids[0].clone()
}

fn files(env: &Env, id: &str) -> (bool, bool) {
    (
        env.spool.join(format!("{id}.env")).exists(),
        env.spool.join(format!("{id}.msg")).exists(),
    )
}

#[test]
fn hold_keeps_a_message_from_every_run_and_release_lets_it_go() {
    if !need_root("qadmin_hold") {
        return;
    }
    let env = Env::new("");
    let id = queue(&env, BOB);
    let r = q(&env, &["hold", &id]);
    r.expect(0, &env);
    assert_eq!(r.stdout(), format!("{id}: held\n"));
    let text = std::fs::read_to_string(env.spool.join(format!("{id}.env"))).unwrap();
    assert!(text.contains("\nheld "), "{text}");
    let listing = env.mailq().stdout();
    assert!(
        listing.contains("\nHeld\t: since ") && listing.contains("not tried until released"),
        "{listing}"
    );
    // Neither a forced run nor a due-only run touches it.
    env.flush().expect(0, &env);
    run_due(&env).expect(0, &env);
    assert_eq!(env.mbox(BOB), "", "{}", env.dump());
    assert_eq!(env.queue_ids(), [id.as_str()]);
    let q1 = env.mailq().stdout();
    assert!(q1.contains("Status\t: pending"), "{q1}");
    // Nor a flush.
    let r = q(&env, &["flush", &id]);
    assert_eq!(r.code(), 69, "{}", r.show());
    assert!(
        r.stderr().contains("held; release it first"),
        "{}",
        r.show()
    );
    // Holding twice changes nothing.
    assert_eq!(
        q(&env, &["hold", &id]).stdout(),
        format!("{id}: held already\n")
    );
    let r = q(&env, &["release", &id]);
    r.expect(0, &env);
    assert_eq!(r.stdout(), format!("{id}: released\n"));
    assert!(!env.mailq().stdout().contains("Held"));
    run_due(&env).expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn requeue_makes_a_deferred_recipient_due_at_the_next_run() {
    if !need_root("qadmin_requeue") {
        return;
    }
    let env = Env::new("");
    let id = deferred(&env);
    // Not due yet: a due-only run leaves it.
    run_due(&env).expect(0, &env);
    assert_eq!(env.mbox(BOB), "", "{}", env.dump());
    let r = q(&env, &["requeue", "ALL"]);
    r.expect(0, &env);
    assert_eq!(
        r.stdout(),
        format!("{id}: requeued, 1 deferred recipients due now\n")
    );
    let listing = env.mailq().stdout();
    assert!(
        listing.contains("deferred, 1 attempt, next try at the next queue run"),
        "{listing}"
    );
    // The attempts are kept (they count towards QUEUE_LIFETIME).
    let text = std::fs::read_to_string(env.spool.join(format!("{id}.env"))).unwrap();
    assert!(
        text.contains("\nattempts 1\n") && !text.contains("next-try"),
        "{text}"
    );
    run_due(&env).expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    assert!(env.queue_ids().is_empty(), "{}", env.dump());
}

#[test]
fn flush_delivers_one_message_now() {
    if !need_root("qadmin_flush") {
        return;
    }
    let env = Env::new("");
    let id = deferred(&env);
    let other = queue(&env, CAROL);
    let r = q(&env, &["flush", &id]);
    r.expect(0, &env);
    assert_eq!(env.messages(BOB).len(), 1, "{}", env.dump());
    // Only that one.
    assert_eq!(env.mbox(CAROL), "");
    assert_eq!(env.queue_ids(), [other]);
}

#[test]
fn delete_removes_both_files_and_only_what_it_names() {
    if !need_root("qadmin_delete") {
        return;
    }
    let env = Env::new("");
    let a = queue(&env, BOB);
    let b = queue(&env, CAROL);
    let c = queue(&env, BOB);
    let r = q(&env, &["delete", &a]);
    r.expect(0, &env);
    assert_eq!(r.stdout(), format!("{a}: deleted\n"));
    assert_eq!(files(&env, &a), (false, false), "{}", env.dump());
    let listing = env.mailq().stdout();
    assert!(!listing.contains(&a) && listing.contains(&b), "{listing}");
    // Unknown, and not an id at all.
    let r = q(&env, &["delete", &a]);
    assert_eq!(r.code(), 66, "{}", r.show());
    assert!(r.stderr().contains("no such message"), "{}", r.show());
    assert_eq!(q(&env, &["delete", "../dma.conf"]).code(), 64);
    assert_eq!(q(&env, &["frobnicate", &b]).code(), 64);
    // A deferred one older than a second; the pending ones stay.
    let d = deferred_among(&env);
    std::thread::sleep(Duration::from_millis(2100));
    let r = q(&env, &["delete", "--deferred-older-than", "1s"]);
    r.expect(0, &env);
    assert_eq!(r.stdout(), format!("{d}: deleted\n"));
    // Ids of one second sort at random.
    let mut left = vec![b.clone(), c.clone()];
    left.sort();
    assert_eq!(env.queue_ids(), left);
    let r = q(&env, &["delete", "ALL"]);
    r.expect(0, &env);
    assert_eq!(
        r.stdout(),
        format!("{}: deleted\n{}: deleted\n", left[0], left[1])
    );
    assert_eq!(env.mailq().stdout(), "Mail queue is empty\n");
    assert_eq!(env.mbox(BOB), "");
}

/// [`deferred`] in a queue that holds other messages.
fn deferred_among(env: &Env) -> String {
    let before = env.queue_ids();
    env.send_as(ALICE, &["-odi", BOB], MSG).expect(0, env);
    let ids: Vec<String> = env
        .queue_ids()
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(ids.len(), 1, "{}", env.dump());
    ids[0].clone()
}

/// Holds the message lock on `id` the way a runner does: an exclusive
/// flock on its data file.
fn lock_as_runner(env: &Env, id: &str) -> std::fs::File {
    let f = std::fs::File::open(env.spool.join(format!("{id}.msg"))).unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn a_verb_waits_for_a_runner_that_holds_the_message_or_refuses() {
    if !need_root("qadmin_locked") {
        return;
    }
    let env = Env::new("");
    let id = queue(&env, BOB);
    let before = std::fs::read(env.spool.join(format!("{id}.env"))).unwrap();
    // Held for longer than the verb waits: refused, nothing touched.
    let lock = lock_as_runner(&env, &id);
    let start = Instant::now();
    let r = q(&env, &["delete", &id]);
    assert_eq!(r.code(), 75, "{}", r.show());
    assert!(start.elapsed() >= Duration::from_secs(4), "did not wait");
    assert!(r.stderr().contains("being delivered"), "{}", r.show());
    assert_eq!(files(&env, &id), (true, true), "{}", env.dump());
    assert_eq!(
        std::fs::read(env.spool.join(format!("{id}.env"))).unwrap(),
        before
    );
    assert!(env.mailq().stdout().contains(&id));
    for verb in ["hold", "requeue", "show"] {
        assert_eq!(q(&env, &[verb, &id]).code(), 75, "{verb}");
    }
    assert_eq!(
        std::fs::read(env.spool.join(format!("{id}.env"))).unwrap(),
        before
    );
    // Let go within the wait: the delete goes through after it.
    let mut c = env.cmd("dma");
    c.args(["-Q", "delete", &id]);
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // Still there while the lock is held.
    assert_eq!(files(&env, &id), (true, true));
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&env, &id), (false, false), "{}", env.dump());
    assert_eq!(env.mailq().stdout(), "Mail queue is empty\n");
}

#[test]
fn show_prints_the_envelope_then_the_message() {
    if !need_root("qadmin_show") {
        return;
    }
    let env = Env::new("");
    let id = deferred(&env);
    let r = q(&env, &["show", &id]);
    r.expect(0, &env);
    let out = r.stdout();
    let (head, body) = out.split_once("\n\n").unwrap();
    assert!(
        head.starts_with(&format!(
            "ID\t: {id}\nFrom\t: {ALICE}@{HOST}\nUser\t: {ALICE} (uid {})\nArrival\t: ",
            user(ALICE).uid
        )),
        "{out}"
    );
    assert!(
        head.contains(&format!(
            "\nTo\t: {BOB}\nStatus\t: deferred, 1 attempt, next try "
        )),
        "{out}"
    );
    let size = std::fs::metadata(env.spool.join(format!("{id}.msg")))
        .unwrap()
        .len();
    assert!(head.contains(&format!("\nSize\t: {size} bytes\n")), "{out}");
    assert_eq!(
        body.len() as u64,
        size,
        "the message as queued follows:\n{out}"
    );
    assert!(body.contains("Subject: admin test\n") && body.ends_with("\nbody line\n"));
    assert_eq!(q(&env, &["show", "0000000000000000"]).code(), 66);
}

/// Writes a queue entry by hand (the envelope format is documented): a
/// message to the alias `team`, expanded to Bob (deferred by mx.example)
/// and Carol (delivered), and a remote recipient that failed. Returns its
/// id and its data file's length.
fn handmade(spool: &std::path::Path, created: i64) -> (String, u64) {
    let id = "692a1f3b5c8e9d01".to_string();
    let data = "Subject: made by hand\n\nx\n";
    std::fs::write(spool.join(format!("{id}.msg")), data).unwrap();
    let env = format!(
        "dma-rs-queue 2\nid {id}\ncreated {created}\nsender a%22lice@example.org\nuser alice\nuid 1000\nsize {}\n\
         rcpt team\nstate expanded\n\
         rcpt dmt-bob\nparent 0\norigin alias:team\nstate deferred\nattempts 2\nnext-try 1764410900\nreply 4.2.0%20busy%0A%22now%22\nmta mx.example%20[192.0.2.1]\n\
         rcpt dmt-carol\nparent 0\norigin alias:team\nstate delivered\nattempts 1\n\
         rcpt far@remote.example\nstate failed\nattempts 1\nreply 5.1.1%20no%20such%20user\n\
         end 4\n",
        data.len()
    );
    std::fs::write(spool.join(format!("{id}.env")), env).unwrap();
    (id, data.len() as u64)
}

#[test]
fn mailq_json_is_one_versioned_document() {
    if !need_root("qadmin_json") {
        return;
    }
    let env = Env::new("");
    // Empty: a document all the same.
    let r = env.run(
        {
            let mut c = env.cmd("mailq");
            c.arg("--json");
            c
        },
        b"",
        None,
    );
    r.expect(0, &env);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["messages"], serde_json::json!([]));
    assert_eq!(doc["corrupt"], serde_json::json!([]));

    let (id, size) = handmade(&env.spool, 1764410000);
    let pending = queue(&env, CAROL);
    assert_eq!(q(&env, &["hold", &pending]).code(), 0);
    let mut c = env.cmd("sendmail");
    c.args(["-bp", "--json"]);
    let r = env.run(c, b"", None);
    r.expect(0, &env);
    assert!(r.stdout().ends_with("}\n") && r.stdout().lines().count() == 1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(doc["version"], 1);
    // -C: the owner of a private spool sees all, as root.
    assert_eq!(doc["view"], "full");
    let msgs = doc["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{doc:#}");
    let m = &msgs[0];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["sender"], "a\"lice@example.org");
    assert_eq!(m["arrival"], "2025-11-29T09:53:20Z");
    assert_eq!(m["size"], size);
    assert_eq!(m["held"], false);
    assert_eq!(m["held_since"], serde_json::Value::Null);
    let rs = m["recipients"].as_array().unwrap();
    assert_eq!(rs.len(), 4);
    assert_eq!(
        rs[0],
        serde_json::json!({"address": "team", "via": null, "state": "expanded",
            "attempts": 0, "next_try": null, "last_reply": null, "host": null,
            "destinations": {"delivered": 1, "pending": 0, "deferred": 1, "failed": 0}})
    );
    assert_eq!(
        rs[1],
        serde_json::json!({"address": BOB, "via": "team", "state": "deferred",
            "attempts": 2, "next_try": "2025-11-29T10:08:20Z",
            "last_reply": "4.2.0 busy\n\"now\"", "host": "mx.example [192.0.2.1]"})
    );
    assert_eq!(rs[2]["state"], "delivered");
    assert_eq!(rs[2]["via"], "team");
    assert_eq!(
        rs[3],
        serde_json::json!({"address": "far@remote.example", "via": null, "state": "failed",
            "attempts": 1, "next_try": null, "last_reply": "5.1.1 no such user", "host": null})
    );
    let h = &msgs[1];
    assert_eq!(h["id"], pending.as_str());
    assert_eq!(h["held"], true);
    let since = h["held_since"].as_str().unwrap();
    let since: jiff::Timestamp = since.parse().unwrap();
    assert!((jiff::Timestamp::now() - since).as_secs().abs() < 60);
    let arrival: jiff::Timestamp = h["arrival"].as_str().unwrap().parse().unwrap();
    assert!((jiff::Timestamp::now() - arrival).as_secs().abs() < 60);
    assert_eq!(
        h["size"],
        std::fs::metadata(env.spool.join(format!("{pending}.msg")))
            .unwrap()
            .len()
    );
    assert_eq!(h["recipients"][0]["address"], CAROL);
    assert_eq!(h["recipients"][0]["state"], "pending");
    // The plain listing: arrival and size after the recipients.
    let plain = env.mailq().stdout();
    assert!(
        plain.contains(&format!("\nSize\t: {size} bytes\n")) && plain.contains("\nArrival\t: "),
        "{plain}"
    );
    // --json is for listings only.
    let mut c = env.cmd("sendmail");
    c.args(["--json", BOB]);
    assert_eq!(env.run(c, b"", None).code(), 64);
}

#[test]
fn each_action_is_logged_with_who_did_it() {
    if !need_root("qadmin_syslog") {
        return;
    }
    let env = Env::new("");
    let id = queue(&env, BOB);
    // As tests/syslog.rs: a /dev/log of our own in a mount namespace.
    let t = env.dir.path();
    let sock = t.join("log.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    std::fs::write(t.join("null"), "").unwrap();
    let dma = format!("{} -C {} -Q", bin().display(), env.conf.display());
    let script = format!(
        "set -e; mount --bind /dev/null {t}/null; mount -t tmpfs none /dev; \
         touch /dev/null; mount --bind {t}/null /dev/null; ln -s {sock} /dev/log; \
         {dma} hold {id}; {dma} release {id}; {dma} requeue {id}; {dma} delete {id}",
        t = t.display(),
        sock = sock.display(),
    );
    let mut c = std::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    env.run(c, b"", None).expect(0, &env);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = rx.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let all = lines.join("\n");
    for what in ["held", "released", "deleted"] {
        // <22> = mail.info, tagged with the queue id.
        assert!(
            lines.iter().any(|l| l.starts_with("<22>")
                && l.contains(&format!("dma[{id}]: {what} by user=root uid=0 (dma -Q)"))),
            "{what}:\n{all}"
        );
    }
    // Nothing was deferred: a requeue that changes nothing says nothing.
    assert!(!all.contains("requeued"), "{all}");
}
