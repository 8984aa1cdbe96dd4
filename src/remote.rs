//! Remote delivery of one message: its remote recipients grouped per next
//! hop, one SMTP transaction per group, one outcome per recipient.
//!
//! Next hops: the smarthosts in order (SMARTHOST, with PORT), each address
//! of each in turn; or, without a smarthost, the MX hosts of the recipient
//! domain by preference (implicit MX, null MX and NXDOMAIN bounce,
//! SERVFAIL and timeouts defer). The next host is tried on a connection
//! failure, a 4xx/5xx greeting, a failed EHLO or a TLS failure. Once a
//! transaction has run, its replies are final for that attempt.

use std::cell::OnceCell;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::AuthFile;
use crate::context::Ctx;
use crate::smtp::auth::Credentials;
use crate::smtp::dns::DnsError;
use crate::smtp::reply::Reply;
use crate::smtp::session::{Caps, Envelope, RcptResult, Session, SessionError, Timeouts};
use crate::smtp::stream::Stream;
use crate::smtp::{body, tls};
use crate::spool::Dsn;
use crate::{info, notice, warning};

mod mx;
mod sts;

pub(crate) use mx::{HopTls, explain_mx, resolver};

/// One remote recipient of the message.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its index in the envelope.
    pub index: usize,
    /// The address for RCPT TO.
    pub addr: String,
    /// Its domain.
    pub domain: String,
    /// Header lines to add for it (Delivered-To when it was forwarded).
    pub prepend: Vec<String>,
    /// The address it was originally sent to (DSN ORCPT).
    pub orcpt: String,
}

/// What happened to one recipient, with who said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Result1 {
    /// Its index in the envelope.
    pub index: usize,
    /// Delivered, deferred or failed, with `<status> <text>`.
    pub outcome: crate::deliver::Outcome,
    /// The server that answered (`host [ip]`), for the DSN's Remote-MTA.
    pub mta: Option<String>,
    /// The server's reply, one line, for the DSN's Diagnostic-Code.
    pub smtp: Option<String>,
}

/// A host to try: its name (for TLS and messages), address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The name as configured (SMARTHOST, an MX), for TLS and auth.conf.
    pub(crate) name: String,
    /// One of its addresses, with the port.
    pub(crate) addr: SocketAddr,
    /// What the recipient domain's published policy asks of TLS there.
    pub(crate) tls: HopTls,
}

impl Hop {
    /// Every address of `host` (a name or an IP address), with `port`.
    pub(crate) fn resolve(host: &str, port: u16) -> std::io::Result<Vec<Hop>> {
        Ok((host, port)
            .to_socket_addrs()?
            .map(|addr| Hop {
                name: host.to_string(),
                addr,
                tls: HopTls::Config,
            })
            .collect())
    }

    /// `name [ip]`, as messages show a server.
    pub(crate) fn shown(&self) -> String {
        format!("{} [{}]", self.name, self.addr.ip())
    }
}

/// Recipients that go in one transaction: the same hosts, the same added
/// header lines.
struct Group<'t> {
    prepend: Vec<String>,
    hops: Vec<Hop>,
    targets: Vec<&'t Target>,
}

/// Where a group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NextHop {
    Smarthosts,
    Mx(String),
}

