//! Property-based fuzzing of the pure parsers: `dma.conf`, `auth.conf`, the
//! aliases file, message intake, the queue envelope, address validation and
//! the command line.
//!
//! Every parser must survive arbitrary input without panicking, and every
//! error must name the file and a line that exists. Where a parser has an
//! inverse (envelope), or a file can be generated together with its meaning
//! (aliases, auth.conf), the meaning must come back out.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use dma_rs::address;
use dma_rs::config::aliases::{AliasError, AliasTarget, Aliases};
use dma_rs::config::auth::{AuthEntry, AuthFile, SecretSource};
use dma_rs::config::conf::{ConfError, Config};
use dma_rs::intake::{IntakeError, Options, Read, Stamp, read_message};
use dma_rs::spool::envelope::{
    Envelope, MAGIC, MAGIC_V1, MAGIC_V3, Origin, Rcpt, State, decode, encode,
};

/// Enough cases to find shallow bugs while keeping the file fast in debug
/// builds; no regression files are written (this is a shared tree).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generic strategies
// ---------------------------------------------------------------------------

/// Any Unicode text, control characters included (proptest's `char`
/// strategy favours NUL, CR, LF, `%`, `"`, `\`, multi-byte characters...).
fn unicode(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Text over a small alphabet, to hit the parsers' special characters often.
fn dense(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
    vec(select(alphabet), 0..max).prop_map(String::from_iter)
}

/// Lines joined by LF or CRLF, with or without a final line end.
fn join_lines(
    line: impl Strategy<Value = String>,
    max_lines: usize,
) -> impl Strategy<Value = String> {
    (vec(line, 0..max_lines), any::<bool>(), any::<bool>()).prop_map(|(lines, crlf, last)| {
        let sep = if crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(sep);
        if last && !lines.is_empty() {
            text.push_str(sep);
        }
        text
    })
}

/// A file name to report errors against.
fn file_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/etc/dma/dma.conf".to_string()),
        "/[a-zA-Z0-9 ._:-]{0,20}",
        unicode(12),
    ]
}

/// The number of lines an error may name: `split('\n')`, so a text without a
/// final newline still counts its last line.
fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

fn nth_line(text: &str, line: usize) -> &str {
    text.split('\n').nth(line - 1).unwrap_or("")
}

// ---------------------------------------------------------------------------
// dma.conf
// ---------------------------------------------------------------------------

const CONF_KEYS: &[&str] = &[
    "SECURETRANSFER",
    "STARTTLS",
    "OPPORTUNISTIC_TLS",
    "VERIFYCERT",
    "INSECURE",
    "DEFER",
    "FULLBOUNCE",
    "NULLCLIENT",
    "SMARTHOST",
    "PORT",
    "ALIASES",
    "SPOOLDIR",
    "AUTHPATH",
    "CERTFILE",
    "MAILNAME",
    "MASQUERADE",
    "FINGERPRINT",
    "MAILSPOOL",
    "QUEUE_LIFETIME",
    "RETRY_MIN",
    "RETRY_MAX",
    "starttls",
    "FOO",
    "",
];

/// A value of exactly 64 bytes (the length FINGERPRINT wants) made of hex
/// digits and multi-byte characters.
fn sixty_four_bytes() -> impl Strategy<Value = String> {
    vec(select(&['0', 'f', 'A', 'é', '€', '🕴', ' '][..]), 0..40).prop_map(|chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > 64 {
                break;
            }
            s.push(c);
        }
        while s.len() < 64 {
            s.push('0');
        }
        s
    })
}

fn conf_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,6}[smhdw]?",
        "[ \t]*[0-9]{1,22}[smhd]?[ \t]*",
        "[0-9a-fA-F]{62,66}",
        "[a-z.@-]{0,20}",
        dense(&['a', '@', '-', '<', '>', ' ', '"', '\t', '\r', '#'], 12),
        unicode(70),
    ]
}

fn conf_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            select(CONF_KEYS),
            select(&["", " ", "\t", "  ", " \t"][..]),
            conf_value(),
            option::of("#[^\n]{0,10}"),
        )
            .prop_map(|(k, sep, v, comment)| format!("{k}{sep}{v}{}", comment.unwrap_or_default())),
        1 => unicode(30).prop_map(|s| s.replace('\n', "")),
        1 => "[ \t]*(#[^\n]{0,10})?",
    ]
}

