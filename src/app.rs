//! The modes of the program, from a parsed command line to an exit code.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{self, User};

use crate::address;
use crate::cli::{self, DeliveryMode, Invocation, Mode};
use crate::config::{Aliases, AuthFile, Config, conf};
use crate::context::Ctx;
use crate::exit::*;
use crate::intake::{self, IntakeError};
use crate::route::{Expansion, Program, Route};
use crate::spool::Origin;
use crate::spool::{Envelope, Locked, OpenError, Rcpt, now};
use crate::{crit, deliver, info, mailq, privsep};

/// Runs the program called `progname` with `args`; returns the exit code.
pub fn main(progname: &str, args: Vec<OsString>) -> Result<i32, Fatal> {
    let inv = cli::parse(progname, args)?;
    // A file size limit must give a clean error, never a half-done kill.
    privsep::ignore_sigxfsz();
    // Who called us, before any change of ids.
    let caller = Caller::current();
    setup_privileges(&inv)?;
    crate::logging::init(inv.log_tag.as_deref().unwrap_or("dma"), inv.verbose);
    let path = inv
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(conf::DEFAULT_PATH));
    let config = Config::load(&path).map_err(|e| Fatal::new(EX_CONFIG, e.to_string()))?;
    if let Some(auth) = &config.authpath {
        // Read at every start, as dma does, so a broken file is noticed early.
        AuthFile::load(auth).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Fatal::new(EX_CONFIG, e.to_string()),
            _ => Fatal::new(
                EX_NOINPUT,
                format!("can not open auth file `{}': {e}", auth.display()),
            ),
        })?;
    }
    let mut ctx = Ctx::new(config, inv.config.clone());
    match inv.mode {
        Mode::NewAliases => newaliases(&ctx.config.aliases),
        Mode::ListQueue => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            mailq::list(&ctx.spool, &mut out)
                .and_then(|_| out.flush())
                .map_err(|e| Fatal::new(EX_NOINPUT, format!("can not read the queue: {e}")))?;
            Ok(EX_OK)
        }
        Mode::RunQueue { due_only } => run_queue(&mut ctx, due_only),
        Mode::Verify => verify(&mut ctx, &inv),
        Mode::Submit => submit(&mut ctx, &inv, &caller),
    }
}

/// `-C` gives up set-id privilege; root without `-C` becomes `mail`, as in
/// dma (only `dma-local` ever runs as root); a set-id run cleans the
/// environment it got from the caller.
fn setup_privileges(inv: &Invocation) -> Result<(), Fatal> {
    let oserr = |e: nix::Error| Fatal::new(EX_OSERR, format!("can not drop privileges: {e}"));
    if inv.config.is_some() {
        privsep::drop_setid().map_err(oserr)?;
        return Ok(());
    }
    if privsep::is_setid() {
        privsep::clear_env(&["LOGNAME", "USER", "EMAIL", "TZ"]);
        privsep::set_env("PATH", "/usr/bin:/bin");
    }
    if (unistd::getuid().is_root() || unistd::geteuid().is_root())
        && let Some(mail) = privsep::mail_user()
    {
        privsep::become_user(&mail).map_err(oserr)?;
    }
    Ok(())
}

/// The submitting user.
struct Caller {
    name: String,
    uid: u32,
}

impl Caller {
    /// `$LOGNAME` or `$USER` if it names the real uid, else the password
    /// entry of the real uid, else `uid=N`, as dma does.
    fn current() -> Caller {
        let uid = unistd::getuid();
        let from_env = ["LOGNAME", "USER"].iter().find_map(|k| {
            let v = std::env::var(k).ok()?;
            let u = User::from_name(&v).ok()??;
            (u.uid == uid && address::validate(&v).is_ok()).then_some(v)
        });
        let name = from_env
            .or_else(|| User::from_uid(uid).ok().flatten().map(|u| u.name))
            .filter(|n| address::validate(n).is_ok())
            .unwrap_or_else(|| format!("uid={uid}"));
        Caller {
            name,
            uid: uid.as_raw(),
        }
    }
}

