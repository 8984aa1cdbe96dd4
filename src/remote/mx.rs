//! The MX hosts of a recipient domain, in order, each with what the
//! domain's published policy asks of TLS there: DANE (RFC 7672: TLSA
//! records of DNSSEC-signed hosts, from a resolver trusted to validate) or
//! MTA-STS (RFC 8461, [`super::sts`]), as TLS_POLICY allows; and, for
//! `-bv -v`, the same in words.

use std::net::SocketAddr;

use super::{Hop, dns_outcome, sts};
use crate::context::Ctx;
use crate::smtp::dns::{DnsError, Resolver};
use crate::smtp::tls;

/// What a recipient domain's published policy (DANE, MTA-STS) asks of TLS
/// with one of its MX hosts; smarthosts and domains without a policy go as
/// dma.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum HopTls {
    /// As dma.conf says.
    #[default]
    Config,
    /// MTA-STS in testing mode: as dma.conf says, and what enforce mode
    /// would refuse is logged. The policy, in words.
    StsTesting(String),
    /// MTA-STS in enforce mode: STARTTLS, and a certificate that verifies
    /// (CA chain, the MX name) whatever dma.conf says. The policy, in words.
    Sts(String),
    /// DANE (RFC 7672): STARTTLS, and a certificate that matches one of
    /// these usable TLSA records; CAs and dma.conf do not matter. With the
    /// recipient domain: a DANE-TA chain may name it instead of the MX host
    /// (§3.2.2).
    Dane(Vec<tls::Tlsa>, String),
    /// TLSA records, none of them usable: STARTTLS without authentication
    /// (RFC 7672 §2.2), whatever dma.conf says.
    DaneUnusable,
}

impl HopTls {
    /// Whether TLS is mandatory: no plain-text delivery, no fallback.
    pub(super) fn required(&self) -> bool {
        !matches!(self, HopTls::Config | HopTls::StsTesting(_))
    }

