//! The MTA-STS policy (RFC 8461 §3.2) and its MX patterns (§4.1): a pure
//! parser of the text served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! and the rule for which MX hosts a policy allows.
//!
//! The text is `key: value` lines ending in CRLF or LF. `version: STSv1`,
//! `mode` and `max_age` must each be there once, `mx` as often as there are
//! patterns (at least once unless the mode is `none`); other keys are
//! extensions and are ignored. Keys and values are case-sensitive, as the
//! RFC's ABNF (RFC 7405 `%s`) has them. Anything else is an error in one
//! line, and a policy with an error is no policy at all.

use std::fmt;

/// The longest `max_age` (§3.2): a year, in seconds.
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

/// What a sender does with an MX host that fails the policy (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts, over verified TLS.
    Enforce,
    /// Deliver as without a policy, reporting what would have failed.
    Testing,
    /// The domain has withdrawn its policy.
    None,
}

impl Mode {
    /// The policy's word for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }

    /// The mode `word` names (case-sensitive, as in the RFC).
    pub fn from_word(word: &str) -> Option<Mode> {
        match word {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What to do with a host that fails it.
    pub mode: Mode,
    /// How long, in seconds from its fetch, it may be used from a cache.
    pub max_age: u32,
    /// The MX patterns, lower case and without a trailing dot, in the
    /// order given: `mail.example.com` or `*.example.com`.
    pub mx: Vec<String>,
}

impl Policy {
    /// A policy from its parts, checked as a fetched one is: `max_age` at
    /// most [`MAX_AGE_LIMIT`], every pattern well-formed, at least one
    /// pattern unless the mode is `none`. Patterns are normalised (lower
    /// case, no trailing dot).
    pub fn new(mode: Mode, max_age: u32, mx: &[String]) -> Result<Policy, String> {
        if max_age > MAX_AGE_LIMIT {
            return Err(format!(
                "max_age {max_age} is more than {MAX_AGE_LIMIT} (a year)"
            ));
        }
        let mx = mx
            .iter()
            .map(|p| {
                normal_pattern(p)
                    .ok_or_else(|| format!("mx {:?} is not a host name or *.domain", shown(p)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if mx.is_empty() && mode != Mode::None {
            return Err(format!("mode {mode} without an mx line"));
        }
        Ok(Policy { mode, max_age, mx })
    }

    /// Parses the policy text (§3.2). Errors are one line, naming the line
    /// of the text where there is one.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        // A byte order mark is no key's first character.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // LF or CRLF ends a line; the last line may have no end.
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim_matches(is_wsp).is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {n}: not \"key: value\": {:?}", shown(line)));
            };
            let key = key.trim_matches(is_wsp);
            let value = value.trim_matches(is_wsp);
            let once = |seen: &Option<(usize, &str)>| match seen {
                Some((first, _)) => Err(format!(
                    "line {n}: a second {key} (the first is on line {first})"
                )),
                None => Ok(Some((n, value))),
            };
            match key {
                "version" => version = once(&version)?,
                "mode" => mode = once(&mode)?,
                "max_age" => max_age = once(&max_age)?,
                "mx" => mx.push((n, value)),
                _ => {}
            }
        }
        match version {
            None => return Err("no \"version: STSv1\" line".into()),
            Some((_, "STSv1")) => {}
            Some((n, v)) => return Err(format!("line {n}: version {:?} is not STSv1", shown(v))),
        }
        let Some((n, word)) = mode else {
            return Err("no mode line".into());
        };
        let mode = Mode::from_word(word).ok_or_else(|| {
            format!(
                "line {n}: mode {:?} is not enforce, testing or none",
                shown(word)
            )
        })?;
        let Some((n, age)) = max_age else {
            return Err("no max_age line".into());
        };
        // 1*10DIGIT: no sign, no space, no more than ten digits.
        let max_age =
            (!age.is_empty() && age.len() <= 10 && age.bytes().all(|b| b.is_ascii_digit()))
                .then(|| age.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "line {n}: max_age {:?} is not a number of seconds",
                        shown(age)
                    )
                })?;
        if max_age > u64::from(MAX_AGE_LIMIT) {
            return Err(format!(
                "line {n}: max_age {max_age} is more than {MAX_AGE_LIMIT} (a year)"
            ));
        }
        for (n, p) in &mx {
            if normal_pattern(p).is_none() {
                return Err(format!(
                    "line {n}: mx {:?} is not a host name or *.domain",
                    shown(p)
                ));
            }
        }
        let mx: Vec<String> = mx.into_iter().map(|(_, p)| p.to_string()).collect();
        Policy::new(mode, max_age as u32, &mx)
    }

    /// The first pattern that `host` (an MX host name) matches, if any.
    pub fn matching(&self, host: &str) -> Option<&str> {
        self.mx
            .iter()
            .map(String::as_str)
            .find(|p| mx_matches(p, host))
    }

    /// Whether `host` (an MX host name) matches one of the patterns.
    pub fn allows(&self, host: &str) -> bool {
        self.matching(host).is_some()
    }
}

