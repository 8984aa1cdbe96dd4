//! Runners: the processes that deliver, and how a submission gets one.
//!
//! The submitter's process only queues (see README, "Privileges"). Every
//! delivery, of anyone's mail, runs in a runner that `dma-local runner`
//! starts: set-id, it has become root entirely and reset its process state
//! (umask 077, fixed resource limits, no inherited descriptors, default
//! signals: [`crate::privsep::reset_process_state`]) before it reads an
//! argument; it then becomes the `mail` user (real, effective and saved
//! ids), forks, starts a session of its own with stdin and stdout on
//! /dev/null, and runs the job. No local user can signal, trace, slow or
//! shape that process, and the one that asked for it can only wait for it.
//!
//! Jobs ([`Job`]):
//! - `background`: after a submission, delivers every fresh message that
//!   is due, over kept connections, and waits a moment for more (the runner
//!   slots, [`WAITING`] and [`IDLE`] below); the submitter does not wait.
//! - `message`: `-odi`: delivers the submitter's message, whose locked data
//!   file it gets as stdin, so that no other runner takes it meanwhile; the
//!   submitter waits.
//! - `queue`, `queue-due`: `-q`, `-q<duration>`; the submitter waits.
//!
//! A waiting submitter gets the runner's stderr through a pipe, for `-v`:
//! the runner writes to it without blocking (a submitter that stops reading
//! loses lines, it cannot stop the run), and only lines about messages that
//! the submitter itself queued (root: all).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::unistd;

use crate::config::{Config, Stamp, conf};
use crate::context::Ctx;
use crate::exit::*;
use crate::privsep::{self, Forked};
use crate::spool::{Envelope, Locked, OpenError};
use crate::{address, crit, deliver, error};

mod reuse;

/// What a runner is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Deliver the fresh messages that are due, and wait a moment for more.
    Background,
    /// Deliver this message (its locked data file is the runner's stdin).
    Message(String),
    /// Run the queue: everything (`-q`), or only what is due (`-q5m`).
    Queue {
        /// Honour backoff.
        due_only: bool,
        /// Only the messages these select (`-qI`, `-qR`, `-qS`).
        select: Vec<Select>,
    },
}

/// What a `-q` selection looks at: sendmail's `-qI`, `-qR`, `-qS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectBy {
    /// The queue id (`I`).
    Id,
    /// A recipient address (`R`).
    Rcpt,
    /// The envelope sender (`S`).
    Sender,
}

/// One `-q[!]X<substring>` selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// What it looks at.
    pub by: SelectBy,
    /// `-q!X`: the messages that do not match.
    pub negate: bool,
    /// The substring (matched without regard to ASCII case, as sendmail
    /// does for addresses; exactly for ids).
    pub pattern: String,
}

impl Select {
    /// Parses the value of `-q` after `I`, `R`, `S` (optionally `!`-led):
    /// `None` if it is not a selection.
    pub fn parse(v: &str) -> Option<Select> {
        let (negate, v) = match v.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let by = match v.chars().next()? {
            'I' => SelectBy::Id,
            'R' => SelectBy::Rcpt,
            'S' => SelectBy::Sender,
            _ => return None,
        };
        let pattern = v[1..].to_string();
        // Empty selects everything: sendmail refuses it, and so do we.
        (!pattern.is_empty() && !pattern.contains(char::is_control)).then_some(Select {
            by,
            negate,
            pattern,
        })
    }

    /// The `-q` value that [`Select::parse`] reads back.
    fn arg(&self) -> String {
        let by = match self.by {
            SelectBy::Id => 'I',
            SelectBy::Rcpt => 'R',
            SelectBy::Sender => 'S',
        };
        format!("{}{by}{}", if self.negate { "!" } else { "" }, self.pattern)
    }

    fn hit(&self, env: &crate::spool::Envelope) -> bool {
        let has = |s: &str| {
            s.to_ascii_lowercase()
                .contains(&self.pattern.to_ascii_lowercase())
        };
        let hit = match self.by {
            SelectBy::Id => env.id.contains(&self.pattern),
            SelectBy::Rcpt => env.rcpts.iter().any(|r| has(&r.addr)),
            SelectBy::Sender => has(&env.sender),
        };
        hit != self.negate
    }
}

/// Whether `env` is selected: by one of the selections of each kind given
/// (sendmail: the same letter twice is either, different letters both).
pub fn selected(select: &[Select], env: &crate::spool::Envelope) -> bool {
    [SelectBy::Id, SelectBy::Rcpt, SelectBy::Sender]
        .iter()
        .all(|by| {
            let of: Vec<&Select> = select.iter().filter(|s| s.by == *by).collect();
            of.is_empty() || of.iter().any(|s| s.hit(env))
        })
}

