//! MTA-STS (RFC 8461): whether a recipient domain asks senders to deliver
//! only to its listed MX hosts, over TLS verified as on the web, and
//! which policy applies now.
//!
//! [`policy_for`] is the decision of §3.3 and §5, given what the caller
//! looked up: the TXT records at `_mta-sts.<domain>` (or why the lookup
//! failed), the cache directory, and a [`Fetch`] (the HTTPS [`Fetcher`],
//! or a test's). It touches no resolver itself, so the caller plugs in its
//! own. Applying a policy to MX hosts ([`Policy::allows`]) and TLS is the
//! caller's.
//!
//! The parts: [`record`] (the TXT record), [`policy`] (the policy text and
//! MX patterns), [`http`] (just enough HTTP/1.1), [`fetch`] (HTTPS with
//! one deadline), [`cache`] (one file per domain).

pub mod cache;
pub mod fetch;
pub mod http;
pub mod policy;
pub mod record;

use std::fmt;
use std::path::Path;

pub use cache::Entry;
pub use fetch::{Addresses, FETCH_TIMEOUT, Fetcher};
pub use policy::{Mode, Policy};
pub use record::Id;

/// Gets the current policy of a domain: the HTTPS [`Fetcher`], or a
/// test's stand-in.
pub trait Fetch {
    /// The policy served for `domain` (lower case, checked by
    /// [`policy_domain`]), or why there is none, in one line.
    fn fetch(&self, domain: &str) -> Result<Policy, String>;
}

impl<F: Fn(&str) -> Result<Policy, String>> Fetch for F {
    fn fetch(&self, domain: &str) -> Result<Policy, String> {
        self(domain)
    }
}

/// Where the policy in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched just now: the TXT record announced an id the cache did not
    /// have.
    Fresh,
    /// The cache, whose id the TXT record still announces.
    Cached,
    /// The cache, unexpired, used because no live policy could be had:
    /// the TXT lookup failed or found no valid record, or the fetch failed
    /// (§3.3: "the sender MUST apply that cached policy").
    Stale,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Fresh => "fresh",
            Source::Cached => "cached",
            Source::Stale => "stale",
        })
    }
}

/// The policy in force for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its id.
    pub id: Id,
    /// The policy. Its mode may be `none`: the domain has withdrawn it.
    pub policy: Policy,
    /// Where it came from.
    pub source: Source,
    /// When it was fetched (unix seconds).
    pub fetched: i64,
    /// When it expires (unix seconds).
    pub expires: i64,
}

/// What [`policy_for`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The policy in force, or `None`: deliver as if the domain had no
    /// MTA-STS.
    pub found: Option<Found>,
    /// What went wrong or was passed over on the way, a line each, for
    /// the log: a failed TXT lookup, a bad record, a failed fetch, an
    /// ignored or unwritable cache file. Empty for a domain without a
    /// record and without trouble.
    pub notes: Vec<String>,
}

