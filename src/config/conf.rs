//! `dma.conf`, parsed exactly as dma's `conf.c:parse_conf` does.
//!
//! A `#` anywhere starts a comment. The key runs to the first space or tab and
//! the rest of the line is the value, verbatim. A line that starts with a blank
//! has an empty key and is skipped, as in dma. Flag keys must have no value,
//! value keys must have one, unknown keys are errors: `syntax error in
//! FILE:N`, exit 78. The last occurrence of a key wins (every `DKIM_KEY`
//! line counts: one per signature). Beyond dma, values of
//! keys that belong to remote delivery are validated here (a port is a number,
//! a fingerprint is 64 hex digits), and a few keys of our own exist (see the
//! README's configuration reference).

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::duration;
use super::size::{self, Size};

/// The default configuration file, fixed at build time (`DMA_CONF_PATH`).
pub const DEFAULT_PATH: &str = match option_env!("DMA_CONF_PATH") {
    Some(p) => p,
    None => "/etc/dma/dma.conf",
};

/// `MESSAGE_SIZE_LIMIT`'s default: 50 MiB, as Postfix's 10 MB would refuse
/// mail that dma has always taken, and more is rarely deliverable anyway.
pub const DEFAULT_MESSAGE_SIZE_LIMIT: u64 = 50 << 20;
/// `SPOOL_MIN_FREE`'s default: 100 MiB, enough for root and bounces to go
/// on once users are refused; a share would reserve gigabytes on big disks.
pub const DEFAULT_SPOOL_MIN_FREE: Size = Size::Bytes(100 << 20);

/// A configuration error: the file, the line and what is wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("syntax error in {path}:{line}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct ConfError {
    /// The file.
    pub path: String,
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong, beyond dma's plain "syntax error".
    pub reason: Option<String>,
}

/// `MASQUERADE [user@][host]`: what replaces the sender's user and host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Masquerade {
    /// Replaces the local part when set.
    pub user: Option<String>,
    /// Replaces the domain when set.
    pub host: Option<String>,
}

/// `TLS_POLICY`: which policies published by a recipient domain are
/// honoured for MX delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// DANE (RFC 7672): TLSA records, when the resolver validates.
    pub dane: bool,
    /// MTA-STS (RFC 8461): the domain's HTTPS-published policy.
    pub mta_sts: bool,
}

impl Default for TlsPolicy {
    fn default() -> TlsPolicy {
        TlsPolicy {
            dane: true,
            mta_sts: true,
        }
    }
}

