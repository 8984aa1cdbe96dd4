//! mbox files: locking, safe opening and mboxrd-quoted appends.
//!
//! A message is appended as `From <sender> <asctime>`, the message with every
//! line matching `^>*From ` quoted by one more `>` (mboxrd), and an empty line.
//! Writers hold a dotlock (`<user>.lock`, as mutt and procmail expect) and an
//! fcntl lock on the mailbox. A mailbox that is a symbolic link, has more than
//! one link, is not a regular file or is not owned by the recipient is
//! refused. On any write error the file is truncated back to its old length.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

/// How long to wait for a lock before deferring.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(100);
/// A dotlock older than this is considered left behind by a crash.
pub const STALE_DOTLOCK: Duration = Duration::from_secs(300);
/// How far in the future a dotlock's time may be (clocks of file servers
/// differ a little) before it is considered stale: a lock from the future
/// was never going to age, so it would stop delivery forever.
pub const CLOCK_SLOP: Duration = Duration::from_secs(60);

/// Whether a dotlock last modified at `mtime` is stale at `now`: older than
/// [`STALE_DOTLOCK`], or more than [`CLOCK_SLOP`] in the future.
pub fn is_stale(mtime: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(mtime) {
        Ok(age) => age > STALE_DOTLOCK,
        Err(ahead) => ahead.duration() > CLOCK_SLOP,
    }
}

/// A held dotlock; removed on drop.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes `<dir>/<user>.lock`, waiting up to `timeout`, breaking a stale one.
pub fn dotlock(dir: &Path, user: &str, timeout: Duration) -> io::Result<DotLock> {
    let path = dir.join(format!("{user}.lock"));
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(_) => return Ok(DotLock { path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let stale = std::fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| is_stale(t, SystemTime::now()));
                if stale {
                    crate::notice!("removing stale lock {}", path.display());
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                if start.elapsed() > timeout {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("can not lock {}: held by another process", path.display()),
                    ));
                }
                // Short waits at first: deliveries hold the lock briefly.
                sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            // A full inode table, say: named, for the log and the queue.
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("can not create {}: {e}", path.display()),
                ));
            }
        }
    }
}

