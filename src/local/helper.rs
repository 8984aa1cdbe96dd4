//! `dma-local`: the privileged step of local delivery, kept small.
//!
//! ```text
//! dma-local mbox    --user U --sender S [--prepend H]...            < message
//! dma-local mbox    --user U (--message N --sender S [--prepend H]...)...
//!                                         (a batch: message N's data is
//!                                          descriptor 3+N; session only)
//! dma-local forward --user U                                        (prints entries)
//! dma-local include --path P                                        (prints entries)
//! dma-local pipe    --user U --origin O --command C --sender S
//!                   --recipient R --original R0 [--prepend H]...    < message
//! dma-local file    --user U --origin O --path P --sender S [--prepend H]... < message
//! (each also takes --config FILE, honoured only when not set-id)
//! dma-local session                       (runs the above on request: see `session`)
//! dma-local runner JOB [--caller-uid N] [--verbose] [--tag T]
//!                                         (a queue runner, as `mail`: see `runner`)
//! ```
//!
//! Run as root (set-user-id, or by root), it does the few steps that need
//! root (the mailbox dotlock and a missing mailbox, in MAILSPOOL), then forks
//! a child that becomes the user (groups, gid, uid) before it reads a file of
//! that user or a byte of the message. Run by anyone else it can only act as
//! the caller. When set-id, `--config` is ignored: MAILSPOOL, ALIASES and
//! ALIAS_USER come from the system configuration only.
//!
//! Nothing the caller says is trusted for authority: a command or file runs
//! only if the child, as the user, finds it again in that user's `.forward`
//! (origin `forward:U`), or in the system aliases under that alias name and
//! as ALIAS_USER (origin `alias:NAME`). So a forged queue entry cannot make
//! anybody's command run.
//!
//! The result is the exit code (0 done, 67 no such user and 69 other
//! permanent failures, anything else temporary) and, on failure, one line
//! `<enhanced status> <text>` on stderr. `forward` and `include` print their
//! result on stdout (see `dotforward::encode`).