impl TlsPolicy {
    /// `dane`, `mta-sts`, both (separated by spaces or commas, in any
    /// order), or `none`.
    pub fn parse(v: &str) -> Result<TlsPolicy, String> {
        let mut p = TlsPolicy {
            dane: false,
            mta_sts: false,
        };
        let words: Vec<String> = v
            .split([' ', '\t', ','])
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        for w in &words {
            match w.as_str() {
                "dane" => p.dane = true,
                "mta-sts" => p.mta_sts = true,
                "none" if words.len() == 1 => {}
                _ => {
                    return Err(format!(
                        "TLS_POLICY needs dane, mta-sts, both, or none, not `{}'",
                        v.trim()
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Everything `dma.conf` can say, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// `SMARTHOST`: all remote mail goes there.
    pub smarthost: Option<String>,
    /// `PORT` (default 25), used with SMARTHOST only.
    pub port: u16,
    /// `ALIASES` (default `/etc/aliases`).
    pub aliases: PathBuf,
    /// `SPOOLDIR` (default `/var/spool/dma`).
    pub spooldir: PathBuf,
    /// `AUTHPATH`: the auth.conf file, if any.
    pub authpath: Option<PathBuf>,
    /// `CERTFILE`: client certificate and key (PEM).
    pub certfile: Option<PathBuf>,
    /// `MAILNAME`: a name, or a file (starting with `/`) whose first line is it.
    pub mailname: Option<String>,
    /// `MASQUERADE`.
    pub masquerade: Option<Masquerade>,
    /// `SECURETRANSFER`.
    pub securetransfer: bool,
    /// `STARTTLS`.
    pub starttls: bool,
    /// `OPPORTUNISTIC_TLS`.
    pub opportunistic_tls: bool,
    /// `VERIFYCERT`.
    pub verifycert: bool,
    /// `FINGERPRINT`: SHA-256 of the server's leaf certificate.
    pub fingerprint: Option<[u8; 32]>,
    /// `INSECURE`: allow AUTH without TLS.
    pub insecure: bool,
    /// `DEFER`: queue only; deliver on `-q`.
    pub defer: bool,
    /// `FULLBOUNCE`: bounces carry the whole message.
    pub fullbounce: bool,
    /// `NULLCLIENT`: everything goes to the smarthost.
    pub nullclient: bool,
    /// `MAILSPOOL` (ours, default `/var/mail`): where mbox files live.
    pub mailspool: PathBuf,
    /// `QUEUE_LIFETIME` (ours, default 5d): a recipient still deferred after
    /// this long is bounced.
    pub queue_lifetime: Duration,
    /// `RETRY_MIN` (ours, default 5m): the first retry delay.
    pub retry_min: Duration,
    /// `RETRY_MAX` (ours, default 4h): the longest retry delay.
    pub retry_max: Duration,
    /// `ALIAS_USER` (ours, default `nobody`): who runs commands and writes
    /// files named in the aliases file. Never root.
    pub alias_user: String,
    /// `PIPE_TIMEOUT` (ours, default 10m): how long a `|command` may run
    /// before its process group is killed (and the delivery deferred).
    pub pipe_timeout: Duration,
    /// `ROOT_FORWARD_PROGRAMS` (ours, off): let root's `.forward` run
    /// commands and write files; by default they go to root's mailbox.
    pub root_forward_programs: bool,
    /// `CAFILE` (ours): trust these CA certificates (PEM) instead of the
    /// system's.
    pub cafile: Option<PathBuf>,
    /// `TLS_NO_VERIFY` (ours, off): do not verify server certificates.
    /// Insecure; logged at every use.
    pub tls_no_verify: bool,
    /// `TLS_POLICY` (ours, default `dane mta-sts`): which published policies
    /// of a recipient domain make TLS mandatory and authenticated when
    /// delivering straight to its MX hosts.
    pub tls_policy: TlsPolicy,
    /// `NAMESERVER addr[:port]` (ours): the DNS server for MX lookups
    /// instead of /etc/resolv.conf's.
    pub nameserver: Option<std::net::SocketAddr>,
    /// `SMTP_TIMEOUT` (ours): every SMTP command timeout, each an overall
    /// deadline (see `smtp::session::Timeouts`); unset means the RFC 5321
    /// values (5 min per command, 10 min for the final dot).
    pub smtp_timeout: Option<Duration>,
    /// `CONNECT_TIMEOUT` (ours, default 30s).
    pub connect_timeout: Duration,
    /// `QUEUE_WORKERS n` (ours, default 8): how many processes a queue run
    /// uses, each working on its own next hops.
    pub queue_workers: usize,
    /// `HOP_SESSIONS n` (ours, default 8): at most this many connections a
    /// queue run opens to one next hop (a smarthost or a domain's MX).
    pub hop_sessions: usize,
    /// `MESSAGE_SIZE_LIMIT` (ours, default 50M): the largest message
    /// accepted from a submitter, as spooled; 0 means no limit.
    pub message_size_limit: u64,
    /// `SPOOL_MIN_FREE` (ours, default 100M): below this much free space in
    /// SPOOLDIR (bytes or a share of the file system) only root's
    /// submissions and bounces are queued; 0 turns the check off.
    pub spool_min_free: Size,
    /// `LOGFILE` (ours): log lines also go to this file.
    pub logfile: Option<PathBuf>,
    /// `LOG_SYSLOG` (ours, default on): `off` logs to LOGFILE only.
    pub log_syslog: bool,
    /// `DKIM_KEY path [selector]` (ours, repeatable): the keys that sign
    /// outgoing mail, each with its selector (its own, else
    /// `DKIM_SELECTOR`). Only paths here: the file is read by the runner
    /// when it signs (see [`crate::dkim`]), never by the parser.
    pub dkim_keys: Vec<DkimKey>,
    /// `DKIM_SELECTOR` (ours): the selector of a `DKIM_KEY` that names none.
    pub dkim_selector: Option<String>,
    /// `DKIM_DOMAIN` (ours, default MAILNAME): the signing domain (`d=`),
    /// lower case; see [`Config::dkim_domain`].
    pub dkim_domain: Option<String>,
}

/// One `DKIM_KEY` line: a private key and the selector it is published
/// under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// The PEM file (absolute).
    pub path: PathBuf,
    /// The selector (`s=`): the key is published at
    /// `<selector>._domainkey.<domain>`.
    pub selector: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            path: PathBuf::from(DEFAULT_PATH),
            smarthost: None,
            port: 25,
            aliases: PathBuf::from("/etc/aliases"),
            spooldir: PathBuf::from("/var/spool/dma"),
            authpath: None,
            certfile: None,
            mailname: None,
            masquerade: None,
            securetransfer: false,
            starttls: false,
            opportunistic_tls: false,
            verifycert: false,
            fingerprint: None,
            insecure: false,
            defer: false,
            fullbounce: false,
            nullclient: false,
            mailspool: PathBuf::from("/var/mail"),
            queue_lifetime: Duration::from_secs(5 * 86400),
            retry_min: Duration::from_secs(300),
            retry_max: Duration::from_secs(4 * 3600),
            alias_user: "nobody".to_string(),
            pipe_timeout: Duration::from_secs(600),
            root_forward_programs: false,
            cafile: None,
            tls_no_verify: false,
            tls_policy: TlsPolicy::default(),
            nameserver: None,
            smtp_timeout: None,
            connect_timeout: Duration::from_secs(30),
            queue_workers: 8,
            hop_sessions: 8,
            message_size_limit: DEFAULT_MESSAGE_SIZE_LIMIT,
            spool_min_free: DEFAULT_SPOOL_MIN_FREE,
            logfile: None,
            log_syslog: true,
            dkim_keys: Vec::new(),
            dkim_selector: None,
            dkim_domain: None,
        }
    }
}

/// One key of `dma.conf`, as the documentation shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key, as written in the file (upper case).
    pub name: &'static str,
    /// What its value is, for the documentation (`host`, `duration`); `None`
    /// for a flag key, which takes no value.
    pub value: Option<&'static str>,
    /// Its default, written as a value that parses to [`Config::default`]'s;
    /// `None` when unset by default (or a flag, off by default).
    pub default: Option<&'static str>,
    /// Every line of it counts (`DKIM_KEY`), instead of the last.
    pub repeatable: bool,
}

const fn flag(name: &'static str) -> Key {
    Key {
        name,
        value: None,
        default: None,
        repeatable: false,
    }
}

const fn value(name: &'static str, value: &'static str, default: Option<&'static str>) -> Key {
    Key {
        name,
        value: Some(value),
        default,
        repeatable: false,
    }
}

/// A value key of which every line counts.
const fn repeatable(name: &'static str, value: &'static str) -> Key {
    Key {
        name,
        value: Some(value),
        default: None,
        repeatable: true,
    }
}

/// Every key the parser knows, in the order the documentation gives them:
/// the parser takes a key's kind from here, and the man page, the README
/// and `examples/dma.conf` are checked against this list
/// (`tests/manpages.rs`).
pub const KEYS: &[Key] = &[
    value("SMARTHOST", "host", None),
    value("PORT", "n", Some("25")),
    value("ALIASES", "path", Some("/etc/aliases")),
    value("SPOOLDIR", "path", Some("/var/spool/dma")),
    value("AUTHPATH", "path", None),
    value("CERTFILE", "path", None),
    value("MAILNAME", "name", None),
    value("MASQUERADE", "[user@][host]", None),
    flag("SECURETRANSFER"),
    flag("STARTTLS"),
    flag("OPPORTUNISTIC_TLS"),
    flag("VERIFYCERT"),
    flag("INSECURE"),
    value("FINGERPRINT", "hex", None),
    flag("DEFER"),
    flag("FULLBOUNCE"),
    flag("NULLCLIENT"),
    value("MAILSPOOL", "dir", Some("/var/mail")),
    value("QUEUE_LIFETIME", "duration", Some("5d")),
    value("RETRY_MIN", "duration", Some("5m")),
    value("RETRY_MAX", "duration", Some("4h")),
    value("ALIAS_USER", "name", Some("nobody")),
    value("PIPE_TIMEOUT", "duration", Some("10m")),
    flag("ROOT_FORWARD_PROGRAMS"),
    value("CAFILE", "path", None),
    flag("TLS_NO_VERIFY"),
    value("TLS_POLICY", "policies", Some("dane mta-sts")),
    value("NAMESERVER", "ip[:port]", None),
    value("SMTP_TIMEOUT", "duration", None),
    value("CONNECT_TIMEOUT", "duration", Some("30s")),
    value("QUEUE_WORKERS", "n", Some("8")),
    value("HOP_SESSIONS", "n", Some("8")),
    value("MESSAGE_SIZE_LIMIT", "size", Some("50M")),
    value("SPOOL_MIN_FREE", "size", Some("100M")),
    value("LOGFILE", "path", None),
    value("LOG_SYSLOG", "on/off", Some("on")),
    repeatable("DKIM_KEY", "path [selector]"),
    value("DKIM_SELECTOR", "selector", None),
    value("DKIM_DOMAIN", "domain", None),
];

/// The key called `name` (exactly: keys are upper case, as in dma).
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

impl Config {
    /// Reads `path`. A missing file means all defaults, as in dma; any other
    /// error opening it is fatal.
    pub fn load(path: &Path) -> Result<Config, ConfError> {
        match std::fs::read(path) {
            Ok(bytes) => Config::parse(path, &String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config {
                path: path.to_path_buf(),
                ..Config::default()
            }),
            Err(e) => Err(ConfError {
                path: path.display().to_string(),
                line: 0,
                reason: Some(format!("can not open: {e}")),
            }),
        }
    }

    /// Parses the text of a configuration file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfError> {
        let mut c = Config {
            path: path.to_path_buf(),
            ..Config::default()
        };
        let err = |line: usize, reason: Option<String>| ConfError {
            path: path.display().to_string(),
            line,
            reason,
        };
        // DKIM_KEY lines (line, path, own selector): their selectors are
        // known once DKIM_SELECTOR, wherever it is, has been read.
        let mut dkim_keys: Vec<(usize, PathBuf, Option<String>)> = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            let lineno = n + 1;
            let line = raw.split('#').next().unwrap_or("");
            let line = line.strip_suffix('\r').unwrap_or(line);
            let (key, value) = match line.find([' ', '\t']) {
                Some(i) => (&line[..i], Some(&line[i + 1..])),
                None => (line, None),
            };
            if key.is_empty() {
                continue;
            }
            let value = value.filter(|v| !v.is_empty());
            let Some(known) = self::key(key) else {
                return Err(err(lineno, Some(format!("unknown key `{key}'"))));
            };
            match (known.value, value) {
                (None, Some(_)) => {
                    return Err(err(lineno, Some(format!("{key} takes no value"))));
                }
                (Some(_), None) => {
                    return Err(err(lineno, Some(format!("{key} needs a value"))));
                }
                (None, None) => match key {
                    "SECURETRANSFER" => c.securetransfer = true,
                    "STARTTLS" => c.starttls = true,
                    "OPPORTUNISTIC_TLS" => c.opportunistic_tls = true,
                    "VERIFYCERT" => c.verifycert = true,
                    "INSECURE" => c.insecure = true,
                    "DEFER" => c.defer = true,
                    "FULLBOUNCE" => c.fullbounce = true,
                    "ROOT_FORWARD_PROGRAMS" => c.root_forward_programs = true,
                    "TLS_NO_VERIFY" => c.tls_no_verify = true,
                    "NULLCLIENT" => c.nullclient = true,
                    _ => unreachable!("every flag key is handled"),
                },
                (Some(_), Some(v)) if key == "DKIM_KEY" => {
                    let (p, sel) = parse_dkim_key(v).map_err(|r| err(lineno, Some(r)))?;
                    dkim_keys.push((lineno, p, sel));
                }
                (Some(_), Some(v)) => {
                    c.set_value(key, v).map_err(|r| err(lineno, Some(r)))?;
                }
            }
        }
        for (line, path, own) in dkim_keys {
            let Some(selector) = own.or_else(|| c.dkim_selector.clone()) else {
                return Err(err(
                    line,
                    Some("DKIM_KEY needs a selector: after the path, or as DKIM_SELECTOR".into()),
                ));
            };
            if c.dkim_keys.iter().any(|k| k.selector == selector) {
                return Err(err(
                    line,
                    Some(format!(
                        "DKIM_KEY: a second key for selector `{selector}' (dual signing needs a selector per key)"
                    )),
                ));
            }
            c.dkim_keys.push(DkimKey { path, selector });
        }
        if c.nullclient && c.smarthost.is_none() {
            return Err(ConfError {
                path: path.display().to_string(),
                line: 0,
                reason: Some("NULLCLIENT needs SMARTHOST".into()),
            });
        }
        if !c.log_syslog && c.logfile.is_none() {
            return Err(err(0, Some("LOG_SYSLOG off needs a LOGFILE".into())));
        }
        if c.retry_min > c.retry_max {
            return Err(err(0, Some("RETRY_MIN is larger than RETRY_MAX".into())));
        }
        Ok(c)
    }

