//! `mailq` / `-bp`: dma's listing, plus each recipient's state.
//!
//! ```text
//! ID<TAB>: 692a1f3b5c8e9d01
//! From<TAB>: alice@host.example
//! To<TAB>: bob
//! Status<TAB>: deferred, 2 attempts, next try Sun, 29 Nov 2026 11:05:00 +0000: 4.2.0 ...
//! Done<TAB>: 2 recipients delivered
//! --
//! ID<TAB>: ...
//! ```
//! An empty queue prints `Mail queue is empty`.
//!
//! Root sees every recipient, with what aliases and `.forward` files made
//! of it (`To: |/home/bob/bin/filter (via bob)`) and each one's reply.
//! Everyone else sees each message's recipients as they were submitted: an
//! expanded one with a count of where its destinations stand, never the
//! destinations themselves (another user's commands, files and forwarding
//! addresses are theirs alone).

use std::io::{self, Write};

use crate::spool::{Envelope, OpenError, Spool, State};

pub mod json;

/// How much of each message a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every recipient, expansions included (root).
    Full,
    /// The recipients as submitted (everyone else).
    AsSubmitted,
}

/// Writes the listing of `spool` to `out`: the queued messages, then the
/// entries that failed a check (see [`crate::spool::Spool::quarantine`]):
/// those still in place, which the next queue run moves, and those in
/// `SPOOLDIR/corrupt/`.
pub fn list(spool: &Spool, view: View, out: &mut impl Write) -> io::Result<()> {
    let (queued, corrupt) = scan(spool)?;
    let mut first = true;
    for env in &queued {
        if !first {
            writeln!(out, "--")?;
        }
        first = false;
        block(env, view, out)?;
    }
    if first {
        writeln!(out, "Mail queue is empty")?;
    }
    let moved = spool.corrupt()?;
    if corrupt.is_empty() && moved.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "== Corrupt entries, never delivered ({}):",
        spool.dir().join(crate::spool::CORRUPT_DIR).display()
    )?;
    for (id, why) in corrupt {
        writeln!(
            out,
            "ID\t: {id}\nStatus\t: corrupt, to be moved there by the next queue run: {}",
            crate::escape::controls(&why)
        )?;
    }
    for (id, when, why) in moved {
        writeln!(
            out,
            "ID\t: {id}\nStatus\t: corrupt, moved there {}: {}",
            time(when),
            crate::escape::controls(&why)
        )?;
    }
    Ok(())
}

/// A corrupt entry still in the queue: its id and why.
pub(crate) type InPlace = (String, String);

/// The queued messages that pass their checks, oldest first, and the
/// entries still in place that fail one (id, why).
pub(crate) fn scan(spool: &Spool) -> io::Result<(Vec<Envelope>, Vec<InPlace>)> {
    let mut queued = Vec::new();
    let mut corrupt = Vec::new();
    for id in spool.ids()? {
        let checked = spool
            .read_env(&id)
            .and_then(|env| match spool.check_data(&env) {
                Ok(()) => Ok(env),
                Err(why) => Err(OpenError::Corrupt(why)),
            });
        match checked {
            Ok(mut env) => {
                // A version 1 envelope says no size: the data file's.
                if env.size.is_none() {
                    env.size = std::fs::metadata(spool.data_path(&id))
                        .ok()
                        .map(|m| m.len());
                }
                queued.push(env);
            }
            Err(OpenError::Busy) => {}
            Err(OpenError::Corrupt(why)) => {
                // Finished and removed while we looked: not corrupt.
                if spool.dir().join(format!("{id}.env")).exists() {
                    corrupt.push((id, why));
                }
            }
            Err(OpenError::Io(e)) => corrupt.push((id, format!("can not read: {e}"))),
        }
    }
    Ok((queued, corrupt))
}

