//! Queue administration, `dma -Q <verb> ...`: show, delete, hold, release,
//! requeue and flush single messages (Postfix's `postsuper` and `postcat`,
//! sendmail's `-qI`/`-Q`, under one flag).
//!
//! Who: root and the members of group `mail` (real ids, not the set-group-id
//! one every caller of `dma` has), who can reach the spool directly anyway;
//! with `-C` (no set-id privilege) anyone, on whatever the file permissions
//! let them touch. Everyone else is refused with `EX_NOPERM` before a file
//! is opened.
//!
//! Every verb takes the message lock a runner takes (the flock on the data
//! file, [`crate::spool::Spool::open_locked`]), waiting up to [`LOCK_WAIT`]
//! for a delivery to finish, then refusing (`EX_TEMPFAIL`): a message is
//! never changed or removed under a runner. A deletion removes the envelope
//! first ([`crate::spool::Spool::remove`]): from then on `mailq` and the
//! runners no longer see the message, and a crash before the data file goes
//! leaves an orphan data file that the next queue run removes.
//!
//! Each action is logged (syslog, facility mail, with the queue id) with the
//! user who asked for it, and said on stdout, one line per message.

use std::ffi::OsString;
use std::io::{self, Seek, Write};
use std::time::{Duration, Instant};

use crate::context::Ctx;
use crate::exit::*;
use crate::spool::{Locked, OpenError, State, now};
use crate::{info, mailq, runner};

/// How long a verb waits for a runner to let go of a message.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Which messages a verb is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// These queue ids.
    Ids(Vec<String>),
    /// Every queued message.
    All,
    /// Messages queued longer ago than this with a deferred recipient
    /// (held messages aside).
    DeferredOlderThan(Duration),
}

/// One administration command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The envelope, every recipient's state, then the message.
    Show(String),
    /// Remove the messages, without a bounce.
    Delete(Select),
    /// Keep the messages from every delivery until released.
    Hold(Vec<String>),
    /// Let held messages go; they are due at the next run.
    Release(Vec<String>),
    /// Make every deferred recipient due at the next run.
    Requeue(Select),
    /// Deliver this message now (what is due after a requeue).
    Flush(String),
}

/// The verbs, as `dma(8)` documents them.
pub const VERBS: &[&str] = &["show", "delete", "hold", "release", "requeue", "flush"];

fn usage(msg: impl Into<String>) -> Fatal {
    Fatal::new(EX_USAGE, msg.into())
}

/// Parses `-Q <verb>` and the arguments after it.
pub fn parse(verb: &str, args: Vec<OsString>) -> Result<Command, Fatal> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.into_string().map_err(|_| usage("invalid argument")))
        .collect::<Result<_, _>>()?;
    let ids = |args: &[String], one: bool| -> Result<Vec<String>, Fatal> {
        if args.is_empty() || (one && args.len() > 1) {
            let what = if one { "one queue id" } else { "queue ids" };
            return Err(usage(format!("-Q {verb}: expects {what}")));
        }
        for a in args {
            if !crate::spool::is_id(a) {
                return Err(usage(format!(
                    "-Q {verb}: `{}' is not a queue id (16 hex digits, as mailq shows)",
                    crate::escape::escape(&a.chars().take(40).collect::<String>())
                )));
            }
        }
        Ok(args.to_vec())
    };
    let select = |args: &[String], older: bool| -> Result<Select, Fatal> {
        match args {
            [all] if all == "ALL" => Ok(Select::All),
            [flag, d] if older && flag == "--deferred-older-than" => {
                crate::config::duration::parse(d)
                    .map(Select::DeferredOlderThan)
                    .ok_or_else(|| usage(format!("-Q {verb}: invalid duration `{d}' (e.g. 5d)")))
            }
            _ => ids(args, false).map(Select::Ids),
        }
    };
    Ok(match verb {
        "show" => Command::Show(ids(&args, true)?.remove(0)),
        "delete" => Command::Delete(select(&args, true)?),
        "hold" => Command::Hold(ids(&args, false)?),
        "release" => Command::Release(ids(&args, false)?),
        "requeue" => Command::Requeue(select(&args, false)?),
        "flush" => Command::Flush(ids(&args, true)?.remove(0)),
        _ => {
            return Err(usage(format!(
                "-Q: unknown verb `{}' (one of: {})",
                crate::escape::escape(&verb.chars().take(40).collect::<String>()),
                VERBS.join(", ")
            )));
        }
    })
}

