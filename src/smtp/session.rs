//! One SMTP session over any transport: greeting, EHLO (HELO fallback),
//! STARTTLS, AUTH, and transactions that give each recipient its own result.
//!
//! With PIPELINING, MAIL, every RCPT and DATA go out in one write and every
//! reply is read before any is acted on. A recipient's own RCPT reply decides
//! its fate: 2xx goes on, 4xx defers it alone (452 "too many recipients":
//! send it in a further transaction, not counted as a failed attempt), 5xx
//! bounces it alone. With no accepted recipient no message data is sent.
//! DATA and final-dot replies apply to the accepted recipients; a connection
//! lost before the final reply defers them (a duplicate is better than a
//! loss).
//!
//! With PIPELINING and CHUNKING (RFC 3030), a message of up to
//! [`BDAT_INLINE`] octets goes as one `BDAT <n> LAST` in the same write as
//! MAIL and the RCPTs: one round trip per message instead of two (as Exim
//! does). The data then goes out before the RCPT replies are known; the
//! server throws it away if no recipient was accepted.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use thiserror::Error;

use super::body;
use super::deadline::{BLOCK, Blocks, Deadline, Transport, is_timeout, timeout_after};
use super::reply::{Reply, ReplyError, ReplyReader};

/// Per-command time limits (RFC 5321 §4.5.3.2 minimums by default). Each
/// is an overall deadline on the monotonic clock, not a limit per read: a
/// reply must be complete within its limit however the server spaces its
/// bytes. A write gets its limit per [`BLOCK`] bytes (a command group is
/// one block, unless it is huge).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The greeting, MAIL, RCPT, EHLO, AUTH, STARTTLS, RSET, QUIT, and the
    /// TLS handshake (STARTTLS or implicit): 5 minutes.
    pub command: Duration,
    /// The reply to DATA.
    pub data_init: Duration,
    /// Each block of message data (each [`BLOCK`] bytes: so a server that
    /// reads one byte a second is cut off, while a large message to a
    /// server that keeps reading may take as long as it needs).
    pub data_block: Duration,
    /// The reply to the final dot.
    pub data_done: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// Every timeout set to `t` (the SMTP_TIMEOUT key).
    pub fn all(t: Duration) -> Timeouts {
        Timeouts {
            command: t,
            data_init: t,
            data_block: t,
            data_done: t,
        }
    }
}

/// What the server said it can do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    /// EHLO worked (false after a HELO fallback).
    pub esmtp: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// SIZE, with its limit (0: none given).
    pub size: Option<u64>,
    /// 8BITMIME.
    pub eightbit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// DSN.
    pub dsn: bool,
    /// CHUNKING (BDAT, RFC 3030).
    pub chunking: bool,
    /// AUTH mechanisms (smtp-proto bits).
    pub auth: u64,
}

/// A session-level failure: it ends the session for this host.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The server answered a command with something other than success.
    #[error("{host} said {reply} (in reply to {cmd})")]
    Reply {
        /// The server.
        host: String,
        /// The command (or "greeting").
        cmd: String,
        /// Its reply.
        reply: Reply,
    },
    /// I/O failed, timed out, or the reply made no sense.
    #[error("{host}: {err} (after {cmd})")]
    Io {
        /// The server.
        host: String,
        /// The command.
        cmd: String,
        /// What went wrong.
        err: String,
    },
    /// The server broke the protocol in a way that matters for security.
    #[error("{host}: {0}", host = .1)]
    Protocol(String, String),
}

impl SessionError {
    /// Whether the failure is permanent (a 5xx reply), so that the
    /// recipients bounce rather than wait.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SessionError::Reply { reply, .. } if reply.is_permanent())
    }
}

/// What happened to one recipient in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The server took the message for it (the final reply).
    Delivered(Reply),
    /// A 5xx to `cmd`.
    Rejected {
        /// The command.
        cmd: String,
        /// The reply.
        reply: Reply,
    },
    /// A 4xx to `cmd`, or a failure of the connection.
    Deferred {
        /// The command.
        cmd: String,
        /// The reply, or what went wrong.
        why: String,
    },
    /// 452 too many recipients: try again in another transaction, now.
    TooMany(Reply),
    /// Not sent at all: refused by us, for a limit of the server's (SIZE)
    /// or an extension it lacks (SMTPUTF8).
    Refused {
        /// The enhanced status code (`5.3.4`).
        status: String,
        /// Why, naming the limit.
        why: String,
    },
}

/// The envelope of one transaction.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// MAIL FROM (empty for `<>`).
    pub sender: &'a str,
    /// RCPT TO addresses, in order.
    pub rcpts: Vec<&'a str>,
    /// The message (as sent) has octets above 127.
    pub eightbit: bool,
    /// Its header section has octets above 127 (UTF-8 header text).
    pub header_8bit: bool,
    /// Its size as sent.
    pub size: u64,
    /// DSN requests (sent when the server offers DSN).
    pub dsn: &'a crate::spool::Dsn,
    /// ORCPT for each recipient (the address it was originally sent to).
    pub orcpts: Vec<&'a str>,
}

/// RFC 3461 xtext: `+XX` for anything outside `!`..`~` and for `+`, `=`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The largest message (as sent) that goes as one BDAT chunk, built in
/// memory, pipelined with its envelope; larger ones go with DATA, streamed.
pub const BDAT_INLINE: u64 = 512 * 1024;

