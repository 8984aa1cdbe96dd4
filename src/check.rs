//! `dma --check`: the configuration as it takes effect, then what is legal
//! but wrong (as `postconf -n` and `postfix check` do between them).
//!
//! The settings that differ from the defaults are printed as `KEY value`,
//! in the order of the file (the last of a key repeated). Then one
//! `warning:` line for each problem found: TLS keys that do nothing, an
//! auth file others may read or the runners can not, a smarthost that does
//! not resolve, a queue or mailbox directory with owners or modes that let
//! users in or keep dma out, a `dma-local` that is not set-user-id root,
//! errors in the aliases file, a mail name that is no domain, a DKIM key
//! that the runners would refuse or could not read. For each DKIM key,
//! the DNS TXT record that publishes it. Exit 0 with no warning, 78
//! (EX_CONFIG) with any.

use std::fmt::Write as _;
use std::net::ToSocketAddrs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::{AuthFile, Config, conf};

/// What `--check` found: the report, and the number of warnings.
pub struct Report {
    /// The text to print.
    pub text: String,
    /// Problems found.
    pub warnings: usize,
}

/// The settings of `path` that differ from the defaults, as `KEY value`.
fn settings(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once(char::is_whitespace) {
            Some((n, v)) => (n, v.trim()),
            None => (line, ""),
        };
        let Some(key) = conf::key(name) else {
            continue;
        };
        // The last occurrence counts: an earlier one goes either way
        // (unless every line counts).
        if !key.repeatable {
            out.retain(|(n, _)| n != name);
        }
        if key.value.is_none() || key.default != Some(value) {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out.into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n} {v}") })
        .collect()
}