/// The error invariants of `Config::parse`.
fn check_conf(path: &str, text: &str) -> Result<(), TestCaseError> {
    let e: ConfError = match Config::parse(Path::new(path), text) {
        Ok(c) => {
            prop_assert_eq!(c.path.as_path(), Path::new(path));
            prop_assert!(!c.nullclient || c.smarthost.is_some());
            prop_assert!(c.retry_min <= c.retry_max);
            return Ok(());
        }
        Err(e) => e,
    };
    prop_assert_eq!(&e.path, path);
    let shown = e.to_string();
    let prefix = format!("syntax error in {path}:{}", e.line);
    prop_assert!(shown.starts_with(&prefix), "{:?} lacks {:?}", shown, prefix);
    if e.line == 0 {
        // Only the whole-file checks have no line.
        let reason = e.reason.clone().unwrap_or_default();
        prop_assert!(
            reason.contains("NULLCLIENT") || reason.contains("RETRY_MIN"),
            "line 0 for a line error: {:?}",
            e
        );
    } else {
        prop_assert!(e.line <= line_count(text), "{:?} past the end", e);
        // The named line is wrong by itself: parsed alone, it fails the same way.
        let alone = nth_line(text, e.line);
        let again = Config::parse(Path::new(path), alone);
        prop_assert!(again.is_err(), "line {} alone ({:?}) parses", e.line, alone);
        let again = again.unwrap_err();
        prop_assert_eq!(again.line, 1);
        prop_assert_eq!(again.reason, e.reason);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// auth.conf
// ---------------------------------------------------------------------------

fn auth_line() -> impl Strategy<Value = String> {
    prop_oneof![
        dense(&['a', '|', ':', ' ', '\t', '#', '\r', 'é'], 12),
        unicode(20).prop_map(|s| s.replace('\n', "")),
        Just(String::new()),
        "#[^\n]{0,10}",
    ]
}

fn check_auth(path: &str, text: &str) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    match AuthFile::parse(Path::new(path), text) {
        Ok(f) => {
            let meaningful = lines
                .iter()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count();
            prop_assert_eq!(f.entries.len(), meaningful);
        }
        Err(e) => {
            prop_assert_eq!(&e.path, path);
            prop_assert_eq!(
                e.to_string(),
                format!("syntax error in authfile {path}:{}", e.line)
            );
            prop_assert!(e.line >= 1 && e.line <= lines.len(), "{:?}", e);
            let bad = lines[e.line - 1];
            prop_assert!(!bad.is_empty() && !bad.starts_with('#'), "{:?}", bad);
            let well_formed = bad
                .split_once('|')
                .is_some_and(|(_, rest)| rest.contains([':', '|', ' ', '\t']));
            prop_assert!(!well_formed, "line {:?} is fine", bad);
        }
    }
    Ok(())
}

/// One credential that can be written as a line: the login has no `|` and
/// does not start with `#`, the host has no separator, the password has no
/// line end and does not end with CR.
fn auth_entry() -> impl Strategy<Value = (AuthEntry, char)> {
    (
        "([^|\n\r#][^|\n\r]{0,8})?",
        "[^:| \t\n\r]{0,12}",
        select(&[':', '|', ' ', '\t'][..]),
        "([^\n]{0,12}[^\n\r])?",
    )
        .prop_map(|(login, host, sep, password)| {
            // `login|host|command` is our extension: a command, not a password.
            let secret = if sep == '|' {
                SecretSource::Command(password)
            } else {
                SecretSource::Password(password)
            };
            (
                AuthEntry {
                    login,
                    host,
                    secret,
                },
                sep,
            )
        })
}

// ---------------------------------------------------------------------------
// aliases
// ---------------------------------------------------------------------------

fn check_aliases(path: &str, text: &str) -> Result<(), TestCaseError> {
    match Aliases::parse(Path::new(path), text) {
        Ok(a) => {
            for entry in &a.entries {
                prop_assert!(!entry.name.is_empty());
                prop_assert!(!entry.targets.is_empty());
                prop_assert!(entry.line >= 1 && entry.line <= line_count(text));
            }
        }
        Err(e) => {
            let e: AliasError = e;
            prop_assert_eq!(&e.path, path);
            let shown = e.to_string();
            let prefix = format!("{path}:{}: syntax error: ", e.line);
            prop_assert!(shown.starts_with(&prefix), "{:?} lacks {:?}", shown, prefix);
            prop_assert!(e.line >= 1 && e.line <= line_count(text), "{:?}", e);
            // An entry starts on a line with something on it.
            let first = nth_line(text, e.line);
            prop_assert!(
                !first.trim().is_empty(),
                "entry starts on blank {:?}",
                first
            );
        }
    }
    Ok(())
}

const ALIAS_CHARS: &[char] = &[
    'a', 'b', ':', ',', '"', '|', '/', '#', '\\', ' ', '\t', '\n', '\r', '@', '*', '-', '\0', 'é',
];

fn alias_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,10}"
}

