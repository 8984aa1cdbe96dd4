//! The policy cache (RFC 8461 §3.3, §5): one file per domain in a
//! directory of the caller's (SPOOLDIR/mta-sts, mode 0700, owned by the
//! user who delivers), so that a policy outlives a failed fetch, a
//! missing TXT record or a restart, until its `max_age` runs out.
//!
//! A file is named for its domain (lower case, validated first) and holds
//! `key value` lines, values percent-encoded as in the queue's envelopes:
//!
//! ```text
//! dma-rs-mta-sts 1
//! domain example.com
//! id 20160831085700Z
//! fetched 1764633600
//! max_age 604800
//! mode enforce
//! mx *.example.com
//! ```
//!
//! It is written to a temporary file (`.tmp…`, a name no domain has),
//! fsynced and renamed over the old one. A file that is not a regular
//! file of ours (a symbolic link, another user's, writable by others,
//! linked elsewhere), or does not parse, is ignored, never trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::policy::{Mode, Policy};
use super::record::Id;
use super::{date, policy_domain};
use crate::spool::envelope::{decode, encode};

/// The first line of every cache file: the format and its version.
const MAGIC: &str = "dma-rs-mta-sts 1";

/// How far in the future a fetch time may lie (a clock stepped back)
/// before the entry is no longer trusted to be fresh.
const SKEW: i64 = 300;

/// The largest cache file read (a policy is at most 64 KiB).
const MAX_FILE: u64 = 128 * 1024;

/// A cached policy: what was fetched, when, under which id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id the TXT record announced when the policy was fetched.
    pub id: Id,
    /// When it was fetched (unix seconds).
    pub fetched: i64,
    /// The policy.
    pub policy: Policy,
}

impl Entry {
    /// When it expires (unix seconds): `max_age` after its fetch.
    pub fn expires(&self) -> i64 {
        self.fetched.saturating_add(i64::from(self.policy.max_age))
    }

    /// Whether it may still be used at `now`: before it expires, and not
    /// fetched in the future (beyond a few minutes of clock skew).
    pub fn is_fresh(&self, now: i64) -> bool {
        now < self.expires() && self.fetched <= now.saturating_add(SKEW)
    }

    /// The file's text.
    fn serialize(&self, domain: &str) -> String {
        let mut s = format!(
            "{MAGIC}\ndomain {}\nid {}\nfetched {}\nmax_age {}\nmode {}\n",
            encode(domain),
            encode(self.id.as_str()),
            self.fetched,
            self.policy.max_age,
            self.policy.mode
        );
        for p in &self.policy.mx {
            s.push_str(&format!("mx {}\n", encode(p)));
        }
        s
    }

    /// The entry for `domain` in a file's text, or why it is not one.
    fn parse(text: &str, domain: &str) -> Result<Entry, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("the first line is not {MAGIC:?}"));
        }
        let (mut name, mut id, mut fetched, mut max_age, mut mode) = (None, None, None, None, None);
        let mut mx = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let (key, value) = line
                .split_once(' ')
                .and_then(|(k, v)| Some((k, decode(v)?)))
                .ok_or_else(|| format!("line {n} is not \"key value\""))?;
            let slot = match key {
                "domain" => &mut name,
                "id" => &mut id,
                "fetched" => &mut fetched,
                "max_age" => &mut max_age,
                "mode" => &mut mode,
                "mx" => {
                    mx.push(value);
                    continue;
                }
                _ => return Err(format!("line {n}: unknown key {key:?}")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("line {n}: a second {key}"));
            }
        }
        let missing = |key: &str| format!("no {key} line");
        if name.ok_or_else(|| missing("domain"))? != domain {
            return Err(format!("it is not for {domain}"));
        }
        let id = id.ok_or_else(|| missing("id"))?;
        let id = Id::new(&id).ok_or_else(|| format!("bad id {id:?}"))?;
        let fetched = fetched
            .ok_or_else(|| missing("fetched"))?
            .parse::<i64>()
            .map_err(|_| "bad fetched time".to_string())?;
        let max_age = max_age
            .ok_or_else(|| missing("max_age"))?
            .parse::<u32>()
            .map_err(|_| "bad max_age".to_string())?;
        let mode = mode.ok_or_else(|| missing("mode"))?;
        let mode = Mode::from_word(&mode).ok_or_else(|| format!("bad mode {mode:?}"))?;
        let policy = Policy::new(mode, max_age, &mx)?;
        Ok(Entry {
            id,
            fetched,
            policy,
        })
    }
}