impl Job {
    fn words(&self) -> Vec<String> {
        match self {
            Job::Background => vec!["--job".into(), "background".into()],
            Job::Message(id) => vec!["--job".into(), "message".into(), "--id".into(), id.clone()],
            Job::Queue { due_only, select } => {
                let mut w = vec![
                    "--job".into(),
                    if *due_only { "queue-due" } else { "queue" }.into(),
                ];
                for s in select {
                    w.extend(["--select".into(), s.arg()]);
                }
                w
            }
        }
    }

    /// Whether the submitter waits for it.
    fn foreground(&self) -> bool {
        !matches!(self, Job::Background)
    }
}

/// Who asks for a runner, and how it should talk.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The submitting user's real uid: `-v` mirrors only lines about its
    /// messages (uid 0: all).
    pub caller_uid: u32,
    /// `-v`.
    pub verbose: bool,
    /// `-L`.
    pub tag: Option<&'a str>,
    /// A queue run ends with a summary line on our stderr.
    pub summary: bool,
}

/// The submitter's side: asks `dma-local` for a runner doing `job`. For a
/// foreground job, `data` (the submitter's locked data file for
/// [`Job::Message`]) becomes its stdin, the call waits for the runner and
/// relays its lines to our stderr, and returns its exit code; for
/// [`Job::Background`] it returns at once (`EX_OK` once the helper runs).
pub fn request(
    ctx: &Ctx,
    job: &Job,
    req: &Request,
    data: Option<&std::fs::File>,
) -> Result<i32, String> {
    let mut cmd = Command::new(&ctx.helper);
    cmd.arg("runner").args(job.words());
    cmd.arg("--caller-uid").arg(req.caller_uid.to_string());
    if req.verbose {
        cmd.args(["--verbose", "yes"]);
    }
    if let Some(t) = req.tag {
        cmd.arg("--tag").arg(t);
    }
    if req.summary {
        cmd.args(["--summary", "yes"]);
    }
    // Our name, for its `-v` lines, when it may be one (argv[0] is the
    // caller's to choose).
    if crate::logging::valid_tag(crate::progname()) {
        cmd.arg("--name").arg(crate::progname());
    }
    if let Some(c) = &ctx.config_override {
        // The runner starts in `/`.
        let abs = std::path::absolute(c).unwrap_or_else(|_| c.clone());
        cmd.arg("--config").arg(abs);
    }
    match data {
        Some(f) => cmd.stdin(f.try_clone().map_err(|e| e.to_string())?),
        None => cmd.stdin(Stdio::null()),
    };
    cmd.stdout(Stdio::null());
    let started = |e: std::io::Error| format!("can not run {}: {e}", ctx.helper.display());
    if !job.foreground() {
        // Not waited for: the message is queued, and the helper says why if
        // it starts no runner (on our stderr and in the log). The runner
        // lets go of our stderr at once.
        cmd.stderr(Stdio::inherit()).spawn().map_err(started)?;
        return Ok(EX_OK);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn().map_err(started)?;
    if let Some(mut err) = child.stderr.take() {
        let mut out = std::io::stderr();
        let _ = std::io::copy(&mut err, &mut out);
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    Ok(st.code().unwrap_or(EX_OSERR))
}

/// The runner's arguments, as `dma-local runner` gets them.
#[derive(Debug)]
struct Args {
    job: Job,
    caller_uid: u32,
    verbose: bool,
    tag: String,
    config: Option<PathBuf>,
    summary: bool,
}

impl Args {
    fn parse(args: &[String]) -> Option<Args> {
        let mut job = None;
        let mut id = None;
        let mut select = Vec::new();
        let mut out = Args {
            job: Job::Background,
            caller_uid: 0,
            verbose: false,
            tag: "dma".into(),
            config: None,
            summary: false,
        };
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next()?;
            match k.as_str() {
                "--job" => job = Some(v.clone()),
                "--id" if crate::spool::is_id(v) => id = Some(v.clone()),
                "--caller-uid" => out.caller_uid = v.parse().ok()?,
                "--verbose" => out.verbose = v == "yes",
                "--summary" => out.summary = v == "yes",
                "--tag" if crate::logging::valid_tag(v) => out.tag = v.clone(),
                "--name" if crate::logging::valid_tag(v) => crate::set_progname(v),
                "--config" => out.config = Some(PathBuf::from(v)),
                "--select" => select.push(Select::parse(v)?),
                _ => return None,
            }
        }
        out.job = match (job?.as_str(), id) {
            ("background", None) => Job::Background,
            ("message", Some(id)) => Job::Message(id),
            ("queue", None) => Job::Queue {
                due_only: false,
                select,
            },
            ("queue-due", None) => Job::Queue {
                due_only: true,
                select,
            },
            _ => return None,
        };
        Some(out)
    }
}

/// `dma-local runner ARGS...`, after `dma-local` has become root and reset
/// its process state: becomes `mail` when started set-id (else stays who
/// it is: a private configuration's run, or root's), forks, and runs the
/// job in the child, in a session of its own. The parent returns at once
/// for a background job, else when the child is done, with its code.
pub fn serve(args: &[String]) -> i32 {
    let setid = privsep::started_setid();
    let parsed = Args::parse(args);
    crate::set_progname("dma");
    let Some(args) = parsed else {
        return refuse(EX_USAGE, "bad runner arguments");
    };
    // Limits a caller lowered and we could not raise again must not reach
    // other users' deliveries (a truncated pipe, a bounce): no runner. (A
    // private or root `-C` run crosses no privilege boundary: its limits
    // are its own business, and tests use them to make writes fail.)
    if setid && let Some((name, value)) = privsep::limit_below_floor() {
        return refuse(
            EX_TEMPFAIL,
            &format!(
                "not starting a runner: resource limit {name} is {value}, \
                 below what delivery needs; the mail stays queued"
            ),
        );
    }
    if setid {
        // Nothing below reads the caller's environment.
        privsep::clear_env(&[]);
        let Some(mail) = privsep::mail_user() else {
            return refuse(EX_OSERR, "no user `mail' to run the queue as");
        };
        // LOGFILE is made here, as root, for mail: a log directory (such
        // as /var/log) is not mail's to write in.
        if let Ok(Config {
            logfile: Some(log), ..
        }) = Config::load(Path::new(conf::DEFAULT_PATH))
        {
            crate::logging::precreate(&log, mail.uid.as_raw(), mail.gid.as_raw());
        }
        if let Err(e) = privsep::become_mail(&mail) {
            return refuse(EX_OSERR, &format!("can not become mail: {e}"));
        }
    }
    privsep::set_env("PATH", "/usr/bin:/bin");
    // Set-id: the system configuration, whatever the caller said.
    let config_path = match (setid, &args.config) {
        (false, Some(p)) => p.clone(),
        _ => PathBuf::from(conf::DEFAULT_PATH),
    };
    let config_override = (!setid).then_some(args.config.clone()).flatten();
    match privsep::fork() {
        Err(e) => refuse(EX_OSERR, &format!("can not start a runner: {e}")),
        Ok(Forked::Parent(pid)) if args.job.foreground() => {
            use nix::sys::wait::{WaitStatus, waitpid};
            loop {
                match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, c)) => return c,
                    Ok(WaitStatus::Signaled(..)) => return EX_SOFTWARE,
                    Err(nix::Error::EINTR) | Ok(_) => continue,
                    Err(_) => return EX_OSERR,
                }
            }
        }
        Ok(Forked::Parent(_)) => EX_OK,
        Ok(Forked::Child) => {
            let _ = unistd::setsid();
            detach_stdio(args.job.foreground(), matches!(args.job, Job::Message(_)));
            let _ = std::env::set_current_dir("/");
            std::process::exit(run_job(&args, &config_path, config_override))
        }
    }
}

