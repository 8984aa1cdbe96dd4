//! Issue 11 through an installed copy: a batch of messages for a user
//! whose `.forward` has entries. Any sender can make such a batch (two
//! messages to the user, queued before one run); the forwarded mail must
//! still be delivered, each message once.

mod support;

use support::installed::*;
use support::*;

/// Bob forwards to alice; carol queues two messages for bob, and the
/// queue is run: both reach alice, and none stays queued.
#[test]
fn a_batch_for_a_user_with_a_forward_is_forwarded() {
    if !need_root("installed_batch_forward") {
        return;
    }
    let _h = Homes::take();
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    set_forward(BOB, &format!("{ALICE}\n"));
    for n in 1..=2 {
        let o = inst.run(
            Some(CAROL),
            &[&sendmail, "-odq", BOB],
            &format!("Subject: fwd{n}\n\nx\n"),
        );
        assert!(o.status.success(), "{}", show(&o));
    }
    let o = inst.run(None, &[&sendmail, "-v", "-q"], "");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let mbox = inst.mailbox(ALICE);
    assert!(
        mbox.contains("Subject: fwd1") && mbox.contains("Subject: fwd2"),
        "forwarded mail missing from alice's mailbox; run said:\n{err}"
    );
    assert_eq!(mbox.matches("Subject: fwd").count(), 2, "{mbox}");
    assert_eq!(inst.spool_files(), Vec::<String>::new(), "{err}");
}
