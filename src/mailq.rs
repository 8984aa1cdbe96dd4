//! `mailq` / `-bp`: dma's listing, plus each recipient's state.
//!
//! ```text
//! ID<TAB>: 692a1f3b5c8e9d01
//! From<TAB>: alice@host.example
//! To<TAB>: bob
//! Status<TAB>: deferred, 2 attempts, next try Sun, 29 Nov 2026 11:05:00 +0000: 4.2.0 ...
//! --
//! ID<TAB>: ...
//! ```
//! An empty queue prints `Mail queue is empty`.

use std::io::{self, Write};

use crate::spool::{Envelope, OpenError, Spool, State};

/// Writes the listing of `spool` to `out`.
pub fn list(spool: &Spool, out: &mut impl Write) -> io::Result<()> {
    let mut first = true;
    for id in spool.ids()? {
        let env = match spool.read_env(&id) {
            Ok(e) => e,
            Err(OpenError::Busy) => continue,
            Err(OpenError::Corrupt(why)) => {
                if !first {
                    writeln!(out, "--")?;
                }
                first = false;
                writeln!(out, "ID\t: {id}\nStatus\t: unreadable queue file: {why}")?;
                continue;
            }
            Err(OpenError::Io(e)) => return Err(e),
        };
        if !first {
            writeln!(out, "--")?;
        }
        first = false;
        block(&env, out)?;
    }
    if first {
        writeln!(out, "Mail queue is empty")?;
    }
    Ok(())
}

fn block(env: &Envelope, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "ID\t: {}", env.id)?;
    writeln!(
        out,
        "From\t: {}",
        if env.sender.is_empty() {
            "<>"
        } else {
            &env.sender
        }
    )?;
    for r in &env.rcpts {
        match r.parent {
            Some(p) => writeln!(out, "To\t: {} (via {})", r.addr, env.rcpts[p].addr)?,
            None => writeln!(out, "To\t: {}", r.addr)?,
        }
        let reply = r
            .reply
            .as_deref()
            .map(|s| format!(": {}", crate::escape::controls(s)))
            .unwrap_or_default();
        let status = match r.state {
            State::Pending => "pending".to_string(),
            State::Delivered => "delivered".to_string(),
            State::Expanded => "expanded".to_string(),
            State::Failed { bounced } => {
                format!("failed{}{reply}", if bounced { ", bounced" } else { "" })
            }
            State::Deferred => format!(
                "deferred, {} attempt{}, next try {}{reply}",
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                time(r.next_try)
            ),
        };
        writeln!(out, "Status\t: {status}")?;
    }
    Ok(())
}

fn time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .ok()
        .map(|t| t.to_zoned_datetime(crate::clock::local_tz().clone()))
        .and_then(|z| jiff::fmt::rfc2822::to_string(&z).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Rcpt;

    #[test]
    fn control_characters_in_a_stored_reply_are_shown_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        let (id, data) = spool.create().unwrap();
        let mut r = Rcpt::new("bob@remote.example", None);
        r.state = State::Deferred;
        r.attempts = 1;
        // As an older version may have stored it: raw bytes from a server.
        r.reply = Some("4.0.0 mx said 421 \x1b[2J\x07busy\r\nnow".into());
        let env = Envelope {
            id,
            created: 0,
            sender: "alice@here.example".into(),
            user: "alice".into(),
            uid: 1000,
            double_bounce: false,
            dsn: Default::default(),
            rcpts: vec![r],
        };
        spool.commit(&data, &env).unwrap();
        let mut out = Vec::new();
        list(&spool, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(": 4.0.0 mx said 421 \\x1b[2J\\x07busy\\r\\nnow\n"),
            "{out}"
        );
        assert!(!out.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'));
    }
}
