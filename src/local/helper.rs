//! `dma-local`: the privileged step of local delivery, kept small.
//!
//! `dma-local mbox --user NAME --sender ADDR [--config FILE] < message`
//!
//! Run as root (set-user-id, or by root), it creates the dotlock and, if
//! missing, the mailbox in MAILSPOOL, then forks a child that becomes the
//! recipient (groups, gid, uid) before it opens the mailbox or reads a byte of
//! the message from stdin. Run by anyone else, it can only deliver to the
//! caller's own mailbox. When set-id, `--config` is ignored: MAILSPOOL comes
//! from the system configuration only, so a caller cannot point the root
//! steps at another directory.
//!
//! The result is the exit code (0 delivered, 67 no such user, 75 try again)
//! and, on failure, one line `<enhanced status> <text>` on stderr.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{self, User};

use super::mbox;
use crate::config::{Config, conf};
use crate::exit::{EX_NOUSER, EX_OK, EX_TEMPFAIL, EX_USAGE};
use crate::privsep::{self, Forked};

/// The helper's exit code and its one-line reason.
struct Failure(i32, String);

fn temp(msg: impl Into<String>) -> Failure {
    Failure(EX_TEMPFAIL, msg.into())
}

/// Whether `name` is safe to use as a file name in MAILSPOOL.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && !name.contains('/')
        && !name.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The program's entry point; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    crate::logging::init("dma-local", false);
    privsep::ignore_sigxfsz();
    match run(&args) {
        Ok(()) => EX_OK,
        Err(Failure(code, msg)) => {
            let _ = writeln!(std::io::stderr(), "{msg}");
            code
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let usage = || {
        Failure(
            EX_USAGE,
            "4.3.5 usage: dma-local mbox --user NAME --sender ADDR [--config FILE]".into(),
        )
    };
    let mut it = args.iter();
    if it.next().map(String::as_str) != Some("mbox") {
        return Err(usage());
    }
    let (mut user, mut sender, mut config) = (None, None, None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--user" => user = Some(value.clone()),
            "--sender" => sender = Some(value.clone()),
            "--config" => config = Some(PathBuf::from(value)),
            _ => return Err(usage()),
        }
    }
    let (Some(name), Some(sender)) = (user, sender) else {
        return Err(usage());
    };
    if !valid_user_name(&name) {
        return Err(Failure(
            EX_NOUSER,
            format!("5.1.3 invalid user name `{name}'"),
        ));
    }
    if sender.bytes().any(|b| b < 0x20 || b == 0x7f) || sender.contains(' ') {
        return Err(usage());
    }
    // Set-id: trust nothing the caller chose.
    let config_path = match (privsep::is_setid(), config) {
        (false, Some(p)) => p,
        _ => PathBuf::from(conf::DEFAULT_PATH),
    };
    if privsep::is_setid() {
        // Nothing below reads the environment; nothing should inherit it.
        privsep::clear_env(&[]);
    }
    let config = Config::load(&config_path).map_err(|e| temp(format!("4.3.5 {e}")))?;
    let user = User::from_name(&name)
        .map_err(|e| temp(format!("4.3.0 user lookup failed: {e}")))?
        .ok_or_else(|| Failure(EX_NOUSER, format!("5.1.1 {name}: no such user")))?;
    deliver(&config.mailspool, &user, &sender)
}

fn deliver(dir: &Path, user: &User, sender: &str) -> Result<(), Failure> {
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let path = dir.join(&user.name);
    if unistd::geteuid().is_root() {
        let lock = mbox::dotlock(dir, &user.name, mbox::LOCK_TIMEOUT)
            .map_err(|e| temp(format!("4.2.0 {e}")))?;
        mbox::create(dir, &user.name, uid, gid)
            .map_err(|e| temp(format!("4.2.0 can not create {}: {e}", path.display())))?;
        let status = match privsep::fork().map_err(|e| temp(format!("4.3.0 fork: {e}")))? {
            Forked::Child => {
                let code = match privsep::become_user(user) {
                    Ok(()) => match write_as_user(&path, uid, sender) {
                        Ok(()) => EX_OK,
                        Err(Failure(code, msg)) => {
                            let _ = writeln!(std::io::stderr(), "{msg}");
                            code
                        }
                    },
                    Err(e) => {
                        let _ =
                            writeln!(std::io::stderr(), "4.3.0 can not become {}: {e}", user.name);
                        EX_TEMPFAIL
                    }
                };
                std::process::exit(code);
            }
            Forked::Parent(pid) => waitpid(pid, None),
        };
        drop(lock);
        return match status {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            // The child has printed its reason already.
            Ok(WaitStatus::Exited(_, code)) => Err(Failure(code, String::new())),
            other => Err(temp(format!("4.3.0 delivery process ended: {other:?}"))),
        };
    }
    if unistd::getuid() != user.uid {
        return Err(temp(format!(
            "4.3.0 not privileged to deliver to {} (is dma-local installed set-user-id root?)",
            user.name
        )));
    }
    // Delivering to ourselves: the dotlock is best effort, since MAILSPOOL
    // may not be writable by users (Debian's is 2775 root:mail).
    let _lock = match mbox::dotlock(dir, &user.name, mbox::LOCK_TIMEOUT) {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => return Err(temp(format!("4.2.0 {e}"))),
    };
    mbox::create(dir, &user.name, uid, gid)
        .map_err(|e| temp(format!("4.2.0 can not create {}: {e}", path.display())))?;
    write_as_user(&path, uid, sender)
}

fn write_as_user(path: &Path, uid: u32, sender: &str) -> Result<(), Failure> {
    let mut f = mbox::open(path, uid).map_err(|e| temp(format!("4.2.0 {e}")))?;
    mbox::fcntl_lock(&f, mbox::LOCK_TIMEOUT)
        .map_err(|e| temp(format!("4.2.0 can not lock {}: {e}", path.display())))?;
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    mbox::append(&mut f, sender, &mut input).map_err(|e| {
        let code = match e.raw_os_error() {
            Some(nix::libc::EDQUOT) => "4.2.2",
            Some(nix::libc::ENOSPC) => "4.3.1",
            Some(nix::libc::EFBIG) => "4.2.2",
            _ => "4.2.0",
        };
        temp(format!("{code} write to {} failed: {e}", path.display()))
    })?;
    Ok(())
}
