//! The Debian package (scripts/build-deb.sh) and install.sh on a system
//! where Debian's `dma` is installed, each in an overlay over the whole
//! host (tests/support/overlay.rs): the host is never changed.
//!
//! The package is built once per test run (a release build of its own:
//! Debian's paths are compiled in) and shared by the tests; install.sh
//! installs the same binaries. Debian's dma comes from the .deb that
//! scripts/test-setup.sh downloads into /opt/dma-rs-test/debs. These tests
//! need root (the overlay, dpkg); CI runs them as root.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::overlay::{Overlay, show};
use support::{ALICE, BOB, need_root};

const AUTH: &str = "/etc/dma/auth.conf";
const CONF: &str = "/etc/dma/dma.conf";
const MAILBOX: &str = "/var/mail/dmt-bob";
/// Where scripts/test-setup.sh keeps Debian's dma .deb.
const DEBS: &str = "/opt/dma-rs-test/debs";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory of this test run.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the tmp dir is in the target dir")
        .to_path_buf()
}

/// The package, built once for all the tests.
struct Built {
    deb: PathBuf,
    /// The binaries in it (built for prefix /usr), for install.sh.
    bins: PathBuf,
    /// Every path in the package that is not a directory.
    files: Vec<String>,
    /// Its conffiles.
    conffiles: Vec<String>,
}

static BUILT: OnceLock<Built> = OnceLock::new();

/// Runs scripts/build-deb.sh (incremental: cargo rebuilds only what
/// changed) once per test run.
fn built() -> &'static Built {
    BUILT.get_or_init(|| {
        let started = Instant::now();
        let mut cmd = std::process::Command::new(repo().join("scripts/build-deb.sh"));
        // Without what cargo set for this test (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, ...): build scripts (ring's) rebuild when
        // those change, and the build is the one scripts/build-deb.sh run
        // by hand makes and uses.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if (key == "CARGO" || key.starts_with("CARGO_")) && key != "CARGO_HOME" {
                cmd.env_remove(&*key);
            }
        }
        cmd.env("CARGO_TARGET_DIR", target_dir())
            // Everything was fetched for this test build already.
            .env("CARGO_NET_OFFLINE", "true");
        // The cargo that runs these tests, also where it is not on PATH.
        if let Some(dir) = std::env::var_os("CARGO").map(PathBuf::from)
            && let Some(dir) = dir.parent()
        {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        let out = cmd.output().expect("can not run scripts/build-deb.sh");
        assert!(
            out.status.success(),
            "build-deb.sh failed: {}",
            show("scripts/build-deb.sh", &out)
        );
        eprintln!(
            "scripts/build-deb.sh took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let deb = PathBuf::from(stdout.lines().last().expect("the .deb's path"));
        assert!(deb.is_file(), "{}", deb.display());
        let listing = run_ok("dpkg-deb", &[std::ffi::OsStr::new("-c"), deb.as_os_str()]);
        let files = listing
            .lines()
            .filter(|l| !l.starts_with('d'))
            .map(|l| {
                let path = l.split_whitespace().nth(5).expect("a path");
                path.trim_start_matches('.').to_string()
            })
            .collect();
        let conffiles = std::fs::read_to_string(repo().join("contrib/debian/conffiles"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        Built {
            bins: deb.with_file_name("bin"),
            deb,
            files,
            conffiles,
        }
    })
}

/// Runs a program on the host; its stdout (it must succeed).
fn run_ok(prog: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("can not run {prog}: {e}"));
    assert!(out.status.success(), "{}", show(prog, &out));
    String::from_utf8(out.stdout).unwrap()
}

/// Debian's dma .deb (the newest in the cache).
fn debian_dma() -> PathBuf {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(DEBS)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dma_"))
        })
        .collect();
    debs.sort();
    debs.pop()
        .unwrap_or_else(|| panic!("no dma_*.deb in {DEBS}: run scripts/test-setup.sh as root"))
}

/// A fresh overlay in which the repository, the build and the cached
/// .debs are visible (read-only), with Debian's dma installed in place of
/// whatever MTA the host has (apt-get removes it, as for an administrator).
fn overlay_with_dma() -> Overlay {
    let o = Overlay::new(&[repo(), &target_dir(), Path::new(DEBS)]);
    // man-db's index is not updated after every dpkg run here: man finds
    // the pages by searching its directories all the same.
    o.ok(
        "install Debian's dma",
        &format!(
            "rm -f /var/lib/man-db/auto-update && apt-get install -y -q --no-install-recommends {}",
            debian_dma().display()
        ),
    );
    assert_eq!(status(&o, "dma"), "install ok installed");
    o
}

/// For a test that needs root: the package and a fresh overlay with
/// Debian's dma installed; `None` (the test is skipped) without root.
fn start(test: &str) -> Option<(&'static Built, Overlay)> {
    if !need_root(test) {
        return None;
    }
    Some((built(), overlay_with_dma()))
}

