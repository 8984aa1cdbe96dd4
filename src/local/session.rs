//! `dma-local session`: one helper process for the many deliveries of a
//! runner, instead of one exec of the helper per delivery.
//!
//! Starting a program is what local delivery cost most: the exec, the
//! dynamic loader, and in the user's process the NSS modules that
//! `getgrouplist` loads. A runner (a background delivery or a queue worker)
//! therefore starts `dma-local session` once, with one end of a
//! `SOCK_SEQPACKET` socket pair as its stdin, and hands it each run:
//!
//! - request, one packet: the arguments of one `dma-local` run, each followed
//!   by a NUL (what its command line would be), with three descriptors
//!   attached (`SCM_RIGHTS`): the run's stdin, stdout and stderr, and for a
//!   batch (`mbox` with `--message`) one more per message, its data file
//!   (at most [`crate::deliver::MAX_BATCH`]);
//! - answer, one packet: the run's exit code, 4 bytes little-endian; a run
//!   ended by signal N answers `-N`.
//!
//! A mailbox delivery (`mbox`, the common case) runs in the session
//! itself: it does the root steps (the dotlock, a missing mailbox, the
//! rollback guard), with the request's descriptors as 0, 1 and 2 for the
//! time of the run, and forks the one process that becomes the user and
//! reads the message, the `.forward` and the mailbox. Every other request
//! gets a process of its own that takes the three descriptors, lets go of
//! the socket, and does exactly what `dma-local ARGS...` does (same
//! checks, same configuration rules, same child that becomes the user):
//! a `.forward` command's processes are that process's to reap and kill.
//! No process a user's delivery runs in keeps the socket. The session
//! reads the configuration once (again when it changes) and remembers the
//! users it found; it loads the group database's NSS modules once, so that
//! the processes it forks inherit them.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recv,
    recvmsg, send, sendmsg, socketpair,
};
use nix::sys::wait::{WaitStatus, waitpid};

use super::deadline;
use crate::exit::{EX_OK, EX_OSERR, EX_TEMPFAIL, EX_USAGE};
use crate::privsep::{self, Forked};

/// The largest request: arguments are addresses, header lines and a path.
const MAX_REQUEST: usize = 64 * 1024;

/// How a run through the session ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code, or `Err(N)` if signal N ended it.
    pub code: Result<i32, i32>,
    /// What it wrote on stdout.
    pub stdout: Vec<u8>,
    /// What it wrote on stderr.
    pub stderr: Vec<u8>,
}

/// Why a run through the session did not come back.
#[derive(Debug)]
pub enum CallError {
    /// The request never reached the session: nothing was done, the caller
    /// may run the helper itself.
    NotSent(io::Error),
    /// The request went out but no answer came back: whether it was done
    /// is unknown.
    Lost(io::Error),
    /// No answer came back before the deadline: whether it was done is
    /// unknown, and the session must not be used again (it is killed if
    /// we may, and let go of in any case).
    TimedOut,
}

/// Whether a run goes through a session.
#[derive(Debug, Default)]
pub enum Use {
    /// No: every delivery runs the helper (a single delivery, `-bv`).
    #[default]
    Off,
    /// Yes, started at the first delivery (runners and queue workers).
    Wanted,
    /// Started.
    Open(Session),
    /// It could not be started or broke: every delivery runs the helper.
    Failed,
}

/// A running `dma-local session`. Dropping it ends the session (it sees the
/// end of its socket) and waits for it a moment; one whose run timed out is
/// killed instead, if we may.
#[derive(Debug)]
pub struct Session {
    sock: OwnedFd,
    child: Child,
    /// A run timed out: the session is busy for as long as it likes.
    stuck: bool,
}