use std::io::{BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{self, Pid, User};

use super::dotforward::{self, ForwardFile};
use super::file::Failed;
use super::rollback::Guard;
use super::{mbox, pipe};
use crate::config::{AliasTarget, Aliases, Config, Stamp, conf};
use crate::exit::{EX_NOUSER, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE};
use crate::forward::Entry;
use crate::privsep::{self, Forked};
use crate::spool::Origin;

/// The helper's exit code and its one-line reason.
struct Failure(i32, String);

fn temp(msg: impl Into<String>) -> Failure {
    Failure(EX_TEMPFAIL, msg.into())
}

fn perm(msg: impl Into<String>) -> Failure {
    Failure(EX_UNAVAILABLE, msg.into())
}

impl From<Failed> for Failure {
    fn from(f: Failed) -> Failure {
        if f.temporary {
            temp(f.why)
        } else {
            perm(f.why)
        }
    }
}

/// Whether `name` is safe to use as a user name and a file name in MAILSPOOL.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && !name.contains('/')
        && !name.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The program's entry point; returns the exit code.
///
/// First, before anything reads an argument: whether we were started
/// set-id is recorded (it decides what we trust), then a set-id start
/// becomes root entirely, so that the caller can no longer signal us, and
/// every start gets a clean process state (umask, limits, descriptors,
/// signals): whatever we run, a user's `.forward` program or a queue
/// runner, inherits nothing its caller chose.
pub fn main(args: Vec<String>) -> i32 {
    let setid = privsep::record_start();
    if setid && unistd::geteuid().is_root() && privsep::become_root().is_err() {
        let _ = writeln!(std::io::stderr(), "4.3.0 dma-local: can not become root");
        return crate::exit::EX_OSERR;
    }
    privsep::reset_process_state();
    if args.len() == 1 && args[0] == "session" {
        crate::logging::init("dma-local", false);
        return super::session::serve();
    }
    if args.first().is_some_and(|a| a == "runner") {
        return crate::runner::serve(&args[1..]);
    }
    run_once(args)
}

/// One run, as `dma-local ARGS...`: by itself, or for a session request.
pub fn run_once(args: Vec<String>) -> i32 {
    run_once_with(args, Vec::new())
}

/// [`run_once`], with a batch's data files (`extra`: a session request's
/// descriptors after the first three).
pub fn run_once_with(args: Vec<String>, extra: Vec<OwnedFd>) -> i32 {
    crate::logging::init("dma-local", false);
    match run(&args, extra) {
        Ok(()) => EX_OK,
        Err(Failure(code, msg)) => {
            if !msg.is_empty() {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            code
        }
    }
}

/// The arguments, checked: `--key value` pairs, `--prepend` repeatable.
struct Args {
    mode: String,
    values: Vec<(String, String)>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, Failure> {
        let usage = || Failure(EX_USAGE, "4.3.5 dma-local: bad arguments".into());
        let mut it = args.iter();
        let mode = it.next().ok_or_else(usage)?.clone();
        let mut values = Vec::new();
        while let Some(flag) = it.next() {
            let key = flag.strip_prefix("--").ok_or_else(usage)?;
            let value = it.next().ok_or_else(usage)?;
            // Nothing we are handed may carry a line break or NUL into a
            // header, a file or an environment variable.
            if value.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
                return Err(usage());
            }
            values.push((key.to_string(), value.clone()));
        }
        Ok(Args { mode, values })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, key: &str) -> Result<&str, Failure> {
        self.get(key)
            .ok_or_else(|| Failure(EX_USAGE, format!("4.3.5 dma-local: --{key} missing")))
    }

    /// `--prepend` header lines, each `Name: value`.
    fn prepend(&self) -> Result<Vec<String>, Failure> {
        let mut out = Vec::new();
        for (k, v) in &self.values {
            if k == "prepend" {
                out.push(checked_header(v)?);
            }
        }
        Ok(out)
    }

    /// A batch's messages, in order: each `--message N` followed by its
    /// `--sender` and `--prepend` lines. Empty for a single message.
    fn messages(&self) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let usage = || Failure(EX_USAGE, "4.3.5 dma-local: bad --message".into());
        let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for (k, v) in &self.values {
            if k == "message" {
                if v.parse::<usize>().ok() != Some(out.len()) {
                    return Err(usage());
                }
                out.push((None, Vec::new()));
                continue;
            }
            match (k.as_str(), out.last_mut()) {
                ("sender", Some((s @ None, _))) => *s = Some(v.clone()),
                ("sender", Some(_)) => return Err(usage()),
                ("prepend", Some((_, p))) => p.push(checked_header(v)?),
                _ => {}
            }
        }
        out.into_iter()
            .map(|(s, p)| s.map(|s| (s, p)).ok_or_else(usage))
            .collect()
    }
}

/// A `--prepend` header line, checked: `Name: value`.
fn checked_header(v: &str) -> Result<String, Failure> {
    let ok = v.split_once(':').is_some_and(|(n, _)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !ok {
        return Err(Failure(EX_USAGE, "4.3.5 dma-local: bad --prepend".into()));
    }
    Ok(v.to_string())
}

fn run(args: &[String], extra: Vec<OwnedFd>) -> Result<(), Failure> {
    let args = Args::parse(args)?;
    let setid = privsep::started_setid();
    if setid {
        // Nothing below reads the environment; nothing may inherit it.
        privsep::clear_env(&[]);
    }
    // Set-id: trust nothing the caller chose.
    let config_path = match (setid, args.get("config")) {
        (false, Some(p)) => PathBuf::from(p),
        _ => PathBuf::from(conf::DEFAULT_PATH),
    };
    let config = load_config(&config_path)?;
    let limit = super::user_limit(&config);
    match args.mode.as_str() {
        "mbox" => mbox_mode(&args, &config, extra),
        "forward" => {
            let user = lookup(args.need("user")?)?;
            let home = PathBuf::from(&user.dir);
            let uid = user.uid.as_raw();
            as_user(&user, limit, || {
                dotforward::read_forward(&home, uid).map_err(|t| Failed {
                    temporary: true,
                    why: format!("4.3.0 {}", t.0),
                })
            })
            .map(|_: ForwardFile| ())
        }
        "include" => {
            let path = PathBuf::from(args.need("path")?);
            let user = lookup(&config.alias_user)?;
            as_user(&user, limit, || {
                dotforward::read_include(&path).map_err(|t| Failed {
                    temporary: true,
                    why: format!("4.3.0 {}", t.0),
                })
            })
            .map(|_: ForwardFile| ())
        }
        "pipe" | "file" => program_mode(&args, &config),
        _ => Err(Failure(EX_USAGE, "4.3.5 dma-local: unknown mode".into())),
    }
}

fn print(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| temp(format!("4.3.0 writing the result: {e}")))
}