/// Makes `dir` if it is missing (mode 0700; its parent must exist), and
/// checks that it is a directory of this user's that no one else may
/// write to.
pub fn prepare(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("can not make {shown}: {e}")),
    }
    let m = fs::symlink_metadata(dir).map_err(|e| format!("{shown}: {e}"))?;
    if !m.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    if m.uid() != euid() {
        return Err(format!(
            "{shown} belongs to uid {}, not to uid {}",
            m.uid(),
            euid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown} may be written by others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The entry cached for `domain` (a name [`policy_domain`] gave), if
/// any: `Ok(None)` when there is no file, `Err` with why when there is
/// one that is ignored (foreign, or not an entry).
pub fn load(dir: &Path, domain: &str) -> Result<Option<Entry>, String> {
    let path = dir.join(domain);
    let ignored = |why: String| format!("MTA-STS cache file {} ignored: {why}", path.display());
    let file = OpenOptions::new()
        .read(true)
        // No link is followed, and a FIFO put there does not block us.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(ignored("it is a symbolic link".into()));
        }
        Err(e) => return Err(ignored(e.to_string())),
    };
    let m = file.metadata().map_err(|e| ignored(e.to_string()))?;
    if let Some(why) = foreign(&m) {
        return Err(ignored(why));
    }
    if m.len() > MAX_FILE {
        // Never a prefix of it taken for the whole.
        return Err(ignored(format!(
            "it is larger than {} KiB",
            MAX_FILE / 1024
        )));
    }
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| ignored(e.to_string()))?;
    Entry::parse(&text, domain).map(Some).map_err(ignored)
}

/// Why a cache file is not to be trusted, if it is not.
fn foreign(m: &fs::Metadata) -> Option<String> {
    if !m.is_file() {
        Some("it is not a regular file".into())
    } else if m.uid() != euid() {
        Some(format!(
            "it belongs to uid {}, not to uid {}",
            m.uid(),
            euid()
        ))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "others may write to it (mode {:o})",
            m.mode() & 0o7777
        ))
    } else if m.nlink() != 1 {
        Some(format!("it has {} links", m.nlink()))
    } else {
        None
    }
}

