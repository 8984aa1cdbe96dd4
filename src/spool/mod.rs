//! The queue on disk: one data file and one envelope file per message.
//!
//! `SPOOLDIR/<id>.msg` holds the message as accepted, never changed after
//! intake. `SPOOLDIR/<id>.env` holds the envelope and the state of every
//! recipient ([`envelope`]). A message is queued exactly when its `.env`
//! exists: intake writes and fsyncs the data file first, then publishes the
//! envelope by rename and fsyncs the directory. State changes rewrite the
//! envelope the same way (write a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves either the old or the new state.
//!
//! The lock on a message is an exclusive `flock` on its data file, whose inode
//! never changes. Whoever holds it (intake until it hands over, a background
//! delivery, a queue run) is the only writer of the envelope, so two runs can
//! never deliver the same recipient twice.
//!
//! An entry that fails a check (an envelope cut short, unreadable or
//! malformed; a data file missing, emptied or not as long as the envelope
//! says) is never delivered and never deleted: the queue run that finds it
//! moves it to `SPOOLDIR/corrupt/` with a note of why ([`Spool::quarantine`]),
//! and `mailq` lists it there.

pub mod admission;
pub mod envelope;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use envelope::{Dsn, Envelope, Origin, Rcpt, State};

use crate::config::size::{self, Size};

/// Data files without an envelope, that nobody holds locked, unchanged for
/// this long, are leftovers of an intake that died; a queue run removes
/// them. (A live intake holds its lock from the moment after it creates
/// the file until its envelope is in place: the age only covers that
/// moment. Short, since such leftovers count against SPOOL_MIN_FREE.)
const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// The queue directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A message held under its lock: the open data file and its envelope.
#[derive(Debug)]
pub struct Locked {
    /// The data file; the flock on it is the message lock.
    pub data: File,
    /// The envelope as last written.
    pub env: Envelope,
}

/// Where entries that fail a check are moved (under SPOOLDIR).
pub const CORRUPT_DIR: &str = "corrupt";

/// Why a message could not be opened for delivery.
#[derive(Debug)]
pub enum OpenError {
    /// Someone else holds the lock, or the message is gone: skip it.
    Busy,
    /// The entry fails a check: it must never be delivered (see
    /// [`Spool::quarantine`]).
    Corrupt(String),
    /// An I/O error.
    Io(io::Error),
}

