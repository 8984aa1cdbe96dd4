//! The `.forward` format (see `man/dma-forward.5`): a pure parser.
//!
//! Entries are separated by commas or newlines, outside double quotes, and
//! trimmed of blanks. `#` starts a comment line. An entry is one of:
//! `|command` (a pipe), `/path` (append to a file; a trailing `/` means a
//! Maildir), `\user` or `!user` (that local user's own mailbox, no further
//! aliasing or forwarding), `:include:/path` (aliases only), or an address.
//! A double-quoted entry may hold commas and `#`; `\"` and `\\` escape inside
//! quotes.

use thiserror::Error;

/// The largest `.forward` (or `:include:` file) we read.
pub const MAX_SIZE: usize = 64 * 1024;
/// The most entries one file may have.
pub const MAX_ENTRIES: usize = 100;

/// One destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `|command`: run it with the message on stdin.
    Pipe(String),
    /// `/path`: append in mbox format.
    File(String),
    /// `/path/`: deliver into a Maildir.
    Maildir(String),
    /// `\user`, `!user`: that user's mailbox, no further expansion.
    Mailbox(String),
    /// `:include:/path`.
    Include(String),
    /// A local name or a remote address.
    Address(String),
}

/// A malformed file: the line and what is wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// Parses the text of a `.forward` or `:include:` file.
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    if text.len() > MAX_SIZE {
        return Err(err(0, format!("larger than {MAX_SIZE} bytes")));
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted_item = false;
    let mut in_quotes = false;
    let mut line = 1;
    let mut item_line = 1;
    let mut at_line_start = true;
    let mut chars = text.chars().peekable();
    let finish = |cur: &mut String, quoted: &mut bool, line: usize, out: &mut Vec<Entry>| {
        let item = if *quoted {
            cur.clone()
        } else {
            cur.trim().to_string()
        };
        if !item.is_empty() || *quoted {
            out.push(classify(&item, line)?);
            if out.len() > MAX_ENTRIES {
                return Err(err(line, format!("more than {MAX_ENTRIES} entries")));
            }
        }
        cur.clear();
        *quoted = false;
        Ok(())
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' => in_quotes = false,
                '\\' => match chars.next() {
                    Some('\n') | None => return Err(err(line, "unterminated double quote")),
                    Some(e) => cur.push(e),
                },
                '\n' => return Err(err(line, "unterminated double quote")),
                c if c.is_control() && c != '\t' => {
                    return Err(err(line, "control character"));
                }
                c => cur.push(c),
            }
            continue;
        }
        match c {
            '#' if at_line_start && cur.trim().is_empty() => {
                // A comment line: skip to its end.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                cur.clear();
                line += 1;
                at_line_start = true;
                continue;
            }
            '"' => {
                if !cur.trim().is_empty() || quoted_item {
                    return Err(err(line, "a double quote must start an entry"));
                }
                cur.clear();
                in_quotes = true;
                quoted_item = true;
                item_line = line;
            }
            ',' | '\n' => {
                finish(&mut cur, &mut quoted_item, item_line, &mut out)?;
                if c == '\n' {
                    line += 1;
                    at_line_start = true;
                    continue;
                }
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            c if c.is_control() && c != '\t' => return Err(err(line, "control character")),
            c => {
                if quoted_item && !c.is_whitespace() {
                    return Err(err(line, "text after a closing double quote"));
                }
                if cur.trim().is_empty() {
                    item_line = line;
                }
                cur.push(c);
                if c.is_whitespace() {
                    continue;
                }
            }
        }
        at_line_start = false;
    }
    if in_quotes {
        return Err(err(line, "unterminated double quote"));
    }
    finish(&mut cur, &mut quoted_item, item_line, &mut out)?;
    Ok(out)
}

fn classify(item: &str, line: usize) -> Result<Entry, ParseError> {
    if item.is_empty() {
        return Err(err(line, "empty entry"));
    }
    if let Some(cmd) = item.strip_prefix('|') {
        let cmd = cmd.trim();
        if cmd.is_empty() {
            return Err(err(line, "empty command"));
        }
        return Ok(Entry::Pipe(cmd.to_string()));
    }
    if let Some(path) = item.strip_prefix(":include:") {
        if !path.starts_with('/') {
            return Err(err(line, ":include: needs an absolute path"));
        }
        return Ok(Entry::Include(path.to_string()));
    }
    if item.starts_with('/') {
        if item.split('/').any(|c| c == "..") {
            return Err(err(line, "`..' in a file path"));
        }
        return Ok(if item.len() > 1 && item.ends_with('/') {
            Entry::Maildir(item.to_string())
        } else {
            Entry::File(item.to_string())
        });
    }
    if let Some(user) = item.strip_prefix('\\').or_else(|| item.strip_prefix('!')) {
        if !crate::local::helper::valid_user_name(user) {
            return Err(err(line, format!("`{item}': not a user name")));
        }
        return Ok(Entry::Mailbox(user.to_string()));
    }
    crate::address::validate(item).map_err(|e| err(line, format!("`{item}': {e}")))?;
    Ok(Entry::Address(item.to_string()))
}

