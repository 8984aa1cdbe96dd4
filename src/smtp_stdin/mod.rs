//! `sendmail -bs`: an ESMTP dialogue on stdin and stdout, as alpine, Pine
//! and PHP mailers (`sendmail -bs -odb -oem`) speak it.
//!
//! It is the caller's own submission over a pipe, never a listener: each
//! message goes through the same intake and queue as `sendmail rcpt <msg`
//! ([`app::queue_message`]), with the caller as submitter, and is
//! acknowledged with 250 only once it is fsynced; delivery then starts as
//! the `-od` flags say. The address of MAIL is the envelope sender exactly
//! as `-f` would be (the same rules, the same MASQUERADE). A message cut
//! short (end of input, timeout, RSET between BDAT chunks) leaves nothing
//! in the queue.
//!
//! [`dialogue`] is the state machine, [`data`] the streams; this file
//! joins them to stdin, stdout and the queue.

pub mod data;
pub mod dialogue;

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::time::Duration;

use crate::app::{self, Caller, Queued, SubmitError};
use crate::cli::Invocation;
use crate::context::Ctx;
use crate::exit::*;
use crate::intake::IntakeError;
use crate::spool::admission;

use data::{BdatReader, Cut, DotReader, Line, Timed, read_command};
use dialogue::{Dialogue, MAX_RCPTS, Reply, Step, Transaction};

/// How long we wait for the client's next bytes (RFC 5321 4.5.3.2.7 asks
/// a server for at least 5 minutes).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the dialogue to QUIT or the end of input; the exit code.
pub(crate) fn serve(ctx: &mut Ctx, inv: &Invocation, caller: &Caller) -> Result<i32, Fatal> {
    let mut input = BufReader::with_capacity(64 * 1024, Timed::new(io::stdin(), TIMEOUT));
    let mut output = BufWriter::new(io::stdout().lock());
    let mut dialogue = Dialogue::new(&ctx.hostname, ctx.config.message_size_limit, MAX_RCPTS);
    let written = |e: io::Error| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}"));
    output
        .write_all(&dialogue.greeting().to_wire())
        .map_err(written)?;
    loop {
        // Replies to pipelined commands go out together, once the client
        // waits for them (RFC 2920).
        if input.buffer().is_empty() {
            output.flush().map_err(written)?;
        }
        let mut next = match read_command(&mut input) {
            Ok(Line::Text(l)) => Some(l),
            Ok(Line::TooLong) => {
                send(&mut output, &dialogue.line_too_long())?;
                continue;
            }
            Ok(Line::Eof) => return end(&mut output, &dialogue, Cut::Eof, false),
            Err(e) => {
                return end(
                    &mut output,
                    &dialogue,
                    Cut::of(&e).unwrap_or(Cut::Eof),
                    false,
                );
            }
        };
        while let Some(line) = next.take() {
            let policy = |given: &str| sender_policy(ctx, inv, caller, given);
            match dialogue.command(&line, &policy) {
                Step::Reply(r) => send(&mut output, &r)?,
                Step::Quit(r) => {
                    send(&mut output, &r)?;
                    output.flush().map_err(written)?;
                    return Ok(EX_OK);
                }
                Step::Data(r) => {
                    send(&mut output, &r)?;
                    output.flush().map_err(written)?;
                    let txn = dialogue.take_transaction().expect("DATA has one");
                    let mut reader = DotReader::new(&mut input);
                    let outcome = match take_message(ctx, inv, caller, txn, &mut reader) {
                        Ok(q) => Ok(q),
                        Err(refusal) => match reader.drain() {
                            Ok(()) => Err(refusal),
                            Err(e) => {
                                let cut = Cut::of(&e).unwrap_or(Cut::Eof);
                                return end(&mut output, &dialogue, cut, true);
                            }
                        },
                    };
                    finish(ctx, inv, caller, &dialogue, &mut output, outcome)?;
                }
                Step::Bdat {
                    size,
                    refusal: Some(r),
                    ..
                } => {
                    // The chunk follows the command whatever we say.
                    let got = io::copy(&mut (&mut input).take(size), &mut io::sink());
                    match got {
                        Ok(n) if n == size => send(&mut output, &r)?,
                        Ok(_) => return end(&mut output, &dialogue, Cut::Eof, false),
                        Err(e) => {
                            let cut = Cut::of(&e).unwrap_or(Cut::Eof);
                            return end(&mut output, &dialogue, cut, false);
                        }
                    }
                }
                Step::Bdat {
                    size,
                    last,
                    refusal: None,
                } => {
                    let txn = dialogue.take_transaction().expect("BDAT has one");
                    let mut reader = BdatReader::new(&mut input, &mut output, size, last);
                    let outcome = match take_message(ctx, inv, caller, txn, &mut reader) {
                        Ok(q) => Ok(q),
                        Err(refusal) => {
                            reader.fail(refusal.clone());
                            match reader.drain() {
                                Ok(()) => Err(refusal),
                                Err(e) => match Cut::of(&e) {
                                    // RSET or QUIT: the message is dropped
                                    // and the command answered as usual.
                                    Some(Cut::Command) => {
                                        next = reader.take_command();
                                        continue;
                                    }
                                    cut => {
                                        return end(
                                            &mut output,
                                            &dialogue,
                                            cut.unwrap_or(Cut::Eof),
                                            true,
                                        );
                                    }
                                },
                            }
                        }
                    };
                    finish(ctx, inv, caller, &dialogue, &mut output, outcome)?;
                }
            }
        }
    }
}

