//! proptest over the SMTP client's parsers and formatters: replies (any
//! bytes from a hostile server), the DATA encoding (no bare CR or LF, no
//! line over 998 octets, the message comes back after un-stuffing), and
//! the commands a session writes for arbitrary envelopes.

use dma_rs::smtp::body::{MAX_LINE, write_data};
use dma_rs::smtp::reply::{ReplyReader, parse};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut r = ReplyReader::new();
        let mut s = &bytes[..];
        for _ in 0..5 {
            if r.read(&mut s).is_err() {
                break;
            }
        }
        let _ = parse(&bytes);
    }

    #[test]
    fn well_formed_replies_parse(code in 200u16..600, lines in prop::collection::vec("[ -~]{0,40}", 1..6)) {
        let n = lines.len();
        let mut raw = String::new();
        for (i, l) in lines.iter().enumerate() {
            raw.push_str(&format!("{code}{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }));
        }
        raw.push_str("250 next\r\n");
        let mut r = ReplyReader::new();
        let mut s = raw.as_bytes();
        let reply = r.read(&mut s).unwrap();
        prop_assert_eq!(reply.code, code);
        prop_assert_eq!(reply.lines.len(), n);
        prop_assert!(!reply.one_line().contains(['\r', '\n']));
        prop_assert_eq!(r.read(&mut s).unwrap().code, 250);
        let status = reply.status();
        prop_assert!(status.starts_with(&(code / 100).to_string()));
    }

    #[test]
    fn data_is_clean_and_comes_back(
        lines in prop::collection::vec("[ -~\u{80}-\u{10ffff}]{0,1200}", 0..8),
        prepend in prop::collection::vec("[A-Z][a-z-]{0,10}: [ -~]{0,30}", 0..3),
    ) {
        let msg: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut out = Vec::new();
        write_data(&mut msg.as_bytes(), &prepend, &mut out).unwrap();
        prop_assert!(out.ends_with(b"\r\n.\r\n") || out == b".\r\n");
        let text = out.clone();
        // Every line ends in CRLF, none is longer than 998 octets, no bare CR or LF.
        let body = &text[..text.len() - 3];
        for line in body.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            prop_assert!(line.ends_with(b"\r"), "line without CRLF");
            prop_assert!(line.len() - 1 <= MAX_LINE);
            prop_assert!(!line[..line.len() - 1].contains(&b'\r'));
        }
        // Folding never splits a character, and nothing is lost or
        // reordered: only CR, LF, the fold's space and stuffed dots are added.
        prop_assert!(String::from_utf8(body.to_vec()).is_ok(), "invalid UTF-8 after folding");
        let content = |b: &[u8]| -> Vec<u8> {
            b.iter().copied().filter(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'.')).collect()
        };
        let mut original: Vec<u8> = Vec::new();
        for h in &prepend {
            original.extend_from_slice(h.as_bytes());
        }
        original.extend_from_slice(msg.as_bytes());
        prop_assert_eq!(content(body), content(&original));
    }
}

proptest! {
    #![proptest_config(config())]

    /// ESMTP parameter values: xtext leaves no space, `+`, `=` or control
    /// character, and decodes back.
    #[test]
    fn xtext_is_safe_and_reversible(s in "\\PC{0,40}") {
        let x = dma_rs::smtp::session::xtext(&s);
        prop_assert!(x.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'='));
        let mut out = Vec::new();
        let b = x.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'+' {
                out.push(u8::from_str_radix(&x[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        prop_assert_eq!(String::from_utf8(out).unwrap(), s);
    }
}