/// Whether the caller may administer the queue: root or group `mail` by
/// its real ids, or anyone with a private configuration (`private`: `-C`,
/// which gives up the set-id privilege). Call before any change of ids.
pub fn authorize(private: bool) -> Result<(), Fatal> {
    use nix::unistd::{Group, getgid, getgroups, getuid};
    let uid = getuid();
    if private || uid.is_root() {
        return Ok(());
    }
    let mail = Group::from_name("mail").ok().flatten().map(|g| g.gid);
    let member = mail.is_some_and(|m| getgid() == m || getgroups().is_ok_and(|g| g.contains(&m)));
    if member {
        return Ok(());
    }
    Err(Fatal::new(
        EX_NOPERM,
        format!(
            "queue administration (-Q) is for root and group mail only; uid {uid} may not: permission denied"
        ),
    ))
}

/// Who asked, for the log.
#[derive(Debug, Clone)]
pub struct Admin<'a> {
    /// The login name.
    pub name: &'a str,
    /// The real uid.
    pub uid: u32,
    /// How a flush's runner talks back.
    pub request: runner::Request<'a>,
}

/// The outcome of one message: the line for stdout, or a failure with its
/// exit code.
type One = Result<String, Fatal>;

/// Runs `cmd`; returns the exit code: 0 when every message went as asked,
/// else the code of the first that did not (the others are still done).
pub fn run(ctx: &Ctx, cmd: &Command, who: &Admin) -> Result<i32, Fatal> {
    let mut out = io::stdout().lock();
    let results: Vec<One> = match cmd {
        Command::Show(id) => return show(ctx, id, &mut out),
        Command::Flush(id) => return flush(ctx, id, who),
        Command::Delete(sel) => select(ctx, sel)?
            .iter()
            .map(|id| delete(ctx, id, who))
            .collect(),
        Command::Hold(ids) => ids.iter().map(|id| hold(ctx, id, who, true)).collect(),
        Command::Release(ids) => ids.iter().map(|id| hold(ctx, id, who, false)).collect(),
        Command::Requeue(sel) => select(ctx, sel)?
            .iter()
            .map(|id| requeue(ctx, id, who))
            .collect(),
    };
    let mut code = EX_OK;
    for r in results {
        match r {
            Ok(line) => {
                let _ = writeln!(out, "{line}");
            }
            Err(e) => {
                let _ = out.flush();
                eprintln!("{}: {}", crate::progname(), e.msg);
                if code == EX_OK {
                    code = e.code;
                }
            }
        }
    }
    out.flush()
        .map_err(|e| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}")))?;
    Ok(code)
}

/// The ids `sel` stands for.
fn select(ctx: &Ctx, sel: &Select) -> Result<Vec<String>, Fatal> {
    let all = || {
        ctx.spool
            .ids()
            .map_err(|e| Fatal::new(EX_NOINPUT, format!("can not read the queue: {e}")))
    };
    Ok(match sel {
        Select::Ids(ids) => ids.clone(),
        Select::All => all()?,
        Select::DeferredOlderThan(age) => {
            // An age beyond the clock's range selects nothing.
            let before = now().saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            all()?
                .into_iter()
                .filter(|id| {
                    ctx.spool.read_env(id).is_ok_and(|e| {
                        e.held.is_none()
                            && e.created < before
                            && e.rcpts.iter().any(|r| r.state == State::Deferred)
                    })
                })
                .collect()
        }
    })
}

