//! The envelope file of a queued message: typed, versioned, injection-proof.
//!
//! One `key value` pair per line. Every value is percent-encoded: any byte
//! outside `!`..`~`, and `%` itself, is written `%XX`. So no value can contain
//! a space or a newline, and no envelope value (an address, a server reply)
//! can forge a field. Unknown keys are errors, not ignored: a file we cannot
//! fully understand is never half-delivered.
//!
//! A file is whole only with its `end <number of recipients>` line, and
//! `size` says how long the data file must be: a file cut short (at any
//! line), or a data file cut or emptied, is found out, never delivered in
//! part. Files of version 1 (earlier releases: no `size`, no `end`) are
//! still read.
//!
//! `held <time>` (only in a held message: see [`Envelope::held`]) keeps a
//! message from every delivery until an administrator releases it.
//!
//! `dkim <header>` (version 3; one per signature: see [`Envelope::dkim`])
//! is a DKIM-Signature header made for the message before its first remote
//! transaction, sent in front of it at every attempt. Only an envelope that
//! has one is written as version 3, so a queue without signatures stays
//! readable by the releases before it.
//!
//! After the `end` line come notes, appended to the file in place (no new
//! file, no fsync): `inflight <time> <index>,<index>...` says that a
//! delivery of those recipients started then ([`Envelope::inflight_note`]).
//! A note can change no delivery, only a log line, so one that is not whole
//! or not understood (a power loss cut its append short) is ignored; the
//! next rewrite of the file folds the notes in.
//!
//! ```text
//! dma-rs-queue 2
//! id 692a1f3b5c8e9d01
//! created 1764410000
//! sender alice@host.example
//! user alice
//! uid 1000
//! size 2048
//! held 1764410500
//! rcpt bob
//! state deferred
//! attempts 2
//! next-try 1764410900
//! reply 4.2.0%20mailbox%20busy
//! end 1
//! ```

use thiserror::Error;

/// The first line of every envelope file we write without a DKIM
/// signature.
pub const MAGIC: &str = "dma-rs-queue 2";

/// The first line of an envelope file that carries DKIM signatures
/// (`dkim` lines, which version 2 readers do not know).
pub const MAGIC_V3: &str = "dma-rs-queue 3";

/// The first line of the envelope files of earlier releases (no `size`,
/// no `end`), still read.
pub const MAGIC_V1: &str = "dma-rs-queue 1";

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not tried yet.
    Pending,
    /// Tried, failed temporarily; due again at `next_try`.
    Deferred,
    /// Done.
    Delivered,
    /// Replaced by the recipients whose `parent` it is (an alias).
    Expanded,
    /// Failed permanently; `bounced` says whether the bounce is queued yet.
    Failed {
        /// The DSN for this failure has been queued (or none is due).
        bounced: bool,
    },
}

impl State {
    /// The word for it in the envelope file (and in `mailq --json`):
    /// `pending`, `deferred`, `delivered`, `expanded`, `failed`, `bounced`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Deferred => "deferred",
            State::Delivered => "delivered",
            State::Expanded => "expanded",
            State::Failed { bounced: false } => "failed",
            State::Failed { bounced: true } => "bounced",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "deferred" => State::Deferred,
            "delivered" => State::Delivered,
            "expanded" => State::Expanded,
            "failed" => State::Failed { bounced: false },
            "bounced" => State::Failed { bounced: true },
            _ => return None,
        })
    }

    /// Whether nothing more will happen to this recipient.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Delivered | State::Expanded | State::Failed { bounced: true }
        )
    }
}

/// On whose authority a pipe or file recipient runs: what put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// This user's `.forward`: runs as that user.
    Forward(String),
    /// The system aliases file, under this alias name: runs as ALIAS_USER.
    Alias(String),
}

impl Origin {
    fn serialize(&self) -> String {
        match self {
            Origin::Forward(u) => format!("forward:{u}"),
            Origin::Alias(a) => format!("alias:{a}"),
        }
    }

    fn parse(s: &str) -> Option<Origin> {
        match s.split_once(':')? {
            ("forward", u) if !u.is_empty() => Some(Origin::Forward(u.to_string())),
            ("alias", a) if !a.is_empty() => Some(Origin::Alias(a.to_string())),
            _ => None,
        }
    }
}

