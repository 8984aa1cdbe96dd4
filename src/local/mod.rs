//! Local delivery: the writers that run as the recipient (in `dma-local`),
//! and the caller side that hands a message to `dma-local`.

pub mod dotforward;
pub mod file;
pub mod helper;
pub mod mbox;
pub mod pipe;
pub mod session;

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::process::{Command, Stdio};

use crate::context::Ctx;
use crate::deliver::Outcome;
use crate::exit::{EX_NOUSER, EX_UNAVAILABLE};
use crate::spool::Origin;
use dotforward::ForwardFile;

/// Runs `dma-local MODE ARGS...` with the message (a duplicate of the locked
/// data file descriptor, rewound) on stdin when `data` is given, so that the
/// message lock is held until the helper is done, even if we die first.
/// Returns its stdout, or the outcome its failure means. Goes through the
/// run's helper session when it has one (see [`session`]).
fn call(
    ctx: &Ctx,
    mode: &str,
    args: &[(&str, &str)],
    data: Option<&File>,
) -> Result<String, Outcome> {
    let mut argv = vec![mode.to_string()];
    for (k, v) in args {
        argv.push(format!("--{k}"));
        argv.push(v.to_string());
    }
    let input = match data {
        Some(f) => Some(
            f.try_clone()
                .and_then(|mut f| f.seek(SeekFrom::Start(0)).map(|_| f))
                .map_err(|e| {
                    Outcome::Deferred(format!("4.3.0 can not read the queued message: {e}"))
                })?,
        ),
        None => None,
    };
    let (status, stdout, stderr) = match call_session(ctx, &argv, input.as_ref())? {
        Some(done) => done,
        None => call_exec(ctx, &argv, input)?,
    };
    let err = String::from_utf8_lossy(&stderr);
    let reason = err
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let reason: String = reason.chars().take(1000).collect();
    let or = |default: String| {
        if reason.is_empty() {
            default
        } else {
            reason.clone()
        }
    };
    match status {
        Ok(0) => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        Ok(EX_NOUSER | EX_UNAVAILABLE) => Err(Outcome::Failed(or("5.0.0 dma-local failed".into()))),
        Ok(code) => Err(Outcome::Deferred(or(format!(
            "4.3.0 dma-local exited {code}"
        )))),
        Err(signal) => Err(Outcome::Deferred(format!(
            "4.3.0 dma-local ended by signal {signal}"
        ))),
    }
}

/// A helper run's exit code (or the signal that ended it), stdout, stderr.
type Ran = (Result<i32, i32>, Vec<u8>, Vec<u8>);

/// Runs the helper through the run's session, starting it on first use.
/// `Ok(None)`: this run has no session (or it broke before taking the
/// request): run the helper directly.
fn call_session(ctx: &Ctx, argv: &[String], input: Option<&File>) -> Result<Option<Ran>, Outcome> {
    use session::{CallError, Use};
    if ctx
        .config_override
        .as_ref()
        .is_some_and(|c| c.to_str().is_none())
    {
        return Ok(None);
    }
    let mut slot = ctx.helper_session.borrow_mut();
    if matches!(*slot, Use::Wanted) {
        *slot = match session::Session::start(&ctx.helper) {
            Ok(s) => Use::Open(s),
            Err(e) => {
                crate::warning!("can not start a dma-local session ({e}); running it per delivery");
                Use::Failed
            }
        };
    }
    let Use::Open(s) = &mut *slot else {
        return Ok(None);
    };
    let mut argv = argv.to_vec();
    if let Some(c) = ctx.config_override.as_ref().and_then(|c| c.to_str()) {
        argv.push("--config".into());
        argv.push(c.to_string());
    }
    use std::os::fd::AsFd;
    match s.call(&argv, input.map(|f| f.as_fd())) {
        Ok(f) => Ok(Some((f.code, f.stdout, f.stderr))),
        Err(CallError::NotSent(e)) => {
            crate::warning!("dma-local session lost ({e}); running it per delivery");
            *slot = Use::Failed;
            Ok(None)
        }
        Err(CallError::Lost(e)) => {
            *slot = Use::Failed;
            Err(Outcome::Deferred(format!(
                "4.3.0 dma-local session ended during the delivery: {e}"
            )))
        }
    }
}

/// Runs the helper as a program of its own.
fn call_exec(ctx: &Ctx, argv: &[String], input: Option<File>) -> Result<Ran, Outcome> {
    let mut cmd = Command::new(&ctx.helper);
    cmd.args(argv);
    if let Some(c) = &ctx.config_override {
        cmd.arg("--config").arg(c);
    }
    match input {
        Some(f) => cmd.stdin(f),
        None => cmd.stdin(Stdio::null()),
    };
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Outcome::Deferred(format!("4.3.0 can not run {}: {e}", ctx.helper.display()))
        })?;
    let status = match out.status.code() {
        Some(c) => Ok(c),
        None => Err(std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0)),
    };
    Ok((status, out.stdout, out.stderr))
}

