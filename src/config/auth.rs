//! `auth.conf`: `login|host:password`, one per line, parsed as dma does,
//! plus `login|host|command` to get the password from a command.
//!
//! Only lines starting with `#` are comments and empty lines are skipped. The
//! login runs to the first `|`, the host to the first `:`, `|`, space or tab,
//! and the rest is verbatim: the password after `:`, space or tab (as in
//! dma; a password starting with `oauth2:` is nothing special there), or,
//! after `|`, a command whose first line of output is the secret (like
//! msmtp's `passwordeval`), so that the password need not sit in the file.
//! A command's output starting with `oauth2:` is an OAuth2 access token
//! (for XOAUTH2) instead of a password. When several lines name one host,
//! the later line wins.
//!
//! dma itself ends the host only at `:`, space or tab, so a `login|host|...`
//! line never meant anything sensible to it: the extension takes no working
//! dma file away.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::privsep;
use crate::smtp::auth::Secret;

/// How long a password command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a password command's stdout and stderr we keep (the rest is
/// read and dropped, so that the command never blocks on a full pipe).
const OUTPUT_KEPT: usize = 64 * 1024;

/// A malformed line: dma's `syntax error in authfile FILE:N`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("syntax error in authfile {path}:{line}")]
pub struct AuthError {
    /// The file.
    pub path: String,
    /// The 1-based line number (0 when the file could not be read).
    pub line: usize,
}

/// One credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The SASL login.
    pub login: String,
    /// The server it is for (smarthost or MX name, matched exactly).
    pub host: String,
    /// Where the secret comes from.
    pub secret: SecretSource,
}

/// Where the secret of an [`AuthEntry`] comes from. `Debug` does not show a
/// password.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `login|host:password`: the password, verbatim.
    Password(String),
    /// `login|host|command`: a command for `/bin/sh -c` whose first line of
    /// output is the secret.
    Command(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Password(_) => f.write_str("Password(<redacted>)"),
            SecretSource::Command(c) => f.debug_tuple("Command").field(c).finish(),
        }
    }
}

impl AuthEntry {
    /// The secret to authenticate with: the password from the file, or what
    /// the command prints.
    ///
    /// The command runs through `/bin/sh -c` with our privileges and
    /// environment, in a session of its own, with stdin from `/dev/null`,
    /// for at most [`COMMAND_TIMEOUT`] (then it is killed with its whole
    /// process group). The first line of its standard output (without the
    /// line end, `\n` or `\r\n`) is the secret: `oauth2:TOKEN` gives
    /// [`Secret::OAuthToken`], anything else [`Secret::Password`]. A
    /// command that fails, times out, prints nothing (or an empty first
    /// line) or prints something that is not UTF-8 is an error, whose text
    /// names the command, its exit status and the first line of its stderr.
    pub fn resolve(&self) -> Result<Secret, String> {
        match &self.secret {
            SecretSource::Password(p) => Ok(Secret::Password(p.clone())),
            SecretSource::Command(c) => {
                let line = run_command(c, COMMAND_TIMEOUT)?;
                Ok(match line.strip_prefix("oauth2:") {
                    Some(token) => Secret::OAuthToken(token.to_string()),
                    None => Secret::Password(line),
                })
            }
        }
    }
}

/// All credentials of an auth file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    /// The entries, in the order of the file.
    pub entries: Vec<AuthEntry>,
}

impl AuthFile {
    /// Reads and parses `path`; an unreadable file is an error (dma exits 66).
    pub fn load(path: &Path) -> Result<AuthFile, std::io::Error> {
        let text = std::fs::read(path)?;
        AuthFile::parse(path, &String::from_utf8_lossy(&text))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Parses the text of an auth file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<AuthFile, AuthError> {
        let mut entries = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = || AuthError {
                path: path.display().to_string(),
                line: n + 1,
            };
            let (login, rest) = line.split_once('|').ok_or_else(err)?;
            let i = rest.find([':', '|', ' ', '\t']).ok_or_else(err)?;
            let value = rest[i + 1..].to_string();
            entries.push(AuthEntry {
                login: login.to_string(),
                host: rest[..i].to_string(),
                secret: if rest[i..].starts_with('|') {
                    SecretSource::Command(value)
                } else {
                    SecretSource::Password(value)
                },
            });
        }
        Ok(AuthFile { entries })
    }