    fn set_value(&mut self, key: &str, v: &str) -> Result<(), String> {
        let dur = |v: &str| {
            duration::parse(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{key} needs a duration such as 90s, 5m, 4h or 5d"))
        };
        match key {
            "SMARTHOST" => {
                parse_hosts(v, 25)?;
                self.smarthost = Some(v.to_string());
            }
            "CAFILE" => self.cafile = Some(PathBuf::from(v)),
            "TLS_POLICY" => self.tls_policy = TlsPolicy::parse(v)?,
            "LOGFILE" => {
                if !v.starts_with('/') {
                    return Err(format!("LOGFILE needs an absolute path, not `{v}'"));
                }
                self.logfile = Some(PathBuf::from(v));
            }
            "LOG_SYSLOG" => {
                self.log_syslog = match v.trim().to_ascii_lowercase().as_str() {
                    "on" | "yes" => true,
                    "off" | "no" => false,
                    _ => return Err(format!("LOG_SYSLOG needs on or off, not `{v}'")),
                };
            }
            "MESSAGE_SIZE_LIMIT" => match size::parse(v) {
                Some(Size::Bytes(n)) => self.message_size_limit = n,
                _ => {
                    return Err(format!(
                        "MESSAGE_SIZE_LIMIT needs a size such as 50M, 10240K or 0 (no limit), not `{v}'"
                    ));
                }
            },
            "SPOOL_MIN_FREE" => {
                self.spool_min_free = size::parse(v).ok_or_else(|| {
                    format!(
                        "SPOOL_MIN_FREE needs a size such as 100M, 5% or 0 (no check), not `{v}'"
                    )
                })?;
            }
            "DKIM_SELECTOR" => {
                let v = v.trim();
                if !is_domain_like(v) {
                    return Err(format!(
                        "DKIM_SELECTOR needs a selector (letters, digits, `-', dot-separated), not `{v}'"
                    ));
                }
                self.dkim_selector = Some(v.to_ascii_lowercase());
            }
            "DKIM_DOMAIN" => {
                let v = v.trim().trim_end_matches('.');
                if !is_domain_like(v) {
                    return Err(format!("DKIM_DOMAIN needs a domain name, not `{v}'"));
                }
                self.dkim_domain = Some(v.to_ascii_lowercase());
            }
            "SMTP_TIMEOUT" => self.smtp_timeout = Some(dur(v)?),
            "CONNECT_TIMEOUT" => self.connect_timeout = dur(v)?,
            "HOP_SESSIONS" => {
                self.hop_sessions = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| {
                        format!("HOP_SESSIONS needs a number from 1 to 64, not `{v}'")
                    })?;
            }
            "QUEUE_WORKERS" => {
                self.queue_workers = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| {
                        format!("QUEUE_WORKERS needs a number from 1 to 64, not `{v}'")
                    })?;
            }
            "NAMESERVER" => {
                let t = v.trim();
                let addr = t
                    .parse::<std::net::SocketAddr>()
                    .or_else(|_| {
                        t.parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| {
                        format!("NAMESERVER needs an IP address, with an optional port, not `{v}'")
                    })?;
                self.nameserver = Some(addr);
            }
            "PORT" => {
                self.port = v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("PORT needs a number from 1 to 65535, not `{v}'"))?;
            }
            "ALIASES" => self.aliases = PathBuf::from(v),
            "SPOOLDIR" => self.spooldir = PathBuf::from(v),
            "AUTHPATH" => self.authpath = Some(PathBuf::from(v)),
            "CERTFILE" => self.certfile = Some(PathBuf::from(v)),
            "MAILNAME" => self.mailname = Some(v.to_string()),
            "MAILSPOOL" => self.mailspool = PathBuf::from(v),
            "MASQUERADE" => {
                let m = match v.split_once('@') {
                    Some((u, h)) => Masquerade {
                        user: Some(u.to_string()).filter(|s| !s.is_empty()),
                        host: Some(h.to_string()).filter(|s| !s.is_empty()),
                    },
                    None => Masquerade {
                        user: None,
                        host: Some(v.to_string()),
                    },
                };
                for part in [&m.user, &m.host].into_iter().flatten() {
                    crate::address::validate(part).map_err(|e| format!("MASQUERADE: {e}"))?;
                }
                self.masquerade = Some(m);
            }
            "FINGERPRINT" => {
                let hex = v.trim();
                let mut fp = [0u8; 32];
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("FINGERPRINT needs 64 hex digits (SHA-256)".into());
                }
                for (i, b) in fp.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                        .map_err(|_| "FINGERPRINT needs 64 hex digits (SHA-256)".to_string())?;
                }
                self.fingerprint = Some(fp);
            }
            "QUEUE_LIFETIME" => self.queue_lifetime = dur(v)?,
            "RETRY_MIN" => self.retry_min = dur(v)?,
            "RETRY_MAX" => self.retry_max = dur(v)?,
            "PIPE_TIMEOUT" => self.pipe_timeout = dur(v)?,
            "ALIAS_USER" => {
                let name = v.trim();
                if name == "root" || !crate::local::helper::valid_user_name(name) {
                    return Err(format!(
                        "ALIAS_USER must name an unprivileged user, not `{v}'"
                    ));
                }
                self.alias_user = name.to_string();
            }
            _ => unreachable!("every value key is handled"),
        }
        Ok(())
    }

    /// The name this host uses for itself: MAILNAME (a name, or the first
    /// line of a file cut at the first character outside `[A-Za-z0-9_.-]`),
    /// else the system host name.
    pub fn hostname(&self) -> String {
        if let Some(m) = self.mailname.as_deref().filter(|m| !m.is_empty()) {
            if !m.starts_with('/') {
                return m.to_string();
            }
            if let Ok(text) = std::fs::read_to_string(m) {
                let first: String = text
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                    .collect();
                if !first.is_empty() {
                    return first;
                }
            }
        }
        system_hostname()
    }

    /// The DKIM signing domain: DKIM_DOMAIN, else the mail name, in lower
    /// case. Mail is signed when every From: address is in it or below it.
    pub fn dkim_domain(&self) -> String {
        match &self.dkim_domain {
            Some(d) => d.clone(),
            None => self.hostname().trim_end_matches('.').to_ascii_lowercase(),
        }
    }
}