/// Says why no runner starts, to the caller (a background submission no
/// longer waits to hear it) and to the log; returns `code`.
fn refuse(code: i32, why: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "dma-local: {why}");
    crate::logging::syslog_only(crate::logging::Level::Warning, &format!("dma-local: {why}"));
    code
}

/// Stdin (unless `keep_stdin`: [`Job::Message`]'s data file) and stdout on
/// /dev/null; stderr too, unless the job is waited for and stderr is a
/// pipe: then the pipe, made non-blocking, for `-v`.
fn detach_stdio(foreground: bool, keep_stdin: bool) {
    use std::os::fd::AsFd;
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    if !keep_stdin {
        let _ = unistd::dup2_stdin(&null);
    }
    let _ = unistd::dup2_stdout(&null);
    let stderr = std::io::stderr();
    let fifo = nix::sys::stat::fstat(stderr.as_fd())
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO);
    if foreground && fifo {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let _ = fcntl(stderr.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    } else {
        let _ = unistd::dup2_stderr(&null);
    }
}

/// Runs the job; returns the runner's exit code.
fn run_job(args: &Args, config_path: &Path, config_override: Option<PathBuf>) -> i32 {
    crate::logging::init(&args.tag, args.verbose);
    crate::logging::mirror_only_for((args.caller_uid != 0).then_some(args.caller_uid));
    // Taken before the file is read: a change made meanwhile is seen.
    let stamp = Stamp::of(config_path);
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            crit!("{e}");
            return EX_CONFIG;
        }
    };
    // A runner is user mail, root, or a private -C run's: it may create it.
    crate::logging::configure(config.logfile.clone(), config.log_syslog, true);
    let mut ctx = Ctx::new(config, config_override);
    ctx.watch(stamp);
    match &args.job {
        Job::Background => {
            background(&mut ctx);
            EX_OK
        }
        Job::Message(id) => match deliver_message(&mut ctx, id) {
            EX_OK if stopped() => EX_CANTCREAT,
            code => code,
        },
        Job::Queue { due_only, select } => match run_queue(&mut ctx, *due_only, select) {
            Ok(tally) => {
                let line = format!(
                    "queue run: {} message{} tried; recipients: {} delivered, {} deferred, {} bounced; {} message{} left in the queue",
                    tally.messages,
                    plural(tally.messages),
                    tally.delivered,
                    tally.deferred,
                    tally.failed,
                    tally.left,
                    plural(tally.left),
                );
                crate::logging::syslog_only(crate::logging::Level::Info, &line);
                if args.summary {
                    let _ = writeln!(std::io::stderr(), "{}: {line}", crate::progname());
                }
                if stopped() { EX_CANTCREAT } else { EX_OK }
            }
            Err(e) => {
                crit!("{e}");
                EX_NOINPUT
            }
        },
    }
}