/// Delivers `targets` (the remote recipients of the message in `data`, from
/// `sender`) and returns one result per target. `dkim`: the message's
/// DKIM-Signature fields (see [`crate::dkim`]), sent in front of it
/// everywhere; with them, a message with 8-bit octets goes to every server
/// in the 7-bit form they sign ([`signed_form`]).
pub fn deliver(
    ctx: &Ctx,
    data: &File,
    sender: &str,
    dsn: &Dsn,
    dkim: &[String],
    targets: &[Target],
) -> Vec<Result1> {
    let scan = {
        let mut r = match reader(data) {
            Ok(r) => r,
            Err(e) => {
                return all(
                    targets,
                    defer(&format!("4.3.0 can not read the queued message: {e}")),
                );
            }
        };
        body::scan(&mut r).unwrap_or_default()
    };
    let downgraded = OnceCell::new();
    // Resolve each next hop once, then group the recipients whose hosts are
    // the same (and who get the same added header lines): one transaction
    // per host carries all of the message's recipients there.
    let mut resolved: Vec<(NextHop, Result<Vec<Hop>, crate::deliver::Outcome>)> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut out = Vec::new();
    for t in targets {
        let hop = if ctx.config.smarthost.is_some() {
            NextHop::Smarthosts
        } else {
            NextHop::Mx(t.domain.to_ascii_lowercase())
        };
        let i = match resolved.iter().position(|(h, _)| *h == hop) {
            Some(i) => i,
            None => {
                let r = resolve(ctx, &hop);
                resolved.push((hop, r));
                resolved.len() - 1
            }
        };
        match &resolved[i].1 {
            Err(outcome) => out.push(Result1 {
                index: t.index,
                outcome: outcome.clone(),
                mta: None,
                smtp: None,
            }),
            Ok(hops) => {
                // The same hosts under the same TLS demands.
                match groups
                    .iter_mut()
                    .find(|g| g.hops == *hops && g.prepend == t.prepend)
                {
                    Some(g) => g.targets.push(t),
                    None => groups.push(Group {
                        prepend: t.prepend.clone(),
                        hops: hops.clone(),
                        targets: vec![t],
                    }),
                }
            }
        }
    }
    let signature: Vec<String> = dkim
        .iter()
        .flat_map(|h| h.split('\n'))
        .map(str::to_string)
        .collect();
    for g in groups {
        let msg = Msg {
            data,
            sender,
            dsn,
            scan,
            downgraded: &downgraded,
            signed: !dkim.is_empty(),
        };
        // The signature first, then the group's Delivered-To lines: a
        // verifier finds it anywhere in the header, and it covers neither.
        let prepend: Vec<String> = signature.iter().chain(&g.prepend).cloned().collect();
        out.extend(deliver_group(ctx, &msg, &g.targets, &prepend, &g.hops));
    }
    out
}

/// The message in `data` as it goes to every server once it is
/// DKIM-signed, and so as it is signed: its 7-bit form
/// ([`crate::smtp::downgrade`], the same bytes every time) when it has
/// 8-bit octets (RFC 6376 §5.3), else itself. (`Msg::for_server` makes
/// the same choice when sending.)
pub(crate) fn signed_form(data: &File) -> Result<File, String> {
    let scan = reader(data)
        .and_then(|mut r| body::scan(&mut r))
        .map_err(|e| format!("4.3.0 can not read the queued message: {e}"))?;
    if scan.eightbit {
        downgrade(data).map(|(f, _)| f)
    } else {
        data.try_clone()
            .map_err(|e| format!("4.3.0 can not read the queued message: {e}"))
    }
}

fn reader(data: &File) -> std::io::Result<BufReader<File>> {
    let mut f = data.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    Ok(BufReader::with_capacity(64 * 1024, f))
}

fn defer(why: &str) -> crate::deliver::Outcome {
    crate::deliver::Outcome::Deferred(why.to_string())
}

/// The same `outcome` for every target.
pub(crate) fn all(targets: &[Target], outcome: crate::deliver::Outcome) -> Vec<Result1> {
    targets
        .iter()
        .map(|t| Result1 {
            index: t.index,
            outcome: outcome.clone(),
            mta: None,
            smtp: None,
        })
        .collect()
}

