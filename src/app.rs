//! The modes of the program, from a parsed command line to an exit code.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{self, User};

use crate::address;
use crate::cli::{self, DeliveryMode, Invocation, Mode};
use crate::config::{Aliases, AuthFile, Config, conf};
use crate::context::Ctx;
use crate::exit::*;
use crate::intake::{self, IntakeError};
use crate::route::{Expansion, Program, Route};
use crate::spool::Origin;
use crate::spool::admission::{self, Admission};
use crate::spool::{Envelope, Rcpt, now};
use crate::{crit, info, mailq, privsep, runner};

/// Runs the program called `progname` with `args`; returns the exit code.
pub fn main(progname: &str, args: Vec<OsString>) -> Result<i32, Fatal> {
    let inv = cli::parse(progname, args)?;
    // Before anything else: no configuration, privileges or input needed.
    match inv.mode {
        Mode::Help => return print_out(&cli::usage()),
        Mode::Version => return print_out(&cli::version()),
        _ => {}
    }
    // A file size limit must give a clean error, never a half-done kill.
    privsep::ignore_sigxfsz();
    // Who called us, before any change of ids.
    let caller = Caller::current();
    if let Mode::Probe { auth: true, .. } = inv.mode {
        // auth.conf is root's and mail's: a set-id dma must not let any
        // user try its passwords (or learn its logins). With -C the caller
        // reads only what they could read anyway.
        let mail = privsep::mail_user().map(|m| m.uid.as_raw());
        if caller.uid != 0 && Some(caller.uid) != mail && inv.config.is_none() {
            return Err(Fatal::new(
                EX_NOPERM,
                "--probe --auth is for root: it uses the passwords of auth.conf",
            ));
        }
    }
    if let Mode::Queue(_) = inv.mode {
        // By the real ids, before they change.
        crate::qadmin::authorize(inv.config.is_some())?;
    }
    setup_privileges(&inv)?;
    crate::logging::init(inv.log_tag.as_deref().unwrap_or("dma"), inv.verbose);
    let path = inv
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(conf::DEFAULT_PATH));
    let config = Config::load(&path).map_err(|e| Fatal::new(EX_CONFIG, e.to_string()))?;
    // LOGFILE: created only by a process no ordinary user is (root, mail,
    // or a private -C run), never by a user's set-group-id dma.
    let euid = nix::unistd::geteuid();
    let create = inv.config.is_some()
        || euid.is_root()
        || privsep::mail_user().is_some_and(|m| m.uid == euid);
    crate::logging::configure(config.logfile.clone(), config.log_syslog, create);
    if inv.mode == Mode::Check {
        let helper = crate::context::helper_path();
        let r = crate::check::check(&path, &config, inv.config.is_some(), &helper);
        print_out(&r.text)?;
        return Ok(if r.warnings == 0 { EX_OK } else { EX_CONFIG });
    }
    if let Some(auth) = &config.authpath {
        // Read at every start, as dma does, so a broken file is noticed early.
        AuthFile::load(auth).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Fatal::new(EX_CONFIG, e.to_string()),
            _ => Fatal::new(
                EX_NOINPUT,
                format!("can not open auth file `{}': {e}", auth.display()),
            ),
        })?;
    }
    let mut ctx = Ctx::new(config, inv.config.clone());
    match &inv.mode {
        Mode::NewAliases => newaliases(&ctx.config.aliases),
        Mode::ListQueue => {
            // Expansions are root's to see (or the owner's of a private
            // spool, `-C`).
            let view = if caller.uid == 0 || inv.config.is_some() {
                mailq::View::Full
            } else {
                mailq::View::AsSubmitted
            };
            let mut out = BufWriter::new(std::io::stdout().lock());
            let listed = match inv.json {
                true => mailq::json::list(&ctx.spool, view, &mut out),
                false => mailq::list(&ctx.spool, view, &mut out),
            };
            listed
                .and_then(|_| out.flush())
                .map_err(|e| Fatal::new(EX_NOINPUT, format!("can not read the queue: {e}")))?;
            Ok(EX_OK)
        }
        Mode::RunQueue { due_only, select } => {
            let job = runner::Job::Queue {
                due_only: *due_only,
                select: select.clone(),
            };
            let mut req = runner_request(&inv, &caller);
            // A summary line for whoever watches: a terminal, or -v.
            req.summary = inv.verbose || std::io::IsTerminal::is_terminal(&std::io::stderr());
            runner::request(&ctx, &job, &req, None)
                .map_err(|e| Fatal::new(EX_OSERR, format!("can not run the queue: {e}")))
        }
        Mode::Queue(cmd) => {
            let admin = crate::qadmin::Admin {
                name: &caller.name,
                uid: caller.uid,
                request: runner_request(&inv, &caller),
            };
            crate::qadmin::run(&ctx, cmd, &admin)
        }
        Mode::Verify => verify(&mut ctx, &inv),
        Mode::Submit => submit(&mut ctx, &inv, &caller),
        Mode::Smtp => crate::smtp_stdin::serve(&mut ctx, &inv, &caller),
        Mode::Probe { target, auth } => crate::probe::run(
            &ctx,
            target.as_deref(),
            *auth,
            &mut std::io::stdout().lock(),
        ),
        Mode::Help | Mode::Version | Mode::Check => unreachable!("answered above"),
    }
}