/// The policy in force for `domain` at `now` (unix seconds), as RFC 8461
/// §3.3 and §5 decide:
///
/// - `txt` is what the lookup of `_mta-sts.<domain>` TXT gave: every
///   record (its strings joined), none for NXDOMAIN or NODATA, or `Err`
///   with why for a temporary failure (SERVFAIL, timeout).
/// - A valid record whose id is that of the unexpired entry cached in
///   `cache_dir`: the cached policy ([`Source::Cached`]), no fetch.
/// - A valid record with another id, or no unexpired entry: `fetcher`
///   fetches it; it is cached and in force ([`Source::Fresh`]).
/// - No valid record, a failed lookup or a failed fetch: the unexpired
///   cached entry if there is one ([`Source::Stale`]), else no policy.
///
/// A cache that can not be read or written costs only its use, and a
/// note.
pub fn policy_for(
    domain: &str,
    txt: Result<Vec<String>, String>,
    now: i64,
    cache_dir: &Path,
    fetcher: &dyn Fetch,
) -> PolicyOutcome {
    let mut notes = Vec::new();
    let domain = match policy_domain(domain) {
        Ok(d) => d,
        Err(why) => {
            return PolicyOutcome {
                found: None,
                notes: vec![why],
            };
        }
    };
    let cached = cache::load(cache_dir, &domain)
        .unwrap_or_else(|why| {
            notes.push(why);
            None
        })
        .filter(|e| e.is_fresh(now));
    let name = format!("_mta-sts.{domain}");
    let id = match txt {
        Err(why) => {
            notes.push(format!("TXT lookup of {name} failed: {why}"));
            None
        }
        Ok(records) => match record::parse(&records) {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                if cached.is_some() {
                    notes.push(format!("no MTA-STS TXT record at {name}"));
                }
                None
            }
            Err(why) => {
                notes.push(format!("TXT record at {name}: {why}: no policy announced"));
                None
            }
        },
    };
    let Some(id) = id else {
        return stale(cached, notes);
    };
    if let Some(e) = cached.as_ref().filter(|e| e.id == id) {
        return PolicyOutcome {
            found: Some(found(e, Source::Cached)),
            notes,
        };
    }
    match fetcher.fetch(&domain) {
        Ok(policy) => {
            let entry = Entry {
                id,
                fetched: now,
                policy,
            };
            if let Err(why) = cache::store(cache_dir, &domain, &entry) {
                notes.push(why);
            }
            PolicyOutcome {
                found: Some(found(&entry, Source::Fresh)),
                notes,
            }
        }
        Err(why) => {
            notes.push(why);
            stale(cached, notes)
        }
    }
}

/// The unexpired cached entry, if any, when no live policy could be had.
fn stale(cached: Option<Entry>, mut notes: Vec<String>) -> PolicyOutcome {
    let found = cached.map(|e| {
        notes.push(format!(
            "using the policy cached at {} (id {}, mode {}), valid until {}",
            date(e.fetched),
            e.id,
            e.policy.mode,
            date(e.expires())
        ));
        found(&e, Source::Stale)
    });
    PolicyOutcome { found, notes }
}

fn found(e: &Entry, source: Source) -> Found {
    Found {
        id: e.id.clone(),
        policy: e.policy.clone(),
        source,
        fetched: e.fetched,
        expires: e.expires(),
    }
}

/// The name MTA-STS knows `domain` by, which is also its cache file's
/// name: lower case, no trailing dot, ASCII letters, digits, `-` and
/// `_` in labels of 1 to 63 (so no `/`, no leading `.`, no `..`), 253 in
/// all. An address literal or an internationalised name in UTF-8 (not
/// A-labels) has no policy.
pub fn policy_domain(domain: &str) -> Result<String, String> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.len() <= 253 && d.split('.').all(policy::is_label) {
        Ok(d.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not a domain name MTA-STS can look up",
            policy::shown(domain)
        ))
    }
}

