//! Control characters in text that came from elsewhere (a server's reply, a
//! certificate, a DNS answer), made visible before the text reaches the
//! queue, `mailq`, a log line or a bounce.
//!
//! The form is C's: `\r`, `\n`, `\t`, `\\`, `\x1b` for the other C0 bytes
//! and DEL, `\u{9b}` for the C1 controls (which terminals also obey). It is
//! what `printf '%q'`, Rust's `escape_debug` and most log tools print, so an
//! administrator reads it at once, and unlike caret notation (`^[`) it cannot
//! be mistaken for text a server may legitimately send (`^` is common, a
//! backslash is doubled). Everything else, including any valid UTF-8, is
//! kept as it is.
//!
//! Two functions: [`escape`] is applied once, where foreign text enters our
//! state (reply parsing); it doubles backslashes, so its output is
//! unambiguous. [`controls`] is the defensive pass at every output: it
//! escapes control characters only, so text that was escaped already passes
//! through it unchanged (no `\\\\` from a second pass).

use std::borrow::Cow;

/// Escapes control characters and backslashes: for foreign text entering
/// our state. The result has no control character.
pub fn escape(s: &str) -> Cow<'_, str> {
    encode(s, true)
}

/// Escapes control characters only, leaving backslashes: the defensive pass
/// at outputs, idempotent on the output of [`escape`].
pub fn controls(s: &str) -> Cow<'_, str> {
    encode(s, false)
}

/// Characters that are no control characters but move or reorder what a
/// terminal or log viewer shows: the Unicode line and paragraph separators
/// and the bidirectional overrides, embeddings and isolates (a line that
/// reads other than it is).
fn is_format(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

fn encode(s: &str, backslash: bool) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| c.is_control() || is_format(c) || (backslash && c == '\\'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (input, escaped, controls_only) in [
            ("plain text", "plain text", "plain text"),
            ("Grüße, 日本", "Grüße, 日本", "Grüße, 日本"),
            ("a\x1b[2Jb", "a\\x1b[2Jb", "a\\x1b[2Jb"),
            (
                "bell\x07cr\rlf\ntab\t",
                "bell\\x07cr\\rlf\\ntab\\t",
                "bell\\x07cr\\rlf\\ntab\\t",
            ),
            ("nul\0del\x7f", "nul\\x00del\\x7f", "nul\\x00del\\x7f"),
            ("csi\u{9b}31m", "csi\\u{9b}31m", "csi\\u{9b}31m"),
            (
                "ls\u{2028}rlo\u{202e}x",
                "ls\\u{2028}rlo\\u{202e}x",
                "ls\\u{2028}rlo\\u{202e}x",
            ),
            ("back\\slash", "back\\\\slash", "back\\slash"),
            ("\\x1b", "\\\\x1b", "\\x1b"),
        ] {
            assert_eq!(escape(input), escaped, "{input:?}");
            assert_eq!(controls(input), controls_only, "{input:?}");
            // The output pass leaves escaped text alone.
            assert_eq!(controls(&escape(input)), escape(input), "{input:?}");
            assert!(!escape(input).chars().any(char::is_control));
        }
    }
}