/// One SMTP session.
pub struct Session<T: Transport> {
    stream: T,
    reader: ReplyReader,
    /// The server's name, for messages.
    pub host: String,
    /// What it can do (after EHLO).
    pub caps: Caps,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// A transaction ran on this session and did not end with a 2xx final
    /// reply (which clears the server's buffers, RFC 5321 §4.1.1.4): the
    /// next one starts with RSET (pipelined with it when the server allows).
    needs_rset: bool,
    /// A read or write failed or timed out: the replies may be out of step
    /// with the commands, so the session must not be used again.
    pub broken: bool,
    /// Why we did not authenticate although auth.conf has a password for
    /// this server (no verified TLS, no INSECURE): a 530/535 to MAIL or RCPT
    /// is then our own doing, and defers.
    pub auth_withheld: Option<String>,
}

/// Whether an address of the envelope is non-ASCII: it can go only with
/// SMTPUTF8.
fn needs_utf8(env: &Envelope) -> bool {
    !env.sender.is_ascii() || env.rcpts.iter().any(|r| !r.is_ascii())
}

/// Whether the transaction asks for SMTPUTF8 (RFC 6531 §3.4): a non-ASCII
/// address, original recipient or header text, and a server that offers it.
fn wants_utf8(env: &Envelope, caps: &Caps) -> bool {
    caps.smtputf8
        && (needs_utf8(env) || env.header_8bit || env.orcpts.iter().any(|o| !o.is_ascii()))
}

