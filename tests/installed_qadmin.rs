//! Queue administration on an installed system (`dma` set-group-id mail):
//! ordinary users are refused every verb, before anything is touched;
//! root administers the queue (as `mail`); `mailq --json` shows each user
//! what the plain listing shows them.

mod support;

use support::installed::*;
use support::*;

/// Queues a message as `who` without delivering it; returns its id.
fn queue(inst: &Installed, who: Option<&str>, rcpt: &str) -> String {
    let before = ids(inst);
    let o = inst.run(
        who,
        &[&inst.path("sbin/sendmail"), "-odq", rcpt],
        "Subject: q\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let new: Vec<String> = ids(inst)
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(new.len(), 1, "{:?}", inst.spool_files());
    new[0].clone()
}

fn ids(inst: &Installed) -> Vec<String> {
    inst.spool_files()
        .iter()
        .filter_map(|n| n.strip_suffix(".env").map(str::to_string))
        .collect()
}

#[test]
fn ordinary_users_are_refused_every_verb() {
    if !need_root("installed_qadmin_refused") {
        return;
    }
    let inst = Installed::new();
    let dma = inst.path("sbin/dma");
    // Her own message, even.
    let id = queue(&inst, Some(ALICE), BOB);
    let env_path = inst.root.join(format!("spool/{id}.env"));
    let before = std::fs::read(&env_path).unwrap();
    for args in [
        vec!["show", &id],
        vec!["delete", &id],
        vec!["delete", "ALL"],
        vec!["delete", "--deferred-older-than", "1s"],
        vec!["hold", &id],
        vec!["release", &id],
        vec!["requeue", &id],
        vec!["requeue", "ALL"],
        vec!["flush", &id],
    ] {
        let mut argv = vec![dma.as_str(), "-Q"];
        argv.extend(&args);
        let o = inst.run(Some(ALICE), &argv, "");
        assert_eq!(o.status.code(), Some(77), "{args:?}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("queue administration (-Q) is for root and group mail only")
                && err.contains("permission denied"),
            "{args:?}: {}",
            show(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?}: {}", show(&o));
    }
    // Nothing changed.
    assert_eq!(std::fs::read(&env_path).unwrap(), before);
    assert_eq!(ids(&inst), [id.as_str()]);
    assert_eq!(inst.mailbox(BOB), "");
}

#[test]
fn root_administers_the_installed_queue() {
    if !need_root("installed_qadmin_root") {
        return;
    }
    let inst = Installed::new();
    let dma = inst.path("sbin/dma");
    let id = queue(&inst, Some(ALICE), BOB);
    let o = inst.run(None, &[&dma, "-Q", "hold", &id], "");
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(None, &[&dma, "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(inst.mailbox(BOB), "");
    // Alice sees her message held, in both listings.
    let o = inst.run(Some(ALICE), &[&inst.path("sbin/sendmail"), "-bp"], "");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\nHeld\t: since "),
        "{}",
        show(&o)
    );
    let o = inst.run(
        Some(ALICE),
        &[&inst.path("sbin/sendmail"), "-bp", "--json"],
        "",
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    assert_eq!(doc["messages"][0]["held"], true, "{doc:#}");
    let o = inst.run(None, &[&dma, "-Q", "release", &id], "");
    assert!(o.status.success(), "{}", show(&o));
    let o = inst.run(None, &[&dma, "-Q", "flush", &id], "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        inst.mailbox(BOB).contains("Subject: q"),
        "{:?}",
        inst.spool_files()
    );
    assert!(ids(&inst).is_empty(), "{:?}", inst.spool_files());
    let other = queue(&inst, Some(ALICE), CAROL);
    let o = inst.run(None, &[&dma, "-Q", "delete", &other], "");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(inst.spool_files(), Vec::<String>::new());
}

#[test]
fn mailq_json_shows_a_user_what_plain_mailq_shows_them() {
    if !need_root("installed_qadmin_json") {
        return;
    }
    let inst = Installed::new();
    std::fs::write(
        inst.root.join("etc/aliases"),
        format!("team: {BOB}, {CAROL}\n"),
    )
    .unwrap();
    let id = queue(&inst, Some(ALICE), "team");
    // Expand it as a run would, by hand: Bob deferred, Carol delivered.
    let env_path = inst.root.join(format!("spool/{id}.env"));
    let text = std::fs::read_to_string(&env_path).unwrap();
    let text = text.replace(
        "rcpt team\nstate pending\nend 1\n",
        &format!(
            "rcpt team\nstate expanded\n\
             rcpt {BOB}\nparent 0\norigin alias:team\nstate deferred\nattempts 1\nnext-try 4102444800\nreply 4.2.0%20busy\n\
             rcpt {CAROL}\nparent 0\norigin alias:team\nstate delivered\nattempts 1\nend 3\n"
        ),
    );
    assert!(text.contains("end 3\n"), "{text}");
    std::fs::write(&env_path, text).unwrap();
    let json = |who| {
        let o = inst.run(who, &[&inst.path("sbin/sendmail"), "-bp", "--json"], "");
        assert!(o.status.success(), "{}", show(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", show(&o)))
    };
    let alice = json(Some(ALICE));
    assert_eq!(alice["version"], 1);
    assert_eq!(alice["view"], "as-submitted");
    assert_eq!(
        alice["messages"][0]["recipients"],
        serde_json::json!([{"address": "team", "via": null, "state": "expanded",
            "attempts": 0, "next_try": null, "last_reply": null, "host": null,
            "destinations": {"delivered": 1, "pending": 0, "deferred": 1, "failed": 0}}])
    );
    let plain = inst.run(Some(ALICE), &[&inst.path("sbin/sendmail"), "-bp"], "");
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(
        !plain.contains(BOB) && !alice.to_string().contains(BOB),
        "{plain}\n{alice}"
    );
    let root = json(None);
    assert_eq!(root["view"], "full");
    let rs = root["messages"][0]["recipients"].as_array().unwrap();
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[1]["address"], BOB);
    assert_eq!(rs[1]["via"], "team");
    assert_eq!(rs[1]["next_try"], "2100-01-01T00:00:00Z");
    assert_eq!(rs[1]["last_reply"], "4.2.0 busy");
}
