//! The test harness: a private dma-rs installation per test (config, spool,
//! mail spool, aliases in a fresh directory), the real binary run as root or
//! as one of the test users, and on failure a dump of everything on disk.
//!
//! The test users (`dmt-alice`, `dmt-bob`, `dmt-carol`) are created by
//! `scripts/test-setup.sh`, which the test command runs as root.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod installed;
pub mod overlay;

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The test users, created by scripts/test-setup.sh.
pub const ALICE: &str = "dmt-alice";
pub const BOB: &str = "dmt-bob";
pub const CAROL: &str = "dmt-carol";

/// Our mail name in every test config.
pub const HOST: &str = "test.example";

/// A test user's ids.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up; panics with a hint when the test setup has not run.
pub fn user(name: &str) -> Ids {
    let u = nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("user {name} missing: run scripts/test-setup.sh as root"));
    Ids {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }
}

/// Whether we run as root. Tests that need real users and privilege changes
/// require it (CI runs as root); without it they say so and pass nothing.
pub fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("DMA_TESTS_REQUIRE_ROOT").is_some() {
        panic!("{test} needs root, and DMA_TESTS_REQUIRE_ROOT is set");
    }
    eprintln!("SKIPPED {test}: needs root (run the README's test command as root)");
    false
}

/// The test users' homes are shared by the tests of one binary.
static HOMES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Exclusive use of the test users' homes; cleans them on drop.
pub struct Homes {
    _g: std::sync::MutexGuard<'static, ()>,
    // Also across test binaries run side by side (several checkouts on
    // one machine): an flock on a file every run agrees on.
    _f: Option<std::fs::File>,
}

impl Homes {
    /// Waits for the homes, and cleans them.
    pub fn take() -> Homes {
        let g = HOMES.lock().unwrap_or_else(|e| e.into_inner());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/dma-rs-test-homes.lock")
            .ok()
            .filter(|f| f.lock().is_ok());
        clean();
        Homes { _g: g, _f: f }
    }
}

impl Drop for Homes {
    fn drop(&mut self) {
        clean();
    }
}

/// The home directory of `user`.
pub fn home(user: &str) -> PathBuf {
    nix::unistd::User::from_name(user).unwrap().unwrap().dir
}