/// The envelope sender: `-f`/`-r`, else `$EMAIL`, with a missing user part
/// taken from the login and a missing host from MAILNAME; then MASQUERADE.
/// `<>` or an empty `-f` is the null sender.
fn envelope_sender(ctx: &Ctx, inv: &Invocation, caller: &Caller) -> Result<String, Fatal> {
    let given = inv.sender.clone().or_else(|| std::env::var("EMAIL").ok());
    let raw = given.as_deref().map(address::strip_brackets);
    if let Some(raw) = raw {
        if raw.is_empty() && inv.sender.is_some() {
            return Ok(String::new());
        }
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(Fatal::new(EX_DATAERR, "invalid sender: control character"));
        }
    }
    let (mut user, mut host) = match raw.filter(|r| !r.is_empty()) {
        Some(r) => match r.split_once('@') {
            Some((u, h)) => (u.to_string(), h.to_string()),
            None => (r.to_string(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    if user.is_empty() {
        user = caller.name.clone();
    }
    if host.is_empty() {
        host = ctx.hostname.clone();
    }
    if let Some(m) = &ctx.config.masquerade {
        if let Some(u) = &m.user {
            user = u.clone();
        }
        if let Some(h) = &m.host {
            host = h.clone();
        }
    }
    let sender = format!("{user}@{host}");
    address::validate(&sender)
        .map_err(|e| Fatal::new(EX_DATAERR, format!("invalid sender `{sender}': {e}")))?;
    Ok(sender)
}

/// Splits argv recipients on commas and validates each.
fn argv_rcpts(inv: &Invocation) -> Result<Vec<String>, Fatal> {
    let mut out = Vec::new();
    for arg in &inv.rcpts {
        for part in arg.split(',') {
            let a = address::strip_brackets(part);
            if a.is_empty() {
                continue;
            }
            address::validate(a)
                .map_err(|e| Fatal::new(EX_DATAERR, format!("invalid recipient `{a}': {e}")))?;
            out.push(a.to_string());
        }
    }
    Ok(out)
}

fn ensure_spool(ctx: &Ctx) -> Result<(), Fatal> {
    let dir = ctx.spool.dir();
    if !dir.exists() && !privsep::is_setid() {
        // Convenient for a private configuration (`-C`); an installed spool
        // is made by the install script with its modes.
        std::fs::create_dir_all(dir).map_err(|e| {
            Fatal::new(
                EX_CANTCREAT,
                format!("can not create spool {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// SPOOL_MIN_FREE: below the reserve only root may queue (bounces are
/// queued by the runner, not here), so no user can fill the spool and stop
/// everyone's mail. EX_TEMPFAIL: the same message may go through later.
fn check_spool_space(ctx: &Ctx, caller: &Caller) -> Result<(), Fatal> {
    if caller.uid == 0 {
        return Ok(());
    }
    ctx.spool
        .check_free(ctx.config.spool_min_free)
        .map_err(|why| Fatal::new(EX_TEMPFAIL, why))
}

fn submit(ctx: &mut Ctx, inv: &Invocation, caller: &Caller) -> Result<i32, Fatal> {
    let sender = envelope_sender(ctx, inv, caller)?;
    let mut rcpts = argv_rcpts(inv)?;
    if rcpts.is_empty() && !inv.extract_rcpts {
        return Err(Fatal::new(EX_NOINPUT, "no recipients"));
    }
    ensure_spool(ctx)?;
    check_spool_space(ctx, caller)?;
    let cantcreat =
        |e: std::io::Error| Fatal::new(EX_CANTCREAT, format!("can not create spool file: {e}"));
    let (id, data) = ctx.spool.create().map_err(cantcreat)?;
    let data_path = ctx.spool.data_path(&id);
    let discard = |f: Fatal| {
        let _ = std::fs::remove_file(&data_path);
        f
    };
    crate::logging::set_queue_id(Some(&id));
    info!(
        "new mail from user={} uid={} envelope_from=<{sender}>",
        caller.name, caller.uid
    );
    let stamp = intake::Stamp {
        id: id.clone(),
        sender: sender.clone(),
        user: caller.name.clone(),
        uid: caller.uid,
        hostname: ctx.hostname.clone(),
        date: intake::rfc2822_now(),
    };
    let opts = intake::Options {
        extract_rcpts: inv.extract_rcpts,
        ignore_dots: inv.ignore_dots,
        full_name: inv.full_name.clone(),
        size_limit: ctx.config.message_size_limit,
    };
    if let Some(n) = &opts.full_name
        && n.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        return Err(discard(Fatal::new(
            EX_DATAERR,
            "invalid full name (-F): control character",
        )));
    }
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    let mut out = BufWriter::with_capacity(64 * 1024, &data);
    let read = intake::read_message(&mut input, &mut out, &opts, &stamp).map_err(|e| {
        discard(match e {
            IntakeError::Io(e) => {
                Fatal::new(EX_IOERR, format!("can not read or spool the message: {e}"))
            }
            // Not EX_TEMPFAIL: the same message would fail again.
            e @ IntakeError::TooLarge(_) => Fatal::new(EX_CANTCREAT, e.to_string()),
            other => Fatal::new(EX_DATAERR, other.to_string()),
        })
    })?;
    drop(out);
    // Checked again with the message written: it counts against the reserve.
    check_spool_space(ctx, caller).map_err(discard)?;
    rcpts.extend(read.header_rcpts);
    // One form per mailbox (`bob@thishost` is `bob`), as dma does, so that
    // duplicates collapse.
    for r in rcpts.iter_mut() {
        if let address::Dest::Local(name) = address::classify(r, &ctx.local_domains) {
            *r = name;
        }
    }
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|r| seen.insert(r.clone()));
    if rcpts.is_empty() {
        return Err(discard(Fatal::new(
            EX_NOINPUT,
            if inv.extract_rcpts {
                "no recipients from headers"
            } else {
                "no recipients"
            },
        )));
    }
    let env = Envelope {
        id: id.clone(),
        created: now(),
        sender,
        user: caller.name.clone(),
        uid: caller.uid,
        double_bounce: false,
        dsn: inv.dsn.clone(),
        rcpts: rcpts.iter().map(|r| Rcpt::new(r.clone(), None)).collect(),
    };
    ctx.spool
        .commit(&data, &env)
        .map_err(|e| discard(cantcreat(e)))?;
    crate::logging::set_queue_id(Some(&id));
    for r in &rcpts {
        info!("mail to=<{r}> queued as {id}");
    }
    let mode = if ctx.config.defer {
        DeliveryMode::Queue
    } else {
        inv.delivery
    };
    let locked = Locked { data, env };
    match mode {
        DeliveryMode::Queue => {}
        DeliveryMode::Foreground => deliver_logged(ctx, locked),
        DeliveryMode::Background => {
            let local_only = local_only(ctx, &locked.env);
            // Let go of our message first: whichever runner sees it next
            // (the waiting one, this process if it gets a slot, or one that
            // re-scans after giving up its slot or its wait) can then take
            // it. Holding it while looking for a runner would leave a moment
            // in which a finishing runner skips it as busy.
            drop(locked);
            // Local mail is left to the runner that waits for it: nothing
            // to start. Remote mail only to a runner that is idle right now
            // (with its connections open): otherwise it gets a runner of its
            // own, since parallel connections count there and a slow server
            // must not hold up everything else.
            if (local_only && runner_holds(ctx, WAITING)) || runner_holds(ctx, IDLE) {
                return Ok(EX_OK);
            }
            std::io::stdout().flush().ok();
            // The message is queued: whatever happens now, exit 0.
            match privsep::daemonize() {
                Ok(()) => background(ctx),
                Err(e) => crate::notice!("can not go to the background ({e}); left queued"),
            }
        }
    }
    Ok(EX_OK)
}

/// Only messages queued this recently are a background runner's business;
/// older ones wait for a queue run.
const FRESH: i64 = 300;

/// How long a runner with nothing left to do waits for more before it
/// exits: a burst of submissions is then delivered by one process, over one
/// `dma-local` session and kept connections, instead of by a runner each.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Background delivery after a submission that let go of its message and
/// found no runner waiting for it. If a runner slot is free, this process
/// becomes a runner: it delivers that message and then every fresh message
/// that is due, over kept connections, until none is left, and waits a
/// moment for more. If every slot is busy, the running runners will pick
/// the message up: a storm of submissions is then delivered by a few
/// processes over a few connections instead of one process and one
/// connection per message.
fn background(ctx: &mut Ctx) {
    // As many runners as a queue run has workers, each with its connections.
    let runners = ctx.config.queue_workers.max(1);
    let Some((slot, lock)) = (0..runners).find_map(|n| runner_lock(ctx, n).map(|l| (n, l))) else {
        return;
    };
    ctx.pool = Some(crate::remote::Pool::default());
    *ctx.helper_session.borrow_mut() = crate::local::session::Use::Wanted;
    // Each message at most once per runner: a message that stays due (the
    // spool cannot be written, say) must not keep a runner spinning.
    let mut tried = std::collections::HashSet::new();
    let mut lock = Some(lock);
    // Held while this is the runner that local mail is left to.
    let mut waiting = None;
    loop {
        if waiting.is_none() {
            waiting = become_waiting(ctx);
        }
        if fresh_pass(ctx, &mut tried, true, &mut waiting) {
            continue;
        }
        // Nothing left: wait a moment for more, if we are the waiting
        // runner.
        if waiting.is_some() {
            if wait_for_work(ctx, &mut tried) {
                continue;
            }
            drop(waiting.take());
            // What was left to us just before we stopped waiting.
            if fresh_pass(ctx, &mut tried, true, &mut waiting) {
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
        drop(lock.take());
        if !fresh_pass(ctx, &mut tried, false, &mut waiting) {
            break;
        }
        match runner_lock(ctx, slot) {
            Some(l) => lock = Some(l),
            None => break,
        }
    }
    if let Some(p) = ctx.pool.take() {
        p.close();
    }
    ctx.helper_session.take();
    let _ = ctx.spool.sync();
}

/// Whether every recipient of `env` is a local one.
fn local_only(ctx: &Ctx, env: &Envelope) -> bool {
    env.rcpts.iter().all(|r| {
        matches!(
            address::classify(&r.addr, &ctx.local_domains),
            address::Dest::Local(_)
        )
    })
}

/// Held by the runner that local mail is left to (while it delivers local
/// mail, or waits for more).
const WAITING: &str = ".runner.wait";
/// Held by that runner while it waits with nothing to do: any mail may be
/// left to it.
const IDLE: &str = ".runner.idle";

/// Whether a runner holds the lock `SPOOLDIR/<name>`.
fn runner_holds(ctx: &Ctx, name: &str) -> bool {
    std::fs::File::open(ctx.spool.dir().join(name))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Becomes the runner that waits for work, unless one already is.
fn become_waiting(ctx: &Ctx) -> Option<std::fs::File> {
    try_lock_file(ctx, WAITING)
}

/// Waits up to [`LINGER`] for a fresh message that is due and that nobody
/// holds (holding [`IDLE`] meanwhile), woken by the spool directory's changes (a queued envelope, a
/// submission letting go of its data file). Says whether one came.
fn wait_for_work(ctx: &mut Ctx, tried: &mut std::collections::HashSet<String>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + LINGER;
    let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) else {
        return false;
    };
    let watch = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
    if inotify.add_watch(ctx.spool.dir(), watch).is_err() {
        return false;
    }
    // Idle (until this returns): submissions may leave any mail to us. Taken
    // after the watch, let go before the next delivery pass: whatever a
    // submission left because it saw this lock is seen.
    let _idle = try_lock_file(ctx, IDLE);
    loop {
        // What changed before the watch, or since the last look.
        if fresh_pass(ctx, tried, false, &mut None) {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return false,
            Ok(_) => {
                let _ = inotify.read_events();
            }
            Err(nix::Error::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Takes runner slot `n` (a flock on `SPOOLDIR/.runner.<n>`), if free.
fn runner_lock(ctx: &Ctx, n: usize) -> Option<std::fs::File> {
    try_lock_file(ctx, &format!(".runner.{n}"))
}

/// Takes the flock on `SPOOLDIR/<name>` (made if missing), if free.
fn try_lock_file(ctx: &Ctx, name: &str) -> Option<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o660)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(ctx.spool.dir().join(name))
        .ok()?;
    f.try_lock().ok()?;
    // Runners of other users (set-group-id mail) must be able to take it
    // and look at it, whatever our umask.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
    Some(f)
}

/// One pass over the fresh messages not `tried` yet by this runner. With
/// `deliver_them`, delivers what is due of each one not locked by someone
/// else and says whether it delivered any; without, only says whether any
/// is due. Before a message with remote recipients, `waiting` is let go:
/// local mail must not wait behind a slow server.
fn fresh_pass(
    ctx: &mut Ctx,
    tried: &mut std::collections::HashSet<String>,
    deliver_them: bool,
    waiting: &mut Option<std::fs::File>,
) -> bool {
    let since = format!("{:08x}", (crate::spool::now() - FRESH).max(0) as u32);
    let Ok(ids) = ctx.spool.ids() else {
        return false;
    };
    let lifetime = ctx.config.queue_lifetime.as_secs() as i64;
    let mut found = false;
    for id in ids.iter() {
        if id.as_str() < since.as_str() || tried.contains(id) {
            continue;
        }
        let due = ctx
            .spool
            .read_env(id)
            .is_ok_and(|env| deliver::has_due(&env, crate::spool::now(), lifetime));
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
            tried.insert(id.clone());
            if !local_only(ctx, &msg.env) {
                drop(waiting.take());
            }
            if let Err(e) = deliver::run(ctx, msg, false) {
                crit!("{id}: delivery interrupted, left queued: {e}");
            }
        }
    }
    found
}

/// Delivers; an error (the spool became unwritable) is logged, and the
/// message stays queued for the next run.
fn deliver_logged(ctx: &mut Ctx, msg: Locked) {
    let id = msg.env.id.clone();
    if let Err(e) = deliver::run(ctx, msg, false) {
        crit!("{id}: delivery interrupted, left queued: {e}");
    }
    let _ = ctx.spool.sync();
}

fn run_queue(ctx: &mut Ctx, due_only: bool) -> Result<i32, Fatal> {
    let dir = ctx.spool.dir().to_path_buf();
    let ids = ctx.spool.ids().map_err(|e| {
        Fatal::new(
            EX_NOINPUT,
            format!("can not load queue {}: {e}", dir.display()),
        )
    })?;
    if let Err(e) = ctx.spool.reap_orphans() {
        crit!("can not clean the queue: {e}");
    }
    // Messages are shared out among QUEUE_WORKERS processes by next hop:
    // everything for one smarthost or one domain goes to the same worker,
    // over one connection; different next hops are worked on in parallel.
    let workers = ctx.config.queue_workers.max(1).min(ids.len().max(1));
    let mut buckets: Vec<Vec<String>> = vec![Vec::new(); workers];
    let now = crate::spool::now();
    let lifetime = ctx.config.queue_lifetime.as_secs() as i64;
    let mut per_hop: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut assigned: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for id in ids {
        let Ok(env) = ctx.spool.read_env(&id) else {
            // Busy or broken: the worker that locks it will say which.
            buckets[0].push(id);
            continue;
        };
        if due_only && !deliver::has_due(&env, now, lifetime) {
            continue;
        }
        // Up to HOP_SESSIONS connections per next hop, each in its own
        // worker: messages of one hop are dealt out among them in turn.
        let hop = next_hop_key(ctx, &env);
        let k = per_hop.entry(hop.clone()).or_insert(0usize);
        let key = format!("{hop}#{}", *k % ctx.config.hop_sessions.max(1));
        *k += 1;
        // Each next hop (or hop session) goes to the next worker in turn.
        let next = assigned.len();
        let b = *assigned.entry(key).or_insert(next % workers);
        buckets[b].push(id);
    }
    let mut children = Vec::new();
    let last = buckets.pop().unwrap_or_default();
    for bucket in buckets.into_iter().filter(|b| !b.is_empty()) {
        match privsep::fork() {
            Ok(privsep::Forked::Child) => {
                run_bucket(ctx, &bucket, due_only);
                std::process::exit(EX_OK);
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
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    Ok(EX_OK)
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
            Some(r) => format!("local:{}", ctx.local_name(&r.addr)),
            None => env.id.clone(),
        },
    }
}

/// Delivers the due part of each message of `ids`, one connection per host.
fn run_bucket(ctx: &mut Ctx, ids: &[String], due_only: bool) {
    ctx.pool = Some(crate::remote::Pool::default());
    *ctx.helper_session.borrow_mut() = crate::local::session::Use::Wanted;
    for id in ids {
        match ctx.spool.open_locked(id) {
            Ok(msg) => {
                if let Err(e) = deliver::run(ctx, msg, !due_only) {
                    crit!("{id}: delivery interrupted, left queued: {e}");
                }
            }
            Err(OpenError::Busy) => {}
            Err(OpenError::Corrupt(why)) => crit!("{id}: {why}; left for an administrator"),
            Err(OpenError::Io(e)) => crit!("{id}: {e}"),
        }
    }
    if let Some(p) = ctx.pool.take() {
        p.close();
    }
    ctx.helper_session.take();
    let _ = ctx.spool.sync();
}

fn newaliases(path: &Path) -> Result<i32, Fatal> {
    let a = Aliases::load(path).map_err(|e| {
        crit!("{e}");
        Fatal::new(EX_SOFTWARE, e.to_string())
    })?;
    println!("{}: {} aliases", path.display(), a.entries.len());
    Ok(EX_OK)
}

/// `-bv`: prints where each recipient would go, alias trees expanded.
fn verify(ctx: &mut Ctx, inv: &Invocation) -> Result<i32, Fatal> {
    let rcpts = argv_rcpts(inv)?;
    // A user may see their own .forward; root sees all.
    ctx.forwards_visible_to = Some(unistd::getuid().as_raw());
    if rcpts.is_empty() {
        return Err(Fatal::new(EX_NOINPUT, "no recipients"));
    }
    let mut ok = true;
    let mut out = String::new();
    for r in rcpts {
        ok &= explain(ctx, &r, None, &mut Vec::new(), 0, &mut out);
    }
    print!("{out}");
    Ok(if ok { EX_OK } else { EX_NOUSER })
}

fn explain(
    ctx: &mut Ctx,
    addr: &str,
    origin: Option<&Origin>,
    ancestors: &mut Vec<String>,
    depth: usize,
    out: &mut String,
) -> bool {
    let pad = "  ".repeat(depth);
    let route = ctx.route(addr, origin, ancestors, &[]);
    match route {
        Route::Mailbox {
            user, uid, note, ..
        } => {
            let path = ctx.config.mailspool.join(&user);
            out.push_str(&format!(
                "{pad}{addr}: mailbox {} (user {user}, uid {uid})\n",
                path.display()
            ));
            if let Some(n) = note {
                out.push_str(&format!("{pad}  ({n})\n"));
            }
            true
        }
        Route::Expand {
            children,
            kind,
            notes,
        } => {
            let via = match kind {
                Expansion::Alias => format!("alias in {}", ctx.config.aliases.display()),
                Expansion::CatchAll => format!("catch-all `*' in {}", ctx.config.aliases.display()),
                Expansion::Forward => "forwarded by its .forward".to_string(),
                Expansion::Include => "included file".to_string(),
            };
            let list: Vec<&str> = children.iter().map(|c| c.addr.as_str()).collect();
            out.push_str(&format!("{pad}{addr}: {via} -> {}\n", list.join(", ")));
            for n in notes {
                out.push_str(&format!("{pad}  ({n})\n"));
            }
            ancestors.push(ctx.local_name(addr));
            let mut ok = true;
            for c in children {
                ok &= explain(ctx, &c.addr, c.origin.as_ref(), ancestors, depth + 1, out);
            }
            ancestors.pop();
            ok
        }
        Route::Program { program, origin } => {
            let who = match &origin {
                Origin::Forward(u) => format!("as {u}"),
                Origin::Alias(_) => format!("as {} (ALIAS_USER)", ctx.config.alias_user),
            };
            let what = match program {
                Program::Pipe(c) => format!("command `{c}'"),
                Program::File(f) if f.ends_with('/') => format!("Maildir {f}"),
                Program::File(f) => format!("file {f}"),
            };
            out.push_str(&format!("{pad}{addr}: {what}, run {who}\n"));
            true
        }
        Route::Remote { addr: a, domain } => {
            let hop = match &ctx.config.smarthost {
                Some(h) => format!("smarthost {h} port {}", ctx.config.port),
                None => format!("MX hosts of {domain}"),
            };
            out.push_str(&format!(
                "{pad}{a}: remote, via {hop} (remote delivery is not available in this version)\n"
            ));
            true
        }
        Route::Fail(why) => {
            out.push_str(&format!("{pad}{addr}: undeliverable: {why}\n"));
            false
        }
        Route::Defer(why) => {
            out.push_str(&format!("{pad}{addr}: temporarily undeliverable: {why}\n"));
            false
        }
    }
}
