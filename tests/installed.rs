//! The privilege model of an installed system, for real: `dma` set-group-id
//! mail, `dma-local` set-user-id root runnable by group mail only, the spool
//! 2770 root:mail, the system configuration at its compiled-in path.
//!
//! The compiled-in paths (`/etc/dma/dma.conf`, `/usr/local/libexec/dma-rs`)
//! are bind-mounted from a test directory inside a private mount namespace
//! (`unshare --mount`), so nothing on the host is changed beyond two empty
//! mount points that scripts/test-setup.sh creates.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const CONF_DIR: &str = "/etc/dma";
const LIBEXEC: &str = "/usr/local/libexec/dma-rs";

struct Installed {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn chown_mode(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Installed {
    fn new() -> Installed {
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
    fn run(&self, user: Option<&str>, argv: &[&str], stdin: &str) -> std::process::Output {
        let mut script = format!(
            "set -e; mount --bind {r}/etc {CONF_DIR}; mount --bind {r}/libexec {LIBEXEC}; exec ",
            r = self.root.display()
        );
        if let Some(u) = user {
            script.push_str(&format!("runuser -u {u} -- "));
        }
        for a in argv {
            script.push_str(&format!("'{a}' "));
        }
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        c.env_remove("EMAIL");
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }
}

fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout {}\nstderr {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn installed_user_to_user_delivery_runs_as_the_recipient() {
    if !need_root("installed_privileges") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-odi", BOB],
        "Subject: installed\n\nhello bob\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let mbox = inst.root.join("mail").join(BOB);
    let text = std::fs::read_to_string(&mbox).unwrap_or_default();
    assert!(
        text.starts_with(&format!("From {ALICE}@{HOST} ")),
        "{}\n{text}",
        show(&o)
    );
    assert!(text.contains("\nhello bob\n\n"), "{text}");
    assert_eq!(owner_mode(&mbox), (user(BOB).uid, 0o600));
    assert_eq!(
        std::fs::read_dir(inst.root.join("spool")).unwrap().count(),
        0
    );

    // Alice cannot look into the spool, nor run the helper herself.
    let o = inst.run(Some(ALICE), &["ls", &inst.path("spool")], "");
    assert!(
        !o.status.success(),
        "spool readable by a user: {}",
        show(&o)
    );
    let o = inst.run(
        Some(ALICE),
        &[
            &inst.path("libexec/dma-local"),
            "mbox",
            "--user",
            BOB,
            "--sender",
            "x",
        ],
        "forged\n",
    );
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        show(&o)
    );
    assert!(!std::fs::read_to_string(&mbox).unwrap().contains("forged"));

    // With -C, dma gives up group mail: Alice's private config cannot reach
    // the system spool.
    let o = inst.run(
        Some(ALICE),
        &[&sendmail, "-C", &inst.path("etc/dma.conf"), "-odq", BOB],
        "x\n",
    );
    assert_eq!(o.status.code(), Some(73), "{}", show(&o));
}

#[test]
fn root_becomes_mail_and_queue_files_are_not_users() {
    if !need_root("installed_root") {
        return;
    }
    let inst = Installed::new();
    let sendmail = inst.path("sbin/sendmail");
    let o = inst.run(
        None,
        &[&sendmail, "-odq", CAROL],
        "Subject: from root\n\nx\n",
    );
    assert!(o.status.success(), "{}", show(&o));
    let mail_uid = nix::unistd::User::from_name("mail")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let files: Vec<_> = std::fs::read_dir(inst.root.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let (uid, mode) = owner_mode(f);
        assert_eq!((uid, mode & 0o007), (mail_uid, 0), "{}", f.display());
    }
    let o = inst.run(None, &[&inst.path("sbin/dma"), "-q"], "");
    assert!(o.status.success(), "{}", show(&o));
    let text = std::fs::read_to_string(inst.root.join("mail").join(CAROL)).unwrap_or_default();
    // The Received header names the real caller, root.
    assert!(
        text.contains("Received: from root (uid 0)") && text.contains("Subject: from root"),
        "{}\n{text}",
        show(&o)
    );
}
