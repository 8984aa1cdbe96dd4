//! Privileges: the one module that calls `fork`, and the only `unsafe` code.
//!
//! The privilege model (see README, "Privileges"):
//! - `dma` is installed set-group-id `mail`. It never needs root. Started by
//!   root without `-C`, it switches to the `mail` user first, as dma does.
//!   With `-C` it gives up any set-id privilege before reading the file.
//! - `dma-local` is installed set-user-id root, mode 4750 group `mail`, so
//!   only `dma` (running as group mail) can start it. It is the only code that
//!   runs as root: it creates the dotlock and a missing mailbox in MAILSPOOL,
//!   then forks a child that takes the recipient's uid, gid and groups before
//!   it reads a byte of the message.

#![allow(unsafe_code)] // fork(2) is unsafe in nix; every call site is single-threaded.

use nix::unistd::{self, ForkResult, Uid, User};

/// Whether this process runs with set-id privilege (effective ids that differ
/// from the real ones).
pub fn is_setid() -> bool {
    unistd::getuid() != unistd::geteuid() || unistd::getgid() != unistd::getegid()
}

/// Gives up set-id privilege for good (for `-C`): effective and saved ids
/// become the real ones.
pub fn drop_setid() -> nix::Result<()> {
    let (gid, uid) = (unistd::getgid(), unistd::getuid());
    unistd::setresgid(gid, gid, gid)?;
    unistd::setresuid(uid, uid, uid)
}

/// Becomes `user` entirely: its supplementary groups, gid and uid (real,
/// effective and saved), then checks that there is no way back.
pub fn become_user(user: &User) -> nix::Result<()> {
    let name = std::ffi::CString::new(user.name.as_str()).map_err(|_| nix::Error::EINVAL)?;
    let groups = unistd::getgrouplist(&name, user.gid)?;
    if unistd::geteuid() != user.uid {
        unistd::setgroups(&groups)?;
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

/// Detaches the current process from its caller: fork, the parent exits 0,
/// the child starts a new session with stdio on /dev/null. The flock on the
/// message is shared by the child's copy of the descriptor, so it survives.
pub fn daemonize() -> nix::Result<()> {
    match fork()? {
        Forked::Parent(_) => std::process::exit(0),
        Forked::Child => {}
    }
    unistd::setsid()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|_| nix::Error::EIO)?;
    unistd::dup2_stdin(&null)?;
    unistd::dup2_stdout(&null)?;
    unistd::dup2_stderr(&null)?;
    Ok(())
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
/// that a time limit can kill everything it started.
pub fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        cmd.pre_exec(|| unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
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

/// Sends SIGKILL to the process group `pgid`.
pub fn kill_group(pgid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}