/// Installs the package in place of dma, as an administrator does it:
/// apt-get removes dma (plain dpkg -i can not: dma's Conflicts names the
/// virtual package, which dpkg does not resolve by removing dma), then
/// dpkg installs ours. A conffile question would fail: stdin is /dev/null.
/// Its output.
fn install_package(o: &Overlay, built: &Built) -> String {
    o.ok(
        "install dma-rs",
        &format!("apt-get install -y -q {}", built.deb.display()),
    )
}

/// dpkg's status of `pkg` ("" if dpkg does not know it).
fn status(o: &Overlay, pkg: &str) -> String {
    o.sh(&format!("dpkg-query -W -f '${{Status}}' {pkg}"))
        .stdout
        .into_iter()
        .map(char::from)
        .collect()
}

/// Mode, owner and group of `path`, as `2755 root:mail`.
fn stat(o: &Overlay, path: &str) -> String {
    o.ok("stat", &format!("stat -c '%a %U:%G' {path}"))
        .trim_end()
        .to_string()
}

/// What dpkg -V says about `pkg` (nothing when its files are as shipped).
fn verify(o: &Overlay, pkg: &str) -> String {
    o.ok("dpkg -V", &format!("dpkg -V {pkg}"))
}

/// Every path of package `pkg` with what it is: a directory's mode and
/// owner, a file's checksum, mode and owner, a link's target.
fn package_files(o: &Overlay, pkg: &str) -> String {
    o.ok(
        "list the package's files",
        &format!(
            r#"while read -r f; do
                if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"
                elif [ -d "$f" ]; then echo "$f dir $(stat -c '%a %U:%G' "$f")"
                elif [ -f "$f" ]; then echo "$f $(md5sum <"$f" | cut -c1-32) $(stat -c '%a %U:%G' "$f")"
                else echo "$f missing"; fi
            done </var/lib/dpkg/info/{pkg}.list"#
        ),
    )
}

/// Sends a message with a fresh token from alice to bob through `how`
/// (a command reading the message from stdin), and waits until bob's
/// mailbox has it, delivered by dma-rs; the token.
fn mail_alice_to_bob(o: &Overlay, how: &str) -> String {
    let token = format!("token-{}", std::process::id() ^ rand_u32());
    o.ok(
        &format!("mail through {how}"),
        &format!("printf 'Subject: hi\\n\\nhello bob, {token}\\n' | runuser -u {ALICE} -- {how}"),
    );
    wait_for_mail(o, &token);
    token
}

