//! The aliases file (`/etc/aliases`), as dma reads it, and a little more.
//!
//! `name: dest, dest, ...`; `#` starts a comment; a line that starts with a
//! blank, or follows a line ending in `\`, continues the previous entry.
//! Beyond dma, destinations may also be separated by blanks (dma's man page
//! documents `name: dest1 dest2`, its parser rejects it) and may be quoted
//! (`"|/usr/bin/prog arg"`). A name may appear more than once; every entry
//! applies. `*` is the catch-all for top-level recipients.

use std::path::Path;

use thiserror::Error;

/// A malformed aliases file: `FILE:LINE: reason`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{path}:{line}: syntax error: {reason}")]
pub struct AliasError {
    /// The file.
    pub path: String,
    /// The 1-based line where the entry starts.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One destination of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasTarget {
    /// A local name or a remote address.
    Address(String),
    /// `|command`: pipe the message to a command.
    Pipe(String),
    /// `/path`: append to a file.
    File(String),
    /// `:include:/path`: more destinations from a file.
    Include(String),
}

/// One `name: targets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias name (a local part).
    pub name: String,
    /// Its destinations, in order.
    pub targets: Vec<AliasTarget>,
    /// The line the entry starts on.
    pub line: usize,
}

/// A parsed aliases file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    /// The entries, in file order.
    pub entries: Vec<Alias>,
}

impl Aliases {
    /// Reads `path`; a missing file means no aliases, as in dma.
    pub fn load(path: &Path) -> Result<Aliases, AliasError> {
        match std::fs::read(path) {
            Ok(bytes) => Aliases::parse(path, &String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Aliases::default()),
            Err(e) => Err(AliasError {
                path: path.display().to_string(),
                line: 0,
                reason: format!("can not read: {e}"),
            }),
        }
    }

    /// Parses the text of an aliases file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Aliases, AliasError> {
        let mut entries = Vec::new();
        for (line, logical) in logical_lines(text) {
            let err = |reason: &str| AliasError {
                path: path.display().to_string(),
                line,
                reason: reason.to_string(),
            };
            let (name, rest) = logical
                .split_once(':')
                .ok_or_else(|| err("missing ':' after the alias name"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err("empty alias name"));
            }
            if name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
            {
                return Err(err("the alias name contains a blank or a comma"));
            }
            let targets = parse_targets(rest).map_err(|r| err(&r))?;
            if targets.is_empty() {
                return Err(err("no destination"));
            }
            entries.push(Alias {
                name: name.to_string(),
                targets,
                line,
            });
        }
        Ok(Aliases { entries })
    }

    /// Every target of every entry named `name`: exact match first, as dma
    /// does, then a case-insensitive one (RFC 5321 wants `Postmaster` to work).
    pub fn lookup(&self, name: &str) -> Vec<&AliasTarget> {
        let exact: Vec<_> = self
            .entries
            .iter()
            .filter(|a| a.name == name)
            .flat_map(|a| a.targets.iter())
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        self.entries
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case(name))
            .flat_map(|a| a.targets.iter())
            .collect()
    }

    /// Whether an alias of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        !self.lookup(name).is_empty()
    }
}

/// Joins continuation lines and strips comments; yields (first line, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continues = false;
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = strip_comment(raw);
        let (line, backslash) = match line.strip_suffix('\\') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let blank_led = line.starts_with([' ', '\t']);
        match out.last_mut() {
            Some(last) if continues || (blank_led && !line.trim().is_empty()) => {
                last.1.push(' ');
                last.1.push_str(line);
            }
            _ if line.trim().is_empty() => {}
            _ => out.push((n + 1, line.to_string())),
        }
        continues = backslash;
    }
    out
}