impl Session {
    /// Starts `helper session`.
    pub fn start(helper: &Path) -> io::Result<Session> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let child = Command::new(helper)
            .arg("session")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Session {
            sock: ours,
            child,
            stuck: false,
        })
    }

    /// Runs `dma-local ARGS...` in the session with `stdin` (or /dev/null)
    /// and collects its output, as `Command::output` would, until
    /// `deadline` (then [`CallError::TimedOut`]).
    pub fn call(
        &mut self,
        args: &[String],
        stdin: Option<BorrowedFd>,
        extra: &[BorrowedFd],
        deadline: Instant,
    ) -> Result<Finished, CallError> {
        if self.stuck {
            return Err(CallError::TimedOut);
        }
        let not_sent = CallError::NotSent;
        let null;
        let stdin = match stdin {
            Some(f) => f,
            None => {
                null = std::fs::File::open("/dev/null").map_err(not_sent)?;
                null.as_fd()
            }
        };
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| not_sent(e.into()))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| not_sent(e.into()))?;
        let mut packet = Vec::new();
        for a in args {
            packet.extend_from_slice(a.as_bytes());
            packet.push(0);
        }
        if packet.len() > MAX_REQUEST {
            return Err(not_sent(io::Error::other("request too long")));
        }
        if extra.len() > crate::deliver::MAX_BATCH {
            return Err(not_sent(io::Error::other("too many descriptors")));
        }
        let mut fds = vec![stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        fds.extend(extra.iter().map(|f| f.as_raw_fd()));
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&packet)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| not_sent(e.into()))?;
        // Only the run holds the write ends now: end of file is its end.
        drop((out_w, err_w));
        let lost = CallError::Lost;
        let output = deadline::read_both(out_r, err_r, deadline).map_err(lost)?;
        let Some((stdout, stderr)) = output else {
            return Err(self.timed_out());
        };
        if !deadline::readable(&self.sock, deadline).map_err(lost)? {
            return Err(self.timed_out());
        }
        let mut answer = [0u8; 4];
        let n = recv(self.sock.as_raw_fd(), &mut answer, MsgFlags::MSG_DONTWAIT)
            .map_err(|e| lost(e.into()))?;
        if n != 4 {
            return Err(lost(io::Error::other("dma-local session ended")));
        }
        let code = i32::from_le_bytes(answer);
        Ok(Finished {
            code: if code >= 0 { Ok(code) } else { Err(-code) },
            stdout,
            stderr,
        })
    }
}

impl Session {
    /// Gives up on the session: kills it if we may.
    fn timed_out(&mut self) -> CallError {
        self.stuck = true;
        deadline::kill(&mut self.child);
        CallError::TimedOut
    }
}

/// How long an idle session gets to end once its socket is closed.
const END_WAIT: Duration = Duration::from_secs(10);

impl Drop for Session {
    fn drop(&mut self) {
        // Closing our end tells the session to finish.
        let _ = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if self.stuck
            || !matches!(
                deadline::wait(&mut self.child, Instant::now() + END_WAIT),
                Ok(Some(_))
            )
        {
            deadline::kill(&mut self.child);
        }
    }
}

/// The session's side: serves requests on stdin until it is closed.
/// Returns the exit code.
pub fn serve() -> i32 {
    if privsep::started_setid() {
        // Nothing here reads the environment; nothing may inherit it.
        privsep::clear_env(&[]);
    }
    // Off descriptor 0, which every request's process takes for its stdin.
    let sock = match nix::unistd::dup(std::io::stdin().as_fd()) {
        Ok(s) => s,
        Err(_) => return EX_OSERR,
    };
    let _ = std::fs::File::open("/dev/null").map(|n| nix::unistd::dup2_stdin(&n));
    SOCKET.store(sock.as_raw_fd(), std::sync::atomic::Ordering::Relaxed);
    // Load the group database's modules once; each request's process (and
    // the user's process it forks) inherits them.
    let _ = nix::unistd::getgrouplist(c"root", nix::unistd::Gid::from_raw(0));
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (n, fds) = match receive(&sock, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return EX_OK,
            Err(_) => return EX_OSERR,
        };
        let code = if fds.len() < 3 || n == 0 {
            EX_USAGE
        } else {
            let args: Vec<String> = buf[..n]
                .strip_suffix(&[0])
                .unwrap_or(&buf[..n])
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            run_one(&sock, fds, args)
        };
        if send(
            sock.as_raw_fd(),
            &code.to_le_bytes(),
            MsgFlags::MSG_NOSIGNAL,
        )
        .is_err()
        {
            return EX_OK;
        }
    }
}

