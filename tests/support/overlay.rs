//! A throw-away copy of the whole system to install packages into: an
//! overlay file system over `/` whose changes go to a tmpfs, in a private
//! mount namespace, entered with `chroot`. dpkg, apt-get, install.sh and
//! the programs they install run there as on the real host, which they
//! never change; everything is gone when the [`Overlay`] is dropped.
//!
//! A holder process (`unshare --mount`) makes the mounts and keeps the
//! namespace alive until its stdin closes; every command enters it
//! (`nsenter --mount`, then `chroot`). The overlay has its own `/tmp` and
//! `/run` (empty tmpfs: no host daemon is reachable through a socket, and
//! `/run/systemd/system` is absent, as without systemd), and the host's
//! `/dev`, `/proc` and `/sys`. Host directories that are not on the root
//! file system (a build directory on another mount) are bound in read-only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

/// The holder: makes the mounts below `$1`, binds `$2...` read-only at
/// their own paths, says `ready`, and waits for its stdin to close.
const HOLDER: &str = r#"
set -eu
b=$1
shift
mount -t tmpfs -o mode=0755 dma-rs-overlay "$b"
mkdir "$b/upper" "$b/work" "$b/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$b/upper,workdir=$b/work" "$b/root"
mount --rbind /dev "$b/root/dev"
mount -t proc proc "$b/root/proc"
mount --rbind /sys "$b/root/sys"
mount -t tmpfs -o mode=0755 tmpfs "$b/root/run"
mount -t tmpfs -o mode=1777 tmpfs "$b/root/tmp"
for d in "$@"; do
    mkdir -p "$b/root$d"
    mount --bind "$d" "$b/root$d"
    mount -o remount,bind,ro "$b/root$d"
done
echo ready
read -r _ || true
"#;

/// One overlay (unmounted, with everything written into it, on drop).
pub struct Overlay {
    holder: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    /// The holder's mount point (an empty directory on the host).
    base: tempfile::TempDir,
}

impl Overlay {
    /// Makes an overlay, with each of `binds` (host directories) bound
    /// read-only at its own path inside (one below another once).
    pub fn new(binds: &[&Path]) -> Overlay {
        let binds: Vec<&Path> = binds
            .iter()
            .filter(|d| !binds.iter().any(|o| o != *d && d.starts_with(o)))
            .copied()
            .collect();
        let base = tempfile::Builder::new()
            .prefix("dma-rs-overlay")
            .tempdir()
            .unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            HOLDER,
            "sh",
        ])
        .arg(base.path())
        .args(binds)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut holder = cmd.spawn().expect("can not run unshare");
        let pid = holder.id();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the overlay holder failed (see stderr)");
        let stdin = holder.stdin.take();
        Overlay {
            holder,
            stdin,
            pid,
            base,
        }
    }

    /// Where `path` (absolute, inside the overlay) is, seen from the host:
    /// through the holder's root, in its mount namespace.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root{}/root{path}",
            self.pid,
            self.base.path().display()
        ))
    }

    /// The overlay's upper directory, seen from the host: every file the
    /// overlay changed, and a whiteout (a character device) for every file
    /// it removed.
    pub fn upper(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root{}/upper",
            self.pid,
            self.base.path().display()
        ))
    }

    /// The bytes of `path` inside the overlay, if it is there.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(path)).ok()
    }

    /// Whether `path` (or a dangling link of that name) is there.
    pub fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.path(path)).is_ok()
    }

    /// The processes running inside the overlay (their root is its root):
    /// pid and name. Background work of what ran there: a runner waiting
    /// for more mail, say.
    pub fn processes(&self) -> Vec<(i32, String)> {
        use std::os::unix::fs::MetadataExt;
        let Ok(root) = std::fs::metadata(self.path("/")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(m) = std::fs::metadata(e.path().join("root")) else {
                continue;
            };
            if (m.dev(), m.ino()) == (root.dev(), root.ino()) {
                let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                found.push((pid, name.trim_end().to_string()));
            }
        }
        found
    }

    /// Waits up to `limit` until no process runs inside the overlay; the
    /// ones still running then.
    pub fn settle(&self, limit: std::time::Duration) -> Vec<(i32, String)> {
        let started = std::time::Instant::now();
        loop {
            let left = self.processes();
            if left.is_empty() || started.elapsed() > limit {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs the shell `script` as root inside the overlay, with a clean
    /// environment (no debconf questions).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.pid.to_string())
            .args(["--mount", "--", "chroot"])
            .arg(self.base.path().join("root"))
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("can not run nsenter")
    }

    /// Runs `script` ([`Overlay::sh`]) and asserts that it succeeds; its
    /// stdout.
    pub fn ok(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{what}: {}", show(script, &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // What still runs inside (a runner that outlived its test) is
        // stopped first, so that nothing keeps the namespace alive.
        for (pid, _) in self.settle(std::time::Duration::from_secs(5)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // EOF on the holder's stdin ends it, and with its last process the
        // namespace, its mounts and the tmpfs holding every change.
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
        let _ = self.holder.wait();
    }
}

/// A command, its status, stdout and stderr, for assertion messages.
pub fn show(script: &str, out: &Output) -> String {
    format!(
        "\n--- script\n{script}\n--- {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