/// Waits up to 20 s until bob's mailbox holds `token`, and checks that it
/// came through dma-rs (its Received: line).
fn wait_for_mail(o: &Overlay, token: &str) {
    let started = Instant::now();
    loop {
        let mbox = String::from_utf8_lossy(&o.read(MAILBOX).unwrap_or_default()).into_owned();
        if let Some(at) = mbox.find(token) {
            let message = &mbox[..at];
            let message = &message[message.rfind("\nFrom ").map_or(0, |i| i + 1)..];
            assert!(
                message.contains(&format!("(dma-rs {});", env!("CARGO_PKG_VERSION"))),
                "not delivered by dma-rs:\n{message}"
            );
            return;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let spool = o.sh("ls -la /var/spool/dma; mailq");
            panic!(
                "{token} did not reach {MAILBOX}:\n{mbox}{}",
                show("ls -la /var/spool/dma; mailq", &spool)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    u32::from_ne_bytes(b)
}

/// Queues a message from alice to bob for a queue run (`-odq`): the
/// envelope files in the queue. (A runner still waiting for more mail
/// would take it: it waits for them to end first.)
fn queue_for_later(o: &Overlay) -> String {
    let left = o.settle(Duration::from_secs(30));
    assert!(left.is_empty(), "still running in the overlay: {left:?}");
    o.ok(
        "queue a message",
        &format!("echo later | runuser -u {ALICE} -- /usr/sbin/sendmail -odq {BOB}"),
    );
    let queued = o.ok(
        "list the queue",
        "ls /var/spool/dma | grep '\\.env$' || true",
    );
    assert!(!queued.is_empty(), "nothing queued");
    queued
}

/// When the repository has man pages (man/dma.8), `man dma` and `man
/// sendmail` show ours.
fn check_man_pages(o: &Overlay) {
    let Ok(page) = std::fs::read(repo().join("man/dma.8")) else {
        eprintln!("note: no man/dma.8 in the repository yet; man pages not checked");
        return;
    };
    assert_eq!(
        o.ok("man -w dma", "man -w dma"),
        "/usr/share/man/man8/dma.8.gz\n"
    );
    assert_eq!(
        o.ok("unpack the page", "zcat /usr/share/man/man8/dma.8.gz")
            .as_bytes(),
        page.as_slice()
    );
    assert_eq!(
        o.ok("man -w sendmail", "readlink -f \"$(man -w sendmail)\""),
        "/usr/share/man/man8/dma.8.gz\n"
    );
    let shown = o.ok("man dma", "man -P cat dma 2>/dev/null");
    assert!(shown.contains("dma-rs"), "{shown}");
}

#[test]
fn the_package_replaces_dma_and_goes_away_cleanly() {
    let Some((built, o)) = start("the_package_replaces_dma_and_goes_away_cleanly") else {
        return;
    };
    let dma_conf = o.read(CONF).expect("dma made its dma.conf");
    let dma_conf_stat = stat(&o, CONF);
    let dma_auth = o.read(AUTH).expect("dma ships an auth.conf");

    let out = install_package(&o, built);
    assert!(out.contains("kept the existing /etc/dma/dma.conf"), "{out}");
    assert_eq!(status(&o, "dma-rs"), "install ok installed");
    assert_eq!(status(&o, "dma"), "deinstall ok config-files");

    // dma's configuration is kept and read as it was.
    assert_eq!(o.read(CONF).unwrap(), dma_conf, "dma.conf changed");
    assert_eq!(stat(&o, CONF), dma_conf_stat);
    // So is its auth.conf (passwords), which is dma-rs's conffile now.
    assert!(
        out.contains("kept the existing /etc/dma/auth.conf"),
        "{out}"
    );
    assert_eq!(o.read(AUTH).unwrap(), dma_auth, "auth.conf changed");
    assert_eq!(stat(&o, AUTH), "640 root:mail");
    assert_eq!(
        verify(&o, "dma-rs"),
        "??5?????? c /etc/dma/auth.conf\n??5?????? c /etc/dma/dma.conf\n"
    );

    // Modes, owners, and the system's names for the program.
    assert_eq!(stat(&o, "/usr/sbin/dma"), "2755 root:mail");
    assert_eq!(stat(&o, "/usr/libexec/dma-rs/dma-local"), "4750 root:mail");
    assert_eq!(stat(&o, "/var/spool/dma"), "2770 root:mail");
    for name in [
        "/usr/sbin/sendmail",
        "/usr/lib/sendmail",
        "/usr/bin/mailq",
        "/usr/bin/newaliases",
    ] {
        assert_eq!(
            o.ok("readlink", &format!("readlink -f {name}")),
            "/usr/sbin/dma\n",
            "{name}"
        );
    }

    // One queue run: dma's cron file is now ours, no other runs dma, and
    // the timer is enabled for when systemd runs.
    let cron = String::from_utf8(o.read("/etc/cron.d/dma").unwrap()).unwrap();
    assert!(
        cron.contains("/run/systemd/system") && cron.contains("/usr/sbin/dma -q5m"),
        "{cron}"
    );
    assert_eq!(
        o.ok(
            "cron jobs",
            "grep -l -E 'dma|sendmail' /etc/cron.d/* || true"
        ),
        "/etc/cron.d/dma\n"
    );
    assert!(o.exists("/etc/systemd/system/timers.target.wants/dma-rs-queue.timer"));

    // Mail from one user to another, through mailx.
    mail_alice_to_bob(&o, &format!("mail -s greetings {BOB}"));
    check_man_pages(&o);

    // The cron job runs the queue only where systemd does not.
    let line = cron
        .lines()
        .find(|l| l.starts_with("*/5"))
        .expect("a cron line");
    let job: Vec<&str> = line.split_whitespace().skip(6).collect();
    let job = job.join(" ");
    let queued = queue_for_later(&o);
    o.ok(
        "the cron job, with systemd",
        &format!("mkdir -p /run/systemd/system && {job}; rmdir /run/systemd/system"),
    );
    assert_eq!(
        o.ok(
            "list the queue",
            "ls /var/spool/dma | grep '\\.env$' || true"
        ),
        queued,
        "the cron job ran the queue although systemd runs"
    );
    o.ok("the cron job, without systemd", &job);
    assert_eq!(
        o.ok(
            "list the queue",
            "ls /var/spool/dma | grep '\\.env$' || true"
        ),
        ""
    );
    wait_for_mail(&o, "later");

    // Removed (bsd-mailx depends on an MTA, hence --force-depends): no
    // file of the package is left but its conffiles.
    o.ok("dpkg --remove", "dpkg --remove --force-depends dma-rs");
    for f in &built.files {
        let conffile = built.conffiles.contains(f);
        assert_eq!(o.exists(f), conffile, "{f} after dpkg --remove");
    }
    for d in ["/usr/libexec/dma-rs", "/usr/share/doc/dma-rs"] {
        assert!(!o.exists(d), "{d} after dpkg --remove");
    }

    // Debian's dma installs again, takes its cron file back and keeps its
    // dma.conf.
    o.ok(
        "dpkg -i dma",
        &format!("dpkg -i {}", debian_dma().display()),
    );
    assert_eq!(status(&o, "dma"), "install ok installed");
    assert_eq!(o.ok("readlink", "readlink /usr/sbin/sendmail"), "dma\n");
    assert_eq!(verify(&o, "dma"), "");
    assert_eq!(o.read(CONF).unwrap(), dma_conf, "dma.conf changed");

    // Purged now: dma.conf, which dpkg deletes as our conffile, is put back
    // for dma; nothing of ours is left, and dma's files are untouched.
    let out = o.ok("dpkg --purge", "dpkg --purge dma-rs");
    assert!(out.contains("put back /etc/dma/dma.conf"), "{out}");
    assert_eq!(status(&o, "dma-rs"), "");
    assert_eq!(o.read(CONF).unwrap(), dma_conf, "dma.conf after the purge");
    assert_eq!(o.read(AUTH), Some(dma_auth), "auth.conf after the purge");
    assert_eq!(verify(&o, "dma"), "");
    for gone in [
        "/var/lib/dma-rs",
        "/etc/systemd/system/timers.target.wants/dma-rs-queue.timer",
        "/etc/systemd/system/dma-rs-queue.timer",
        "/var/lib/systemd/deb-systemd-helper-enabled/dma-rs-queue.timer.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/dma-rs-queue.timer",
    ] {
        assert!(!o.exists(gone), "{gone} after dpkg --purge");
    }
    assert!(o.exists("/var/spool/dma"), "dma's queue directory");
}

#[test]
fn a_purge_keeps_a_queue_that_holds_mail() {
    let Some((built, o)) = start("a_purge_keeps_a_queue_that_holds_mail") else {
        return;
    };
    let dma_conf = o.read(CONF).unwrap();
    let dma_auth = o.read(AUTH).unwrap();
    install_package(&o, built);
    let queued = queue_for_later(&o);

    let out = o.sh("dpkg --purge --force-depends dma-rs");
    assert!(out.status.success(), "{}", show("dpkg --purge", &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/var/spool/dma still holds mail"),
        "{}",
        show("dpkg --purge", &out)
    );
    assert_eq!(status(&o, "dma-rs"), "");
    assert_eq!(
        o.ok(
            "list the queue",
            "ls /var/spool/dma | grep '\\.env$' || true"
        ),
        queued
    );
    // dma (removed, not purged) still has its dma.conf and auth.conf.
    assert_eq!(o.read(CONF).unwrap(), dma_conf);
    assert_eq!(o.read(AUTH).unwrap(), dma_auth);
    for f in built.files.iter().filter(|f| *f != CONF && *f != AUTH) {
        assert!(!o.exists(f), "{f} after dpkg --purge");
    }

    // With the queue empty, a purge removes it. (dma is only removed now:
    // plain dpkg -i installs the package.)
    o.ok("empty the queue", "find /var/spool/dma -mindepth 1 -delete");
    // An administrator's modes (dpkg-statoverride) are honoured: for the
    // binaries by dpkg, for the queue by the postinst.
    o.ok(
        "dpkg-statoverride",
        "dpkg-statoverride --add root mail 2750 /usr/sbin/dma && \
         dpkg-statoverride --add root mail 2775 /var/spool/dma",
    );
    o.ok(
        "dpkg -i dma-rs",
        &format!("dpkg -i {}", built.deb.display()),
    );
    assert_eq!(stat(&o, "/usr/sbin/dma"), "2750 root:mail");
    assert_eq!(stat(&o, "/var/spool/dma"), "2775 root:mail");
    assert_eq!(o.read(CONF).unwrap(), dma_conf);
    o.ok("dpkg --purge", "dpkg --purge --force-depends dma-rs");
    assert!(!o.exists("/var/spool/dma"), "the empty queue after a purge");
}

#[test]
fn install_sh_diverts_dmas_files_and_puts_them_back() {
    let Some((built, o)) = start("install_sh_diverts_dmas_files_and_puts_them_back") else {
        return;
    };
    let dma_files = package_files(&o, "dma");
    let install = format!(
        "{} --no-build --bindir-from {} --prefix /usr",
        repo().join("scripts/install.sh").display(),
        built.bins.display()
    );
    let uninstall = format!(
        "{} --uninstall",
        repo().join("scripts/install.sh").display()
    );

    // Without --divert: refused, naming dma's files, and nothing changed.
    let out = o.sh(&install);
    assert_eq!(out.status.code(), Some(1), "{}", show(&install, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/usr/sbin/dma (package dma)")
            && stderr.contains("/usr/sbin/sendmail (package dma)"),
        "{}",
        show(&install, &out)
    );
    assert_eq!(package_files(&o, "dma"), dma_files);
    for untouched in [
        "/var/lib/dma-rs",
        "/usr/libexec/dma-rs",
        "/etc/cron.d/dma-rs",
    ] {
        assert!(!o.exists(untouched), "{untouched}");
    }

    let with_divert = format!("{install} --divert --link-system");
    for round in 1..=2 {
        o.ok("install.sh --divert --link-system", &with_divert);
        assert_eq!(
            o.read("/usr/sbin/dma").unwrap(),
            std::fs::read(built.bins.join("dma")).unwrap()
        );
        assert_eq!(stat(&o, "/usr/sbin/dma"), "2755 root:mail");
        assert_eq!(stat(&o, "/usr/libexec/dma-rs/dma-local"), "4750 root:mail");
        // dma's cron job would run our queue too: disabled.
        assert!(!o.exists("/etc/cron.d/dma"));
        assert!(o.exists("/etc/cron.d/.dma.disabled-by-dma-rs"));

        if round == 1 {
            // Run again (an upgrade): what it installed before is its own.
            let again = o.ok("install.sh again", &with_divert);
            assert!(!again.contains("diverted"), "{again}");
            mail_alice_to_bob(&o, &format!("/usr/sbin/sendmail {BOB}"));
            check_man_pages(&o);
            // A message waits in the queue: no uninstall without --force.
            let queued = queue_for_later(&o);
            let out = o.sh(&uninstall);
            assert_eq!(out.status.code(), Some(1), "{}", show(&uninstall, &out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("the queue holds mail"),
                "{}",
                show(&uninstall, &out)
            );
            assert!(o.exists("/var/lib/dma-rs/install-manifest"));
            assert!(o.exists("/usr/libexec/dma-rs/dma-local"));
            o.ok(
                "install.sh --uninstall --force",
                &format!("{uninstall} --force"),
            );
            assert_eq!(
                o.ok(
                    "list the queue",
                    "ls /var/spool/dma | grep '\\.env$' || true"
                ),
                queued,
                "--force left the mail in the queue"
            );
        } else {
            // The installed dma-rs delivers what waited; then the queue is
            // empty and --uninstall needs no --force.
            o.ok("a queue run", "/usr/sbin/dma -q");
            wait_for_mail(&o, "later");
            o.ok("install.sh --uninstall", &uninstall);
        }

        // dpkg's files back, byte for byte, and nothing of ours left.
        assert_eq!(package_files(&o, "dma"), dma_files, "round {round}");
        assert_eq!(verify(&o, "dma"), "", "round {round}");
        assert_eq!(
            o.ok(
                "local diversions",
                "dpkg-divert --list | grep '^local' || true"
            ),
            "",
            "round {round}"
        );
        for gone in [
            "/var/lib/dma-rs",
            "/usr/libexec/dma-rs",
            "/etc/cron.d/dma-rs",
            "/etc/cron.d/.dma.disabled-by-dma-rs",
            "/lib/systemd/system/dma-rs-queue.timer",
            "/etc/systemd/system/timers.target.wants/dma-rs-queue.timer",
            "/usr/share/man/man5/dma.conf.5.gz",
        ] {
            assert!(!o.exists(gone), "{gone} after --uninstall (round {round})");
        }
    }
}

/// Every path below the overlay's upper directory (what the overlay
/// changed) that is not a directory, with its type.
fn changed_files(o: &Overlay) -> String {
    let out = std::process::Command::new("find")
        .arg(o.upper())
        .args(["!", "-type", "d", "-printf", "%P %y\n"])
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines.join("\n")
}

/// An overlay with the repository and the binaries of this test build
/// (built for the default paths), and where those binaries are.
fn overlay_with_test_bins() -> (Overlay, &'static Path) {
    let bins = Path::new(env!("CARGO_BIN_EXE_dma")).parent().unwrap();
    (Overlay::new(&[repo(), bins]), bins)
}

#[test]
fn install_sh_uninstall_leaves_nothing_behind() {
    if !need_root("install_sh_uninstall_leaves_nothing_behind") {
        return;
    }
    let (o, bins) = overlay_with_test_bins();
    let script = repo().join("scripts/install.sh");
    let before = changed_files(&o);
    let out = o.ok(
        "install.sh",
        &format!(
            "{} --no-build --bindir-from {}",
            script.display(),
            bins.display()
        ),
    );
    assert!(out.contains("installed /usr/local/sbin/dma"), "{out}");
    let manifest = String::from_utf8(o.read("/var/lib/dma-rs/install-manifest").unwrap()).unwrap();
    for record in [
        "file /usr/local/sbin/dma",
        "file /usr/local/libexec/dma-rs/dma-local",
        "link /usr/local/sbin/sendmail",
        "file /etc/cron.d/dma-rs",
    ] {
        assert!(
            manifest.lines().any(|l| l == record),
            "{record}:\n{manifest}"
        );
    }
    assert_ne!(changed_files(&o), before);
    o.ok(
        "install.sh --uninstall",
        &format!("{} --uninstall", script.display()),
    );
    assert_eq!(changed_files(&o), before, "files left behind");
}

#[test]
fn the_package_is_lintian_clean() {
    if !need_root("the_package_is_lintian_clean") {
        return;
    }
    let built = built();
    // Errors and warnings fail; each one that stays is overridden, with
    // the reason, in contrib/debian/lintian-overrides.
    let mut lintian = std::process::Command::new("lintian");
    lintian.args(["--info", "--fail-on", "error,warning"]);
    // Until the repository has its man pages (man/), the package has none.
    if !repo().join("man/dma.8").exists() {
        eprintln!("note: no man/dma.8 in the repository yet; lintian's no-manual-page not checked");
        lintian.args(["--suppress-tags", "no-manual-page"]);
    }
    let out = lintian
        .arg(&built.deb)
        .output()
        .expect("lintian not found: run scripts/test-setup.sh as root");
    assert!(out.status.success(), "{}", show("lintian", &out));
}

/// `--no-chown` is for an unprivileged staging install; installed into the
/// system it would leave /usr/local/sbin/dma set-group-id root (2755
/// root:root: every user runs it with group root) and the queue root:root.
/// It must be refused without --destdir.
#[test]
fn install_sh_refuses_no_chown_into_the_system() {
    if !need_root("install_sh_refuses_no_chown_into_the_system") {
        return;
    }
    let (o, bins) = overlay_with_test_bins();
    let install = format!(
        "{} --no-build --no-chown --bindir-from {}",
        repo().join("scripts/install.sh").display(),
        bins.display()
    );
    let out = o.sh(&install);
    assert_eq!(out.status.code(), Some(1), "{}", show(&install, &out));
    assert!(!o.exists("/usr/local/sbin/dma"), "{}", show(&install, &out));
}

/// Debian's dma, removed in favour of dma-rs, keeps its postrm, whose purge
/// deletes /etc/dma and /var/spool/dma whole. An administrator who installs
/// dma-rs with `apt-get install --purge` (or later cleans up removed
/// packages: `apt purge dma`, `apt purge ~c`) must still have a working
/// dma-rs: its conffile and its queue, with the mail queued in it.
/// (Found by the issue 12 attack session, 2026-12-02; the preinst guards
/// dma's postrm.)
#[test]
fn purging_the_replaced_dma_keeps_dma_rs_and_its_queue() {
    let Some((built, o)) = start("purging_the_replaced_dma_keeps_dma_rs_and_its_queue") else {
        return;
    };
    // The smarthost's password, set up while dma was the MTA.
    o.ok(
        "a password in auth.conf",
        "echo 'alice|smarthost.example:secret' >> /etc/dma/auth.conf",
    );
    let auth = o.read(AUTH).unwrap();
    let auth_stat = stat(&o, AUTH);
    install_package(&o, built);
    let queued = queue_for_later(&o);
    o.ok("apt-get purge dma", "apt-get purge -y -q dma");
    assert!(
        o.exists("/etc/cron.d/dma"),
        "/etc/cron.d/dma after apt-get purge dma"
    );
    assert_eq!(o.read(AUTH), Some(auth), "{AUTH} after apt-get purge dma");
    assert_eq!(stat(&o, AUTH), auth_stat);
    assert_eq!(
        o.ok(
            "list the queue",
            "ls /var/spool/dma 2>/dev/null | grep '\\.env$' || true"
        ),
        queued,
        "the queued mail after apt-get purge dma"
    );
    assert!(o.exists(CONF), "{CONF} after apt-get purge dma");
    // dma's dma.conf, kept, is a changed conffile of dma-rs; nothing else.
    assert_eq!(
        verify(&o, "dma-rs"),
        "??5?????? c /etc/dma/auth.conf\n??5?????? c /etc/dma/dma.conf\n"
    );
    mail_alice_to_bob(&o, &format!("/usr/sbin/sendmail -oi {BOB}"));

    // The same in one step: dma purged while dma-rs replaces it.
    let o = overlay_with_dma();
    o.ok(
        "apt-get install --purge dma-rs",
        &format!("apt-get install -y -q --purge {}", built.deb.display()),
    );
    let purged = status(&o, "dma");
    assert!(
        ["", "unknown ok not-installed"].contains(&purged.as_str()),
        "dma not purged: {purged}"
    );
    assert!(o.exists(CONF), "{CONF} after apt-get install --purge");
    assert_eq!(stat(&o, "/var/spool/dma"), "2770 root:mail");
    mail_alice_to_bob(&o, &format!("/usr/sbin/sendmail -oi {BOB}"));
}

// ---------------------------------------------------------------------
// Attack session (attack12-guard): the dma postrm guard and auth.conf as
// a conffile. Each test asserts the safe outcome.
// ---------------------------------------------------------------------

/// The administrator's configuration as dma had it: a smarthost in
/// dma.conf, a password in auth.conf. Their bytes.
fn admin_config(o: &Overlay) -> (Vec<u8>, Vec<u8>) {
    o.ok(
        "the administrator's configuration",
        "echo 'SMARTHOST smarthost.example' >> /etc/dma/dma.conf && \
         echo 'alice|smarthost.example:s3cret-pw' >> /etc/dma/auth.conf",
    );
    (o.read(CONF).unwrap(), o.read(AUTH).unwrap())
}

/// Lines of the guard in dma's postrm (0 when absent).
fn guard_count(o: &Overlay) -> usize {
    o.ok(
        "count the guard",
        "grep -c '^# dma-rs guard 1:' /var/lib/dpkg/info/dma.postrm || true",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// No *.dma-rs-kept file is left in /etc/dma.
fn no_kept_files(o: &Overlay, when: &str) {
    assert_eq!(
        o.ok("kept files", "ls -a /etc/dma | grep dma-rs-kept || true"),
        "",
        "*.dma-rs-kept left in /etc/dma {when}"
    );
}

/// `apt-get install --purge dma-rs` in one step: the administrator's
/// dma.conf (smarthost) and auth.conf (passwords) must survive, as they do
/// with a plain install followed by `apt-get purge dma`.
#[test]
fn attack12_install_purge_in_one_step_keeps_the_configuration() {
    let Some((built, o)) = start("attack12_install_purge_in_one_step_keeps_the_configuration")
    else {
        return;
    };
    let (conf, auth) = admin_config(&o);
    o.ok(
        "apt-get install --purge dma-rs",
        &format!("apt-get install -y -q --purge {}", built.deb.display()),
    );
    assert_eq!(status(&o, "dma-rs"), "install ok installed");
    assert_eq!(
        String::from_utf8_lossy(&o.read(AUTH).unwrap_or_default()),
        String::from_utf8_lossy(&auth),
        "auth.conf (passwords) after apt-get install --purge dma-rs"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.read(CONF).unwrap_or_default()),
        String::from_utf8_lossy(&conf),
        "dma.conf after apt-get install --purge dma-rs"
    );
}

/// The unpack fails after the preinst moved the administrator's files
/// aside (a directory where the package has a file): postrm abort-install
/// puts them back.
#[test]
fn attack12_failed_unpack_gives_the_configuration_back() {
    let Some((built, o)) = start("attack12_failed_unpack_gives_the_configuration_back") else {
        return;
    };
    let (conf, auth) = admin_config(&o);
    let auth_stat = stat(&o, AUTH);
    // Another package owns a file that dma-rs ships: dpkg refuses to
    // overwrite it, after the preinst ran.
    o.ok(
        "a package in the way",
        "d=$(mktemp -d) && mkdir -p $d/DEBIAN $d/usr/libexec/dma-rs && \
         echo x > $d/usr/libexec/dma-rs/dma-local && \
         printf 'Package: in-the-way\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: t\\n' > $d/DEBIAN/control && \
         dpkg-deb -b $d /tmp/in-the-way.deb >/dev/null && dpkg -i /tmp/in-the-way.deb",
    );
    let out = o.sh(&format!("apt-get install -y -q {}", built.deb.display()));
    assert!(!out.status.success(), "{}", show("install", &out));
    assert_ne!(status(&o, "dma-rs"), "install ok installed");
    assert_eq!(o.read(AUTH), Some(auth), "auth.conf after a failed unpack");
    assert_eq!(stat(&o, AUTH), auth_stat);
    assert_eq!(o.read(CONF), Some(conf), "dma.conf after a failed unpack");
    no_kept_files(&o, "after a failed unpack");
}

/// The preinst itself fails after moving the files aside (its guard can
/// not write the new postrm: disk full, say; here a directory in the way).
#[test]
fn attack12_failed_preinst_gives_the_configuration_back() {
    let Some((built, o)) = start("attack12_failed_preinst_gives_the_configuration_back") else {
        return;
    };
    let (conf, auth) = admin_config(&o);
    o.ok(
        "in the guard's way",
        "mkdir /var/lib/dpkg/info/dma.postrm.dma-rs-new",
    );
    let out = o.sh(&format!("apt-get install -y -q {}", built.deb.display()));
    assert!(!out.status.success(), "{}", show("install", &out));
    assert_eq!(o.read(AUTH), Some(auth), "auth.conf after a failed preinst");
    assert_eq!(o.read(CONF), Some(conf), "dma.conf after a failed preinst");
    no_kept_files(&o, "after a failed preinst");
}

/// Unpacked only (dpkg --unpack, never configured): the administrator's
/// passwords must not be readable by an ordinary user meanwhile, and a
/// purge of the unconfigured dma-rs must leave them for dma (rc), which
/// still has auth.conf as its conffile.
#[test]
fn attack12_unpacked_then_purged_gives_auth_conf_back() {
    let Some((built, o)) = start("attack12_unpacked_then_purged_gives_auth_conf_back") else {
        return;
    };
    let (_conf, auth) = admin_config(&o);
    o.ok("remove dma", "dpkg --remove --force-depends dma");
    o.ok(
        "dpkg --unpack dma-rs",
        &format!("dpkg --unpack {}", built.deb.display()),
    );
    let leak = o.sh(&format!(
        "for f in /etc/dma/*; do runuser -u {ALICE} -- cat \"$f\" 2>/dev/null; done | grep s3cret-pw"
    ));
    assert!(
        !leak.status.success(),
        "an ordinary user read the password while dma-rs was unpacked: {}",
        show("read", &leak)
    );
    o.ok("dpkg --purge dma-rs", "dpkg --purge --force-depends dma-rs");
    assert_eq!(
        String::from_utf8_lossy(&o.read(AUTH).unwrap_or_default()),
        String::from_utf8_lossy(&auth),
        "auth.conf after purging an unconfigured dma-rs (dma is rc); /etc/dma:\n{}",
        o.ok("ls", "ls -la /etc/dma 2>&1 || true")
    );
    no_kept_files(&o, "after purging an unconfigured dma-rs");
}

/// dma-rs installed over itself (dpkg -i twice, apt-get --reinstall): the
/// guard is in dma's postrm once, the administrator's auth.conf (changed
/// since) is not touched, and no file is moved aside.
#[test]
fn attack12_reinstall_over_itself_is_idempotent() {
    let Some((built, o)) = start("attack12_reinstall_over_itself_is_idempotent") else {
        return;
    };
    admin_config(&o);
    install_package(&o, built);
    assert_eq!(guard_count(&o), 1);
    o.ok(
        "a second password",
        "echo 'bob|smarthost.example:other-pw' >> /etc/dma/auth.conf",
    );
    let auth = o.read(AUTH).unwrap();
    let conf = o.read(CONF).unwrap();
    let out = o.ok("dpkg -i again", &format!("dpkg -i {}", built.deb.display()));
    assert!(!out.contains("kept the existing"), "{out}");
    o.ok(
        "apt-get --reinstall",
        &format!("apt-get install -y -q --reinstall {}", built.deb.display()),
    );
    assert_eq!(guard_count(&o), 1, "guard inserted twice");
    assert_eq!(o.read(AUTH), Some(auth));
    assert_eq!(o.read(CONF), Some(conf));
    assert_eq!(stat(&o, AUTH), "640 root:mail");
    no_kept_files(&o, "after a reinstall");
    // The postrm still runs as a shell script.
    o.ok("sh -n", "sh -n /var/lib/dpkg/info/dma.postrm");
}

/// dma-rs removed (rc) with mail queued, then dma purged: dma-rs is still
/// known to dpkg, so nothing of it goes; installed again, it has its
/// configuration and delivers the queued mail.
#[test]
fn attack12_purge_dma_while_dma_rs_is_rc() {
    let Some((built, o)) = start("attack12_purge_dma_while_dma_rs_is_rc") else {
        return;
    };
    let (conf, auth) = admin_config(&o);
    install_package(&o, built);
    let queued = queue_for_later(&o);
    o.ok("remove dma-rs", "dpkg --remove --force-depends dma-rs");
    assert_eq!(status(&o, "dma-rs"), "deinstall ok config-files");
    o.ok("purge dma", "dpkg --purge --force-depends dma");
    assert_eq!(o.read(AUTH), Some(auth.clone()), "auth.conf");
    assert_eq!(o.read(CONF), Some(conf.clone()), "dma.conf");
    assert_eq!(
        o.ok(
            "queue",
            "ls /var/spool/dma 2>/dev/null | grep '\\.env$' || true"
        ),
        queued
    );
    o.ok(
        "dpkg -i dma-rs",
        &format!("dpkg -i {}", built.deb.display()),
    );
    assert_eq!(o.read(AUTH), Some(auth));
    assert_eq!(o.read(CONF), Some(conf));
    no_kept_files(&o, "after reinstalling dma-rs");
}

/// Both purged in one command, dma-rs first (`dpkg --purge dma-rs dma`,
/// as `apt purge ~c` may order it): dma-rs's purge says it leaves the queue
/// because it holds mail; that mail must not then go with dma's purge.
#[test]
fn attack12_purging_both_keeps_queued_mail() {
    let Some((built, o)) = start("attack12_purging_both_keeps_queued_mail") else {
        return;
    };
    install_package(&o, built);
    let queued = queue_for_later(&o);
    let out = o.ok("purge both", "dpkg --purge --force-depends dma-rs dma 2>&1");
    assert_eq!(
        o.ok(
            "queue",
            "ls /var/spool/dma 2>/dev/null | grep '\\.env$' || true"
        ),
        queued,
        "queued mail after dpkg --purge dma-rs dma: {out}"
    );
}

/// dma-rs purged first, dma purged later: the guard no longer holds, and
/// dma's purge is dma's own again (/etc/dma gone, debconf purged).
#[test]
fn attack12_purge_dma_after_dma_rs_is_dmas_own() {
    let Some((built, o)) = start("attack12_purge_dma_after_dma_rs_is_dmas_own") else {
        return;
    };
    install_package(&o, built);
    o.ok("purge dma-rs", "dpkg --purge --force-depends dma-rs");
    assert_eq!(status(&o, "dma"), "deinstall ok config-files");
    o.ok("purge dma", "dpkg --purge --force-depends dma");
    assert!(!o.exists("/etc/dma"), "/etc/dma after dma's purge");
    assert!(
        !o.exists("/var/spool/dma"),
        "/var/spool/dma after dma's purge"
    );
    let answer = o.ok(
        "debconf",
        "echo 'GET dma/mailname' | debconf-communicate dma 2>&1 || true",
    );
    assert!(
        !answer.starts_with("0 "),
        "dma's debconf answers after its purge: {answer}"
    );
}