/// Caches `entry` for `domain` (a name [`policy_domain`] gave), durably:
/// a temporary file, fsynced, renamed over the old entry, the directory
/// fsynced.
pub fn store(dir: &Path, domain: &str, entry: &Entry) -> Result<(), String> {
    let path = dir.join(domain);
    let failed = |e: io::Error| format!("can not write MTA-STS cache file {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(dir)
        .map_err(failed)?;
    tmp.write_all(entry.serialize(domain).as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(failed)?;
    tmp.persist(&path).map_err(|e| failed(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
}

/// Removes from `dir` the entries that have expired at `now`, the files
/// of ours that are not entries, and temporary files an hour old (a
/// writer that died). Another user's file is left, and said. Returns
/// what was done, a line each, for the log.
pub fn remove_expired(dir: &Path, now: i64) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in listing {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        let why = if name.starts_with(".tmp") {
            let old = now.saturating_sub(m.mtime()) > 3600;
            (old && m.uid() == euid()).then(|| "a temporary file left by a writer".to_string())
        } else if policy_domain(&name).as_deref() != Ok(name.as_str()) {
            done.push(format!(
                "{} left alone: not named for a domain",
                path.display()
            ));
            None
        } else {
            match load(dir, &name) {
                Ok(Some(e)) if now >= e.expires() => {
                    Some(format!("expired at {}", date(e.expires())))
                }
                Ok(Some(e)) if !e.is_fresh(now) => Some(format!(
                    "fetched at {}, which is yet to come (the clock was stepped back?)",
                    date(e.fetched)
                )),
                Ok(_) => None,
                Err(why) if m.is_symlink() || foreign(&m).is_none() => Some(why),
                Err(why) => {
                    done.push(format!("{why}; left alone"));
                    None
                }
            }
        };
        if let Some(why) = why {
            match fs::remove_file(&path) {
                Ok(()) => done.push(format!("removed {}: {why}", path.display())),
                Err(e) => done.push(format!("can not remove {}: {e}", path.display())),
            }
        }
    }
    Ok(done)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entry(fetched: i64, max_age: u32) -> Entry {
        Entry {
            id: Id::new("abc123").unwrap(),
            fetched,
            policy: Policy::new(
                Mode::Enforce,
                max_age,
                &["mail.example.com".into(), "*.example.net".into()],
            )
            .unwrap(),
        }
    }

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        prepare(&d.path().join("mta-sts")).unwrap();
        d
    }

    #[test]
    fn an_entry_round_trips_through_its_file() {
        let d = dir();
        let dir = d.path().join("mta-sts");
        assert_eq!(load(&dir, "example.com"), Ok(None));
        let e = entry(1_700_000_000, 86400);
        store(&dir, "example.com", &e).unwrap();
        assert_eq!(load(&dir, "example.com"), Ok(Some(e.clone())));
        let text = fs::read_to_string(dir.join("example.com")).unwrap();
        assert_eq!(
            text,
            "dma-rs-mta-sts 1\ndomain example.com\nid abc123\nfetched 1700000000\nmax_age 86400\nmode enforce\nmx mail.example.com\nmx *.example.net\n"
        );
        let m = fs::metadata(dir.join("example.com")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        // A new entry replaces the old; no temporary file is left.
        let mut e2 = entry(1_700_000_100, 60);
        e2.policy = Policy::new(Mode::None, 60, &[]).unwrap();
        store(&dir, "example.com", &e2).unwrap();
        assert_eq!(load(&dir, "example.com"), Ok(Some(e2)));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        // A file is for its domain only.
        fs::rename(dir.join("example.com"), dir.join("example.org")).unwrap();
        let err = load(&dir, "example.org").unwrap_err();
        assert!(err.ends_with("ignored: it is not for example.org"), "{err}");
    }

    #[test]
    fn freshness_ends_at_max_age_and_distrusts_the_future() {
        let e = entry(1000, 100);
        assert_eq!(e.expires(), 1100);
        assert!(e.is_fresh(1000));
        assert!(e.is_fresh(1099));
        assert!(!e.is_fresh(1100));
        assert!(e.is_fresh(1000 - SKEW));
        assert!(!e.is_fresh(1000 - SKEW - 1));
        assert!(!entry(1000, 0).is_fresh(1000));
    }

    #[test]
    fn corrupt_and_foreign_files_are_ignored() {
        let d = dir();
        let dir = d.path().join("mta-sts");
        let good = entry(1, 2).serialize("example.com");
        for (text, why) in [
            ("", "the first line is not \"dma-rs-mta-sts 1\""),
            (
                "dma-rs-mta-sts 2\n",
                "the first line is not \"dma-rs-mta-sts 1\"",
            ),
            (
                &good.replace("mode enforce", "mode strict"),
                "bad mode \"strict\"",
            ),
            (
                &good.replace("id abc123", "id abc-123"),
                "bad id \"abc-123\"",
            ),
            (
                &good.replace("max_age 2", "max_age 99999999"),
                "max_age 99999999 is more than 31557600 (a year)",
            ),
            (
                &good.replace("mx mail.example.com\n", "mx mail.example.com\nmx a/b\n"),
                "mx \"a/b\" is not a host name or *.domain",
            ),
            (
                &good.replace("mode enforce\n", "mode enforce\nmode none\n"),
                "line 7: a second mode",
            ),
            (&good.replace("fetched 1", "fetched x"), "bad fetched time"),
            (
                &good.replace("mx mail.example.com\n", "mx mail%ZZ\n"),
                "line 7 is not \"key value\"",
            ),
            (
                &good.replace("mx mail.example.com\n", "color red\n"),
                "line 7: unknown key \"color\"",
            ),
            (&good.replace("id abc123\n", ""), "no id line"),
        ] {
            fs::write(dir.join("example.com"), text).unwrap();
            let err = load(&dir, "example.com").unwrap_err();
            assert!(err.ends_with(&format!("ignored: {why}")), "{err}");
        }
        // Too large to be ours.
        fs::write(
            dir.join("example.com"),
            format!("{good}{}", "mx a.example\n".repeat(12_000)),
        )
        .unwrap();
        let err = load(&dir, "example.com").unwrap_err();
        assert!(err.ends_with("ignored: it is larger than 128 KiB"), "{err}");
        // Writable by others.
        fs::write(dir.join("example.com"), &good).unwrap();
        fs::set_permissions(dir.join("example.com"), fs::Permissions::from_mode(0o666)).unwrap();
        let err = load(&dir, "example.com").unwrap_err();
        assert!(
            err.ends_with("ignored: others may write to it (mode 666)"),
            "{err}"
        );
    }

    #[test]
    fn a_symbolic_link_is_never_followed() {
        let d = dir();
        let dir = d.path().join("mta-sts");
        let elsewhere = d.path().join("planted");
        fs::write(
            &elsewhere,
            entry(1_700_000_000, 86400).serialize("example.com"),
        )
        .unwrap();
        symlink(&elsewhere, dir.join("example.com")).unwrap();
        let err = load(&dir, "example.com").unwrap_err();
        assert!(err.ends_with("ignored: it is a symbolic link"), "{err}");
        // A store replaces the link, and leaves its target alone.
        let e = entry(1_700_000_000, 60);
        store(&dir, "example.com", &e).unwrap();
        assert_eq!(load(&dir, "example.com"), Ok(Some(e)));
        assert!(
            fs::read_to_string(&elsewhere)
                .unwrap()
                .contains("max_age 86400")
        );
        // A FIFO does not hang a reader.
        nix::unistd::mkfifo(&dir.join("example.org"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = load(&dir, "example.org").unwrap_err();
        assert!(err.ends_with("ignored: it is not a regular file"), "{err}");
    }

    #[test]
    fn the_directory_is_made_private_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mta-sts");
        prepare(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        prepare(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            prepare(&dir)
                .unwrap_err()
                .contains("may be written by others (mode 777)")
        );
        let link = d.path().join("link");
        symlink(&dir, &link).unwrap();
        assert!(prepare(&link).unwrap_err().ends_with("is not a directory"));
    }

    #[test]
    fn expired_entries_and_junk_are_removed() {
        let d = dir();
        let dir = d.path().join("mta-sts");
        // Real time: the temporary file's age is its mtime's.
        let now = crate::spool::now();
        store(&dir, "fresh.example", &entry(now - 10, 86400)).unwrap();
        store(&dir, "future.example", &entry(now + 3600, 86400)).unwrap();
        store(&dir, "old.example", &entry(now - 86400, 86400)).unwrap();
        fs::write(dir.join("broken.example"), "junk").unwrap();
        fs::write(dir.join(".tmpabc"), "x").unwrap();
        fs::write(dir.join(".hidden"), "x").unwrap();
        symlink("/etc/passwd", dir.join("link.example")).unwrap();
        let done = remove_expired(&dir, now).unwrap().join("\n");
        let want = format!("old.example: expired at {}", date(now));
        assert!(done.contains("removed") && done.contains(&want), "{done}");
        let want = format!(
            "future.example: fetched at {}, which is yet to come",
            date(now + 3600)
        );
        assert!(done.contains(&want), "{done}");
        assert!(
            done.contains("broken.example: MTA-STS cache file"),
            "{done}"
        );
        assert!(done.contains("link.example: MTA-STS cache file"), "{done}");
        assert!(
            done.contains(".hidden left alone: not named for a domain"),
            "{done}"
        );
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The temporary file is young: a writer may be at work.
        assert_eq!(left, [".hidden", ".tmpabc", "fresh.example"]);
        assert!(fs::metadata("/etc/passwd").is_ok());
        let done = remove_expired(&dir, now + 7200).unwrap().join("\n");
        assert!(
            done.contains(".tmpabc: a temporary file left by a writer"),
            "{done}"
        );
    }
}
