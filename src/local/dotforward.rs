//! Reading `.forward` and `:include:` files safely, as their user.
//!
//! Runs inside `dma-local` after it has become the user. A file is used only
//! if it is a regular file (opened with O_NOFOLLOW), owned by the user or
//! root, not group- or world-writable, no larger than [`MAX_SIZE`], in a home
//! directory owned by the user or root that is not group- or world-writable.
//! An unsafe or malformed file is ignored (normal delivery, with a log line);
//! a missing or empty one means normal delivery; an I/O error that may pass
//! (EIO, a home on a server that does not answer) defers.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::forward::{self, Entry, MAX_SIZE};

/// What a user's `.forward` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFile {
    /// No file, or no entries: deliver to the mailbox.
    Missing,
    /// A file that is unsafe or malformed: deliver to the mailbox, log why.
    Ignored(String),
    /// Its entries.
    Entries(Vec<Entry>),
}

/// A failure that may pass: try again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient(pub String);

fn transient_errno(e: &std::io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(
            nix::libc::ENOENT
                | nix::libc::ENOTDIR
                | nix::libc::EACCES
                | nix::libc::ELOOP
                | nix::libc::EPERM
        )
    )
}

/// Reads `<home>/.forward` for the user `uid` (the current process's uid).
pub fn read_forward(home: &Path, uid: u32) -> Result<ForwardFile, Transient> {
    let meta = match std::fs::metadata(home) {
        Ok(m) => m,
        Err(e) if transient_errno(&e) => {
            return Err(Transient(format!("home directory {}: {e}", home.display())));
        }
        Err(_) => return Ok(ForwardFile::Missing),
    };
    if !meta.is_dir() || (meta.uid() != uid && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
        return Ok(ForwardFile::Ignored(format!(
            "home directory {} is not owned by the user or root, or is group- or world-writable",
            home.display()
        )));
    }
    read_checked(&home.join(".forward"), Some(uid))
}

/// Reads an `:include:` file: a regular file, not group- or world-writable.
pub fn read_include(path: &Path) -> Result<ForwardFile, Transient> {
    read_checked(path, None)
}

/// Opens and checks one file; `owner` is the uid that must own it (or root),
/// `None` for any owner.
fn read_checked(path: &Path, owner: Option<u32>) -> Result<ForwardFile, Transient> {
    let shown = path.display();
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            return match e.raw_os_error() {
                Some(nix::libc::ENOENT) => Ok(ForwardFile::Missing),
                Some(nix::libc::ELOOP) => {
                    Ok(ForwardFile::Ignored(format!("{shown} is a symbolic link")))
                }
                _ if !transient_errno(&e) => Ok(ForwardFile::Ignored(format!("{shown}: {e}"))),
                _ => Err(Transient(format!("{shown}: {e}"))),
            };
        }
    };
    let m = f
        .metadata()
        .map_err(|e| Transient(format!("{shown}: {e}")))?;
    let why = if !m.file_type().is_file() {
        Some("is not a regular file")
    } else if owner.is_some_and(|o| m.uid() != o && m.uid() != 0) {
        Some("is not owned by the user or root")
    } else if m.mode() & 0o022 != 0 {
        Some("is group- or world-writable")
    } else if m.len() > MAX_SIZE as u64 {
        Some("is too large")
    } else {
        None
    };
    if let Some(why) = why {
        return Ok(ForwardFile::Ignored(format!("{shown} {why}")));
    }
    let mut bytes = Vec::new();
    f.by_ref()
        .take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Transient(format!("{shown}: {e}")))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(ForwardFile::Ignored(format!("{shown} is not UTF-8 text")));
    };
    match forward::parse(&text) {
        Ok(e) if e.is_empty() => Ok(ForwardFile::Missing),
        Ok(e) => Ok(ForwardFile::Entries(e)),
        Err(e) => Ok(ForwardFile::Ignored(format!(
            "{shown}:{}: {}",
            e.line, e.reason
        ))),
    }
}

/// The wire form of a [`ForwardFile`] from `dma-local` to `dma`.
pub fn encode(f: &ForwardFile) -> String {
    match f {
        ForwardFile::Missing => "none\n".to_string(),
        ForwardFile::Ignored(why) => format!("ignored {}\n", crate::spool::envelope::encode(why)),
        ForwardFile::Entries(e) => format!("entries\n{}", forward::encode_entries(e)),
    }
}

/// Reads [`encode`]'s output; `None` if it is not well-formed.
pub fn decode(text: &str) -> Option<ForwardFile> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    match first.split_once(' ') {
        None if first == "none" && rest.is_empty() => Some(ForwardFile::Missing),
        None if first == "entries" => forward::decode_entries(rest).map(ForwardFile::Entries),
        Some(("ignored", why)) if rest.is_empty() => {
            crate::spool::envelope::decode(why).map(ForwardFile::Ignored)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn home() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn missing_empty_and_entries() {
        let h = home();
        assert_eq!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Missing);
        std::fs::write(h.path().join(".forward"), "# nothing\n").unwrap();
        assert_eq!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Missing);
        std::fs::write(h.path().join(".forward"), "\\me, |notify\n").unwrap();
        let got = read_forward(h.path(), uid()).unwrap();
        assert_eq!(
            got,
            ForwardFile::Entries(vec![
                Entry::Mailbox("me".into()),
                Entry::Pipe("notify".into())
            ])
        );
        assert_eq!(decode(&encode(&got)), Some(got));
        assert!(
            read_forward(Path::new("/nonexistent/home"), uid()).unwrap() == ForwardFile::Missing
        );
    }

    #[test]
    fn unsafe_files_are_ignored() {
        let h = home();
        let f = h.path().join(".forward");
        std::fs::write(&f, "elsewhere@example.org\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(
            matches!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Ignored(w) if w.contains("group- or world-writable"))
        );
        std::fs::remove_file(&f).unwrap();
        let target = h.path().join("real");
        std::fs::write(&target, "elsewhere@example.org\n").unwrap();
        std::os::unix::fs::symlink(&target, &f).unwrap();
        assert!(
            matches!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Ignored(w) if w.contains("symbolic link"))
        );
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, "\"|unterminated\n").unwrap();
        assert!(
            matches!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Ignored(w) if w.contains(".forward:1: "))
        );
        std::fs::write(&f, "x@example.org\n").unwrap();
        std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            matches!(read_forward(h.path(), uid()).unwrap(), ForwardFile::Ignored(w) if w.contains("home directory"))
        );
    }

    #[test]
    fn wire_rejects_garbage() {
        for t in [
            "",
            "entries\naddress |x\n",
            "ignored",
            "none\nextra\n",
            "what\n",
        ] {
            assert_eq!(decode(t), None, "{t:?}");
        }
    }
}
