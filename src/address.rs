//! Envelope addresses: validation against injection, and the local/remote split.
//!
//! Whatever reaches the queue, the logs or an SMTP command line passes
//! [`validate`] first: no CR, LF, NUL or other control character, no leading
//! `-` (it would read as an option to a program), and a bounded length.

use thiserror::Error;

/// The longest address we accept (RFC 5321 path limit, with room to spare).
pub const MAX_LEN: usize = 512;

/// Why an address was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddrError {
    /// Empty where an address is needed.
    #[error("empty address")]
    Empty,
    /// CR, LF, NUL or another control character.
    #[error("control character in address")]
    Control,
    /// A leading `-`.
    #[error("address starts with '-'")]
    LeadingDash,
    /// Longer than [`MAX_LEN`].
    #[error("address too long")]
    TooLong,
    /// Spaces or an unbalanced `<`/`>` outside a quoted local part.
    #[error("malformed address")]
    Malformed,
}

/// Checks an envelope address as given on the command line or in a header,
/// after one pair of surrounding angle brackets has been removed.
pub fn validate(addr: &str) -> Result<(), AddrError> {
    if addr.is_empty() {
        return Err(AddrError::Empty);
    }
    if addr.len() > MAX_LEN {
        return Err(AddrError::TooLong);
    }
    if addr.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(AddrError::Control);
    }
    if addr.starts_with('-') {
        return Err(AddrError::LeadingDash);
    }
    // Commands, files and mailboxes are written in aliases and .forward
    // files, never given as an address.
    if addr.starts_with(['|', '/', '\\']) || addr.starts_with(":include:") {
        return Err(AddrError::Malformed);
    }
    // Outside a quoted local part, spaces and angle brackets have no place in
    // an envelope address: they would break `MAIL FROM:<...>`.
    let mut quoted = false;
    let mut escaped = false;
    for c in addr.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' | '<' | '>' if !quoted => return Err(AddrError::Malformed),
            _ => {}
        }
    }
    if quoted {
        return Err(AddrError::Malformed);
    }
    Ok(())
}

/// Removes one pair of surrounding angle brackets and surrounding blanks, as
/// users write `-f '<a@b.org>'` (dma would queue the brackets literally).
pub fn strip_brackets(addr: &str) -> &str {
    let t = addr.trim_matches([' ', '\t']);
    match t.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
        Some(inner) => inner,
        None => t,
    }
}

/// The local part and domain of an address; the domain is `None` without `@`.
/// The split is at the last `@`, as dma does for MX lookups.
pub fn split(addr: &str) -> (&str, Option<&str>) {
    match addr.rfind('@') {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    }
}

/// Where an address goes, given the names this host answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A local name (user or alias), with any local domain stripped.
    Local(String),
    /// A remote address and its domain.
    Remote {
        /// The whole address.
        addr: String,
        /// The part after the last `@`.
        domain: String,
    },
}

/// Classifies `addr`: no `@`, or a domain equal (case-insensitively) to one of
/// `local_domains`, is local; anything else is remote.
pub fn classify(addr: &str, local_domains: &[String]) -> Dest {
    match split(addr) {
        (local, None) => Dest::Local(local.to_string()),
        (local, Some(domain)) => {
            if local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) && !local.is_empty() {
                Dest::Local(local.to_string())
            } else {
                Dest::Remote {
                    addr: addr.to_string(),
                    domain: domain.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_table() {
        for (input, expected) in [
            ("bob", Ok(())),
            ("bob@example.org", Ok(())),
            ("\"john doe\"@example.org", Ok(())),
            ("", Err(AddrError::Empty)),
            ("bob\n@x", Err(AddrError::Control)),
            ("bob\r", Err(AddrError::Control)),
            ("bo\0b", Err(AddrError::Control)),
            ("-oQ/tmp", Err(AddrError::LeadingDash)),
            ("a b@x", Err(AddrError::Malformed)),
            ("<a@b>", Err(AddrError::Malformed)),
            ("\"open@x", Err(AddrError::Malformed)),
            ("|/bin/sh", Err(AddrError::Malformed)),
            ("/etc/passwd", Err(AddrError::Malformed)),
            ("\\root", Err(AddrError::Malformed)),
            (":include:/x", Err(AddrError::Malformed)),
        ] {
            assert_eq!(validate(input), expected, "{input:?}");
        }
        assert_eq!(validate(&"a".repeat(MAX_LEN + 1)), Err(AddrError::TooLong));
    }

    #[test]
    fn classify_local_and_remote() {
        let local = vec!["host.example".to_string(), "localhost".to_string()];
        assert_eq!(classify("bob", &local), Dest::Local("bob".into()));
        assert_eq!(classify("bob@LOCALHOST", &local), Dest::Local("bob".into()));
        assert_eq!(
            classify("bob@host.example", &local),
            Dest::Local("bob".into())
        );
        assert_eq!(
            classify("a@b@other.org", &local),
            Dest::Remote {
                addr: "a@b@other.org".into(),
                domain: "other.org".into()
            }
        );
        assert_eq!(strip_brackets(" <a@b.org> "), "a@b.org");
        assert_eq!(strip_brackets("a@b.org"), "a@b.org");
    }
}
