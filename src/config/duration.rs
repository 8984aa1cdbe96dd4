//! Durations written `<n>s|m|h|d` in dma.conf (`QUEUE_LIFETIME 5d`).

use std::time::Duration;

/// Parses `90s`, `5m`, `4h`, `5d`; a bare number is seconds. `None` when the
/// text is not such a duration or overflows.
pub fn parse(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (digits, mult) = match t.as_bytes().last()? {
        b's' => (&t[..t.len() - 1], 1u64),
        b'm' => (&t[..t.len() - 1], 60),
        b'h' => (&t[..t.len() - 1], 3600),
        b'd' => (&t[..t.len() - 1], 86400),
        b'0'..=b'9' => (t, 1),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(mult).map(Duration::from_secs)
}

/// Formats a duration the way [`parse`] reads it, in the largest exact unit.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [('d', 86400), ('h', 3600), ('m', 60)] {
        if s != 0 && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (text, secs) in [
            ("90s", Some(90)),
            ("5m", Some(300)),
            ("4h", Some(14400)),
            ("5d", Some(432000)),
            ("17", Some(17)),
            (" 2m ", Some(120)),
            ("", None),
            ("m", None),
            ("5w", None),
            ("-5m", None),
            ("1.5h", None),
            ("99999999999999999999d", None),
        ] {
            assert_eq!(parse(text).map(|d| d.as_secs()), secs, "{text:?}");
        }
        assert_eq!(format(Duration::from_secs(432000)), "5d");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
