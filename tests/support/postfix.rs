//! A real Postfix on loopback, the second real server our SMTP client is
//! tested against (after exim): Debian's postfix, unpacked (not installed)
//! by `scripts/postfix-setup.sh` into `/opt/dma-rs-test/postfix`.
//!
//! Each [`Postfix`] is an instance of its own: its `master` runs with a
//! private config directory, queue directory, data directory and log in a
//! fresh temporary directory, and smtpd listens on a free loopback port, so
//! tests may run several at once. It accepts mail for any domain from
//! 127.0.0.1 and relays nothing: every domain is a virtual mailbox domain
//! whose every address lands in one Maildir ([`Postfix::messages`]); any
//! other transport is `error`. It makes no DNS query (no client name lookup,
//! no SMTP client ever runs).
//!
//! What smtpd offers and enforces is set by [`PostfixOptions`]
//! (`smtpd_recipient_limit`, `message_size_limit`, and EHLO keywords taken
//! away with `smtpd_discard_ehlo_keywords` or `smtputf8_enable = no`).
//!
//! It runs as root: master then runs its daemons as the `postfix` user, and
//! checks that the `postdrop` group exists (both made by the setup script).
//! Postfix wants its queue directory owned by root and the queues in it, its
//! data directory and the mailbox owned by `postfix`.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

#[path = "peer.rs"]
mod peer;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer::{free_ports, greets, group_members, write_file};

/// The unpacked tree.
pub const POSTFIX_ROOT: &str = "/opt/dma-rs-test/postfix";
/// The master daemon, and beside it the other daemons.
pub const POSTFIX_MASTER: &str = "/opt/dma-rs-test/postfix/usr/lib/postfix/sbin/master";
/// Postfix's own shared libraries: Debian's binaries look for them in
/// /usr/lib/postfix (RUNPATH), which the unpacked tree does not touch.
const POSTFIX_LIBS: &str = "/opt/dma-rs-test/postfix/usr/lib/postfix";
/// The user postfix's daemons run as (`mail_owner`).
pub const POSTFIX_USER: &str = "postfix";
/// The group of postfix's set-gid programs, which master insists exists.
pub const POSTDROP_GROUP: &str = "postdrop";

/// How long [`Postfix::start`] waits for smtpd, and [`Postfix::messages`]
/// for the deliveries.
const WAIT: Duration = Duration::from_secs(10);

/// The queues that hold a message until it is delivered.
const QUEUES: [&str; 7] = [
    "incoming", "active", "deferred", "hold", "maildrop", "bounce", "defer",
];

/// What smtpd offers and enforces. The default offers everything postfix
/// offers (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, ...) with
/// postfix's default limits.
#[derive(Clone, Debug)]
pub struct PostfixOptions {
    /// `smtpd_recipient_limit`: more RCPTs in one transaction get
    /// `452 4.5.3 Error: too many recipients`.
    pub recipient_limit: Option<u32>,
    /// `message_size_limit`, in bytes (postfix's default: 10240000).
    pub message_size_limit: Option<u64>,
    /// Offer SIZE (with the limit) in EHLO; off, smtpd still enforces the
    /// limit, after the message data.
    pub size: bool,
    /// Offer PIPELINING.
    pub pipelining: bool,
    /// Offer CHUNKING (BDAT).
    pub chunking: bool,
    /// Offer 8BITMIME. Off, smtpd still accepts 8-bit data as it comes:
    /// what a client sends is what is stored.
    pub eightbitmime: bool,
    /// `smtputf8_enable`: offer and accept SMTPUTF8.
    pub smtputf8: bool,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        PostfixOptions {
            recipient_limit: None,
            message_size_limit: None,
            size: true,
            pipelining: true,
            chunking: true,
            eightbitmime: true,
            smtputf8: true,
        }
    }
}