/// The hosts to try for a next hop, in order.
fn resolve(ctx: &Ctx, hop: &NextHop) -> Result<Vec<Hop>, crate::deliver::Outcome> {
    use crate::deliver::Outcome;
    let mut hops = Vec::new();
    match hop {
        NextHop::Smarthosts => {
            let list = ctx.config.smarthosts();
            info!(
                "using smarthost ({})",
                list.iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut last = String::new();
            for (host, port) in list {
                match Hop::resolve(&host, port) {
                    Ok(h) => hops.extend(h),
                    Err(e) => last = format!("4.4.3 can not resolve smarthost {host}: {e}"),
                }
            }
            if hops.is_empty() {
                return Err(Outcome::Deferred(last));
            }
        }
        NextHop::Mx(domain) => {
            if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
                let ip: IpAddr = lit
                    .trim_start_matches("IPv6:")
                    .parse()
                    .map_err(|_| Outcome::Failed(format!("5.1.2 bad address literal [{lit}]")))?;
                return Ok(vec![Hop {
                    name: lit.to_string(),
                    addr: SocketAddr::new(ip, 25),
                    tls: HopTls::Config,
                }]);
            }
            return mx::mx_hops(ctx, &resolver(ctx), domain, true, &mut Vec::new());
        }
    }
    Ok(hops)
}

fn dns_outcome(e: &DnsError) -> crate::deliver::Outcome {
    use crate::deliver::Outcome;
    match e {
        DnsError::NotFound(_) => Outcome::Failed(format!("5.1.2 {e}")),
        DnsError::NullMx(_) => Outcome::Failed(format!("5.1.10 {e}")),
        DnsError::NoAddress(_) => Outcome::Deferred(format!("4.4.3 {e}")),
        DnsError::Temporary(..) => Outcome::Deferred(format!("4.4.3 {e}")),
    }
}

fn timeouts(ctx: &Ctx) -> Timeouts {
    match ctx.config.smtp_timeout {
        Some(t) => Timeouts::all(t),
        None => Timeouts::default(),
    }
}

/// A connection up to the point of the first transaction, or why not.
///
/// Under OPPORTUNISTIC_TLS a STARTTLS handshake that fails (no protocol in
/// common, an alert, a lost connection; not a FINGERPRINT mismatch) is
/// tried again in plain text on a new connection, as Postfix does at
/// `smtp_tls_security_level = may`: the configuration asks for delivery
/// without TLS rather than none.
fn open(ctx: &Ctx, hop: &Hop) -> Result<Session<Stream>, String> {
    open_traced(ctx, hop, &mut Trace::default())
}

/// [`open`], recording in `trace` what it finds on the way (`dma --probe`
/// prints it).
pub(crate) fn open_traced(
    ctx: &Ctx,
    hop: &Hop,
    trace: &mut Trace,
) -> Result<Session<Stream>, String> {
    match open_with(ctx, hop, true, trace) {
        Err(Open::HandshakeFailed(e)) => {
            notice!("in opportunistic TLS mode, {e}; trying again in plain text");
            *trace = Trace {
                plain_because: Some(format!("{e}; OPPORTUNISTIC_TLS tried again in plain text")),
                ..Trace::default()
            };
            open_with(ctx, hop, false, trace).map_err(Open::into_text)
        }
        r => r.map_err(Open::into_text),
    }
}

/// What opening a connection found, step by step. A delivery ignores it;
/// `dma --probe` prints it.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The server's greeting.
    pub(crate) greeting: Option<Reply>,
    /// Its last reply to EHLO (or HELO): over TLS, once TLS is up.
    pub(crate) hello: Option<Reply>,
    /// How TLS was started (`implicit TLS`, `STARTTLS`), once tried.
    pub(crate) tls: Option<&'static str>,
    /// Why the TLS handshake failed, in words, if it did.
    pub(crate) tls_failed: Option<String>,
    /// Why the connection is in plain text although STARTTLS was asked for
    /// (OPPORTUNISTIC_TLS).
    pub(crate) plain_because: Option<String>,
}

/// Why a connection was not opened.
enum Open {
    /// Give up on this host.
    Failed(String),
    /// The STARTTLS handshake failed under OPPORTUNISTIC_TLS.
    HandshakeFailed(String),
}

