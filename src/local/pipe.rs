//! `|command` destinations, run as their user.
//!
//! The command runs through `/bin/sh -c` exactly as the user wrote it; no
//! envelope value is ever put into the command line, only into the
//! environment (SENDER, RECIPIENT, ...). It runs in a session of its own,
//! with a clean environment, in the user's home directory, and is killed
//! with its whole process group at the time limit. The limit covers the
//! whole run, writing the message included: we never block on the pipe, so
//! a process the command left behind (even in a session of its own) that
//! holds its stdin open without reading cannot keep us. Exit 0 is
//! delivered; 75 (EX_TEMPFAIL) and 71 (EX_OSERR), a signal, the time limit
//! or an exit that leaves the message unread in a pipe something still
//! holds defer; anything else bounces with the first lines of the
//! command's output.

use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::file::Failed;
use crate::privsep;

/// How much of the command's output goes into a bounce.
const OUTPUT_SHOWN: usize = 1000;

/// One command to run.
#[derive(Debug)]
pub struct Job<'a> {
    /// The command, for `/bin/sh -c`.
    pub command: &'a str,
    /// The working directory (`/` if it does not exist).
    pub home: &'a Path,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The time limit.
    pub timeout: Duration,
    /// Bytes written before the message (`From ` line, trace headers).
    pub prefix: Vec<u8>,
    /// This process exists for this one command (`dma-local`'s process as
    /// the user): it adopts what the command leaves behind in other
    /// sessions, and at the time limit kills that too. Never in a process
    /// that has children of its own (a test).
    pub own_process: bool,
}

fn temp(why: String) -> Failed {
    Failed {
        temporary: true,
        why,
    }
}

/// Runs `job` with `prefix` and then `input` on its stdin.
///
/// The whole run has one deadline, `job.timeout`: the message is written
/// through a non-blocking pipe while we watch for the command's exit, so
/// that neither a command that does not read nor anything it leaves behind
/// holding its stdin can keep us past it. A command that exits without
/// reading everything (EPIPE) is normal; one whose stdin is still held
/// open, not read, a moment after it exited did not take the message.
pub fn run(job: &Job, input: impl Read) -> Result<(), Failed> {
    let out = tempfile::tempfile().map_err(|e| temp(format!("4.3.0 temporary file: {e}")))?;
    let out2 = out.try_clone().map_err(|e| temp(format!("4.3.0 {e}")))?;
    let out3 = out.try_clone().map_err(|e| temp(format!("4.3.0 {e}")))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(job.command)
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(if job.home.is_dir() {
            job.home
        } else {
            Path::new("/")
        })
        .stdin(Stdio::piped())
        .stdout(out2)
        .stderr(out3);
    privsep::new_session(&mut cmd);
    if job.own_process {
        privsep::become_subreaper();
    }
    let deadline = Instant::now() + job.timeout;
    let mut child = cmd
        .spawn()
        .map_err(|e| temp(format!("4.3.0 can not run /bin/sh: {e}")))?;
    let pid = child.id();
    let stdin = child.stdin.take().expect("piped");
    let mut feed = Feed {
        stdin: None,
        buf: job.prefix.clone(),
        pos: 0,
        input,
        eof: false,
    };
    let end = match set_nonblocking(&stdin) {
        Ok(()) => {
            feed.stdin = Some(stdin);
            feed_until_done(&mut feed, &mut child, deadline)
        }
        Err(e) => End::Broken(temp(format!("4.3.0 command input: {e}"))),
    };
    // Our end is closed in every case before anything else happens.
    drop(feed.stdin.take());
    let status = match end {
        End::Exited(s) => Some(s),
        End::Undrained(s) => {
            privsep::kill_group(pid);
            if job.own_process {
                privsep::kill_children();
            }
            if s.success() {
                let output = first_output(out);
                return Err(temp(format!(
                    "4.3.0 command exited 0 without reading the whole message \
                     (something it started holds its input){output}"
                )));
            }
            Some(s)
        }
        End::TimedOut => {
            privsep::kill_group(pid);
            let _ = child.wait();
            if job.own_process {
                privsep::kill_children();
            }
            None
        }
        End::Broken(f) => {
            privsep::kill_group(pid);
            let _ = child.wait();
            return Err(f);
        }
    };
    let output = first_output(out);
    let Some(status) = status else {
        return Err(temp(format!(
            "4.3.0 command timed out after {}s and was killed{output}",
            job.timeout.as_secs()
        )));
    };
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(c @ (75 | 71)), _) => Err(temp(format!(
            "4.3.0 command deferred the message (exit {c}){output}"
        ))),
        (Some(c), _) => Err(Failed {
            temporary: false,
            why: format!("5.3.0 command failed (exit {c}){output}"),
        }),
        (None, sig) => Err(temp(format!(
            "4.3.0 command killed by signal {}{output}",
            sig.unwrap_or(0)
        ))),
    }
}