/// Receives one request: its length and descriptors; `None` at the end.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> nix::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 3 + crate::deliver::MAX_BATCH]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            other => break other?,
        }
    };
    let mut raw = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
    }
    let fds = privsep::own_received_fds(raw);
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    if msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
    {
        // Too long, or descriptors lost: refuse the request.
        return Ok(Some((0, fds)));
    }
    Ok(Some((msg.bytes, fds)))
}

/// Runs one request; returns its exit code (`-N` for signal N). A mailbox
/// delivery (`mbox`) runs here, in the session: its root steps are a
/// dotlock, a missing mailbox and the rollback guard, and everything that
/// touches the user's files or the message happens in the process it forks
/// to become the user, so a delivery costs one process, not two. The
/// other modes start programs or read users' files through a process of
/// their own per request (a `.forward` command's processes are that
/// process's to reap and kill).
fn run_one(sock: &OwnedFd, fds: Vec<OwnedFd>, args: Vec<String>) -> i32 {
    if args.first().is_some_and(|m| m == "mbox") {
        return run_here(fds, args);
    }
    run_forked(sock, fds, args)
}

/// Runs a request in the session itself, with its descriptors as 0, 1 and
/// 2 for the time of the run (then /dev/null again: the caller reads the
/// output to its end).
fn run_here(mut fds: Vec<OwnedFd>, args: Vec<String>) -> i32 {
    let extra = fds.split_off(3);
    let taken = nix::unistd::dup2_stdin(&fds[0])
        .and_then(|_| nix::unistd::dup2_stdout(&fds[1]))
        .and_then(|_| nix::unistd::dup2_stderr(&fds[2]));
    drop(fds);
    let code = match taken {
        Ok(_) => super::helper::run_once_with(args, extra),
        Err(_) => EX_OSERR,
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdin(&null);
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(&null);
        }
        Err(_) => {
            for fd in 0..3 {
                let _ = nix::unistd::close(fd);
            }
        }
    }
    code
}

/// The session's socket, once it serves: a process it forks closes it
/// ([`close_socket`]).
static SOCKET: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// In a process forked by the session (a user's): lets go of the session's
/// socket, which is the runner's and none of that process's business.
pub fn close_socket() {
    let fd = SOCKET.swap(-1, std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let _ = nix::unistd::close(fd);
    }
}

/// Runs one request in a process of its own.
fn run_forked(sock: &OwnedFd, mut fds: Vec<OwnedFd>, args: Vec<String>) -> i32 {
    match privsep::fork() {
        Ok(Forked::Child) => {
            let ok = nix::unistd::dup2_stdin(&fds[0])
                .and_then(|_| nix::unistd::dup2_stdout(&fds[1]))
                .and_then(|_| nix::unistd::dup2_stderr(&fds[2]));
            // A batch's data files, kept open (close-on-exec: no program
            // the run starts gets them).
            let extra = fds.split_off(3);
            drop(fds);
            // The run (and the user's process it forks) must not reach the
            // session's socket.
            let _ = nix::unistd::close(sock.as_raw_fd());
            if ok.is_err() {
                std::process::exit(EX_OSERR);
            }
            std::process::exit(super::helper::run_once_with(args, extra));
        }
        Ok(Forked::Parent(pid)) => {
            drop(fds);
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => -(sig as i32),
                _ => EX_TEMPFAIL,
            }
        }
        Err(_) => EX_TEMPFAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_session_that_never_answers_is_given_up_and_killed() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().join("dma-local");
        std::fs::write(&h, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = Session::start(&h).unwrap();
        let start = Instant::now();
        let r = s.call(
            &["mbox".into()],
            None,
            &[],
            Instant::now() + Duration::from_secs(1),
        );
        assert!(matches!(r, Err(CallError::TimedOut)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(4));
        // Killed and reaped; never used again.
        assert!(s.child.try_wait().unwrap().is_some());
        assert!(matches!(
            s.call(
                &["mbox".into()],
                None,
                &[],
                Instant::now() + Duration::from_secs(1)
            ),
            Err(CallError::TimedOut)
        ));
        let start = Instant::now();
        drop(s);
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