impl Spool {
    /// The queue in `dir`.
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data file of message `id`.
    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn env_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.env"))
    }

    /// Takes the flock on the lock file `SPOOLDIR/<name>` (made if
    /// missing, 0660 whatever our umask, so that runners of other users
    /// can take it and look at it): `Ok(None)` when someone else holds it,
    /// an error when it cannot be opened.
    pub fn lock_file(&self, name: &str) -> io::Result<Option<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o660)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.dir.join(name))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let _ = f.set_permissions(fs::Permissions::from_mode(0o660));
        Ok(Some(f))
    }

    /// The lock file `SPOOLDIR/<name>`, open, if someone holds its flock.
    pub fn held(&self, name: &str) -> Option<File> {
        let f = File::open(self.dir.join(name)).ok()?;
        matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)).then_some(f)
    }

    /// Whether the spool's file system has `reserve` free (bytes, or a
    /// share of its size); `Err` with the message for the submitter when
    /// it has not. Free means free to
    /// unprivileged users (`f_bavail`).
    pub fn check_free(&self, reserve: Size) -> Result<(), String> {
        if reserve.is_zero() {
            return Ok(());
        }
        let st = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| format!("can not check free space in {}: {e}", self.dir.display()))?;
        let unit = st.fragment_size() as u64;
        let free = (st.blocks_available() as u64).saturating_mul(unit);
        let total = (st.blocks() as u64).saturating_mul(unit);
        let want = reserve.of(total);
        if free < want {
            return Err(format!(
                "spool {} has less than {} free (SPOOL_MIN_FREE{}); try again later",
                self.dir.display(),
                size::format_bytes(want),
                match reserve {
                    Size::Percent(p) => format!(" {p}%"),
                    Size::Bytes(_) => String::new(),
                }
            ));
        }
        // Inodes too (1 % of them, at least 16, whatever the setting): a
        // user who fills the inode table stops everyone's mail as surely as
        // one who fills the blocks (a queue run needs a few for its state
        // changes and bounces).
        let inodes = st.files() as u64;
        let want_inodes = (inodes / 100).max(16);
        if inodes > 0 && (st.files_available() as u64) < want_inodes {
            return Err(format!(
                "spool {} has fewer than {want_inodes} free inodes (SPOOL_MIN_FREE); try again later",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Creates a new, locked, empty data file with a fresh id.
    pub fn create(&self) -> io::Result<(String, File)> {
        loop {
            let id = new_id();
            let path = self.data_path(&id);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o660)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => {
                    // umask must not take the group's access away: queue runs
                    // of other users (set-group-id mail) read this file.
                    f.set_permissions(fs::Permissions::from_mode(0o660))?;
                    f.lock()?;
                    return Ok((id, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes a message durable: records its data file's length in `env`,
    /// writes the envelope to its temporary file, fsyncs the data file and
    /// then that file, publishes the envelope by rename and fsyncs the
    /// directory (both names at once). When this returns `Ok`, the message
    /// is queued; until the rename it is not, whatever survives a crash.
    ///
    /// Both files are written before either is flushed, so that the first
    /// flush also writes what metadata the two share (an inode table
    /// block, say) and the second has less to do: the spool's writes
    /// measured 5-10% cheaper on ext4 without a journal, with the same
    /// three flushes and two inodes.
    pub fn commit(&self, data: &File, env: &mut Envelope) -> io::Result<()> {
        env.size = Some(data.metadata()?.len());
        let tmp = self.tmp_path(&env.id);
        let env_error = |e: io::Error| {
            // Not left to take space (and inodes) until a queue run reaps it.
            let _ = fs::remove_file(&tmp);
            io::Error::new(
                e.kind(),
                format!("can not write {}: {e}", self.env_path(&env.id).display()),
            )
        };
        let f = (|| {
            // A spare envelope file if there is one (written over, then
            // cut to length: its block is reused); else a new one, emptied
            // by the open (should one be left over): free on a file the
            // open creates, where cutting it to length after the write, as
            // a state change must to give back its reserved room, is work
            // for the file system.
            let text = env.serialize();
            if let Some(mut f) = self.take_spare(&tmp) {
                f.write_all(text.as_bytes())?;
                f.set_len(text.len() as u64)?;
                return Ok(f);
            }
            let mut f = self.open_tmp(&tmp, true)?;
            f.write_all(text.as_bytes())?;
            Ok(f)
        })()
        .map_err(env_error)?;
        if let Err(e) = data.sync_data() {
            let _ = fs::remove_file(&tmp);
            let path = self.data_path(&env.id);
            return Err(io::Error::new(
                e.kind(),
                format!("can not write {}: {e}", path.display()),
            ));
        }
        f.sync_data()
            .and_then(|()| fs::rename(&tmp, self.env_path(&env.id)))
            .map_err(env_error)?;
        self.sync_dir()
    }

    /// Atomically replaces the envelope of `env.id`, durably: the new file
    /// is fsynced before the rename and the directory after it.
    pub fn write_env(&self, env: &Envelope) -> io::Result<()> {
        self.replace_env(env, true)
    }

    /// Replaces the envelope atomically, the new file fsynced, but not the
    /// directory: after a power loss the file is the old one or the new one,
    /// whole either way, but may be the old one. For a note whose loss costs
    /// only a log line (the in-flight mark: see `deliver`), one fsync fewer
    /// per message.
    pub fn write_env_note(&self, env: &Envelope) -> io::Result<()> {
        self.replace_env(env, false)
    }

    /// Appends `note` (one whole line: see the envelope module doc) to the
    /// envelope of `id`, in place: no new file, no fsync. A process that
    /// dies leaves it in the file; a power loss may lose it or cut it
    /// short, which costs only what it notes.
    pub fn append_note(&self, id: &str, note: &str) -> io::Result<()> {
        let path = self.env_path(id);
        let appended = OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&path)
            .and_then(|mut f| {
                // One write: a reader sees the line whole or not at all
                // as a line.
                let n = f.write(note.as_bytes())?;
                if n == note.len() {
                    Ok(())
                } else {
                    Err(io::Error::other("short write"))
                }
            });
        appended
            .map_err(|e| io::Error::new(e.kind(), format!("can not write {}: {e}", path.display())))
    }

    fn tmp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".{id}.env.tmp"))
    }

    /// Takes room now for the next state change of `env`: its temporary
    /// file, allocated (fallocate) to the envelope's size, a page and
    /// `extra` bytes more.
    /// [`Spool::write_env`] then writes into blocks it already has, so a
    /// spool that fills up meanwhile cannot make it fail: a delivery made
    /// after this is recorded. An error (no room) is for the caller to
    /// deliver nothing. (On a copy-on-write file system an overwrite may
    /// still need new blocks: there this only narrows the window.)
    pub fn reserve(&self, env: &Envelope, extra: usize) -> io::Result<()> {
        let tmp = self.tmp_path(&env.id);
        // The envelope as last written (what we hold in memory is written
        // before each delivery): a stat, not a second serialization.
        let size = fs::metadata(self.env_path(&env.id))?.len() as usize;
        let want = (size + 4096 + extra) as i64;
        let reserved = (|| {
            let f = self.open_tmp(&tmp, false)?;
            match nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, want) {
                Ok(()) => Ok(()),
                Err(nix::Error::EOPNOTSUPP) => {
                    // Blocks written are blocks taken.
                    let have = f.metadata()?.len() as i64;
                    let zeros = vec![0u8; (want - have).max(0) as usize];
                    io::Write::write_all(&mut &f, &zeros)
                }
                Err(e) => Err(io::Error::from(e)),
            }
        })();
        reserved.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io::Error::new(
                e.kind(),
                format!("can not write {}: {e}", self.env_path(&env.id).display()),
            )
        })
    }

    /// Opens (or makes) the temporary file `tmp` for writing, 0660
    /// whatever our umask; emptied if `truncate`.
    fn open_tmp(&self, tmp: &Path, truncate: bool) -> io::Result<File> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(truncate)
            .mode(0o660)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o660))?;
        Ok(f)
    }

    /// Writes `env` to its temporary file `tmp`, not yet synced: into the
    /// room [`Spool::reserve`] took, if it did; the rest of that room is
    /// given back by the truncation.
    fn write_tmp(&self, tmp: &Path, env: &Envelope) -> io::Result<File> {
        let mut f = self.open_tmp(tmp, false)?;
        let text = env.serialize();
        f.write_all(text.as_bytes())?;
        f.set_len(text.len() as u64)?;
        Ok(f)
    }

    fn replace_env(&self, env: &Envelope, sync_dir: bool) -> io::Result<()> {
        let tmp = self.tmp_path(&env.id);
        let written = (|| {
            self.write_tmp(&tmp, env)?.sync_data()?;
            fs::rename(&tmp, self.env_path(&env.id))
        })();
        if let Err(e) = written {
            // Not left to take space (and inodes) until a queue run reaps it.
            let _ = fs::remove_file(&tmp);
            return Err(io::Error::new(
                e.kind(),
                format!("can not write {}: {e}", self.env_path(&env.id).display()),
            ));
        }
        if sync_dir { self.sync_dir() } else { Ok(()) }
    }

    /// Removes a finished message: the envelope first, so a crash in between
    /// leaves only an orphan data file, which a later run removes. Not
    /// synced: if a crash undoes the removal, the message is delivered
    /// again (a duplicate, never a loss); [`Spool::sync`] makes a batch of
    /// removals durable at once.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let env = self.env_path(id);
        if !self.keep_spare(&env) {
            match fs::remove_file(&env) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let _ = fs::remove_file(self.data_path(id));
        // The room taken for a state change that was not needed.
        let _ = fs::remove_file(self.tmp_path(id));
        Ok(())
    }

    /// `SPOOLDIR/.spare.<k>`: an envelope file kept for reuse.
    fn spare_path(&self, k: usize) -> PathBuf {
        self.dir.join(format!(".spare.{k}"))
    }

    /// Keeps the envelope file `env` of a finished message as a spare, for
    /// a submission to write its envelope into, under the lowest spare name
    /// that is free (a rename that replaces nothing), unless all are taken.
    /// Says whether it did. Creating a file and freeing one is
    /// what a queue's churn costs most on some file systems (ext4 without
    /// a journal scans past every recently freed inode for a new one;
    /// with online discard, a freed block is a request to the disk).
    fn keep_spare(&self, env: &Path) -> bool {
        // Spares are taken from the lowest name up and kept at the lowest
        // free one: the last name taken means the pool is full.
        if self.spare_path(SPARES - 1).exists() {
            return false;
        }
        for k in 0..SPARES {
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                env,
                nix::fcntl::AT_FDCWD,
                &self.spare_path(k),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => return true,
                Err(nix::Error::EEXIST) => continue,
                // Gone already, or a file system without NOREPLACE.
                Err(_) => return false,
            }
        }
        false
    }

    /// Takes a spare envelope file ([`Spool::keep_spare`]) as `tmp`, open
    /// for writing, if one of the lowest spare names holds one (submissions
    /// at the same time each take another). Only a regular
    /// file with one link and mode 0660 is taken (a spare is an envelope
    /// this program wrote; nothing but group mail can put a file in the
    /// spool); anything else found there is removed.
    fn take_spare(&self, tmp: &Path) -> Option<File> {
        for k in 0..SPARE_TRIES {
            let spare = self.spare_path(k);
            if fs::rename(&spare, tmp).is_err() {
                continue;
            }
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(tmp);
            let ok = f
                .as_ref()
                .ok()
                .and_then(|f| f.metadata().ok())
                .is_some_and(|m| m.is_file() && m.nlink() == 1 && m.mode() & 0o7777 == 0o660);
            match f {
                Ok(f) if ok => return Some(f),
                _ => {
                    let _ = fs::remove_file(tmp);
                }
            }
        }
        None
    }

    /// Makes the directory's recent changes (removals) durable.
    pub fn sync(&self) -> io::Result<()> {
        self.sync_dir()
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// The ids of all queued messages, oldest first.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".env")
                && is_id(id)
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads an envelope without locking (for `mailq`). Unreadable (not
    /// ours to read, not text) is corrupt, as malformed is.
    pub fn read_env(&self, id: &str) -> Result<Envelope, OpenError> {
        let read = open_regular(&self.env_path(id)).and_then(|f| {
            let mut text = String::new();
            io::Read::read_to_string(&mut &f, &mut text).map(|_| text)
        });
        let text = match read {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Busy),
            Err(e) if corrupting(&e) => {
                return Err(OpenError::Corrupt(format!("can not read {id}.env: {e}")));
            }
            Err(e) => return Err(OpenError::Io(e)),
        };
        let env = Envelope::parse(&text).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        if env.id != id {
            return Err(OpenError::Corrupt(format!(
                "id {} in file {id}.env",
                env.id
            )));
        }
        Ok(env)
    }

    /// Takes the lock on message `id` without waiting and reads its envelope.
    pub fn open_locked(&self, id: &str) -> Result<Locked, OpenError> {
        let data = match open_regular(&self.data_path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return match self.env_path(id).exists() {
                    true => Err(OpenError::Corrupt("envelope without data file".into())),
                    false => Err(OpenError::Busy),
                };
            }
            Err(e) if corrupting(&e) => {
                return Err(OpenError::Corrupt(format!("can not read {id}.msg: {e}")));
            }
            Err(e) => return Err(OpenError::Io(e)),
        };
        match data.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Busy),
            Err(fs::TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        // Re-read after locking: the previous holder may have changed or
        // removed it.
        let mut env = self.read_env(id)?;
        let len = data.metadata().map_err(OpenError::Io)?.len();
        env.size = Some(check_size(env.size, len).map_err(OpenError::Corrupt)?);
        Ok(Locked { data, env })
    }

    /// Whether the data file of `env` (read without its lock) is as long as
    /// it says: for `mailq`.
    pub fn check_data(&self, env: &Envelope) -> Result<(), String> {
        match fs::symlink_metadata(self.data_path(&env.id)) {
            Ok(m) => check_size(env.size, m.len()).map(drop),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err("envelope without data file".into())
            }
            Err(e) => Err(format!("can not read {}.msg: {e}", env.id)),
        }
    }

    /// Moves entry `id` (its data file, then its envelope: a crash in
    /// between leaves an envelope without data, corrupt again, never a data
    /// file that looks like an abandoned intake) to `SPOOLDIR/corrupt/`,
    /// with `<id>.why` saying `why`. Never deletes anything.
    pub fn quarantine(&self, id: &str, why: &str) -> io::Result<()> {
        let dir = self.dir.join(CORRUPT_DIR);
        match fs::create_dir(&dir) {
            Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(0o770))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut note = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o660)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join(format!("{id}.why")))?;
        // For the group's mailq too, whatever our umask.
        note.set_permissions(fs::Permissions::from_mode(0o660))?;
        writeln!(note, "{} {}", now(), crate::escape::controls(why))?;
        for name in [format!("{id}.msg"), format!("{id}.env")] {
            match fs::rename(self.dir.join(&name), dir.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.sync_dir()?;
        File::open(&dir)?.sync_all()
    }

    /// The entries in `SPOOLDIR/corrupt/`: id, when it was moved there
    /// (unix seconds) and why, oldest id first.
    pub fn corrupt(&self) -> io::Result<Vec<(String, i64, String)>> {
        let dir = self.dir.join(CORRUPT_DIR);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = std::collections::BTreeSet::new();
        for entry in rd {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((id, "env" | "msg" | "why")) = name.rsplit_once('.')
                && is_id(id)
            {
                ids.insert(id.to_string());
            }
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                let note = fs::read_to_string(dir.join(format!("{id}.why"))).unwrap_or_default();
                let (when, why) = note.trim_end().split_once(' ').unwrap_or(("0", "?"));
                (id, when.parse().unwrap_or(0), why.to_string())
            })
            .collect())
    }

    /// Removes data files whose intake never finished, and stale temporary
    /// files. Locked files are in use and left alone.
    pub fn reap_orphans(&self) -> io::Result<()> {
        let now = SystemTime::now();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > ORPHAN_AGE);
            if !old {
                continue;
            }
            if let Some(id) = name.strip_suffix(".msg") {
                if !is_id(id) || self.env_path(id).exists() {
                    continue;
                }
                let Ok(f) = File::open(entry.path()) else {
                    continue;
                };
                if f.try_lock().is_ok() && !self.env_path(id).exists() {
                    crate::notice!("removing data file {name} of an intake that never finished");
                    let _ = fs::remove_file(entry.path());
                }
            } else if name.starts_with('.') && name.ends_with(".env.tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// How many spare envelope files a spool keeps ([`Spool::keep_spare`]).
const SPARES: usize = 16;

/// How many spare names a submission tries, from the lowest.
const SPARE_TRIES: usize = 4;

/// Opens a queue file for reading: never through a symbolic link, never
/// waiting (a FIFO or a device in its place must not hang a listing or a
/// queue run), and only a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Whether an error reading a queue file means the entry is broken (not
/// readable by the queue, not text, not a regular file, a symbolic link),
/// not that the system is short of something for a moment.
fn corrupting(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData | io::ErrorKind::IsADirectory
    ) || e.raw_os_error() == Some(nix::libc::ELOOP)
}

