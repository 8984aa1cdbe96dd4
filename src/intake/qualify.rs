//! Qualifying bare local names in address header fields, as Postfix
//! (`append_at_myorigin`) and sendmail do at submission: `From: root (Cron
//! Daemon)` becomes `From: root@MAILNAME (Cron Daemon)`, `To: bob` becomes
//! `To: bob@MAILNAME`, `Anacron <root>` becomes `Anacron <root@MAILNAME>`.
//! Otherwise a smarthost qualifies them with its own domain, and replies go
//! astray.
//!
//! Only `@domain` is inserted: display names, comments, folding, groups and
//! every other byte stay as they were. A field this lexer does not
//! understand (an unclosed quote, comment or bracket) is left alone, and so
//! is a mailbox that is not a plain local part (`John Smith`, no `@`).

/// The fields whose addresses are qualified (compared case-insensitively).
const FIELDS: [&str; 9] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
];

/// Whether `name` is a field whose addresses are qualified.
pub fn is_address_field(name: &[u8]) -> bool {
    FIELDS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An atom (8-bit bytes included).
    Atom,
    /// A quoted string, quotes included.
    Quoted,
    /// A comment, parentheses included.
    Comment,
    /// A domain literal, brackets included.
    Literal,
    /// Blanks and folding.
    Space,
    /// One of `< > : ; , @ .`.
    Special(u8),
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    end: usize,
}

/// Splits `v` into tokens; `None` when a quote, comment or literal is not
/// closed.
fn tokens(v: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let (kind, end) = match v[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                let n = v[i..]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .count();
                (Kind::Space, i + n)
            }
            b'"' => (Kind::Quoted, closing(v, i, b'"', b'"')?),
            b'(' => (Kind::Comment, closing(v, i, b'(', b')')?),
            b'[' => (Kind::Literal, closing(v, i, b'[', b']')?),
            c @ (b'<' | b'>' | b':' | b';' | b',' | b'@' | b'.') => (Kind::Special(c), i + 1),
            // Closing what was not opened.
            b')' | b']' => return None,
            _ => {
                let n = v[i..]
                    .iter()
                    .take_while(|b| !b" \t\r\n\"()[]<>:;,@.".contains(b))
                    .count();
                (Kind::Atom, i + n)
            }
        };
        out.push(Token { kind, end });
        i = end;
    }
    Some(out)
}

