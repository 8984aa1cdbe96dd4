//! proptest over the `.forward` parser and the wire format between
//! dma-local and dma: no panic, errors carry a line of the file, what is
//! written comes back, and what crosses the privilege boundary is re-checked.

use dma_rs::forward::{Entry, MAX_ENTRIES, decode_entries, encode_entries, parse};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One entry and how a user might write it.
fn entry() -> impl Strategy<Value = (Entry, String)> {
    let user = "[a-z][a-z0-9_-]{0,8}";
    let cmd = "[a-zA-Z0-9 /._=$-]{1,30}";
    prop_oneof![
        user.prop_map(|u| (Entry::Address(u.clone()), u)),
        (user, "[a-z]{1,8}\\.org").prop_map(|(u, d)| {
            let a = format!("{u}@{d}");
            (Entry::Address(a.clone()), a)
        }),
        user.prop_map(|u| (Entry::Mailbox(u.clone()), format!("\\{u}"))),
        user.prop_map(|u| (Entry::Mailbox(u.clone()), format!("!{u}"))),
        cmd.prop_filter("not blank", |c| !c.trim().is_empty())
            .prop_map(|c| (
                Entry::Pipe(c.trim().to_string()),
                format!("\"|{}\"", c.trim())
            )),
        "[a-z]{1,8}(/[a-z]{1,8}){0,3}"
            .prop_map(|p| (Entry::File(format!("/{p}")), format!("/{p}"))),
        "[a-z]{1,8}(/[a-z]{1,8}){0,3}"
            .prop_map(|p| (Entry::Maildir(format!("/{p}/")), format!("/{p}/"))),
        // A quoted command with commas and a hash inside.
        "[a-z]{1,8}".prop_map(|a| (
            Entry::Pipe(format!("echo {a},{a} # x")),
            format!("\"|echo {a},{a} # x\"")
        )),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_panics_and_errors_name_a_line(text in any::<String>()) {
        if let Err(e) = parse(&text) {
            prop_assert!(e.line <= text.split('\n').count(), "line {} of {:?}", e.line, text);
        }
    }

    #[test]
    fn never_panics_on_forward_like_text(text in "([\\\\!|/#\", \n\ta-z@.:]{0,12}\n?){0,12}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.line <= text.split('\n').count());
        }
    }

    #[test]
    fn written_entries_come_back(
        entries in prop::collection::vec(entry(), 1..20),
        seps in prop::collection::vec(prop_oneof![Just(", "), Just("\n"), Just(" ,\t"), Just("\n# comment\n")], 20),
        crlf in any::<bool>(),
    ) {
        let mut text = String::from("# my .forward\n\n");
        for (i, (_, written)) in entries.iter().enumerate() {
            if i > 0 {
                text.push_str(seps[i]);
            }
            text.push_str(written);
        }
        text.push('\n');
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let want: Vec<Entry> = entries.into_iter().map(|(e, _)| e).collect();
        prop_assert_eq!(parse(&text).unwrap(), want);
    }

    #[test]
    fn wire_round_trip(entries in prop::collection::vec(entry(), 0..MAX_ENTRIES)) {
        let want: Vec<Entry> = entries.into_iter().map(|(e, _)| e).collect();
        prop_assert_eq!(decode_entries(&encode_entries(&want)), Some(want));
    }

    /// Whatever dma-local (or something pretending to be it) prints, what
    /// dma accepts is well-formed: no control characters, no address that
    /// is really a command, file or mailbox.
    #[test]
    fn wire_input_is_rechecked(text in "((pipe|file|maildir|mailbox|include|address|junk) [ -~]{0,20}\n){0,6}") {
        if let Some(entries) = decode_entries(&text) {
            for e in entries {
                match e {
                    Entry::Address(a) => prop_assert!(!a.starts_with(['|', '/', '\\', '-']) && !a.contains(['\n', '\r', ' '])),
                    Entry::Mailbox(u) => prop_assert!(!u.contains('/') && !u.is_empty()),
                    Entry::File(p) | Entry::Maildir(p) | Entry::Include(p) => prop_assert!(p.starts_with('/') && !p.split('/').any(|c| c == "..")),
                    Entry::Pipe(c) => prop_assert!(!c.is_empty() && !c.contains(['\n', '\r', '\0'])),
                }
            }
        }
    }
}