/// Whether `s` is dot-separated labels of letters, digits and inner `-`
/// (a domain name, or a DKIM selector: RFC 6376 §3.1).
fn is_domain_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Reads a `DKIM_KEY` value: an absolute path and an optional selector.
/// Without the `dkim` feature the key is refused: such a build can not
/// sign, and mail must not go out unsigned when signing is asked for.
fn parse_dkim_key(v: &str) -> Result<(PathBuf, Option<String>), String> {
    if !cfg!(feature = "dkim") {
        return Err(
            "DKIM_KEY: this dma-rs was built without DKIM signing (the cargo feature `dkim')"
                .into(),
        );
    }
    let words: Vec<&str> = v.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let (path, selector) = match words[..] {
        [p] => (p, None),
        [p, s] => (p, Some(s)),
        _ => {
            return Err(format!(
                "DKIM_KEY needs a path and an optional selector, not `{v}'"
            ));
        }
    };
    if !path.starts_with('/') {
        return Err(format!("DKIM_KEY needs an absolute path, not `{path}'"));
    }
    if let Some(s) = selector
        && !is_domain_like(s)
    {
        return Err(format!(
            "DKIM_KEY: `{s}' is not a selector (letters, digits, `-', dot-separated)"
        ));
    }
    Ok((PathBuf::from(path), selector.map(str::to_ascii_lowercase)))
}