impl Open {
    fn into_text(self) -> String {
        match self {
            Open::Failed(e) | Open::HandshakeFailed(e) => e,
        }
    }
}

/// [`open`], with STARTTLS only when `starttls` (false: the plain-text
/// retry of an opportunistic connection).
fn open_with(
    ctx: &Ctx,
    hop: &Hop,
    starttls: bool,
    trace: &mut Trace,
) -> Result<Session<Stream>, Open> {
    let c = &ctx.config;
    let t = timeouts(ctx);
    let shown = hop.shown();
    let failed = Open::Failed;
    // TLS the recipient domain's policy demands: no plain text, no
    // unverified certificate, and failures that name the policy.
    let required = hop.tls.required();
    let refused = |e: String| Open::Failed(format!("{}: {e}", hop.tls.describe(&hop.name)));
    info!("trying remote delivery to {shown}");
    let stream = Stream::connect(hop.addr, c.connect_timeout)
        .map_err(|e| failed(format!("connect to {shown} failed: {e}")))?;
    let implicit = c.securetransfer && !c.starttls;
    let stream = if implicit {
        let client =
            client_for(ctx, hop, false).map_err(|e| failed(format!("TLS configuration: {e}")))?;
        trace.tls = Some("implicit TLS");
        stream
            .into_tls(client.config.clone(), &hop.name, t.command)
            .map_err(|e| {
                let why = client.why(&e).0;
                let e = format!("TLS with {shown} failed: {why}");
                trace.tls_failed = Some(why);
                if required { refused(e) } else { failed(e) }
            })?
    } else {
        stream
    };
    let mut s = Session::new(stream, &shown, t);
    trace.greeting = Some(s.greeting().map_err(|e| failed(e.to_string()))?);
    trace.hello = Some(s.hello(&ctx.hostname).map_err(|e| failed(e.to_string()))?);
    if !implicit && (required || (c.securetransfer && c.starttls && starttls)) {
        let offered = s.caps.starttls;
        let ok = offered && s.starttls().map_err(|e| failed(e.to_string()))?;
        if ok {
            // OPPORTUNISTIC_TLS: a certificate that fails verification is
            // accepted, the connection marked unverified. Never under a
            // policy of the domain's.
            let lenient = c.opportunistic_tls && !required;
            let client = client_for(ctx, hop, lenient)
                .map_err(|e| failed(format!("TLS configuration: {e}")))?;
            trace.tls = Some("STARTTLS");
            let mut stream =
                match s
                    .into_stream()
                    .into_tls(client.config.clone(), &hop.name, t.command)
                {
                    Ok(stream) => stream,
                    Err(e) => {
                        let (why, certificate) = client.why(&e);
                        let e = format!("TLS with {shown} failed: {why}");
                        trace.tls_failed = Some(why);
                        return Err(if required {
                            refused(e)
                        } else if c.opportunistic_tls && !certificate {
                            Open::HandshakeFailed(e)
                        } else {
                            failed(e)
                        });
                    }
                };
            if let Some(why) = client.unverified() {
                warning!(
                    "TLS with {shown} is unverified: {why}; OPPORTUNISTIC_TLS delivers over it all the same (encrypted, but the server is not authenticated)"
                );
                stream.set_unverified(why);
            } else if hop.tls == HopTls::DaneUnusable {
                stream.set_unverified(format!(
                    "no usable TLSA record for {}: encrypted, not authenticated",
                    hop.name
                ));
            } else if required {
                // The handshake is through: the certificate matched.
                let by = hop.tls.describe(&hop.name);
                info!("TLS with {shown}: certificate verified, as {by} requires");
            }
            s = Session::new(stream, &shown, t);
            trace.hello = Some(s.hello(&ctx.hostname).map_err(|e| failed(e.to_string()))?);
        } else if required {
            return Err(refused(format!(
                "{shown} {} STARTTLS",
                if offered { "refused" } else { "does not offer" }
            )));
        } else if c.opportunistic_tls {
            notice!(
                "in opportunistic TLS mode, STARTTLS not available at {shown}: continuing in plain text"
            );
            trace.plain_because = Some(format!(
                "{shown} {} STARTTLS; OPPORTUNISTIC_TLS continues in plain text",
                if offered { "refused" } else { "does not offer" }
            ));
        } else {
            return Err(failed(format!(
                "{shown} {} STARTTLS, and TLS is required (SECURETRANSFER STARTTLS)",
                if offered { "refused" } else { "does not offer" }
            )));
        }
    }
    if let HopTls::StsTesting(policy) = &hop.tls {
        let short = if !is_tls(&s) {
            Some("no TLS".to_string())
        } else {
            s.stream().unverified().map(str::to_string)
        };
        if let Some(why) = short {
            notice!("{policy}: {shown}: {why}; enforce mode would not deliver here");
        }
    }
    Ok(s)
}

