//! Local delivery: the writers that run as the recipient (in `dma-local`),
//! and the caller side that hands a message to `dma-local`.

pub mod helper;
pub mod mbox;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};

use crate::context::Ctx;
use crate::deliver::Outcome;
use crate::exit::EX_NOUSER;

/// Delivers the message in `data` (the locked data file) to `user`'s mailbox
/// through `dma-local`, which does the writing as that user. The helper's
/// stdin is a duplicate of the locked descriptor, so the message lock is held
/// until the helper is done, even if this process dies first.
pub fn deliver_mailbox(ctx: &Ctx, data: &File, sender: &str, user: &str) -> Outcome {
    let input = match data
        .try_clone()
        .and_then(|mut f| f.seek(SeekFrom::Start(0)).map(|_| f))
    {
        Ok(f) => f,
        Err(e) => return Outcome::Deferred(format!("4.3.0 can not read the queued message: {e}")),
    };
    let mut cmd = Command::new(&ctx.helper);
    cmd.arg("mbox")
        .arg("--user")
        .arg(user)
        .arg("--sender")
        .arg(if sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            sender
        });
    if let Some(c) = &ctx.config_override {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .stdin(input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Deferred(format!("4.3.0 can not run {}: {e}", ctx.helper.display()));
        }
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.by_ref().take(4096).read_to_string(&mut err);
    }
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return Outcome::Deferred(format!("4.3.0 waiting for dma-local: {e}")),
    };
    let reason = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    match status.code() {
        Some(0) => Outcome::Delivered,
        Some(EX_NOUSER) => Outcome::Failed(or(reason, "5.1.1 no such user")),
        Some(code) => Outcome::Deferred(or(reason, &format!("4.3.0 dma-local exited {code}"))),
        None => Outcome::Deferred(format!("4.3.0 dma-local ended by a signal: {status}")),
    }
}

fn or(reason: String, default: &str) -> String {
    if reason.is_empty() {
        default.to_string()
    } else {
        reason
    }
}