fn sender_arg(sender: &str) -> &str {
    if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    }
}

/// What a mailbox delivery came to.
#[derive(Debug)]
pub enum Mailbox {
    /// Delivered, or not (the outcome); with why a `.forward` was ignored.
    Done(Outcome, Option<String>),
    /// `check_forward` found `.forward` entries: nothing was delivered.
    Forward(Vec<crate::forward::Entry>),
}

/// Delivers the message to `user`'s mailbox through `dma-local`, which does
/// the writing as that user; `prepend` are header lines to add. With
/// `check_forward`, dma-local reads the user's `.forward` first and only
/// delivers when it has no entries.
pub fn deliver_mailbox(
    ctx: &Ctx,
    data: &File,
    sender: &str,
    user: &str,
    prepend: &[String],
    check_forward: bool,
) -> Mailbox {
    let mut args = vec![("user", user), ("sender", sender_arg(sender))];
    if check_forward {
        args.push(("forward-check", "yes"));
    }
    args.extend(prepend.iter().map(|h| ("prepend", h.as_str())));
    match call(ctx, "mbox", &args, Some(data)) {
        Ok(_) if !check_forward => Mailbox::Done(Outcome::Delivered, None),
        Ok(out) => match helper::MboxAnswer::decode(&out) {
            Some(helper::MboxAnswer::Delivered(note)) => Mailbox::Done(Outcome::Delivered, note),
            Some(helper::MboxAnswer::Forward(e)) => Mailbox::Forward(e),
            None => Mailbox::Done(
                Outcome::Deferred("4.3.0 dma-local: malformed answer".into()),
                None,
            ),
        },
        Err(o) => Mailbox::Done(o, None),
    }
}

/// Reads `user`'s `.forward` through `dma-local` (as the user). `Err` is a
/// reason to defer.
pub fn read_forward(ctx: &Ctx, user: &str) -> Result<ForwardFile, Outcome> {
    let out = call(ctx, "forward", &[("user", user)], None)?;
    dotforward::decode(&out)
        .ok_or_else(|| Outcome::Deferred("4.3.0 dma-local: malformed answer".into()))
}

/// Reads an `:include:` file through `dma-local` (as ALIAS_USER).
pub fn read_include(ctx: &Ctx, path: &str) -> Result<ForwardFile, Outcome> {
    let out = call(ctx, "include", &[("path", path)], None)?;
    dotforward::decode(&out)
        .ok_or_else(|| Outcome::Deferred("4.3.0 dma-local: malformed answer".into()))
}

/// What a program destination is.
#[derive(Debug, Clone, Copy)]
pub enum Program<'a> {
    /// `|command`.
    Pipe(&'a str),
    /// `/file` or `/maildir/`.
    File(&'a str),
}

/// The envelope of one program delivery.
#[derive(Debug, Clone, Copy)]
pub struct ProgramCall<'a> {
    /// What to run or write.
    pub program: Program<'a>,
    /// What put it there.
    pub origin: &'a Origin,
    /// The envelope sender.
    pub sender: &'a str,
    /// The address being delivered (the `.forward` owner's, or the alias's).
    pub recipient: &'a str,
    /// The top-level recipient it was expanded from.
    pub original: &'a str,
    /// Header lines to add (Delivered-To).
    pub prepend: &'a [String],
}

/// Runs a pipe or writes a file through `dma-local`, as the user the origin
/// names (the `.forward` owner, or ALIAS_USER for aliases).
pub fn deliver_program(ctx: &Ctx, data: &File, p: &ProgramCall) -> Outcome {
    let user = match p.origin {
        Origin::Forward(u) => u.as_str(),
        Origin::Alias(_) => ctx.config.alias_user.as_str(),
    };
    let origin = match p.origin {
        Origin::Forward(u) => format!("forward:{u}"),
        Origin::Alias(a) => format!("alias:{a}"),
    };
    let mut args = vec![
        ("user", user),
        ("origin", origin.as_str()),
        ("sender", sender_arg(p.sender)),
    ];
    let mode = match p.program {
        Program::Pipe(c) => {
            args.extend([
                ("command", c),
                ("recipient", p.recipient),
                ("original", p.original),
            ]);
            "pipe"
        }
        Program::File(f) => {
            args.push(("path", f));
            "file"
        }
    };
    args.extend(p.prepend.iter().map(|h| ("prepend", h.as_str())));
    match call(ctx, mode, &args, Some(data)) {
        Ok(_) => Outcome::Delivered,
        Err(o) => o,
    }
}
