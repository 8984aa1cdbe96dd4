//! Integration test of `scripts/install.sh`: stages installs below a temporary
//! DESTDIR from the binaries cargo built for this test (`--no-build
//! --bindir-from`), then checks the layout, the modes, the owners (as root),
//! that an administrator's dma.conf survives a second run, and that the
//! installed `sendmail` works.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh")
}

/// Where cargo put `dma` and `dma-local` for this test.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_dma"))
        .parent()
        .expect("the binary is in a directory")
        .to_path_buf()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the script with `--no-build --destdir DESTDIR --prefix /usr` and
/// `extra`; without root, with `--no-chown` too.
fn install_cmd(destdir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(script())
        .arg("--no-build")
        .arg("--destdir")
        .arg(destdir)
        .args(["--prefix", "/usr", "--bindir-from"])
        .arg(bin_dir())
        .args(extra);
    if !is_root() {
        cmd.arg("--no-chown");
    }
    cmd.output().expect("can not run sh")
}

fn install(destdir: &Path, extra: &[&str]) -> Output {
    let out = install_cmd(destdir, extra);
    assert!(out.status.success(), "install.sh failed: {}", show(&out));
    out
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Existence and modification time of paths an install to the real system
/// would write, to check that a DESTDIR install leaves them alone.
fn system_paths() -> Vec<(PathBuf, Option<SystemTime>)> {
    [
        "/etc/cron.d/dma-rs",
        "/lib/systemd/system/dma-rs-queue.service",
        "/lib/systemd/system/dma-rs-queue.timer",
        "/usr/sbin/dma",
        "/usr/libexec/dma-rs",
        "/etc/dma",
        "/var/spool/dma",
    ]
    .into_iter()
    .map(|p| {
        let t = fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
        (PathBuf::from(p), t)
    })
    .collect()
}

/// Runs `prog -C CONF -bp` (or without `-bp` for mailq) on a copy of the
/// installed dma.conf whose SPOOLDIR is an empty temporary directory.
fn list_queue(prog: &Path, installed_conf: &Path, bp: bool) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let conf = tmp.path().join("dma.conf");
    let mut text = fs::read_to_string(installed_conf).unwrap();
    text.push_str(&format!("\nSPOOLDIR {}\n", spool.display()));
    fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(prog);
    cmd.arg("-C").arg(&conf);
    if bp {
        cmd.arg("-bp");
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("can not run {}: {e}", prog.display()))
}

#[test]
fn stages_the_layout_below_destdir() {
    let before = system_paths();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = install(d, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("installed"), "{}", show(&out));

    let dma = d.join("usr/sbin/dma");
    let helper = d.join("usr/libexec/dma-rs/dma-local");
    let spool = d.join("var/spool/dma");
    let conf = d.join("etc/dma/dma.conf");

    // Binaries and modes: dma set-group-id, dma-local set-user-id and only
    // for its group, the queue set-group-id and closed to others.
    assert!(dma.is_file() && helper.is_file() && spool.is_dir() && conf.is_file());
    assert_eq!(mode(&dma), 0o2755, "dma");
    assert_eq!(mode(&helper), 0o4750, "dma-local");
    assert_eq!(mode(&spool), 0o2770, "spool");
    assert_eq!(mode(&conf), 0o644, "dma.conf");
    assert_eq!(
        fs::read(&dma).unwrap(),
        fs::read(env!("CARGO_BIN_EXE_dma")).unwrap()
    );
    assert_eq!(
        fs::read(&helper).unwrap(),
        fs::read(env!("CARGO_BIN_EXE_dma-local")).unwrap()
    );

    // Symlinks.
    for (link, target) in [
        ("usr/sbin/sendmail", "dma"),
        ("usr/bin/mailq", "../sbin/dma"),
        ("usr/bin/newaliases", "../sbin/dma"),
    ] {
        let l = d.join(link);
        assert!(fs::symlink_metadata(&l).unwrap().is_symlink(), "{link}");
        assert_eq!(fs::read_link(&l).unwrap(), Path::new(target), "{link}");
        assert_eq!(
            fs::canonicalize(&l).unwrap(),
            fs::canonicalize(&dma).unwrap()
        );
    }

    // Ownership: root:mail, as root only.
    if is_root() {
        let mail = nix::unistd::Group::from_name("mail")
            .unwrap()
            .expect("group mail exists")
            .gid
            .as_raw();
        for p in [&dma, &helper, &spool] {
            let m = fs::metadata(p).unwrap();
            assert_eq!((m.uid(), m.gid()), (0, mail), "{}", p.display());
        }
    } else {
        println!("note: not root; installed with --no-chown, owners not checked");
    }

    // dma.conf is the sample.
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dma.conf"))
            .unwrap()
    );

    // Cron and systemd, with the binary path of this prefix.
    let cron = fs::read_to_string(d.join("etc/cron.d/dma-rs")).unwrap();
    assert!(cron.contains("/usr/sbin/dma -q5m"), "{cron}");
    assert!(!cron.contains("/usr/local"), "{cron}");
    let service = fs::read_to_string(d.join("lib/systemd/system/dma-rs-queue.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/sbin/dma -q5m"),
        "{service}"
    );
    assert!(!service.contains("/usr/local"), "{service}");
    let timer = fs::read_to_string(d.join("lib/systemd/system/dma-rs-queue.timer")).unwrap();
    assert!(timer.contains("[Timer]"), "{timer}");
    // The cron job yields to the timer where systemd runs.
    assert!(cron.contains("if [ ! -d /run/systemd/system ]"), "{cron}");

    // The man pages of man/ (once there are some), compressed; a `.so'
    // stub is a link to the page it includes.
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for page in fs::read_dir(&man).into_iter().flatten().flatten() {
        let name = page.file_name().to_string_lossy().into_owned();
        let Some(sec) = name
            .rsplit('.')
            .next()
            .filter(|s| matches!(s.as_bytes(), [b'1'..=b'8']))
        else {
            continue;
        };
        let staged = d.join(format!("usr/share/man/man{sec}/{name}.gz"));
        let text = fs::read_to_string(page.path()).unwrap();
        if let Some(target) = text.trim_end().strip_prefix(".so ") {
            let included = target.rsplit('/').next().unwrap();
            assert!(
                fs::read_link(&staged)
                    .unwrap()
                    .ends_with(format!("{included}.gz")),
                "{name}"
            );
        } else {
            let out = Command::new("zcat").arg(&staged).output().unwrap();
            assert_eq!(out.stdout, text.as_bytes(), "{name}");
        }
    }

    // A staging install keeps no manifest: the package manager does.
    assert!(!d.join("var/lib/dma-rs").exists());

    // The installed programs work, through their links.
    for (prog, bp) in [("usr/sbin/sendmail", true), ("usr/bin/mailq", false)] {
        let out = list_queue(&d.join(prog), &conf, bp);
        assert!(out.status.success(), "{prog}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty"),
            "{prog}: {}",
            show(&out)
        );
    }

    // Nothing outside DESTDIR changed.
    assert_eq!(system_paths(), before);
}