/// The TLS client for `hop`: as dma.conf says, or as the domain's policy
/// demands (MTA-STS: a verified chain and name, whatever FINGERPRINT or
/// TLS_NO_VERIFY say; DANE: its TLSA records).
fn client_for(ctx: &Ctx, hop: &Hop, lenient: bool) -> Result<tls::Client, String> {
    let strict = |no_verify: bool| {
        let mut c = ctx.config.clone();
        c.fingerprint = None;
        c.tls_no_verify = no_verify;
        tls::client(&c, false)
    };
    match &hop.tls {
        HopTls::Config | HopTls::StsTesting(_) => {
            warn_noverify(ctx, &hop.shown());
            tls::client(&ctx.config, lenient)
        }
        HopTls::Sts(_) => strict(false),
        HopTls::Dane(tlsa, domain) => tls::client_dane(
            &ctx.config,
            tlsa.clone(),
            vec![hop.name.clone(), domain.clone()],
        ),
        HopTls::DaneUnusable => strict(true),
    }
}

fn warn_noverify(ctx: &Ctx, shown: &str) {
    if ctx.config.tls_no_verify && ctx.config.fingerprint.is_none() {
        warning!("TLS_NO_VERIFY: not verifying the certificate of {shown} (insecure)");
    }
}

/// The credentials for `host` from auth.conf, if any.
pub(crate) fn credentials(ctx: &Ctx, host: &str) -> Result<Option<Credentials>, String> {
    let Some(path) = &ctx.config.authpath else {
        return Ok(None);
    };
    let file = AuthFile::load(path).map_err(|e| format!("auth file {}: {e}", path.display()))?;
    let Some(entry) = file.lookup(host) else {
        return Ok(None);
    };
    let secret = entry.resolve()?;
    Ok(Some(Credentials {
        login: entry.login.clone(),
        secret,
    }))
}

/// The message being sent.
struct Msg<'a> {
    data: &'a File,
    sender: &'a str,
    dsn: &'a Dsn,
    /// Its 8-bit octets and size.
    scan: body::Scan,
    /// The message with its 8-bit parts quoted-printable, for a server
    /// without 8BITMIME: made when first needed, then shared by the hosts
    /// and transactions that need it.
    downgraded: &'a OnceCell<Result<(File, u64), String>>,
    /// It carries DKIM signatures, made over its 7-bit form when it has
    /// 8-bit octets: that form goes to every server.
    signed: bool,
}

impl Msg<'_> {
    /// What to send to a server with `caps`: the spooled message, or its
    /// 7-bit conversion (RFC 6152; always when signed, see
    /// [`signed_form`]). The data, whether it is 8-bit, its size.
    fn for_server(&self, caps: &Caps) -> Result<(&File, bool, u64), String> {
        if !self.scan.eightbit || (caps.eightbit && !self.signed) {
            return Ok((self.data, self.scan.eightbit, self.scan.size));
        }
        let (f, size) = self
            .downgraded
            .get_or_init(|| downgrade(self.data))
            .as_ref()
            .map_err(Clone::clone)?;
        // Header text stays as it is (8-bit only with SMTPUTF8): a signed
        // message says so where the server takes 8BITMIME.
        Ok((f, self.signed && self.scan.header_8bit, *size))
    }
}