    /// The credential for `host`: the last line naming it.
    pub fn lookup(&self, host: &str) -> Option<&AuthEntry> {
        self.entries.iter().rev().find(|e| e.host == host)
    }
}

/// Runs a password command and returns the first line of its output.
fn run_command(command: &str, timeout: Duration) -> Result<String, String> {
    if command.trim().is_empty() {
        return Err("empty password command in the auth file".into());
    }
    let what = format!("password command `{command}`");
    // The command reaches the shell through its environment, which only
    // its owner and root can read: a command line is everybody's to see
    // (ps), and the command may carry a secret.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("eval \"$DMA_PASSWORD_COMMAND\"")
        .env("DMA_PASSWORD_COMMAND", command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    privsep::new_session(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: can not run /bin/sh: {e}"))?;
    let pid = child.id();
    // Both pipes are read by threads, so that a chatty command cannot block
    // on a full pipe while we wait for it to exit.
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let finished = |h: &Option<JoinHandle<Vec<u8>>>| h.as_ref().is_none_or(|h| h.is_finished());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                privsep::kill_group(pid);
                let _ = child.wait();
                return Err(format!(
                    "{what} timed out after {}s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                privsep::kill_group(pid);
                let _ = child.wait();
                return Err(format!("{what}: waiting for it: {e}"));
            }
        }
    };
    // Something the command left behind may still hold the pipes open:
    // give it a moment, then end the whole group.
    let grace = Instant::now() + Duration::from_secs(1);
    while !(finished(&out) && finished(&err)) && Instant::now() < grace.min(deadline) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !(finished(&out) && finished(&err)) {
        privsep::kill_group(pid);
        let grace = Instant::now() + Duration::from_secs(1);
        while !(finished(&out) && finished(&err)) && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !(finished(&out) && finished(&err)) {
            return Err(format!(
                "{what} left a process behind that holds its output open"
            ));
        }
    }
    let collect =
        |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let (out, err) = (collect(out), collect(err));
    let stderr = first_line_shown(&err);
    if !status.success() {
        return Err(format!("{what} failed ({}){stderr}", describe(status)));
    }
    let out = String::from_utf8(out)
        .map_err(|_| format!("{what} printed something that is not UTF-8"))?;
    let line = out.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(format!("{what} printed no password{stderr}"));
    }
    Ok(line.to_string())
}

/// A thread reading `pipe` to its end, keeping the first [`OUTPUT_KEPT`]
/// bytes.
fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = OUTPUT_KEPT - kept.len();
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
}

/// `"exit status 1"` or `"killed by signal 9"`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    }
}

