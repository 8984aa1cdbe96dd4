//! Reading a message from stdin into the spool, with dma's header fixes.
//!
//! The header section ends at the first empty line, or at the first line that
//! is not a header field (then an empty line is inserted before it, so that
//! `echo test | sendmail bob` still gets a proper header; dma adds nothing
//! there). We prepend `Received:`, add `Date:`, `Message-ID:` and `From:` when
//! missing, drop `Bcc:`, and qualify bare local names in address fields
//! (`From: root` becomes `From: root@MAILNAME`). Input may use LF or CRLF;
//! the spool holds LF.
//! The header section is held in memory (bounded); the body is streamed.

use std::io::{self, BufRead, Write};

use mail_parser::{HeaderName, HeaderValue, MessageParser};
use thiserror::Error;

mod qualify;

/// A header section larger than this is refused.
pub const MAX_HEADER: usize = 1 << 20;

/// How to read the message.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-t`: collect recipients from To/Cc/Bcc.
    pub extract_rcpts: bool,
    /// `-i`/`-oi`: a lone `.` does not end the input.
    pub ignore_dots: bool,
    /// `-F`: the full name for the `From:` header we add.
    pub full_name: Option<String>,
    /// The most bytes the spooled message may have (MESSAGE_SIZE_LIMIT);
    /// 0 means no limit.
    pub size_limit: u64,
}

/// What goes into the headers we add.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The queue id.
    pub id: String,
    /// The envelope sender; empty for a bounce.
    pub sender: String,
    /// The submitter's login name.
    pub user: String,
    /// The submitter's real uid.
    pub uid: u32,
    /// Our mail name (MAILNAME or the host name).
    pub hostname: String,
    /// RFC 5322 date-time of acceptance.
    pub date: String,
}

/// Why a message was refused.
#[derive(Debug, Error)]
pub enum IntakeError {
    /// Reading stdin or writing the spool failed.
    #[error("{0}")]
    Io(io::Error),
    /// The message is larger than [`Options::size_limit`]; reading stopped
    /// there.
    #[error("message too large: over the limit of {} (MESSAGE_SIZE_LIMIT)", crate::config::size::format_bytes(*.0))]
    TooLarge(u64),
    /// The header section is too large.
    #[error("bad mail input format: header section over {MAX_HEADER} bytes")]
    HeaderTooLarge,
    /// A `-t` header holds an address we refuse.
    #[error("invalid address in header: `{0}'")]
    BadHeaderAddress(String),
}

/// The marker a [`Counter`] fails with at the size limit.
#[derive(Debug, Error)]
#[error("size limit reached")]
struct OverLimit(u64);

impl From<io::Error> for IntakeError {
    fn from(e: io::Error) -> IntakeError {
        match e.get_ref().and_then(|i| i.downcast_ref::<OverLimit>()) {
            Some(OverLimit(limit)) => IntakeError::TooLarge(*limit),
            None => IntakeError::Io(e),
        }
    }
}

/// What intake learned from the message.
#[derive(Debug, Default)]
pub struct Read {
    /// Recipients from To/Cc/Bcc when `-t` was given, in order.
    pub header_rcpts: Vec<String>,
    /// Bytes written to the spool.
    pub size: u64,
}

/// Whether `line` (without its newline) starts a header field: a name of
/// printable ASCII without `:` or blanks, then `:`.
fn is_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => line[..i].iter().all(|&b| (0x21..=0x7e).contains(&b)),
    }
}

fn field_name(field: &[u8]) -> &[u8] {
    let i = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    &field[..i]
}

fn has_field(fields: &[Vec<u8>], name: &str) -> bool {
    fields
        .iter()
        .any(|f| field_name(f).eq_ignore_ascii_case(name.as_bytes()))
}

/// Reads one line, or at most `limit` bytes of it, into `buf`, with a CRLF
/// ending made LF. Returns `None` at EOF, else whether the line is complete
/// (a missing final newline is supplied).
fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    loop {
        let avail = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            if buf.is_empty() {
                return Ok(None);
            }
            buf.push(b'\n');
            break;
        }
        let room = limit.saturating_sub(buf.len()).max(1);
        let take = avail.len().min(room);
        match avail[..take].iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&avail[..=i]);
                input.consume(i + 1);
                break;
            }
            None => {
                buf.extend_from_slice(&avail[..take]);
                input.consume(take);
                if buf.len() >= limit {
                    // A CRLF split by the limit: finish the line here, so
                    // that no CRLF reaches the spool.
                    if buf.last() == Some(&b'\r') && input.fill_buf()?.first() == Some(&b'\n') {
                        input.consume(1);
                        buf.push(b'\n');
                        break;
                    }
                    return Ok(Some(false));
                }
            }
        }
    }
    // Every CR before the newline goes: `\r\r\n` must not leave a CRLF.
    let mut end = buf.len() - 1;
    while end > 0 && buf[end - 1] == b'\r' {
        end -= 1;
    }
    buf.truncate(end);
    buf.push(b'\n');
    Ok(Some(true))
}