/// How long what a command left behind gets, after the command exited, to
/// read the rest of the message.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// The longest wait without looking at the command: how soon its exit is
/// noticed.
const TICK: Duration = Duration::from_millis(10);
/// How much of the message is read at a time.
const CHUNK: usize = 64 * 1024;

/// How feeding the command ended.
enum End {
    /// It exited and its input was written (or it closed its end).
    Exited(ExitStatus),
    /// It exited, and its input was neither read nor closed for
    /// [`DRAIN_GRACE`] after.
    Undrained(ExitStatus),
    /// The deadline passed with the command running.
    TimedOut,
    /// We could not go on (the message could not be read).
    Broken(Failed),
}

/// The message on its way into the command's stdin.
struct Feed<R> {
    /// Our end of the pipe, non-blocking; `None` once written or closed.
    stdin: Option<ChildStdin>,
    /// Bytes read and not yet written: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    input: R,
    eof: bool,
}

impl<R: Read> Feed<R> {
    /// Writes until the pipe is full or everything is written (then our
    /// end is closed). The command closing its end ends the feed too.
    /// `Err` only when the message can not be read.
    fn pump(&mut self) -> io::Result<()> {
        loop {
            let Some(w) = self.stdin.as_mut() else {
                return Ok(());
            };
            if self.pos == self.buf.len() {
                if self.eof {
                    self.stdin = None;
                    return Ok(());
                }
                self.buf.resize(CHUNK, 0);
                self.pos = 0;
                let n = loop {
                    match self.input.read(&mut self.buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let n = n.inspect_err(|_| self.buf.clear())?;
                self.buf.truncate(n);
                self.eof = n == 0;
                continue;
            }
            match w.write(&self.buf[self.pos..]) {
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the command does not want (the rest of) it.
                Err(_) => {
                    self.stdin = None;
                    return Ok(());
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.stdin.is_none()
    }
}

/// Feeds the command and watches it until it exited with its input taken,
/// exited and [`DRAIN_GRACE`] passed, or `deadline` passed.
fn feed_until_done<R: Read>(feed: &mut Feed<R>, child: &mut Child, deadline: Instant) -> End {
    let mut exited: Option<(ExitStatus, Instant)> = None;
    loop {
        if let Err(e) = feed.pump() {
            return End::Broken(temp(format!("4.3.0 reading the message: {e}")));
        }
        if exited.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => exited = Some((s, Instant::now())),
                Ok(None) => {}
                Err(e) => {
                    return End::Broken(temp(format!("4.3.0 waiting for the command: {e}")));
                }
            }
        }
        let now = Instant::now();
        let until = match exited {
            Some((s, _)) if feed.done() => return End::Exited(s),
            Some((s, at)) if now >= (at + DRAIN_GRACE).min(deadline) => {
                return End::Undrained(s);
            }
            Some((_, at)) => (at + DRAIN_GRACE).min(deadline),
            None if now >= deadline => return End::TimedOut,
            None => deadline,
        };
        let wait = (until - now).min(TICK);
        match &feed.stdin {
            Some(w) => {
                let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLOUT)];
                let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
                // EINTR or an error: the next round looks again.
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            None => std::thread::sleep(wait),
        }
    }
}

fn set_nonblocking(f: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(f, FcntlArg::F_GETFL)?);
    fcntl(f, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// `": first line | second line"` of the output, printable, bounded.
fn first_output(mut f: std::fs::File) -> String {
    let mut buf = Vec::new();
    let _ = f.rewind();
    let _ = f.take(OUTPUT_SHOWN as u64).read_to_end(&mut buf);
    let text: String = String::from_utf8_lossy(&buf)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(5)
        .collect::<Vec<_>>()
        .join(" | ")
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cmd: &str, timeout: u64) -> Job<'_> {
        Job {
            command: cmd,
            home: Path::new("/nonexistent"),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("SENDER".into(), "s@x".into()),
            ],
            timeout: Duration::from_secs(timeout),
            own_process: false,
            prefix: b"From s@x now\n".to_vec(),
        }
    }

