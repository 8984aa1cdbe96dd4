//! Cutting a mailbox or `/file` back when the process that appends to it
//! dies.
//!
//! The appending is done by a process that runs as the user (see
//! `helper::as_user`); it cuts the file back itself when a write fails, but
//! a process killed mid-message (SIGKILL, the time limit) cannot, and the
//! partial message would stay and glue the next one to its last line. So
//! the root parent that started it does it:
//!
//! - before the user's process starts, [`Guard::new`] measures the file
//!   (device, inode, length) and keeps a descriptor on it, opened without
//!   following a symbolic link and only if it is a regular file of the
//!   user with one link (a missing `/file` is measured by nobody: the
//!   user's process creates it);
//! - the user's process, once it holds the file's lock and before its
//!   first byte, calls [`Guard::start`]: it refuses a file that is not the
//!   one measured, and reports where it starts (device, inode, length)
//!   through a pipe;
//! - if that process fails in any way, [`Guard::undo`] cuts the file back
//!   to where it started, through the kept descriptor (the very file that
//!   was measured and written), and fsyncs. A file never appended to (no
//!   report) is not touched; nor is a file that is not the one written (a
//!   path replaced since); a file is never extended.
//!
//! The start is the one measured under the writer's own fcntl lock, not the
//! parent's: for a mailbox under our dotlock they are the same, but a
//! `/file` has no lock held by the parent, and another delivery may append
//! to it before our writer gets the lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// A file and a length in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    dev: u64,
    ino: u64,
    len: u64,
}

impl Mark {
    fn of(m: &std::fs::Metadata) -> Mark {
        Mark {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
        }
    }

    fn same_file(&self, other: &Mark) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    fn decode(b: &[u8; 24]) -> Mark {
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Mark {
            dev: word(0),
            ino: word(8),
            len: word(16),
        }
    }
}

/// What the root parent knows of a file its user's process appends to.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    uid: u32,
    /// The file as measured before the user's process started, and a
    /// descriptor on it open for writing.
    kept: Option<(File, Mark)>,
    /// Where the user's process reports its start (non-blocking both).
    report_r: OwnedFd,
    report_w: OwnedFd,
}

