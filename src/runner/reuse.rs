//! Runner reuse: fresh remote mail goes to a runner that already holds a
//! connection to its next hop, instead of a new runner and a new session.
//!
//! A background runner that takes remote mail takes the hop lock of its
//! next hop, `SPOOLDIR/.runner.hop.XX` (XX: a hash of the next hop, so that
//! the spool holds at most 256 of them), unless another runner holds it;
//! it holds it while it delivers and lingers with a session open, and
//! beats it (its mtime) on every message, as [`super::WAITING`] is beaten. The file's length is the
//! runner's backlog: a submitter that leaves a message to the runner
//! appends one byte; the runner empties the file just before each look at
//! the spool, which finds every message whose byte it dropped. A submitter
//! leaves its message only to a live holder (beaten within
//! [`super::HEARTBEAT`]) whose backlog is below [`BACKLOG`]; else it starts
//! a runner of its own, as before, so a slow or stuck runner holds no one's
//! mail and a burst still spreads over up to QUEUE_WORKERS runners.
//!
//! Nothing is left behind: a runner lets go of its hop locks before its
//! last look at the spool, so a message left to it just before it stops
//! is seen by that look.
//!
//! The lock files are the spool's (made by runners as `mail`, 0660, in the
//! 2770 root:mail spool): an ordinary user can neither make nor hold one;
//! the set-group-id submitter opens an existing one (never makes it) only
//! to probe it and append its byte. A user who submits a lot of mail can
//! only make the backlog look long, which starts runners, as today.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::context::Ctx;
use crate::spool::Envelope;

/// A runner takes mail left to it while fewer than this many messages wait
/// for it: about what one pipelined round of transactions takes, so that a
/// message left to a busy runner is not held up longer than a new
/// session would take to open.
pub const BACKLOG: u64 = 8;

/// The hop lock file of next hop `hop` (a key of `next_hop_key`).
pub fn hop_lock_name(hop: &str) -> String {
    // FNV-1a: stable across runs and builds (the submitter and the runner
    // may be different builds for a moment during an upgrade).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in hop.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(".runner.hop.{:02x}", h & 0xff)
}

/// The submitter's probe: whether a live runner holding hop `hop` takes one
/// more message (its backlog is short); if so, the message is counted in its
/// backlog. One open, one flock, one stat, one write.
pub fn hop_takes(ctx: &Ctx, hop: &str) -> bool {
    use std::fs::TryLockError;
    use std::os::unix::fs::MetadataExt;
    // Never made here: only a runner makes its lock file.
    let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(ctx.spool.dir().join(hop_lock_name(hop)))
    else {
        return false;
    };
    // Held (exclusively) by a runner.
    if !matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)) {
        return false;
    }
    let Ok(m) = f.metadata() else {
        return false;
    };
    let live = m.file_type().is_file()
        && m.modified()
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < super::HEARTBEAT));
    live && m.size() < BACKLOG && f.write_all(b".").is_ok()
}

/// The messages a background runner took (each at most once per runner: a
/// message that stays due, the spool cannot be written say, must not keep
/// it spinning), and the locks by which mail is left to it: its hop locks
/// and [`super::IDLE`].
#[derive(Default)]
pub struct Taken {
    ids: HashSet<String>,
    /// The hop locks held: name and file.
    held: Vec<(String, File)>,
    /// Hop locks that another runner held when this one tried them, in
    /// this pass (not tried again until the next).
    others: Vec<String>,
    /// `.runner.idle`, kept open once taken.
    idle: Option<File>,
    /// Whether `idle` is locked.
    idle_held: bool,
}

impl Taken {
    /// Whether message `id` was taken already.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Records that message `env` is taken: the runner is busy (it lets go
    /// of [`super::IDLE`]) and, for remote mail, about to hold a session to
    /// its next hop (it takes that hop's lock, unless another runner holds
    /// it); shows that it is alive to whoever probes its hop locks.
    pub fn take(&mut self, ctx: &Ctx, env: &Envelope) {
        self.ids.insert(env.id.clone());
        self.let_go_idle();
        if !super::local_only(ctx, env) {
            let name = hop_lock_name(&super::next_hop_key(ctx, env));
            let known = self.held.iter().any(|(n, _)| *n == name) || self.others.contains(&name);
            if !known {
                match ctx.spool.lock_file(&name).ok().flatten() {
                    Some(f) => {
                        // Bytes of an earlier holder's backlog are not ours:
                        // the pass that took this message saw those
                        // messages.
                        let _ = f.set_len(0);
                        self.held.push((name, f));
                    }
                    None => self.others.push(name),
                }
            }
        }
        self.beat();
    }