/// The configuration as read last (in a session, by an earlier request),
/// if the file has not changed since: a session reads it once, not once
/// per delivery.
static CONFIG: std::sync::Mutex<Option<(PathBuf, Stamp, Config)>> = std::sync::Mutex::new(None);

/// Reads the configuration file `path`, or takes it from [`CONFIG`].
fn load_config(path: &Path) -> Result<Config, Failure> {
    // Taken before the file is read: a change made meanwhile is seen.
    let stamp = Stamp::of(path);
    let mut cached = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, st, c)) = cached.as_ref()
        && p == path
        && *st == stamp
        && stamp != Stamp::default()
    {
        return Ok(c.clone());
    }
    let config = Config::load(path).map_err(|e| temp(format!("4.3.5 {e}")))?;
    *cached = Some((path.to_path_buf(), stamp, config.clone()));
    Ok(config)
}

/// The users found so far (in a session: by earlier requests), each with
/// its supplementary groups once they were needed. Only found ones: a user
/// created meanwhile is looked up again. Forgotten whenever `/etc/passwd`
/// or `/etc/group` changes (a user removed, a group membership given or
/// taken): what NSS serves from elsewhere (LDAP, systemd's dynamic users)
/// is then as fresh as the session, which a runner ends within seconds of
/// its last work.
struct Known {
    stamps: [Stamp; 2],
    users: Vec<(User, Option<Vec<unistd::Gid>>)>,
}

static USERS: std::sync::Mutex<Known> = std::sync::Mutex::new(Known {
    stamps: [Stamp::NONE, Stamp::NONE],
    users: Vec::new(),
});

/// The cache of [`USERS`], emptied if the user databases changed.
fn known() -> std::sync::MutexGuard<'static, Known> {
    let mut k = USERS.lock().unwrap_or_else(|e| e.into_inner());
    let now = [
        Stamp::of(Path::new("/etc/passwd")),
        Stamp::of(Path::new("/etc/group")),
    ];
    if k.stamps != now {
        k.stamps = now;
        k.users.clear();
    }
    k
}

fn lookup(name: &str) -> Result<User, Failure> {
    if !valid_user_name(name) {
        return Err(Failure(
            EX_NOUSER,
            format!("5.1.3 invalid user name `{name}'"),
        ));
    }
    let mut k = known();
    if let Some((u, _)) = k.users.iter().find(|(u, _)| u.name == name) {
        return Ok(u.clone());
    }
    let user = User::from_name(name)
        .map_err(|e| temp(format!("4.3.0 user lookup failed: {e}")))?
        .ok_or_else(|| Failure(EX_NOUSER, format!("5.1.1 {name}: no such user")))?;
    // A few users per session; a bound all the same.
    if k.users.len() >= 256 {
        k.users.clear();
    }
    k.users.push((user.clone(), None));
    Ok(user)
}