/// Writes `text` to stdout: exit 0, or 74 if it can not be written.
fn print_out(text: &str) -> Result<i32, Fatal> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}")))?;
    Ok(EX_OK)
}

/// How this caller's runners should talk back.
fn runner_request<'a>(inv: &'a Invocation, caller: &Caller) -> runner::Request<'a> {
    runner::Request {
        caller_uid: caller.uid,
        verbose: inv.verbose,
        tag: inv.log_tag.as_deref(),
        summary: false,
    }
}

/// `-C` gives up set-id privilege; root without `-C` becomes `mail`, as in
/// dma (only `dma-local` ever runs as root); a set-id run cleans the
/// environment it got from the caller.
fn setup_privileges(inv: &Invocation) -> Result<(), Fatal> {
    let oserr = |e: nix::Error| Fatal::new(EX_OSERR, format!("can not drop privileges: {e}"));
    if inv.config.is_some() {
        privsep::drop_setid().map_err(oserr)?;
        return Ok(());
    }
    if privsep::is_setid() {
        privsep::clear_env(&["LOGNAME", "USER", "EMAIL", "TZ"]);
        privsep::set_env("PATH", "/usr/bin:/bin");
    }
    if (unistd::getuid().is_root() || unistd::geteuid().is_root())
        && let Some(mail) = privsep::mail_user()
    {
        privsep::become_mail(&mail).map_err(oserr)?;
    }
    Ok(())
}

/// The submitting user.
pub(crate) struct Caller {
    /// The login name.
    pub(crate) name: String,
    /// The real uid.
    pub(crate) uid: u32,
}

impl Caller {
    /// `$LOGNAME` or `$USER` if it names the real uid, else the password
    /// entry of the real uid, else `uid=N`, as dma does.
    fn current() -> Caller {
        let uid = unistd::getuid();
        let from_env = ["LOGNAME", "USER"].iter().find_map(|k| {
            let v = std::env::var(k).ok()?;
            let u = User::from_name(&v).ok()??;
            (u.uid == uid && address::validate(&v).is_ok()).then_some(v)
        });
        let name = from_env
            .or_else(|| User::from_uid(uid).ok().flatten().map(|u| u.name))
            .filter(|n| address::validate(n).is_ok())
            .unwrap_or_else(|| format!("uid={uid}"));
        Caller {
            name,
            uid: uid.as_raw(),
        }
    }
}

