//! Local delivery: the writers that run as the recipient (in `dma-local`),
//! and the caller side that hands a message to `dma-local`.

mod deadline;
pub mod dotforward;
pub mod file;
pub mod helper;
pub mod mbox;
pub mod pipe;
mod rollback;
pub mod session;

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::context::Ctx;
use crate::deliver::Outcome;
use crate::exit::{EX_NOUSER, EX_UNAVAILABLE};
use crate::spool::Origin;
use dotforward::ForwardFile;

/// What a `dma-local` run may take beyond its own waits: starting, the
/// user's process, reading and writing.
const CALL_MARGIN: Duration = Duration::from_secs(60);

/// How long one `dma-local` run may take before the caller gives up on it:
/// the command time limit (PIPE_TIMEOUT) and the two lock waits of a
/// mailbox delivery (the dotlock, then the fcntl lock), plus a margin. The
/// helper's own limits (see [`user_limit`]) end it well before.
pub fn call_limit(config: &Config) -> Duration {
    config.pipe_timeout + 2 * mbox::LOCK_TIMEOUT + CALL_MARGIN
}

/// How long the helper's root parent waits for its process that runs as
/// the user (which waits for the fcntl lock, or runs the command) before
/// it kills it: shorter than [`call_limit`] by the dotlock wait and half
/// the margin, so that the root parent, which holds the dotlock, ends
/// first and removes it.
pub fn user_limit(config: &Config) -> Duration {
    config.pipe_timeout + mbox::LOCK_TIMEOUT + CALL_MARGIN / 2
}

/// Runs `dma-local MODE ARGS...` with the message (a duplicate of the locked
/// data file descriptor, rewound) on stdin when `data` is given, so that the
/// message lock is held until the helper is done, even if we die first.
/// Returns its stdout, or the outcome its failure means. Goes through the
/// run's helper session when it has one (see [`session`]). A run that
/// takes longer than [`call_limit`] is deferred, and the helper (or its
/// session) is killed if we may and let go of in any case.
fn call(
    ctx: &Ctx,
    mode: &str,
    args: &[(&str, &str)],
    data: Option<&File>,
) -> Result<String, Outcome> {
    let Some((status, stdout, stderr)) = run_helper(ctx, mode, args, data, &[])? else {
        return Err(Outcome::Deferred("4.3.0 no dma-local session".into()));
    };
    match status {
        Ok(0) => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        status => Err(failure(status, &stderr)),
    }
}

/// What a `dma-local` run that did not succeed means: its first line on
/// stderr, permanent for 67 (no such user) and 69, else temporary.
fn failure(status: Result<i32, i32>, stderr: &[u8]) -> Outcome {
    let err = String::from_utf8_lossy(stderr);
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
        Ok(EX_NOUSER | EX_UNAVAILABLE) => Outcome::Failed(or("5.0.0 dma-local failed".into())),
        Ok(code) => Outcome::Deferred(or(format!("4.3.0 dma-local exited {code}"))),
        Err(signal) => Outcome::Deferred(format!("4.3.0 dma-local ended by signal {signal}")),
    }
}

/// Runs `dma-local MODE ARGS...` as [`call`] does, and returns how it ended
/// and what it wrote. With `extra` descriptors (a batch's messages, which
/// it gets as descriptors 3, 4, ...) it only runs through the run's helper
/// session: `Ok(None)` when there is none.
fn run_helper(
    ctx: &Ctx,
    mode: &str,
    args: &[(&str, &str)],
    data: Option<&File>,
    extra: &[&File],
) -> Result<Option<Ran>, Outcome> {
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
    let limit = call_limit(&ctx.config);
    let deadline = Deadline {
        at: Instant::now() + limit,
        limit,
    };
    match call_session(ctx, &argv, input.as_ref(), extra, &deadline)? {
        Some(done) => Ok(Some(done)),
        None if !extra.is_empty() => Ok(None),
        None => call_exec(
            &ctx.helper,
            ctx.config_override.as_deref(),
            &argv,
            input,
            &deadline,
        )
        .map(Some),
    }
}

/// A helper run's exit code (or the signal that ended it), stdout, stderr.
type Ran = (Result<i32, i32>, Vec<u8>, Vec<u8>);

/// When a `dma-local` run must be over.
struct Deadline {
    at: Instant,
    /// What it was set to, for the reason.
    limit: Duration,
}

