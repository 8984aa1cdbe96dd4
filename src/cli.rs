//! sendmail's command line, in two layers: argv as given ([`parse`] over
//! lexopt, getopt-compatible), then one validated [`Invocation`].
//!
//! The flags and their meaning are dma's (`:A:b:B:C:d:Df:F:h:iL:N:no:O:q:r:R:tUV:vX:`)
//! with these additions: `-C` selects another config file, `-F` names the
//! sender in the From: header we add, `-od[ibq]` choose the delivery mode,
//! `-bv` shows routing, `-bi` is newaliases, `-bs` holds an SMTP dialogue on
//! stdin and stdout, and `--help` and `--version` print what they say. Any
//! other `-b<x>` is refused (dma treats it as `-D`, which sent stdin as a
//! message where the caller asked for something else). [`FLAGS`] lists every spelling the parser gives a
//! meaning; the unit tests hold the parser to it and `tests/manpages.rs`
//! holds `man/dma.8` to it.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::exit::{EX_USAGE, Fatal};

/// What the program was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Read a message from stdin and queue it.
    Submit,
    /// `mailq`, `-bp`: list the queue.
    ListQueue,
    /// `-q[arg]`: run the queue. `due_only` for `-q<duration>`: only what is
    /// due (cron and timers); plain `-q` tries everything now.
    RunQueue {
        /// Honour each recipient's next-try time.
        due_only: bool,
        /// Only these messages (`-qI`, `-qR`, `-qS`).
        select: Vec<crate::runner::Select>,
    },
    /// `newaliases`, `-bi`: check the aliases file.
    NewAliases,
    /// `-bv`: show where each recipient would go.
    Verify,
    /// `-bs`: an SMTP dialogue on stdin and stdout, each message queued as
    /// a command-line submission of the caller's.
    Smtp,
    /// `--check`: print the settings and what is wrong with them.
    Check,
    /// `--help`: print the usage.
    Help,
    /// `--version`: print the version and the compiled-in paths.
    Version,
    /// `--probe [host[:port]]`: connect to a smarthost as a delivery
    /// would, say what it offers, send no mail.
    Probe {
        /// `host[:port]`, or `None` for the SMARTHOSTs.
        target: Option<String>,
        /// `--auth`: also log in with the credentials from auth.conf.
        auth: bool,
    },
    /// `-Q <verb> ...`: queue administration ([`crate::qadmin`]).
    Queue(crate::qadmin::Command),
}

/// Every flag the parser accepts, as `dma(8)` documents it: the option
/// letters (`-b`, `-o` and `-A` take their letters as a value), the values
/// of `-b`, `-o` and `-A` that mean something of their own (any other
/// `-b<x>` is refused, any other `-o<x>` is ignored, any other `-A<x>` is
/// `-b<x>`), and the long options.
pub const FLAGS: &[&str] = &[
    "-A",
    "-Ac",
    "-Am",
    "-B",
    "-b",
    "-bi",
    "-bm",
    "-bp",
    "-bq",
    "-bs",
    "-bv",
    "-C",
    "-D",
    "-d",
    "-F",
    "-f",
    "-h",
    "-i",
    "-L",
    "-m",
    "-N",
    "-n",
    "-O",
    "-o",
    "-odb",
    "-odi",
    "-odq",
    "-oi",
    "-Q",
    "-q",
    "-R",
    "-r",
    "-t",
    "-U",
    "-V",
    "-v",
    "-X",
    "--",
    "--help",
    "--json",
    "--version",
    "--probe",
    "--auth",
];

/// What `--help` prints: one screen (fewer than 24 lines of at most 80
/// columns). `{conf}` is the compiled-in configuration file.
const USAGE: &str = "\
usage: sendmail [flags] [--] recipient...  queue a message read from stdin
       mailq, sendmail -bp [--json]        list the queue (--json: for programs)
       sendmail -q                         deliver everything queued, now
       sendmail -q<duration> (-q5m)        deliver what is due (for cron)
       newaliases, sendmail -bi            check the aliases file
       sendmail -bv address...             show where each address would go
       sendmail -bs                        SMTP on stdin/stdout (alpine, PHP)
       dma --probe [--auth] [host[:port]]  test the smarthost: TLS, AUTH
       dma -Q show|delete|hold|release|requeue|flush ID...|ALL   administer
       sendmail --check | --help | --version   settings and what is wrong; ...