/// Splits a SMARTHOST value: hosts separated by blanks or commas, each
/// `host`, `host:port`, `[v6]` or `[v6]:port`; `port` is the default.
pub fn parse_hosts(v: &str, port: u16) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for item in v.split([' ', '\t', ',']).filter(|s| !s.is_empty()) {
        let (host, p) = if let Some(rest) = item.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("SMARTHOST: unbalanced `[' in `{item}'"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else if item.matches(':').count() == 1 {
            let (h, p) = item.split_once(':').expect("one colon");
            (h.to_string(), Some(p))
        } else {
            (item.to_string(), None)
        };
        let port = match p {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("SMARTHOST: bad port in `{item}'"))?,
            None => port,
        };
        if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("SMARTHOST: bad host in `{item}'"));
        }
        out.push((host, port));
    }
    if out.is_empty() {
        return Err("SMARTHOST needs a host".into());
    }
    Ok(out)
}

impl Config {
    /// The smarthosts in order, each with its port (PORT when not given).
    pub fn smarthosts(&self) -> Vec<(String, u16)> {
        self.smarthost
            .as_deref()
            .and_then(|v| parse_hosts(v, self.port).ok())
            .unwrap_or_default()
    }
}

/// The kernel's host name (`gethostname`), or `localhost` if it has none.
pub fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfError> {
        Config::parse(Path::new("/etc/dma/dma.conf"), text)
    }

    #[test]
    fn values_are_verbatim_and_comments_start_anywhere() {
        let c = parse("SMARTHOST mail.example.org\nPORT 587 # submission\nMAILNAME  two blanks\n")
            .unwrap();
        assert_eq!(c.smarthost.as_deref(), Some("mail.example.org"));
        assert_eq!(c.port, 587);
        assert_eq!(c.mailname.as_deref(), Some(" two blanks"));
    }

    #[test]
    fn flags_and_new_keys() {
        let c = parse(
            "SECURETRANSFER\nSTARTTLS\nDEFER\nFULLBOUNCE\nMAILSPOOL /tmp/m\nQUEUE_LIFETIME 90s\nRETRY_MIN 1m\nRETRY_MAX 2h\n",
        )
        .unwrap();
        assert!(c.securetransfer && c.starttls && c.defer && c.fullbounce);
        assert_eq!(c.mailspool, PathBuf::from("/tmp/m"));
        assert_eq!(c.queue_lifetime.as_secs(), 90);
        assert_eq!(c.retry_min.as_secs(), 60);
        assert_eq!(c.retry_max.as_secs(), 7200);
    }

    #[test]
    fn keys_defaults_are_the_defaults_and_flags_turn_something_on() {
        let base = parse("SMARTHOST relay.example\n").unwrap();
        for k in KEYS {
            assert_eq!(key(k.name), Some(k), "{} twice in KEYS", k.name);
            assert!(key(&k.name.to_ascii_lowercase()).is_none());
            match (k.value, k.default) {
                (None, _) => {
                    assert!(k.default.is_none(), "{}", k.name);
                    let c = parse(&format!("SMARTHOST relay.example\n{}\n", k.name)).unwrap();
                    assert_ne!(c, base, "{} changes nothing", k.name);
                    let e = parse(&format!("{} on\n", k.name)).unwrap_err();
                    assert!(e.to_string().ends_with("takes no value"), "{e}");
                }
                (Some(_), Some(d)) => {
                    let c = parse(&format!("{} {d}\n", k.name)).unwrap();
                    assert_eq!(c, Config::default_at("/etc/dma/dma.conf"), "{}", k.name);
                }
                (Some(_), None) => {}
            }
            if k.value.is_some() {
                let e = parse(&format!("{}\n", k.name)).unwrap_err();
                assert!(e.to_string().ends_with("needs a value"), "{e}");
            }
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, line) in [
            ("FOO bar\n", 1),
            ("# ok\nSTARTTLS yes\n", 2),
            ("\n\nSMARTHOST\n", 3),
            ("PORT abc\n", 1),
            ("PORT 0\n", 1),
            ("FINGERPRINT abcd\n", 1),
            ("SECURE\n", 1),
            ("QUEUE_LIFETIME forever\n", 1),
            ("starttls\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(
                e.to_string()
                    .starts_with(&format!("syntax error in /etc/dma/dma.conf:{line}")),
                "{e}"
            );
        }
    }

    #[test]
    fn size_keys() {
        let c = parse("").unwrap();
        assert_eq!(c.message_size_limit, 50 << 20);
        assert_eq!(c.spool_min_free, Size::Bytes(100 << 20));
        let c = parse("MESSAGE_SIZE_LIMIT 100K\nSPOOL_MIN_FREE 5%\n").unwrap();
        assert_eq!(c.message_size_limit, 100 << 10);
        assert_eq!(c.spool_min_free, Size::Percent(5));
        let c = parse("MESSAGE_SIZE_LIMIT 0\nSPOOL_MIN_FREE 0\n").unwrap();
        assert_eq!(c.message_size_limit, 0);
        assert!(c.spool_min_free.is_zero());
        for (text, line) in [
            ("MESSAGE_SIZE_LIMIT 5%\n", 1),
            ("\nMESSAGE_SIZE_LIMIT lots\n", 2),
            ("SPOOL_MIN_FREE 200%\n", 1),
            ("SPOOL_MIN_FREE\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(
                e.to_string()
                    .starts_with(&format!("syntax error in /etc/dma/dma.conf:{line}: "))
            );
        }
    }

    #[test]
    fn tls_policy_key() {
        let both = TlsPolicy {
            dane: true,
            mta_sts: true,
        };
        assert_eq!(parse("").unwrap().tls_policy, both);
        assert_eq!(
            parse("TLS_POLICY mta-sts, DANE\n").unwrap().tls_policy,
            both
        );
        let c = parse("TLS_POLICY dane\n").unwrap();
        assert!(c.tls_policy.dane && !c.tls_policy.mta_sts);
        let c = parse("TLS_POLICY none\n").unwrap();
        assert!(!c.tls_policy.dane && !c.tls_policy.mta_sts);
        for text in ["TLS_POLICY dnssec\n", "TLS_POLICY none dane\n"] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains("TLS_POLICY needs dane"), "{e}");
        }
    }

    #[test]
    fn blank_led_lines_are_skipped_as_in_dma() {
        assert_eq!(
            parse("  FOO bar\n\tjunk\n").unwrap(),
            Config::default_at("/etc/dma/dma.conf")
        );
    }

    #[test]
    fn masquerade_forms() {
        let c = parse("MASQUERADE john@\n").unwrap();
        assert_eq!(c.masquerade.unwrap().user.as_deref(), Some("john"));
        let c = parse("MASQUERADE example.org\n").unwrap();
        assert_eq!(c.masquerade.unwrap().host.as_deref(), Some("example.org"));
        assert!(parse("NULLCLIENT\n").is_err());
        assert!(parse("NULLCLIENT\nSMARTHOST relay\n").unwrap().nullclient);
    }

    #[test]
    fn smarthost_lists() {
        let c = parse("SMARTHOST relay1.example.org, relay2.example.org:587 [2001:db8::1]:2525 [::1]\nPORT 465\n").unwrap();
        assert_eq!(
            c.smarthosts(),
            vec![
                ("relay1.example.org".to_string(), 465),
                ("relay2.example.org".to_string(), 587),
                ("2001:db8::1".to_string(), 2525),
                ("::1".to_string(), 465)
            ]
        );
        assert!(parse("SMARTHOST relay:0\n").is_err());
        assert!(parse("SMARTHOST [::1\n").is_err());
        let c = parse("NAMESERVER 127.0.0.1:5353\nSMTP_TIMEOUT 2s\nCAFILE /x.pem\nTLS_NO_VERIFY\n")
            .unwrap();
        assert_eq!(c.nameserver, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(
            parse("NAMESERVER ::1\n").unwrap().nameserver,
            Some("[::1]:53".parse().unwrap())
        );
        assert!(c.tls_no_verify && c.smtp_timeout == Some(Duration::from_secs(2)));
    }

    #[test]
    fn mailname_from_a_file_is_its_first_line_cut_at_odd_characters() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mailname");
        std::fs::write(&f, "mx.example.org extra\nsecond\n").unwrap();
        let c = parse(&format!("MAILNAME {}\n", f.display())).unwrap();
        assert_eq!(c.hostname(), "mx.example.org");
        let c = parse("MAILNAME plain.example\n").unwrap();
        assert_eq!(c.hostname(), "plain.example");
        // An unreadable file falls back to the host name, as in dma.
        let c = parse("MAILNAME /nonexistent/mailname\n").unwrap();
        assert_eq!(c.hostname(), system_hostname());
    }

    #[cfg(feature = "dkim")]
    #[test]
    fn dkim_keys_take_their_selector_or_dkim_selector() {
        let c = parse(
            "DKIM_KEY /etc/dma/rsa.pem\nDKIM_KEY /etc/dma/ed.pem Ed2026\nDKIM_SELECTOR rsa2026\nDKIM_DOMAIN Example.ORG.\n",
        )
        .unwrap();
        assert_eq!(
            c.dkim_keys,
            vec![
                DkimKey {
                    path: "/etc/dma/rsa.pem".into(),
                    selector: "rsa2026".into()
                },
                DkimKey {
                    path: "/etc/dma/ed.pem".into(),
                    selector: "ed2026".into()
                },
            ]
        );
        assert_eq!(c.dkim_domain(), "example.org");
        // Without DKIM_DOMAIN: the mail name.
        let c = parse("MAILNAME Mail.Example.NET\n").unwrap();
        assert_eq!(c.dkim_domain(), "mail.example.net");
        for (text, line, why) in [
            ("DKIM_KEY /k.pem\n", 1, "needs a selector"),
            ("DKIM_KEY k.pem s\n", 1, "absolute path"),
            ("DKIM_KEY /k.pem s extra\n", 1, "optional selector"),
            ("DKIM_KEY /k.pem s_1\n", 1, "is not a selector"),
            (
                "DKIM_SELECTOR s\nDKIM_KEY /a.pem\nDKIM_KEY /b.pem\n",
                3,
                "second key",
            ),
            ("DKIM_SELECTOR -s\n", 1, "needs a selector"),
            ("DKIM_DOMAIN exa mple.org\n", 1, "needs a domain"),
            ("DKIM_DOMAIN a..b\n", 1, "needs a domain"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }

    #[cfg(not(feature = "dkim"))]
    #[test]
    fn dkim_key_is_refused_without_the_feature() {
        let e = parse("DKIM_KEY /k.pem s\n").unwrap_err();
        assert!(e.to_string().contains("without DKIM signing"), "{e}");
        // The other DKIM keys sign nothing by themselves: accepted.
        assert!(parse("DKIM_SELECTOR s\nDKIM_DOMAIN example.org\n").is_ok());
    }

    impl Config {
        fn default_at(p: &str) -> Config {
            Config {
                path: PathBuf::from(p),
                ..Config::default()
            }
        }
    }
}