/// A message that postfix accepted and delivered into its Maildir, once per
/// recipient (as postfix's virtual delivery agent does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The envelope sender (`Return-Path`; empty for `<>`).
    pub sender: String,
    /// The envelope recipient of this copy, as given in RCPT TO
    /// (`X-Original-To`).
    pub rcpt: String,
    /// The message as postfix stored it, with LF line ends and the
    /// dot-stuffing undone: postfix's `Received:` header first, then the
    /// message as sent. (The delivery headers above it are taken off.)
    pub data: Vec<u8>,
}

impl StoredMessage {
    /// The header section (up to, without, the blank line).
    pub fn header(&self) -> String {
        let end = find(&self.data, b"\n\n").unwrap_or(self.data.len());
        String::from_utf8_lossy(&self.data[..end]).into_owned()
    }

    /// The body: the octets after the blank line, as stored.
    pub fn body(&self) -> &[u8] {
        match find(&self.data, b"\n\n") {
            Some(i) => &self.data[i + 2..],
            None => &[],
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running postfix. Dropping it stops master (and so every daemon) and
/// removes its directory.
pub struct Postfix {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

/// Whether the postfix tests can run here; if not, says so on stderr
/// (`SKIPPED test: ...`) or, when DMA_TESTS_REQUIRE_ROOT is set, panics.
pub fn need_postfix(test: &str) -> bool {
    peer::need_peer(
        test,
        Postfix::available(),
        &format!(
            "{POSTFIX_MASTER} or the user {POSTFIX_USER} is missing: \
             run scripts/postfix-setup.sh as root"
        ),
    )
}

fn ids(user: &str) -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name(user).ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

impl Postfix {
    /// Whether the unpacked postfix, its user and group exist and we are
    /// root.
    pub fn available() -> bool {
        Path::new(POSTFIX_MASTER).is_file()
            && nix::unistd::geteuid().is_root()
            && ids(POSTFIX_USER).is_some()
            && matches!(nix::unistd::Group::from_name(POSTDROP_GROUP), Ok(Some(_)))
    }

    /// Starts postfix with smtpd on a free loopback port and a private
    /// config in a fresh temporary directory; returns once smtpd greets.
    /// Panics with postfix's log if it does not come up.
    pub fn start(opts: PostfixOptions) -> Postfix {
        // A port taken before master binds it: master stops at once, and we
        // try again with another.
        peer::start_on_free_ports("postfix", || Postfix::try_start(&opts))
    }

    fn try_start(opts: &PostfixOptions) -> Result<Postfix, String> {
        let (uid, gid) = ids(POSTFIX_USER)
            .unwrap_or_else(|| panic!("no user {POSTFIX_USER}: run scripts/postfix-setup.sh"));
        let postdrop = nix::unistd::Group::from_name(POSTDROP_GROUP)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no group {POSTDROP_GROUP}: run scripts/postfix-setup.sh"))
            .gid
            .as_raw();
        // In /tmp, not $TMPDIR: the postfix user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("dma-postfix-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let mkdir = |path: &Path, mode: u32, owner: u32, group: u32| {
            fs::create_dir(path).unwrap();
            std::os::unix::fs::chown(path, Some(owner), Some(group)).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        };
        // The layout `postfix set-permissions` makes: the queue directory
        // and pid/ root's, the queues postfix's, public/ and maildrop/
        // reachable by postdrop.
        mkdir(&d.join("conf"), 0o755, 0, 0);
        mkdir(&d.join("data"), 0o700, uid, gid);
        mkdir(&d.join("mail"), 0o700, uid, gid);
        let q = d.join("queue");
        mkdir(&q, 0o755, 0, 0);
        mkdir(&q.join("pid"), 0o755, 0, 0);
        for sub in QUEUES
            .iter()
            .chain(&["trace", "flush", "corrupt", "saved", "private"])
        {
            if *sub != "maildrop" {
                mkdir(&q.join(sub), 0o700, uid, 0);
            }
        }
        mkdir(&q.join("public"), 0o710, uid, postdrop);
        mkdir(&q.join("maildrop"), 0o1730, uid, postdrop);

        let [port] = free_ports();
        write_file(
            &d.join("conf/main.cf"),
            &main_cf(d, opts, uid, gid),
            0o644,
            0,
        );
        write_file(&d.join("conf/master.cf"), &master_cf(port), 0o644, 0);
        // Dynamically loaded map types: none (the built-in ones suffice).
        write_file(&d.join("conf/dynamicmaps.cf"), "", 0o644, 0);
        // Postfix reads a table changed within the last second again and
        // again (300 ms apart) until it is a second old, against a writer
        // still at work: make them older, or start-up takes 1.5 s.
        let past = std::time::SystemTime::now() - Duration::from_secs(60);
        for name in ["main.cf", "master.cf", "dynamicmaps.cf"] {
            let f = fs::File::options()
                .write(true)
                .open(d.join("conf").join(name))
                .unwrap();
            f.set_modified(past).unwrap();
        }

        // -d: stay in the foreground; -s: keep stdout, where postlogd writes
        // the log (maillog_file = /dev/stdout).
        let log = fs::File::create(d.join("log")).unwrap();
        let child = Command::new(POSTFIX_MASTER)
            .arg("-c")
            .arg(d.join("conf"))
            .args(["-d", "-s"])
            .env_clear()
            .env("LD_LIBRARY_PATH", POSTFIX_LIBS)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // master signals its process group to stop its daemons.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {POSTFIX_MASTER}: {e}"));
        let mut postfix = Postfix {
            dir,
            child: Some(child),
            port,
        };
        postfix.wait_ready()?;
        Ok(postfix)
    }

    /// Waits until smtpd greets (master binds the port at start-up and
    /// starts an smtpd for the first connection).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "postfix master exited with {status}\n{}",
                    self.log()
                ));
            }
            if greets(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postfix did not come up in {WAIT:?}\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// smtpd's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Postfix's private directory (conf, queue, data, mail, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every message copy postfix delivered, in order of delivery. Waits
    /// (up to 10 s, then panics with the log) until postfix's queues are
    /// empty, so call it after the client has seen the reply to the end of
    /// the message data.
    pub fn messages(&self) -> Vec<StoredMessage> {
        let deadline = Instant::now() + WAIT;
        while self.queued() > 0 {
            assert!(
                Instant::now() < deadline,
                "postfix still has {} queue file(s) after {WAIT:?}\n{}",
                self.queued(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let new = self.dir.path().join("mail/store/new");
        let mut found = Vec::new();
        for entry in fs::read_dir(&new).into_iter().flatten() {
            let entry = entry.unwrap();
            let mtime = entry.metadata().unwrap().modified().unwrap();
            let raw = fs::read(entry.path()).unwrap();
            let msg = parse_stored(&raw).unwrap_or_else(|| {
                panic!(
                    "{}: not a delivered message:\n{}",
                    entry.path().display(),
                    String::from_utf8_lossy(&raw)
                )
            });
            found.push((mtime, entry.file_name(), msg));
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found.into_iter().map(|(_, _, m)| m).collect()
    }

    /// The number of files in postfix's queues (accepted, not yet
    /// delivered, or deferred).
    fn queued(&self) -> usize {
        fn count(p: &Path) -> usize {
            fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .fold(0, |n, e| {
                    n + if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count(&e.path())
                    } else {
                        1
                    }
                })
        }
        QUEUES
            .iter()
            .map(|q| count(&self.dir.path().join("queue").join(q)))
            .sum()
    }

    /// The SMTP sessions' summaries that smtpd logs at the end of each
    /// connection, as `ehlo=1 mail=1 rcpt=3 bdat=1 quit=1 commands=7`
    /// (failed commands as `rcpt=3/5`), but for the harness's own probes.
    pub fn sessions(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once(" disconnect from ")?.1.split_once("] "))
            .map(|(_, counts)| counts.to_string())
            .filter(|c| c != "quit=1 commands=1")
            .collect()
    }

    /// Postfix's log (every daemon's, through postlogd), for failure
    /// messages and for what the SMTP session looked like.
    pub fn log(&self) -> String {
        let mut out = String::new();
        if let Ok(text) = fs::read_to_string(self.dir.path().join("log")) {
            let _ = write!(out, "--- postfix log:\n{text}");
        }
        out
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM to master is `postfix stop`, but master then leaves its
        // daemons, which it signals, to init, slow to reap them (zombies for
        // a minute here). So the daemons go first, while master is there to
        // reap them (it starts no new one unless asked to), then master.
        // What is still there a second later is killed.
        let master = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let daemons = group_members(master);
            if daemons.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in daemons {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = kill(Pid::from_raw(master), Signal::SIGTERM);
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = killpg(Pid::from_raw(master), Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// Splits a delivered file into its envelope and the message: the virtual
/// delivery agent writes `Return-Path:`, `X-Original-To:` and
/// `Delivered-To:` before the message.
fn parse_stored(raw: &[u8]) -> Option<StoredMessage> {
    let mut rest = raw;
    let mut line = |prefix: &str| -> Option<String> {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let l = std::str::from_utf8(&rest[..end])
            .ok()?
            .strip_prefix(prefix)?;
        rest = &rest[end + 1..];
        Some(l.to_string())
    };
    let sender = line("Return-Path: ")?;
    let sender = sender.strip_prefix('<')?.strip_suffix('>')?.to_string();
    let rcpt = line("X-Original-To: ")?;
    line("Delivered-To: ")?;
    Some(StoredMessage {
        sender,
        rcpt,
        data: rest.to_vec(),
    })
}

/// main.cf for an instance in `d`, its virtual mailbox owned by uid:gid.
fn main_cf(d: &Path, opts: &PostfixOptions, uid: u32, gid: u32) -> String {
    let d = d.display();
    let mut discard = Vec::new();
    for (on, keyword) in [
        (opts.size, "size"),
        (opts.pipelining, "pipelining"),
        (opts.chunking, "chunking"),
        (opts.eightbitmime, "8bitmime"),
    ] {
        if !on {
            discard.push(keyword);
        }
    }
    let discard = discard.join(", ");
    let yes_no = |b| if b { "yes" } else { "no" };
    let smtputf8 = yes_no(opts.smtputf8);
    let rcpt_limit = opts.recipient_limit.unwrap_or(1000);
    let size_limit = opts.message_size_limit.unwrap_or(10_240_000);
    format!(
        r#"# postfix for one dma-rs test (tests/support/postfix.rs).
compatibility_level = 3.6

# Everything private to this instance; the programs in the unpacked tree.
config_directory = {d}/conf
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = {d}/conf
daemon_directory = {POSTFIX_ROOT}/usr/lib/postfix/sbin
command_directory = {POSTFIX_ROOT}/usr/sbin
shlib_directory = {POSTFIX_LIBS}
mail_owner = {POSTFIX_USER}
setgid_group = {POSTDROP_GROUP}
# The daemons find postfix's libraries through LD_LIBRARY_PATH.
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
maillog_file = /dev/stdout

# Loopback only; no DNS, no client name lookup, no alias or NIS lookups.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
smtpd_peername_lookup = no
smtp_host_lookup = native
disable_dns_lookups = yes
alias_maps =
alias_database =
local_recipient_maps =

# The message is stored as it came: no header rewriting for local clients.
local_header_rewrite_clients =
# No throttling of a client that is faster than delivery.
in_flow_delay = 0s

# Every address of every domain lands in one Maildir; nothing is relayed.
virtual_mailbox_domains = static:all
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:store/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
mailbox_size_limit = 0
default_transport = error:the test harness relays nothing
relay_transport = error:the test harness relays nothing

# What smtpd offers and enforces.
smtpd_recipient_limit = {rcpt_limit}
message_size_limit = {size_limit}
smtpd_discard_ehlo_keywords = {discard}
smtputf8_enable = {smtputf8}
"#
    )
}

/// master.cf: smtpd on 127.0.0.1:`port` and the daemons that queue and
/// deliver what it accepts.
fn master_cf(port: u16) -> String {
    format!(
        "# service type private unpriv chroot wakeup maxproc command
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
flush     unix  n - n 1000? 0 flush
anvil     unix  - - n - 1 anvil
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
virtual   unix  - n n - - virtual
postlog   unix-dgram n - n - 1 postlogd
"
    )
}