    /// After a delivery pass: with no session open (the hop refused us, or
    /// broke down), lets go of every hop lock; a runner without connections
    /// has none to offer.
    pub fn end_pass(&mut self, ctx: &Ctx) {
        self.others.clear();
        if ctx.pool.as_ref().is_none_or(|p| p.is_empty()) {
            self.held.clear();
        }
    }

    /// Whether this runner holds a hop lock (and so lingers for more).
    pub fn advertising(&self) -> bool {
        !self.held.is_empty()
    }

    /// Lets go of every lock by which mail is left to this runner: before
    /// its last look.
    pub fn release(&mut self) {
        self.held.clear();
        self.let_go_idle();
    }

    /// Just before a look at the spool: the backlog starts again from
    /// nothing (that look sees every message counted so far).
    pub fn reset_backlog(&self) {
        for (_, f) in &self.held {
            let _ = f.set_len(0);
        }
    }

    /// Marks progress on every hop lock held, and on [`super::IDLE`].
    pub fn beat(&self) {
        for (_, f) in &self.held {
            super::beat(f);
        }
        if let (true, Some(f)) = (self.idle_held, &self.idle) {
            super::beat(f);
        }
    }

    /// Takes [`super::IDLE`] (with nothing to do: any mail may be left to
    /// it), unless another runner holds it; kept until the runner takes a
    /// message.
    pub fn hold_idle(&mut self, ctx: &Ctx) {
        if self.idle_held {
            return;
        }
        self.idle_held = match &self.idle {
            Some(f) => f.try_lock().is_ok(),
            None => {
                self.idle = ctx.spool.lock_file(super::IDLE).ok().flatten();
                self.idle.is_some()
            }
        };
    }

    /// Lets go of [`super::IDLE`] (the file stays open for the next time).
    pub fn let_go_idle(&mut self) {
        if let (true, Some(f)) = (self.idle_held, &self.idle) {
            let _ = f.unlock();
        }
        self.idle_held = false;
    }
}

/// The spool directory's changes, so that a runner looks at the spool
/// (a directory scan) only when a message may have come or been let go of.
pub struct Watch {
    inotify: Inotify,
}

impl Watch {
    /// Watches the spool directory: an envelope that appears (renamed or
    /// made there) and a data file closed after writing (a submission
    /// letting go of its message).
    pub fn new(ctx: &Ctx) -> Option<Watch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
        let mask =
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_CREATE;
        inotify.add_watch(ctx.spool.dir(), mask).ok()?;
        Some(Watch { inotify })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inotify.as_fd()
    }

    /// Reads every change so far; says whether one may be a message that
    /// `taken` has not taken (our own state changes and lock files do not
    /// count).
    pub fn changed(&self, taken: &Taken) -> bool {
        let mut changed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    changed = true;
                    continue;
                }
                let Some(name) = e.name.as_ref().and_then(|n| n.to_str()) else {
                    continue;
                };
                let id = match (name.strip_suffix(".env"), name.strip_suffix(".msg")) {
                    (Some(id), _) => id,
                    // A data file made is not a message yet.
                    (None, Some(id)) if !e.mask.contains(AddWatchFlags::IN_CREATE) => id,
                    _ => continue,
                };
                if crate::spool::is_id(id) && !taken.contains(id) {
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_lock_names_are_few_stable_and_case_blind() {
        assert_eq!(hop_lock_name("smarthost"), hop_lock_name("smarthost"));
        assert_eq!(hop_lock_name("Example.NET"), hop_lock_name("example.net"));
        let names: HashSet<String> = (0..5000)
            .map(|i| hop_lock_name(&format!("d{i}.example")))
            .collect();
        assert!(names.len() <= 256);
        for n in names {
            assert!(n.starts_with(".runner.hop.") && n.len() == ".runner.hop.".len() + 2);
        }
    }
}
