//! syslog (facility mail) with dma's message shapes, mirrored to stderr on `-v`.
//!
//! The syslog tag is `dma` (or the `-L` tag), and `dma[<queue id>]` while a
//! message is being worked on, as dma does. When there is no syslog socket
//! glibc drops the message silently: logging never makes delivery fail.
//!
//! With LOGFILE the lines also go to a file (LOG_SYSLOG off: only there),
//! for hosts without a syslog daemon: one `write` per line in append mode
//! (whole lines, whoever else writes), the file opened again when it was
//! moved or removed (logrotate), never through a symlink. The submitter's
//! `dma` (set-group-id mail) appends to an existing file; only the runners
//! (user `mail`), root, or a private `-C` run create it (mode 0660, group
//! mail), so that no user ever owns it. `dma-local`'s own lines go to
//! syslog only.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use nix::syslog::{Facility, LogFlags, Priority, Severity};

struct State {
    base: String,
    verbose: bool,
    /// `-v` in a runner: mirror only lines about this uid's messages.
    only_for: Option<u32>,
    /// Whose message is being worked on (its submitter's uid).
    owner: Option<u32>,
    /// The lines are about what aliases and `.forward` files made of a
    /// recipient: not mirrored to a non-root caller.
    private: bool,
    /// The queue id of the message being worked on, for `-v` lines.
    id: Option<String>,
    /// The syslog tag now (`dma[id]`).
    ident: String,
    /// LOG_SYSLOG.
    syslog: bool,
    /// LOGFILE.
    file: Option<LogFile>,
}

/// LOGFILE, opened when first written to.
struct LogFile {
    path: PathBuf,
    /// The open file, with the device and inode it was opened as.
    open: Option<(File, u64, u64)>,
    /// Whether this process may create it.
    create: bool,
    /// Whose file it may be (root, mail, and this process's user when it
    /// is trusted): never written when another user owns it.
    owners: Vec<u32>,
}

/// Whether a log file may be made in `path`'s directory: named without a
/// symlink anywhere on the way (a user's link must not send root's or
/// mail's file elsewhere), and a directory no other user may write in.
pub fn safe_parent(path: &std::path::Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    match (std::fs::canonicalize(dir), std::fs::metadata(dir)) {
        (Ok(real), Ok(m)) => real == dir && m.mode() & 0o002 == 0,
        _ => false,
    }
}

impl LogFile {
    /// The file to write to now: the one open, unless the path names
    /// another file now (or none), then opened again.
    fn file(&mut self) -> Option<&File> {
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let stale = match (&self.open, now) {
            (Some((_, dev, ino)), Some(now)) => now != (*dev, *ino),
            (Some(_), None) => true,
            (None, _) => true,
        };
        if stale {
            self.open = None;
            let mut o = std::fs::OpenOptions::new();
            o.append(true)
                .create(self.create && safe_parent(&self.path))
                .mode(0o660)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC);
            let f = o.open(&self.path).ok()?;
            let m = f.metadata().ok()?;
            // A regular file of ours, with no other name (a hard link to
            // someone's file) and no write access for everyone.
            if !m.file_type().is_file()
                || m.nlink() != 1
                || m.mode() & 0o002 != 0
                || !self.owners.contains(&m.uid())
            {
                return None;
            }
            self.open = Some((f, m.dev(), m.ino()));
        }
        self.open.as_ref().map(|(f, _, _)| f)
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// How serious a log line is; maps onto syslog severities as dma uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Corruption, aliases syntax errors.
    Crit,
    /// Failures: bounces, refused input.
    Err,
    /// TLS/auth and security warnings.
    Warning,
    /// Deferrals.
    Notice,
    /// The normal flow.
    Info,
    /// Details.
    Debug,
}

impl Level {
    /// As syslog names the severity.
    fn word(self) -> &'static str {
        match self {
            Level::Crit => "crit",
            Level::Err => "err",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Level::Crit => Severity::LOG_CRIT,
            Level::Err => Severity::LOG_ERR,
            Level::Warning => Severity::LOG_WARNING,
            Level::Notice => Severity::LOG_NOTICE,
            Level::Info => Severity::LOG_INFO,
            Level::Debug => Severity::LOG_DEBUG,
        }
    }
}

/// The longest syslog tag (RFC 3164 allows 32).
pub const MAX_TAG: usize = 32;

/// Whether `tag` may be a syslog tag (`-L`): it goes verbatim into every
/// line, so printable ASCII without blanks (which would end the tag) or
/// brackets (which would forge the `[queue id]` part), 1 to [`MAX_TAG`]
/// bytes.
pub fn valid_tag(tag: &str) -> bool {
    (1..=MAX_TAG).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'[' && b != b']')
}

/// Opens the log with `tag` (the `-L` value, or `dma`); `verbose` mirrors
/// every line but debug ones to stderr.
pub fn init(tag: &str, verbose: bool) {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        base: tag.to_string(),
        verbose,
        only_for: None,
        owner: None,
        private: false,
        id: None,
        ident: tag.to_string(),
        syslog: true,
        file: None,
    });
    open(tag);
}