impl Guard {
    /// Measures `path`, the file of the user `uid` about to be appended to
    /// (see the module doc). Run as root, before the user's process
    /// starts; for a mailbox, under its dotlock. A file that can not be
    /// measured (missing, a link, not the user's) gets no kept descriptor:
    /// the user's process makes its own checks.
    pub fn new(path: &Path, uid: u32) -> io::Result<Guard> {
        let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let kept = match open_checked(path, uid) {
            Ok(f) => f.metadata().ok().map(|m| (f, Mark::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                crate::info!(
                    "{}: not measured before delivery ({e}); it can not be cut back",
                    path.display()
                );
                None
            }
        };
        Ok(Guard {
            path: path.to_path_buf(),
            uid,
            kept,
            report_r,
            report_w,
        })
    }

    /// In the user's process, with `f` open and locked, before anything is
    /// written to it: refuses a file other than the one measured (the path
    /// was replaced in between), and reports where the message starts.
    pub fn start(&self, f: &File) -> io::Result<()> {
        let now = Mark::of(&f.metadata()?);
        if let Some((_, measured)) = &self.kept
            && !measured.same_file(&now)
        {
            return Err(io::Error::other(
                "the file was replaced while the delivery started",
            ));
        }
        let n = nix::unistd::write(&self.report_w, &now.encode())?;
        if n != 24 {
            return Err(io::Error::other("short report to the parent"));
        }
        Ok(())
    }

    /// In the user's process, after part of what it appended is synced
    /// and the rest cut off: reports the file's length now as where to cut
    /// back to if it dies from here on.
    pub fn advance(&self, f: &File) -> io::Result<()> {
        let now = Mark::of(&f.metadata()?);
        let n = nix::unistd::write(&self.report_w, &now.encode())?;
        if n != 24 {
            return Err(io::Error::other("short report to the parent"));
        }
        Ok(())
    }

    /// In the root parent, once the user's process has ended without
    /// success (and has been reaped): cuts the file back to where that
    /// process started appending (see the module doc). Says what it did in
    /// the log; errors are logged too, there is nobody else to tell.
    pub fn undo(&self) {
        let Some(start) = self.report() else {
            // The writer never got to its first byte.
            return;
        };
        let shown = self.path.display();
        let reopened;
        let file = match &self.kept {
            Some((f, measured)) if measured.same_file(&start) => f,
            _ => match open_checked(&self.path, self.uid) {
                Ok(f) => {
                    reopened = f;
                    &reopened
                }
                Err(e) => {
                    crate::warning!("{shown}: can not cut back after the writer died: {e}");
                    return;
                }
            },
        };
        let now = match file.metadata() {
            Ok(m) => Mark::of(&m),
            Err(e) => {
                crate::warning!("{shown}: can not cut back after the writer died: {e}");
                return;
            }
        };
        if !now.same_file(&start) {
            crate::warning!(
                "{shown} was replaced while its writer ran, which died: the new file is not touched"
            );
            return;
        }
        if now.len <= start.len {
            // Nothing appended, or already cut back by the writer.
            return;
        }
        match file.set_len(start.len).and_then(|_| file.sync_all()) {
            Ok(()) => {
                crate::notice!(
                    "truncated {shown} back to {} bytes after the writer died ({} bytes of a partial message removed)",
                    start.len,
                    now.len - start.len
                );
                let named = std::fs::symlink_metadata(&self.path).map(|m| Mark::of(&m));
                if !named.is_ok_and(|m| m.same_file(&start)) {
                    crate::warning!(
                        "{shown} was replaced while its writer ran: the file written was cut back, the new one is not touched"
                    );
                }
            }
            Err(e) => crate::warning!(
                "{shown}: can not truncate back to {} bytes after the writer died: {e}",
                start.len
            ),
        }
    }

    /// The start the user's process reported last ([`Guard::start`], then
    /// [`Guard::advance`]), if it did.
    fn report(&self) -> Option<Mark> {
        let mut b = [0u8; 24 * 4];
        let mut r = File::from(self.report_r.try_clone().ok()?);
        let mut have = 0;
        while have < b.len() {
            match r.read(&mut b[have..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => have += n,
            }
        }
        let last = (have / 24).checked_sub(1)?;
        let mark: &[u8; 24] = b[last * 24..last * 24 + 24].try_into().ok()?;
        Some(Mark::decode(mark))
    }
}

/// Opens `path` for writing as root, safely: the last component is not
/// followed, and nothing is opened for writing but a regular file owned by
/// `uid` with one link. It is first opened `O_PATH` (which runs no device's
/// open, whatever a directory of the user's makes the path lead to) and
/// checked, then reopened for writing through `/proc/self/fd` (the same
/// inode, checked again).
fn open_checked(path: &Path, uid: u32) -> io::Result<File> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
        .open(path)?;
    let m = handle.metadata()?;
    if m.file_type().is_symlink() {
        return Err(io::Error::other("refused: it is a symbolic link"));
    }
    if !m.file_type().is_file() || m.nlink() != 1 || m.uid() != uid {
        return Err(io::Error::other(
            "refused: not a regular file of the user with one link",
        ));
    }
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    let again = f.metadata()?;
    if !Mark::of(&again).same_file(&Mark::of(&m)) || !again.file_type().is_file() {
        return Err(io::Error::other("the file changed while it was opened"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Appends `text` to a file: another writer.
    fn append(path: &Path, text: &str) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn me() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[test]
    fn a_partial_append_is_cut_back_to_where_the_writer_started() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        std::fs::write(&p, "From a\n\none\n\n").unwrap();
        let g = Guard::new(&p, me()).unwrap();
        // Another writer appends before ours gets the lock: kept.
        append(&p, "From b\n\ntwo\n\n");
        let f = OpenOptions::new().append(true).open(&p).unwrap();
        g.start(&f).unwrap();
        append(&p, "From c\n\npartial");
        g.undo();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "From a\n\none\n\nFrom b\n\ntwo\n\n"
        );
    }

    #[test]
    fn no_report_no_cut_and_never_extended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        std::fs::write(&p, "From a\n\none\n\n").unwrap();
        let g = Guard::new(&p, me()).unwrap();
        append(&p, "not ours\n");
        g.undo();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "From a\n\none\n\nnot ours\n"
        );
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        g.start(&f).unwrap();
        f.set_len(3).unwrap();
        g.undo();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "Fro");
    }

    #[test]
    fn a_replaced_file_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        std::fs::write(&p, "old\n").unwrap();
        let g = Guard::new(&p, me()).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "new file\n").unwrap();
        let f = OpenOptions::new().append(true).open(&p).unwrap();
        assert!(g.start(&f).is_err());
        g.undo();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new file\n");
    }

    #[test]
    fn a_created_file_is_cut_back_through_its_path_and_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("copy");
        let g = Guard::new(&p, me()).unwrap();
        std::fs::write(&p, "").unwrap();
        let f = OpenOptions::new().append(true).open(&p).unwrap();
        g.start(&f).unwrap();
        append(&p, "From x\n\npart");
        g.undo();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        // The path now leads through a symbolic link: not followed.
        let g = Guard::new(&p, me()).unwrap();
        g.start(&f).unwrap();
        append(&p, "From y\n\npart");
        std::fs::rename(&p, d.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &p).unwrap();
        let g2 = Guard::new(&p, me()).unwrap();
        assert!(g2.kept.is_none());
        g.undo();
        // Cut back through the kept descriptor: the file written, wherever
        // it is now.
        assert_eq!(
            std::fs::read_to_string(d.path().join("elsewhere")).unwrap(),
            ""
        );
    }
}