/// Sends one reply (buffered).
fn send(output: &mut impl Write, reply: &Reply) -> Result<(), Fatal> {
    output
        .write_all(&reply.to_wire())
        .map_err(|e| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}")))
}

/// Answers the end of a message and, once the client has its 250, starts
/// the delivery as for a command-line submission.
fn finish(
    ctx: &Ctx,
    inv: &Invocation,
    caller: &Caller,
    dialogue: &Dialogue,
    output: &mut impl Write,
    outcome: Result<Queued, Reply>,
) -> Result<(), Fatal> {
    let reply = dialogue.finish(outcome.as_ref().map(Queued::id).map_err(Clone::clone));
    send(output, &reply)?;
    output
        .flush()
        .map_err(|e| Fatal::new(EX_IOERR, format!("can not write to stdout: {e}")))?;
    if let Ok(queued) = outcome {
        app::deliver_queued(ctx, inv, caller, queued);
    }
    Ok(())
}

/// The session ends without QUIT: a 421 when a transaction was open or the
/// client went silent, and an error exit when a message was lost with it.
fn end(
    output: &mut impl Write,
    dialogue: &Dialogue,
    cut: Cut,
    in_message: bool,
) -> Result<i32, Fatal> {
    let open = in_message || dialogue.in_transaction();
    if open || cut == Cut::Timeout {
        let _ = output.write_all(&dialogue.closing(&cut.to_string()).to_wire());
        let _ = output.flush();
    }
    if open {
        return Err(Fatal::new(
            EX_IOERR,
            format!("-bs: {cut}: the message was not queued"),
        ));
    }
    if cut == Cut::Timeout {
        return Err(Fatal::new(EX_IOERR, format!("-bs: {cut}")));
    }
    Ok(EX_OK)
}

/// MAIL's address as the envelope sender: the rules of `-f`.
fn sender_policy(
    ctx: &Ctx,
    inv: &Invocation,
    caller: &Caller,
    given: &str,
) -> Result<String, String> {
    let as_f = Invocation {
        sender: Some(given.to_string()),
        ..inv.clone()
    };
    app::envelope_sender(ctx, &as_f, caller).map_err(|f| f.msg)
}

/// Queues the message of `txn` read from `input`, or the reply that
/// refuses it.
fn take_message(
    ctx: &mut Ctx,
    inv: &Invocation,
    caller: &Caller,
    txn: Transaction,
    input: &mut impl BufRead,
) -> Result<Queued, Reply> {
    // The message ends where the protocol says, whatever -i said; the
    // recipients are RCPT's, whatever -t said.
    let msg = Invocation {
        sender: Some(txn.sender.clone()),
        rcpts: Vec::new(),
        extract_rcpts: false,
        ignore_dots: true,
        ..inv.clone()
    };
    app::queue_message(ctx, &msg, caller, txn.sender, txn.rcpts, input).map_err(|e| {
        let reply = refusal(e);
        if reply.code != 421 {
            crate::notice!("-bs: message refused: {}", reply.lines.join(" "));
        }
        reply
    })
}

/// The reply for a message that was not queued.
fn refusal(e: SubmitError) -> Reply {
    let r = |code, text: String| Reply::new(code, text);
    match e {
        SubmitError::Intake(e @ IntakeError::TooLarge(_)) => r(552, format!("5.3.4 {e}")),
        SubmitError::Intake(e @ IntakeError::HeaderTooLarge) => r(552, format!("5.3.4 {e}")),
        SubmitError::Intake(e @ IntakeError::BadHeaderAddress(_)) => r(554, format!("5.6.0 {e}")),
        SubmitError::Intake(IntakeError::Io(e)) if Cut::of(&e).is_some() => {
            // The reader says so again when drained; never sent.
            r(421, format!("4.4.2 {e}"))
        }
        SubmitError::Intake(IntakeError::Io(e)) if admission::below_reserve(&e) => {
            r(452, format!("4.3.1 {e}"))
        }
        SubmitError::Intake(IntakeError::Io(e)) => r(451, format!("4.3.0 local error: {e}")),
        SubmitError::Fatal(f) => match f.code {
            EX_TEMPFAIL => r(452, format!("4.3.1 {}", f.msg)),
            EX_DATAERR => r(554, format!("5.6.0 {}", f.msg)),
            EX_NOINPUT => r(554, format!("5.5.1 {}", f.msg)),
            _ => r(451, format!("4.3.0 local error: {}", f.msg)),
        },
    }
}