/// The message in `data` converted to 7 bit, in a temporary file (removed
/// already: it goes when closed), and its size as sent.
fn downgrade(data: &File) -> Result<(File, u64), String> {
    let convert = || -> std::io::Result<(File, u64)> {
        let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
        crate::smtp::downgrade::to_7bit(&mut reader(data)?, &mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        let size = body::scan(&mut reader(&f)?)?.size;
        Ok((f, size))
    };
    convert().map_err(|e| format!("4.3.0 can not convert the message to 7 bit: {e}"))
}

fn deliver_group(
    ctx: &Ctx,
    msg: &Msg,
    group: &[&Target],
    prepend: &[String],
    hops: &[Hop],
) -> Vec<Result1> {
    let mut last_err = String::from("no host to try");
    for hop in hops {
        let shown = hop.shown();
        // A connection kept from an earlier message of this queue run.
        if let Some(s) = ctx.pool.as_ref().and_then(|p| p.take(hop)) {
            match run_transactions(s, msg, group, prepend, &shown) {
                Run::Done(out, s) => {
                    keep(ctx, hop, s);
                    return out;
                }
                Run::Stale(e) => {
                    notice!("reused connection to {shown} failed ({e}); opening a new one")
                }
            }
        }
        let mut s = match open(ctx, hop) {
            Ok(s) => s,
            Err(e) => {
                notice!("{e}");
                last_err = e;
                continue;
            }
        };
        match credentials(ctx, &hop.name) {
            Err(e) => {
                s.quit();
                // A password command, its exit and what it printed are the
                // administrator's business: the system log only, never the
                // queue file, mailq, -v or a bounce.
                crate::logging::syslog_only(
                    crate::logging::Level::Warning,
                    &format!("credentials for {}: {e}", hop.name),
                );
                let why = format!(
                    "4.7.0 can not get the credentials for {} (see the system log)",
                    hop.name
                );
                return group_deferred(group, &why, None);
            }
            Ok(None) => {}
            Ok(Some(creds)) => {
                let encrypted = is_tls(&s) && s.stream().unverified().is_none();
                if let Some(why) = password_withheld(ctx, &s) {
                    warning!("{why}; trying without AUTH");
                    s.auth_withheld = Some(why);
                }
                match s.auth(&creds, encrypted, ctx.config.insecure) {
                    Ok(Some(mech)) => info!("authenticated to {shown} with {}", mech.name()),
                    Ok(None) if s.auth_withheld.is_some() => {}
                    Ok(None) => warning!(
                        "{shown}: no AUTH mechanism that may be used here (plain-text passwords need TLS or INSECURE); trying without"
                    ),
                    Err(e) => {
                        // A refused password is not the recipients' fault:
                        // keep their mail (try the next host), say why.
                        warning!("authentication to {shown} failed: {e}");
                        s.quit();
                        last_err = format!("authentication failed: {e}");
                        continue;
                    }
                }
            }
        }
        return match run_transactions(s, msg, group, prepend, &shown) {
            Run::Done(out, s) => {
                keep(ctx, hop, s);
                out
            }
            Run::Stale(e) => group_deferred(group, &session_why(&e), Some(&shown)),
        };
    }
    let status = if last_err.starts_with("authentication failed") {
        "4.7.0"
    } else if hops
        .iter()
        .any(|h| h.tls.required() && last_err.starts_with(&h.tls.describe(&h.name)))
    {
        // TLS the domain's policy demands, not to be had.
        "4.7.5"
    } else {
        "4.4.1"
    };
    group_deferred(group, &format!("{status} {last_err}"), None)
}

/// Why no password may be sent over `s`, if none may: a connection
/// without TLS, or whose certificate was not verified (OPPORTUNISTIC_TLS:
/// whoever is in the middle would get the password), unless INSECURE.
pub(crate) fn password_withheld(ctx: &Ctx, s: &Session<Stream>) -> Option<String> {
    let encrypted = is_tls(s) && s.stream().unverified().is_none();
    if encrypted || ctx.config.insecure {
        return None;
    }
    Some(match s.stream().unverified() {
        Some(u) => format!(
            "no password sent to {}: TLS is unverified ({u}), and INSECURE is not set",
            s.host
        ),
        None => format!(
            "no password sent to {}: the connection is not encrypted, and INSECURE is not set",
            s.host
        ),
    })
}

/// Keeps a usable session for the next message of a queue run, or ends it.
fn keep(ctx: &Ctx, hop: &Hop, s: Option<Session<Stream>>) {
    let Some(s) = s else { return };
    match &ctx.pool {
        Some(p) => p.put(hop, s),
        None => s.quit(),
    }
}

/// Open SMTP sessions kept during a queue run, one per server address (and
/// name, and TLS demands: a session opened as dma.conf says is no session
/// for a domain whose policy requires verified TLS), so that every due
/// message for a host goes over one connection (RSET between
/// transactions).
#[derive(Default)]
pub struct Pool {
    sessions: std::cell::RefCell<Vec<(Hop, Session<Stream>)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} sessions)", self.sessions.borrow().len())
    }
}

