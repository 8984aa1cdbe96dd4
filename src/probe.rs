//! `dma --probe [host[:port]]`: tests a smarthost before mail depends on it
//! (msmtp's `--serverinfo`). It connects as a delivery would, through the
//! delivery's own code ([`remote::open_traced`]: SECURETRANSFER, STARTTLS,
//! OPPORTUNISTIC_TLS, CAFILE, FINGERPRINT, CERTFILE, TLS_NO_VERIFY), and
//! prints what it found on standard output, one fact per line: the server,
//! its greeting, how TLS went and with which certificate, the verdict on
//! that certificate in the words `mailq` uses, the EHLO capabilities and
//! AUTH mechanisms. With `--auth` it also logs in with the credentials
//! auth.conf has for the host (the password is never shown). It sends no
//! mail: QUIT after EHLO or AUTH.
//!
//! The exit code says whether a delivery would get through: 0; 69 when the
//! server can not be reached or TLS fails as configured; 77 when it refuses
//! the credentials (75 when it refuses them for now); 78 when the
//! configuration stops it (a TLS file, no credentials to try, a password
//! that may not be sent). The reason is printed as the last line, and as
//! the one line on standard error.

use std::io::Write;

use crate::config::conf::parse_hosts;
use crate::context::Ctx;
use crate::exit::Fatal;
use crate::exit::{EX_CONFIG, EX_IOERR, EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE};
use crate::remote::{self, Hop, Trace};
use crate::smtp::reply::Reply;
use crate::smtp::session::{Session, SessionError};
use crate::smtp::stream::Stream;
use crate::smtp::tls::{self, Policy};

/// Probes `target` (`host[:port]`; the SMARTHOSTs when `None`), and with
/// `auth` logs in; prints the facts to `out`. Ok(0) when a delivery would
/// get through, else the error to exit with.
pub fn run(
    ctx: &Ctx,
    target: Option<&str>,
    auth: bool,
    out: &mut impl Write,
) -> Result<i32, Fatal> {
    let hosts = targets(ctx, target)?;
    if ctx.config.securetransfer {
        // CAFILE or CERTFILE unreadable: the configuration's fault, not
        // the server's; said before anything is sent.
        tls::client(&ctx.config, false)
            .map_err(|e| Fatal::new(EX_CONFIG, format!("TLS configuration: {e}")))?;
    }
    let mut p = Printer { out };
    let mut last = Fatal::new(EX_UNAVAILABLE, "no host to try");
    // As a delivery: each host in turn, each of its addresses in turn, until
    // one would take the mail.
    for (host, port) in hosts {
        let hops = match Hop::resolve(&host, port) {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => {
                last = Fatal::new(EX_UNAVAILABLE, format!("{host} has no address"));
                p.fact("failed", &last.msg)?;
                continue;
            }
            Err(e) => {
                last = Fatal::new(EX_UNAVAILABLE, format!("can not resolve {host}: {e}"));
                p.fact("failed", &last.msg)?;
                continue;
            }
        };
        for hop in hops {
            match probe(ctx, &hop, auth, &mut p)? {
                Ok(()) => {
                    p.fact("result", "ok: a delivery would get through")?;
                    return Ok(EX_OK);
                }
                Err(e) => {
                    p.fact("failed", &e.msg)?;
                    last = e;
                }
            }
        }
    }
    Err(last)
}

/// What to probe: `host[:port]` (`[ip]:port` too; PORT when no port is
/// given), or else the SMARTHOSTs with their ports.
fn targets(ctx: &Ctx, target: Option<&str>) -> Result<Vec<(String, u16)>, Fatal> {
    let Some(t) = target else {
        let hosts = ctx.config.smarthosts();
        if hosts.is_empty() {
            return Err(Fatal::new(
                EX_USAGE,
                "no SMARTHOST in dma.conf: name the host to probe (dma --probe host[:port])",
            ));
        }
        return Ok(hosts);
    };
    let bad = |why: String| {
        Fatal::new(
            EX_USAGE,
            format!(
                "invalid --probe target `{}': {why}",
                crate::escape::escape(t)
            ),
        )
    };
    let hosts = parse_hosts(t, ctx.config.port).map_err(|e| bad(e.replace("SMARTHOST: ", "")))?;
    if hosts.len() != 1 {
        return Err(bad("one host[:port]".into()));
    }
    Ok(hosts)
}