/// Creates the mailbox `<dir>/<user>` if it does not exist: mode 0600, owned
/// by `uid`:`gid`. Never follows a symbolic link. Run as root.
pub fn create(dir: &Path, user: &str, uid: u32, gid: u32) -> io::Result<()> {
    let path = dir.join(user);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            crate::info!("created mbox {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a mailbox was refused.
#[derive(Debug, thiserror::Error)]
pub enum MboxError {
    /// Opening or writing failed.
    #[error("{path}: {err}")]
    Io {
        /// The mailbox.
        path: String,
        /// What happened.
        err: io::Error,
    },
    /// It is a link, not a regular file, or owned by someone else.
    #[error("{path}: refused: {why}")]
    Unsafe {
        /// The mailbox.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Opens an existing mailbox for appending as its owner: no symbolic link
/// (O_NOFOLLOW), a regular file with one link, owned by `uid`.
pub fn open(path: &Path, uid: u32) -> Result<File, MboxError> {
    let p = || path.display().to_string();
    let f = OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(nix::libc::ELOOP) => MboxError::Unsafe {
                path: p(),
                why: "it is a symbolic link",
            },
            _ => MboxError::Io { path: p(), err },
        })?;
    let m = f
        .metadata()
        .map_err(|err| MboxError::Io { path: p(), err })?;
    let why = if !m.file_type().is_file() {
        Some("not a regular file")
    } else if m.nlink() != 1 {
        Some("it has more than one hard link")
    } else if m.uid() != uid {
        Some("not owned by the recipient")
    } else {
        None
    };
    match why {
        Some(why) => Err(MboxError::Unsafe { path: p(), why }),
        None => Ok(f),
    }
}

/// Takes an fcntl write lock on the whole file, waiting up to `timeout`.
pub fn fcntl_lock(f: &File, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let fl = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETLK(&fl)) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EAGAIN | nix::Error::EACCES) if start.elapsed() < timeout => {
                sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// The `From ` line that starts a message in an mbox.
pub fn from_line(sender: &str, when: &jiff::ZonedDateTime) -> String {
    let sender = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    format!("From {sender} {}\n", when.strftime("%a %b %e %H:%M:%S %Y"))
}

/// Appends one message read from `input` to `f` (already locked), with the
/// header lines `prepend` (each without its newline) after the `From ` line,
/// then fsyncs. On error the file is cut back to its former length.
pub fn append(
    f: &mut File,
    sender: &str,
    prepend: &[String],
    input: &mut impl BufRead,
) -> io::Result<u64> {
    let start = f.metadata()?.len();
    let res = write_message(f, sender, prepend, input).and_then(|n| f.sync_data().map(|_| n));
    if res.is_err() {
        let _ = f.set_len(start);
        let _ = f.sync_data();
    }
    res
}

/// What [`append_many`] did.
#[derive(Debug)]
pub struct Appended {
    /// How many messages are in the file, durable: all, or those before
    /// the one that failed.
    pub count: usize,
    /// What went wrong.
    pub error: Option<io::Error>,
}

/// Appends messages to `f` (already locked) one after another, each as
/// [`append`] does (`From ` line, its header lines, quoted), then fsyncs
/// once. On an error the file is cut back to the end of the last whole
/// message (or, if the fsync failed, to where it was) and that is synced.
pub fn append_many<'a, R: io::Read>(
    f: &mut File,
    msgs: impl Iterator<Item = (&'a (String, Vec<String>), R)>,
) -> Appended {
    let start = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return Appended {
                count: 0,
                error: Some(e),
            };
        }
    };
    let (mut count, mut end, mut error) = (0, start, None);
    for ((sender, prepend), data) in msgs {
        let mut input = io::BufReader::with_capacity(64 * 1024, data);
        match write_message(f, sender, prepend, &mut input).and_then(|_| f.metadata()) {
            Ok(m) => {
                count += 1;
                end = m.len();
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if error.is_some() {
        let _ = f.set_len(end);
    }
    if let Err(e) = f.sync_data() {
        let _ = f.set_len(start);
        let _ = f.sync_data();
        return Appended {
            count: 0,
            error: Some(e),
        };
    }
    Appended { count, error }
}

fn write_message(
    f: &mut File,
    sender: &str,
    prepend: &[String],
    input: &mut impl BufRead,
) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(64 * 1024, &mut *f);
    let mut n = 0u64;
    w.write_all(from_line(sender, &crate::clock::now()).as_bytes())?;
    for h in prepend {
        w.write_all(h.as_bytes())?;
        w.write_all(b"\n")?;
    }
    let mut at_line_start = true;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, ends_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if at_line_start && needs_quote(chunk) {
            w.write_all(b">")?;
        }
        w.write_all(chunk)?;
        let len = chunk.len();
        n += len as u64;
        at_line_start = ends_line;
        input.consume(len);
    }
    if !at_line_start {
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(n)
}

/// mboxrd: a line matching `^>*From ` gets one more `>`.
fn needs_quote(line: &[u8]) -> bool {
    let rest = line
        .iter()
        .position(|&b| b != b'>')
        .map_or(&[][..], |i| &line[i..]);
    rest.starts_with(b"From ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_quoting_and_trailing_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u");
        std::fs::write(&path, "").unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let msg = "Subject: x\n\nFrom the start\n>From quoted\n>>From twice\nFromage\n From not\n";
        append(
            &mut f,
            "a@b",
            &["Delivered-To: u@h".into()],
            &mut msg.as_bytes(),
        )
        .unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        let (first, rest) = got.split_once('\n').unwrap();
        assert!(first.starts_with("From a@b "), "{first}");
        assert_eq!(
            rest,
            "Delivered-To: u@h\nSubject: x\n\n>From the start\n>>From quoted\n>>>From twice\nFromage\n From not\n\n"
        );
    }

    #[test]
    fn refuses_symlink_and_hardlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let uid = std::fs::metadata(&target).unwrap().uid();
        std::os::unix::fs::symlink(&target, dir.path().join("sym")).unwrap();
        assert!(matches!(
            open(&dir.path().join("sym"), uid),
            Err(MboxError::Unsafe { .. })
        ));
        std::fs::hard_link(&target, dir.path().join("hard")).unwrap();
        assert!(matches!(
            open(&dir.path().join("hard"), uid),
            Err(MboxError::Unsafe { .. })
        ));
        assert!(matches!(
            open(&target, uid + 1),
            Err(MboxError::Unsafe { .. })
        ));
    }

    #[test]
    fn stale_dotlocks_are_old_or_from_the_future() {
        let now = SystemTime::now();
        let s = Duration::from_secs;
        for (mtime, stale) in [
            (now, false),
            (now - s(299), false),
            (now - s(301), true),
            (now - s(86400), true),
            (now + s(59), false),
            (now + s(61), true),
            (now + s(86400), true),
        ] {
            assert_eq!(
                is_stale(mtime, now),
                stale,
                "{:?}",
                mtime.duration_since(now)
            );
        }
    }

    #[test]
    fn a_dotlock_from_the_future_or_the_past_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.lock");
        for offset in [86400i64, -86400] {
            let f = File::create(&path).unwrap();
            let when = if offset > 0 {
                SystemTime::now() + Duration::from_secs(offset as u64)
            } else {
                SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
            };
            f.set_modified(when).unwrap();
            drop(f);
            let l = dotlock(dir.path(), "u", Duration::from_millis(300)).unwrap();
            drop(l);
            assert!(!path.exists());
        }
        // A fresh one is respected.
        let f = File::create(&path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(30))
            .unwrap();
        drop(f);
        assert!(dotlock(dir.path(), "u", Duration::from_millis(300)).is_err());
    }

    #[test]
    fn dotlock_excludes_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let l = dotlock(dir.path(), "u", Duration::from_secs(1)).unwrap();
        assert!(dotlock(dir.path(), "u", Duration::from_millis(300)).is_err());
        drop(l);
        assert!(!dir.path().join("u.lock").exists());
        assert!(dotlock(dir.path(), "u", Duration::from_millis(300)).is_ok());
    }
}
