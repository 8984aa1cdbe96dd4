//! `auth.conf`: `login|host:password`, one per line, parsed as dma does.
//!
//! Only lines starting with `#` are comments and empty lines are skipped. The
//! login runs to the first `|`, the host to the first `:`, `|`, space or tab,
//! and the password is the rest, verbatim. When several lines name one host,
//! the later line wins.

use std::path::Path;

use thiserror::Error;

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
    /// The password, verbatim.
    pub password: String,
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
            entries.push(AuthEntry {
                login: login.to_string(),
                host: rest[..i].to_string(),
                password: rest[i + 1..].to_string(),
            });
        }
        Ok(AuthFile { entries })
    }

    /// The credential for `host`: the last line naming it.
    pub fn lookup(&self, host: &str) -> Option<&AuthEntry> {
        self.entries.iter().rev().find(|e| e.host == host)
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
        assert_eq!(f.entries[0].password, "p:a ss");
        assert_eq!(f.lookup("smtp.example.org").unwrap().login, "other");
        assert_eq!(f.lookup("h").unwrap().password, "p");
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
}
