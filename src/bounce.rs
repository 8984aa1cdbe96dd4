//! Bounces: RFC 3464 delivery status notifications, queued like any mail.
//!
//! A bounce goes from `<>` to the envelope sender, as `multipart/report`
//! with a human-readable part, a `message/delivery-status` part and the
//! original headers (`text/rfc822-headers`), or the whole message
//! (`message/rfc822`) with FULLBOUNCE. A bounce is never bounced: when one
//! fails, a report goes to `postmaster` if that alias exists (once: if that
//! fails too it is dropped), else it is dropped with a log line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::address::{self, Dest};
use crate::context::Ctx;
use crate::intake;
use crate::spool::{Envelope, Locked, Origin, Rcpt, now};
use crate::{error, info};

/// The enhanced status code at the start of a reply, or a default by class.
pub fn status_of(reply: &str) -> String {
    let first = reply.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        first.to_string()
    } else {
        "5.0.0".to_string()
    }
}

/// The address a report names for `r`: for a command or file, the address
/// whose `.forward` or alias it came from (the text says which command).
fn final_recipient(r: &Rcpt, ctx: &Ctx) -> String {
    let special = r.addr.starts_with(['|', '/']) || r.addr.starts_with(":include:");
    match (&r.origin, special) {
        (Some(Origin::Forward(u) | Origin::Alias(u)), true) => qualify(u, ctx),
        _ => qualify(&r.addr, ctx),
    }
}

/// An address as it appears in reports: a local name gets our mail name.
pub fn qualify(addr: &str, ctx: &Ctx) -> String {
    let addr = addr.trim_start_matches('\\');
    match address::classify(addr, &ctx.local_domains) {
        Dest::Local(n) => format!("{n}@{}", ctx.hostname),
        Dest::Remote { addr, .. } => addr,
    }
}

/// Queues the bounce for recipients `failed` of `env` and returns it, locked,
/// or `None` when nothing is to be sent (a failed bounce with no postmaster).
pub fn queue(
    ctx: &mut Ctx,
    env: &Envelope,
    data: &Path,
    failed: &[usize],
) -> io::Result<Option<Locked>> {
    if let Some(n) = &env.dsn.notify
        && !n.split(',').any(|p| p == "FAILURE")
    {
        info!("NOTIFY={n}: no bounce for the failed recipients");
        return Ok(None);
    }
    let full = match env.dsn.ret.as_deref() {
        Some("FULL") => true,
        Some(_) => false,
        None => ctx.config.fullbounce,
    };
    let (to, double) = if env.sender.is_empty() {
        let has_postmaster = ctx
            .aliases()
            .map(|a| a.contains("postmaster"))
            .unwrap_or(false);
        if env.double_bounce || !has_postmaster {
            error!("can not bounce a bounce message, discarding");
            return Ok(None);
        }
        ("postmaster".to_string(), true)
    } else {
        (env.sender.clone(), false)
    };
    let (id, file) = ctx.spool.create()?;
    let date = intake::rfc2822_now();
    let stamp = intake::Stamp {
        id: id.clone(),
        sender: String::new(),
        user: "MAILER-DAEMON".into(),
        uid: 0,
        hostname: ctx.hostname.clone(),
        date: date.clone(),
    };
    let boundary = format!(
        "{id}.{:08x}/{}",
        getrandom::u32().unwrap_or(0),
        ctx.hostname
    );
    let mut w = BufWriter::new(&file);
    w.write_all(intake::received(&stamp).as_bytes())?;
    write!(
        w,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\n\
         To: <{to}>\n\
         Subject: {subject}\n\
         Date: {date}\n\
         Message-ID: {mid}\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{boundary}\n\
         Content-Description: Notification\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         This is the dma-rs mail system at {host}.\n\
         \n\
         There was an error delivering your mail to the following recipient(s):\n\
         \n",
        host = ctx.hostname,
        subject = if double {
            "Undeliverable bounce"
        } else {
            "Mail delivery failed"
        },
        mid = intake::message_id(&stamp),
    )?;
    for &i in failed {
        let r = &env.rcpts[i];
        let final_rcpt = final_recipient(r, ctx);
        let via = if final_rcpt == qualify(&r.addr, ctx) {
            String::new()
        } else {
            match &r.origin {
                // A user's commands and files (and their arguments) are
                // theirs: the sender learns what failed, not how it was
                // written. The aliases file is the system's own.
                Some(Origin::Forward(u)) if r.addr.starts_with(['|', '/']) => {
                    let what = if r.addr.starts_with('|') {
                        "command"
                    } else {
                        "file"
                    };
                    format!(" (delivering to a {what} in the .forward of {u})")
                }
                _ => format!(" (delivering to `{}')", r.addr),
            }
        };
        writeln!(
            w,
            "<{final_rcpt}>{via}: {}",
            crate::escape::controls(r.reply.as_deref().unwrap_or(""))
        )?;
    }
    write!(
        w,
        "\n{}\n\n--{boundary}\n\
         Content-Description: Delivery report\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; {host}\n\
         X-Dma-Rs-Queue-ID: {qid}\n\
         Arrival-Date: {arrival}\n",
        if full {
            "The original message follows."
        } else {
            "The headers of the original message follow."
        },
        host = ctx.hostname,
        qid = env.id,
        arrival = arrival_date(env.created),
    )?;
    for &i in failed {
        write_dsn_fields(&mut w, env, &env.rcpts[i], ctx)?;
    }
    let original = BufReader::new(File::open(data)?);
    if full {
        write!(
            w,
            "\n--{boundary}\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n"
        )?;
        copy_lines(original, &mut w, false)?;
    } else {
        write!(
            w,
            "\n--{boundary}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
        )?;
        copy_lines(original, &mut w, true)?;
    }
    write!(w, "\n--{boundary}--\n")?;
    w.flush()?;
    drop(w);
    let mut bounce = Envelope {
        id: id.clone(),
        created: now(),
        sender: String::new(),
        user: "MAILER-DAEMON".into(),
        uid: 0,
        size: None,
        double_bounce: double,
        held: None,
        dsn: Default::default(),
        dkim: Vec::new(),
        rcpts: vec![Rcpt::new(to, None)],
    };
    ctx.spool.commit(&file, &mut bounce)?;
    info!("delivery failed, bouncing as {id}");
    Ok(Some(Locked {
        data: file,
        env: bounce,
    }))
}