/// `user`'s groups (its supplementary groups and its gid), asked of NSS
/// once per session and user: with `group: files systemd`, every
/// `getgrouplist` walks systemd's userdb directories (about a hundred
/// system calls), which a session delivering to one mailbox would pay
/// for every message.
fn groups_of(user: &User) -> nix::Result<Vec<unistd::Gid>> {
    let mut k = known();
    let found = k
        .users
        .iter()
        .position(|(u, _)| u.name == user.name && u.uid == user.uid && u.gid == user.gid);
    if let Some(Some(g)) = found.map(|i| k.users[i].1.clone()) {
        return Ok(g);
    }
    let name = std::ffi::CString::new(user.name.as_str()).map_err(|_| nix::Error::EINVAL)?;
    let groups = unistd::getgrouplist(&name, user.gid)?;
    match found {
        Some(i) => k.users[i].1 = Some(groups.clone()),
        None => {
            if k.users.len() >= 256 {
                k.users.clear();
            }
            k.users.push((user.clone(), Some(groups.clone())));
        }
    }
    Ok(groups)
}

/// Runs `f` as `user`: in a child that becomes the user when we are root,
/// directly when we already are that user, never otherwise. What `f`
/// returns travels back as the child's exit status and stderr line; for
/// `forward` and `include`, its value is printed by the child itself. A
/// child still running after `limit` (stopped by its user, say) is killed,
/// so that we, and the dotlock we may hold, end before our caller's
/// deadline.
fn as_user<T: AsUserResult>(
    user: &User,
    limit: Duration,
    f: impl FnOnce() -> Result<T, Failed>,
) -> Result<T, Failure> {
    if !unistd::geteuid().is_root() {
        if unistd::getuid() != user.uid {
            return Err(temp(format!(
                "4.3.0 not privileged to deliver to {} (is dma-local installed set-user-id root?)",
                user.name
            )));
        }
        f().map_err(Failure::from)?.emit()?;
        return Ok(T::done());
    }
    // Found here, in the root process that outlives the request (and in
    // a session, many of them), not in the child that dies with it.
    let groups = groups_of(user).map_err(|e| {
        temp(format!(
            "4.3.0 can not find the groups of {}: {e}",
            user.name
        ))
    })?;
    match privsep::fork().map_err(|e| temp(format!("4.3.0 fork: {e}")))? {
        Forked::Child => {
            super::session::close_socket();
            let code = match privsep::become_user_in(user, &groups) {
                Ok(()) => match f() {
                    Ok(v) => match v.emit() {
                        Ok(()) => EX_OK,
                        Err(Failure(c, m)) => {
                            let _ = writeln!(std::io::stderr(), "{m}");
                            c
                        }
                    },
                    Err(failed) => {
                        let Failure(c, m) = Failure::from(failed);
                        let _ = writeln!(std::io::stderr(), "{m}");
                        c
                    }
                },
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "4.3.0 can not become {}: {e}", user.name);
                    EX_TEMPFAIL
                }
            };
            std::process::exit(code);
        }
        Forked::Parent(pid) => match wait_user(pid, limit) {
            // The child has done its work and said so.
            (Ok(WaitStatus::Exited(_, 0)), _) => Ok(T::done()),
            (Ok(WaitStatus::Exited(_, code)), _) => Err(Failure(code, String::new())),
            (_, true) => Err(temp(format!(
                "4.3.0 delivery process timed out after {}s and was killed",
                limit.as_secs()
            ))),
            (other, false) => Err(temp(format!("4.3.0 delivery process ended: {other:?}"))),
        },
    }
}