/// Body lines are copied in pieces of at most this many bytes, so a message
/// of one enormous line never sits in memory whole.
const BODY_CHUNK: usize = 64 * 1024;

/// Copies the message from `input` to `out`, fixing its header.
pub fn read_message(
    input: &mut impl BufRead,
    out: &mut impl Write,
    opts: &Options,
    stamp: &Stamp,
) -> Result<Read, IntakeError> {
    let is_end = |line: &[u8]| !opts.ignore_dots && line == b".\n";
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut header_size = 0usize;
    let mut line = Vec::new();
    let mut first = true;
    // The first body line when the header ended on a non-header line.
    let mut pending: Option<Vec<u8>> = None;
    let mut eof = false;
    loop {
        match read_line(input, &mut line, MAX_HEADER + 1)? {
            None => {
                eof = true;
                break;
            }
            Some(_) if is_end(&line) => {
                eof = true;
                break;
            }
            Some(_) => {}
        }
        if first {
            first = false;
            if line.starts_with(b"From ") || line.starts_with(b">From ") {
                continue;
            }
        }
        if line == b"\n" {
            break;
        }
        header_size += line.len();
        if header_size > MAX_HEADER {
            return Err(IntakeError::HeaderTooLarge);
        }
        if matches!(line[0], b' ' | b'\t') && !fields.is_empty() {
            fields.last_mut().expect("checked").extend_from_slice(&line);
        } else if is_field(&line) {
            fields.push(line.clone());
        } else {
            pending = Some(line.clone());
            break;
        }
    }

    let mut read = Read::default();
    if opts.extract_rcpts {
        read.header_rcpts = header_rcpts(&fields)?;
    }
    fields.retain(|f| !field_name(f).eq_ignore_ascii_case(b"bcc"));
    qualify_fields(&mut fields, &stamp.hostname);

    let mut w = Counter {
        inner: out,
        n: 0,
        limit: opts.size_limit,
    };
    w.write_all(received(stamp).as_bytes())?;
    for f in &fields {
        w.write_all(f)?;
    }
    if !has_field(&fields, "date") {
        writeln!(w, "Date: {}", stamp.date)?;
    }
    if !has_field(&fields, "message-id") {
        writeln!(w, "Message-ID: {}", message_id(stamp))?;
    }
    if !has_field(&fields, "from") {
        writeln!(
            w,
            "From: {}",
            from_header(&stamp.sender, opts.full_name.as_deref())
        )?;
    }
    w.write_all(b"\n")?;
    if let Some(p) = pending {
        w.write_all(&p)?;
    }
    if !eof {
        let mut at_line_start = true;
        while let Some(complete) = read_line(input, &mut line, BODY_CHUNK)? {
            if at_line_start && is_end(&line) {
                break;
            }
            w.write_all(&line)?;
            at_line_start = complete;
        }
        if !at_line_start {
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    read.size = w.n;
    Ok(read)
}

/// Qualifies the bare local names in the address fields (From, To, Cc, ...)
/// with our mail name (see [`qualify`]).
fn qualify_fields(fields: &mut [Vec<u8>], domain: &str) {
    for f in fields {
        let name = field_name(f);
        if !qualify::is_address_field(name) {
            continue;
        }
        let value = name.len() + 1;
        if let Some(v) = qualify::qualify_value(&f[value..], domain) {
            f.truncate(value);
            f.extend_from_slice(&v);
        }
    }
}

/// Counts what goes to the spool and refuses to pass `limit` (unless 0).
struct Counter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
    limit: u64,
}

impl<W: Write> Write for Counter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.limit != 0 && self.n + buf.len() as u64 > self.limit {
            return Err(io::Error::other(OverLimit(self.limit)));
        }
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Every address of every To, Cc and Bcc field (folded lines and groups too).
fn header_rcpts(fields: &[Vec<u8>]) -> Result<Vec<String>, IntakeError> {
    let mut raw: Vec<u8> = Vec::new();
    for f in fields {
        let name = field_name(f);
        if [&b"to"[..], b"cc", b"bcc"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            raw.extend_from_slice(f);
        }
    }
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    raw.extend_from_slice(b"\n");
    let mut out = Vec::new();
    let Some(msg) = MessageParser::default().parse_headers(&raw[..]) else {
        return Ok(out);
    };
    for h in msg.headers() {
        if !matches!(h.name, HeaderName::To | HeaderName::Cc | HeaderName::Bcc) {
            continue;
        }
        if let HeaderValue::Address(a) = &h.value {
            for addr in a.iter() {
                // A bare local name (`To: bob`) comes back as a display name.
                let bare = addr
                    .name
                    .as_deref()
                    .filter(|n| !n.is_empty() && !n.contains([' ', '\t', '"']));
                if let Some(s) = addr.address.as_deref().or(bare) {
                    crate::address::validate(s)
                        .map_err(|_| IntakeError::BadHeaderAddress(s.to_string()))?;
                    out.push(s.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// dma's `Received:` header, naming dma-rs.
pub fn received(s: &Stamp) -> String {
    let from = if s.sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        format!("{} (uid {})\n\t(envelope-from {})", s.user, s.uid, s.sender)
    };
    format!(
        "Received: from {from}\n\tid {}\n\tby {} (dma-rs {});\n\t{}\n",
        s.id,
        s.hostname,
        env!("CARGO_PKG_VERSION"),
        s.date
    )
}

/// A fresh `Message-ID:` value: `<time.id.random@host>`, as dma makes them.
pub fn message_id(s: &Stamp) -> String {
    format!(
        "<{:x}.{}.{:x}@{}>",
        crate::spool::now(),
        s.id,
        getrandom::u32().unwrap_or(0),
        s.hostname
    )
}

/// The `From:` value we add: `<sender>`, or `"Full Name" <sender>` with `-F`.
pub fn from_header(sender: &str, full_name: Option<&str>) -> String {
    match full_name.filter(|n| !n.is_empty()) {
        Some(name) => {
            let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\" <{sender}>")
        }
        None => format!("<{sender}>"),
    }
}

/// Now, as an RFC 5322 date in local time.
pub fn rfc2822_now() -> String {
    let now = crate::clock::now();
    jiff::fmt::rfc2822::to_string(&now).unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            id: "0000000000000001".into(),
            sender: "alice@host.example".into(),
            user: "alice".into(),
            uid: 1000,
            hostname: "host.example".into(),
            date: "Sun, 29 Nov 2026 10:00:00 +0000".into(),
        }
    }

    fn run(input: &str, opts: &Options) -> (String, Read) {
        let mut out = Vec::new();
        let r = read_message(&mut input.as_bytes(), &mut out, opts, &stamp()).unwrap();
        (String::from_utf8(out).unwrap(), r)
    }

    /// The message without the Received header (5 lines) for easy comparison.
    fn after_received(s: &str) -> String {
        s.lines().skip(5).map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn adds_missing_headers_even_without_blank_line() {
        let (out, _) = run("test\n", &Options::default());
        assert!(out.starts_with("Received: from alice (uid 1000)\n\t(envelope-from alice@host.example)\n\tid 0000000000000001\n\tby host.example (dma-rs "));
        let rest = after_received(&out);
        assert!(
            rest.starts_with("Date: Sun, 29 Nov 2026 10:00:00 +0000\nMessage-ID: <"),
            "{rest}"
        );
        assert!(
            rest.ends_with("@host.example>\nFrom: <alice@host.example>\n\ntest\n"),
            "{rest}"
        );
    }

    #[test]
    fn qualifies_cron_and_anacron_headers() {
        let input = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> ls\nX-Cron-Env: <MAILTO=bob>\nCc: team: bob,\n  carol (C);\nReply-To: \"Admin\" <admin>, x@y.example\n\nbody: root\n";
        let (out, _) = run(input, &Options::default());
        let rest = after_received(&out);
        assert!(
            rest.starts_with("From: root@host.example (Cron Daemon)\nTo: root@host.example\nSubject: Cron <root@h> ls\nX-Cron-Env: <MAILTO=bob>\nCc: team: bob@host.example,\n  carol@host.example (C);\nReply-To: \"Admin\" <admin@host.example>, x@y.example\n"),
            "{rest}"
        );
        assert!(rest.ends_with("\n\nbody: root\n"), "{rest}");
        let (out, _) = run("From: Anacron <root>\nTo: root\n\nx\n", &Options::default());
        assert!(
            after_received(&out)
                .starts_with("From: Anacron <root@host.example>\nTo: root@host.example\n"),
            "{out}"
        );
    }

    #[test]
    fn keeps_present_headers_and_strips_bcc() {
        let input = "From: Bob <b@x>\r\nDate: yesterday\r\nMessage-Id: <1@x>\r\nBcc: secret@x,\r\n  other@x\r\nSubject: hi\r\n\r\nbody\r\n.\r\nafter\r\n";
        let (out, r) = run(input, &Options::default());
        assert_eq!(
            after_received(&out),
            "From: Bob <b@x>\nDate: yesterday\nMessage-Id: <1@x>\nSubject: hi\n\nbody\n"
        );
        assert_eq!(r.size, out.len() as u64);
        let (out, _) = run(
            input,
            &Options {
                ignore_dots: true,
                ..Default::default()
            },
        );
        assert!(out.ends_with("\nbody\n.\nafter\n"));
    }

    #[test]
    fn t_collects_folded_and_group_recipients() {
        let input = "To: a@x, \"B, Jr\" <b@x>,\n\tc@x\nCc: team: d@x, e@x;\nBcc: f@x, localuser\nSubject: s\n\nbody\n";
        let (out, r) = run(
            input,
            &Options {
                extract_rcpts: true,
                ..Default::default()
            },
        );
        assert_eq!(
            r.header_rcpts,
            ["a@x", "b@x", "c@x", "d@x", "e@x", "f@x", "localuser"]
        );
        assert!(!out.contains("f@x"));
    }

    #[test]
    fn t_refuses_injection_in_headers() {
        let mut out = Vec::new();
        let opts = Options {
            extract_rcpts: true,
            ..Default::default()
        };
        let e = read_message(&mut &b"To: -oQ/tmp@x\n\n"[..], &mut out, &opts, &stamp());
        assert!(matches!(e, Err(IntakeError::BadHeaderAddress(_))), "{e:?}");
    }

    #[test]
    fn from_line_dropped_long_lines_kept_full_name_quoted() {
        let long = "x".repeat(5000);
        let input = format!("From alice Sun Nov 29\nSubject: s\n\n{long}\n");
        let opts = Options {
            full_name: Some("Al \"the\" Ice".into()),
            ..Default::default()
        };
        let (out, _) = run(&input, &opts);
        assert!(!out.contains("From alice"));
        assert!(out.contains("From: \"Al \\\"the\\\" Ice\" <alice@host.example>\n"));
        assert!(out.ends_with(&format!("\n\n{long}\n")));
    }

    #[test]
    fn bounded_header() {
        let input = format!("X-Big: {}\n", "a".repeat(MAX_HEADER + 1));
        let mut out = Vec::new();
        let e = read_message(
            &mut input.as_bytes(),
            &mut out,
            &Options::default(),
            &stamp(),
        );
        assert!(matches!(e, Err(IntakeError::HeaderTooLarge)));
    }

    #[test]
    fn size_limit_stops_reading() {
        // An input that never ends: intake must stop at the limit by itself.
        struct Endless(u64);
        impl io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += buf.len() as u64;
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = if i % 64 == 63 { b'\n' } else { b'y' };
                }
                Ok(buf.len())
            }
        }
        let opts = Options {
            size_limit: 100 << 10,
            ..Default::default()
        };
        let mut input = io::BufReader::new(Endless(0));
        let mut out = Vec::new();
        let e = read_message(&mut input, &mut out, &opts, &stamp()).unwrap_err();
        assert!(
            matches!(e, IntakeError::TooLarge(l) if l == 100 << 10),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "message too large: over the limit of 100K (MESSAGE_SIZE_LIMIT)"
        );
        assert!(out.len() <= 100 << 10);
        assert!(input.get_ref().0 < 1 << 20, "read on after the limit");
        // At the limit exactly is fine.
        const FIXED: &str = "Date: x\nMessage-ID: <a@b>\nFrom: a@b\n\nbody\n";
        let (full, _) = run(FIXED, &Options::default());
        let opts = Options {
            size_limit: full.len() as u64,
            ..Default::default()
        };
        let (out, r) = run(FIXED, &opts);
        assert_eq!(r.size, full.len() as u64);
        assert_eq!(out.len(), full.len());
    }
}