/// The end (exclusive) of the quoted string, comment (nested) or literal
/// that opens at `start`.
fn closing(v: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < v.len() {
        let c = v[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if i > start && c == close {
            if open == close || depth == 1 {
                return Some(i + 1);
            }
            depth -= 1;
        } else if c == open {
            depth += 1;
        }
        i += 1;
    }
    None
}

/// Where `@domain` goes in a mailbox (tokens `mb`, positions in the field
/// value): after its local part, when it has no domain and is a plain local
/// part; else `None`.
fn insertion(mb: &[(usize, Token)]) -> Option<usize> {
    // The address: inside the angle brackets (after a source route), or
    // the whole mailbox.
    let inner: Vec<(usize, Token)> =
        match mb.iter().position(|(_, t)| t.kind == Kind::Special(b'<')) {
            Some(open) => {
                let close = mb.iter().position(|(_, t)| t.kind == Kind::Special(b'>'))?;
                let inside = mb.get(open + 1..close)?;
                let from = inside
                    .iter()
                    .rposition(|(_, t)| t.kind == Kind::Special(b':'))
                    .map_or(0, |c| c + 1);
                inside[from..].to_vec()
            }
            None => mb.to_vec(),
        };
    let words: Vec<&(usize, Token)> = inner
        .iter()
        .filter(|(_, t)| !matches!(t.kind, Kind::Space | Kind::Comment))
        .collect();
    // A local part: words joined by dots.
    let local = !words.is_empty()
        && words.iter().enumerate().all(|(i, (_, t))| {
            if i % 2 == 0 {
                matches!(t.kind, Kind::Atom | Kind::Quoted)
            } else {
                t.kind == Kind::Special(b'.')
            }
        })
        && words.len() % 2 == 1;
    local.then(|| words.last().expect("not empty").1.end)
}

/// The field value `v` with `@domain` after every bare local part; `None`
/// when nothing changes.
pub fn qualify_value(v: &[u8], domain: &str) -> Option<Vec<u8>> {
    let toks = tokens(v)?;
    let mut start = 0;
    let mut at = Vec::new();
    let mut mailbox: Vec<(usize, Token)> = Vec::new();
    let mut in_angle = false;
    let mut in_group = false;
    for t in toks.iter().copied() {
        let here = start;
        start = t.end;
        match t.kind {
            Kind::Special(b'<') => in_angle = true,
            Kind::Special(b'>') => in_angle = false,
            Kind::Special(b',') if !in_angle => {
                at.extend(insertion(&mailbox));
                mailbox.clear();
                continue;
            }
            Kind::Special(b';') if !in_angle && in_group => {
                at.extend(insertion(&mailbox));
                mailbox.clear();
                in_group = false;
                continue;
            }
            Kind::Special(b':') if !in_angle && !in_group => {
                // The group's display name ends here.
                mailbox.clear();
                in_group = true;
                continue;
            }
            _ => {}
        }
        mailbox.push((here, t));
    }
    at.extend(insertion(&mailbox));
    if at.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(v.len() + at.len() * (domain.len() + 1));
    let mut from = 0;
    for i in at {
        out.extend_from_slice(&v[from..i]);
        out.push(b'@');
        out.extend_from_slice(domain.as_bytes());
        from = i;
    }
    out.extend_from_slice(&v[from..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str) -> String {
        match qualify_value(v.as_bytes(), "host.example") {
            Some(out) => String::from_utf8(out).unwrap(),
            None => v.to_string(),
        }
    }

    #[test]
    fn bare_names_get_the_mail_name() {
        assert_eq!(
            q(" root (Cron Daemon)\n"),
            " root@host.example (Cron Daemon)\n"
        );
        assert_eq!(q(" Anacron <root>\n"), " Anacron <root@host.example>\n");
        assert_eq!(q(" bob\n"), " bob@host.example\n");
        assert_eq!(q(" bob"), " bob@host.example");
        assert_eq!(q(" first.last\n"), " first.last@host.example\n");
        assert_eq!(q(" \"odd name\"\n"), " \"odd name\"@host.example\n");
        assert_eq!(
            q(" \"Doe, John\" <jd>, carol (C. \"x\" (nested))\n"),
            " \"Doe, John\" <jd@host.example>, carol@host.example (C. \"x\" (nested))\n"
        );
    }

    #[test]
    fn folding_groups_and_routes_are_kept() {
        assert_eq!(
            q(" alice,\n\tbob (Bob),\n carol@x.example\n"),
            " alice@host.example,\n\tbob@host.example (Bob),\n carol@x.example\n"
        );
        assert_eq!(
            q(" team: alice, Bob <bob>;, dave\n"),
            " team: alice@host.example, Bob <bob@host.example>;, dave@host.example\n"
        );
        assert_eq!(
            q(" undisclosed-recipients:;\n"),
            " undisclosed-recipients:;\n"
        );
        assert_eq!(
            q(" <@relay.example:bob>\n"),
            " <@relay.example:bob@host.example>\n"
        );
        assert_eq!(
            q(" <root (the admin)>\n"),
            " <root@host.example (the admin)>\n"
        );
    }

    #[test]
    fn what_is_not_a_bare_local_part_stays() {
        for v in [
            " alice@x.example\n",
            " Alice <alice@x.example>\n",
            " John Smith\n",
            " <>\n",
            " \"unclosed\n",
            " (unclosed comment\n",
            " bob@[127.0.0.1]\n",
            " =?UTF-8?Q?J=C3=BCrgen?= <j@x.example>\n",
            "\n",
        ] {
            assert_eq!(q(v), v, "{v:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the field holds, qualifying only inserts `@domain`.
        #[test]
        fn only_the_domain_is_inserted(v in proptest::collection::vec(
            proptest::sample::select(b" \t\n\"()[]<>:;,@.\\ab\xc3\xbc".to_vec()), 0..40)) {
            if let Some(out) = qualify_value(&v, "H") {
                let strip = |b: &[u8]| -> Vec<u8> {
                    String::from_utf8_lossy(b).replace("@H", "").into_bytes()
                };
                proptest::prop_assert_eq!(strip(&out), strip(&v));
                proptest::prop_assert!(out.len() > v.len());
            }
        }
    }

    #[test]
    fn eight_bit_display_names_are_kept_byte_for_byte() {
        let v = " J\u{fc}rgen <juergen>\n";
        assert_eq!(q(v), " J\u{fc}rgen <juergen@host.example>\n");
    }
}