/// Whether the MX host name `host` matches the pattern (§4.1): equal
/// ignoring case and a trailing dot, or for `*.example.com`, `example.com`
/// with exactly one more label on the left (`mail.example.com`, not
/// `example.com`, not `a.b.example.com`).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || pattern.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(parent) => match host.split_once('.') {
            Some((first, rest)) => {
                !first.is_empty() && first != "*" && rest.eq_ignore_ascii_case(parent)
            }
            None => false,
        },
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// A pattern in its stored form (lower case, no trailing dot), or `None`
/// when it is not a host name or `*.` and one: labels of letters, digits,
/// `-` and `_`, 1 to 63 long, 253 in all.
fn normal_pattern(p: &str) -> Option<String> {
    let p = p.strip_suffix('.').unwrap_or(p);
    let name = p.strip_prefix("*.").unwrap_or(p);
    (p.len() <= 253 && name.split('.').all(is_label)).then(|| p.to_ascii_lowercase())
}

/// Whether `l` is a label of a host name as MTA-STS takes one: 1 to 63
/// ASCII letters, digits, `-` and `_` (which some hosts have).
pub(super) fn is_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Text from a server or a DNS record, safe and short enough for a log
/// line and a queue file: printable ASCII (all that a policy, a record or
/// an HTTP head should hold), anything else as `?`, at most 80 characters.
pub(super) fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 604800\r\n";

    #[test]
    fn a_policy_parses() {
        let p = Policy::parse(GOOD).unwrap();
        assert_eq!(
            p,
            Policy {
                mode: Mode::Enforce,
                max_age: 604800,
                mx: vec!["mail.example.com".into(), "*.example.net".into()],
            }
        );
        // LF endings, no final end, spaces around, unknown keys, blank lines.
        let p = Policy::parse(
            "\u{feff}version:STSv1\n\nmode:   testing \t\nfoo: bar\nmx:mx.example.org\nmax_age: 0",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.max_age, 0);
        assert_eq!(p.mx, ["mx.example.org"]);
        // none needs no mx.
        let p = Policy::parse("version: STSv1\nmode: none\nmax_age: 31557600\n").unwrap();
        assert_eq!(
            (p.mode, p.max_age, p.mx.len()),
            (Mode::None, MAX_AGE_LIMIT, 0)
        );
    }

    #[test]
    fn bad_policies_say_why_in_one_line() {
        let base = |replace: &str, with: &str| GOOD.replace(replace, with);
        for (text, want) in [
            (base("version: STSv1\r\n", ""), "no \"version: STSv1\" line"),
            (
                base("STSv1", "STSv2"),
                "line 1: version \"STSv2\" is not STSv1",
            ),
            (base("mode: enforce\r\n", ""), "no mode line"),
            (
                base("enforce", "Enforce"),
                "line 2: mode \"Enforce\" is not enforce, testing or none",
            ),
            (base("max_age: 604800\r\n", ""), "no max_age line"),
            (
                base("604800", "31557601"),
                "line 5: max_age 31557601 is more than 31557600 (a year)",
            ),
            (
                base("604800", "-1"),
                "line 5: max_age \"-1\" is not a number of seconds",
            ),
            (
                base("604800", "12345678901"),
                "line 5: max_age \"12345678901\" is not a number of seconds",
            ),
            (
                base("604800", "1 2"),
                "line 5: max_age \"1 2\" is not a number of seconds",
            ),
            (
                base("mx: *.Example.NET.", "mx: mx*.example.net"),
                "line 4: mx \"mx*.example.net\" is not a host name or *.domain",
            ),
            (
                base("mx: *.Example.NET.", "mx: "),
                "line 4: mx \"\" is not a host name or *.domain",
            ),
            (
                base("mx: *.Example.NET.", "mode: testing"),
                "line 4: a second mode (the first is on line 2)",
            ),
            (
                base("mx: *.Example.NET.", "<html>"),
                "line 4: not \"key: value\": \"<html>\"",
            ),
            (
                "version: STSv1\nmode: testing\nmax_age: 1\n".into(),
                "mode testing without an mx line",
            ),
        ] {
            let got = Policy::parse(&text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
            assert!(!got.contains('\n'));
        }
    }

    #[test]
    fn patterns_match_as_section_4_1_says() {
        for (pattern, host, want) in [
            ("mail.example.com", "mail.example.com", true),
            ("mail.example.com", "MAIL.Example.COM.", true),
            ("mail.example.com.", "mail.example.com", true),
            ("mail.example.com", "mail2.example.com", false),
            ("*.example.com", "mail.example.com", true),
            ("*.example.com", "MX1.EXAMPLE.COM.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "mail.example.org", false),
            ("*.example.com", "mailexample.com", false),
            ("mail.example.com", "", false),
            ("", "", false),
        ] {
            assert_eq!(mx_matches(pattern, host), want, "{pattern} vs {host}");
        }
        let p = Policy::parse(GOOD).unwrap();
        assert_eq!(p.matching("mx1.example.net."), Some("*.example.net"));
        assert!(p.allows("Mail.Example.Com"));
        assert!(!p.allows("example.net"));
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(text in "\\PC*") {
            let _ = Policy::parse(&text);
        }

        #[test]
        fn the_parser_never_panics_on_near_policies(
            lines in proptest::collection::vec(
                "(version|mode|max_age|mx|x)[ \t]*:[ \t]*(STSv1|enforce|testing|none|[0-9]{0,12}|\\*?\\.?[a-zA-Z0-9.*-]{0,20}|\\PC{0,5})",
                0..8,
            ),
            crlf in any::<bool>(),
        ) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            if let Ok(p) = Policy::parse(&text) {
                prop_assert!(p.max_age <= MAX_AGE_LIMIT);
                prop_assert!(p.mode == Mode::None || !p.mx.is_empty());
                // What parsed is what a cache entry rebuilds.
                prop_assert_eq!(Policy::new(p.mode, p.max_age, &p.mx), Ok(p.clone()));
            }
        }

        #[test]
        fn a_wildcard_matches_exactly_one_more_label(
            label in "[a-z0-9][a-z0-9-]{0,10}",
            extra in "[a-z0-9]{1,5}",
            parent in "[a-z0-9]{1,8}\\.[a-z]{2,4}",
            upper in any::<bool>(),
            dot in any::<bool>(),
        ) {
            let pattern = format!("*.{parent}");
            let mut host = format!("{label}.{parent}");
            if upper { host = host.to_ascii_uppercase(); }
            if dot { host.push('.'); }
            prop_assert!(mx_matches(&pattern, &host));
            prop_assert!(mx_matches(&host, &host));
            prop_assert!(!mx_matches(&pattern, &parent));
            let deeper = format!("{extra}.{host}");
            prop_assert!(!mx_matches(&pattern, &deeper));
            prop_assert!(!mx_matches(&host, &deeper));
        }
    }
}