fn alias_target() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,10}(@[a-z][a-z0-9-]{0,8}\\.[a-z]{2,4})?"
}

/// Targets with how each is introduced: the separator after the previous
/// one, and whether it starts a tab-led continuation line.
type Placed = Vec<(String, &'static str, bool)>;

/// Distinct names, each with its targets.
fn alias_file() -> impl Strategy<Value = Vec<(String, Placed)>> {
    btree_map(
        alias_name(),
        vec(
            (
                alias_target(),
                select(&[", ", " "][..]),
                prop::bool::weighted(0.3),
            ),
            1..6,
        ),
        1..8,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// Renders the generated entries, one `Vec` of physical lines per entry.
fn render_aliases(entries: &[(String, Placed)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, targets) in entries {
        let mut cur = format!("{name}:");
        for (i, (target, sep, newline)) in targets.iter().enumerate() {
            if i > 0 {
                cur.push_str(sep);
            }
            if *newline {
                lines.push(std::mem::take(&mut cur));
                cur.push('\t');
            } else if i == 0 {
                cur.push(' ');
            }
            cur.push_str(target);
        }
        lines.push(cur);
    }
    lines
}

fn names_and_targets(a: &Aliases) -> Vec<(String, Vec<AliasTarget>)> {
    a.entries
        .iter()
        .map(|e| (e.name.clone(), e.targets.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// intake
// ---------------------------------------------------------------------------

fn stamp() -> Stamp {
    Stamp {
        id: "0000000000000001".into(),
        sender: "alice@host.example".into(),
        user: "alice".into(),
        uid: 1000,
        hostname: "host.example".into(),
        date: "Sun, 29 Nov 2026 10:00:00 +0000".into(),
    }
}

fn intake(input: &[u8], opts: &Options) -> (Result<Read, IntakeError>, Vec<u8>) {
    let mut out = Vec::new();
    let r = read_message(&mut &input[..], &mut out, opts, &stamp());
    (r, out)
}

/// What holds for every message intake accepts (but see [`check_no_crlf`]).
fn check_intake_output(out: &[u8], read: &Read) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(out);
    prop_assert!(out.starts_with(b"Received: "), "{:?}", shown);
    prop_assert_eq!(read.size, out.len() as u64);
    for line in out.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        prop_assert!(
            !line.to_ascii_lowercase().starts_with(b"bcc:"),
            "Bcc kept in {:?}",
            shown
        );
    }
    Ok(())
}

/// The spool holds LF line ends only.
fn check_no_crlf(out: &[u8]) -> Result<(), TestCaseError> {
    if let Some(i) = out.windows(2).position(|w| w == b"\r\n") {
        let context = &out[i.saturating_sub(40)..(i + 2)];
        prop_assert!(
            false,
            "CRLF at byte {} of {}: {:?}",
            i,
            out.len(),
            String::from_utf8_lossy(context)
        );
    }
    Ok(())
}

fn intake_options() -> impl Strategy<Value = Options> {
    (any::<bool>(), any::<bool>()).prop_map(|(extract_rcpts, ignore_dots)| Options {
        extract_rcpts,
        ignore_dots,
        full_name: None,
        size_limit: 0,
    })
}

/// A message made of header-ish, body-ish and junk lines, LF or CRLF ended.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        3 => select(
            &[
                "Bcc: secret@x",
                "bcc:",
                "BCC:a@b, c@d",
                "To: a@b.org",
                "Cc: \"x, y\" <c@d.org>, e@f",
                "to: group: a@b, -oQ@x;",
                "From me Sun Nov 29",
                ">From me",
                "From: x@y",
                "Date: now",
                "Message-ID: <a@b>",
                "Subject: hi",
                ".",
                "",
                "\r",
                " folded",
                "\tbcc: folded",
                "X: a\rBcc: b",
                "Bcc : spaced",
                ":empty name",
            ][..],
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => vec(any::<u8>(), 0..20),
    ];
    (
        vec((line, select(&["\n", "\r\n", "\r\r\n", "\n\r"][..])), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, cut)| {
            let mut m = Vec::new();
            for (l, end) in lines {
                m.extend_from_slice(&l);
                m.extend_from_slice(end.as_bytes());
            }
            if cut {
                m.pop();
            }
            m
        })
}

fn simple_addr() -> impl Strategy<Value = String> {
    "[a-z]{1,8}@[a-z]{1,8}\\.org"
}

fn addr_list(min: usize) -> impl Strategy<Value = Vec<(String, bool)>> {
    vec((simple_addr(), prop::bool::weighted(0.3)), min..5)
}

fn render_addr_list(name: &str, list: &[(String, bool)]) -> String {
    let mut s = format!("{name}:");
    for (i, (addr, fold)) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(if *fold { "\n\t" } else { " " });
        s.push_str(addr);
    }
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------
// envelope
// ---------------------------------------------------------------------------

/// Text with the characters an envelope must neutralize.
fn envelope_text() -> impl Strategy<Value = String> {
    prop_oneof![
        unicode(20),
        dense(&[' ', '\n', '\r', '%', 'a', '0', 'F', 'é', '\0', '🕴'], 12),
    ]
}

fn state() -> impl Strategy<Value = State> {
    select(
        &[
            State::Pending,
            State::Deferred,
            State::Delivered,
            State::Expanded,
            State::Failed { bounced: false },
            State::Failed { bounced: true },
        ][..],
    )
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let rcpt = (
        envelope_text().prop_filter("rcpt must not be empty", |s| !s.is_empty()),
        option::of(any::<usize>()),
        state(),
        prop_oneof![Just(0u32), any::<u32>()],
        prop_oneof![Just(0i64), any::<i64>()],
        option::of(envelope_text()),
    );
    (
        envelope_text().prop_filter("id must not be empty", |s| !s.is_empty()),
        any::<i64>(),
        envelope_text(),
        envelope_text(),
        any::<u32>(),
        any::<bool>(),
        vec(rcpt, 1..5),
    )
        .prop_map(
            |(id, created, sender, user, uid, double_bounce, rcpts)| Envelope {
                dsn: dma_rs::spool::Dsn {
                    notify: double_bounce.then(|| "NEVER".to_string()),
                    ret: (created % 2 == 0).then(|| "FULL".to_string()),
                    envid: (uid % 3 == 0).then(|| format!("id {sender}")),
                },
                id,
                created,
                sender,
                user,
                uid,
                size: Some(u64::from(uid) * 7),
                double_bounce,
                held: (uid % 5 == 0).then_some(created),
                dkim: Vec::new(),
                rcpts: rcpts
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (addr, parent, state, attempts, next_try, reply))| Rcpt {
                            addr,
                            // A parent comes before its child.
                            parent: parent.filter(|_| i > 0).map(|p| p % i),
                            origin: match attempts % 3 {
                                0 => None,
                                1 => Some(Origin::Forward(format!("u{next_try}"))),
                                _ => Some(Origin::Alias(format!("a b%{i}"))),
                            },
                            state,
                            attempts,
                            next_try,
                            reply,
                            mta: None,
                            smtp: None,
                            inflight: (attempts % 2 == 1).then_some(next_try),
                        },
                    )
                    .collect(),
            },
        )
}