/// One recipient of a queued message and its durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    /// The address as queued (local name or remote address).
    pub addr: String,
    /// The index of the recipient this one was expanded from, if any.
    pub parent: Option<usize>,
    /// What expanded it (a `.forward` or an alias), for its privileges and
    /// its `Delivered-To:` headers.
    pub origin: Option<Origin>,
    /// Where it stands.
    pub state: State,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When it is due again (unix seconds); 0 means now.
    pub next_try: i64,
    /// The last reply or error: `<enhanced status> <text>`.
    pub reply: Option<String>,
    /// The remote server that gave the last reply (`host [ip]`).
    pub mta: Option<String>,
    /// That server's reply, as it said it (for the DSN's Diagnostic-Code).
    pub smtp: Option<String>,
    /// Set (to when) while a remote delivery of it is under way: found set
    /// by a later run, the message may have been delivered already.
    pub inflight: Option<i64>,
}

impl Rcpt {
    /// A new pending recipient.
    pub fn new(addr: impl Into<String>, parent: Option<usize>) -> Rcpt {
        Rcpt {
            addr: addr.into(),
            parent,
            origin: None,
            state: State::Pending,
            attempts: 0,
            next_try: 0,
            reply: None,
            mta: None,
            smtp: None,
            inflight: None,
        }
    }
}

/// DSN requests made at submission (`-N`, `-R`, `-V`; RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// NOTIFY for every recipient: `NEVER`, or a comma list of `SUCCESS`,
    /// `FAILURE`, `DELAY`.
    pub notify: Option<String>,
    /// RET: `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// ENVID, as given (printable ASCII).
    pub envid: Option<String>,
}

/// Everything the queue knows about one message besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The queue id.
    pub id: String,
    /// When the message was accepted (unix seconds).
    pub created: i64,
    /// The envelope sender; empty for a bounce (`MAIL FROM:<>`).
    pub sender: String,
    /// The login name of the submitter.
    pub user: String,
    /// The real uid of the submitter.
    pub uid: u32,
    /// The length of the data file in bytes, as committed; `None` only in
    /// a version 1 file (then the data file's length when it was opened).
    pub size: Option<u64>,
    /// A bounce about a bounce: if it fails too, it is dropped, never bounced.
    pub double_bounce: bool,
    /// Put on hold by an administrator (`dma -Q hold`), since when (unix
    /// seconds): never tried, and so never expired, until released. Written
    /// only when set (`held <time>`), so that an envelope that is not held
    /// reads the same in earlier releases; one that is held is refused by
    /// them (an unknown key), set aside as corrupt, never delivered.
    pub held: Option<i64>,
    /// DSN requests.
    pub dsn: Dsn,
    /// The DKIM-Signature header fields made for this message (one per
    /// key, lines joined by LF, no final newline: see
    /// [`valid_dkim_header`]), sent in front of it to every remote
    /// recipient at every attempt, so that a retry sends the same bytes.
    /// Empty until the first remote delivery of a message to be signed.
    pub dkim: Vec<String>,
    /// The recipients, in order; expansions append.
    pub rcpts: Vec<Rcpt>,
}

/// Whether `h` is a DKIM-Signature header field as [`Envelope::dkim`]
/// keeps it: `DKIM-Signature:` first, printable ASCII, folded with LF and
/// a blank, no line longer than 998 octets. What an envelope says goes in
/// front of the message as it is: nothing else may.
pub fn valid_dkim_header(h: &str) -> bool {
    let name = "DKIM-Signature:";
    h.get(..name.len())
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
        && h.split('\n').enumerate().all(|(i, line)| {
            (i == 0 || line.starts_with([' ', '\t']))
                && line.len() <= 998
                && !line.trim().is_empty()
                && line
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        })
}