/// Writes `name: value` lines, values made safe for a terminal.
struct Printer<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Printer<'_, W> {
    fn fact(&mut self, name: &str, value: &str) -> Result<(), Fatal> {
        writeln!(self.out, "{name}: {}", crate::escape::controls(value))
            .and_then(|_| self.out.flush())
            .map_err(|e| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}")))
    }
}

/// One address of a host: Ok(Ok(())) if a delivery there would get
/// through, Ok(Err(why)) if not; Err only when the facts can not be
/// written.
fn probe<W: Write>(
    ctx: &Ctx,
    hop: &Hop,
    auth: bool,
    p: &mut Printer<W>,
) -> Result<Result<(), Fatal>, Fatal> {
    p.fact(
        "server",
        &format!("{} port {}", hop.shown(), hop.addr.port()),
    )?;
    let mut trace = Trace::default();
    let opened = remote::open_traced(ctx, hop, &mut trace);
    if let Some(g) = &trace.greeting {
        p.fact("greeting", &g.one_line())?;
    }
    let s = match opened {
        Ok(s) => s,
        Err(e) => {
            if let Some(why) = &trace.tls_failed {
                p.fact("tls", trace.tls.unwrap_or("yes"))?;
                p.fact("verification", &format!("failed: {why}"))?;
            }
            return Ok(Err(Fatal::new(EX_UNAVAILABLE, e)));
        }
    };
    tls_facts(ctx, &trace, &s, p)?;
    if let Some(h) = &trace.hello {
        for line in capabilities(h) {
            p.fact("capability", line)?;
        }
        p.fact(
            "auth mechanisms",
            &auth_mechanisms(h).unwrap_or_else(|| "none offered".into()),
        )?;
    }
    if !auth {
        s.quit();
        return Ok(Ok(()));
    }
    login(ctx, hop, s, p)
}

/// How TLS went on a connection that is open: the way it was started, the
/// version, the cipher suite, the certificate and the verdict.
fn tls_facts<W: Write>(
    ctx: &Ctx,
    trace: &Trace,
    s: &Session<Stream>,
    p: &mut Printer<W>,
) -> Result<(), Fatal> {
    let stream = s.stream();
    if !stream.is_tls() {
        let why = match &trace.plain_because {
            Some(why) => why.clone(),
            None => "not configured (SECURETRANSFER is off)".into(),
        };
        return p.fact("tls", &format!("none: {why}"));
    }
    p.fact("tls", trace.tls.unwrap_or("yes"))?;
    if let Some((version, suite)) = stream.tls_parameters() {
        p.fact("tls version", &version)?;
        p.fact("cipher suite", &suite)?;
    }
    if let Some(c) = stream.peer_certificate().as_deref().and_then(tls::summary) {
        p.fact("certificate subject", &c.subject)?;
        p.fact("certificate issuer", &c.issuer)?;
        if !c.names.is_empty() {
            p.fact("certificate names", &c.names.join(", "))?;
        }
        p.fact(
            "certificate valid",
            &format!("from {} until {}", c.not_before, c.not_after),
        )?;
    }
    p.fact("verification", &verdict(ctx, stream.unverified()))
}

/// The verdict on the certificate of a TLS connection that is up.
fn verdict(ctx: &Ctx, unverified: Option<&str>) -> String {
    if let Some(why) = unverified {
        return format!("unverified: {why}");
    }
    match Policy::of(&ctx.config) {
        Policy::Verify => match &ctx.config.cafile {
            Some(f) => format!("verified (CAFILE {})", f.display()),
            None => "verified (the system's trusted CAs)".into(),
        },
        Policy::Pin(_) => "verified (FINGERPRINT)".into(),
        Policy::None => "unverified: TLS_NO_VERIFY is set, the certificate is not checked".into(),
    }
}

/// The capability lines of an EHLO reply (the first line is the server's
/// name).
fn capabilities(hello: &Reply) -> impl Iterator<Item = &str> {
    hello.lines.iter().skip(1).map(|l| l.trim())
}

