//! The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1): whether a domain
//! announces a policy, and the id of its current version.
//!
//! `v=STSv1; id=20160831085700Z;`: fields split by `;` with optional
//! spaces or tabs around; the first is `v=STSv1`, one of the others is
//! `id=` and 1 to 32 letters and digits; other fields are extensions and
//! are ignored. Records whose first field is not `v=STSv1` are not ours
//! (the domain may publish others at that name). No such record means no
//! policy; two or more, or one without a good id, mean no policy either,
//! and the reason says why (§3.1: "senders MUST assume the recipient
//! domain does not have an available MTA-STS Policy").

use std::fmt;

use super::policy::shown;

/// A policy's id: 1 to 32 ASCII letters and digits. A new id tells a
/// sender that the policy changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    /// `s` as an id, if it is one.
    pub fn new(s: &str) -> Option<Id> {
        ((1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Id(s.to_string()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id announced by the TXT records found at `_mta-sts.<domain>` (each
/// item one record, its strings already joined). `Ok(None)`: no
/// `v=STSv1` record, so no policy. `Err`: no policy either, and why (two
/// records, no id, a bad id), in one line.
pub fn parse(records: &[String]) -> Result<Option<Id>, String> {
    let ours: Vec<&String> = records.iter().filter(|r| is_sts(r)).collect();
    let record = match ours.as_slice() {
        [] => return Ok(None),
        [one] => one,
        more => return Err(format!("{} v=STSv1 records, not one", more.len())),
    };
    let mut id = None;
    for field in record.split(';').skip(1).map(|f| f.trim_matches(is_wsp)) {
        let Some(value) = field.strip_prefix("id=") else {
            continue;
        };
        if id.is_some() {
            return Err(format!("two id= fields in {:?}", shown(record)));
        }
        id = Some(Id::new(value).ok_or_else(|| {
            format!(
                "id {:?} is not 1 to 32 letters and digits, in {:?}",
                shown(value),
                shown(record)
            )
        })?);
    }
    id.map(Some)
        .ok_or_else(|| format!("no id= field in {:?}", shown(record)))
}

/// Whether a record is an MTA-STS one: its first field is `v=STSv1`,
/// followed by `;`.
fn is_sts(record: &str) -> bool {
    record
        .split_once(';')
        .is_some_and(|(first, _)| first.trim_matches(is_wsp) == "v=STSv1")
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txt(records: &[&str]) -> Result<Option<Id>, String> {
        parse(&records.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn one_record_gives_its_id() {
        for (records, want) in [
            (&["v=STSv1; id=20160831085700Z;"][..], "20160831085700Z"),
            (&["v=STSv1;id=abc"], "abc"),
            (&[" v=STSv1 ;\tid=abc ; "], "abc"),
            (&["v=STSv1; ext=1; id=X1"], "X1"),
            (&["v=spf1 -all", "v=STSv1; id=a1", "v=STSv10; id=b"], "a1"),
            (
                &["v=STSv1; id=12345678901234567890123456789012"],
                "12345678901234567890123456789012",
            ),
        ] {
            assert_eq!(txt(records), Ok(Id::new(want)), "{records:?}");
        }
    }

    #[test]
    fn anything_else_is_no_policy() {
        assert_eq!(txt(&[]), Ok(None));
        assert_eq!(txt(&["v=spf1 -all", "v=STSv1", "v=stsv1; id=a"]), Ok(None));
        for (records, want) in [
            (
                &["v=STSv1; id=a", "v=STSv1; id=b"][..],
                "2 v=STSv1 records, not one",
            ),
            (&["v=STSv1; x=y"], "no id= field in \"v=STSv1; x=y\""),
            (
                &["v=STSv1; id="],
                "id \"\" is not 1 to 32 letters and digits, in \"v=STSv1; id=\"",
            ),
            (
                &["v=STSv1; id=a-b"],
                "id \"a-b\" is not 1 to 32 letters and digits, in \"v=STSv1; id=a-b\"",
            ),
            (
                &["v=STSv1; id=123456789012345678901234567890123"],
                "id \"123456789012345678901234567890123\" is not 1 to 32 letters and digits, in \"v=STSv1; id=123456789012345678901234567890123\"",
            ),
            (
                &["v=STSv1; id=a; id=a"],
                "two id= fields in \"v=STSv1; id=a; id=a\"",
            ),
        ] {
            assert_eq!(txt(records), Err(want.to_string()), "{records:?}");
        }
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(records in proptest::collection::vec("(v=STSv1;)?\\PC{0,40}", 0..4)) {
            if let Ok(Some(id)) = parse(&records) {
                prop_assert!(Id::new(id.as_str()).is_some());
            }
        }
    }
}
