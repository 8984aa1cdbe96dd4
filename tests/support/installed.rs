//! An installed system for real: `dma` set-group-id mail, `dma-local`
//! set-user-id root runnable by group mail only, the spool 2770 root:mail,
//! the system configuration at its compiled-in path.
//!
//! The compiled-in paths (`/etc/dma/dma.conf`, `/usr/local/libexec/dma-rs`)
//! are bind-mounted from a test directory inside a private mount namespace
//! (`unshare --mount`), so nothing on the host is changed beyond two empty
//! mount points that scripts/test-setup.sh creates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const CONF_DIR: &str = "/etc/dma";
const LIBEXEC: &str = "/usr/local/libexec/dma-rs";

/// One test installation (removed when dropped).
pub struct Installed {
    _dir: tempfile::TempDir,
    /// Its root: `sbin/`, `libexec/`, `etc/`, `spool/`, `mail/`.
    pub root: PathBuf,
}

/// Sets owner and mode.
pub fn chown_mode(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Installed {
    /// Lays out a fresh installation.
    pub fn new() -> Installed {
        // Set-id bits need a file system without nosuid: the target dir.
        let dir = tempfile::Builder::new()
            .prefix("installed")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mail_gid = nix::unistd::Group::from_name("mail")
            .unwrap()
            .unwrap()
            .gid
            .as_raw();
        for d in ["sbin", "libexec", "etc", "spool", "mail"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::copy(bin(), root.join("sbin/dma")).unwrap();
        chown_mode(&root.join("sbin/dma"), 0, mail_gid, 0o2755);
        std::os::unix::fs::symlink("dma", root.join("sbin/sendmail")).unwrap();
        std::fs::copy(
            bin().with_file_name("dma-local"),
            root.join("libexec/dma-local"),
        )
        .unwrap();
        chown_mode(&root.join("libexec/dma-local"), 0, mail_gid, 0o4750);
        chown_mode(&root.join("spool"), 0, mail_gid, 0o2770);
        std::fs::write(
            root.join("etc/dma.conf"),
            format!(
                "SPOOLDIR {}\nMAILSPOOL {}\nALIASES {}\nMAILNAME {HOST}\n",
                root.join("spool").display(),
                root.join("mail").display(),
                root.join("etc/aliases").display()
            ),
        )
        .unwrap();
        for mp in [CONF_DIR, LIBEXEC] {
            std::fs::create_dir_all(mp).unwrap();
        }
        Installed { _dir: dir, root }
    }

    /// Runs `argv` as `user` (root when `None`) inside a mount namespace
    /// where the test installation is at the compiled-in paths.
    pub fn run(&self, user: Option<&str>, argv: &[&str], stdin: &str) -> std::process::Output {
        let mut cmd = String::from("exec ");
        for a in argv {
            cmd.push_str(&format!("'{a}' "));
        }
        self.run_sh(user, &cmd, stdin)
    }

    /// Runs the shell `script` as `user` (root when `None`) in the mount
    /// namespace of [`Installed::run`]: an attacker's session, say. The
    /// script may start background processes; the call returns when the
    /// script and everything holding its stdout or stderr are done.
    pub fn run_sh(&self, user: Option<&str>, script: &str, stdin: &str) -> std::process::Output {
        let mut outer = format!(
            "set -e; mount --bind {r}/etc {CONF_DIR}; mount --bind {r}/libexec {LIBEXEC}; exec ",
            r = self.root.display()
        );
        if let Some(u) = user {
            outer.push_str(&format!("runuser -u {u} -- "));
        }
        outer.push_str("sh -c \"$1\"");
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &outer,
            "sh",
            script,
        ]);
        c.env_remove("EMAIL");
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// Appends `lines` to the system dma.conf.
    pub fn add_conf(&self, lines: &str) {
        let p = self.root.join("etc/dma.conf");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(lines);
        std::fs::write(p, text).unwrap();
    }

    /// The mailbox of `user`, or "" if there is none.
    pub fn mailbox(&self, user: &str) -> String {
        std::fs::read_to_string(self.root.join("mail").join(user)).unwrap_or_default()
    }

    /// The files in the spool (names), sorted, but for the lock files of
    /// runners and intakes (`.runner.*`, `.intake.*`) and the spare
    /// envelope files kept for reuse (`.spare.*`).
    pub fn spool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("spool"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !n.starts_with(".runner.")
                    && !n.starts_with(".intake.")
                    && !n.starts_with(".spare.")
            })
            .collect();
        v.sort();
        v
    }

    /// The path of `rel` below the root, as a string.
    pub fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }
}

/// Status, stdout and stderr, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout {}\nstderr {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