/// The AUTH mechanisms an EHLO reply offers, as the server wrote them.
fn auth_mechanisms(hello: &Reply) -> Option<String> {
    capabilities(hello).find_map(|l| {
        let (kw, rest) = l.split_once([' ', '=']).unwrap_or((l, ""));
        kw.eq_ignore_ascii_case("AUTH")
            .then(|| rest.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// `--auth`: logs in with the credentials auth.conf has for the host, as a
/// delivery would (or says why a delivery would not), then QUIT.
fn login<W: Write>(
    ctx: &Ctx,
    hop: &Hop,
    mut s: Session<Stream>,
    p: &mut Printer<W>,
) -> Result<Result<(), Fatal>, Fatal> {
    let creds = match remote::credentials(ctx, &hop.name) {
        Ok(Some(c)) => c,
        Ok(None) => {
            s.quit();
            let why = match &ctx.config.authpath {
                Some(f) => format!("{} has no credentials for {}", f.display(), hop.name),
                None => "no AUTHPATH in dma.conf: no credentials to try".into(),
            };
            return Ok(Err(Fatal::new(EX_CONFIG, why)));
        }
        Err(e) => {
            s.quit();
            // A password command's output may hold the password: the system
            // log only, as in a delivery.
            crate::logging::syslog_only(
                crate::logging::Level::Warning,
                &format!("credentials for {}: {e}", hop.name),
            );
            return Ok(Err(Fatal::new(
                EX_CONFIG,
                format!(
                    "can not get the credentials for {} (see the system log)",
                    hop.name
                ),
            )));
        }
    };
    p.fact("auth login", &creds.login)?;
    if let Some(why) = remote::password_withheld(ctx, &s) {
        s.quit();
        return Ok(Err(Fatal::new(EX_CONFIG, why)));
    }
    let encrypted = s.stream().is_tls() && s.stream().unverified().is_none();
    let r = s.auth(&creds, encrypted, ctx.config.insecure);
    s.quit();
    Ok(match r {
        Ok(Some(mech)) => {
            p.fact("auth", &format!("accepted ({})", mech.name()))?;
            Ok(())
        }
        Ok(None) => Err(Fatal::new(
            EX_UNAVAILABLE,
            format!(
                "{} offers no AUTH mechanism that dma-rs may use here",
                hop.shown()
            ),
        )),
        Err(e @ SessionError::Reply { .. }) => {
            let code = if e.is_permanent() {
                EX_NOPERM
            } else {
                EX_TEMPFAIL
            };
            Err(Fatal::new(code, format!("authentication failed: {e}")))
        }
        Err(e) => Err(Fatal::new(
            EX_UNAVAILABLE,
            format!("authentication failed: {e}"),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn ctx(conf: &str) -> Ctx {
        let c = Config::parse(std::path::Path::new("/x/dma.conf"), conf).unwrap();
        Ctx::new(c, None)
    }

    #[test]
    fn targets_default_to_the_smarthosts_and_take_the_port_from_port() {
        let c = ctx("SMARTHOST mx.example.net\nPORT 587\n");
        for (given, want) in [
            (None, vec![("mx.example.net".to_string(), 587)]),
            (Some("other.test"), vec![("other.test".to_string(), 587)]),
            (
                Some("other.test:2525"),
                vec![("other.test".to_string(), 2525)],
            ),
            (Some("[::1]:26"), vec![("::1".to_string(), 26)]),
        ] {
            assert_eq!(targets(&c, given).unwrap(), want, "{given:?}");
        }
        for bad in ["a.test b.test", "a.test:0", "a.test:x", ""] {
            let e = targets(&c, Some(bad)).unwrap_err();
            assert_eq!(e.code, EX_USAGE, "{bad}");
            assert!(e.msg.starts_with("invalid --probe target"), "{e}");
        }
        let e = targets(&ctx(""), None).unwrap_err();
        assert_eq!(e.code, EX_USAGE);
        assert!(e.msg.starts_with("no SMARTHOST"), "{e}");
        assert_eq!(targets(&ctx(""), Some("h")).unwrap(), [("h".into(), 25)]);
    }

    #[test]
    fn auth_mechanisms_as_the_server_wrote_them() {
        for (lines, want) in [
            (
                &["x", "PIPELINING", "AUTH PLAIN LOGIN"][..],
                Some("PLAIN LOGIN"),
            ),
            (&["x", "auth=CRAM-MD5  PLAIN"][..], Some("CRAM-MD5 PLAIN")),
            (&["x", "AUTHX Y"][..], None),
            (&["AUTH PLAIN"][..], None),
        ] {
            let r = Reply {
                code: 250,
                lines: lines.iter().map(|l| l.to_string()).collect(),
            };
            assert_eq!(auth_mechanisms(&r).as_deref(), want, "{lines:?}");
        }
    }

    #[test]
    fn verdicts_in_words() {
        assert_eq!(
            verdict(&ctx("CAFILE /ca.pem\n"), None),
            "verified (CAFILE /ca.pem)"
        );
        assert_eq!(verdict(&ctx(""), Some("why")), "unverified: why");
        assert!(verdict(&ctx("TLS_NO_VERIFY\n"), None).starts_with("unverified: TLS_NO_VERIFY"));
    }
}