impl Pool {
    /// The most sessions kept open at once.
    const MAX: usize = 16;

    fn take(&self, hop: &Hop) -> Option<Session<Stream>> {
        let mut v = self.sessions.borrow_mut();
        let i = v.iter().position(|(h, _)| h == hop)?;
        Some(v.swap_remove(i).1)
    }

    fn put(&self, hop: &Hop, s: Session<Stream>) {
        let mut v = self.sessions.borrow_mut();
        if v.len() >= Pool::MAX {
            let (_, old) = v.remove(0);
            old.quit();
        }
        v.push((hop.clone(), s));
    }

    /// How many sessions are open: a runner with none has no connection to
    /// offer fresh mail (see `runner::left_to_runner`).
    pub fn len(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says QUIT to every server.
    pub fn close(&self) {
        for (_, s) in self.sessions.borrow_mut().drain(..) {
            s.quit();
        }
    }
}

fn is_tls(s: &Session<Stream>) -> bool {
    s.stream().is_tls()
}

fn group_deferred(group: &[&Target], why: &str, mta: Option<&str>) -> Vec<Result1> {
    group
        .iter()
        .map(|t| Result1 {
            index: t.index,
            outcome: defer(why),
            mta: mta.map(str::to_string),
            smtp: None,
        })
        .collect()
}

/// How a session's transactions ended.
enum Run {
    /// Every recipient decided; the session, if it can be used again.
    Done(Vec<Result1>, Option<Session<Stream>>),
    /// The first transaction failed before deciding anything (a stale
    /// reused connection, or a server that broke down).
    Stale(SessionError),
}

fn run_transactions(
    mut s: Session<Stream>,
    msg: &Msg,
    group: &[&Target],
    prepend: &[String],
    shown: &str,
) -> Run {
    use crate::deliver::Outcome;
    let mut out = Vec::new();
    let mut pending: Vec<&Target> = group.to_vec();
    while !pending.is_empty() {
        let (data, eightbit, size) = match msg.for_server(&s.caps) {
            Ok(d) => d,
            Err(why) => {
                out.extend(group_deferred(&pending, &why, None));
                break;
            }
        };
        let env = Envelope {
            sender: msg.sender,
            rcpts: pending.iter().map(|t| t.addr.as_str()).collect(),
            eightbit,
            header_8bit: msg.scan.header_8bit,
            size,
            dsn: msg.dsn,
            orcpts: pending.iter().map(|t| t.orcpt.as_str()).collect(),
        };
        let mut r = match reader(data) {
            Ok(r) => r,
            Err(e) => {
                out.extend(group_deferred(
                    &pending,
                    &format!("4.3.0 can not read the queued message: {e}"),
                    None,
                ));
                break;
            }
        };
        let results = match s.transaction(&env, &mut r, prepend) {
            Ok(r) => r,
            Err(e) if out.is_empty() => return Run::Stale(e),
            Err(e) => {
                let why = session_why(&e);
                out.extend(group_deferred(&pending, &why, Some(shown)));
                return Run::Done(out, None);
            }
        };
        let mut again = Vec::new();
        let mut progress = false;
        for (t, res) in pending.iter().zip(results) {
            let (outcome, smtp) = match res {
                RcptResult::Delivered(reply) => {
                    progress = true;
                    info!(
                        "<{}> delivery successful: {shown} said {}",
                        t.addr,
                        reply.one_line()
                    );
                    (Outcome::Delivered, Some(reply.one_line()))
                }
                RcptResult::Rejected { cmd, reply } => {
                    progress = true;
                    let outcome = match &s.auth_withheld {
                        // Our own refusal to authenticate: not the
                        // recipient's fault, and INSECURE or a verifiable
                        // certificate would mend it.
                        Some(w) if auth_required(&reply) => Outcome::Deferred(format!(
                            "4.7.0 {w}; {shown} said {} (in reply to {cmd})",
                            reply.one_line()
                        )),
                        _ => Outcome::Failed(said(&reply, shown, &cmd)),
                    };
                    (outcome, Some(reply.one_line()))
                }
                RcptResult::Deferred { cmd, why } => {
                    progress = true;
                    (
                        Outcome::Deferred(format!(
                            "{} {shown} said {why} (in reply to {cmd})",
                            // The server's own enhanced status when it gave one.
                            crate::smtp::reply::parse(format!("{why}\r\n").as_bytes())
                                .map(|r| r.status())
                                .unwrap_or_else(|_| "4.0.0".into())
                        )),
                        Some(why),
                    )
                }
                RcptResult::TooMany(_) => {
                    again.push(*t);
                    continue;
                }
                RcptResult::Refused { status, why } => {
                    // Nothing was sent: no reply of the server's to quote.
                    progress = true;
                    out.push(Result1 {
                        index: t.index,
                        outcome: Outcome::Failed(format!("{status} dma-rs refused: {why}")),
                        mta: None,
                        smtp: None,
                    });
                    continue;
                }
            };
            out.push(Result1 {
                index: t.index,
                outcome,
                mta: Some(shown.to_string()),
                smtp,
            });
        }
        if !again.is_empty() && !progress {
            // 452 for every recipient: nothing more to gain now.
            out.extend(group_deferred(
                &again,
                &format!("4.5.3 {shown}: too many recipients"),
                Some(shown),
            ));
            break;
        }
        pending = again;
    }
    // Ready for the next message on this connection (with RSET first, in
    // the same group, if this one did not end cleanly). Unless a reply went
    // missing: then the next reply read might be the late one.
    let usable = !s.broken;
    Run::Done(out, usable.then_some(s))
}

/// Whether a 5xx says that authentication is needed: 530 (RFC 4954
/// "authentication required"), 535, or the enhanced status 5.7.0 or 5.7.1
/// (as "relay access denied" to a client that did not authenticate).
fn auth_required(reply: &Reply) -> bool {
    reply.code == 530 || reply.code == 535 || matches!(reply.status().as_str(), "5.7.0" | "5.7.1")
}

/// `<status> host [ip] said <reply> (in reply to <CMD>)`.
fn said(reply: &Reply, shown: &str, cmd: &str) -> String {
    format!(
        "{} {shown} said {} (in reply to {cmd})",
        reply.status(),
        reply.one_line()
    )
}

/// A session failure before the recipients were decided defers them: it
/// says nothing about any one of them.
fn session_why(e: &SessionError) -> String {
    format!("4.4.2 {e}")
}
