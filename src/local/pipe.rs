//! `|command` destinations, run as their user.
//!
//! The command runs through `/bin/sh -c` exactly as the user wrote it; no
//! envelope value is ever put into the command line, only into the
//! environment (SENDER, RECIPIENT, ...). It runs in a session of its own,
//! with a clean environment, in the user's home directory, and is killed
//! with its whole process group at the time limit. Exit 0 is delivered;
//! 75 (EX_TEMPFAIL) and 71 (EX_OSERR), a signal or the time limit defer;
//! anything else bounces with the first lines of the command's output.

use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
}

fn temp(why: String) -> Failed {
    Failed {
        temporary: true,
        why,
    }
}

/// Runs `job` with `prefix` and then `input` on its stdin.
pub fn run(job: &Job, mut input: impl Read + Send + 'static) -> Result<(), Failed> {
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
    let mut child = cmd
        .spawn()
        .map_err(|e| temp(format!("4.3.0 can not run /bin/sh: {e}")))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let prefix = job.prefix.clone();
    // The message is written by a thread, so that a command that does not
    // read it cannot stop us from enforcing the time limit. A command that
    // exits early closes the pipe: EPIPE ends the copy, which is fine.
    let writer = std::thread::spawn(move || -> io::Result<()> {
        stdin.write_all(&prefix)?;
        io::copy(&mut input, &mut stdin)?;
        Ok(())
    });
    let deadline = Instant::now() + job.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                privsep::kill_group(pid);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(temp(format!("4.3.0 waiting for the command: {e}"))),
        }
    };
    // Something the command left behind may still hold its stdin open
    // without reading: give it a moment, then end the whole group.
    let grace = Instant::now() + Duration::from_secs(1);
    while !writer.is_finished() && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !writer.is_finished() {
        privsep::kill_group(pid);
    }
    let _ = writer.join();
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
}