/// Takes the lock on message `id`, waiting up to [`LOCK_WAIT`] for whoever
/// holds it.
fn lock(ctx: &Ctx, id: &str) -> Result<Locked, Fatal> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match ctx.spool.open_locked(id) {
            Ok(m) => return Ok(m),
            Err(OpenError::Busy) => {
                let queued = ctx.spool.dir().join(format!("{id}.env")).exists();
                if !queued {
                    return Err(Fatal::new(
                        EX_NOINPUT,
                        format!("{id}: no such message in the queue"),
                    ));
                }
                if Instant::now() >= until {
                    return Err(Fatal::new(
                        EX_TEMPFAIL,
                        format!(
                            "{id}: being delivered (locked for more than {}s); left as it is, try again later",
                            LOCK_WAIT.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(OpenError::Corrupt(why)) => {
                return Err(Fatal::new(
                    EX_DATAERR,
                    format!(
                        "{id}: corrupt queue entry ({}); the next queue run moves it to {}",
                        crate::escape::controls(&why),
                        ctx.spool.dir().join(crate::spool::CORRUPT_DIR).display()
                    ),
                ));
            }
            Err(OpenError::Io(e)) => return Err(Fatal::new(EX_IOERR, format!("{id}: {e}"))),
        }
    }
}

/// Logs `what` about message `id`, with who did it.
fn log(id: &str, who: &Admin, what: &str) {
    crate::logging::set_queue_id(Some(id));
    info!("{what} by user={} uid={} (dma -Q)", who.name, who.uid);
    crate::logging::set_queue_id(None);
}

fn write_failed(id: &str, e: io::Error) -> Fatal {
    Fatal::new(EX_CANTCREAT, format!("{id}: can not change the queue: {e}"))
}

fn delete(ctx: &Ctx, id: &str, who: &Admin) -> One {
    let msg = lock(ctx, id)?;
    // Envelope first, under the lock: see the module doc.
    ctx.spool.remove(id).map_err(|e| write_failed(id, e))?;
    ctx.spool.sync().map_err(|e| write_failed(id, e))?;
    drop(msg);
    log(id, who, "deleted");
    Ok(format!("{id}: deleted"))
}

/// Holds (`on`) or releases message `id`. A released message's deferred
/// recipients are due at once: it goes at the next queue run.
fn hold(ctx: &Ctx, id: &str, who: &Admin, on: bool) -> One {
    let mut msg = lock(ctx, id)?;
    let env = &mut msg.env;
    match (on, env.held) {
        (true, Some(_)) => return Ok(format!("{id}: held already")),
        (false, None) => return Ok(format!("{id}: not held")),
        (true, None) => env.held = Some(now()),
        (false, Some(_)) => {
            env.held = None;
            due_now(env);
        }
    }
    ctx.spool.write_env(env).map_err(|e| write_failed(id, e))?;
    let what = if on { "held" } else { "released" };
    log(id, who, what);
    Ok(format!("{id}: {what}"))
}

/// Makes every deferred recipient of `env` due now; says how many.
fn due_now(env: &mut crate::spool::Envelope) -> usize {
    let mut n = 0;
    for r in env.rcpts.iter_mut().filter(|r| r.state == State::Deferred) {
        r.next_try = 0;
        n += 1;
    }
    n
}

fn requeue(ctx: &Ctx, id: &str, who: &Admin) -> One {
    let mut msg = lock(ctx, id)?;
    let n = due_now(&mut msg.env);
    if n > 0 {
        ctx.spool
            .write_env(&msg.env)
            .map_err(|e| write_failed(id, e))?;
        log(
            id,
            who,
            &format!("requeued ({n} deferred recipients due now)"),
        );
    }
    let held = if msg.env.held.is_some() {
        " (held: tried once released)"
    } else {
        ""
    };
    Ok(format!(
        "{id}: requeued, {n} deferred recipients due now{held}"
    ))
}

/// Delivers message `id` now: its deferred recipients made due, then the
/// message handed, locked, to a runner, as `-odi` hands a submission.
fn flush(ctx: &Ctx, id: &str, who: &Admin) -> Result<i32, Fatal> {
    let mut msg = lock(ctx, id)?;
    if msg.env.held.is_some() {
        return Err(Fatal::new(
            EX_UNAVAILABLE,
            format!("{id}: held; release it first (dma -Q release {id})"),
        ));
    }
    if due_now(&mut msg.env) > 0 {
        ctx.spool
            .write_env(&msg.env)
            .map_err(|e| write_failed(id, e))?;
    }
    log(id, who, "flushed");
    let job = runner::Job::Message(id.to_string());
    runner::request(ctx, &job, &who.request, Some(&msg.data))
        .map_err(|e| Fatal::new(EX_OSERR, format!("{id}: can not start a runner: {e}")))
}

/// `show`: the envelope, every recipient (expansions too), a blank line,
/// then the message as queued.
fn show(ctx: &Ctx, id: &str, out: &mut impl Write) -> Result<i32, Fatal> {
    let mut msg = lock(ctx, id)?;
    let env = &msg.env;
    let io = |e: io::Error| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}"));
    let mut text = String::new();
    let sender = if env.sender.is_empty() {
        "<>"
    } else {
        &env.sender
    };
    // Addresses are the submitter's words: escaped, as everywhere else.
    let esc = |s: &str| crate::escape::controls(s).into_owned();
    text.push_str(&format!("ID\t: {id}\nFrom\t: {}\n", esc(sender)));
    text.push_str(&format!(
        "User\t: {} (uid {})\nArrival\t: {}\nSize\t: {} bytes\n",
        env.user,
        env.uid,
        mailq::time(env.created),
        env.size.unwrap_or(0)
    ));
    if let Some(t) = env.held {
        text.push_str(&format!("Held\t: since {}\n", mailq::time(t)));
    }
    for (k, v) in [
        ("Notify", &env.dsn.notify),
        ("Return", &env.dsn.ret),
        ("EnvID", &env.dsn.envid),
    ] {
        if let Some(v) = v {
            text.push_str(&format!("{k}\t: {}\n", crate::escape::controls(v)));
        }
    }
    for r in &env.rcpts {
        match r.parent {
            Some(p) => text.push_str(&format!(
                "To\t: {} (via {})\n",
                esc(&r.addr),
                esc(&env.rcpts[p].addr)
            )),
            None => text.push_str(&format!("To\t: {}\n", esc(&r.addr))),
        }
        text.push_str(&format!("Status\t: {}\n", mailq::status(r)));
        if let Some(h) = &r.mta {
            text.push_str(&format!("Host\t: {}\n", crate::escape::controls(h)));
        }
    }
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(io)?;
    let read = |e: io::Error| Fatal::new(EX_IOERR, format!("{id}: can not read the message: {e}"));
    msg.data.rewind().map_err(read)?;
    if io::IsTerminal::is_terminal(&io::stdout()) {
        // On a terminal the sender's escape sequences (window title,
        // clipboard, screen) are shown, not obeyed; into a file or a pipe
        // the message goes byte for byte.
        let mut r = io::BufReader::new(&mut msg.data);
        let mut line = Vec::new();
        while io::BufRead::read_until(&mut r, b'\n', &mut line).map_err(read)? > 0 {
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            writeln!(out, "{}", crate::escape::controls(&text)).map_err(io)?;
            line.clear();
        }
    } else {
        io::copy(&mut msg.data, out).map_err(read)?;
    }
    out.flush().map_err(io)?;
    Ok(EX_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(verb: &str, args: &[&str]) -> Result<Command, Fatal> {
        parse(verb, args.iter().map(OsString::from).collect())
    }

    #[test]
    fn verbs_and_their_arguments() {
        let id = "692a1f3b5c8e9d01";
        let ids = || vec![id.to_string()];
        for (verb, args, want) in [
            ("show", vec![id], Command::Show(id.into())),
            ("flush", vec![id], Command::Flush(id.into())),
            ("hold", vec![id], Command::Hold(ids())),
            ("release", vec![id], Command::Release(ids())),
            ("delete", vec![id], Command::Delete(Select::Ids(ids()))),
            ("delete", vec!["ALL"], Command::Delete(Select::All)),
            (
                "delete",
                vec!["--deferred-older-than", "2d"],
                Command::Delete(Select::DeferredOlderThan(Duration::from_secs(172800))),
            ),
            ("requeue", vec!["ALL"], Command::Requeue(Select::All)),
            (
                "requeue",
                vec![id, id],
                Command::Requeue(Select::Ids(vec![id.into(), id.into()])),
            ),
        ] {
            assert_eq!(p(verb, &args).unwrap(), want, "{verb} {args:?}");
        }
        for (verb, args) in [
            ("show", vec![]),
            ("show", vec![id, id]),
            ("flush", vec!["ALL"]),
            ("hold", vec!["ALL"]),
            ("delete", vec![]),
            ("delete", vec!["../../etc/passwd"]),
            ("delete", vec!["692A1F3B5C8E9D01"]),
            ("delete", vec!["--deferred-older-than", "soon"]),
            ("requeue", vec!["--deferred-older-than", "2d"]),
            ("purge", vec![id]),
        ] {
            let e = p(verb, &args).unwrap_err();
            assert_eq!(e.code, EX_USAGE, "{verb} {args:?}");
        }
        for v in VERBS {
            assert!(p(v, &[id]).is_ok() || p(v, &["ALL"]).is_ok(), "{v}");
        }
    }
}
