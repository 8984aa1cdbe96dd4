//! Privileges: the one module that calls `fork`, and the only `unsafe` code.
//!
//! The privilege model (see README, "Privileges"):
//! - `dma` is installed set-group-id `mail`. It never needs root. Started by
//!   root without `-C`, it switches to the `mail` user first, as dma does.
//!   With `-C` it gives up any set-id privilege before reading the file.
//! - `dma-local` is installed set-user-id root, mode 4750 group `mail`, so
//!   only `dma` (running as group mail) can start it. It is the only code that
//!   runs as root. First thing it becomes root entirely and resets its
//!   process state ([`reset_process_state`]); it creates the dotlock and a
//!   missing mailbox in MAILSPOOL, then forks a child that takes the
//!   recipient's uid, gid and groups before it reads a byte of the message;
//!   or, asked for a runner, becomes `mail` and delivers the queue (see
//!   `runner`). No delivery runs in a process of the submitting user.

#![allow(unsafe_code)] // fork(2) is unsafe in nix; every call site is single-threaded.

use std::sync::OnceLock;

use nix::unistd::{self, ForkResult, Gid, Uid, User};

/// Whether this process runs with set-id privilege (effective ids that differ
/// from the real ones).
pub fn is_setid() -> bool {
    unistd::getuid() != unistd::geteuid() || unistd::getgid() != unistd::getegid()
}

/// Whether `dma-local` was started set-id, recorded before its first change
/// of ids (see [`record_start`]).
static STARTED_SETID: OnceLock<bool> = OnceLock::new();

/// Records, before any change of ids, whether this process was started
/// set-id. `dma-local` calls it first: once it has become root entirely it
/// can no longer tell, and everything it trusts (its `--config` argument
/// above all) depends on it. The first call wins.
pub fn record_start() -> bool {
    *STARTED_SETID.get_or_init(is_setid)
}

/// Whether this process was started set-id (see [`record_start`]; before
/// it is called, whether it runs set-id now).
pub fn started_setid() -> bool {
    STARTED_SETID.get().copied().unwrap_or_else(is_setid)
}

/// Becomes root entirely (real, effective and saved ids, no supplementary
/// groups), so that the user who started a set-user-id program can no
/// longer signal it, trace it or see into it.
pub fn become_root() -> nix::Result<()> {
    unistd::setgroups(&[])?;
    unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
}

/// The resource limits a delivery process gets, whatever its caller had:
/// `(resource, soft, hard)`. Unlimited where the kernel default is, the
/// usual defaults elsewhere; no core files (set-id programs must not leave
/// them).
fn sane_limits() -> Vec<(nix::sys::resource::Resource, u64, u64)> {
    use nix::sys::resource::{RLIM_INFINITY as INF, Resource::*};
    vec![
        (RLIMIT_CPU, INF, INF),
        (RLIMIT_FSIZE, INF, INF),
        (RLIMIT_DATA, INF, INF),
        (RLIMIT_STACK, 8 << 20, INF),
        (RLIMIT_CORE, 0, 0),
        (RLIMIT_RSS, INF, INF),
        (RLIMIT_NPROC, INF, INF),
        (RLIMIT_NOFILE, 1024, 4096),
        (RLIMIT_MEMLOCK, 8 << 20, 8 << 20),
        (RLIMIT_AS, INF, INF),
        (RLIMIT_LOCKS, INF, INF),
        (RLIMIT_SIGPENDING, 16384, 16384),
        (RLIMIT_MSGQUEUE, 819200, 819200),
        (RLIMIT_NICE, 0, 0),
        (RLIMIT_RTPRIO, 0, 0),
        (RLIMIT_RTTIME, INF, INF),
    ]
}

/// The least a delivery process needs of each limit (soft): whoever asks
/// for a runner while below it (a hard limit lowered, and no
/// `CAP_SYS_RESOURCE` to raise it back, as in some containers) gets none;
/// the mail waits for a runner that has them.
fn limit_floors() -> Vec<(nix::sys::resource::Resource, &'static str, u64)> {
    use nix::sys::resource::{RLIM_INFINITY as INF, Resource::*};
    vec![
        (RLIMIT_CPU, "RLIMIT_CPU", INF),
        (RLIMIT_FSIZE, "RLIMIT_FSIZE", INF),
        (RLIMIT_DATA, "RLIMIT_DATA", INF),
        (RLIMIT_AS, "RLIMIT_AS", INF),
        (RLIMIT_STACK, "RLIMIT_STACK", 8 << 20),
        (RLIMIT_NOFILE, "RLIMIT_NOFILE", 1024),
        (RLIMIT_NPROC, "RLIMIT_NPROC", 1024),
    ]
}

/// The first resource limit (its name and soft value) below what a
/// delivery process needs, after [`reset_process_state`] did what it could.
pub fn limit_below_floor() -> Option<(&'static str, u64)> {
    limit_floors().into_iter().find_map(|(res, name, floor)| {
        let (soft, _) = nix::sys::resource::getrlimit(res).ok()?;
        (soft < floor).then_some((name, soft))
    })
}