/// RFC 6533 §3: the ORCPT value of `addr`: `rfc822;` xtext when it is
/// ASCII, else `utf-8;` with characters that may not stand for themselves
/// as `\x{HEX}`; non-ASCII characters stand for themselves only in an
/// SMTPUTF8 transaction (`unitext`).
pub fn orcpt(addr: &str, unitext: bool) -> String {
    if addr.is_ascii() {
        return format!("rfc822;{}", xtext(addr));
    }
    let mut out = String::from("utf-8;");
    for c in addr.chars() {
        let plain = if c.is_ascii() {
            ('!'..='~').contains(&c) && !matches!(c, '+' | '=' | '\\')
        } else {
            unitext
        };
        if plain {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// Every recipient refused by us, before anything is sent.
fn refuse_all(env: &Envelope, status: &str, why: String) -> Vec<RcptResult> {
    env.rcpts
        .iter()
        .map(|_| RcptResult::Refused {
            status: status.into(),
            why: why.clone(),
        })
        .collect()
}

impl<T: Transport> Session<T> {
    /// A session on a connected stream; nothing read yet.
    pub fn new(stream: T, host: &str, timeouts: Timeouts) -> Session<T> {
        Session {
            stream,
            reader: ReplyReader::new(),
            host: host.to_string(),
            caps: Caps::default(),
            timeouts,
            needs_rset: false,
            broken: false,
            auth_withheld: None,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &T {
        &self.stream
    }

    /// Gives the stream back (for the TLS handshake after STARTTLS).
    pub fn into_stream(self) -> T {
        self.stream
    }

    fn io_err(&self, cmd: &str, err: impl std::fmt::Display) -> SessionError {
        SessionError::Io {
            host: self.host.clone(),
            cmd: cmd.to_string(),
            err: err.to_string(),
        }
    }

    fn reply_err(&self, cmd: &str, reply: Reply) -> SessionError {
        SessionError::Reply {
            host: self.host.clone(),
            cmd: cmd.to_string(),
            reply,
        }
    }

    fn read_reply(&mut self, cmd: &str, t: Duration) -> Result<Reply, SessionError> {
        let r = self.read_reply1(cmd, t);
        self.broken |= r.is_err();
        r
    }

    /// One reply, complete within `t` from now.
    fn read_reply1(&mut self, cmd: &str, t: Duration) -> Result<Reply, SessionError> {
        self.stream.set_deadline(Deadline::after(t));
        match self.reader.read(&mut self.stream) {
            Ok(r) => Ok(r),
            Err(ReplyError::Io(e)) if is_timeout(&e) => Err(self.io_err(cmd, timeout_after(t))),
            Err(e) => Err(self.io_err(cmd, e)),
        }
    }

    fn send(&mut self, cmd: &str, text: &str) -> Result<(), SessionError> {
        self.write(cmd, text.as_bytes(), self.timeouts.command)
    }

    /// Writes `bytes`, each block of them within `t`.
    fn write(&mut self, cmd: &str, bytes: &[u8], t: Duration) -> Result<(), SessionError> {
        let mut w = Blocks::new(&mut self.stream, t);
        let r = w
            .write_all(bytes)
            .and_then(|_| w.flush())
            .map_err(|e| self.io_err(cmd, io_text(&e, t)));
        self.broken |= r.is_err();
        r
    }

    fn command(&mut self, cmd: &str, text: &str) -> Result<Reply, SessionError> {
        self.send(cmd, text)?;
        self.read_reply(cmd, self.timeouts.command)
    }

    /// Reads the greeting; anything but 2xx is an error.
    pub fn greeting(&mut self) -> Result<(), SessionError> {
        let r = self.read_reply("greeting", self.timeouts.command)?;
        if r.is_ok() {
            Ok(())
        } else {
            Err(self.reply_err("greeting", r))
        }
    }

    /// EHLO, falling back to HELO on a 5xx; sets `caps`.
    pub fn hello(&mut self, name: &str) -> Result<(), SessionError> {
        self.send("EHLO", &format!("EHLO {name}\r\n"))?;
        // Read the raw reply too: smtp-proto parses the capabilities.
        let r = self.read_reply("EHLO", self.timeouts.command)?;
        if r.is_ok() {
            self.caps = caps_of(&r);
            return Ok(());
        }
        if !r.is_permanent() {
            return Err(self.reply_err("EHLO", r));
        }
        let r = self.command("HELO", &format!("HELO {name}\r\n"))?;
        if !r.is_ok() {
            return Err(self.reply_err("HELO", r));
        }
        self.caps = Caps::default();
        Ok(())
    }

    /// STARTTLS: Ok(true) when the server is ready for the handshake, Ok(false)
    /// when it refused. Bytes it sent after its 220 are an injection attack
    /// (CVE-2011-0411): an error.
    pub fn starttls(&mut self) -> Result<bool, SessionError> {
        let r = self.command("STARTTLS", "STARTTLS\r\n")?;
        if !r.is_ok() {
            return Ok(false);
        }
        if self.reader.buffered() > 0 {
            return Err(SessionError::Protocol(
                "data received after the STARTTLS reply, before the TLS handshake (injection?)"
                    .into(),
                self.host.clone(),
            ));
        }
        Ok(true)
    }

    /// SASL authentication with `creds`; `encrypted` says whether TLS is up.
    /// Ok(None) if no mechanism may be used (nothing is sent then).
    pub fn auth(
        &mut self,
        creds: &super::auth::Credentials,
        encrypted: bool,
        insecure: bool,
    ) -> Result<Option<super::auth::Mechanism>, SessionError> {
        let Some(mech) = super::auth::choose(self.caps.auth, &creds.secret, encrypted, insecure)
        else {
            return Ok(None);
        };
        let mut ex = super::auth::Exchange::new(mech, creds);
        let mut r = self.command("AUTH", &ex.start())?;
        let mut rounds = 0;
        while r.code == 334 && rounds < 10 {
            rounds += 1;
            let challenge = r.lines.first().cloned().unwrap_or_default();
            let line = match ex.respond(challenge.trim()) {
                Ok(l) => l,
                Err(e) => {
                    // Abort the exchange (RFC 4954 §4).
                    let _ = self.command("AUTH", "*\r\n");
                    return Err(SessionError::Protocol(
                        format!("AUTH {}: {e}", mech.name()),
                        self.host.clone(),
                    ));
                }
            };
            r = self.command("AUTH", &line)?;
        }
        if r.code != 235 {
            return Err(self.reply_err(&format!("AUTH {}", mech.name()), r));
        }
        let success_data = r.lines.first().map(|l| l.trim().to_string());
        ex.finish_with(success_data.as_deref()).map_err(|e| {
            SessionError::Protocol(format!("AUTH {}: {e}", mech.name()), self.host.clone())
        })?;
        Ok(Some(mech))
    }

    fn mail_params(&self, env: &Envelope) -> String {
        let mut p = String::new();
        if self.caps.size.is_some() {
            p.push_str(&format!(" SIZE={}", env.size));
        }
        if env.eightbit && self.caps.eightbit {
            p.push_str(" BODY=8BITMIME");
        }
        if wants_utf8(env, &self.caps) {
            p.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if let Some(ret) = &env.dsn.ret {
                p.push_str(&format!(" RET={ret}"));
            }
            if let Some(id) = &env.dsn.envid {
                p.push_str(&format!(" ENVID={}", xtext(id)));
            }
        }
        p
    }

    fn rcpt_params(&self, env: &Envelope, i: usize) -> String {
        let mut p = String::new();
        if self.caps.dsn {
            if let Some(n) = &env.dsn.notify {
                p.push_str(&format!(" NOTIFY={n}"));
            }
            if let Some(o) = env.orcpts.get(i) {
                p.push_str(&format!(" ORCPT={}", orcpt(o, wants_utf8(env, &self.caps))));
            }
        }
        p
    }

    /// One transaction: MAIL, RCPTs, DATA, the message (from `data`, LF line
    /// ends, with `prepend` header lines first), the final dot. Returns one
    /// result per recipient, in order. `Err` only for a failure before any
    /// recipient was decided (the connection is then unusable).
    pub fn transaction(
        &mut self,
        env: &Envelope,
        data: &mut impl BufRead,
        prepend: &[String],
    ) -> Result<Vec<RcptResult>, SessionError> {
        if let Some(limit) = self.caps.size.filter(|l| *l > 0)
            && env.size > limit
        {
            return Ok(refuse_all(
                env,
                "5.3.4",
                format!(
                    "message size {} exceeds the limit of {limit} that {} advertised (SIZE)",
                    env.size, self.host
                ),
            ));
        }
        if needs_utf8(env) && !self.caps.smtputf8 {
            return Ok(refuse_all(
                env,
                "5.6.7",
                format!(
                    "non-ASCII address, and {} does not offer SMTPUTF8",
                    self.host
                ),
            ));
        }
        if env.header_8bit && !self.caps.smtputf8 && !self.caps.eightbit {
            // 8-bit body parts are converted for such a server; 8-bit
            // header text can not be.
            return Ok(refuse_all(
                env,
                "5.6.3",
                format!(
                    "the header holds 8-bit (UTF-8) text, and {} offers neither SMTPUTF8 nor 8BITMIME",
                    self.host
                ),
            ));
        }
        let mail = format!("MAIL FROM:<{}>{}\r\n", env.sender, self.mail_params(env));
        let rcpt_lines: Vec<String> = env
            .rcpts
            .iter()
            .enumerate()
            .map(|(i, r)| format!("RCPT TO:<{r}>{}\r\n", self.rcpt_params(env, i)))
            .collect();
        let rset = self.needs_rset;
        if self.caps.pipelining && self.caps.chunking && env.size <= BDAT_INLINE {
            return self.transaction_bdat(rset, &mail, &rcpt_lines, data, prepend, env);
        }
        if rset && !self.caps.pipelining {
            self.rset()?;
        }
        // A transaction begins: until a 2xx final reply says otherwise.
        self.needs_rset = true;
        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            let group = envelope_group(rset, &mail, &rcpt_lines, b"DATA\r\n");
            self.write("MAIL FROM", &group, self.timeouts.command)?;
            let (m, rs) = self.envelope_replies(rset, rcpt_lines.len())?;
            let d = self.read_reply("DATA", self.timeouts.data_init)?;
            (m, rs, Some(d))
        } else {
            let m = self.command("MAIL FROM", &mail)?;
            let m = self.closing(m)?;
            let mut rs = Vec::new();
            if m.is_ok() {
                for l in &rcpt_lines {
                    rs.push(self.command("RCPT TO", l)?);
                }
            }
            let any = rs.iter().any(Reply::is_ok);
            let d = if any {
                self.send("DATA", "DATA\r\n")?;
                Some(self.read_reply("DATA", self.timeouts.data_init)?)
            } else {
                None
            };
            (m, rs, d)
        };
        // MAIL refused: every recipient shares its fate.
        if !mail_reply.is_ok() {
            self.finish_failed(data_reply.as_ref())?;
            return Ok(mail_refused(env, &mail_reply));
        }
        let results = rcpt_results(&rcpt_replies);
        let accepted = results.iter().filter(|r| r.is_none()).count();
        if accepted == 0 {
            self.finish_failed(data_reply.as_ref())?;
            return Ok(results
                .into_iter()
                .map(|r| r.expect("all decided"))
                .collect());
        }
        let data_reply = data_reply.expect("DATA sent when a recipient was accepted");
        if data_reply.code != 354 {
            let _ = self.rset();
            return Ok(fill(results, failed("DATA", &data_reply)));
        }
        // The message. A failure from here on defers the accepted recipients:
        // the server may or may not have it. Each buffer's worth is one
        // data block, with a deadline of its own.
        let t = self.timeouts.data_block;
        let mut w = io::BufWriter::with_capacity(BLOCK, Blocks::new(&mut self.stream, t));
        let sent = body::write_data(data, prepend, &mut w).and_then(|n| w.flush().map(|_| n));
        drop(w);
        if let Err(e) = sent {
            self.broken = true;
            return Ok(fill(
                results,
                RcptResult::Deferred {
                    cmd: "message data".into(),
                    why: format!("{}: {}", self.host, io_text(&e, t)),
                },
            ));
        }
        let fin = match self.read_reply("end of data", self.timeouts.data_done) {
            Ok(r) => r,
            Err(e) => {
                return Ok(fill(
                    results,
                    RcptResult::Deferred {
                        cmd: "end of data".into(),
                        why: e.to_string(),
                    },
                ));
            }
        };
        self.needs_rset = !fin.is_ok();
        Ok(finish(results, fin, "end of data"))
    }

    /// A transaction with the message as one BDAT LAST chunk, sent in one
    /// write with RSET (if `rset`), MAIL and the RCPTs.
    fn transaction_bdat(
        &mut self,
        rset: bool,
        mail: &str,
        rcpt_lines: &[String],
        data: &mut impl BufRead,
        prepend: &[String],
        env: &Envelope,
    ) -> Result<Vec<RcptResult>, SessionError> {
        let mut chunk = Vec::with_capacity(env.size as usize + 256);
        if let Err(e) = body::write_chunk(data, prepend, &mut chunk) {
            // Nothing sent: the session is as it was.
            return Ok(env
                .rcpts
                .iter()
                .map(|_| RcptResult::Deferred {
                    cmd: "message data".into(),
                    why: format!("can not read the queued message: {e}"),
                })
                .collect());
        }
        let mut last = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
        last.append(&mut chunk);
        let group = envelope_group(rset, mail, rcpt_lines, &last);
        drop(last);
        // A transaction begins: until a 2xx final reply says otherwise.
        self.needs_rset = true;
        self.write("MAIL FROM", &group, self.timeouts.data_block)?;
        drop(group);
        let (mail_reply, rcpt_replies) = self.envelope_replies(rset, rcpt_lines.len())?;
        // The BDAT reply ends the transaction whatever it says; the next
        // one starts with RSET all the same (remote.rs asks for it).
        let fin = self.read_reply("BDAT", self.timeouts.data_done);
        // (A lost BDAT reply leaves the session `broken`, not the
        // recipients undecided, when their fate is already known.)
        if !mail_reply.is_ok() {
            return Ok(mail_refused(env, &mail_reply));
        }
        let results = rcpt_results(&rcpt_replies);
        if results.iter().all(Option::is_some) {
            // Nobody accepted: the BDAT reply is the server's "no valid
            // recipients"; each recipient has its own RCPT reply.
            return Ok(results
                .into_iter()
                .map(|r| r.expect("all decided"))
                .collect());
        }
        match fin {
            Ok(fin) => {
                self.needs_rset = !fin.is_ok();
                Ok(finish(results, fin, "BDAT"))
            }
            // The data went out; the server may or may not have it.
            Err(e) => Ok(fill(
                results,
                RcptResult::Deferred {
                    cmd: "BDAT".into(),
                    why: e.to_string(),
                },
            )),
        }
    }

    /// The replies to a pipelined group: RSET (when sent; anything but 2xx
    /// is an error), MAIL and `rcpts` RCPTs.
    fn envelope_replies(
        &mut self,
        rset: bool,
        rcpts: usize,
    ) -> Result<(Reply, Vec<Reply>), SessionError> {
        if rset {
            let r = self.read_reply("RSET", self.timeouts.command)?;
            if !r.is_ok() {
                return Err(self.reply_err("RSET", r));
            }
        }
        let mail = self.read_reply("MAIL FROM", self.timeouts.command)?;
        let mail = self.closing(mail)?;
        let mut rs = Vec::with_capacity(rcpts);
        for _ in 0..rcpts {
            rs.push(self.read_reply("RCPT TO", self.timeouts.command)?);
        }
        Ok((mail, rs))
    }

    /// A 421 to MAIL: the server is closing the connection (an idle kept
    /// one timed out, say). A session failure, not the recipients' fate:
    /// a kept connection is then replaced by a new one.
    fn closing(&mut self, mail: Reply) -> Result<Reply, SessionError> {
        if mail.code == 421 {
            self.broken = true;
            return Err(self.reply_err("MAIL FROM", mail));
        }
        Ok(mail)
    }

    /// After a transaction with nothing to send: answer a 354 with an empty
    /// message's dot (RFC 2920), then RSET.
    fn finish_failed(&mut self, data_reply: Option<&Reply>) -> Result<(), SessionError> {
        if data_reply.is_some_and(|r| r.code == 354) {
            self.send("DATA", ".\r\n")?;
            let _ = self.read_reply("end of data", self.timeouts.data_done)?;
        }
        self.rset()
    }

    /// RSET, between transactions: the server's buffers are clear after it.
    fn rset(&mut self) -> Result<(), SessionError> {
        let r = self.command("RSET", "RSET\r\n")?;
        if r.is_ok() {
            self.needs_rset = false;
            Ok(())
        } else {
            Err(self.reply_err("RSET", r))
        }
    }

    /// QUIT, best effort.
    pub fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT\r\n");
    }
}

/// An I/O error for a message: a timeout as "timeout after Ns" (`t`).
fn io_text(e: &io::Error, t: Duration) -> String {
    if is_timeout(e) {
        timeout_after(t)
    } else {
        e.to_string()
    }
}

fn failed(cmd: &str, r: &Reply) -> RcptResult {
    if r.is_permanent() {
        RcptResult::Rejected {
            cmd: cmd.into(),
            reply: r.clone(),
        }
    } else {
        RcptResult::Deferred {
            cmd: cmd.into(),
            why: r.one_line(),
        }
    }
}

/// A pipelined group: RSET (if `rset`), MAIL, the RCPTs, then `last` (DATA,
/// or BDAT with its chunk), for one write.
fn envelope_group(rset: bool, mail: &str, rcpt_lines: &[String], last: &[u8]) -> Vec<u8> {
    let len = mail.len() + rcpt_lines.iter().map(String::len).sum::<usize>() + last.len() + 6;
    let mut group = Vec::with_capacity(len);
    if rset {
        group.extend_from_slice(b"RSET\r\n");
    }
    group.extend_from_slice(mail.as_bytes());
    for l in rcpt_lines {
        group.extend_from_slice(l.as_bytes());
    }
    group.extend_from_slice(last);
    group
}

/// MAIL refused: every recipient shares its fate.
fn mail_refused(env: &Envelope, reply: &Reply) -> Vec<RcptResult> {
    env.rcpts
        .iter()
        .map(|_| failed("MAIL FROM", reply))
        .collect()
}

/// Each recipient's RCPT reply: `None` for the accepted ones.
fn rcpt_results(replies: &[Reply]) -> Vec<Option<RcptResult>> {
    replies
        .iter()
        .map(|r| {
            if r.is_ok() {
                None
            } else if r.code == 452 || r.status() == "4.5.3" {
                Some(RcptResult::TooMany(r.clone()))
            } else if r.code == 552 {
                Some(soft_552(r))
            } else {
                Some(failed("RCPT TO", r))
            }
        })
        .collect()
}

/// 552 to RCPT: "too many recipients" or "out of storage", which RFC 5321
/// §4.5.3.1.10 tells clients to take as temporary (Postfix takes it as
/// 452): the recipient waits, it does not bounce.
fn soft_552(r: &Reply) -> RcptResult {
    let mut soft = r.clone();
    soft.code = 452;
    // Its own enhanced status, if it gave one, becomes 4.x.y too.
    let status = r.status();
    if let Some(first) = soft.lines.first_mut()
        && first.split_whitespace().next() == Some(status.as_str())
    {
        first.replace_range(0..1, "4");
    }
    if soft.status() == "4.5.3" {
        return RcptResult::TooMany(soft);
    }
    RcptResult::Deferred {
        cmd: "RCPT TO".into(),
        why: format!("{} (a 552, taken as temporary)", soft.one_line()),
    }
}

/// The final reply (to the dot or to BDAT LAST) for the accepted recipients.
fn finish(results: Vec<Option<RcptResult>>, fin: Reply, cmd: &str) -> Vec<RcptResult> {
    let outcome = if fin.is_ok() {
        RcptResult::Delivered(fin)
    } else {
        failed(cmd, &fin)
    };
    fill(results, outcome)
}

fn fill(results: Vec<Option<RcptResult>>, with: RcptResult) -> Vec<RcptResult> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| with.clone()))
        .collect()
}