/// Removes `.forward`, `out.*` and `t.*` from the test users' homes.
pub fn clean() {
    for u in [ALICE, BOB, CAROL] {
        let h = home(u);
        if let Ok(rd) = std::fs::read_dir(&h) {
            for e in rd.flatten() {
                let n = e.file_name().into_string().unwrap_or_default();
                if n == ".forward" || n.starts_with("out.") || n.starts_with("t.") {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        }
    }
}

/// Writes `user`'s script `~/t.NAME` (owned by the user, 0755), for their
/// `.forward`; returns its path.
pub fn script(user: &str, name: &str, body: &str) -> String {
    let p = home(user).join(format!("t.{name}"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    let ids = self::user(user);
    std::os::unix::fs::chown(&p, Some(ids.uid), Some(ids.gid)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// `~user/t.NAME`, or "" while it does not exist.
pub fn t_file(user: &str, name: &str) -> String {
    std::fs::read_to_string(home(user).join(format!("t.{name}"))).unwrap_or_default()
}

/// Writes `user`'s .forward, owned by the user, mode 0644.
pub fn set_forward(user: &str, text: &str) -> PathBuf {
    let p = home(user).join(".forward");
    std::fs::write(&p, text).unwrap();
    let ids = self::user(user);
    std::os::unix::fs::chown(&p, Some(ids.uid), Some(ids.gid)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// The pids of `user`'s processes named `name` (by real uid and name, as
/// `pgrep -u USER -x NAME` finds them).
pub fn pids_of(user: &str, name: &str) -> Vec<i32> {
    let o = std::process::Command::new("pgrep")
        .args(["-u", user, "-x", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits up to `limit` for `user`'s processes named `name` to appear;
/// their pids (none if they did not).
pub fn wait_for_pids(user: &str, name: &str, limit: Duration) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let p = pids_of(user, name);
        if !p.is_empty() || start.elapsed() > limit {
            return p;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The writers of `file`: `user`'s `dma-local` processes that have it open.
/// (Tests of other checkouts on this machine may deliver to the same test
/// user: only ours have our file open.)
pub fn writers_of(user: &str, file: &Path) -> Vec<i32> {
    pids_of(user, "dma-local")
        .into_iter()
        .filter(|p| {
            std::fs::read_dir(format!("/proc/{p}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
            })
        })
        .collect()
}

/// Sends SIGKILL to each of `pids`.
pub fn sigkill(pids: &[i32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The pids of every runner (`dma-local runner`, and the queue workers it
/// forked) working for `env`'s configuration.
pub fn runner_pids(env: &Env) -> Vec<i32> {
    let conf = env.conf.display().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).is_some_and(|a| a == "runner") && args.contains(&conf) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs every runner working for `env`'s configuration
/// ([`runner_pids`]): a crash of the delivering processes. Returns how many
/// it killed.
pub fn kill_runners(env: &Env) -> usize {
    let pids = runner_pids(env);
    sigkill(&pids);
    pids.len()
}

/// One private installation.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub spool: PathBuf,
    pub mail: PathBuf,
    pub aliases: PathBuf,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dma"))
}

impl Env {
    /// A new installation with `extra` appended to the config.
    pub fn new(extra: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("dma-rs-test")
            .tempdir()
            .unwrap();
        // Test users must reach the config and the spool.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let spool = dir.path().join("spool");
        let mail = dir.path().join("mail");
        let aliases = dir.path().join("aliases");
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(&mail).unwrap();
        std::fs::write(&aliases, "").unwrap();
        let conf = dir.path().join("dma.conf");
        let env = Env {
            conf,
            spool,
            mail,
            aliases,
            dir,
        };
        env.write_conf(extra);
        for name in ["sendmail", "mailq", "newaliases"] {
            std::os::unix::fs::symlink(bin(), env.dir.path().join(name)).unwrap();
        }
        env
    }

    /// Rewrites the config: the base lines plus `extra`.
    pub fn write_conf(&self, extra: &str) {
        std::fs::write(
            &self.conf,
            format!(
                "# test config\nSPOOLDIR {}\nMAILSPOOL {}\nALIASES {}\nMAILNAME {HOST}\n\
                 # Tests never ask a real DNS server: nothing listens here.\n\
                 NAMESERVER 127.0.0.1:9\n{extra}",
                self.spool.display(),
                self.mail.display(),
                self.aliases.display()
            ),
        )
        .unwrap();
    }

    pub fn set_aliases(&self, text: &str) {
        std::fs::write(&self.aliases, text).unwrap();
    }

    /// `prog` (sendmail, mailq, newaliases, or dma) with `-C conf` first.
    pub fn cmd(&self, prog: &str) -> Command {
        let path = if prog == "dma" {
            bin()
        } else {
            self.dir.path().join(prog)
        };
        let mut c = Command::new(path);
        c.arg("-C").arg(&self.conf);
        c.env_remove("EMAIL");
        c
    }

    /// Runs `cmd` with `stdin`, as `as_user` (root when `None`).
    pub fn run(&self, mut cmd: Command, stdin: &[u8], as_user: Option<&str>) -> Run {
        if let Some(name) = as_user {
            let ids = user(name);
            cmd.uid(ids.uid).gid(ids.gid);
            cmd.env("LOGNAME", name).env("USER", name);
            cmd.current_dir("/");
        }
        let text = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(stdin);
        drop(si);
        let out = child.wait_with_output().unwrap();
        Run {
            cmd: text,
            user: as_user.map(str::to_string),
            out,
        }
    }

    /// `sendmail -odi ARGS` as root with `msg` on stdin.
    pub fn send(&self, args: &[&str], msg: &str) -> Run {
        let mut c = self.cmd("sendmail");
        c.arg("-odi").args(args);
        self.run(c, msg.as_bytes(), None)
    }

    /// `sendmail ARGS` as `user` with `msg` on stdin (no -od flag added).
    pub fn send_as(&self, user: &str, args: &[&str], msg: &str) -> Run {
        let mut c = self.cmd("sendmail");
        c.args(args);
        self.run(c, msg.as_bytes(), Some(user))
    }

    /// `dma -q` (everything now) as root.
    pub fn flush(&self) -> Run {
        let mut c = self.cmd("dma");
        c.arg("-q");
        self.run(c, b"", None)
    }

    pub fn mailq(&self) -> Run {
        self.run(self.cmd("mailq"), b"", None)
    }

    pub fn mbox_path(&self, user: &str) -> PathBuf {
        self.mail.join(user)
    }

    /// A mailbox's text ("" when absent).
    pub fn mbox(&self, user: &str) -> String {
        std::fs::read_to_string(self.mbox_path(user)).unwrap_or_default()
    }

    /// The messages of a mailbox (split on `From ` lines after a blank line).
    pub fn messages(&self, user: &str) -> Vec<String> {
        split_mbox(&self.mbox(user))
    }

    /// Waits until `user`'s mailbox holds `n` messages (background delivery).
    pub fn wait_for(&self, user: &str, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let m = self.messages(user);
            if m.len() >= n || start.elapsed() > Duration::from_secs(20) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ids of queued messages.
    pub fn queue_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.spool)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_suffix(".env").map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Everything on disk, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for dir in [&self.spool, &self.mail] {
            let _ = writeln!(s, "== {}", dir.display());
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                let m = std::fs::symlink_metadata(&p).unwrap();
                let _ = writeln!(
                    s,
                    "-- {} mode {:o} uid {} size {}",
                    p.display(),
                    m.mode(),
                    m.uid(),
                    m.len()
                );
                if m.is_file() && m.len() < 20_000 {
                    let _ = writeln!(
                        s,
                        "{}",
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                    );
                }
            }
        }
        s
    }
}

/// Splits an mbox into messages (each starting with its `From ` line).
pub fn split_mbox(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev_blank = true;
    for line in text.split_inclusive('\n') {
        if prev_blank && line.starts_with("From ") {
            out.push(String::new());
        }
        if let Some(m) = out.last_mut() {
            m.push_str(line);
        }
        prev_blank = line == "\n";
    }
    out
}

/// The outcome of one command.
pub struct Run {
    pub cmd: String,
    pub user: Option<String>,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// A description of the run for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "command: {} (as {})\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.cmd,
            self.user.as_deref().unwrap_or("root"),
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
    /// Asserts exit code `code`, showing the run and `env` otherwise.
    pub fn expect(&self, code: i32, env: &Env) -> &Run {
        assert_eq!(self.code(), code, "{}\n{}", self.show(), env.dump());
        self
    }
}

/// The message without its `From ` line and our 5-line `Received:` header.
pub fn strip_trace(msg: &str) -> String {
    let mut lines = msg.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    assert!(first.starts_with("From "), "no From_ line: {msg}");
    let rest: Vec<&str> = lines.collect();
    assert!(
        rest[0].starts_with("Received: from "),
        "no Received first: {msg}"
    );
    let mut i = 1;
    while i < rest.len() && rest[i].starts_with('\t') {
        i += 1;
    }
    rest[i..].concat()
}

/// The file mode and owner of `p`.
pub fn owner_mode(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

/// Runs a command with the given uid (helper for plain commands like `id`).
pub fn as_uid(mut c: Command, ids: Ids) -> Command {
    c.uid(ids.uid).gid(ids.gid);
    c
}