/// Why an envelope file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed queue file, line {line}: {reason}")]
pub struct EnvelopeError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Percent-encodes every byte outside `!`..`~`, and `%`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode`]; `None` on a bad escape or invalid UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Envelope {
    /// The file's text.
    pub fn serialize(&self) -> String {
        let mut s = String::with_capacity(128 + self.rcpts.len() * 64);
        let mut kv = |k: &str, v: &str| {
            s.push_str(k);
            s.push(' ');
            s.push_str(&encode(v));
            s.push('\n');
        };
        kv("id", &self.id);
        kv("created", &self.created.to_string());
        kv("sender", &self.sender);
        kv("user", &self.user);
        kv("uid", &self.uid.to_string());
        if let Some(n) = self.size {
            kv("size", &n.to_string());
        }
        if self.double_bounce {
            kv("double-bounce", "yes");
        }
        if let Some(t) = self.held {
            kv("held", &t.to_string());
        }
        if let Some(v) = &self.dsn.notify {
            kv("dsn-notify", v);
        }
        if let Some(v) = &self.dsn.ret {
            kv("dsn-ret", v);
        }
        if let Some(v) = &self.dsn.envid {
            kv("dsn-envid", v);
        }
        for h in &self.dkim {
            kv("dkim", h);
        }
        for r in &self.rcpts {
            kv("rcpt", &r.addr);
            if let Some(p) = r.parent {
                kv("parent", &p.to_string());
            }
            if let Some(o) = &r.origin {
                kv("origin", &o.serialize());
            }
            kv("state", r.state.as_str());
            if r.attempts > 0 {
                kv("attempts", &r.attempts.to_string());
            }
            if r.next_try != 0 {
                kv("next-try", &r.next_try.to_string());
            }
            if let Some(reply) = &r.reply {
                kv("reply", reply);
            }
            if let Some(v) = &r.mta {
                kv("mta", v);
            }
            if let Some(v) = &r.smtp {
                kv("smtp", v);
            }
            if let Some(t) = r.inflight {
                kv("inflight", &t.to_string());
            }
        }
        kv("end", &self.rcpts.len().to_string());
        let magic = if self.dkim.is_empty() {
            MAGIC
        } else {
            MAGIC_V3
        };
        format!("{magic}\n{s}")
    }

    /// Parses an envelope file's text, strictly.
    pub fn parse(text: &str) -> Result<Envelope, EnvelopeError> {
        let mut lines = text.split('\n').enumerate();
        let bad = |line: usize, reason: &str| EnvelopeError {
            line: line + 1,
            reason: reason.to_string(),
        };
        let version = match lines.next() {
            Some((_, MAGIC_V1)) => 1,
            Some((_, MAGIC)) => 2,
            Some((_, MAGIC_V3)) => 3,
            _ => return Err(bad(0, "not a dma-rs queue file (or another version)")),
        };
        let v1 = version == 1;
        let mut env = Envelope {
            id: String::new(),
            created: 0,
            sender: String::new(),
            user: String::new(),
            uid: 0,
            size: None,
            double_bounce: false,
            held: None,
            dsn: Dsn::default(),
            dkim: Vec::new(),
            rcpts: Vec::new(),
        };
        let mut seen_sender = false;
        // Version 1: the end of the text; version 2: the `end` line.
        let mut ended = false;
        let mut last = 0;
        let mut lines = lines.peekable();
        while let Some((n, line)) = lines.next() {
            last = n;
            if ended && !v1 {
                // A note counts only whole: with its newline.
                if lines.peek().is_some() {
                    env.apply_note(line);
                }
                continue;
            }
            // Version 1 ends at an empty line.
            if line.is_empty() && v1 {
                ended = true;
                continue;
            }
            if ended {
                return Err(bad(n, "text after the end"));
            }
            if line.is_empty() && lines.peek().is_none() {
                return Err(bad(n, "cut short: no end line"));
            }
            let (key, raw) = line.split_once(' ').ok_or_else(|| bad(n, "no value"))?;
            let value = decode(raw).ok_or_else(|| bad(n, "bad encoding"))?;
            let num = |v: &str| v.parse::<i64>().map_err(|_| bad(n, "not a number"));
            let rcpt = |env: &mut Envelope| -> Result<usize, EnvelopeError> {
                env.rcpts
                    .len()
                    .checked_sub(1)
                    .ok_or_else(|| bad(n, "recipient field before any rcpt"))
            };
            match key {
                "id" => env.id = value,
                "created" => env.created = num(&value)?,
                "sender" => {
                    env.sender = value;
                    seen_sender = true;
                }
                "user" => env.user = value,
                "uid" => env.uid = u32::try_from(num(&value)?).map_err(|_| bad(n, "bad uid"))?,
                "size" if !v1 => {
                    env.size = Some(u64::try_from(num(&value)?).map_err(|_| bad(n, "bad size"))?)
                }
                "end" if !v1 => {
                    if usize::try_from(num(&value)?).ok() != Some(env.rcpts.len()) {
                        return Err(bad(n, "recipient count does not match"));
                    }
                    // The end line counts only with its newline.
                    ended = lines.peek().is_some();
                }
                "double-bounce" => env.double_bounce = value == "yes",
                "held" if !v1 => env.held = Some(num(&value)?),
                "dsn-notify" => env.dsn.notify = Some(value),
                "dsn-ret" => env.dsn.ret = Some(value),
                "dsn-envid" => env.dsn.envid = Some(value),
                "dkim" if version >= 3 => {
                    if !valid_dkim_header(&value) {
                        return Err(bad(n, "not a DKIM-Signature header"));
                    }
                    env.dkim.push(value);
                }
                "rcpt" => {
                    if value.is_empty() {
                        return Err(bad(n, "empty recipient"));
                    }
                    env.rcpts.push(Rcpt::new(value, None));
                }
                "parent" => {
                    let i = rcpt(&mut env)?;
                    let p = usize::try_from(num(&value)?).map_err(|_| bad(n, "bad parent"))?;
                    if p >= i {
                        return Err(bad(n, "parent must come before its child"));
                    }
                    env.rcpts[i].parent = Some(p);
                }
                "origin" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].origin =
                        Some(Origin::parse(&value).ok_or_else(|| bad(n, "bad origin"))?);
                }
                "state" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].state = State::parse(&value).ok_or_else(|| bad(n, "bad state"))?;
                }
                "attempts" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].attempts =
                        u32::try_from(num(&value)?).map_err(|_| bad(n, "bad attempts"))?;
                }
                "next-try" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].next_try = num(&value)?;
                }
                "reply" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].reply = Some(value);
                }
                "mta" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].mta = Some(value);
                }
                "smtp" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].smtp = Some(value);
                }
                "inflight" => {
                    let i = rcpt(&mut env)?;
                    env.rcpts[i].inflight = Some(num(&value)?);
                }
                _ => return Err(bad(n, "unknown key")),
            }
        }
        if !ended {
            return Err(bad(last, "cut short: no end line"));
        }
        if env.id.is_empty() || !seen_sender || env.rcpts.is_empty() {
            return Err(bad(0, "missing id, sender or recipient"));
        }
        if !v1 && env.size.is_none() {
            return Err(bad(0, "missing size"));
        }
        if version == 3 && env.dkim.is_empty() {
            return Err(bad(0, "version 3 without a dkim line"));
        }
        Ok(env)
    }

    /// The note that, appended to the file, says recipients `indices` are
    /// in flight since `time` (see the module doc).
    pub fn inflight_note(time: i64, indices: &[usize]) -> String {
        let list: Vec<String> = indices.iter().map(usize::to_string).collect();
        format!("inflight {time} {}\n", list.join(","))
    }

    /// Applies a note that follows the end line, if it is one we know.
    fn apply_note(&mut self, line: &str) {
        let mut words = line.split(' ');
        let (Some("inflight"), Some(time), Some(list), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return;
        };
        let Ok(time) = time.parse::<i64>() else {
            return;
        };
        let Ok(indices) = list
            .split(',')
            .map(str::parse::<usize>)
            .collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        for i in indices {
            if let Some(r) = self.rcpts.get_mut(i) {
                r.inflight = Some(time);
            }
        }
    }

    /// Whether every recipient is final: the message can leave the queue.
    pub fn is_done(&self) -> bool {
        self.rcpts.iter().all(|r| r.state.is_final())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: "692a1f3b5c8e9d01".into(),
            created: 1764410000,
            sender: "evil\nrcpt root@x".into(),
            user: "alice".into(),
            uid: 1000,
            size: Some(2048),
            double_bounce: false,
            held: None,
            dsn: Dsn::default(),
            dkim: Vec::new(),
            rcpts: vec![
                Rcpt::new("team", None),
                Rcpt {
                    addr: "bob".into(),
                    parent: Some(0),
                    origin: Some(Origin::Forward("team".into())),
                    state: State::Deferred,
                    attempts: 2,
                    next_try: 1764410900,
                    reply: Some("4.2.0 mailbox busy %41\nstate delivered".into()),
                    mta: Some("mx.example [192.0.2.1]".into()),
                    smtp: Some("451 4.2.0 busy".into()),
                    inflight: Some(1764410950),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_no_injection() {
        let e = sample();
        let text = e.serialize();
        assert_eq!(text.lines().filter(|l| l.starts_with("rcpt ")).count(), 2);
        assert_eq!(text.lines().filter(|l| l.starts_with("state ")).count(), 2);
        assert_eq!(Envelope::parse(&text).unwrap(), e);
    }

    #[test]
    fn held_is_written_only_when_set_and_read_back() {
        let mut e = sample();
        assert!(!e.serialize().contains("\nheld "));
        e.held = Some(1764411000);
        let text = e.serialize();
        assert!(text.contains("\nheld 1764411000\n"), "{text}");
        assert_eq!(Envelope::parse(&text).unwrap(), e);
        assert!(Envelope::parse(&text.replace("held 1764411000", "held soon")).is_err());
    }

    #[test]
    fn dkim_lines_make_version_3_and_are_checked() {
        let mut e = sample();
        assert!(e.serialize().starts_with(&format!("{MAGIC}\n")));
        let sig = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s;\n\th=From:From:To; bh=x;\n\tb=y;";
        e.dkim = vec![sig.into(), sig.replace("rsa", "ed25519")];
        let text = e.serialize();
        assert!(text.starts_with(&format!("{MAGIC_V3}\n")), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("dkim ")).count(), 2);
        assert_eq!(Envelope::parse(&text).unwrap(), e);
        // Version 2 knows no dkim line; version 3 needs one.
        assert!(Envelope::parse(&text.replacen(MAGIC_V3, MAGIC, 1)).is_err());
        e.dkim.clear();
        let plain = e.serialize();
        assert!(Envelope::parse(&plain.replacen(MAGIC, MAGIC_V3, 1)).is_err());
        // Only a DKIM-Signature field, whole, goes in front of the message.
        for forged in [
            "Bcc: root",
            "DKIM-Signature: a\nBcc: root",
            "DKIM-Signature: a\n\nbody",
            "DKIM-Signature: a\n",
            "DKIM-Signature: a\r\n\tb",
            "DKIM-Signature: \u{e9}",
        ] {
            let text = text.replacen(&encode(sig), &encode(forged), 1);
            assert!(Envelope::parse(&text).is_err(), "{forged:?}");
        }
        assert!(valid_dkim_header(sig));
    }

    #[test]
    fn version_1_files_are_still_read() {
        let mut e = sample();
        e.size = None;
        let v1 = e
            .serialize()
            .replace(MAGIC, MAGIC_V1)
            .replace("end 2\n", "");
        assert_eq!(Envelope::parse(&v1).unwrap(), e);
        // Its end is the end of the text; version 2 keys are not its own.
        assert!(Envelope::parse(&format!("{v1}\nid x\n")).is_err());
        assert!(Envelope::parse(&v1.replace("uid 1000\n", "uid 1000\nsize 1\n")).is_err());
    }

    #[test]
    fn inflight_notes_are_applied_whole_and_ignored_torn() {
        let e = sample();
        let text = e.serialize();
        let note = Envelope::inflight_note(1764410500, &[1]);
        assert_eq!(note, "inflight 1764410500 1\n");
        let got = Envelope::parse(&format!("{text}{note}")).unwrap();
        assert_eq!(got.rcpts[0].inflight, None);
        assert_eq!(got.rcpts[1].inflight, Some(1764410500));
        // An append a power loss cut short or zeroed, then a later whole one.
        for torn in ["inflight 17644", "\0\0\0\0\0\0\0\0", "inflight 1 0,x\n"] {
            assert_eq!(
                Envelope::parse(&format!("{text}{torn}")).unwrap(),
                e,
                "{torn:?}"
            );
            let later = Envelope::parse(&format!("{text}{torn}\n{note}")).unwrap();
            assert_eq!(later.rcpts[1].inflight, Some(1764410500), "{torn:?}");
        }
        // An index past the recipients is nobody.
        let past = Envelope::inflight_note(5, &[7]);
        assert_eq!(Envelope::parse(&format!("{text}{past}")).unwrap(), e);
        // A rewrite folds the note into the recipient's own lines.
        assert_eq!(Envelope::parse(&got.serialize()).unwrap(), got);
    }

    #[test]
    fn strict_parsing() {
        assert!(Envelope::parse("garbage").is_err());
        let text = sample().serialize();
        assert!(Envelope::parse(&text.replace("state pending", "state weird")).is_err());

        assert!(Envelope::parse(&text.replace("parent 0", "parent 1")).is_err());
        assert!(Envelope::parse(&format!("{MAGIC}\nid x\nsender \n")).is_err());
        assert!(Envelope::parse(&text.replace("size 2048\n", "")).is_err());
        assert!(Envelope::parse(&text.replace("\nend 2\n", "\nend 1\n")).is_err());
        assert!(Envelope::parse(&text.replace("\nend 2\n", "\n")).is_err());
        // The end line counts only with its newline.
        assert!(Envelope::parse(text.trim_end_matches('\n')).is_err());
        // Cut at any line boundary: refused.
        let lines: Vec<&str> = text.lines().collect();
        for k in 1..lines.len() {
            let cut = lines[..k].join("\n") + "\n";
            assert!(
                Envelope::parse(&cut).is_err(),
                "accepted cut at {k}:\n{cut}"
            );
        }
        // What follows the end line is notes: none can change a field.
        let e = Envelope::parse(&text).unwrap();
        for junk in [
            "color blue\n",
            "\n",
            "state delivered\n",
            "rcpt root\n",
            "end 3\n",
        ] {
            assert_eq!(
                Envelope::parse(&format!("{text}{junk}")).unwrap(),
                e,
                "{junk}"
            );
        }
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("a%20b").as_deref(), Some("a b"));
    }
}