/// `-odi`: delivers message `id`, whose data file (locked by the submitter,
/// so by us too) is our stdin.
fn deliver_message(ctx: &mut Ctx, id: &str) -> i32 {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = unistd::dup(std::io::stdin().as_fd()) else {
        return EX_OSERR;
    };
    let data = std::fs::File::from(fd);
    let _ = std::fs::File::open("/dev/null").map(|n| unistd::dup2_stdin(&n));
    // It must be that message's data file, not whatever we were handed.
    let same = match (
        data.metadata(),
        std::fs::symlink_metadata(ctx.spool.data_path(id)),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if !same {
        crit!("{id}: not handed its data file; left queued");
        return EX_SOFTWARE;
    }
    match ctx.spool.read_env(id) {
        Ok(env) => deliver_logged(ctx, Locked { data, env }),
        Err(e) => crit!("{id}: can not read the envelope ({e:?}); left queued"),
    }
    EX_OK
}

/// How recently a runner that holds [`WAITING`] or [`IDLE`] must have shown
/// progress (the mtime of that file) for mail to be left to it. A runner
/// stuck on one delivery (a mailbox its owner keeps locked, a slow
/// `.forward` program) holds nobody else's mail for longer: submissions
/// then start a runner of their own.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Marks progress on a runner lock file (see [`HEARTBEAT`]). "Now" needs
/// only write access (a file another runner made is ours to mark too).
fn beat(f: &std::fs::File) {
    use nix::sys::time::TimeSpec;
    let _ = nix::sys::stat::futimens(f, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW);
}

/// Only messages queued this recently are a background runner's business;
/// older ones wait for a queue run.
const FRESH: i64 = 300;

/// The least time from one pass of a background runner to its next: a
/// stream of submissions (a cron burst, a mailing script) is then taken a
/// few messages at a time, and each mailbox's share of them delivered in
/// one `dma-local` run (one lock, one fsync, one removal), instead of one
/// whole delivery per message that the submitter's next message waits
/// behind on a busy machine. A single message waits at most this long.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a runner with nothing left to do waits for more before it
/// exits: a burst of submissions is then delivered by one process, over one
/// `dma-local` session and kept connections, instead of by a runner each.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Background delivery after a submission that let go of its message and
/// found no runner to leave it to. If a runner slot is free, this process
/// becomes a runner: it delivers that message and then every fresh message
/// that is due, over kept connections, until none is left, and waits a
/// moment for more. If every slot is busy, the running runners will pick
/// the message up: a storm of submissions is then delivered by a few
/// processes over a few connections instead of one process and one
/// connection per message. A runner with a session open to a next hop
/// takes that hop's lock, and fresh mail for the hop is left to it
/// ([`reuse`]).
fn background(ctx: &mut Ctx) {
    // As many runners as a queue run has workers, each with its connections.
    let runners = ctx.config.queue_workers.max(1);
    let Some((slot, lock)) = (0..runners).find_map(|n| runner_lock(ctx, n).map(|l| (n, l))) else {
        return;
    };
    ctx.pool = Some(crate::remote::Pool::default());
    *ctx.helper_session.borrow_mut() = crate::local::session::Use::Wanted;
    // Watched before the first look: whatever comes after it is seen.
    let mut st = Lingering {
        watch: reuse::Watch::new(ctx),
        taken: reuse::Taken::default(),
        until: std::time::Instant::now() + LINGER,
    };
    let mut lock = Some(lock);
    // Held while this is the runner that local mail is left to.
    let mut waiting = None;
    // Whether the spool must be looked at whatever the watch says.
    let mut look = true;
    // When the last pass began (see GATHER).
    let mut last_pass: Option<std::time::Instant> = None;
    while !stopped() {
        if look || st.changed() {
            look = false;
            if let Some(t) = last_pass {
                std::thread::sleep(GATHER.saturating_sub(t.elapsed()));
            }
            last_pass = Some(std::time::Instant::now());
            // A runner that offers its connections is not the one that
            // local mail waits for (remote mail would make it let go).
            if waiting.is_none() && !st.taken.advertising() {
                waiting = become_waiting(ctx);
            }
            st.taken.reset_backlog();
            let found = fresh_pass(ctx, &mut st.taken, true, &mut waiting);
            st.taken.end_pass(ctx);
            if found {
                st.until = std::time::Instant::now() + LINGER;
                continue;
            }
        }
        // Nothing left: wait a moment for more, if mail is left to us.
        if waiting.is_some() || st.taken.advertising() {
            if wait_for_work(&mut st, ctx, waiting.as_ref()) {
                // The change was read: look whatever the watch says now.
                look = true;
                continue;
            }
            drop(waiting.take());
            st.taken.release();
            // What was left to us just before we let go.
            if fresh_pass(ctx, &mut st.taken, true, &mut waiting) {
                continue;
            }
        }
        // Give up the slot, then look once more, so that a message queued
        // while every slot was busy is not left behind. The connections go
        // first: whoever takes the slot opens its own, and a smarthost that
        // allows 10 sessions per client must never see more than a slot's
        // worth.
        if let Some(p) = ctx.pool.as_ref() {
            p.close();
        }
        st.taken.release();
        drop(lock.take());
        if !fresh_pass(ctx, &mut st.taken, false, &mut waiting) {
            break;
        }
        match runner_lock(ctx, slot) {
            Some(l) => lock = Some(l),
            None => break,
        }
        look = true;
    }
    if let Some(p) = ctx.pool.take() {
        p.close();
    }
    ctx.helper_session.take();
    ctx.wait_removers(0);
    let _ = ctx.spool.sync();
}

/// A background runner between its passes: what it took and the locks it
/// holds, and the spool's changes.
struct Lingering {
    /// The spool directory's changes (`None`: no inotify; every look is a
    /// scan, and the runner does not linger).
    watch: Option<reuse::Watch>,
    taken: reuse::Taken,
    /// Until when the runner waits for more with nothing to do.
    until: std::time::Instant,
}

impl Lingering {
    /// Whether the spool may hold a message not taken yet.
    fn changed(&self) -> bool {
        self.watch.as_ref().is_none_or(|w| w.changed(&self.taken))
    }
}

/// Whether every recipient of `env` is a local one.
pub fn local_only(ctx: &Ctx, env: &Envelope) -> bool {
    env.rcpts.iter().all(|r| {
        matches!(
            address::classify(&r.addr, &ctx.local_domains),
            address::Dest::Local(_)
        )
    })
}

/// Held by the runner that local mail is left to (while it delivers local
/// mail, or waits for more).
pub const WAITING: &str = ".runner.wait";
/// Held by that runner while it waits with nothing to do: any mail may be
/// left to it.
pub const IDLE: &str = ".runner.idle";

/// Whether a live runner holds the lock `SPOOLDIR/<name>`: it is held,
/// and its holder showed progress within `HEARTBEAT` (2 s).
pub fn runner_holds(ctx: &Ctx, name: &str) -> bool {
    ctx.spool.held(name).is_some_and(|f| {
        f.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < HEARTBEAT))
    })
}