#[test]
fn a_second_run_keeps_the_administrators_config() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    install(d, &[]);
    let conf = d.join("etc/dma/dma.conf");
    let mine = "# the administrator's own\nDEFER\nFULLBOUNCE\n";
    fs::write(&conf, mine).unwrap();
    fs::write(d.join("var/spool/dma/0123456789abcdef.env"), "queued").unwrap();

    let out = install(d, &[]);
    assert_eq!(fs::read_to_string(&conf).unwrap(), mine);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept the existing"),
        "{}",
        show(&out)
    );
    // The queue's contents and modes stay; the links are still right.
    assert_eq!(
        fs::read_to_string(d.join("var/spool/dma/0123456789abcdef.env")).unwrap(),
        "queued"
    );
    assert_eq!(mode(&d.join("var/spool/dma")), 0o2770);
    assert_eq!(mode(&d.join("usr/sbin/dma")), 0o2755);
    assert_eq!(
        fs::read_link(d.join("usr/sbin/sendmail")).unwrap(),
        Path::new("dma")
    );
    // The kept file still parses.
    let out = list_queue(&d.join("usr/sbin/sendmail"), &conf, true);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn another_spooldir_is_written_into_a_new_config() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    install(d, &["--spooldir", "/var/spool/dma-rs"]);
    assert_eq!(mode(&d.join("var/spool/dma-rs")), 0o2770);
    let conf = fs::read_to_string(d.join("etc/dma/dma.conf")).unwrap();
    assert!(conf.ends_with("\nSPOOLDIR /var/spool/dma-rs\n"), "{conf}");
    // A later run with yet another spool warns that the kept config differs.
    let out = install(d, &["--spooldir", "/var/spool/elsewhere"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("uses SPOOLDIR /var/spool/dma-rs"),
        "{}",
        show(&out)
    );
}

#[test]
fn an_existing_sendmail_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::create_dir_all(d.join("usr/sbin")).unwrap();
    fs::write(d.join("usr/sbin/sendmail"), "another MTA").unwrap();
    install(d, &[]);
    assert_eq!(
        fs::read_to_string(d.join("usr/sbin/sendmail.pre-dma-rs")).unwrap(),
        "another MTA"
    );
    assert_eq!(
        fs::read_link(d.join("usr/sbin/sendmail")).unwrap(),
        Path::new("dma")
    );
}

#[test]
fn bad_arguments_install_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("stage");
    let out = install_cmd(&d, &["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = install_cmd(&d, &["--sysconfdir", "etc/dma"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = install_cmd(&d, &["--spooldir"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!d.exists());
    let out = Command::new("sh")
        .arg(script())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--destdir"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--uninstall"));
    // Diversions and uninstalling act on the installed system only.
    for opt in ["--divert", "--link-system", "--uninstall"] {
        let out = install_cmd(&d, &[opt]);
        assert_eq!(out.status.code(), Some(1), "{opt}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not with --destdir"),
            "{opt}: {}",
            show(&out)
        );
    }
    assert!(!d.exists());
}