    /// What requires TLS, for messages: `MTA-STS policy of example.com
    /// (enforce, id 2026)`, `DANE (TLSA 3 1 1 ...)`.
    pub(super) fn describe(&self, host: &str) -> String {
        match self {
            HopTls::Config | HopTls::StsTesting(_) => "the configuration".to_string(),
            HopTls::Sts(policy) => policy.clone(),
            HopTls::Dane(tlsa, _) => format!(
                "DANE (TLSA records of _25._tcp.{host}: {})",
                tlsa.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            HopTls::DaneUnusable => {
                format!("DANE (TLSA records of _25._tcp.{host}, none usable)")
            }
        }
    }
}

/// The resolver for MX delivery: NAMESERVER, or resolv.conf's.
pub(crate) fn resolver(ctx: &Ctx) -> Resolver {
    match ctx.config.nameserver {
        Some(ns) => Resolver::with_server(ns),
        None => Resolver::from_system(),
    }
}

/// For `-bv`: the MX hosts of `domain` to try, in order, with what TLS
/// each gets and why; or why there are none.
pub(crate) fn explain_mx(ctx: &Ctx, domain: &str) -> Vec<String> {
    use crate::deliver::Outcome;
    let mut notes = Vec::new();
    let hops = mx_hops(ctx, &resolver(ctx), domain, false, &mut notes);
    // Names and reasons from DNS and servers: no control characters for
    // the terminal.
    let notes: Vec<String> = notes
        .iter()
        .map(|n| crate::escape::controls(n).into_owned())
        .collect();
    let mut out: Vec<String> = notes.into_iter().map(|n| format!("({n})")).collect();
    match hops {
        Ok(hops) => out.extend(hops.iter().map(|h| {
            let tls = match &h.tls {
                HopTls::Config => "TLS as dma.conf says".to_string(),
                HopTls::StsTesting(p) => format!("TLS as dma.conf says ({p}: logged only)"),
                other => format!("TLS required by {}", other.describe(&h.name)),
            };
            crate::escape::controls(&format!("{}: {tls}", h.shown())).into_owned()
        })),
        Err(Outcome::Deferred(why) | Outcome::Failed(why)) => {
            out.push(crate::escape::controls(&format!("no host to try: {why}")).into_owned());
        }
        Err(Outcome::Delivered) => {}
    }
    out
}

/// The MX hosts of `domain` to try, in order, each with what the domain's
/// DANE or MTA-STS policy asks of TLS there. What was decided on the way
/// is logged, and added to `notes` (for `-bv`). `delivering`: the runner's
/// delivery, which keeps the MTA-STS cache (`-bv`, run by anyone, must not
/// touch it).
pub(super) fn mx_hops(
    ctx: &Ctx,
    resolver: &Resolver,
    domain: &str,
    delivering: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Hop>, crate::deliver::Outcome> {
    use crate::deliver::Outcome;
    let mut note = |level: crate::logging::Level, text: String| {
        crate::logging::log(level, &text);
        notes.push(text);
    };
    use crate::logging::Level::{Info, Notice, Warning};
    let mx = resolver.mx_lookup(domain).map_err(|e| dns_outcome(&e))?;
    let policy = &ctx.config.tls_policy;
    let sts = if policy.mta_sts {
        sts::policy(ctx, resolver, domain, delivering, &mut note)
    } else {
        None
    };
    let dane_off = if !policy.dane {
        Some("TLS_POLICY leaves it out".to_string())
    } else if !resolver.trust_ad {
        Some(
            "the resolver is not trusted to validate DNSSEC (not on loopback, and no `options trust-ad` in resolv.conf)"
                .to_string(),
        )
    } else if !mx.secure {
        Some(format!("the MX records of {domain} are not DNSSEC-signed"))
    } else {
        None
    };
    if let Some(why) = &dane_off
        && policy.dane
    {
        note(Info, format!("DANE not used for {domain}: {why}"));
    }
    let mut hops = Vec::new();
    let mut last = None;
    let mut refused = Vec::new();
    for host in mx.records {
        let addrs = match resolver.address_lookup(&host.name) {
            Ok(a) => a,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        // DANE first: a host with usable TLSA records gets them, whatever
        // MTA-STS says of it (RFC 8461 §2).
        let dane = if dane_off.is_some() {
            None
        } else if !addrs.secure {
            let why = "its addresses are not DNSSEC-signed";
            note(Info, format!("DANE not used for {}: {why}", host.name));
            None
        } else {
            match dane_tls(resolver, &host.name, domain, &mut note) {
                Ok(found) => found,
                Err(why) => {
                    // An attacker's way to strip DANE: skip the host.
                    note(Warning, format!("{why}: not trying {}", host.name));
                    refused.push(why);
                    continue;
                }
            }
        };
        // Unusable TLSA records ask for TLS without authentication: weaker
        // than an MTA-STS policy that enforces, which then decides.
        let weak =
            |d: &HopTls| *d == HopTls::DaneUnusable && sts.as_ref().is_some_and(|p| p.enforce());
        let tls = match (dane, &sts) {
            (Some(dane), _) if !weak(&dane) => dane,
            (_, None) => HopTls::Config,
            // MTA-STS enforce: only the hosts its policy names.
            (_, Some(p)) => match p.check_mx(&host.name) {
                Ok(()) => p.hop_tls(),
                Err(why) if p.enforce() => {
                    note(Notice, format!("{}: {why}: not trying it", p.describe()));
                    refused.push(format!("{}: {why}", p.describe()));
                    continue;
                }
                Err(why) => {
                    let why = format!("{}: {why}: enforce mode would not try it", p.describe());
                    note(Notice, why);
                    p.hop_tls()
                }
            },
        };
        hops.extend(addrs.records.into_iter().map(|ip| Hop {
            name: host.name.clone(),
            addr: SocketAddr::new(ip, 25),
            tls: tls.clone(),
        }));
    }
    if hops.is_empty() {
        if !refused.is_empty() {
            return Err(Outcome::Deferred(format!("4.7.5 {}", refused.join("; "))));
        }
        let e = last.unwrap_or_else(|| DnsError::NoAddress(domain.to_string()));
        // No host of the domain has an address: try again later,
        // unless the domain itself does not exist.
        return Err(match e {
            DnsError::NotFound(_) | DnsError::NullMx(_) => dns_outcome(&e),
            other => Outcome::Deferred(format!("4.4.3 {other}")),
        });
    }
    Ok(hops)
}

/// What DANE asks of TLS with `host` (whose addresses are signed): its
/// TLSA records at `_25._tcp.host`, if signed; `None` when it has none (or
/// they are not signed), an error when the lookup failed (RFC 7672 §2.2:
/// the host is not to be used then). `domain`: the recipient domain, the
/// other name a DANE-TA certificate may carry.
fn dane_tls(
    resolver: &Resolver,
    host: &str,
    domain: &str,
    note: &mut impl FnMut(crate::logging::Level, String),
) -> Result<Option<HopTls>, String> {
    use crate::logging::Level::{Info, Notice};
    let name = format!("_25._tcp.{host}");
    let found = match resolver.tlsa(&name) {
        Ok(found) => found,
        Err(DnsError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(format!("DANE: TLSA lookup for {name} failed: {e}")),
    };
    if found.records.is_empty() {
        note(
            Info,
            format!("DANE not used for {host}: no TLSA records at {name}"),
        );
        return Ok(None);
    }
    if !found.secure {
        let why = format!("the TLSA records at {name} are not DNSSEC-signed");
        note(Info, format!("DANE not used for {host}: {why}"));
        return Ok(None);
    }
    let usable: Vec<tls::Tlsa> = found
        .records
        .iter()
        .filter_map(|raw| tls::Tlsa::from_rdata(raw))
        .filter(tls::Tlsa::usable)
        .collect();
    Ok(Some(if usable.is_empty() {
        let why = format!("TLSA records at {name}, none usable: TLS without authentication");
        note(Notice, format!("DANE for {host}: {why}"));
        HopTls::DaneUnusable
    } else {
        let list: Vec<String> = usable.iter().map(|t| t.to_string()).collect();
        let what = format!("TLS required, certificate to match {}", list.join(", "));
        note(Info, format!("DANE for {host}: {what}"));
        HopTls::Dane(usable, domain.to_ascii_lowercase())
    }))
}
