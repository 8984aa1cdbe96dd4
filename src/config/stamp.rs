//! Whether a configuration file changed since it was read, for a runner
//! that lives on after it read its files (see [`crate::context::Ctx::refresh`]).
//!
//! A file is identified by what `stat` says of it: device, inode, size,
//! and the modification and change times to the nanosecond. A rewrite in
//! place changes the size or the times; a new file renamed over the old one
//! (what editors and `install` do) changes the inode, even when it has the
//! same size and mtime. A file that appears or vanishes changes too.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What `stat` said of a file when it was read; `None` inside when there was
/// no file (or it could not be looked at: that reads as "no file" both
/// times, so it is no change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp(Option<[i64; 7]>);

impl Stamp {
    /// The stamp of a file that is not there (what no look has seen yet).
    pub const NONE: Stamp = Stamp(None);

    /// The stamp of `path` now (following symbolic links: the file that is
    /// read). Take it *before* reading the file: a change made in between is
    /// then seen at the next look, never missed.
    pub fn of(path: &Path) -> Stamp {
        Stamp(std::fs::metadata(path).ok().map(|m| {
            [
                m.dev() as i64,
                m.ino() as i64,
                m.size() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_of_the_same_size_and_time_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let q = dir.path().join("g");
        assert_eq!(Stamp::of(&p), Stamp::default());
        std::fs::write(&p, "a: b\n").unwrap();
        let first = Stamp::of(&p);
        assert_ne!(first, Stamp::default(), "a file that appeared");
        assert_eq!(Stamp::of(&p), first, "nothing changed");
        std::fs::write(&q, "c: d\n").unwrap();
        let t = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&q)
            .unwrap()
            .set_modified(t)
            .unwrap();
        std::fs::rename(&q, &p).unwrap();
        let renamed = Stamp::of(&p);
        assert_ne!(renamed, first, "another inode");
        // Rewritten in place, same size, mtime put back: the change time
        // (a clock tick later) tells.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "e: f\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_ne!(Stamp::of(&p), renamed, "written in place");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(Stamp::of(&p), Stamp::default(), "a file that vanished");
    }
}
