//! syslog (facility mail) with dma's message shapes, mirrored to stderr on `-v`.
//!
//! The syslog tag is `dma` (or the `-L` tag), and `dma[<queue id>]` while a
//! message is being worked on, as dma does. When there is no syslog socket
//! glibc drops the message silently: logging never makes delivery fail.

use std::ffi::CString;
use std::io::Write;
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
    });
    open(tag);
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
    let base = match STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => {
            s.id = id.map(str::to_string);
            s.base.clone()
        }
        None => "dma".to_string(),
    };
    match id {
        Some(id) => open(&format!("{base}[{id}]")),
        None => open(&base),
    }
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

/// Writes one line to syslog only (for errors that are also printed).
pub fn syslog_only(level: Level, msg: &str) {
    let msg = clean(msg);
    let _ = nix::syslog::syslog(Priority::new(level.severity(), Facility::LOG_MAIL), &msg);
}

/// Writes one log line.
pub fn log(level: Level, msg: &str) {
    let msg = clean(msg);
    let _ = nix::syslog::syslog(Priority::new(level.severity(), Facility::LOG_MAIL), &msg);
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