const ENVELOPE_KEYS: &[&str] = &[
    "origin",
    "id",
    "created",
    "sender",
    "user",
    "uid",
    "double-bounce",
    "held",
    "rcpt",
    "parent",
    "state",
    "attempts",
    "next-try",
    "reply",
    "mta",
    "smtp",
    "dsn-notify",
    "dsn-ret",
    "dsn-envid",
    "dkim",
    "inflight",
    "size",
    "end",
    "color",
    "",
];

fn envelope_file() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "-?[0-9]{0,21}",
        "%[0-9A-Fa-f+-]{0,2}[a-z%]{0,3}",
        select(&["pending", "deferred", "bounced", "weird", "yes"][..]).prop_map(String::from),
        envelope_text(),
    ];
    let line = prop_oneof![
        8 => (select(ENVELOPE_KEYS), select(&[" ", "", "  "][..]), value)
            .prop_map(|(k, sep, v)| format!("{k}{sep}{v}")),
        1 => Just(String::new()),
        1 => unicode(12),
    ];
    (0..4u8, vec(line, 0..14)).prop_map(|(magic, lines)| {
        let mut text = match magic {
            0 => format!("{MAGIC}\n"),
            1 => format!("{MAGIC_V1}\n"),
            2 => format!("{MAGIC_V3}\n"),
            _ => String::new(),
        };
        text.push_str(&lines.join("\n"));
        text
    })
}

// ---------------------------------------------------------------------------
// command line
// ---------------------------------------------------------------------------