/// Waits for the user's process `pid`, killing it once `limit` has passed;
/// says whether it was killed so.
fn wait_user(pid: Pid, limit: Duration) -> (nix::Result<WaitStatus>, bool) {
    let reap = || loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            other => break other,
        }
    };
    // Where the kernel gives us a pidfd, a poll on it waits until the end
    // or the limit: no thread (a second thread makes every later memory
    // unmapping of this process a cross-CPU affair).
    if let Ok(fd) = privsep::pidfd(pid) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + limit;
        let killed = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                // Not reaped yet: its pid is not anybody else's.
                let _ = kill(pid, Signal::SIGKILL);
                break Some(true);
            }
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, wait) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => break Some(false),
                // Whatever this is, the watchdog below still keeps time.
                Err(_) => break None,
            }
        };
        if let Some(killed) = killed {
            return (reap(), killed);
        }
    }
    // Else a watchdog thread, so that a delivery costs no polling: we
    // block in waitid and it kills at the limit.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new().spawn(move || {
        let late = watch.recv_timeout(limit) == Err(RecvTimeoutError::Timeout);
        if late {
            let _ = kill(pid, Signal::SIGKILL);
        }
        late
    });
    let Ok(watchdog) = watchdog else {
        return (reap(), false);
    };
    // Not reaped yet (WNOWAIT): its pid cannot be reused by another process
    // while the watchdog may still signal it.
    while let Err(nix::Error::EINTR) =
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {}
    drop(done);
    let killed = watchdog.join().unwrap_or(false);
    (reap(), killed)
}

/// What a child run by [`as_user`] hands back: printed by the child (so the
/// root parent never handles it), or nothing.
trait AsUserResult: Sized {
    /// Delivers the value from the child (prints it).
    fn emit(self) -> Result<(), Failure>;
    /// The value in the parent once the child has emitted it.
    fn done() -> Self;
}

impl AsUserResult for () {
    fn emit(self) -> Result<(), Failure> {
        Ok(())
    }
    fn done() -> Self {}
}

impl AsUserResult for ForwardFile {
    fn emit(self) -> Result<(), Failure> {
        print(&dotforward::encode(&self))
    }
    fn done() -> Self {
        // Already printed by whoever read it; nothing more to say.
        ForwardFile::Missing
    }
}

fn mbox_mode(args: &Args, config: &Config, extra: Vec<OwnedFd>) -> Result<(), Failure> {
    let user = lookup(args.need("user")?)?;
    let batch = args.messages()?;
    if batch.len() != extra.len() {
        return Err(Failure(
            EX_USAGE,
            "4.3.5 dma-local: one data file per --message".into(),
        ));
    }
    let single = if batch.is_empty() {
        Some((args.need("sender")?.to_string(), args.prepend()?))
    } else {
        None
    };
    let dir = &config.mailspool;
    let path = dir.join(&user.name);
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    // The root steps: the dotlock and a missing mailbox, in MAILSPOOL. When
    // we are not root they are best effort (MAILSPOOL may not be writable
    // by users: Debian's is 2775 root:mail).
    let root = unistd::geteuid().is_root();
    let _lock = match mbox::dotlock(dir, &user.name, mbox::LOCK_TIMEOUT) {
        Ok(l) => Some(l),
        Err(e) if !root && e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => return Err(temp(format!("4.2.0 {e}"))),
    };
    if root || unistd::getuid() == user.uid {
        mbox::create(dir, &user.name, uid, gid)
            .map_err(|e| temp(format!("4.2.0 can not create {}: {e}", path.display())))?;
    }
    let check_forward = args.get("forward-check") == Some("yes");
    let home = PathBuf::from(&user.dir);
    // Measured under the dotlock, before the user's process starts: if it
    // dies mid-message, we cut the mailbox back (see `rollback`).
    let guard = guard(root, &path, uid)?;
    let res = as_user(&user, super::user_limit(config), || {
        // One run instead of two: read the .forward first, and deliver to
        // the mailbox only when it has no entries (the caller expands them).
        let mut said = MboxAnswer::Delivered(None);
        if check_forward {
            match dotforward::read_forward(&home, uid) {
                Ok(ForwardFile::Entries(e)) => {
                    if single.is_none() {
                        print_count(0)?;
                    }
                    return Ok(MboxAnswer::Forward(e));
                }
                Ok(ForwardFile::Ignored(why)) => said = MboxAnswer::Delivered(Some(why)),
                Ok(ForwardFile::Missing) => {}
                Err(t) => {
                    return Err(Failed {
                        temporary: true,
                        why: format!("4.3.0 {}", t.0),
                    });
                }
            }
        }
        let mut f = mbox::open(&path, uid).map_err(|e| Failed {
            temporary: true,
            why: format!("4.2.0 {e}"),
        })?;
        mbox::fcntl_lock(&f, mbox::LOCK_TIMEOUT).map_err(|e| Failed {
            temporary: true,
            why: format!("4.2.0 can not lock {}: {e}", path.display()),
        })?;
        if let Some(g) = &guard {
            g.start(&f).map_err(|e| Failed {
                temporary: true,
                why: format!("4.2.0 {}: {e}", path.display()),
            })?;
        }
        let write_failed = |e: std::io::Error| Failed {
            temporary: true,
            why: format!(
                "{} write to {} failed: {e}",
                write_status(&e),
                path.display()
            ),
        };
        let Some((sender, prepend)) = &single else {
            return append_batch(&mut f, &batch, &extra, guard.as_ref())
                .map(|()| said)
                .map_err(write_failed);
        };
        let stdin = std::io::stdin();
        let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
        mbox::append(&mut f, sender, prepend, &mut input)
            .map(|_| said)
            .map_err(write_failed)
    })
    .map(|_: MboxAnswer| ());
    undo_if_failed(&guard, &res);
    res
}