/// Becomes the runner that waits for work, unless one already is.
fn become_waiting(ctx: &Ctx) -> Option<std::fs::File> {
    let f = try_lock_file(ctx, WAITING)?;
    beat(&f);
    Some(f)
}

/// Waits until the runner's linger time is up for a change in the spool
/// directory that may be a fresh message (a queued envelope, a submission
/// letting go of its data file), holding [`IDLE`] and showing that it is
/// alive on `waiting`, [`IDLE`] and its hop locks. Says whether one came;
/// the caller then looks at the spool (still idle: [`IDLE`] goes when it
/// takes a message).
fn wait_for_work(st: &mut Lingering, ctx: &Ctx, waiting: Option<&std::fs::File>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    if st.watch.is_none() {
        return false;
    }
    // Idle: submissions may leave any mail to us, until we take a message
    // (no mail is left to a runner busy with a long pass) or stop waiting.
    st.taken.hold_idle(ctx);
    loop {
        if stopped() {
            break;
        }
        // Alive: mail may still be left to us.
        if let Some(w) = waiting {
            beat(w);
        }
        st.taken.beat();
        if st.changed() {
            return true;
        }
        let left = st
            .until
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // Wake up in time to show we are alive.
        let left = left.min(HEARTBEAT / 4);
        let Some(w) = st.watch.as_ref() else {
            break;
        };
        let mut fds = [PollFd::new(w.fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => break,
        }
    }
    st.taken.let_go_idle();
    false
}

/// The submitter's side, after a background submission let go of its
/// message `env`: whether a live runner will deliver it, so that none need
/// be started. Local mail is left to the runner that waits for it; remote
/// mail to the runner that holds a session to its next hop, if its backlog
/// is short ([`reuse`]); any mail to a runner idle right now; and, with
/// every slot busy, to the runners that hold them (they look again before
/// they stop). Otherwise it gets a runner of its own: parallel connections
/// count, and a slow server must not hold up everything else.
pub fn left_to_runner(ctx: &Ctx, env: &Envelope) -> bool {
    let taken = if local_only(ctx, env) {
        runner_holds(ctx, WAITING)
    } else {
        reuse::hop_takes(ctx, &next_hop_key(ctx, env))
    };
    taken || runner_holds(ctx, IDLE) || all_slots_busy(ctx)
}

/// Whether every runner slot is taken: a runner started now would find
/// none and exit, and the running ones pick up fresh mail before they stop.
pub fn all_slots_busy(ctx: &Ctx) -> bool {
    (0..ctx.config.queue_workers.max(1)).all(|n| ctx.spool.held(&slot_name(n)).is_some())
}

/// Runner slot `n`'s lock file.
fn slot_name(n: usize) -> String {
    format!(".runner.{n}")
}

/// Takes runner slot `n`, if free.
fn runner_lock(ctx: &Ctx, n: usize) -> Option<std::fs::File> {
    try_lock_file(ctx, &slot_name(n))
}

/// Takes the flock on `SPOOLDIR/<name>`, if free.
fn try_lock_file(ctx: &Ctx, name: &str) -> Option<std::fs::File> {
    ctx.spool.lock_file(name).ok().flatten()
}

/// One pass over the fresh messages not `tried` yet by this runner. With
/// `deliver_them`, delivers what is due of each one not locked by someone
/// else and says whether it delivered any; without, only says whether any
/// is due. Before a message with remote recipients, `waiting` is let go:
/// local mail must not wait behind a slow server.
fn fresh_pass(
    ctx: &mut Ctx,
    tried: &mut reuse::Taken,
    deliver_them: bool,
    waiting: &mut Option<std::fs::File>,
) -> bool {
    let since = format!("{:08x}", (crate::spool::now() - FRESH).max(0) as u32);
    let Ok(ids) = ctx.spool.ids() else {
        return false;
    };
    let lifetime = ctx.config.queue_lifetime.as_secs() as i64;
    let retry_max = ctx.config.retry_max.as_secs() as i64;
    let mut found = false;
    // Locked, to be delivered together: one mailbox's share of them in
    // one `dma-local` run.
    let mut batch = Vec::new();
    for id in ids.iter() {
        if stopped() {
            break;
        }
        if id.as_str() < since.as_str() || tried.contains(id) {
            continue;
        }
        let due = ctx
            .spool
            .read_env(id)
            .is_ok_and(|env| deliver::has_due(&env, crate::spool::now(), lifetime, retry_max));
        if !due {
            continue;
        }
        if !deliver_them {
            // Only what nobody is working on counts (the lock is let go at
            // once).
            if ctx.spool.open_locked(id).is_ok() {
                return true;
            }
            continue;
        }
        if let Ok(msg) = ctx.spool.open_locked(id) {
            found = true;
            tried.take(ctx, &msg.env);
            batch.push(msg);
            if batch.len() == deliver::MAX_BATCH {
                deliver_fresh(ctx, std::mem::take(&mut batch), waiting);
            }
        }
    }
    deliver_fresh(ctx, batch, waiting);
    found
}

/// Delivers a fresh pass's `batch` ([`deliver_batch`]). Before one with
/// remote recipients, `waiting` is let go: local mail must not wait behind
/// a slow server.
fn deliver_fresh(ctx: &mut Ctx, batch: Vec<Locked>, waiting: &mut Option<std::fs::File>) {
    if batch.is_empty() {
        return;
    }
    match waiting.as_ref() {
        Some(_) if !batch.iter().all(|m| local_only(ctx, &m.env)) => drop(waiting.take()),
        Some(w) => beat(w),
        None => {}
    }
    deliver_batch(ctx, batch, false);
}

/// Set when the spool could not take a state change: the run stops (see
/// [`deliver_owned`]).
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this run must stop: the spool could not take a state change.
fn stopped() -> bool {
    STOPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Before a message: the configuration files as they are now
/// ([`Ctx::refresh`]: a runner may live on for a while after it read them,
/// and an administrator who edits them expects the next message to follow
/// the edit). A `dma.conf` that no longer parses ends the runner, without
/// delivering anything more: the mail stays queued, and the next runner
/// or submission says the same.
fn refresh_or_exit(ctx: &mut Ctx) {
    if let Err(e) = ctx.refresh() {
        error!("{e}; this runner stops, the mail stays queued");
        if let Some(p) = ctx.pool.take() {
            p.close();
        }
        ctx.helper_session.take();
        std::process::exit(EX_CONFIG);
    }
}

/// Delivers what is due of `msg` (everything with `force`). The log lines
/// meanwhile are about the message's submitter, for `-v` (see
/// [`crate::logging::mirror_only_for`]). An error means the spool could not
/// take a state change (full, read-only): going on would deliver what
/// cannot be recorded, so the run stops ([`stopped`]), the message stays
/// queued, and the reason goes to the log and to a waiting caller.
fn deliver_owned(ctx: &mut Ctx, msg: Locked, force: bool) {
    let id = msg.env.id.clone();
    crate::logging::set_message_owner(Some(msg.env.uid));
    if let Err(e) = deliver::run(ctx, msg, force) {
        stop_run(&id, &e);
    }
    crate::logging::set_message_owner(None);
}

/// Delivers what is due of the messages of `batch` (everything with
/// `force`) together ([`deliver::run_many`]), after reading the
/// configuration again; a spool that can not take a state change stops
/// the run, as in [`deliver_owned`].
fn deliver_batch(ctx: &mut Ctx, batch: Vec<Locked>, force: bool) {
    if batch.is_empty() || stopped() {
        return;
    }
    refresh_or_exit(ctx);
    let res = deliver::run_many(ctx, batch, force);
    crate::logging::set_message_owner(None);
    if let Err((id, e)) = res {
        stop_run(&id, &e);
    }
}

/// Says that the spool could not take message `id`'s state change (`e`),
/// and stops the run (see [`deliver_owned`]).
fn stop_run(id: &str, e: &std::io::Error) {
    let why = format!(
        "{id}: can not record delivery state ({e}); the run stops, the message stays queued"
    );
    // Said to a waiting caller even without -v (and once with it).
    crate::logging::syslog_only(crate::logging::Level::Crit, &why);
    let _ = writeln!(std::io::stderr(), "{}: {why}", crate::progname());
    STOPPED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// [`deliver_owned`], then the spool directory synced.
fn deliver_logged(ctx: &mut Ctx, msg: Locked) {
    deliver_owned(ctx, msg, false);
    ctx.wait_removers(0);
    let _ = ctx.spool.sync();
}

/// `-q`: every message, shared out among QUEUE_WORKERS processes.
fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn run_queue(ctx: &mut Ctx, due_only: bool, select: &[Select]) -> Result<deliver::Tally, String> {
    let dir = ctx.spool.dir().to_path_buf();
    let ids = ctx
        .spool
        .ids()
        .map_err(|e| format!("can not load queue {}: {e}", dir.display()))?;
    if let Err(e) = ctx.spool.reap_orphans() {
        crit!("can not clean the queue: {e}");
    }
    // MTA-STS policies past their max_age (the runner's own directory).
    let sts = dir.join("mta-sts");
    if sts.is_dir() {
        match crate::smtp::mta_sts::cache::remove_expired(&sts, crate::spool::now()) {
            Ok(gone) => gone.iter().for_each(|g| crate::info!("MTA-STS cache: {g}")),
            Err(e) => crate::notice!("MTA-STS cache: {e}"),
        }
    }
    // Messages are shared out among QUEUE_WORKERS processes by next hop:
    // everything for one smarthost or one domain goes to the same worker,
    // over one connection; different next hops are worked on in parallel.
    let workers = ctx.config.queue_workers.max(1).min(ids.len().max(1));
    let mut buckets: Vec<Vec<(String, String)>> = vec![Vec::new(); workers];
    let now = crate::spool::now();
    let lifetime = ctx.config.queue_lifetime.as_secs() as i64;
    let retry_max = ctx.config.retry_max.as_secs() as i64;
    let mut per_hop: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut assigned: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for id in ids {
        let Ok(env) = ctx.spool.read_env(&id) else {
            // Busy or broken: the worker that locks it will say which
            // (unless a selection is given: it can not tell).
            if select.is_empty() {
                buckets[0].push((String::new(), id));
            }
            continue;
        };
        if !selected(select, &env) {
            continue;
        }
        if due_only && !deliver::has_due(&env, now, lifetime, retry_max) {
            continue;
        }
        // Up to HOP_SESSIONS connections per next hop, each in its own
        // worker: messages of one hop are dealt out among them in turn.
        let hop = next_hop_key(ctx, &env);
        // A mailbox is one hop session: its messages go to one worker,
        // which delivers them together (workers sharing a mailbox would
        // only queue up on its lock).
        let sessions = if hop.starts_with(LOCAL_HOP) {
            1
        } else {
            ctx.config.hop_sessions.max(1)
        };
        let k = per_hop.entry(hop.clone()).or_insert(0usize);
        let key = format!("{hop}#{}", *k % sessions);
        *k += 1;
        // Each next hop (or hop session) goes to the next worker in turn.
        let next = assigned.len();
        let b = *assigned.entry(key.clone()).or_insert(next % workers);
        buckets[b].push((key, id));
    }
    // Each hop's messages together, in queue order: a batch then holds
    // as many of one mailbox's messages as it can.
    let mut buckets: Vec<Vec<String>> = buckets
        .into_iter()
        .map(|mut b| {
            b.sort_by(|x, y| x.0.cmp(&y.0));
            b.into_iter().map(|(_, id)| id).collect()
        })
        .collect();
    let mut children = Vec::new();
    let last = buckets.pop().unwrap_or_default();
    // Each worker tells its tally through this pipe as it ends (one short
    // write: atomic).
    // Close-on-exec: a program a worker starts (a password command) and
    // anything it leaves running must not hold the pipe open.
    let tallies = unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("can not make a pipe: {e}"))?;
    for bucket in buckets.into_iter().filter(|b| !b.is_empty()) {
        match privsep::fork() {
            Ok(privsep::Forked::Child) => {
                drop(tallies.0);
                run_bucket(ctx, &bucket, due_only);
                let _ = unistd::write(&tallies.1, deliver::tally().to_line().as_bytes());
                std::process::exit(if stopped() { EX_CANTCREAT } else { EX_OK });
            }
            Ok(privsep::Forked::Parent(pid)) => children.push(pid),
            // No worker: do its share ourselves.
            Err(e) => {
                crit!("can not start a queue worker: {e}");
                run_bucket(ctx, &bucket, due_only);
            }
        }
    }
    run_bucket(ctx, &last, due_only);
    for pid in children {
        use nix::sys::wait::{WaitStatus, waitpid};
        if !matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, EX_OK))) {
            STOPPED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    drop(tallies.1);
    let mut tally = deliver::tally();
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(tallies.0), &mut text);
    for line in text.lines() {
        tally.add(&deliver::Tally::from_line(line));
    }
    tally.left = ctx.spool.ids().map_or(0, |ids| ids.len() as u64);
    Ok(tally)
}