flags:
  -t            also take recipients from the To:, Cc: and Bcc: headers
  -i, -oi       a line with only `.' does not end the message
  -f addr       envelope sender (also -r; -f '<>' is the null sender)
  -F name       the name in the From: header added to the message
  -odb          deliver in the background (the default)
  -odi, -D      deliver before exiting     -odq, -bq   only queue
  -C file       read another dma.conf (gives up the set-id privilege)
  -L tag        syslog tag (default dma)   -v          log to stderr too
  -N never|success,failure,delay, -R full|hdrs, -V envid: DSN requests
  ignored: -Ac -Am -m -n -U -o<x>, and -B -d -h -O -X with their value
configuration: {conf}
manual: dma(8), dma.conf(5), dma-aliases(5), dma-forward(5)
";

/// The `--help` text.
pub fn usage() -> String {
    USAGE.replace("{conf}", crate::config::conf::DEFAULT_PATH)
}

/// The git commit this binary was built from, if known at build time
/// (`build.rs`: the `DMA_GIT_COMMIT` variable, else `git rev-parse`).
pub const GIT_COMMIT: Option<&str> = option_env!("DMA_BUILD_COMMIT");

/// The `--version` text: the version, the commit and the paths compiled
/// into this binary (packages may build with others).
pub fn version() -> String {
    let commit = GIT_COMMIT
        .map(|c| format!(" (git {c})"))
        .unwrap_or_default();
    format!(
        "dma-rs {}{commit}\n\
         configuration file:    {}\n\
         local delivery helper: {}/dma-local\n\
         spool directory:       {} (unless SPOOLDIR says otherwise)\n",
        env!("CARGO_PKG_VERSION"),
        crate::config::conf::DEFAULT_PATH,
        crate::context::LIBEXEC_DIR,
        crate::config::Config::default().spooldir.display(),
    )
}

/// When to deliver a submitted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// `-odb` (default): in a background process.
    Background,
    /// `-odi`, `-D`: before exiting.
    Foreground,
    /// `-odq`, `-bq`, DEFER: leave it for a queue run.
    Queue,
}

/// One validated invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The mode.
    pub mode: Mode,
    /// Recipients from argv, as given (comma lists not split yet).
    pub rcpts: Vec<String>,
    /// `-f`/`-r`.
    pub sender: Option<String>,
    /// `-F`.
    pub full_name: Option<String>,
    /// `-t`.
    pub extract_rcpts: bool,
    /// `-i`, `-oi`.
    pub ignore_dots: bool,
    /// `-C`.
    pub config: Option<PathBuf>,
    /// `-od*`, `-D`, `-bq`.
    pub delivery: DeliveryMode,
    /// `-v`.
    pub verbose: bool,
    /// `-L`.
    pub log_tag: Option<String>,
    /// `-N`, `-R`, `-V`: DSN requests (RFC 3461), checked.
    pub dsn: crate::spool::Dsn,
    /// `--json`: list the queue as JSON (with `mailq`, `-bp` only).
    pub json: bool,
}

fn invalid(flag: &str) -> Fatal {
    Fatal::new(EX_USAGE, format!("invalid argument: `{flag}'"))
}

/// Checks a `-L` tag (see [`crate::logging::valid_tag`]).
fn log_tag(v: String) -> Result<String, Fatal> {
    if crate::logging::valid_tag(&v) {
        Ok(v)
    } else {
        Err(Fatal::new(
            EX_USAGE,
            format!(
                "invalid -L tag `{}': 1 to {} printable ASCII characters, no blanks or brackets",
                crate::escape::escape(&v.chars().take(40).collect::<String>()),
                crate::logging::MAX_TAG
            ),
        ))
    }
}

fn text(v: OsString, flag: &str) -> Result<String, Fatal> {
    v.into_string().map_err(|_| invalid(flag))
}