/// In the user's process: appends a batch's messages (`batch`, their data
/// files `data`) to the mailbox `f`, open and locked, with one fdatasync
/// for all, and says on stdout how many are in it (`count N`). What is in
/// is synced and reported to the root parent (so that it cuts back no
/// further) before it is counted. If one fails, the mailbox is first cut
/// back to the end of the one before, and the count says how many made
/// it, before the error.
fn append_batch(
    f: &mut std::fs::File,
    batch: &[(String, Vec<String>)],
    data: &[OwnedFd],
    guard: Option<&Guard>,
) -> std::io::Result<()> {
    use std::io::Seek;
    // Each from its start: the offset is shared with the runner's
    // descriptor, which has read the header.
    let inputs = data
        .iter()
        .map(|fd| {
            let mut f = std::fs::File::from(fd.try_clone()?);
            f.rewind().map(|()| f)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let done = mbox::append_many(f, batch.iter().zip(inputs));
    if done.count > 0
        && let Some(g) = guard
    {
        // What is in is synced: not to be cut back if we die from now on
        // (before we say how many, or before we exit). Said first, then
        // counted: dying in between costs duplicates, never a loss.
        if let Err(e) = g.advance(f) {
            let _ = print_count(0);
            return Err(e);
        }
    }
    let said = print_count(done.count);
    match done.error {
        Some(e) => Err(e),
        None => said.map_err(|f| std::io::Error::other(f.why)),
    }
}

/// Says how many of a batch's messages are in the mailbox, durable.
fn print_count(n: usize) -> Result<(), Failed> {
    print(&format!("count {n}\n")).map_err(|Failure(_, why)| Failed {
        temporary: true,
        why,
    })
}

/// A [`Guard`] on `path`, the file of `uid` a process of the user is about
/// to append to, when we are root (otherwise that process is us).
fn guard(root: bool, path: &Path, uid: u32) -> Result<Option<Guard>, Failure> {
    if !root {
        return Ok(None);
    }
    Guard::new(path, uid)
        .map(Some)
        .map_err(|e| temp(format!("4.3.0 dma-local: pipe: {e}")))
}

/// After the user's process: if it failed in any way (a signal, the time
/// limit, an error), cuts what it appended back.
fn undo_if_failed<T>(guard: &Option<Guard>, res: &Result<T, Failure>) {
    if let (Some(g), Err(_)) = (guard, res) {
        g.undo();
    }
}

/// What `mbox --forward-check yes` did: delivered (noting an ignored
/// `.forward`), or found `.forward` entries and delivered nothing.
pub enum MboxAnswer {
    /// Appended to the mailbox; why a `.forward` was ignored, if one was.
    Delivered(Option<String>),
    /// The `.forward` has these entries; nothing was delivered.
    Forward(Vec<Entry>),
}

impl MboxAnswer {
    /// The wire form (stdout of dma-local).
    pub fn encode(&self) -> String {
        match self {
            MboxAnswer::Delivered(None) => "delivered\n".into(),
            MboxAnswer::Delivered(Some(why)) => {
                dotforward::encode(&ForwardFile::Ignored(why.clone()))
            }
            MboxAnswer::Forward(e) => dotforward::encode(&ForwardFile::Entries(e.clone())),
        }
    }

    /// Reads [`MboxAnswer::encode`]'s output.
    pub fn decode(text: &str) -> Option<MboxAnswer> {
        if text == "delivered\n" {
            return Some(MboxAnswer::Delivered(None));
        }
        match dotforward::decode(text)? {
            ForwardFile::Ignored(why) => Some(MboxAnswer::Delivered(Some(why))),
            ForwardFile::Entries(e) => Some(MboxAnswer::Forward(e)),
            ForwardFile::Missing => None,
        }
    }
}

impl AsUserResult for MboxAnswer {
    fn emit(self) -> Result<(), Failure> {
        print(&self.encode())
    }
    fn done() -> Self {
        MboxAnswer::Delivered(None)
    }
}

/// The enhanced status for a failed write: a full mailbox or disk is 4.2.2
/// or 4.3.1, as RFC 3463 has them.
fn write_status(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(nix::libc::EDQUOT | nix::libc::EFBIG) => "4.2.2",
        Some(nix::libc::ENOSPC) => "4.3.1",
        _ => "4.2.0",
    }
}

/// `pipe` and `file`: check the authority, become the user, deliver.
fn program_mode(args: &Args, config: &Config) -> Result<(), Failure> {
    let user = lookup(args.need("user")?)?;
    let origin = match args.need("origin")?.split_once(':') {
        Some(("forward", u)) => Origin::Forward(u.to_string()),
        Some(("alias", a)) => Origin::Alias(a.to_string()),
        _ => return Err(Failure(EX_USAGE, "4.3.5 dma-local: bad --origin".into())),
    };
    // Whose authority: the .forward's owner, or ALIAS_USER for aliases.
    match &origin {
        Origin::Forward(u) if *u == user.name => {
            if user.uid.is_root() && !config.root_forward_programs {
                return Err(perm(
                    "5.7.1 root's .forward may not run commands or write files (ROOT_FORWARD_PROGRAMS)",
                ));
            }
        }
        Origin::Alias(_) if user.name == config.alias_user && !user.uid.is_root() => {}
        _ => {
            return Err(perm(
                "5.7.1 not authorized: the user does not match the origin",
            ));
        }
    }
    let entry = if args.mode == "pipe" {
        Entry::Pipe(args.need("command")?.to_string())
    } else {
        let p = args.need("path")?;
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(Failure(EX_USAGE, "4.3.5 dma-local: bad --path".into()));
        }
        if p.len() > 1 && p.ends_with('/') {
            Entry::Maildir(p.to_string())
        } else {
            Entry::File(p.to_string())
        }
    };
    let sender = args.need("sender")?.to_string();
    let prepend = args.prepend()?;
    let aliases_path = config.aliases.clone();
    let home = PathBuf::from(&user.dir);
    let uid = user.uid.as_raw();
    let timeout = config.pipe_timeout;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), user.dir.display().to_string()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name.clone()),
        ("SHELL".into(), user.shell.display().to_string()),
        ("SENDER".into(), sender.clone()),
    ];
    if args.mode == "pipe" {
        let rcpt = args.need("recipient")?.to_string();
        let (local, domain) = crate::address::split(&rcpt);
        env.push(("RECIPIENT".into(), rcpt.clone()));
        env.push(("LOCAL".into(), local.to_string()));
        env.push(("DOMAIN".into(), domain.unwrap_or("").to_string()));
        env.push((
            "ORIGINAL_RECIPIENT".into(),
            args.need("original")?.to_string(),
        ));
    }
    // A /file is measured before the user's process starts, so that a
    // message it leaves half written is cut back (see `rollback`).
    let guard = match &entry {
        Entry::File(p) => guard(unistd::geteuid().is_root(), Path::new(p), uid)?,
        _ => None,
    };
    let res = as_user(&user, super::user_limit(config), || {
        authorize(&origin, &entry, &home, uid, &aliases_path)?;
        let stdin = std::io::stdin();
        match &entry {
            Entry::Pipe(command) => {
                let mut prefix = mbox::from_line(&sender, &crate::clock::now()).into_bytes();
                let rp = if sender.is_empty() {
                    "<>".to_string()
                } else {
                    format!("<{sender}>")
                };
                prefix.extend_from_slice(format!("Return-Path: {rp}\n").as_bytes());
                for h in &prepend {
                    prefix.extend_from_slice(format!("{h}\n").as_bytes());
                }
                let job = pipe::Job {
                    command,
                    home: &home,
                    env,
                    timeout,
                    prefix,
                    // Always a dma-local process of this one request.
                    own_process: true,
                };
                pipe::run(&job, stdin)
            }
            Entry::File(p) => {
                let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
                super::file::append(Path::new(p), uid, &sender, &prepend, &mut input, |f| {
                    guard.as_ref().map_or(Ok(()), |g| g.start(f))
                })
            }
            Entry::Maildir(p) => {
                let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
                super::file::maildir(Path::new(p), &prepend, &mut input)
            }
            _ => unreachable!("only pipes and files get here"),
        }
    });
    undo_if_failed(&guard, &res);
    res
}