fn cli_arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => "-[A-Za-z]{0,4}".prop_map(OsString::from),
        2 => "-[ABCDFLNORVXbdfhioqrtv][ -~]{0,6}".prop_map(OsString::from),
        2 => select(
            &[
                "-", "--", "-f", "-r", "-F", "-C", "-L", "-b", "-A", "-o", "-q", "-bp", "-bs",
                "-bv", "-bi", "-Ap", "-Ac", "-odq", "-odi", "-q5m", "-q=1h", "--help", "--x=y",
                "-f=", "root", "",
            ][..],
        )
        .prop_map(OsString::from),
        1 => "--[a-z=-]{0,8}".prop_map(OsString::from),
        1 => unicode(10).prop_map(OsString::from),
        1 => (any::<bool>(), vec(any::<u8>(), 0..6)).prop_map(|(dash, mut bytes)| {
            // Not UTF-8.
            if dash {
                bytes.insert(0, b'-');
            }
            bytes.push(0xff);
            OsString::from_vec(bytes)
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    // ------------------------------------------------------------- dma.conf

    #[test]
    fn conf_arbitrary_text(path in file_path(), text in unicode(200)) {
        check_conf(&path, &text)?;
    }

    #[test]
    fn conf_key_value_lines(path in file_path(), text in join_lines(conf_line(), 10)) {
        check_conf(&path, &text)?;
    }

    #[test]
    fn conf_fingerprint_of_64_bytes(value in sixty_four_bytes()) {
        check_conf("/etc/dma/dma.conf", &format!("FINGERPRINT {value}\n"))?;
    }

    #[test]
    fn conf_comments_and_cr_do_not_matter(
        lines in vec(
            (
                select(&["STARTTLS", "PORT 587", "SMARTHOST mx.example.org", "DEFER",
                         "QUEUE_LIFETIME 2d", "RETRY_MIN 1m", "MASQUERADE john@"][..]),
                option::of("#[^\n]{0,12}"),
                any::<bool>(),
            ),
            0..8,
        ),
    ) {
        let plain: String = lines.iter().map(|(l, _, _)| format!("{l}\n")).collect();
        let decorated: String = lines
            .iter()
            .map(|(l, comment, cr)| {
                let comment = comment.as_deref().unwrap_or("");
                let cr = if *cr { "\r" } else { "" };
                format!("{l}{comment}{cr}\n# a comment line\n\n")
            })
            .collect();
        let path = Path::new("/etc/dma/dma.conf");
        prop_assert_eq!(Config::parse(path, &plain), Config::parse(path, &decorated));
    }

    // ------------------------------------------------------------ auth.conf

    #[test]
    fn auth_arbitrary_text(path in file_path(), text in unicode(200)) {
        check_auth(&path, &text)?;
    }

    #[test]
    fn auth_dense_lines(path in file_path(), text in join_lines(auth_line(), 10)) {
        check_auth(&path, &text)?;
    }

    #[test]
    fn auth_generated_entries_come_back(
        entries in vec(auth_entry(), 0..8),
        comments in vec(option::of("#[^\n]{0,10}"), 8),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for ((e, sep), comment) in entries.iter().zip(&comments) {
            if let Some(c) = comment {
                text.push_str(c);
                text.push_str(end);
            }
            let secret = match &e.secret {
                SecretSource::Password(p) | SecretSource::Command(p) => p,
            };
            text.push_str(&format!("{}|{}{sep}{}{end}", e.login, e.host, secret));
        }
        let f = AuthFile::parse(Path::new("auth.conf"), &text);
        prop_assert!(f.is_ok(), "{:?}: {:?}", text, f);
        let want: Vec<AuthEntry> = entries.into_iter().map(|(e, _)| e).collect();
        prop_assert_eq!(f.unwrap().entries, want);
    }

    // -------------------------------------------------------------- aliases

    #[test]
    fn aliases_arbitrary_text(path in file_path(), text in unicode(200)) {
        check_aliases(&path, &text)?;
    }

    #[test]
    fn aliases_dense_text(path in file_path(), text in dense(ALIAS_CHARS, 120)) {
        check_aliases(&path, &text)?;
    }

    #[test]
    fn aliases_generated_entries_come_back(entries in alias_file(), crlf in any::<bool>()) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = render_aliases(&entries)
            .iter()
            .map(|l| format!("{l}{end}"))
            .collect();
        let a = Aliases::parse(Path::new("/etc/aliases"), &text);
        prop_assert!(a.is_ok(), "{:?}: {:?}", text, a);
        let a = a.unwrap();
        prop_assert_eq!(a.entries.len(), entries.len());
        for (name, targets) in &entries {
            let want: Vec<AliasTarget> = targets
                .iter()
                .map(|(t, _, _)| AliasTarget::Address(t.clone()))
                .collect();
            let got: Vec<AliasTarget> = a.lookup(name).into_iter().cloned().collect();
            prop_assert_eq!(got, want, "{:?}", text);
        }
    }

    #[test]
    fn aliases_comments_do_not_matter(
        entries in alias_file(),
        decorations in vec(
            (
                option::of("[ \t]?#[^\n]{0,12}"),
                option::of("[ \t]{0,2}#[^\n]{0,12}"),
                prop::bool::weighted(0.2),
            ),
            40,
        ),
    ) {
        let lines = render_aliases(&entries);
        let plain: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut commented = String::new();
        for (line, (trailing, before, blank)) in lines.iter().zip(&decorations) {
            if let Some(c) = before {
                commented.push_str(c);
                commented.push('\n');
            }
            if *blank {
                commented.push('\n');
            }
            commented.push_str(line);
            if let Some(c) = trailing {
                commented.push_str(c);
            }
            commented.push('\n');
        }
        commented.push_str("# the end\n");
        let path = Path::new("/etc/aliases");
        let a = Aliases::parse(path, &plain);
        let b = Aliases::parse(path, &commented);
        prop_assert!(a.is_ok(), "{:?}: {:?}", plain, a);
        prop_assert!(b.is_ok(), "{:?}: {:?}", commented, b);
        prop_assert_eq!(names_and_targets(&a.unwrap()), names_and_targets(&b.unwrap()));
    }

    // --------------------------------------------------------------- intake

    #[test]
    fn intake_arbitrary_bytes(input in vec(any::<u8>(), 0..600), opts in intake_options()) {
        let (r, out) = intake(&input, &opts);
        match r {
            Ok(read) => {
                check_intake_output(&out, &read)?;
                check_no_crlf(&out)?;
            }
            Err(IntakeError::BadHeaderAddress(_)) => prop_assert!(opts.extract_rcpts),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn intake_header_like_lines(input in message_bytes(), opts in intake_options()) {
        let (r, out) = intake(&input, &opts);
        match r {
            Ok(read) => {
                check_intake_output(&out, &read)?;
                check_no_crlf(&out)?;
            }
            Err(IntakeError::BadHeaderAddress(_)) => prop_assert!(opts.extract_rcpts),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn intake_output_has_no_crlf(input in message_bytes(), opts in intake_options()) {
        let (r, out) = intake(&input, &opts);
        if r.is_ok() {
            check_no_crlf(&out)?;
        }
    }

    #[test]
    fn intake_body_is_kept_with_ignore_dots(
        body in vec(
            prop_oneof![
                3 => vec(prop_oneof![0u8..10, 11u8..13, 14u8..=255], 0..30),
                1 => Just(b".".to_vec()),
                1 => Just(Vec::new()),
                1 => Just(b"Bcc: not a header".to_vec()),
            ],
            0..10,
        ),
        extract_rcpts in any::<bool>(),
    ) {
        let mut body_bytes = Vec::new();
        for line in &body {
            body_bytes.extend_from_slice(line);
            body_bytes.push(b'\n');
        }
        let mut input = b"Subject: x\n\n".to_vec();
        input.extend_from_slice(&body_bytes);
        let opts = Options { ignore_dots: true, extract_rcpts, full_name: None, size_limit: 0 };
        let (r, out) = intake(&input, &opts);
        let read = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_intake_output(&out, &read)?;
        check_no_crlf(&out)?;
        prop_assert!(
            out.ends_with(&body_bytes),
            "{:?} does not end with {:?}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&body_bytes)
        );
        let header_end = out.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        prop_assert_eq!(header_end, Some(out.len() - body_bytes.len()));
    }

    #[test]
    fn intake_extracts_to_and_cc(
        to in addr_list(1),
        cc in addr_list(0),
        bcc in addr_list(0),
        names in (select(&["To", "to", "TO"][..]), select(&["Cc", "cc", "CC"][..]),
                  select(&["Bcc", "bcc", "BCC"][..])),
    ) {
        let mut input = String::from("Subject: s\n");
        input.push_str(&render_addr_list(names.0, &to));
        if !cc.is_empty() {
            input.push_str(&render_addr_list(names.1, &cc));
        }
        if !bcc.is_empty() {
            input.push_str(&render_addr_list(names.2, &bcc));
        }
        input.push_str("\nbody\n");
        let opts = Options { extract_rcpts: true, ..Options::default() };
        let (r, out) = intake(input.as_bytes(), &opts);
        let read = r.map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
        check_intake_output(&out, &read)?;
        check_no_crlf(&out)?;
        let want: Vec<String> = to.iter().chain(&cc).chain(&bcc).map(|(a, _)| a.clone()).collect();
        for addr in &want {
            prop_assert!(read.header_rcpts.contains(addr), "{} missing from {:?}", addr, read.header_rcpts);
        }
        prop_assert_eq!(&read.header_rcpts, &want, "{:?}", input);
    }

    #[test]
    fn intake_full_name_is_one_quoted_string(
        name in unicode(30).prop_map(|n| n.replace(|c: char| c < ' ' || c == '\x7f', "")),
        body in vec(any::<u8>(), 0..100),
    ) {
        // The caller (app.rs) refuses a -F name with control characters;
        // anything else must end up as one quoted string in one From: line.
        let mut input = b"Subject: x\n\n".to_vec();
        input.extend_from_slice(&body);
        let opts = Options { full_name: Some(name.clone()), ..Options::default() };
        let (r, out) = intake(&input, &opts);
        let read = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_intake_output(&out, &read)?;
        let text = String::from_utf8_lossy(&out);
        let header = &text[..text.find("\n\n").expect("a header section")];
        let from: Vec<&str> = header.lines().filter(|l| l.starts_with("From: ")).collect();
        prop_assert_eq!(from.len(), 1, "{:?}", header);
        if name.is_empty() {
            prop_assert_eq!(from[0], "From: <alice@host.example>");
        } else {
            let quoted = from[0]
                .strip_prefix("From: \"")
                .and_then(|f| f.strip_suffix("\" <alice@host.example>"));
            prop_assert!(quoted.is_some(), "{:?}", from[0]);
            let mut unquoted = String::new();
            let mut chars = quoted.unwrap_or_default().chars();
            while let Some(c) = chars.next() {
                prop_assert!(c != '"', "bare quote in {:?}", from[0]);
                unquoted.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            prop_assert_eq!(unquoted, name);
        }
    }

    // ------------------------------------------------------------- envelope

    #[test]
    fn envelope_round_trip_one_line_per_field(env in envelope()) {
        let text = env.serialize();
        let lines: Vec<&str> = text.lines().collect();
        prop_assert_eq!(lines[0], MAGIC);
        let count = |key: &str| lines.iter().filter(|l| l.starts_with(&format!("{key} "))).count();
        prop_assert_eq!(count("id"), 1);
        prop_assert_eq!(count("sender"), 1);
        prop_assert_eq!(count("user"), 1);
        prop_assert_eq!(count("rcpt"), env.rcpts.len());
        prop_assert_eq!(count("state"), env.rcpts.len());
        prop_assert_eq!(
            count("reply"),
            env.rcpts.iter().filter(|r| r.reply.is_some()).count()
        );
        prop_assert_eq!(
            count("parent"),
            env.rcpts.iter().filter(|r| r.parent.is_some()).count()
        );
        prop_assert_eq!(
            count("origin"),
            env.rcpts.iter().filter(|r| r.origin.is_some()).count()
        );
        // Magic, id, created, sender, user, uid, size, ..., end.
        let expected = 1
            + 7
            + usize::from(env.double_bounce)
            + usize::from(env.held.is_some())
            + usize::from(env.dsn.notify.is_some())
            + usize::from(env.dsn.ret.is_some())
            + usize::from(env.dsn.envid.is_some())
            + env
                .rcpts
                .iter()
                .map(|r| {
                    2 + usize::from(r.parent.is_some())
                        + usize::from(r.origin.is_some())
                        + usize::from(r.attempts > 0)
                        + usize::from(r.next_try != 0)
                        + usize::from(r.reply.is_some())
                        + usize::from(r.mta.is_some())
                        + usize::from(r.smtp.is_some())
                        + usize::from(r.inflight.is_some())
                })
                .sum::<usize>();
        prop_assert_eq!(lines.len(), expected, "{:?}", text);
        prop_assert!(text.ends_with('\n') && !text.contains('\r'));
        for line in &lines[1..] {
            prop_assert_eq!(line.matches(' ').count(), 1, "{:?}", line);
        }
        prop_assert_eq!(Envelope::parse(&text), Ok(env));
    }

    #[test]
    fn envelope_parse_arbitrary_text(text in unicode(300)) {
        if let Err(e) = Envelope::parse(&text) {
            prop_assert!(e.line >= 1 && e.line <= line_count(&text), "{:?}", e);
        }
    }

    #[test]
    fn envelope_parse_key_value_lines(text in envelope_file()) {
        match Envelope::parse(&text) {
            Ok(env) => {
                prop_assert!(!env.id.is_empty() && !env.rcpts.is_empty());
                for (i, r) in env.rcpts.iter().enumerate() {
                    prop_assert!(!r.addr.is_empty());
                    prop_assert!(r.parent.is_none_or(|p| p < i));
                }
            }
            Err(e) => prop_assert!(e.line >= 1 && e.line <= line_count(&text), "{:?}", e),
        }
    }

    #[test]
    fn envelope_parse_truncated(env in envelope(), cut in any::<prop::sample::Index>()) {
        let text = env.serialize();
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let _ = Envelope::parse(&text[..at]);
    }

    #[test]
    fn encode_decode_round_trip(s in envelope_text()) {
        let e = encode(&s);
        prop_assert!(e.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", e);
        prop_assert_eq!(decode(&e), Some(s));
    }

    #[test]
    fn decode_arbitrary_text(s in prop_oneof![unicode(30), "[%0-9A-Fa-f+-]{0,12}"]) {
        let d = decode(&s);
        if !s.contains('%') {
            // Nothing to decode: the text comes back as it is.
            prop_assert_eq!(d, Some(s));
        }
    }

    // -------------------------------------------------------------- address

    #[test]
    fn validate_accepts_nothing_dangerous(
        addr in prop_oneof![
            unicode(30),
            dense(&['a', '@', '-', '"', '\\', ' ', '\t', '\r', '\n', '\0', '<', '>', '\x7f'], 16),
            "-?[a-z@.]{505,520}",
        ],
    ) {
        if address::validate(&addr).is_ok() {
            prop_assert!(!addr.is_empty());
            prop_assert!(addr.len() <= address::MAX_LEN);
            prop_assert!(!addr.bytes().any(|b| b < 0x20 || b == 0x7f), "{:?}", addr);
            prop_assert!(!addr.starts_with('-'), "{:?}", addr);
        }
    }

    // ---------------------------------------------------------- command line

    #[test]
    fn cli_errors_are_usage_errors(
        progname in select(&["sendmail", "mailq", "newaliases", "dma", ""][..]),
        args in vec(cli_arg(), 0..8),
    ) {
        let n = args.len();
        match dma_rs::cli::parse(progname, args) {
            Ok(inv) => prop_assert!(inv.rcpts.len() <= n),
            Err(e) => {
                prop_assert_eq!(e.code, 64, "{:?}", e);
                prop_assert_eq!(e.code, dma_rs::exit::EX_USAGE);
                prop_assert!(!e.msg.is_empty());
            }
        }
    }
}

/// Intake copies body lines in chunks of 64 KiB (`BODY_CHUNK`, private).
const BODY_CHUNK: usize = 64 * 1024;

proptest! {
    // Few cases: every one pushes a 64 KiB line through intake.
    #![proptest_config(ProptestConfig { cases: 24, ..config() })]

    #[test]
    fn intake_long_crlf_lines_have_no_crlf(
        len in (BODY_CHUNK - 3)..=(BODY_CHUNK + 1),
        ignore_dots in any::<bool>(),
    ) {
        let mut input = b"Subject: long\r\n\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', len));
        input.extend_from_slice(b"\r\nend\r\n");
        let opts = Options { ignore_dots, ..Options::default() };
        let (r, out) = intake(&input, &opts);
        let read = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_intake_output(&out, &read)?;
        check_no_crlf(&out)?;
        prop_assert!(out.ends_with(b"x\nend\n"));
    }

    #[test]
    fn intake_long_lf_lines_are_kept(
        len in (BODY_CHUNK - 3)..=(BODY_CHUNK + 1),
        ignore_dots in any::<bool>(),
    ) {
        let mut input = b"Subject: long\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', len));
        input.extend_from_slice(b"\n.\nend\n");
        let opts = Options { ignore_dots, ..Options::default() };
        let (r, out) = intake(&input, &opts);
        let read = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_intake_output(&out, &read)?;
        check_no_crlf(&out)?;
        let mut body = vec![b'x'; len];
        body.extend_from_slice(if ignore_dots { &b"\n.\nend\n"[..] } else { b"\n" });
        prop_assert!(out.ends_with(&body));
        let header_end = out.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        prop_assert_eq!(header_end, Some(out.len() - body.len()));
    }
}
