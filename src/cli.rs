//! sendmail's command line, in two layers: argv as given ([`parse`] over
//! lexopt, getopt-compatible), then one validated [`Invocation`].
//!
//! The flags and their meaning are dma's (`:A:b:B:C:d:Df:F:h:iL:N:no:O:q:r:R:tUV:vX:`)
//! with these additions: `-C` selects another config file, `-F` names the
//! sender in the From: header we add, `-od[ibq]` choose the delivery mode,
//! `-bv` shows routing, `-bi` is newaliases.

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
    },
    /// `newaliases`, `-bi`: check the aliases file.
    NewAliases,
    /// `-bv`: show where each recipient would go.
    Verify,
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
    };
    let mut list = false;
    let mut run: Option<bool> = None;
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
                        let due = arg
                            .as_deref()
                            .is_some_and(|a| crate::config::duration::parse(a).is_some());
                        run = Some(due);
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
                    // Accepted and ignored, without one.
                    'n' | 'U' | 'm' => {}
                    _ => return Err(invalid(&flag)),
                }
            }
            Long(l) => return Err(invalid(&format!("--{l}"))),
            Value(v) => inv.rcpts.push(text(v, "recipient")?),
        }
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
        if list {
            inv.mode = Mode::ListQueue;
        } else if let Some(due_only) = run {
            inv.mode = Mode::RunQueue { due_only };
        }
    }
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
/// other letter as `-D`. We add `v` (verify) and `i` (newaliases) as sendmail
/// has them, and refuse `s` and `d`, which promise an SMTP dialogue.
fn b_flag(v: &str, inv: &mut Invocation, list: &mut bool) -> Result<(), Fatal> {
    match v {
        "p" => *list = true,
        "q" => inv.delivery = DeliveryMode::Queue,
        "v" => inv.mode = Mode::Verify,
        "i" => inv.mode = Mode::NewAliases,
        "m" => {}
        "s" | "d" | "D" => {
            return Err(Fatal::new(
                EX_USAGE,
                format!("-b{v} is not supported: dma-rs does not speak SMTP on stdin or listen"),
            ));
        }
        _ => inv.delivery = DeliveryMode::Foreground,
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
            Mode::RunQueue { due_only: false }
        );
        assert_eq!(
            p("sendmail", &["-q5m"]).unwrap().mode,
            Mode::RunQueue { due_only: true }
        );
        assert_eq!(
            p("sendmail", &["-bt", "root"]).unwrap().delivery,
            DeliveryMode::Foreground
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
        assert_eq!(p("sendmail", &["-bs"]).unwrap_err().code, EX_USAGE);
    }
}
