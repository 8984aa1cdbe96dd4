//! Waiting for a `dma-local` run against one deadline, with bounded output.
//!
//! The caller of `dma-local` (a queue run, as user mail) must always get
//! its run back: a helper that hangs (a mailbox on a dead file system, a
//! process it left holding its output) ends in a deferral at the deadline,
//! and the queue run moves on. The helper runs set-user-id root, so the
//! caller may not be allowed to signal it: it kills where it can and, in any
//! case, stops waiting and closes its ends.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The most of a run's stdout that is kept (a `.forward` is at most 64 KiB).
pub const MAX_STDOUT: usize = 1 << 20;
/// The most of a run's stderr that is kept (one line is expected).
pub const MAX_STDERR: usize = 64 * 1024;

/// What is left until `deadline`, as a poll(2) timeout.
fn until(deadline: Instant) -> PollTimeout {
    let left = deadline.saturating_duration_since(Instant::now());
    // Round up: a poll that ends just short of the deadline would spin.
    PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
}

/// Waits until `fd` is readable (or at its end) or `deadline` passes;
/// `Ok(false)` at the deadline.
pub fn readable(fd: impl AsFd, deadline: Instant) -> io::Result<bool> {
    loop {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, until(deadline)) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads two pipes to their end at once (a run may fill either first),
/// keeping at most [`MAX_STDOUT`] and [`MAX_STDERR`] bytes (the rest is read
/// and dropped). `Ok(None)` if `deadline` passes first.
pub fn read_both(
    out: OwnedFd,
    err: OwnedFd,
    deadline: Instant,
) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut files = [
        Some(std::fs::File::from(out)),
        Some(std::fs::File::from(err)),
    ];
    let limits = [MAX_STDOUT, MAX_STDERR];
    let mut bufs = [Vec::new(), Vec::new()];
    let mut chunk = [0u8; 8192];
    while files.iter().any(Option::is_some) {
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let ready: Vec<usize> = {
            let open: Vec<usize> = (0..2).filter(|&i| files[i].is_some()).collect();
            let mut pfds: Vec<PollFd> = open
                .iter()
                .map(|&i| PollFd::new(files[i].as_ref().expect("open").as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut pfds, until(deadline)) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            open.iter()
                .zip(&pfds)
                .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(&i, _)| i)
                .collect()
        };
        for i in ready {
            let f = files[i].as_mut().expect("polled");
            match f.read(&mut chunk) {
                Ok(0) => files[i] = None,
                Ok(n) => {
                    let keep = n.min(limits[i] - bufs[i].len());
                    bufs[i].extend_from_slice(&chunk[..keep]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    let [o, e] = bufs;
    Ok(Some((o, e)))
}

/// Waits for `child` to end until `deadline`; `Ok(None)` if it has not.
pub fn wait(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kills `child` if we may (a helper that runs as root with real uid root
/// refuses our signal: EPERM is ignored) and reaps it if it ends within a
/// moment; otherwise it is left to end by itself, unwaited.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = wait(child, Instant::now() + Duration::from_secs(1));
}