/// Parses `args` (without `argv[0]`) for the program called `progname`.
pub fn parse(progname: &str, args: Vec<OsString>) -> Result<Invocation, Fatal> {
    use lexopt::Arg::{Long, Short, Value};
    let mut inv = Invocation {
        mode: Mode::Submit,
        rcpts: Vec::new(),
        sender: None,
        full_name: None,
        extract_rcpts: false,
        ignore_dots: false,
        config: None,
        delivery: DeliveryMode::Background,
        verbose: false,
        log_tag: None,
        dsn: crate::spool::Dsn::default(),
        json: false,
    };
    let mut list = false;
    let mut run: Option<bool> = None;
    let mut select = Vec::new();
    let (mut probe, mut auth) = (false, false);
    let mut p = lexopt::Parser::from_args(args);
    p.set_short_equals(false);
    loop {
        let arg = match p.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(lexopt::Error::UnexpectedOption(o)) => return Err(invalid(&o)),
            Err(e) => return Err(Fatal::new(EX_USAGE, e.to_string())),
        };
        match arg {
            Short(c) => {
                let flag = format!("-{c}");
                let value = |p: &mut lexopt::Parser| -> Result<String, Fatal> {
                    text(p.value().map_err(|_| invalid(&flag))?, &flag)
                };
                match c {
                    'A' => {
                        let v = value(&mut p)?;
                        if v != "c" && v != "m" {
                            b_flag(&v, &mut inv, &mut list)?;
                        }
                    }
                    'b' => {
                        let v = value(&mut p)?;
                        b_flag(&v, &mut inv, &mut list)?;
                    }
                    'C' => inv.config = Some(PathBuf::from(value(&mut p)?)),
                    'D' => inv.delivery = DeliveryMode::Foreground,
                    'f' | 'r' => inv.sender = Some(value(&mut p)?),
                    'F' => inv.full_name = Some(value(&mut p)?),
                    'i' => inv.ignore_dots = true,
                    't' => inv.extract_rcpts = true,
                    'v' => inv.verbose = true,
                    'L' => inv.log_tag = Some(log_tag(value(&mut p)?)?),
                    'o' => match value(&mut p)?.as_str() {
                        "i" => inv.ignore_dots = true,
                        "di" => inv.delivery = DeliveryMode::Foreground,
                        "db" => inv.delivery = DeliveryMode::Background,
                        "dq" => inv.delivery = DeliveryMode::Queue,
                        _ => {}
                    },
                    'q' => {
                        let arg = p.optional_value().map(|v| v.to_string_lossy().into_owned());
                        match arg.as_deref() {
                            None => run = Some(run.unwrap_or(false)),
                            Some(a) if crate::config::duration::parse(a).is_some() => {
                                run = Some(true)
                            }
                            Some(a) => match crate::runner::Select::parse(a) {
                                Some(s) => {
                                    select.push(s);
                                    run = Some(run.unwrap_or(false));
                                }
                                None => {
                                    return Err(Fatal::new(
                                        EX_USAGE,
                                        format!(
                                            "invalid -q{}: a duration (-q5m), or -qI, -qR, -qS (optionally -q!I ...) with a substring",
                                            crate::escape::escape(a)
                                        ),
                                    ));
                                }
                            },
                        }
                    }
                    // Accepted and ignored, with an argument, as in dma.
                    'N' => inv.dsn.notify = Some(dsn_notify(&value(&mut p)?)?),
                    'R' => {
                        let v = value(&mut p)?.to_ascii_uppercase();
                        if v != "FULL" && v != "HDRS" {
                            return Err(Fatal::new(
                                EX_USAGE,
                                format!("invalid -R `{v}': FULL or HDRS"),
                            ));
                        }
                        inv.dsn.ret = Some(v);
                    }
                    'V' => {
                        let v = value(&mut p)?;
                        if v.is_empty()
                            || v.len() > 100
                            || !v.bytes().all(|b| (0x21..=0x7e).contains(&b))
                        {
                            return Err(Fatal::new(
                                EX_USAGE,
                                "invalid -V: printable ASCII, at most 100 characters",
                            ));
                        }
                        inv.dsn.envid = Some(v);
                    }
                    'B' | 'd' | 'h' | 'O' | 'X' => {
                        value(&mut p)?;
                    }
                    // Queue administration: the verb and every argument
                    // after it are the verb's (see `crate::qadmin`).
                    'Q' => {
                        let verb = value(&mut p)?;
                        let rest = p.raw_args().map_err(|_| invalid(&flag))?.collect();
                        if !inv.rcpts.is_empty() || matches!(progname, "mailq" | "newaliases") {
                            return Err(Fatal::new(EX_USAGE, "-Q takes no recipients"));
                        }
                        inv.mode = Mode::Queue(crate::qadmin::parse(&verb, rest)?);
                        return Ok(inv);
                    }
                    // Accepted and ignored, without one.
                    'n' | 'U' | 'm' => {}
                    _ => return Err(invalid(&flag)),
                }
            }
            Long(l @ ("help" | "version")) => {
                let flag = format!("--{l}");
                if p.optional_value().is_some() {
                    return Err(invalid(&flag));
                }
                // The first of them decides; nothing else is looked at.
                inv.mode = if flag == "--help" {
                    Mode::Help
                } else {
                    Mode::Version
                };
                return Ok(inv);
            }
            Long("check") => {
                if p.optional_value().is_some() {
                    return Err(invalid("--check"));
                }
                inv.mode = Mode::Check;
            }
            Long("probe") => {
                probe = true;
                if let Some(v) = p.optional_value() {
                    inv.rcpts.push(text(v, "--probe")?);
                }
            }
            Long("auth") => auth = true,
            Long("json") => inv.json = true,
            Long(l) => return Err(invalid(&format!("--{l}"))),
            Value(v) => inv.rcpts.push(text(v, "recipient")?),
        }
    }
    if probe || auth {
        return probe_mode(inv, list || run.is_some(), probe, auth);
    }
    match progname {
        "mailq" => {
            if !inv.rcpts.is_empty() {
                return Err(Fatal::new(EX_USAGE, "invalid arguments"));
            }
            list = true;
        }
        "newaliases" => inv.mode = Mode::NewAliases,
        _ => {}
    }
    if inv.mode == Mode::Check && (list || run.is_some() || !inv.rcpts.is_empty()) {
        return Err(Fatal::new(EX_USAGE, "--check takes no other operation"));
    }
    // `-q 5m`: the interval as a word of its own.
    if run.is_some()
        && inv.rcpts.len() == 1
        && crate::config::duration::parse(&inv.rcpts[0]).is_some()
    {
        inv.rcpts.clear();
        run = Some(true);
    }
    if inv.mode == Mode::Smtp {
        if list || run.is_some() {
            return Err(Fatal::new(
                EX_USAGE,
                "conflicting operations: -bs and a queue operation",
            ));
        }
        if !inv.rcpts.is_empty() {
            return Err(Fatal::new(
                EX_USAGE,
                "-bs takes its recipients from RCPT commands, not from the command line",
            ));
        }
    }
    if inv.mode == Mode::Submit {
        if list || run.is_some() {
            if !inv.rcpts.is_empty() {
                return Err(Fatal::new(
                    EX_USAGE,
                    "sending mail and queue operations are mutually exclusive",
                ));
            }
            if list && run.is_some() {
                return Err(Fatal::new(EX_USAGE, "conflicting queue operations"));
            }
        }
        if inv.json && !list {
            return Err(Fatal::new(EX_USAGE, "--json goes with mailq or -bp only"));
        }
        if list {
            inv.mode = Mode::ListQueue;
        } else if let Some(due_only) = run {
            inv.mode = Mode::RunQueue { due_only, select };
        }
    }
    Ok(inv)
}