fn write_dsn_fields(w: &mut impl Write, env: &Envelope, r: &Rcpt, ctx: &Ctx) -> io::Result<()> {
    let reply = r.reply.as_deref().unwrap_or("5.0.0 unknown error");
    let mut top = r;
    while let Some(p) = top.parent {
        top = &env.rcpts[p];
    }
    writeln!(w, "\nFinal-Recipient: rfc822; {}", final_recipient(r, ctx))?;
    if !std::ptr::eq(top, r) {
        writeln!(w, "Original-Recipient: rfc822; {}", qualify(&top.addr, ctx))?;
    }
    writeln!(w, "Action: failed")?;
    writeln!(w, "Status: {}", status_of(reply))?;
    if let Some(mta) = &r.mta {
        let mta = crate::escape::controls(mta);
        let host = mta.split(' ').next().unwrap_or(&mta);
        writeln!(w, "Remote-MTA: dns; {host}")?;
    }
    match &r.smtp {
        Some(smtp) => writeln!(
            w,
            "Diagnostic-Code: smtp; {}",
            crate::escape::controls(smtp)
        )?,
        None => writeln!(
            w,
            "Diagnostic-Code: X-Dma-Rs; {}",
            crate::escape::controls(reply)
        )?,
    }
    Ok(())
}

fn arrival_date(created: i64) -> String {
    jiff::Timestamp::from_second(created)
        .map(|t| t.to_zoned_datetime(crate::clock::local_tz().clone()))
        .ok()
        .and_then(|z| jiff::fmt::rfc2822::to_string(&z).ok())
        .unwrap_or_default()
}

/// Copies the original message (only its header section when `headers_only`).
fn copy_lines(mut r: impl BufRead, w: &mut impl Write, headers_only: bool) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if headers_only && line == b"\n" {
            return Ok(());
        }
        w.write_all(&line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        for (reply, status) in [
            ("5.1.1 bob: unknown user", "5.1.1"),
            ("4.4.7 could not deliver", "4.4.7"),
            ("550 no", "5.0.0"),
            ("", "5.0.0"),
            ("5.1 x", "5.0.0"),
        ] {
            assert_eq!(status_of(reply), status, "{reply:?}");
        }
    }
}