/// The wire form of entries between `dma-local` and `dma`: one per line,
/// `<kind> <percent-encoded value>`. What `dma` reads back is checked again
/// with [`decode_entries`], since it comes from a user's file.
pub fn encode_entries(entries: &[Entry]) -> String {
    use crate::spool::envelope::encode;
    let mut s = String::new();
    for e in entries {
        let (k, v) = match e {
            Entry::Pipe(v) => ("pipe", v),
            Entry::File(v) => ("file", v),
            Entry::Maildir(v) => ("maildir", v),
            Entry::Mailbox(v) => ("mailbox", v),
            Entry::Include(v) => ("include", v),
            Entry::Address(v) => ("address", v),
        };
        s.push_str(&format!("{k} {}\n", encode(v)));
    }
    s
}

/// Reads [`encode_entries`] output, re-validating every entry.
pub fn decode_entries(text: &str) -> Option<Vec<Entry>> {
    use crate::spool::envelope::decode;
    let mut out = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(' ')?;
        let v = decode(v)?;
        let e = match k {
            "pipe" => format!("|{v}"),
            "file" | "maildir" => v,
            "mailbox" => format!("\\{v}"),
            "include" => format!(":include:{v}"),
            "address"
                if !v.starts_with(['|', '/', '\\', '!', '"']) && !v.starts_with(":include:") =>
            {
                v
            }
            _ => return None,
        };
        if e.contains(['\n', '\r']) {
            return None;
        }
        let entry = classify(&e, 0).ok()?;
        let same_kind = matches!(
            (k, &entry),
            ("pipe", Entry::Pipe(_))
                | ("file", Entry::File(_))
                | ("maildir", Entry::Maildir(_))
                | ("mailbox", Entry::Mailbox(_))
                | ("include", Entry::Include(_))
                | ("address", Entry::Address(_))
        );
        if !same_kind || out.len() >= MAX_ENTRIES {
            return None;
        }
        out.push(entry);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Entry::*;

    #[test]
    fn every_kind() {
        let text = "# my forward\n\n\\me, |/usr/bin/notify --loud\n\"|/usr/bin/prog a,b # not a comment\"\n/home/me/mail.copy\n/home/me/Maildir/\n!other, friend@example.org\n  # indented comment\nlocaluser\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                Mailbox("me".into()),
                Pipe("/usr/bin/notify --loud".into()),
                Pipe("/usr/bin/prog a,b # not a comment".into()),
                File("/home/me/mail.copy".into()),
                Maildir("/home/me/Maildir/".into()),
                Mailbox("other".into()),
                Address("friend@example.org".into()),
                Address("localuser".into()),
            ]
        );
    }

    #[test]
    fn empty_and_comments_only_mean_nothing() {
        for text in ["", "\n\n", "# only\n#comments\n", "  \n\t\n", ",,\n"] {
            assert_eq!(parse(text).unwrap(), vec![], "{text:?}");
        }
    }

    #[test]
    fn errors_carry_lines() {
        for (text, line) in [
            ("ok\n\"|unterminated\n", 2),
            ("|\n", 1),
            ("\\bad/name\n", 1),
            ("-oQ/tmp\n", 1),
            ("\"|x\" trailing\n", 1),
            ("/a/../etc/passwd\n", 1),
            ("x \"|y\"\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        let many = "a\n".repeat(MAX_ENTRIES + 1);
        assert!(parse(&many).is_err());
        assert!(parse(&"#".repeat(MAX_SIZE + 1)).is_err());
    }

    #[test]
    fn crlf_and_escapes() {
        assert_eq!(
            parse("a\r\n\"|echo \\\"hi\\\"\"\r\n").unwrap(),
            vec![Address("a".into()), Pipe("echo \"hi\"".into())]
        );
    }

    #[test]
    fn wire_round_trip_and_rejection() {
        let e = parse("\\me, |cmd a b, /f, /d/, x@y, :include:/l, b").unwrap();
        assert_eq!(decode_entries(&encode_entries(&e)).unwrap(), e);
        assert!(decode_entries("address |evil").is_none());
        assert!(decode_entries("pipe %0Aevil").is_none());
        assert!(decode_entries("mailbox ../root").is_none());
        assert!(decode_entries("file relative").is_none());
        assert!(decode_entries("weird x").is_none());
    }
}