/// Gives this process a clean, fixed state, whatever its caller left it:
/// umask 077, the resource limits of `sane_limits` (as root; otherwise
/// each soft limit raised to its hard one), no descriptors above 2, every
/// signal at its default and none blocked (SIGPIPE and SIGXFSZ then
/// ignored: a write error must be an error, not a kill), the default
/// execution domain, a 50 µs timer slack; as root also the normal scheduling
/// policy, nice 0, no I/O priority of its own, OOM score 0 and every CPU.
/// For `dma-local`, first thing, and so for every runner and delivery
/// process it starts.
pub fn reset_process_state() {
    use nix::sys::resource::{getrlimit, setrlimit};
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let root = unistd::geteuid().is_root();
    for (res, soft, hard) in sane_limits() {
        if !root || setrlimit(res, soft, hard).is_err() {
            // Without root a lowered hard limit stays: raise what we may.
            if let Ok((_, h)) = getrlimit(res) {
                let _ = setrlimit(res, soft.min(h), h);
            }
        }
    }
    // SAFETY: close_range(2) only closes descriptors; nothing of ours above
    // 2 is open this early (the caller's are what we close).
    unsafe { nix::libc::close_range(3, u32::MAX, 0) };
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SIGSEGV and SIGBUS keep Rust's stack overflow handler, unless
        // the caller had them ignored (then Rust installs none).
        if matches!(sig, Signal::SIGSEGV | Signal::SIGBUS) {
            use nix::sys::signal::{SaFlags, SigAction, sigaction};
            let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: SIG_DFL runs no code of ours; the old action is put
            // back as it was.
            if let Ok(old) = unsafe { sigaction(sig, &dfl) }
                && !matches!(old.handler(), SigHandler::SigIgn)
            {
                let _ = unsafe { sigaction(sig, &old) };
            }
            continue;
        }
        let handler = if matches!(sig, Signal::SIGPIPE | Signal::SIGXFSZ) {
            SigHandler::SigIgn
        } else {
            SigHandler::SigDfl
        };
        // SAFETY: SIG_DFL and SIG_IGN run no code of ours in signal context.
        let _ = unsafe { signal(sig, handler) };
    }
    reset_realtime_signals();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: plain system calls on this process, with valid arguments:
    // the default execution domain, the default timer slack (0 means it).
    unsafe {
        nix::libc::personality(0);
        // Explicitly: 0 would mean "the default", which a process inherits
        // from its parent's current slack.
        nix::libc::prctl(nix::libc::PR_SET_TIMERSLACK, 50_000, 0, 0, 0);
    }
    if root {
        // An OOM score the caller raised would make us the kernel's first
        // victim.
        let _ = std::fs::write("/proc/self/oom_score_adj", "0");
        // SAFETY: plain system calls on this process, with valid arguments:
        // the normal scheduling policy, nice 0, I/O priority "none" (from
        // the nice value), every CPU.
        unsafe {
            let param = nix::libc::sched_param { sched_priority: 0 };
            nix::libc::sched_setscheduler(0, nix::libc::SCHED_OTHER, &param);
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 0);
            const IOPRIO_WHO_PROCESS: i32 = 1;
            nix::libc::syscall(nix::libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, 0);
            let mut all: nix::libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..nix::libc::CPU_SETSIZE as usize {
                nix::libc::CPU_SET(cpu, &mut all);
            }
            nix::libc::sched_setaffinity(0, std::mem::size_of_val(&all), &all);
        }
    }
}

/// Sets the real-time signals (32 to 64) to their default: an ignored one
/// survives exec into the user's program. Through the system call itself,
/// since the C library refuses to touch 32 and 33, which it keeps for its
/// threads (it installs its own handlers for them only once threads exist,
/// and nothing here has started one yet).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn reset_realtime_signals() {
    /// The kernel's `struct sigaction` on these architectures.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: nix::libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 32..=64 {
        // SAFETY: rt_sigaction with a valid struct and no old-action
        // pointer; SIG_DFL runs no code of ours.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

/// Elsewhere, the real-time signals the C library lets us set.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn reset_realtime_signals() {
    for sig in nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX() {
        // SAFETY: SIG_DFL runs no code of ours.
        unsafe { nix::libc::signal(sig, nix::libc::SIG_DFL) };
    }
}

/// Gives up set-id privilege for good (for `-C`): effective and saved ids
/// become the real ones.
pub fn drop_setid() -> nix::Result<()> {
    let (gid, uid) = (unistd::getgid(), unistd::getuid());
    unistd::setresgid(gid, gid, gid)?;
    unistd::setresuid(uid, uid, uid)
}

/// Becomes `user` entirely: `groups` (its groups as `getgrouplist` gives
/// them, asked earlier and remembered by the caller), gid and uid (real,
/// effective and saved), then checks that there is no way back.
pub fn become_user_in(user: &User, groups: &[Gid]) -> nix::Result<()> {
    become_with_groups(user, groups)
}