/// `": first line"` of a command's stderr, printable and bounded, or `""`.
fn first_line_shown(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let line: String = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_dma() {
        let f = AuthFile::parse(
            Path::new("auth.conf"),
            "# comment\n\nuser|smtp.example.org:p:a ss\nother|smtp.example.org:second\nx|h p\n",
        )
        .unwrap();
        assert_eq!(f.entries[0].secret, SecretSource::Password("p:a ss".into()));
        assert_eq!(f.lookup("smtp.example.org").unwrap().login, "other");
        assert_eq!(
            f.lookup("h").unwrap().secret,
            SecretSource::Password("p".into())
        );
        assert!(f.lookup("nowhere").is_none());
    }

    #[test]
    fn errors_carry_the_line() {
        for (text, line) in [("nobar\n", 1), ("# c\nu|hostonly\n", 2)] {
            let e = AuthFile::parse(Path::new("/etc/dma/auth.conf"), text).unwrap_err();
            assert_eq!(e.line, line);
            assert_eq!(
                e.to_string(),
                format!("syntax error in authfile /etc/dma/auth.conf:{line}")
            );
        }
    }

    #[test]
    fn parse_table() {
        use SecretSource::{Command as C, Password as P};
        // (line, login, host, secret)
        let table: &[(&str, &str, &str, SecretSource)] = &[
            ("u|h:pw", "u", "h", P("pw".into())),
            ("u|h pw", "u", "h", P("pw".into())),
            ("u|h\tpw", "u", "h", P("pw".into())),
            ("u|h:", "u", "h", P(String::new())),
            ("u|h:a:b|c d", "u", "h", P("a:b|c d".into())),
            ("|h:pw", "", "h", P("pw".into())),
            ("u|:pw", "u", "", P("pw".into())),
            ("u|h:pw\r", "u", "h", P("pw".into())),
            // dma compatibility: `oauth2:` in the file is just a password.
            ("u|h:oauth2:tok", "u", "h", P("oauth2:tok".into())),
            // The extension: `|` after the host introduces a command.
            ("u|h|pass show mail", "u", "h", C("pass show mail".into())),
            (
                "u|h|cat /f | head -1",
                "u",
                "h",
                C("cat /f | head -1".into()),
            ),
            ("u|h|", "u", "h", C(String::new())),
            ("a|b|h|cmd", "a", "b", C("h|cmd".into())),
            // The first separator decides.
            ("u|h:p|x", "u", "h", P("p|x".into())),
            ("u|h p|x", "u", "h", P("p|x".into())),
            ("u|h|x:y", "u", "h", C("x:y".into())),
        ];
        for (line, login, host, secret) in table {
            let f = AuthFile::parse(Path::new("auth.conf"), line)
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                f.entries,
                [AuthEntry {
                    login: login.to_string(),
                    host: host.to_string(),
                    secret: secret.clone(),
                }],
                "{line:?}"
            );
        }
        for bad in ["nobar", "u|hostonly", "u|", "#x\nu|h"] {
            assert!(AuthFile::parse(Path::new("a"), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let e = AuthEntry {
            login: "u".into(),
            host: "h".into(),
            secret: SecretSource::Password("hunter2".into()),
        };
        assert!(!format!("{e:?}").contains("hunter2"));
        let c = SecretSource::Command("pass mail".into());
        assert_eq!(format!("{c:?}"), r#"Command("pass mail")"#);
    }

    fn entry(secret: SecretSource) -> AuthEntry {
        AuthEntry {
            login: "u".into(),
            host: "h".into(),
            secret,
        }
    }

    #[test]
    fn resolve_password_and_commands() {
        let ok: &[(SecretSource, Secret)] = &[
            (
                SecretSource::Password("oauth2:x".into()),
                Secret::Password("oauth2:x".into()),
            ),
            (
                SecretSource::Command("printf 'pw\\n'".into()),
                Secret::Password("pw".into()),
            ),
            (
                SecretSource::Command("printf 'p w\\r\\nsecond\\n'".into()),
                Secret::Password("p w".into()),
            ),
            (
                SecretSource::Command("printf nonl".into()),
                Secret::Password("nonl".into()),
            ),
            (
                SecretSource::Command("printf 'oauth2:ya29.tok\\n'".into()),
                Secret::OAuthToken("ya29.tok".into()),
            ),
            (
                SecretSource::Command("echo noise >&2; echo pw".into()),
                Secret::Password("pw".into()),
            ),
            // More output than a pipe holds: read, not blocked on.
            (
                SecretSource::Command("yes | head -c 1000000".into()),
                Secret::Password("y".into()),
            ),
        ];
        for (source, want) in ok {
            assert_eq!(
                entry(source.clone()).resolve().as_ref(),
                Ok(want),
                "{source:?}"
            );
        }
    }

    #[test]
    fn resolve_failures() {
        let bad: &[(&str, &[&str])] = &[
            (
                "echo 'no such entry' >&2; exit 3",
                &[
                    "`echo 'no such entry' >&2; exit 3`",
                    "exit status 3",
                    ": no such entry",
                ],
            ),
            ("kill -9 $$", &["killed by signal 9"]),
            ("true", &["printed no password"]),
            ("printf '\\n'; echo why >&2", &["printed no password: why"]),
            ("printf '\\377\\n'", &["not UTF-8"]),
            ("", &["empty password command"]),
            ("  ", &["empty password command"]),
        ];
        for (command, wanted) in bad {
            let e = entry(SecretSource::Command(command.to_string()))
                .resolve()
                .unwrap_err();
            for w in *wanted {
                assert!(e.contains(w), "{command:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn commands_are_time_limited() {
        let t = Instant::now();
        let e = run_command("sleep 10; echo pw", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // A background process that keeps stdout open is ended after the
        // shell exits; the password still counts.
        let t = Instant::now();
        assert_eq!(
            run_command("sleep 10 & echo pw", Duration::from_secs(20)).as_deref(),
            Ok("pw")
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
