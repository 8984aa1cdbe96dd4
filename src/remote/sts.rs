//! MTA-STS (RFC 8461) applied to MX delivery: the policy in force for a
//! recipient domain (looked up, fetched and cached by
//! [`crate::smtp::mta_sts`]), and what it says of each MX host.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::HopTls;
use crate::context::Ctx;
use crate::logging::Level::{self, Info, Notice};
use crate::smtp::dns::{DnsError, Resolver};
use crate::smtp::mta_sts::{self, Fetcher, Found, Mode};

/// How long a process keeps using a policy it decided on (or the lack of
/// one): a queue run with many messages for a domain looks it up once, and
/// a policy host that does not answer costs one timeout, not one per
/// message (RFC 8461 §3.3 asks for no more than one fetch per few minutes).
const MEMO_FOR: Duration = Duration::from_secs(300);

/// The decisions of this process: domain, when, what.
static MEMO: Mutex<Vec<(String, Instant, Option<Found>)>> = Mutex::new(Vec::new());

/// A domain's policy in force, in enforce or testing mode.
pub(crate) struct Applied {
    domain: String,
    found: Found,
}

impl Applied {
    /// `MTA-STS policy of example.com (enforce, id 20260101, cached)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "MTA-STS policy of {} ({}, id {}, {})",
            self.domain, self.found.policy.mode, self.found.id, self.found.source
        )
    }

    /// Whether hosts that fail the policy are not to be used.
    pub(crate) fn enforce(&self) -> bool {
        self.found.policy.mode == Mode::Enforce
    }

    /// Whether the policy lists MX host `host`, or why not.
    pub(crate) fn check_mx(&self, host: &str) -> Result<(), String> {
        if self.found.policy.allows(host) {
            return Ok(());
        }
        let patterns: Vec<String> = self
            .found
            .policy
            .mx
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect();
        Err(format!(
            "MX host {host} matches none of its mx patterns ({})",
            patterns.join(", ")
        ))
    }

    /// What the policy asks of TLS with a host it lists.
    pub(crate) fn hop_tls(&self) -> HopTls {
        match self.found.policy.mode {
            Mode::Enforce => HopTls::Sts(self.describe()),
            _ => HopTls::StsTesting(self.describe()),
        }
    }
}

/// The MTA-STS policy in force for `domain`, if it has one in enforce or
/// testing mode. Cached in SPOOLDIR/mta-sts when `delivering` (the runner);
/// otherwise (`-bv`, run by any user with the set-group-id binary) the
/// cache is neither read nor made: a directory a user made there would be
/// theirs, and lock the runner out of its cache. What happened on the way
/// goes to `note` (the log, and `-bv`).
pub(crate) fn policy(
    ctx: &Ctx,
    resolver: &Resolver,
    domain: &str,
    delivering: bool,
    note: &mut impl FnMut(Level, String),
) -> Option<Applied> {
    let key = domain.trim_end_matches('.').to_ascii_lowercase();
    let remembered = {
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        memo.retain(|(_, at, _)| at.elapsed() < MEMO_FOR);
        memo.iter()
            .find(|(d, _, _)| *d == key)
            .map(|(_, _, f)| f.clone())
    };
    let found = match remembered {
        Some(found) => found,
        None => {
            let found = look_up(ctx, resolver, domain, delivering, note);
            let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
            memo.push((key.clone(), Instant::now(), found.clone()));
            found
        }
    }?;
    let applied = Applied { domain: key, found };
    if applied.found.policy.mode == Mode::None {
        note(Info, format!("{}: nothing to apply", applied.describe()));
        return None;
    }
    note(Info, format!("{} applies", applied.describe()));
    Some(applied)
}

/// The policy in force for `domain`, looked up (and fetched, if its id
/// is new) now.
fn look_up(
    ctx: &Ctx,
    resolver: &Resolver,
    domain: &str,
    delivering: bool,
    note: &mut impl FnMut(Level, String),
) -> Option<Found> {
    let name = format!("_mta-sts.{}", domain.trim_end_matches('.'));
    let txt = match resolver.txt(&name) {
        Ok(found) => Ok(found.records),
        Err(DnsError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    };
    // Outside a delivery: an empty directory of our own, gone afterwards.
    let scratch = match delivering {
        true => None,
        false => match tempfile::tempdir() {
            Ok(d) => Some(d),
            Err(e) => {
                note(
                    Info,
                    format!("MTA-STS for {domain}: no scratch directory: {e}"),
                );
                return None;
            }
        },
    };
    let dir = match &scratch {
        Some(d) => d.path().to_path_buf(),
        None => ctx.config.spooldir.join("mta-sts"),
    };
    if let Err(why) = mta_sts::cache::prepare(&dir) {
        note(Info, format!("MTA-STS for {domain}: no cache: {why}"));
    }
    let r = resolver.clone();
    let addresses = move |host: &str| -> Result<Vec<IpAddr>, String> {
        r.addresses(host).map_err(|e| e.to_string())
    };
    let mut fetcher = Fetcher::new(addresses, ctx.config.cafile.clone());
    // SMTP_TIMEOUT, when shorter, bounds the fetch too.
    if let Some(t) = ctx.config.smtp_timeout {
        fetcher.timeout = fetcher.timeout.min(t);
    }
    let now = jiff::Timestamp::now().as_second();
    let outcome = mta_sts::policy_for(domain, txt, now, &dir, &fetcher);
    for n in outcome.notes {
        note(Notice, format!("MTA-STS for {domain}: {n}"));
    }
    outcome.found
}