/// Cuts a `#` comment that is not inside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits a destination list on commas and blanks outside quotes.
fn parse_targets(rest: &str) -> Result<Vec<AliasTarget>, String> {
    let mut items: Vec<(String, bool)> = Vec::new();
    let mut cur = String::new();
    let mut was_quoted = false;
    let mut quoted = false;
    let mut comma_pending = false;
    let flush = |cur: &mut String, was_quoted: &mut bool, items: &mut Vec<(String, bool)>| {
        if !cur.is_empty() || *was_quoted {
            items.push((std::mem::take(cur), *was_quoted));
        }
        *was_quoted = false;
    };
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            _ if quoted => cur.push(c),
            ',' => {
                if cur.is_empty() && !was_quoted {
                    return Err("empty destination between commas".into());
                }
                flush(&mut cur, &mut was_quoted, &mut items);
                comma_pending = true;
            }
            ' ' | '\t' => flush(&mut cur, &mut was_quoted, &mut items),
            c if c.is_control() => return Err("control character".into()),
            c => {
                comma_pending = false;
                cur.push(c);
            }
        }
    }
    if quoted {
        return Err("unbalanced double quote".into());
    }
    let ended_with_comma = comma_pending && cur.is_empty() && !was_quoted;
    flush(&mut cur, &mut was_quoted, &mut items);
    if ended_with_comma {
        return Err("trailing comma".into());
    }
    items
        .into_iter()
        .map(|(item, quoted)| classify(&item, quoted))
        .collect()
}

fn classify(item: &str, quoted: bool) -> Result<AliasTarget, String> {
    if item.is_empty() {
        return Err("empty destination".into());
    }
    if let Some(cmd) = item.strip_prefix('|') {
        if cmd.trim().is_empty() {
            return Err("empty command".into());
        }
        return Ok(AliasTarget::Pipe(cmd.to_string()));
    }
    if let Some(path) = item.strip_prefix(":include:") {
        if !path.starts_with('/') {
            return Err(":include: needs an absolute path".into());
        }
        return Ok(AliasTarget::Include(path.to_string()));
    }
    if item.starts_with('/') {
        return Ok(AliasTarget::File(item.to_string()));
    }
    if !quoted && item.contains(':') {
        return Err(format!("unexpected ':' in `{item}'"));
    }
    crate::address::validate(item).map_err(|e| format!("`{item}': {e}"))?;
    Ok(AliasTarget::Address(item.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Aliases, AliasError> {
        Aliases::parse(Path::new("/etc/aliases"), text)
    }

    fn addrs(a: &Aliases, name: &str) -> Vec<String> {
        a.lookup(name)
            .into_iter()
            .map(|t| match t {
                AliasTarget::Address(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn dma_forms() {
        let a = parse(
            "# comment\npostmaster: root\nteam: alice, bob,\n  carol\nlong: x,\\\ny\n*: catch@example.org\nteam: dave # more\n",
        )
        .unwrap();
        assert_eq!(addrs(&a, "postmaster"), ["root"]);
        assert_eq!(addrs(&a, "team"), ["alice", "bob", "carol", "dave"]);
        assert_eq!(addrs(&a, "long"), ["x", "y"]);
        assert_eq!(addrs(&a, "*"), ["catch@example.org"]);
        assert_eq!(addrs(&a, "Postmaster"), ["root"]);
        assert!(a.lookup("nobody").is_empty());
        assert_eq!(a.entries[2].line, 5);
    }

    #[test]
    fn blank_separated_and_quoted() {
        let a = parse("ops: alice bob\tcarol\npager: \"|/usr/bin/page --to ops\", /var/log/mail.copy, :include:/etc/mail/list\n").unwrap();
        assert_eq!(addrs(&a, "ops"), ["alice", "bob", "carol"]);
        assert_eq!(
            a.lookup("pager"),
            vec![
                &AliasTarget::Pipe("/usr/bin/page --to ops".into()),
                &AliasTarget::File("/var/log/mail.copy".into()),
                &AliasTarget::Include("/etc/mail/list".into())
            ]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, line) in [
            ("root\n", 1),
            ("ok: a\n\nbad line here\n", 3),
            (": nobody\n", 1),
            ("a: b,,c\n", 1),
            ("a: b,\n", 1),
            ("a:\n", 1),
            ("a: \"unbalanced\n", 1),
            ("a: -oQ/tmp\n", 1),
            ("a: b:c\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("/etc/aliases:{line}: ")),
                "{e}"
            );
        }
    }
}