/// Owner, group and mode of `m`, as `2770 root:mail`.
fn shown(m: &std::fs::Metadata) -> String {
    let user = nix::unistd::User::from_uid(m.uid().into())
        .ok()
        .flatten()
        .map_or(m.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(m.gid().into())
        .ok()
        .flatten()
        .map_or(m.gid().to_string(), |g| g.name);
    format!("{:o} {user}:{group}", m.mode() & 0o7777)
}

fn mail_user() -> Option<u32> {
    nix::unistd::User::from_name("mail")
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn mail_gid() -> Option<u32> {
    nix::unistd::Group::from_name("mail")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Whether DANE can work as configured (MX delivery, TLS_POLICY with
/// dane): it needs a resolver whose AD bit may be believed. A note, not a
/// warning: most hosts have no validating resolver, and MTA-STS and the
/// TLS keys still apply.
fn dane_note(config: &Config) -> Option<String> {
    if config.smarthost.is_some() || !config.tls_policy.dane {
        return None;
    }
    let r = match config.nameserver {
        Some(ns) => crate::smtp::dns::Resolver::with_server(ns),
        None => crate::smtp::dns::Resolver::from_system(),
    };
    let servers: Vec<String> = r.servers.iter().map(|s| s.ip().to_string()).collect();
    let servers = servers.join(", ");
    Some(if r.trust_ad {
        format!(
            "# DANE: the resolver ({servers}) is believed when it says an answer is DNSSEC-validated"
        )
    } else {
        format!(
            "# DANE: not in use: the resolver ({servers}) is not on this host and resolv.conf has no `options trust-ad` (run a validating resolver such as unbound on 127.0.0.1)"
        )
    })
}

/// Checks `config` (read from `path`). `private`: a `-C` configuration,
/// whose spool and helper are not the system's (their modes are not
/// checked against an installation's). `helper`: the `dma-local` in use.
pub fn check(path: &Path, config: &Config, private: bool, helper: &Path) -> Report {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# {}: settings that differ from the defaults",
        path.display()
    );
    for s in settings(path) {
        let _ = writeln!(text, "{s}");
    }
    let mut warn: Vec<String> = Vec::new();
    let mut w = |s: String| warn.push(s);

    if config.starttls && !config.securetransfer {
        w("STARTTLS does nothing without SECURETRANSFER: mail goes out unencrypted".into());
    }
    if config.opportunistic_tls && !(config.starttls && config.securetransfer) {
        w("OPPORTUNISTIC_TLS does nothing without SECURETRANSFER and STARTTLS".into());
    }
    if let Some(auth) = &config.authpath {
        match std::fs::metadata(auth) {
            Err(e) => w(format!("AUTHPATH {}: {e}", auth.display())),
            Ok(m) => {
                if m.mode() & 0o004 != 0 {
                    w(format!(
                        "AUTHPATH {} is readable by every user ({}): it holds passwords; make it 640 root:mail",
                        auth.display(),
                        shown(&m)
                    ));
                }
                if let Err(e) = AuthFile::load(auth) {
                    w(format!(
                        "AUTHPATH {}: {e} (dma reads it as group mail)",
                        auth.display()
                    ));
                }
            }
        }
    }
    for (host, port) in config.smarthosts() {
        if let Err(e) = (host.as_str(), port).to_socket_addrs() {
            w(format!("SMARTHOST {host} does not resolve: {e}"));
        }
    }
    let mail = mail_gid();
    match std::fs::metadata(&config.spooldir) {
        Err(e) => w(format!("SPOOLDIR {}: {e}", config.spooldir.display())),
        Ok(m) if !m.is_dir() => w(format!(
            "SPOOLDIR {} is not a directory",
            config.spooldir.display()
        )),
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            let open = mode & 0o002 != 0 && mode & 0o1000 == 0;
            let system_ok = Some(m.gid()) == mail && mode & 0o070 == 0o070 && mode & 0o007 == 0;
            if open || (!private && !system_ok) {
                w(format!(
                    "SPOOLDIR {} is {}; it should be 2770 root:mail (no access for other users)",
                    config.spooldir.display(),
                    shown(&m)
                ));
            }
        }
    }
    match std::fs::metadata(&config.mailspool) {
        Err(e) => w(format!("MAILSPOOL {}: {e}", config.mailspool.display())),
        Ok(m) if !m.is_dir() => w(format!(
            "MAILSPOOL {} is not a directory",
            config.mailspool.display()
        )),
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                w(format!(
                    "MAILSPOOL {} is {}: any user may remove or replace another's mailbox; make it 2775 root:mail (or 1777)",
                    config.mailspool.display(),
                    shown(&m)
                ));
            }
        }
    }
    if !private {
        match std::fs::metadata(helper) {
            Err(e) => w(format!("{}: {e}", helper.display())),
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                if m.uid() != 0 || Some(m.gid()) != mail || mode & 0o4000 == 0 || mode & 0o007 != 0
                {
                    w(format!(
                        "{} is {}; it must be 4750 root:mail (set-user-id root, for group mail only) to deliver to mailboxes and run the queue",
                        helper.display(),
                        shown(&m)
                    ));
                }
            }
        }
    }
    if let Some(log) = &config.logfile
        && !log.exists()
        && !crate::logging::safe_parent(log)
    {
        w(format!(
            "LOGFILE {}: its directory is writable by every user or reached through a symbolic link, so no log file is made there",
            log.display()
        ));
    }
    if let Err(e) = crate::config::aliases::Aliases::load(&config.aliases) {
        w(format!("ALIASES: {e}"));
    }
    let name = config.hostname();
    if !name.contains('.') || name.ends_with('.') {
        w(format!(
            "the mail name `{name}' is not a fully qualified domain name: other hosts can not reply to it (set MAILNAME)"
        ));
    }

    // A private configuration's runner is its user; the system's is mail.
    let runner = if private {
        nix::unistd::geteuid().as_raw()
    } else {
        mail_user().unwrap_or(0)
    };
    let (dkim_notes, dkim_warnings) = crate::dkim::check(config, runner);
    warn.extend(dkim_warnings);

    let _ = writeln!(text, "# mail name: {name}");
    if let Some(line) = dane_note(config) {
        let _ = writeln!(text, "{line}");
    }
    for line in &dkim_notes {
        let _ = writeln!(text, "{line}");
    }
    for x in &warn {
        let _ = writeln!(text, "warning: {x}");
    }
    let _ = match warn.len() {
        0 => writeln!(text, "# no warnings"),
        1 => writeln!(text, "# 1 warning"),
        n => writeln!(text, "# {n} warnings"),
    };
    Report {
        text,
        warnings: warn.len(),
    }
}