/// Makes LOGFILE (as root, before becoming `uid`) when it does not exist:
/// mode 0660, owned by `uid` and `gid`, never through a symlink.
pub fn precreate(path: &std::path::Path, uid: u32, gid: u32) {
    if !safe_parent(path) {
        return;
    }
    let made = std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o660)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path);
    if let Ok(f) = made {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
    }
}

/// LOGFILE and LOG_SYSLOG from the configuration. `create`: this process
/// may create the file (see the module documentation).
pub fn configure(file: Option<PathBuf>, syslog: bool, create: bool) {
    if let Some(s) = STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.syslog = syslog || file.is_none();
        let mut owners = vec![0];
        owners.extend(crate::privsep::mail_user().map(|m| m.uid.as_raw()));
        if create {
            owners.push(nix::unistd::geteuid().as_raw());
        }
        s.file = file.map(|path| LogFile {
            path,
            open: None,
            create,
            owners,
        });
    }
}

/// In a runner that another user's `-v` asked for: mirror to stderr only
/// the lines written while a message that `uid` submitted is worked on
/// (`None`: every line). Other users' recipients, `.forward` expansions and
/// replies are none of the caller's business.
pub fn mirror_only_for(uid: Option<u32>) {
    if let Some(s) = STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.only_for = uid;
    }
}

/// Says whose message (its submitter's uid) the next lines are about.
pub fn set_message_owner(uid: Option<u32>) {
    if let Some(s) = STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.owner = uid;
    }
}

/// Says whether the next lines are about expansions (the destinations
/// that aliases and `.forward` files made of a recipient): they go to the
/// log, but a runner mirrors them only for root, as `mailq` shows them
/// only to root.
/// Returns what it was.
pub fn set_private(private: bool) -> bool {
    match STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => std::mem::replace(&mut s.private, private),
        None => false,
    }
}

/// Switches the syslog tag to `tag[id]` for the message being worked on.
pub fn set_queue_id(id: Option<&str>) {
    let ident = match STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => {
            s.id = id.map(str::to_string);
            s.ident = match id {
                Some(id) => format!("{}[{id}]", s.base),
                None => s.base.clone(),
            };
            s.ident.clone()
        }
        None => id.map_or("dma".to_string(), |id| format!("dma[{id}]")),
    };
    open(&ident);
}

fn open(ident: &str) {
    let Ok(c) = CString::new(ident.replace('\0', "")) else {
        return;
    };
    // openlog keeps the pointer: the string must live as long as the process.
    // Tags change a handful of times per process, so leaking them is bounded.
    let ident: &'static std::ffi::CStr = Box::leak(c.into_boxed_c_str());
    let _ = nix::syslog::openlog(Some(ident), LogFlags::empty(), Facility::LOG_MAIL);
}

/// A log line as written: one line (CR and LF become blanks, as always),
/// any other control character escaped, so that no text quoted from a
/// server can drive the terminal of whoever reads the log or `-v`.
fn clean(msg: &str) -> String {
    crate::escape::controls(&msg.replace(['\r', '\n'], " ")).into_owned()
}

/// Writes one line to the log (syslog, LOGFILE), not to stderr.
pub fn syslog_only(level: Level, msg: &str) {
    record(level, &clean(msg));
}

/// Sends `msg` (clean) to syslog and LOGFILE, as configured.
fn record(level: Level, msg: &str) {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = guard.as_mut() else {
        let _ = nix::syslog::syslog(Priority::new(level.severity(), Facility::LOG_MAIL), msg);
        return;
    };
    if s.syslog {
        let _ = nix::syslog::syslog(Priority::new(level.severity(), Facility::LOG_MAIL), msg);
    }
    let ident = s.ident.clone();
    if let Some(f) = s.file.as_mut().and_then(LogFile::file) {
        // `2026-12-02T11:40:01+00:00 dma[6b0f...][4242]: info: ...`, one
        // write: whole lines in the file, whoever else appends.
        let line = format!(
            "{} {ident}[{}]: {}: {msg}\n",
            crate::clock::now().strftime("%Y-%m-%dT%H:%M:%S%:z"),
            std::process::id(),
            level.word()
        );
        let _ = (&*f).write(line.as_bytes());
    }
}

/// Writes one log line.
pub fn log(level: Level, msg: &str) {
    let msg = clean(msg);
    record(level, &msg);
    // `-v`: `dma[queue id]: ...` while a message is worked on, as in the log.
    let mirror = STATE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|s| s.verbose && (s.only_for.is_none() || (s.owner == s.only_for && !s.private)))
        .map(|s| {
            s.id.as_ref()
                .map(|id| format!("[{id}]"))
                .unwrap_or_default()
        });
    if let Some(id) = mirror
        && level != Level::Debug
    {
        let _ = writeln!(std::io::stderr(), "{}{id}: {msg}", crate::progname());
    }
}

/// `log` at Info.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Info, &format!($($t)*)) } }
/// `log` at Notice.
#[macro_export]
macro_rules! notice { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Notice, &format!($($t)*)) } }
/// `log` at Warning.
#[macro_export]
macro_rules! warning { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Warning, &format!($($t)*)) } }
/// `log` at Err.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Err, &format!($($t)*)) } }
/// `log` at Crit.
#[macro_export]
macro_rules! crit { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Crit, &format!($($t)*)) } }
/// `log` at Debug.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Debug, &format!($($t)*)) } }
