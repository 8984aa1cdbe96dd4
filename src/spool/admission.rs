//! Who may write how much into the spool, so that no user can fill it and
//! stop everyone's mail: below SPOOL_MIN_FREE only root may queue (bounces
//! are queued by runners, not through here), a submission checks the
//! reserve again every MiB it writes, and one user writes at most
//! [`INTAKES_PER_USER`] messages at once. One user's intakes together so
//! go at most 16 MiB below the reserve, and the rest of it stays root's
//! and the bounces'.

use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::config::size::Size;
use crate::spool::Spool;

/// The most submissions of one user (root aside) that write at once.
pub const INTAKES_PER_USER: usize = 16;

/// How long a submission waits for one of its user's intake slots.
const SLOT_WAIT: Duration = Duration::from_secs(60);

/// How much a submission writes between two checks of the reserve.
const RESERVE_CHECK: u64 = 1 << 20;

/// The spool went below SPOOL_MIN_FREE while a submission wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BelowReserve(String);

/// Whether a write error of [`Admission::writer`] is the reserve's (the
/// same message may go through later), not the file system's.
pub fn below_reserve(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<BelowReserve>())
}

/// The data file could not be written (a full or read-only spool).
#[derive(Debug, thiserror::Error)]
#[error("can not write {path}: {err}")]
struct SpoolWrite {
    path: String,
    err: io::Error,
}

/// Whether an error of [`Admission::writer`] is the spool's (it names the
/// file), not the reserve's or the input's.
pub fn spool_write(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<SpoolWrite>())
}

/// The rules for one submitter.
pub struct Admission<'a> {
    spool: &'a Spool,
    reserve: Size,
    uid: u32,
}

impl<'a> Admission<'a> {
    /// The rules for a submission by `uid` into `spool` with `reserve`
    /// (SPOOL_MIN_FREE).
    pub fn new(spool: &'a Spool, reserve: Size, uid: u32) -> Admission<'a> {
        Admission {
            spool,
            reserve,
            uid,
        }
    }

    /// Root may go below the reserve.
    fn exempt(&self) -> bool {
        self.uid == 0
    }

    /// Whether the reserve is free; the submitter's message when not.
    pub fn check(&self) -> Result<(), String> {
        if self.exempt() {
            return Ok(());
        }
        self.spool.check_free(self.reserve)
    }

    /// One of the user's intake slots (a flock on
    /// `SPOOLDIR/.intake.<uid>.<n>`), to hold until the message is queued;
    /// waits up to a minute for one to come free. None for root, or when
    /// the spool cannot be written at all (its own error follows).
    pub fn slot(&self) -> Result<Option<File>, String> {
        if self.exempt() {
            return Ok(None);
        }
        let until = Instant::now() + SLOT_WAIT;
        loop {
            for n in 0..INTAKES_PER_USER {
                match self.spool.lock_file(&format!(".intake.{}.{n}", self.uid)) {
                    Ok(Some(f)) => return Ok(Some(f)),
                    Ok(None) => {}
                    Err(_) => return Ok(None),
                }
            }
            if Instant::now() >= until {
                return Err(format!(
                    "{INTAKES_PER_USER} submissions of uid {} are being written already; try again later",
                    self.uid
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `inner` (the data file at `path`), checking the reserve as it
    /// grows; below it, a write fails with an error [`below_reserve`]
    /// recognises, and an error of the file itself is one [`spool_write`]
    /// recognises.
    pub fn writer<W: Write + 'a>(&'a self, inner: W, path: &std::path::Path) -> impl Write + 'a {
        Reserved {
            inner,
            admission: self,
            unchecked: 0,
            path: path.display().to_string(),
        }
    }
}

/// See [`Admission::writer`].
struct Reserved<'a, W> {
    inner: W,
    admission: &'a Admission<'a>,
    /// Bytes written since the last check.
    unchecked: u64,
    /// The file's path, for errors.
    path: String,
}

impl<W> Reserved<'_, W> {
    fn failed(&self, err: io::Error) -> io::Error {
        let path = self.path.clone();
        io::Error::new(err.kind(), SpoolWrite { path, err })
    }
}

impl<W: Write> Write for Reserved<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.unchecked >= RESERVE_CHECK {
            self.admission
                .check()
                .map_err(|why| io::Error::other(BelowReserve(why)))?;
            self.unchecked = 0;
        }
        let n = self.inner.write(buf).map_err(|e| self.failed(e))?;
        self.unchecked += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.failed(e))
    }
}