/// The capabilities in an EHLO reply.
fn caps_of(r: &Reply) -> Caps {
    let mut raw = String::new();
    let n = r.lines.len();
    for (i, l) in r.lines.iter().enumerate() {
        raw.push_str(&format!(
            "{}{}{}\r\n",
            r.code,
            if i + 1 == n { ' ' } else { '-' },
            l
        ));
    }
    let mut it = raw.as_bytes().iter();
    let Ok(e) = smtp_proto::EhloResponse::<String>::parse(&mut it) else {
        return Caps {
            esmtp: true,
            ..Caps::default()
        };
    };
    let has = |bit: u32| e.capabilities & bit != 0;
    Caps {
        esmtp: true,
        pipelining: has(smtp_proto::EXT_PIPELINING),
        starttls: has(smtp_proto::EXT_START_TLS),
        size: has(smtp_proto::EXT_SIZE).then_some(e.size as u64),
        eightbit: has(smtp_proto::EXT_8BIT_MIME),
        smtputf8: has(smtp_proto::EXT_SMTP_UTF8),
        dsn: has(smtp_proto::EXT_DSN),
        chunking: has(smtp_proto::EXT_CHUNKING),
        auth: e.auth_mechanisms,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// A scripted server: replies queued in advance, every write recorded
    /// (one entry per write call, to prove pipelining).
    pub(crate) struct Script {
        pub input: io::Cursor<Vec<u8>>,
        pub writes: Vec<Vec<u8>>,
    }

    impl Script {
        pub(crate) fn new(replies: &str) -> Script {
            Script {
                input: io::Cursor::new(replies.as_bytes().to_vec()),
                writes: Vec::new(),
            }
        }
        pub(crate) fn sent(&self) -> String {
            String::from_utf8_lossy(&self.writes.concat()).into_owned()
        }
    }

    impl Read for Script {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }

    impl Write for Script {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            match self.writes.last_mut() {
                Some(last) if !last.ends_with(b"\n") => last.extend_from_slice(b),
                _ => self.writes.push(b.to_vec()),
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.writes.push(Vec::new());
            Ok(())
        }
    }

    impl Transport for Script {
        fn set_deadline(&mut self, _: Deadline) {}
    }

    static NO_DSN: crate::spool::Dsn = crate::spool::Dsn {
        notify: None,
        ret: None,
        envid: None,
    };

    fn env<'a>(rcpts: &[&'a str]) -> Envelope<'a> {
        Envelope {
            sender: "alice@example.org",
            rcpts: rcpts.to_vec(),
            eightbit: false,
            header_8bit: false,
            size: 20,
            dsn: &NO_DSN,
            orcpts: rcpts.to_vec(),
        }
    }

    #[test]
    fn dsn_parameters_when_offered() {
        let dsn = crate::spool::Dsn {
            notify: Some("SUCCESS,FAILURE".into()),
            ret: Some("HDRS".into()),
            envid: Some("id+1=2".into()),
        };
        let e = Envelope {
            dsn: &dsn,
            orcpts: vec!["team@here.example"],
            ..env(&["a@x"])
        };
        let replies = "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 DSN\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n";
        let mut s = Session::new(Script::new(replies), "mx.test", Timeouts::default());
        s.greeting().unwrap();
        s.hello("me").unwrap();
        s.transaction(&e, &mut &b"x\n"[..], &[]).unwrap();
        let sent = s.into_stream().sent();
        assert!(
            sent.contains("MAIL FROM:<alice@example.org> RET=HDRS ENVID=id+2B1+3D2\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains(
                "RCPT TO:<a@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;team@here.example\r\n"
            ),
            "{sent}"
        );
    }

    fn run(replies: &str, rcpts: &[&str]) -> (Vec<RcptResult>, String, usize) {
        run_groups(replies, &env(rcpts))
    }

    fn run_env(replies: &str, e: &Envelope) -> (Vec<RcptResult>, String) {
        let (r, sent, _) = run_groups(replies, e);
        (r, sent)
    }

    fn run_groups(replies: &str, e: &Envelope) -> (Vec<RcptResult>, String, usize) {
        let mut s = Session::new(Script::new(replies), "mx.test", Timeouts::default());
        s.greeting().unwrap();
        s.hello("me.test").unwrap();
        let r = s
            .transaction(e, &mut &b"Subject: x\n\n.dot\n"[..], &[])
            .unwrap();
        let script = s.into_stream();
        let groups = script.writes.iter().filter(|w| !w.is_empty()).count();
        (r, script.sent(), groups)
    }

    const EHLO_PIPE: &str = "220 mx.test ESMTP\r\n250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n";

    #[test]
    fn pipelined_per_recipient_outcomes_in_one_group() {
        let replies = format!(
            "{EHLO_PIPE}250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n451 4.3.0 later\r\n452 4.5.3 too many\r\n354 go\r\n250 2.0.0 queued as X\r\n"
        );
        let (r, sent, groups) = run(&replies, &["a@x", "b@x", "c@x", "d@x"]);
        assert_eq!(
            sent,
            "EHLO me.test\r\nMAIL FROM:<alice@example.org> SIZE=20\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
        );
        // EHLO, then MAIL+RCPT+DATA in one write, then the message.
        assert_eq!(groups, 3, "{sent}");
        assert!(matches!(&r[0], RcptResult::Delivered(rep) if rep.code == 250));
        assert!(
            matches!(&r[1], RcptResult::Rejected { cmd, reply } if cmd == "RCPT TO" && reply.code == 550)
        );
        assert!(
            matches!(&r[2], RcptResult::Deferred { cmd, why } if cmd == "RCPT TO" && why == "451 4.3.0 later")
        );
        assert!(matches!(&r[3], RcptResult::TooMany(_)));
    }

    #[test]
    fn no_accepted_recipient_sends_no_data() {
        let replies =
            format!("{EHLO_PIPE}250 ok\r\n550 no\r\n554 no valid recipients\r\n250 reset\r\n");
        let (r, sent, _) = run(&replies, &["a@x"]);
        assert!(!sent.contains("Subject"), "{sent}");
        assert!(sent.ends_with("DATA\r\nRSET\r\n"), "{sent}");
        assert!(matches!(&r[0], RcptResult::Rejected { .. }));
        // A server that says 354 anyway gets an empty message's dot.
        let replies =
            format!("{EHLO_PIPE}250 ok\r\n550 no\r\n354 go\r\n554 nothing\r\n250 reset\r\n");
        let (_, sent, _) = run(&replies, &["a@x"]);
        assert!(sent.ends_with("DATA\r\n.\r\nRSET\r\n"), "{sent}");
    }

    #[test]
    fn lock_step_without_pipelining_and_helo_fallback() {
        let replies =
            "220 old\r\n502 what\r\n250 hi\r\n250 ok\r\n250 ok\r\n354 go\r\n451 disk full\r\n";
        let (r, sent, _) = run(replies, &["a@x"]);
        assert_eq!(
            sent,
            "EHLO me.test\r\nHELO me.test\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
        );
        assert!(matches!(&r[0], RcptResult::Deferred { cmd, .. } if cmd == "end of data"));
    }

    #[test]
    fn mail_refused_and_lost_connection() {
        let replies = format!("{EHLO_PIPE}553 sender refused\r\n503 no\r\n503 no\r\n250 reset\r\n");
        let (r, _, _) = run(&replies, &["a@x"]);
        assert!(matches!(&r[0], RcptResult::Rejected { cmd, .. } if cmd == "MAIL FROM"));
        // Connection lost before the final reply: deferred, never lost.
        let replies = format!("{EHLO_PIPE}250 ok\r\n250 ok\r\n354 go\r\n");
        let (r, _, _) = run(&replies, &["a@x"]);
        assert!(matches!(&r[0], RcptResult::Deferred { cmd, .. } if cmd == "end of data"));
    }

    const EHLO_CHUNK: &str =
        "220 mx.test ESMTP\r\n250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n";

    /// A session after its first transaction, of "x" to a@x.
    fn first(replies: &str) -> (Vec<RcptResult>, Session<Script>) {
        let mut s = Session::new(Script::new(replies), "mx.test", Timeouts::default());
        s.greeting().unwrap();
        s.hello("me.test").unwrap();
        let r = s
            .transaction(&env(&["a@x"]), &mut &b"x\n"[..], &[])
            .unwrap();
        (r, s)
    }

    #[test]
    fn bdat_goes_in_the_envelope_s_write() {
        let replies = format!(
            "{EHLO_CHUNK}250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n452 4.5.3 too many\r\n250 2.0.0 queued as X\r\n"
        );
        let (r, sent, groups) = run(&replies, &["a@x", "b@x", "c@x"]);
        // No dot-stuffing, no final dot: the exact octet count instead.
        assert_eq!(
            sent,
            "EHLO me.test\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nBDAT 20 LAST\r\nSubject: x\r\n\r\n.dot\r\n"
        );
        assert_eq!(groups, 2, "EHLO, then everything else in one write");
        assert!(
            matches!(&r[0], RcptResult::Delivered(rep) if rep.one_line() == "250 2.0.0 queued as X")
        );
        assert!(
            matches!(&r[1], RcptResult::Rejected { cmd, reply } if cmd == "RCPT TO" && reply.code == 550)
        );
        assert!(matches!(&r[2], RcptResult::TooMany(_)));
    }

    #[test]
    fn bdat_refusals_and_a_lost_reply() {
        // MAIL refused: every recipient shares its fate; the BDAT reply is
        // read (and ignored), the session stays in step.
        let replies = format!("{EHLO_CHUNK}553 5.1.8 sender refused\r\n503 no\r\n503 no\r\n");
        let (r, s) = first(&replies);
        assert!(matches!(&r[0], RcptResult::Rejected { cmd, .. } if cmd == "MAIL FROM"));
        assert!(!s.broken);
        // Nobody accepted: each keeps its own RCPT reply, not the BDAT one.
        let replies = format!(
            "{EHLO_CHUNK}250 ok\r\n450 4.2.1 try later\r\n554 5.5.1 no valid recipients\r\n"
        );
        let (r, _, _) = run(&replies, &["a@x"]);
        assert!(
            matches!(&r[0], RcptResult::Deferred { cmd, why } if cmd == "RCPT TO" && why == "450 4.2.1 try later")
        );
        // The final reply is refused: the accepted recipients bounce, and
        // the next transaction starts with RSET, in its group.
        let replies = format!(
            "{EHLO_CHUNK}250 ok\r\n250 ok\r\n554 5.7.1 spam\r\n250 reset\r\n250 ok\r\n250 ok\r\n250 done\r\n"
        );
        let (r, mut s) = first(&replies);
        assert!(matches!(&r[0], RcptResult::Rejected { cmd, .. } if cmd == "BDAT"));
        assert!(s.needs_rset);
        let r = s
            .transaction(&env(&["b@x"]), &mut &b"y\n"[..], &[])
            .unwrap();
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
        let writes = s.into_stream().writes;
        let last = writes.into_iter().rfind(|w| !w.is_empty()).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "RSET\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\ny\r\n"
        );
        // The connection is lost before the final reply: deferred, never
        // lost, and the session is not used again.
        let replies = format!("{EHLO_CHUNK}250 ok\r\n250 ok\r\n");
        let (r, s) = first(&replies);
        assert!(matches!(&r[0], RcptResult::Deferred { cmd, .. } if cmd == "BDAT"));
        assert!(s.broken);
    }

    #[test]
    fn bdat_on_a_reused_session_and_data_for_big_messages() {
        let replies = format!(
            "{EHLO_CHUNK}250 ok\r\n250 ok\r\n250 done\r\n250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n"
        );
        let (r, mut s) = first(&replies);
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
        // A 2xx final reply ended the transaction: no RSET before the next,
        // which is too big for one in-memory chunk and goes with DATA.
        assert!(!s.needs_rset);
        let big = Envelope {
            size: BDAT_INLINE + 1,
            ..env(&["b@x"])
        };
        let r = s.transaction(&big, &mut &b"y\n"[..], &[]).unwrap();
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
        let script = s.into_stream();
        let writes: Vec<String> = script
            .writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(
            writes[1],
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x>\r\nBDAT 3 LAST\r\nx\r\n"
        );
        assert_eq!(
            writes[2],
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
        );
        assert!(script.sent().ends_with("y\r\n.\r\n"));
    }

    #[test]
    fn a_552_to_rcpt_is_temporary() {
        let replies = format!(
            "{EHLO_CHUNK}250 ok\r\n552 5.2.2 mailbox full\r\n552 5.5.3 too many recipients\r\n552 no room\r\n250 ok\r\n250 done\r\n"
        );
        let (r, _, _) = run(&replies, &["a@x", "b@x", "c@x", "d@x"]);
        assert!(
            matches!(&r[0], RcptResult::Deferred { cmd, why } if cmd == "RCPT TO" && why == "452 4.2.2 mailbox full (a 552, taken as temporary)"),
            "{r:?}"
        );
        assert!(matches!(&r[1], RcptResult::TooMany(rep) if rep.code == 452));
        assert!(
            matches!(&r[2], RcptResult::Deferred { why, .. } if why == "452 no room (a 552, taken as temporary)"),
            "{r:?}"
        );
        assert!(matches!(&r[3], RcptResult::Delivered(_)));
    }

    #[test]
    fn a_421_to_mail_ends_the_session() {
        let replies = format!("{EHLO_CHUNK}421 4.4.2 timeout exceeded\r\n");
        let mut s = Session::new(Script::new(&replies), "mx.test", Timeouts::default());
        s.greeting().unwrap();
        s.hello("me.test").unwrap();
        let e = s
            .transaction(&env(&["a@x"]), &mut &b"x\n"[..], &[])
            .unwrap_err();
        assert!(
            matches!(&e, SessionError::Reply { cmd, reply, .. } if cmd == "MAIL FROM" && reply.code == 421)
        );
        assert!(s.broken);
    }

    #[test]
    fn chunking_without_pipelining_uses_data() {
        let replies =
            "220 mx\r\n250-mx\r\n250 CHUNKING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n";
        let (r, sent, _) = run(replies, &["a@x"]);
        assert!(!sent.contains("BDAT"), "{sent}");
        assert!(
            sent.ends_with("DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"),
            "{sent}"
        );
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
    }

    #[test]
    fn starttls_injection_is_refused() {
        let replies = "220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250 injected\r\n";
        let mut s = Session::new(Script::new(replies), "mx.test", Timeouts::default());
        s.greeting().unwrap();
        s.hello("me").unwrap();
        assert!(s.caps.starttls);
        assert!(matches!(s.starttls(), Err(SessionError::Protocol(..))));
    }

    #[test]
    fn non_ascii_addresses_need_smtputf8() {
        let replies = "220 mx\r\n250-mx\r\n250 PIPELINING\r\n";
        let (r, sent, _) = run(replies, &["jörg@x"]);
        assert!(!sent.contains("MAIL"), "{sent}");
        assert_eq!(
            r[0],
            RcptResult::Refused {
                status: "5.6.7".into(),
                why: "non-ASCII address, and mx.test does not offer SMTPUTF8".into()
            }
        );
        let replies = "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n";
        let (r, sent, _) = run(replies, &["jörg@x"]);
        assert!(
            sent.contains("MAIL FROM:<alice@example.org> SMTPUTF8\r\n"),
            "{sent}"
        );
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
    }

    #[test]
    fn size_limit_is_respected_before_sending() {
        let replies = "220 mx\r\n250-mx\r\n250 SIZE 10\r\n";
        let (r, sent, _) = run(replies, &["a@x"]);
        assert!(!sent.contains("MAIL"), "{sent}");
        assert_eq!(
            r[0],
            RcptResult::Refused {
                status: "5.3.4".into(),
                why: "message size 20 exceeds the limit of 10 that mx.test advertised (SIZE)"
                    .into()
            }
        );
    }

    #[test]
    fn utf8_header_text_asks_for_smtputf8_and_a_utf8_orcpt() {
        let dsn = crate::spool::Dsn {
            notify: Some("FAILURE".into()),
            ret: None,
            envid: None,
        };
        let mut e = env(&["bob@x"]);
        e.header_8bit = true;
        e.eightbit = true;
        e.dsn = &dsn;
        e.orcpts = vec!["jörg+1=2@x"];
        let replies = "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250-DSN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n";
        let (_, sent) = run_env(replies, &e);
        assert!(
            sent.contains(
                "MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bob@x> NOTIFY=FAILURE ORCPT=utf-8;jörg\\x{2B}1\\x{3D}2@x\r\n"
            ),
            "{sent}"
        );
        // Without SMTPUTF8: 8BITMIME carries the header; the ORCPT is ASCII.
        let replies = "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250-DSN\r\n250 8BITMIME\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n";
        let (r, sent) = run_env(replies, &e);
        assert!(
            sent.contains(
                "MAIL FROM:<alice@example.org> BODY=8BITMIME\r\nRCPT TO:<bob@x> NOTIFY=FAILURE ORCPT=utf-8;j\\x{F6}rg\\x{2B}1\\x{3D}2@x\r\n"
            ),
            "{sent}"
        );
        assert!(matches!(&r[0], RcptResult::Delivered(_)));
        // Neither: nothing is sent.
        let (r, sent) = run_env("220 mx\r\n250 mx\r\n", &e);
        assert!(!sent.contains("MAIL"), "{sent}");
        assert!(matches!(&r[0], RcptResult::Refused { status, .. } if status == "5.6.3"));
    }
}