fn block(env: &Envelope, view: View, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "ID\t: {}", env.id)?;
    writeln!(
        out,
        "From\t: {}",
        if env.sender.is_empty() {
            "<>".into()
        } else {
            crate::escape::controls(&env.sender)
        }
    )?;
    // Delivered recipients are no longer queued: one summary line, not a
    // line each that reads as if they were waiting.
    let mut delivered = 0;
    for (i, r) in env.rcpts.iter().enumerate() {
        if r.state == State::Delivered && (view == View::Full || r.parent.is_none()) {
            delivered += 1;
            continue;
        }
        if view == View::AsSubmitted {
            if r.parent.is_none() {
                writeln!(out, "To\t: {}", crate::escape::controls(&r.addr))?;
                writeln!(out, "Status\t: {}", submitted_status(env, i))?;
            }
            continue;
        }
        match r.parent {
            Some(p) => writeln!(
                out,
                "To\t: {} (via {})",
                crate::escape::controls(&r.addr),
                crate::escape::controls(&env.rcpts[p].addr)
            )?,
            None => writeln!(out, "To\t: {}", crate::escape::controls(&r.addr))?,
        }
        let status = status(r);
        writeln!(out, "Status\t: {status}")?;
    }
    if delivered > 0 {
        writeln!(
            out,
            "Done\t: {delivered} recipient{} delivered",
            if delivered == 1 { "" } else { "s" }
        )?;
    }
    // After the recipients: scripts written for dma's listing read the
    // lines above in this order.
    writeln!(out, "Arrival\t: {}", time(env.created))?;
    writeln!(out, "Size\t: {} bytes", env.size.unwrap_or(0))?;
    if let Some(t) = env.held {
        writeln!(
            out,
            "Held\t: since {}, not tried until released (dma -Q release {})",
            time(t),
            env.id
        )?;
    }
    Ok(())
}

/// The state of submitted recipient `i`: its own, or for one that was
/// expanded, how many of its final destinations stand where.
fn submitted_status(env: &Envelope, i: usize) -> String {
    let r = &env.rcpts[i];
    if r.state != State::Expanded {
        return status(r);
    }
    let counts = destinations(env, i);
    let parts: Vec<String> = ["delivered", "pending", "deferred", "failed"]
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    format!("expanded: {}", parts.join(", "))
}

/// How many of the final destinations of recipient `i` (through aliases
/// and `.forward` files) are delivered, pending, deferred and failed.
pub(crate) fn destinations(env: &Envelope, i: usize) -> [usize; 4] {
    let descends = |mut j: usize| {
        while let Some(p) = env.rcpts[j].parent {
            if p == i {
                return true;
            }
            j = p;
        }
        false
    };
    let mut counts = [0usize; 4];
    for (j, d) in env.rcpts.iter().enumerate() {
        if !descends(j) {
            continue;
        }
        match d.state {
            State::Expanded => {}
            State::Delivered => counts[0] += 1,
            State::Pending => counts[1] += 1,
            State::Deferred => counts[2] += 1,
            State::Failed { .. } => counts[3] += 1,
        }
    }
    counts
}

/// A recipient's own state and reply.
pub(crate) fn status(r: &crate::spool::Rcpt) -> String {
    let reply = r
        .reply
        .as_deref()
        .map(|s| format!(": {}", crate::escape::controls(s)))
        .unwrap_or_default();
    match r.state {
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
            // 0: requeued by an administrator.
            if r.next_try == 0 {
                "at the next queue run".to_string()
            } else {
                time(r.next_try)
            }
        ),
    }
}

/// `secs` (unix) as an RFC 2822 date in the local time zone.
pub(crate) fn time(secs: i64) -> String {
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
        let mut env = Envelope {
            id,
            created: 0,
            sender: "alice@here.example".into(),
            user: "alice".into(),
            uid: 1000,
            size: None,
            double_bounce: false,
            held: None,
            dsn: Default::default(),
            dkim: Vec::new(),
            rcpts: vec![r],
        };
        spool.commit(&data, &mut env).unwrap();
        let mut out = Vec::new();
        list(&spool, View::Full, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(": 4.0.0 mx said 421 \\x1b[2J\\x07busy\\r\\nnow\n"),
            "{out}"
        );
        assert!(!out.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'));
    }
}
