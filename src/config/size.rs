//! Sizes written in dma.conf (`MESSAGE_SIZE_LIMIT 50M`, `SPOOL_MIN_FREE 5%`).
//!
//! A plain number is bytes; `K`, `M`, `G` (or `KB`, `MB`, `GB`, any case)
//! multiply by 1024, 1024², 1024³, as `du`, `df -h` and most Unix tools
//! count; `N%` is a share of a file system. `0` means no limit.

use std::fmt;

/// A size: absolute, or a percentage of something (a file system's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// This many bytes.
    Bytes(u64),
    /// This share, 0 to 100.
    Percent(u8),
}

impl Size {
    /// The size in bytes, `total` being what a percentage is of.
    pub fn of(self, total: u64) -> u64 {
        match self {
            Size::Bytes(n) => n,
            Size::Percent(p) => (total as u128 * p as u128 / 100) as u64,
        }
    }

    /// Whether this size is zero (a disabled limit).
    pub fn is_zero(self) -> bool {
        matches!(self, Size::Bytes(0) | Size::Percent(0))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Percent(p) => write!(f, "{p}%"),
            Size::Bytes(n) => f.write_str(&format_bytes(n)),
        }
    }
}

/// `n` bytes in the largest exact unit [`parse`] reads (`50M`, `1536K`).
pub fn format_bytes(n: u64) -> String {
    for (unit, len) in [('G', 1u64 << 30), ('M', 1 << 20), ('K', 1 << 10)] {
        if n != 0 && n.is_multiple_of(len) {
            return format!("{}{unit}", n / len);
        }
    }
    format!("{n} bytes")
}

/// Parses `123`, `64K`, `50M`, `100MB`, `2G`, `5%` (at most `100%`). `None`
/// when the text is not such a size or overflows.
pub fn parse(text: &str) -> Option<Size> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        return digits(p)?
            .try_into()
            .ok()
            .filter(|p| *p <= 100)
            .map(Size::Percent);
    }
    let upper = t.to_ascii_uppercase();
    let t = upper
        .strip_suffix('B')
        .filter(|s| s.ends_with(['K', 'M', 'G']))
        .unwrap_or(&upper);
    let (num, mult) = match t.as_bytes().last()? {
        b'K' => (&t[..t.len() - 1], 1u64 << 10),
        b'M' => (&t[..t.len() - 1], 1 << 20),
        b'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits(num)?.checked_mul(mult).map(Size::Bytes)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, size) in [
            ("0", Some(Size::Bytes(0))),
            ("100000", Some(Size::Bytes(100_000))),
            ("64K", Some(Size::Bytes(65536))),
            ("64kb", Some(Size::Bytes(65536))),
            ("50M", Some(Size::Bytes(50 << 20))),
            ("100MB", Some(Size::Bytes(100 << 20))),
            (" 2G ", Some(Size::Bytes(2 << 30))),
            ("5%", Some(Size::Percent(5))),
            ("100%", Some(Size::Percent(100))),
            ("0%", Some(Size::Percent(0))),
            ("101%", None),
            ("-1", None),
            ("1.5M", None),
            ("M", None),
            ("B", None),
            ("10B", None),
            ("%", None),
            ("5 %", None),
            ("50 M", None),
            ("1T", None),
            ("99999999999999999999", None),
            ("17179869184G", None),
            ("", None),
        ] {
            assert_eq!(parse(text), size, "{text:?}");
        }
    }

    #[test]
    fn percentages_and_formatting() {
        assert_eq!(Size::Percent(5).of(1000), 50);
        assert_eq!(Size::Percent(100).of(u64::MAX), u64::MAX);
        assert_eq!(Size::Bytes(7).of(1000), 7);
        assert_eq!(Size::Bytes(50 << 20).to_string(), "50M");
        assert_eq!(Size::Bytes(100_000).to_string(), "100000 bytes");
        assert_eq!(Size::Bytes(1536 << 10).to_string(), "1536K");
        assert_eq!(Size::Percent(5).to_string(), "5%");
        for n in [1u64, 1024, 3 << 20, 5 << 30] {
            assert_eq!(
                parse(&format_bytes(n).replace(" bytes", "")),
                Some(Size::Bytes(n))
            );
        }
    }
}