/// Becomes the `mail` user ([`mail_user`]) entirely, with its primary
/// group as its only group, then checks that there is no way back.
///
/// No `getgrouplist`: asking NSS for `mail`'s supplementary groups loads
/// every group module (libnss_systemd and the libraries it pulls in), the
/// largest cost of a root submission, and what `mail` needs is known: the
/// spool and `dma-local` are group `mail`'s, nothing else is. Any further
/// group a system gives `mail` would only be rights we do not use.
pub fn become_mail(mail: &User) -> nix::Result<()> {
    become_with_groups(mail, &[mail.gid])
}

/// Takes `groups`, then `user`'s gid and uid (real, effective and saved);
/// then checks that there is no way back to root.
fn become_with_groups(user: &User, groups: &[Gid]) -> nix::Result<()> {
    if unistd::geteuid() != user.uid {
        unistd::setgroups(groups)?;
    }
    unistd::setresgid(user.gid, user.gid, user.gid)?;
    unistd::setresuid(user.uid, user.uid, user.uid)?;
    if user.uid != Uid::from_raw(0) && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(nix::Error::EPERM);
    }
    Ok(())
}

/// The user `mail`, whose ids dma takes when started by root.
pub fn mail_user() -> Option<User> {
    User::from_name("mail").ok().flatten()
}

/// Where the caller continues after [`fork`].
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(nix::unistd::Pid),
    /// In the child.
    Child,
}

/// fork(2). Callers are single-threaded programs (dma and dma-local never
/// start threads), so the child may do anything the parent could.
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: dma and dma-local are single-threaded; no lock can be held by
    // another thread at the time of the fork.
    match unsafe { unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// A descriptor on the child `pid` (pidfd_open, Linux 5.3 and later) that
/// polls readable once it has ended, close-on-exec: a wait with a time
/// limit needs no thread.
pub fn pidfd(pid: nix::unistd::Pid) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new
    // descriptor or -1; nothing else is touched.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = std::os::fd::RawFd::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: a new descriptor, ours alone.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// In a forked child: closes every descriptor above 2 but those in `keep`
/// (lock files and sockets its parent holds must not stay held by it).
pub fn close_all_but(keep: &[std::os::fd::RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep.into_iter().filter(|&k| k >= 3) {
        if k > from {
            // SAFETY: closes descriptors of this process only.
            unsafe { nix::libc::close_range(from, k - 1, 0) };
        }
        from = from.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { nix::libc::close_range(from, u32::MAX, 0) };
}

/// Ends a forked child at once, with `code`: no destructor runs, so
/// nothing the parent still uses (a socket shut down on drop, a buffered
/// stream) is touched.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running anything of ours.
    unsafe { nix::libc::_exit(code) }
}

/// Removes every environment variable but those named in `keep`. For set-id
/// runs, where the environment belongs to the caller.
pub fn clear_env(keep: &[&str]) {
    for (k, _) in std::env::vars_os() {
        if !keep.iter().any(|kk| k == *kk) {
            // SAFETY: dma and dma-local are single-threaded.
            unsafe { std::env::remove_var(&k) };
        }
    }
}

/// Sets an environment variable (used to fix PATH for set-id runs).
pub fn set_env(k: &str, v: &str) {
    // SAFETY: dma and dma-local are single-threaded.
    unsafe { std::env::set_var(k, v) };
}

/// Ignores SIGXFSZ, so that writing past a file size limit fails with EFBIG
/// (and the mailbox is cut back) instead of killing the writer mid-message.
pub fn ignore_sigxfsz() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no code of ours in signal context.
    let _ = unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) };
}

/// Makes the command start in a session (and process group) of its own, so
/// that a time limit can kill everything it started, and with every signal
/// at its default: what we ignore (SIGXFSZ, SIGPIPE) is ours, not the
/// command's.
pub fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) and signal(2) with SIG_DFL are async-signal-safe;
    // nothing else runs in pre_exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::signal::{SigHandler, Signal, signal};
            let _ = signal(Signal::SIGXFSZ, SigHandler::SigDfl);
            let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
            unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
}

/// Takes ownership of descriptors just received over a socket
/// (`SCM_RIGHTS`), so that each is closed exactly once.
pub fn own_received_fds(raw: Vec<std::os::fd::RawFd>) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    raw.into_iter()
        // SAFETY: the kernel has just installed these descriptors in this
        // process for this message; nothing else refers to them.
        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Makes this process adopt its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`), even those that left its session: then
/// [`kill_children`] reaches everything a command started.
pub fn become_subreaper() {
    // SAFETY: a plain prctl on this process.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// SIGKILLs and reaps every child of this process, and with
/// [`become_subreaper`] the descendants they leave to it, round after
/// round (at most 50) until none is left.
pub fn kill_children() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for _ in 0..50 {
        let mut pids = Vec::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                    pids.extend(
                        text.split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok()),
                    );
                }
            }
        }
        if pids.is_empty() {
            return;
        }
        for &p in &pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        for &p in &pids {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(p), None);
        }
    }
}

/// Sends SIGKILL to the process group `pgid`.
pub fn kill_group(pgid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}