/// `--probe [host[:port]]` and `--auth`: the one host is the only word
/// after the options; no other mode goes with them.
fn probe_mode(
    mut inv: Invocation,
    queue: bool,
    probe: bool,
    auth: bool,
) -> Result<Invocation, Fatal> {
    let usage = |msg: &str| Err(Fatal::new(EX_USAGE, msg.to_string()));
    if !probe {
        return usage("--auth goes with --probe");
    }
    if inv.mode != Mode::Submit || queue {
        return usage("--probe goes with no other mode");
    }
    if inv.rcpts.len() > 1 {
        return usage("--probe takes one host[:port]");
    }
    inv.mode = Mode::Probe {
        target: inv.rcpts.pop(),
        auth,
    };
    Ok(inv)
}

/// `-N`: `never`, or a comma list of `success`, `failure`, `delay`.
fn dsn_notify(v: &str) -> Result<String, Fatal> {
    let parts: Vec<String> = v
        .split(',')
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    let ok = if parts == ["NEVER"] {
        true
    } else {
        !parts.is_empty()
            && parts
                .iter()
                .all(|p| matches!(p.as_str(), "SUCCESS" | "FAILURE" | "DELAY"))
    };
    if !ok {
        return Err(Fatal::new(
            EX_USAGE,
            format!("invalid -N `{v}': never, or success,failure,delay"),
        ));
    }
    Ok(parts.join(","))
}

