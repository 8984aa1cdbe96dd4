//! `/file` and `/maildir/` destinations, written as their user.
//!
//! A file gets the message in mbox format (as a mailbox does) under an fcntl
//! lock; it is created 0600 if missing, and refused if it is a symbolic link,
//! has more than one link, is not a regular file or is not the user's. A
//! Maildir gets the message in `tmp/`, fsynced, then linked into `new/`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::mbox;

/// A failed delivery: temporary or not, and why.
#[derive(Debug)]
pub struct Failed {
    /// Whether a later attempt may succeed.
    pub temporary: bool,
    /// `<enhanced status> <text>`.
    pub why: String,
}

fn temp(why: String) -> Failed {
    Failed {
        temporary: true,
        why,
    }
}

/// Appends to the file `path` as the current user `uid`. `start` is called
/// with the file open and locked, before its first byte is written; its
/// error is a temporary failure and nothing is written.
pub fn append(
    path: &Path,
    uid: u32,
    sender: &str,
    prepend: &[String],
    input: &mut impl BufRead,
    start: impl FnOnce(&File) -> io::Result<()>,
) -> Result<(), Failed> {
    let shown = path.display();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => {
                temp(format!("4.2.0 {shown}: refused: it is a symbolic link"))
            }
            _ => temp(format!("4.2.0 {shown}: {e}")),
        })?;
    let m = f
        .metadata()
        .map_err(|e| temp(format!("4.2.0 {shown}: {e}")))?;
    if !m.file_type().is_file() || m.nlink() != 1 || m.uid() != uid {
        return Err(temp(format!(
            "4.2.0 {shown}: refused: not a regular file of the user with one link"
        )));
    }
    mbox::fcntl_lock(&f, mbox::LOCK_TIMEOUT)
        .map_err(|e| temp(format!("4.2.0 can not lock {shown}: {e}")))?;
    start(&f).map_err(|e| temp(format!("4.2.0 {shown}: {e}")))?;
    mbox::append(&mut f, sender, prepend, input)
        .map(|_| ())
        .map_err(|e| temp(format!("4.2.0 write to {shown} failed: {e}")))
}

/// Delivers into the Maildir `dir` (made, with tmp/new/cur, if missing).
pub fn maildir(dir: &Path, prepend: &[String], input: &mut impl BufRead) -> Result<(), Failed> {
    let shown = dir.display();
    for sub in ["", "tmp", "new", "cur"] {
        let p = dir.join(sub);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(temp(format!(
                    "4.2.0 {}: refused: not a directory",
                    p.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(|e| temp(format!("4.2.0 {}: {e}", p.display())))?,
            Err(e) => return Err(temp(format!("4.2.0 {}: {e}", p.display()))),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}R{:08x}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        getrandom::u32().unwrap_or(0),
        crate::config::conf::system_hostname().replace(['/', ':'], "_")
    );
    let tmp = dir.join("tmp").join(&name);
    let mut write = || -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        let mut w = io::BufWriter::with_capacity(64 * 1024, &f);
        for h in prepend {
            writeln!(w, "{h}")?;
        }
        io::copy(input, &mut w)?;
        w.flush()?;
        drop(w);
        f.sync_all()?;
        std::fs::hard_link(&tmp, dir.join("new").join(&name))?;
        File::open(dir.join("new"))?.sync_all()
    };
    let res = write();
    let _ = std::fs::remove_file(&tmp);
    res.map_err(|e| temp(format!("4.2.0 Maildir {shown}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_delivery() {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("Maildir");
        maildir(
            &md,
            &["Delivered-To: u@h".into()],
            &mut &b"Subject: s\n\nbody\n"[..],
        )
        .unwrap();
        let new: Vec<_> = std::fs::read_dir(md.join("new")).unwrap().collect();
        assert_eq!(new.len(), 1);
        let text = std::fs::read_to_string(new[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(text, "Delivered-To: u@h\nSubject: s\n\nbody\n");
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn file_append_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let f = d.path().join("copy");
        let ok = |_: &File| Ok(());
        append(&f, uid, "s@x", &[], &mut &b"Subject: a\n\nx\n"[..], ok).unwrap();
        append(&f, uid, "s@x", &[], &mut &b"Subject: b\n\nFrom y\n"[..], ok).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text.matches("\nSubject: ").count(), 2);
        assert!(text.contains("\n>From y\n\n"));
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let e = append(&l, uid, "s@x", &[], &mut &b"x\n"[..], ok).unwrap_err();
        assert!(e.temporary && e.why.contains("symbolic link"), "{e:?}");
    }
}