/// Finds `entry` again, as the user, where `origin` says it comes from.
fn authorize(
    origin: &Origin,
    entry: &Entry,
    home: &Path,
    uid: u32,
    aliases: &Path,
) -> Result<(), Failed> {
    let denied = |why: String| Failed {
        temporary: false,
        why: format!("5.7.1 not authorized: {why}"),
    };
    match origin {
        Origin::Forward(u) => match dotforward::read_forward(home, uid) {
            Ok(ForwardFile::Entries(e)) if e.contains(entry) => Ok(()),
            Ok(_) => Err(denied(format!("not in the .forward of {u} (any more)"))),
            Err(t) => Err(Failed {
                temporary: true,
                why: format!("4.3.0 {}", t.0),
            }),
        },
        Origin::Alias(name) => {
            let a = Aliases::load(aliases).map_err(|e| Failed {
                temporary: true,
                why: format!("4.3.5 aliases file: {e}"),
            })?;
            let wanted = match entry {
                Entry::Pipe(c) => AliasTarget::Pipe(c.clone()),
                Entry::File(p) | Entry::Maildir(p) => AliasTarget::File(p.clone()),
                _ => return Err(denied("not a command or file".into())),
            };
            if a.entries
                .iter()
                .any(|e| e.name == *name && e.targets.contains(&wanted))
            {
                Ok(())
            } else {
                Err(denied(format!("not in the aliases file under `{name}'")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The user's process is waited for up to its limit, then killed.
    #[test]
    fn a_user_process_past_its_limit_is_killed_and_one_within_is_not() {
        for (nap, limit, want_killed) in [
            (30, Duration::from_millis(300), true),
            (0, Duration::from_secs(20), false),
        ] {
            match privsep::fork().unwrap() {
                // Only async-signal-safe calls: the test harness has threads.
                Forked::Child => {
                    if nap > 0 {
                        nix::unistd::sleep(nap);
                    }
                    privsep::exit_now(3);
                }
                Forked::Parent(pid) => {
                    let start = Instant::now();
                    let (status, killed) = wait_user(pid, limit);
                    assert_eq!(killed, want_killed, "{status:?}");
                    match status {
                        Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) if want_killed => {}
                        Ok(WaitStatus::Exited(_, 3)) if !want_killed => {}
                        other => panic!("{other:?}"),
                    }
                    assert!(start.elapsed() < Duration::from_secs(10));
                }
            }
        }
    }
}
