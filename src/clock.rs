//! The local time zone, read once from `TZ` or `/etc/localtime` (TZif).
//!
//! jiff's `TimeZone::system()` may search the whole zoneinfo tree to name
//! the zone; a submission only needs the offsets, so this reads one file.

use std::sync::OnceLock;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// The local time zone (UTC if it cannot be read).
pub fn local_tz() -> &'static TimeZone {
    static TZ: OnceLock<TimeZone> = OnceLock::new();
    TZ.get_or_init(|| {
        let from_file = |path: &str| {
            std::fs::read(path)
                .ok()
                .and_then(|b| TimeZone::tzif("Local", &b).ok())
        };
        match std::env::var("TZ") {
            Ok(tz) if !tz.is_empty() => {
                let name = tz.trim_start_matches(':');
                let safe = !name.contains("..") && !name.starts_with('/');
                (safe
                    .then(|| from_file(&format!("/usr/share/zoneinfo/{name}")))
                    .flatten())
                .or_else(|| name.starts_with('/').then(|| from_file(name)).flatten())
                .or_else(|| TimeZone::posix(name).ok())
                .unwrap_or(TimeZone::UTC)
            }
            _ => from_file("/etc/localtime").unwrap_or(TimeZone::UTC),
        }
    })
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