/// `-bX`: dma lists the queue for `p`, queues only for `q`, and treats every
/// other letter as `-D`. We add `v` (verify), `i` (newaliases) and `s` (SMTP
/// on stdin) as sendmail has them, keep `m` (the default), and refuse every
/// other mode with 64 before anything is read: `-bt`, `-bh` or `-bP` asked
/// for something else than sending stdin as a message.
fn b_flag(v: &str, inv: &mut Invocation, list: &mut bool) -> Result<(), Fatal> {
    match v {
        "p" => *list = true,
        "q" => inv.delivery = DeliveryMode::Queue,
        "v" => inv.mode = Mode::Verify,
        "i" => inv.mode = Mode::NewAliases,
        "s" => inv.mode = Mode::Smtp,
        "m" => {}
        "d" | "D" => {
            return Err(Fatal::new(
                EX_USAGE,
                format!("-b{v} is not supported: dma-rs never listens on a port"),
            ));
        }
        _ => {
            let shown = crate::escape::escape(&v.chars().take(20).collect::<String>()).into_owned();
            return Err(Fatal::new(
                EX_USAGE,
                format!("-b{shown} is not supported (modes: -bm -bp -bq -bs -bv -bi)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(prog: &str, args: &[&str]) -> Result<Invocation, Fatal> {
        parse(prog, args.iter().map(OsString::from).collect())
    }

    #[test]
    fn log_tags_are_checked() {
        for good in [
            "dma",
            "cron-mail",
            "a.b_c/d:1",
            &"x".repeat(crate::logging::MAX_TAG),
        ] {
            let inv = p("sendmail", &["-L", good, "bob"]).unwrap();
            assert_eq!(inv.log_tag.as_deref(), Some(good));
        }
        for bad in [
            "",
            "two words",
            "tab\there",
            "dma[123]",
            "esc\x1b",
            "nl\n",
            "über",
            &"x".repeat(crate::logging::MAX_TAG + 1),
        ] {
            let e = p("sendmail", &["-L", bad, "bob"]).unwrap_err();
            assert_eq!(e.code, EX_USAGE, "{bad:?}");
            assert!(e.msg.starts_with("invalid -L tag") && !e.msg.contains('\n'));
        }
    }

    #[test]
    fn flags() {
        let i = p(
            "sendmail",
            &[
                "-tif",
                "bounce@x",
                "-oi",
                "-odq",
                "-F",
                "Full Name",
                "-Ac",
                "bob",
                "--",
                "-weird",
            ],
        )
        .unwrap();
        assert!(i.extract_rcpts && i.ignore_dots);
        assert_eq!(i.sender.as_deref(), Some("bounce@x"));
        assert_eq!(i.full_name.as_deref(), Some("Full Name"));
        assert_eq!(i.delivery, DeliveryMode::Queue);
        assert_eq!(i.rcpts, ["bob", "-weird"]);
        assert_eq!(p("sendmail", &["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p("sendmail", &["-Ap"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p("mailq", &["-C", "x"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p("newaliases", &[]).unwrap().mode, Mode::NewAliases);
        assert_eq!(
            p("sendmail", &["-q"]).unwrap().mode,
            Mode::RunQueue {
                due_only: false,
                select: vec![]
            }
        );
        assert_eq!(
            p("sendmail", &["-q5m"]).unwrap().mode,
            Mode::RunQueue {
                due_only: true,
                select: vec![]
            }
        );
        assert_eq!(
            p("sendmail", &["-bs", "-odb", "-oem"]).unwrap().mode,
            Mode::Smtp
        );
        assert_eq!(
            p(
                "sendmail",
                &["-oem", "-n", "-U", "-B", "8BITMIME", "-X", "log", "root"]
            )
            .unwrap()
            .rcpts,
            ["root"]
        );
        assert_eq!(
            p("sendmail", &["-L", "tag", "-v", "x"])
                .unwrap()
                .log_tag
                .as_deref(),
            Some("tag")
        );
    }

    /// Letters and punctuation a short option could be.
    fn option_chars() -> impl Iterator<Item = char> {
        (b'!'..=b'~').map(char::from).filter(|c| *c != '-')
    }

    #[test]
    fn flags_lists_every_option_letter_the_parser_accepts() {
        for c in option_chars() {
            let flag = format!("-{c}");
            // With a value after it, for the letters that need one.
            let accepted = match p("sendmail", &[&flag, "x"]) {
                Err(e) => e.msg != format!("invalid argument: `{flag}'"),
                Ok(_) => true,
            };
            assert_eq!(accepted, FLAGS.contains(&flag.as_str()), "{flag}");
        }
    }

    #[test]
    fn flags_lists_every_b_o_and_a_value_with_a_meaning() {
        let letters: Vec<char> = option_chars().filter(char::is_ascii_alphabetic).collect();
        // Any other -b<x> is refused, naming itself.
        for c in &letters {
            let f = format!("-b{c}");
            let own = match p("sendmail", &[&f]) {
                Ok(_) => true,
                Err(e) => {
                    assert_eq!(e.code, EX_USAGE, "{f}");
                    assert!(
                        e.msg.starts_with(&format!("{f} is not supported")),
                        "{f}: {e}"
                    );
                    false
                }
            };
            assert_eq!(own, FLAGS.contains(&f.as_str()), "{f}");
        }
        // Any other -o<x> is ignored: it changes nothing whatever the
        // delivery mode before it.
        for f in letters
            .iter()
            .flat_map(|c| [format!("-o{c}"), format!("-od{c}")])
        {
            let own = ["-odq", "-odi"]
                .iter()
                .any(|base| p("sendmail", &[base, &f]) != p("sendmail", &[base]));
            assert_eq!(own, FLAGS.contains(&f.as_str()), "{f}");
        }
        // -A<x> is -b<x> but for the ones listed, which are ignored.
        for c in &letters {
            let f = format!("-A{c}");
            let want = if FLAGS.contains(&f.as_str()) {
                p("sendmail", &[])
            } else {
                p("sendmail", &[&format!("-b{c}")])
            };
            assert_eq!(p("sendmail", &[&f]), want, "{f}");
        }
    }

    #[test]
    fn help_and_version_end_the_parsing() {
        for f in ["--help", "--version"] {
            for prog in ["sendmail", "mailq", "newaliases", "dma"] {
                let mode = p(prog, &["-v", f, "bob", "-Z"]).unwrap().mode;
                let want = if f == "--help" {
                    Mode::Help
                } else {
                    Mode::Version
                };
                assert_eq!(mode, want, "{prog} {f}");
            }
        }
        for bad in ["--help=x", "--versio", "--usage", "--HELP"] {
            assert_eq!(
                p("sendmail", &[bad]).unwrap_err().msg,
                format!("invalid argument: `{}'", bad.split('=').next().unwrap()),
            );
        }
        // -h is sendmail's hop count: it takes a value and is ignored.
        assert_eq!(p("sendmail", &["-h", "17", "bob"]).unwrap().rcpts, ["bob"]);
    }

    #[test]
    fn probe_takes_one_host_and_auth() {
        let probe = |args: &[&str]| p("dma", args).map(|i| i.mode);
        for (args, target, auth) in [
            (&["--probe"][..], None, false),
            (&["--probe", "mx.test:587"][..], Some("mx.test:587"), false),
            (&["--probe=mx.test"][..], Some("mx.test"), false),
            (
                &["-C", "x", "--auth", "--probe", "-v", "h"][..],
                Some("h"),
                true,
            ),
            (&["--probe", "--auth"][..], None, true),
        ] {
            let want = Mode::Probe {
                target: target.map(str::to_string),
                auth,
            };
            assert_eq!(probe(args).unwrap(), want, "{args:?}");
        }
        for (args, msg) in [
            (&["--auth"][..], "--auth goes with --probe"),
            (&["--probe", "a", "b"][..], "--probe takes one host[:port]"),
            (&["--probe", "-q"][..], "--probe goes with no other mode"),
            (&["--probe", "-bp"][..], "--probe goes with no other mode"),
            (&["--probe", "-bs"][..], "--probe goes with no other mode"),
        ] {
            let e = probe(args).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (EX_USAGE, msg), "{args:?}");
        }
    }

    #[test]
    fn usage_fits_a_screen_and_names_every_option_letter() {
        let u = usage();
        assert!(u.lines().count() < 24, "{u}");
        for l in u.lines() {
            assert!(l.chars().count() <= 80, "too wide: {l:?}");
        }
        for f in FLAGS.iter().filter(|f| f.len() == 2 && **f != "--") {
            assert!(
                u.split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w.starts_with(f)),
                "{f} not in the usage:\n{u}"
            );
        }
        assert!(u.contains(crate::config::conf::DEFAULT_PATH));
    }

    #[test]
    fn version_names_the_compiled_in_paths() {
        let v = version();
        assert!(
            v.starts_with(&format!("dma-rs {}", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        for path in [
            crate::config::conf::DEFAULT_PATH.to_string(),
            format!("{}/dma-local", crate::context::LIBEXEC_DIR),
            "/var/spool/dma".to_string(),
        ] {
            assert!(v.contains(&path), "{path} not in\n{v}");
        }
        if let Some(c) = GIT_COMMIT {
            assert!(v.lines().next().unwrap().ends_with(&format!(" (git {c})")));
        }
    }

    #[test]
    fn usage_errors_are_dmas() {
        for (prog, args, msg) in [
            ("sendmail", &["-Z"][..], "invalid argument: `-Z'"),
            ("sendmail", &["-f"][..], "invalid argument: `-f'"),
            (
                "sendmail",
                &["-bp", "root"][..],
                "sending mail and queue operations are mutually exclusive",
            ),
            (
                "sendmail",
                &["-q", "root"][..],
                "sending mail and queue operations are mutually exclusive",
            ),
            (
                "sendmail",
                &["-bp", "-q"][..],
                "conflicting queue operations",
            ),
            ("mailq", &["x"][..], "invalid arguments"),
            ("sendmail", &["--long"][..], "invalid argument: `--long'"),
        ] {
            let e = p(prog, args).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (EX_USAGE, msg), "{args:?}");
        }
        for args in [&["-bs", "bob"][..], &["-bs", "-q"], &["-bp", "-bs"]] {
            assert_eq!(p("sendmail", args).unwrap_err().code, EX_USAGE, "{args:?}");
        }
    }

    #[test]
    fn unimplemented_b_modes_are_refused_naming_the_mode() {
        for (args, msg) in [
            (
                &["-bt", "root"][..],
                "-bt is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-bh"][..],
                "-bh is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-bH"][..],
                "-bH is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-bP", "x"][..],
                "-bP is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-bpx"][..],
                "-bpx is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-At"][..],
                "-bt is not supported (modes: -bm -bp -bq -bs -bv -bi)",
            ),
            (
                &["-bd"][..],
                "-bd is not supported: dma-rs never listens on a port",
            ),
            (
                &["-bD"][..],
                "-bD is not supported: dma-rs never listens on a port",
            ),
        ] {
            let e = p("sendmail", args).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (EX_USAGE, msg), "{args:?}");
        }
        for kept in ["-bm", "-bq", "-bv", "-bi", "-bp", "-bs"] {
            assert!(p("sendmail", &[kept]).is_ok(), "{kept}");
        }
    }
}