    #[test]
    fn outcomes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("got");
        let cmd = format!("cat > {}; echo \"$SENDER\" >> {}", f.display(), f.display());
        run(&job(&cmd, 10), &b"Subject: x\n\nbody\n"[..]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "From s@x now\nSubject: x\n\nbody\ns@x\n"
        );
        let e = run(&job("echo oops; echo second >&2; exit 3", 10), &b""[..]).unwrap_err();
        assert!(
            !e.temporary && e.why == "5.3.0 command failed (exit 3): oops | second",
            "{e:?}"
        );
        let e = run(&job("exit 75", 10), &b""[..]).unwrap_err();
        assert!(e.temporary, "{e:?}");
        let e = run(&job("kill -9 $$", 10), &b""[..]).unwrap_err();
        assert!(e.temporary && e.why.contains("signal 9"), "{e:?}");
        // A command that ignores its input and outlives the limit is killed,
        // with what it started.
        let start = Instant::now();
        let e = run(
            &job("sleep 30 & sleep 30", 1),
            std::io::Cursor::new(vec![b'x'; 1 << 20]),
        )
        .unwrap_err();
        assert!(e.temporary && e.why.contains("timed out"), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    /// Kills the process whose pid the test's command wrote into `file`.
    struct KillAtEnd(std::path::PathBuf);

    impl Drop for KillAtEnd {
        fn drop(&mut self) {
            crate::local::tests::kill_pid_in(&self.0);
        }
    }

    #[test]
    fn input_held_open_by_what_the_command_left_behind_ends_in_time() {
        let d = tempfile::tempdir().unwrap();
        let message = vec![b'x'; 280 * 1024];
        // Each leaves a process that holds the pipe open and never reads:
        // in a session of its own, the command having exited (setsid -f);
        // in a session of its own, the command still waiting (setsid run
        // by a shell that does not exec it does not fork); in the command's
        // own process group, the command having exited.
        let cases = [
            (
                "setsid -f",
                "setsid -f sh -c 'echo $$ > {P}; exec sleep 1000'",
            ),
            ("setsid", "setsid sh -c 'echo $$ > {P}; exec sleep 1000'; :"),
            (
                "background",
                "exec 3<&0; sh -c 'echo $$ > {P}; exec sleep 1000' <&3 &",
            ),
        ];
        for (i, (name, cmd)) in cases.iter().enumerate() {
            let pidfile = d.path().join(format!("pid{i}"));
            let _kill = KillAtEnd(pidfile.clone());
            let cmd = cmd.replace("{P}", &pidfile.display().to_string());
            let start = Instant::now();
            let e = run(&job(&cmd, 2), std::io::Cursor::new(message.clone())).expect_err(name);
            let took = start.elapsed();
            assert!(e.temporary, "{name}: {e:?}");
            assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
        }
    }

    #[test]
    fn a_command_that_exits_without_reading_is_normal() {
        let message = vec![b'x'; 280 * 1024];
        for cmd in ["exit 0", "head -c 10 >/dev/null"] {
            let start = Instant::now();
            run(&job(cmd, 10), std::io::Cursor::new(message.clone())).unwrap();
            assert!(start.elapsed() < Duration::from_secs(5), "{cmd}");
        }
        let e = run(&job("exit 75", 10), std::io::Cursor::new(message.clone())).unwrap_err();
        assert!(e.temporary && e.why.contains("exit 75"), "{e:?}");
        let e = run(&job("exit 3", 10), std::io::Cursor::new(message)).unwrap_err();
        assert!(!e.temporary, "{e:?}");
    }
}