/// The envelope sender: `-f`/`-r`, else `$EMAIL`, with a missing user part
/// taken from the login and a missing host from MAILNAME; then MASQUERADE.
/// `<>` or an empty `-f` is the null sender.
pub(crate) fn envelope_sender(
    ctx: &Ctx,
    inv: &Invocation,
    caller: &Caller,
) -> Result<String, Fatal> {
    let given = inv.sender.clone().or_else(|| std::env::var("EMAIL").ok());
    let raw = given.as_deref().map(address::strip_brackets);
    if let Some(raw) = raw {
        if raw.is_empty() && inv.sender.is_some() {
            return Ok(String::new());
        }
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(Fatal::new(EX_DATAERR, "invalid sender: control character"));
        }
    }
    let (mut user, mut host) = match raw.filter(|r| !r.is_empty()) {
        Some(r) => match r.split_once('@') {
            Some((u, h)) => (u.to_string(), h.to_string()),
            None => (r.to_string(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    if user.is_empty() {
        user = caller.name.clone();
    }
    if host.is_empty() {
        host = ctx.hostname.clone();
    }
    if let Some(m) = &ctx.config.masquerade {
        if let Some(u) = &m.user {
            user = u.clone();
        }
        if let Some(h) = &m.host {
            host = h.clone();
        }
    }
    let sender = format!("{user}@{host}");
    address::validate(&sender)
        .map_err(|e| Fatal::new(EX_DATAERR, format!("invalid sender `{sender}': {e}")))?;
    Ok(sender)
}

/// Splits argv recipients on commas and validates each.
fn argv_rcpts(inv: &Invocation) -> Result<Vec<String>, Fatal> {
    let mut out = Vec::new();
    for arg in &inv.rcpts {
        for part in arg.split(',') {
            let a = address::strip_brackets(part);
            if a.is_empty() {
                continue;
            }
            address::validate(a)
                .map_err(|e| Fatal::new(EX_DATAERR, format!("invalid recipient `{a}': {e}")))?;
            out.push(a.to_string());
        }
    }
    Ok(out)
}

fn ensure_spool(ctx: &Ctx) -> Result<(), Fatal> {
    let dir = ctx.spool.dir();
    if !dir.exists() && !privsep::is_setid() {
        // Convenient for a private configuration (`-C`); an installed spool
        // is made by the install script with its modes.
        std::fs::create_dir_all(dir).map_err(|e| {
            Fatal::new(
                EX_CANTCREAT,
                format!("can not create spool {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

fn submit(ctx: &mut Ctx, inv: &Invocation, caller: &Caller) -> Result<i32, Fatal> {
    let sender = envelope_sender(ctx, inv, caller)?;
    let rcpts = argv_rcpts(inv)?;
    if rcpts.is_empty() && !inv.extract_rcpts {
        return Err(Fatal::new(EX_NOINPUT, "no recipients"));
    }
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    let queued =
        queue_message(ctx, inv, caller, sender, rcpts, &mut input).map_err(|e| match e {
            SubmitError::Intake(e) => intake_fatal(e),
            SubmitError::Fatal(f) => f,
        })?;
    deliver_queued(ctx, inv, caller, queued);
    Ok(EX_OK)
}

/// A message just queued, its data file still locked by us.
pub(crate) struct Queued {
    data: std::fs::File,
    env: Envelope,
}

/// Why [`queue_message`] queued nothing (and left nothing in the spool).
pub(crate) enum SubmitError {
    /// Reading or spooling the message failed; `-bs` tells its causes apart.
    Intake(IntakeError),
    /// Anything else, with its exit code.
    Fatal(Fatal),
}

impl From<Fatal> for SubmitError {
    fn from(f: Fatal) -> SubmitError {
        SubmitError::Fatal(f)
    }
}

/// The exit code and message of an intake error on the command line.
fn intake_fatal(e: IntakeError) -> Fatal {
    match e {
        // Below the reserve: the same message may go through later.
        IntakeError::Io(e) if admission::below_reserve(&e) => {
            Fatal::new(EX_TEMPFAIL, e.to_string())
        }
        // A spool that cannot be written, as for the envelope.
        IntakeError::Io(e) if admission::spool_write(&e) => Fatal::new(EX_CANTCREAT, e.to_string()),
        IntakeError::Io(e) => {
            Fatal::new(EX_IOERR, format!("can not read or spool the message: {e}"))
        }
        // Not EX_TEMPFAIL: the same message would fail again.
        e @ IntakeError::TooLarge(_) => Fatal::new(EX_CANTCREAT, e.to_string()),
        other => Fatal::new(EX_DATAERR, other.to_string()),
    }
}

/// Takes the message from `input` into the queue, from `sender` to `rcpts`
/// (plus, with `-t`, those of its headers), as `caller`: intake's header
/// fixes, the admission rules, the data and envelope fsynced. On error
/// nothing is left in the spool. Shared by the command line and `-bs`.
pub(crate) fn queue_message(
    ctx: &mut Ctx,
    inv: &Invocation,
    caller: &Caller,
    sender: String,
    mut rcpts: Vec<String>,
    input: &mut impl std::io::BufRead,
) -> Result<Queued, SubmitError> {
    ensure_spool(ctx)?;
    let admission = Admission::new(&ctx.spool, ctx.config.spool_min_free, caller.uid);
    let slot = admission
        .slot()
        .map_err(|why| Fatal::new(EX_TEMPFAIL, why))?;
    admission
        .check()
        .map_err(|why| Fatal::new(EX_TEMPFAIL, why))?;
    let (id, data) = ctx.spool.create().map_err(|e| {
        let dir = ctx.spool.dir().display();
        Fatal::new(
            EX_CANTCREAT,
            format!("can not create a spool file in {dir}: {e}"),
        )
    })?;
    let data_path = ctx.spool.data_path(&id);
    let discard = |f: SubmitError| {
        let _ = std::fs::remove_file(&data_path);
        f
    };
    crate::logging::set_queue_id(Some(&id));
    info!(
        "new mail from user={} uid={} envelope_from=<{sender}>",
        caller.name, caller.uid
    );
    let stamp = intake::Stamp {
        id: id.clone(),
        sender: sender.clone(),
        user: caller.name.clone(),
        uid: caller.uid,
        hostname: ctx.hostname.clone(),
        date: intake::rfc2822_now(),
    };
    let opts = intake::Options {
        extract_rcpts: inv.extract_rcpts,
        ignore_dots: inv.ignore_dots,
        full_name: inv.full_name.clone(),
        size_limit: ctx.config.message_size_limit,
    };
    if let Some(n) = &opts.full_name
        && n.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        return Err(discard(
            Fatal::new(EX_DATAERR, "invalid full name (-F): control character").into(),
        ));
    }
    let mut out = BufWriter::with_capacity(64 * 1024, admission.writer(&data, &data_path));
    let read = intake::read_message(input, &mut out, &opts, &stamp)
        .map_err(|e| discard(SubmitError::Intake(e)))?;
    drop(out);
    // Checked again with the message written: it counts against the reserve.
    admission
        .check()
        .map_err(|why| discard(Fatal::new(EX_TEMPFAIL, why).into()))?;
    rcpts.extend(read.header_rcpts);
    // One form per mailbox (`bob@thishost` is `bob`), as dma does, so that
    // duplicates collapse.
    for r in rcpts.iter_mut() {
        if let address::Dest::Local(name) = address::classify(r, &ctx.local_domains) {
            *r = name;
        }
    }
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|r| seen.insert(r.clone()));
    if rcpts.is_empty() {
        return Err(discard(
            Fatal::new(
                EX_NOINPUT,
                if inv.extract_rcpts {
                    "no recipients from headers"
                } else {
                    "no recipients"
                },
            )
            .into(),
        ));
    }
    let mut env = Envelope {
        id: id.clone(),
        created: now(),
        sender,
        user: caller.name.clone(),
        uid: caller.uid,
        size: None,
        double_bounce: false,
        held: None,
        dsn: inv.dsn.clone(),
        dkim: Vec::new(),
        rcpts: rcpts.iter().map(|r| Rcpt::new(r.clone(), None)).collect(),
    };
    ctx.spool
        .commit(&data, &mut env)
        .map_err(|e| discard(Fatal::new(EX_CANTCREAT, e.to_string()).into()))?;
    drop(slot);
    crate::logging::set_queue_id(Some(&id));
    for r in &rcpts {
        info!("mail to=<{r}> queued as {id}");
    }
    Ok(Queued { data, env })
}

impl Queued {
    /// The queue id.
    pub(crate) fn id(&self) -> &str {
        &self.env.id
    }
}

/// Starts the delivery of a message just queued, as the `-od` flags and
/// DEFER say. The message is queued: whatever happens here, it stays so.
pub(crate) fn deliver_queued(ctx: &Ctx, inv: &Invocation, caller: &Caller, queued: Queued) {
    let Queued { data, env } = queued;
    let mode = if ctx.config.defer {
        DeliveryMode::Queue
    } else {
        inv.delivery
    };
    match mode {
        DeliveryMode::Queue => {}
        // The runner gets our locked data file: nobody else takes the
        // message meanwhile.
        DeliveryMode::Foreground => {
            let job = runner::Job::Message(env.id.clone());
            if let Err(e) = runner::request(ctx, &job, &runner_request(inv, caller), Some(&data)) {
                crate::notice!("can not start a runner ({e}); left queued");
            }
        }
        DeliveryMode::Background => {
            // Let go of our message first: whichever runner sees it next
            // (the one we leave it to, the one we start, or one that
            // re-scans after giving up its slot or its wait) can then take
            // it.
            drop(data);
            // Left to a live runner (see there), or one of its own.
            if runner::left_to_runner(ctx, &env) {
                return;
            }
            std::io::stdout().flush().ok();
            let job = runner::Job::Background;
            if let Err(e) = runner::request(ctx, &job, &runner_request(inv, caller), None) {
                crate::notice!("can not start a runner ({e}); left queued");
            }
        }
    }
}

fn newaliases(path: &Path) -> Result<i32, Fatal> {
    let a = Aliases::load(path).map_err(|e| {
        crit!("{e}");
        Fatal::new(EX_SOFTWARE, e.to_string())
    })?;
    println!("{}: {} aliases", path.display(), a.entries.len());
    Ok(EX_OK)
}

/// `-bv`: prints where each recipient would go, alias trees expanded.
fn verify(ctx: &mut Ctx, inv: &Invocation) -> Result<i32, Fatal> {
    let rcpts = argv_rcpts(inv)?;
    // A user may see their own .forward; root sees all.
    ctx.forwards_visible_to = Some(unistd::getuid().as_raw());
    if rcpts.is_empty() {
        return Err(Fatal::new(EX_NOINPUT, "no recipients"));
    }
    let mut ok = true;
    let mut out = String::new();
    let mut mx = Vec::new();
    for r in rcpts {
        ok &= explain(ctx, &r, None, &mut Vec::new(), 0, &mut out, &mut mx);
    }
    // With -v: the MX hosts of each domain, and what its DANE or MTA-STS
    // policy asks of TLS with each (DNS lookups, maybe an HTTPS fetch: not
    // without being asked).
    if inv.verbose {
        for domain in mx {
            out.push_str(&format!("MX hosts of {domain}, in order:\n"));
            for line in crate::remote::explain_mx(ctx, &domain) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    print!("{out}");
    Ok(if ok { EX_OK } else { EX_NOUSER })
}

fn explain(
    ctx: &mut Ctx,
    addr: &str,
    origin: Option<&Origin>,
    ancestors: &mut Vec<String>,
    depth: usize,
    out: &mut String,
    mx: &mut Vec<String>,
) -> bool {
    let pad = "  ".repeat(depth);
    let route = ctx.route(addr, origin, ancestors, &[]);
    match route {
        Route::Mailbox {
            user,
            uid,
            note,
            check_forward,
        } => {
            let path = ctx.config.mailspool.join(&user);
            out.push_str(&format!(
                "{pad}{addr}: mailbox {} (user {user}, uid {uid})\n",
                path.display()
            ));
            // Only -bv by another user leaves a .forward unread.
            if check_forward {
                out.push_str(&format!(
                    "{pad}  (unless {user}'s .forward sends it elsewhere: only {user} and root may see that file)\n"
                ));
            }
            if let Some(n) = note {
                out.push_str(&format!("{pad}  ({n})\n"));
            }
            true
        }
        Route::Expand {
            children,
            kind,
            notes,
        } => {
            let via = match kind {
                Expansion::Alias => format!("alias in {}", ctx.config.aliases.display()),
                Expansion::CatchAll => format!("catch-all `*' in {}", ctx.config.aliases.display()),
                Expansion::Forward => "forwarded by its .forward".to_string(),
                Expansion::Include => "included file".to_string(),
            };
            let list: Vec<&str> = children.iter().map(|c| c.addr.as_str()).collect();
            out.push_str(&format!("{pad}{addr}: {via} -> {}\n", list.join(", ")));
            for n in notes {
                out.push_str(&format!("{pad}  ({n})\n"));
            }
            ancestors.push(ctx.local_name(addr));
            let mut ok = true;
            for c in children {
                ok &= explain(
                    ctx,
                    &c.addr,
                    c.origin.as_ref(),
                    ancestors,
                    depth + 1,
                    out,
                    mx,
                );
            }
            ancestors.pop();
            ok
        }
        Route::Program { program, origin } => {
            let who = match &origin {
                Origin::Forward(u) => format!("as {u}"),
                Origin::Alias(_) => format!("as {} (ALIAS_USER)", ctx.config.alias_user),
            };
            let what = match program {
                Program::Pipe(c) => format!("command `{c}'"),
                Program::File(f) if f.ends_with('/') => format!("Maildir {f}"),
                Program::File(f) => format!("file {f}"),
            };
            out.push_str(&format!("{pad}{addr}: {what}, run {who}\n"));
            true
        }
        Route::Remote { addr: a, domain } => {
            let hosts: Vec<String> = ctx
                .config
                .smarthosts()
                .iter()
                .map(|(h, port)| {
                    if h.contains(':') {
                        format!("[{h}]:{port}")
                    } else {
                        format!("{h}:{port}")
                    }
                })
                .collect();
            let hop = match hosts.len() {
                0 => format!("the MX hosts of {domain} (SMTP, port 25)"),
                1 => format!("the smarthost {}", hosts[0]),
                _ => format!("the smarthosts {}, in this order", hosts.join(", ")),
            };
            out.push_str(&format!("{pad}{a}: remote, to {hop}\n"));
            if hosts.is_empty() && !mx.contains(&domain) {
                mx.push(domain);
            }
            true
        }
        Route::Fail(why) => {
            out.push_str(&format!("{pad}{addr}: undeliverable: {why}\n"));
            false
        }
        Route::Defer(why) => {
            out.push_str(&format!("{pad}{addr}: temporarily undeliverable: {why}\n"));
            false
        }
    }
}
