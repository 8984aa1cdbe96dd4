//! Routing by MX through the real binary: a fake DNS server (NAMESERVER)
//! and fake SMTP servers on 127.0.0.N:25 (root binds port 25).

#[path = "support/dns.rs"]
mod fakedns;
#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::net::Ipv4Addr;

use fakedns::{FakeDns, Record};
use smtpd::{Behavior, FakeSmtp};
use support::*;

fn mx(d: &str, p: u16, x: &str) -> Record {
    Record::Mx(d.into(), p, x.into())
}

fn a(n: &str, last: u8) -> Record {
    Record::A(n.into(), Ipv4Addr::new(127, 0, 0, last))
}

const MSG: &str = "Subject: mx\n\nbody\n";

#[test]
fn mx_preference_fallback_and_one_transaction_per_host() {
    if !need_root("mx_routing") {
        return;
    }
    // mx1 (preferred) has no server, mx2 has. other.test has the same MX
    // hosts: its recipient joins the same transaction. implicit.test has no
    // MX (implicit MX: its own address, the same server, another session).
    let dns = FakeDns::start(vec![
        mx("example.test", 10, "mx1.example.test"),
        mx("example.test", 20, "mx2.example.test"),
        mx("other.test", 10, "mx1.example.test"),
        mx("other.test", 20, "mx2.example.test"),
        a("mx1.example.test", 11),
        a("mx2.example.test", 12),
        a("implicit.test", 12),
    ]);
    let fake = FakeSmtp::start_on("127.0.0.12:25", Behavior::default());
    let env = Env::new(&format!(
        "NAMESERVER {}\nSMTP_TIMEOUT 3s\nCONNECT_TIMEOUT 2s\n",
        dns.addr()
    ));
    env.send(
        &[
            "-f",
            "s@sender.test",
            "a@example.test",
            "b@example.test",
            "c@other.test",
            "d@implicit.test",
        ],
        MSG,
    )
    .expect(0, &env);
    let m = fake.messages();
    assert_eq!(m.len(), 2, "{}", env.mailq().stdout());
    assert_eq!(
        m[0].rcpts,
        ["a@example.test", "b@example.test", "c@other.test"]
    );
    assert_eq!(m[1].rcpts, ["d@implicit.test"]);
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
}

#[test]
fn null_mx_and_nxdomain_bounce_servfail_defers() {
    if !need_root("mx_failures") {
        return;
    }
    let dns = FakeDns::start(vec![
        mx("nullmx.test", 0, "."),
        Record::NxDomain("nowhere.test".into()),
        Record::ServFail("broken.test".into()),
    ]);
    let env = Env::new(&format!("NAMESERVER {}\n", dns.addr()));
    env.send(
        &[
            "-f",
            BOB,
            "x@nullmx.test",
            "y@nowhere.test",
            "z@broken.test",
        ],
        MSG,
    )
    .expect(0, &env);
    let b = env.messages(BOB);
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("Final-Recipient: rfc822; x@nullmx.test\nAction: failed\nStatus: 5.1.10"),
        "{}",
        b[0]
    );
    assert!(
        b[0].contains("Final-Recipient: rfc822; y@nowhere.test\nAction: failed\nStatus: 5.1.2"),
        "{}",
        b[0]
    );
    let q = env.mailq().stdout();
    assert!(
        q.contains("To\t: z@broken.test\nStatus\t: deferred")
            && q.contains("temporary DNS failure"),
        "{q}"
    );
}