impl Deadline {
    fn passed(&self) -> Outcome {
        Outcome::Deferred(format!(
            "4.3.0 dma-local timed out after {}s",
            self.limit.as_secs()
        ))
    }
}

/// Runs the helper through the run's session, starting it on first use.
/// `Ok(None)`: this run has no session (or it broke before taking the
/// request): run the helper directly.
fn call_session(
    ctx: &Ctx,
    argv: &[String],
    input: Option<&File>,
    extra: &[&File],
    deadline: &Deadline,
) -> Result<Option<Ran>, Outcome> {
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
    let extra: Vec<_> = extra.iter().map(|f| f.as_fd()).collect();
    match s.call(&argv, input.map(|f| f.as_fd()), &extra, deadline.at) {
        Ok(f) => Ok(Some((f.code, f.stdout, f.stderr))),
        Err(CallError::NotSent(e)) => {
            crate::warning!("dma-local session lost ({e}); running it per delivery");
            *slot = Use::Failed;
            Ok(None)
        }
        Err(CallError::TimedOut) => {
            crate::warning!("dma-local session timed out; starting another for what follows");
            // Dropping it kills it if we may; the next delivery starts a
            // fresh one.
            *slot = Use::Wanted;
            Err(deadline.passed())
        }
        Err(CallError::Lost(e)) => {
            *slot = Use::Failed;
            Err(Outcome::Deferred(format!(
                "4.3.0 dma-local session ended during the delivery: {e}"
            )))
        }
    }
}