/// Where a queued message goes first, for sharing out a queue run: the
/// smarthost, its first remote domain, or (all local) the message itself.
fn next_hop_key(ctx: &Ctx, env: &crate::spool::Envelope) -> String {
    let remote =
        env.rcpts
            .iter()
            .find_map(|r| match address::classify(&r.addr, &ctx.local_domains) {
                address::Dest::Remote { domain, .. } if !r.state.is_final() => Some(domain),
                _ => None,
            });
    match remote {
        Some(_) if ctx.config.smarthost.is_some() => "smarthost".to_string(),
        Some(domain) => domain.to_ascii_lowercase(),
        // Local mail: one worker per mailbox, so that workers do not queue
        // up behind each other's mailbox locks.
        None => match env.rcpts.iter().find(|r| !r.state.is_final()) {
            Some(r) => format!("{LOCAL_HOP}{}", ctx.local_name(&r.addr)),
            None => env.id.clone(),
        },
    }
}

/// How [`next_hop_key`] names a mailbox.
const LOCAL_HOP: &str = "local:";

/// Moves an entry that failed a check out of the queue, never to be
/// delivered, and says so at crit.
fn quarantine(ctx: &Ctx, id: &str, why: &str) {
    let dir = ctx.spool.dir().join(crate::spool::CORRUPT_DIR);
    match ctx.spool.quarantine(id, why) {
        Ok(()) => crit!(
            "{id}: corrupt queue entry moved to {}: {why}",
            dir.display()
        ),
        Err(e) => crit!(
            "{id}: corrupt queue entry ({why}); can not move it to {}: {e}",
            dir.display()
        ),
    }
}

/// Delivers the due part of each message of `ids`, one connection per host.
fn run_bucket(ctx: &mut Ctx, ids: &[String], due_only: bool) {
    ctx.pool = Some(crate::remote::Pool::default());
    *ctx.helper_session.borrow_mut() = crate::local::session::Use::Wanted;
    // Locked, to be delivered together: one mailbox's share of them in
    // one `dma-local` run.
    let mut batch = Vec::new();
    for id in ids {
        if stopped() {
            break;
        }
        match ctx.spool.open_locked(id) {
            Ok(msg) => {
                deliver::count_message();
                batch.push(msg);
                if batch.len() == deliver::MAX_BATCH {
                    deliver_batch(ctx, std::mem::take(&mut batch), !due_only);
                }
            }
            Err(OpenError::Busy) => {}
            Err(OpenError::Corrupt(why)) => quarantine(ctx, id, &why),
            Err(OpenError::Io(e)) => crit!("{id}: {e}"),
        }
    }
    deliver_batch(ctx, batch, !due_only);
    if let Some(p) = ctx.pool.take() {
        p.close();
    }
    ctx.helper_session.take();
    ctx.wait_removers(0);
    let _ = ctx.spool.sync();
}