/// Checks a data file's length `len` against the envelope's `size`, and
/// returns it. Without a size (a version 1 envelope), only an empty data
/// file is wrong: intake always writes a header.
fn check_size(size: Option<u64>, len: u64) -> Result<u64, String> {
    match size {
        Some(n) if n != len => Err(format!(
            "data file is {len} bytes long, the envelope says {n}"
        )),
        None if len == 0 => Err("empty data file".into()),
        _ => Ok(len),
    }
}

/// Whether `s` looks like one of our queue ids (lower-case hex).
pub fn is_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A fresh id: the time in seconds and 32 random bits, in hex, so that a
/// listing sorts roughly by age. Collisions are caught by `create_new`.
fn new_id() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rand = getrandom::u32().unwrap_or_else(|_| std::process::id());
    format!("{:08x}{rand:08x}", secs as u32)
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        assert!(spool.check_free(Size::Bytes(0)).is_ok());
        assert!(spool.check_free(Size::Bytes(1)).is_ok());
        let e = spool.check_free(Size::Bytes(u64::MAX)).unwrap_err();
        assert!(
            e.starts_with("spool ") && e.contains("free (SPOOL_MIN_FREE)"),
            "{e}"
        );
        // Some of any file system is in use or reserved for root.
        let e = spool.check_free(Size::Percent(100)).unwrap_err();
        assert!(e.contains("(SPOOL_MIN_FREE 100%)"), "{e}");
    }

    /// Queues a message with a long or short envelope; returns its id.
    fn queue(spool: &Spool, rcpts: usize) -> String {
        let (id, data) = spool.create().unwrap();
        (&data).write_all(b"Subject: x\n\nbody\n").unwrap();
        let mut env = Envelope {
            id: id.clone(),
            created: now(),
            sender: "a@b".into(),
            user: "u".into(),
            uid: 1,
            size: None,
            double_bounce: false,
            held: None,
            dsn: Default::default(),
            dkim: Vec::new(),
            rcpts: (0..rcpts)
                .map(|i| Rcpt::new(format!("r{i}"), None))
                .collect(),
        };
        spool.commit(&data, &mut env).unwrap();
        id
    }

    fn spares(spool: &Spool) -> Vec<PathBuf> {
        (0..SPARES)
            .map(|k| spool.spare_path(k))
            .filter(|p| p.exists())
            .collect()
    }

    #[test]
    fn a_finished_envelope_file_is_the_next_submissions() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        // A long envelope, finished: its file is kept, not freed.
        let first = queue(&spool, 40);
        let ino = fs::metadata(spool.env_path(&first)).unwrap().ino();
        spool.remove(&first).unwrap();
        assert!(!spool.env_path(&first).exists());
        let kept = spares(&spool);
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::metadata(&kept[0]).unwrap().ino(), ino);
        // The next envelope is written into it, cut to its own length.
        let next = queue(&spool, 1);
        assert!(spares(&spool).is_empty());
        let m = fs::metadata(spool.env_path(&next)).unwrap();
        assert_eq!(m.ino(), ino);
        let env = spool.read_env(&next).unwrap();
        assert_eq!((env.id.as_str(), env.rcpts.len()), (next.as_str(), 1));
        assert_eq!(m.len() as usize, env.serialize().len());
        // Only as many spares as there are names; then files are freed.
        let ids: Vec<String> = (0..SPARES * 2).map(|_| queue(&spool, 1)).collect();
        for id in &ids {
            spool.remove(id).unwrap();
            assert!(!spool.env_path(id).exists());
        }
        assert!(spares(&spool).len() <= SPARES);
        // A spare that is not what we write (another mode) is not taken:
        // removed, and a new file made.
        for p in spares(&spool) {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        // Held open, the spares' inodes can not be freed and their numbers
        // reused by the new file (CI's filesystem did exactly that).
        let held: Vec<fs::File> = spares(&spool)
            .iter()
            .map(|p| fs::File::open(p).unwrap())
            .collect();
        let before: Vec<u64> = held.iter().map(|f| f.metadata().unwrap().ino()).collect();
        assert!(!before.is_empty());
        let id = queue(&spool, 1);
        let ino = fs::metadata(spool.env_path(&id)).unwrap().ino();
        assert!(!before.contains(&ino));
        assert_eq!(
            fs::metadata(spool.env_path(&id)).unwrap().mode() & 0o777,
            0o660
        );
    }
}
