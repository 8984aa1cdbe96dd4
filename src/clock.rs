//! The local time zone, read once from `TZ` or `/etc/localtime` (TZif).
//!
//! jiff's `TimeZone::system()` may search the whole zoneinfo tree to name
//! the zone; a submission only needs the offsets, so this reads one file.
//!
//! `TZ` comes from whoever started us, and `dma` runs with group mail's
//! rights: it is honoured only as a zoneinfo name (`Europe/Berlin`, `UTC`,
//! `:Asia/Kathmandu`), looked up under the root-owned `/usr/share/zoneinfo`
//! with a size bound, never as a path or a POSIX rule. Such a name is safe in
//! a set-id run too, so users keep their local dates there (the set-id run
//! keeps `TZ` for this). Anything else falls back to `/etc/localtime` (then
//! UTC), never an error.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// Where zoneinfo names are looked up.
const ZONEINFO: &str = "/usr/share/zoneinfo";
/// The longest `TZ` name we look up (the longest real one is about 30).
const MAX_NAME: usize = 64;
/// The largest TZif file we read (real ones are a few KiB).
const MAX_TZIF: u64 = 64 * 1024;

/// The local time zone (UTC if it cannot be read).
pub fn local_tz() -> &'static TimeZone {
    static TZ: OnceLock<TimeZone> = OnceLock::new();
    TZ.get_or_init(|| {
        let tz = std::env::var("TZ").ok();
        tz.as_deref()
            .and_then(zone_name)
            .and_then(|name| {
                read_tzif(&Path::new(ZONEINFO).join(name))
                    .or_else(|| matches!(name, "UTC" | "GMT").then_some(TimeZone::UTC))
            })
            .or_else(|| read_tzif(Path::new("/etc/localtime")))
            .unwrap_or(TimeZone::UTC)
    })
}

/// `tz` as a zoneinfo name, if it is one: an optional leading `:`, then
/// `/`-separated components of `[A-Za-z0-9_+-]` (so no `..`, no leading
/// `/`), at most `MAX_NAME` bytes.
pub fn zone_name(tz: &str) -> Option<&str> {
    let name = tz.strip_prefix(':').unwrap_or(tz);
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
    };
    (name.len() <= MAX_NAME && name.split('/').all(component_ok)).then_some(name)
}

/// A regular file of at most [`MAX_TZIF`] bytes, parsed as TZif.
fn read_tzif(path: &Path) -> Option<TimeZone> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_TZIF {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_TZIF + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_TZIF {
        return None;
    }
    TimeZone::tzif("Local", &bytes).ok()
}

/// Now, in the local time zone.
pub fn now() -> ZonedDateTime {
    Timestamp::now().to_zoned_datetime(local_tz().clone())
}

/// A unix time in the local time zone.
pub fn at(secs: i64) -> Option<ZonedDateTime> {
    Timestamp::from_second(secs)
        .ok()
        .map(|t| t.to_zoned_datetime(local_tz().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zoneinfo_names() {
        for (tz, name) in [
            ("Europe/Berlin", Some("Europe/Berlin")),
            (":Asia/Kathmandu", Some("Asia/Kathmandu")),
            ("UTC", Some("UTC")),
            ("Etc/GMT+5", Some("Etc/GMT+5")),
            (
                "America/Argentina/Buenos_Aires",
                Some("America/Argentina/Buenos_Aires"),
            ),
            ("", None),
            (":", None),
            ("/etc/shadow", None),
            (":/etc/shadow", None),
            ("../../../etc/shadow", None),
            ("Europe/../../etc/shadow", None),
            ("Europe//Berlin", None),
            ("Europe/", None),
            ("CET-1CEST,M3.5.0,M10.5.0/3", None),
            ("Europe/Berlin\n", None),
        ] {
            assert_eq!(zone_name(tz), name, "{tz:?}");
        }
        assert_eq!(
            zone_name(&"A".repeat(MAX_NAME)).map(str::len),
            Some(MAX_NAME)
        );
        assert_eq!(zone_name(&"A".repeat(MAX_NAME + 1)), None);
    }

    #[test]
    fn tzif_files_are_bounded_and_regular() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_tzif(dir.path()).is_none());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'T'; MAX_TZIF as usize + 1]).unwrap();
        assert!(read_tzif(&big).is_none());
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "root:x:0:0\n").unwrap();
        assert!(read_tzif(&junk).is_none());
        if Path::new("/usr/share/zoneinfo/Asia/Kathmandu").exists() {
            let tz = read_tzif(Path::new("/usr/share/zoneinfo/Asia/Kathmandu")).unwrap();
            let off = tz.to_offset(Timestamp::from_second(1_700_000_000).unwrap());
            assert_eq!(off.seconds(), 5 * 3600 + 45 * 60);
        }
    }
}