/// A time as `2026-12-02 10:00:00 UTC`, for notes.
fn date(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{secs} seconds after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const NOW: i64 = 1_800_000_000;

    fn enforce() -> Policy {
        Policy::new(Mode::Enforce, 86400, &["*.example.com".into()]).unwrap()
    }

    /// A fetcher that counts its calls and gives `result`.
    struct Counting {
        calls: Cell<usize>,
        result: Result<Policy, String>,
    }

    impl Fetch for Counting {
        fn fetch(&self, domain: &str) -> Result<Policy, String> {
            assert_eq!(domain, "example.com");
            self.calls.set(self.calls.get() + 1);
            self.result.clone()
        }
    }

    fn serving(result: Result<Policy, String>) -> Counting {
        Counting {
            calls: Cell::new(0),
            result,
        }
    }

    fn txt(id: &str) -> Result<Vec<String>, String> {
        Ok(vec![format!("v=STSv1; id={id}")])
    }

    fn cache_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        cache::prepare(&d.path().join("sts")).unwrap();
        d
    }

    fn cache_with(dir: &Path, id: &str, fetched: i64, policy: Policy) {
        let e = Entry {
            id: Id::new(id).unwrap(),
            fetched,
            policy,
        };
        cache::store(dir, "example.com", &e).unwrap();
    }

    fn source(o: &PolicyOutcome) -> Option<(Source, &str, Mode)> {
        o.found
            .as_ref()
            .map(|f| (f.source, f.id.as_str(), f.policy.mode))
    }

    #[test]
    fn a_new_id_is_fetched_and_cached_then_served_from_the_cache() {
        let d = cache_dir();
        let dir = d.path().join("sts");
        let f = serving(Ok(enforce()));
        let o = policy_for("Example.COM.", txt("one"), NOW, &dir, &f);
        assert_eq!(source(&o), Some((Source::Fresh, "one", Mode::Enforce)));
        assert_eq!(o.found.as_ref().unwrap().expires, NOW + 86400);
        assert!(o.notes.is_empty(), "{:?}", o.notes);
        let o = policy_for("example.com", txt("one"), NOW + 100, &dir, &f);
        assert_eq!(source(&o), Some((Source::Cached, "one", Mode::Enforce)));
        assert_eq!(o.found.unwrap().fetched, NOW);
        assert_eq!(f.calls.get(), 1);
        // A new id is fetched again, and replaces the entry.
        let none = serving(Ok(Policy::new(Mode::None, 86400, &[]).unwrap()));
        let o = policy_for("example.com", txt("two"), NOW + 200, &dir, &none);
        assert_eq!(source(&o), Some((Source::Fresh, "two", Mode::None)));
        assert_eq!(none.calls.get(), 1);
        let cached = cache::load(&dir, "example.com").unwrap().unwrap();
        assert_eq!((cached.id.as_str(), cached.fetched), ("two", NOW + 200));
    }

    #[test]
    fn an_expired_entry_is_fetched_again() {
        let d = cache_dir();
        let dir = d.path().join("sts");
        cache_with(&dir, "one", NOW - 86400, enforce());
        let f = serving(Ok(enforce()));
        let o = policy_for("example.com", txt("one"), NOW, &dir, &f);
        assert_eq!(source(&o), Some((Source::Fresh, "one", Mode::Enforce)));
        assert_eq!(f.calls.get(), 1);
        // Expired, and the fetch fails: no policy.
        cache_with(&dir, "one", NOW - 86400, enforce());
        let f = serving(Err("fetching x: HTTP 404".into()));
        let o = policy_for("example.com", txt("one"), NOW, &dir, &f);
        assert_eq!(o.found, None);
        assert_eq!(o.notes, ["fetching x: HTTP 404"]);
    }

    #[test]
    fn without_a_live_policy_the_unexpired_cache_applies() {
        let d = cache_dir();
        let dir = d.path().join("sts");
        cache_with(&dir, "old", NOW - 1000, enforce());
        let failing = serving(Err(
            "fetching https://mta-sts.example.com/.well-known/mta-sts.txt: HTTP 404".into(),
        ));
        for (txt, first_note) in [
            // A new id whose fetch fails.
            (
                txt("new"),
                "fetching https://mta-sts.example.com/.well-known/mta-sts.txt: HTTP 404",
            ),
            // The lookup failed.
            (
                Err("SERVFAIL".to_string()),
                "TXT lookup of _mta-sts.example.com failed: SERVFAIL",
            ),
            // The record is gone.
            (Ok(vec![]), "no MTA-STS TXT record at _mta-sts.example.com"),
            // Two records.
            (
                Ok(vec!["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
                "TXT record at _mta-sts.example.com: 2 v=STSv1 records, not one: no policy announced",
            ),
        ] {
            let o = policy_for("example.com", txt, NOW, &dir, &failing);
            assert_eq!(source(&o), Some((Source::Stale, "old", Mode::Enforce)));
            assert_eq!(
                o.notes,
                [
                    first_note,
                    "using the policy cached at 2027-01-15 07:43:20 UTC (id old, mode enforce), valid until 2027-01-16 07:43:20 UTC"
                ]
            );
        }
        assert_eq!(failing.calls.get(), 1);
        // The stale entry is left as it was.
        assert_eq!(
            cache::load(&dir, "example.com")
                .unwrap()
                .unwrap()
                .id
                .as_str(),
            "old"
        );
    }

    #[test]
    fn without_a_cache_a_failure_means_no_policy() {
        let d = cache_dir();
        let dir = d.path().join("sts");
        let failing = serving(Err("fetching x: timeout after 20s".into()));
        let o = policy_for("example.com", txt("new"), NOW, &dir, &failing);
        assert_eq!(
            o,
            PolicyOutcome {
                found: None,
                notes: vec!["fetching x: timeout after 20s".into()]
            }
        );
        let o = policy_for(
            "example.com",
            Ok(vec!["v=spf1 -all".into()]),
            NOW,
            &dir,
            &failing,
        );
        assert_eq!(
            o,
            PolicyOutcome {
                found: None,
                notes: vec![]
            }
        );
        let o = policy_for(
            "example.com",
            Ok(vec!["v=STSv1; id=bad!".into()]),
            NOW,
            &dir,
            &failing,
        );
        assert_eq!(o.found, None);
        assert_eq!(o.notes.len(), 1);
        assert_eq!(failing.calls.get(), 1);
    }

    #[test]
    fn cache_trouble_costs_only_the_cache() {
        let d = cache_dir();
        let dir = d.path().join("sts");
        std::fs::write(dir.join("example.com"), "junk").unwrap();
        let f = serving(Ok(enforce()));
        let o = policy_for("example.com", txt("one"), NOW, &dir, &f);
        assert_eq!(source(&o), Some((Source::Fresh, "one", Mode::Enforce)));
        assert_eq!(o.notes.len(), 1);
        assert!(
            o.notes[0].ends_with("ignored: the first line is not \"dma-rs-mta-sts 1\""),
            "{:?}",
            o.notes
        );
        // The fetched policy replaced it.
        assert!(cache::load(&dir, "example.com").unwrap().is_some());
        // A cache directory that is missing: the policy still applies.
        let o = policy_for(
            "example.com",
            txt("two"),
            NOW,
            &d.path().join("missing"),
            &f,
        );
        assert_eq!(source(&o), Some((Source::Fresh, "two", Mode::Enforce)));
        assert!(
            o.notes[0].starts_with("can not write MTA-STS cache file"),
            "{:?}",
            o.notes
        );
    }

    #[test]
    fn only_plain_domain_names_have_a_policy() {
        for (given, want) in [
            ("Example.COM.", Ok("example.com")),
            ("a-b_c.example", Ok("a-b_c.example")),
            ("localhost", Ok("localhost")),
        ] {
            assert_eq!(
                policy_domain(given).as_deref(),
                want.map_err(|_: ()| String::new()).as_deref()
            );
        }
        for bad in [
            "",
            ".",
            ".example.com",
            "a..b",
            "a/b",
            "../etc",
            "[192.0.2.1]",
            "bücher.example",
            "a b",
            &"a".repeat(64),
            &format!("{}a", "a.".repeat(127)),
        ] {
            assert!(policy_domain(bad).is_err(), "{bad:?}");
        }
        let d = cache_dir();
        let f = serving(Ok(enforce()));
        let o = policy_for("../x", txt("one"), NOW, &d.path().join("sts"), &f);
        assert_eq!(o.found, None);
        assert_eq!(
            o.notes,
            ["\"../x\" is not a domain name MTA-STS can look up"]
        );
        assert_eq!(f.calls.get(), 0);
    }
}