/// Runs the helper as a program of its own, until `deadline`.
fn call_exec(
    helper: &Path,
    config_override: Option<&Path>,
    argv: &[String],
    input: Option<File>,
    deadline: &Deadline,
) -> Result<Ran, Outcome> {
    let mut cmd = Command::new(helper);
    cmd.args(argv);
    if let Some(c) = config_override {
        cmd.arg("--config").arg(c);
    }
    match input {
        Some(f) => cmd.stdin(f),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Outcome::Deferred(format!("4.3.0 can not run {}: {e}", helper.display())))?;
    let out = child.stdout.take().expect("piped").into();
    let err = child.stderr.take().expect("piped").into();
    let ran = deadline::read_both(out, err, deadline.at)
        .map_err(|e| format!("4.3.0 reading the output of dma-local: {e}"))
        .and_then(|output| {
            let status = match output {
                Some(_) => deadline::wait(&mut child, deadline.at)
                    .map_err(|e| format!("4.3.0 waiting for dma-local: {e}"))?,
                None => None,
            };
            Ok(output.zip(status))
        });
    let (stdout, stderr, status) = match ran {
        Ok(Some(((stdout, stderr), status))) => (stdout, stderr, status),
        Ok(None) => {
            deadline::kill(&mut child);
            return Err(deadline.passed());
        }
        Err(why) => {
            deadline::kill(&mut child);
            return Err(Outcome::Deferred(why));
        }
    };
    let status = match status.code() {
        Some(c) => Ok(c),
        None => Err(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
    };
    Ok((status, stdout, stderr))
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

/// One message of a batch for one mailbox ([`deliver_mailbox_batch`]).
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// The locked data file.
    pub data: &'a File,
    /// The envelope sender.
    pub sender: &'a str,
    /// Header lines to add.
    pub prepend: &'a [String],
}

/// Delivers the messages `items` to `user`'s mailbox, as
/// [`deliver_mailbox`] does each, but in one `dma-local` run: one dotlock
/// and fcntl lock, every message appended, one fdatasync. Each message's
/// data file goes to it as a descriptor, which only a helper session can
/// take: without one, the messages go one by one. Returns one result per
/// item, in order: if the run fails part-way, the messages before the one
/// that failed are in the mailbox, durable, and delivered; that one and
/// the rest are not in it, and get the failure (nothing lost, nothing
/// doubled). With `check_forward`, a `.forward` with entries is read once
/// and every message gets it.
pub fn deliver_mailbox_batch(
    ctx: &Ctx,
    user: &str,
    check_forward: bool,
    items: &[BatchItem],
) -> Vec<Mailbox> {
    let one_by_one = || {
        items
            .iter()
            .map(|it| deliver_mailbox(ctx, it.data, it.sender, user, it.prepend, check_forward))
            .collect()
    };
    if items.len() < 2 {
        return one_by_one();
    }
    let numbers: Vec<String> = (0..items.len()).map(|k| k.to_string()).collect();
    let mut args = vec![("user", user)];
    if check_forward {
        args.push(("forward-check", "yes"));
    }
    for (it, k) in items.iter().zip(&numbers) {
        args.push(("message", k.as_str()));
        args.push(("sender", sender_arg(it.sender)));
        args.extend(it.prepend.iter().map(|h| ("prepend", h.as_str())));
    }
    let fds: Vec<&File> = items.iter().map(|it| it.data).collect();
    // Whose mailbox a message went to may be an expansion's secret: for
    // the log, not for a submitter's `-v`.
    let was = crate::logging::set_private(true);
    crate::info!(
        "{} messages for the mailbox of {user}, in one delivery",
        items.len()
    );
    crate::logging::set_private(was);
    let (status, stdout, stderr) = match run_helper(ctx, "mbox", &args, None, &fds) {
        Ok(Some(ran)) => ran,
        Ok(None) => return one_by_one(),
        Err(o) => {
            return items
                .iter()
                .map(|_| Mailbox::Done(o.clone(), None))
                .collect();
        }
    };
    let out = String::from_utf8_lossy(&stdout);
    let (count, answer) = match out.split_once('\n') {
        Some((first, rest)) => (
            first
                .strip_prefix("count ")
                .and_then(|n| n.parse::<usize>().ok()),
            rest,
        ),
        None => (None, ""),
    };
    let malformed = || Outcome::Deferred("4.3.0 dma-local: malformed answer".into());
    let (count, rest) = match (status, count, helper::MboxAnswer::decode(answer)) {
        // A `.forward` with entries: nothing was delivered (`count 0`).
        (Ok(0), Some(0), Some(helper::MboxAnswer::Forward(e))) => {
            return items.iter().map(|_| Mailbox::Forward(e.clone())).collect();
        }
        (Ok(0), Some(n), Some(helper::MboxAnswer::Delivered(note))) if n == items.len() => {
            return items
                .iter()
                .map(|_| Mailbox::Done(Outcome::Delivered, note.clone()))
                .collect();
        }
        (Ok(0), _, _) => (0, malformed()),
        // What it says is durable is, even if it was killed after saying
        // so: it says it only once it is, and once it has told its root
        // parent not to cut it back.
        (status, n, _) => (n.unwrap_or(0).min(items.len()), failure(status, &stderr)),
    };
    (0..items.len())
        .map(|k| {
            if k < count {
                Mailbox::Done(Outcome::Delivered, None)
            } else {
                Mailbox::Done(rest.clone(), None)
            }
        })
        .collect()
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for dma-local: a shell script.
    fn helper(dir: &Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("dma-local");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn within(secs: u64) -> Deadline {
        let limit = Duration::from_secs(secs);
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// Kills the process whose pid a test's helper (or command) wrote into
    /// the file, giving it a moment to start.
    pub(crate) fn kill_pid_in(file: &Path) {
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_helper_that_hangs_is_given_up_at_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let p = pidfile.display();
        // Hangs itself; or exits, leaving a process in a session of its own
        // (which a helper running as root would be to us: out of reach)
        // that holds its output open.
        for body in [
            "exec sleep 1000".to_string(),
            format!("setsid -f sh -c 'echo $$ > {p}; exec sleep 1000'; exit 0"),
        ] {
            let h = helper(d.path(), &body);
            let start = Instant::now();
            let r = call_exec(&h, None, &["mbox".into()], None, &within(1));
            let took = start.elapsed();
            kill_pid_in(&pidfile);
            let _ = std::fs::remove_file(&pidfile);
            match r {
                Err(Outcome::Deferred(why)) => assert!(why.contains("timed out"), "{body}: {why}"),
                other => panic!("{body}: {other:?}"),
            }
            assert!(took < Duration::from_secs(4), "{body}: took {took:?}");
        }
    }

    #[test]
    fn helper_output_is_bounded_and_its_answer_kept() {
        let d = tempfile::tempdir().unwrap();
        let h = helper(
            d.path(),
            "head -c 5000000 /dev/zero; head -c 300000 /dev/zero >&2; exit 75",
        );
        let (status, out, err) = call_exec(&h, None, &["mbox".into()], None, &within(20)).unwrap();
        assert_eq!(status, Ok(75));
        assert_eq!(out.len(), deadline::MAX_STDOUT);
        assert_eq!(err.len(), deadline::MAX_STDERR);
    }

    #[test]
    fn the_helper_ends_before_the_caller_gives_up() {
        let c = Config::default();
        assert!(user_limit(&c) + mbox::LOCK_TIMEOUT < call_limit(&c));
    }
}
