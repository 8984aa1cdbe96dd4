//! SMTP replies: reading them off a stream (bounded), and what they mean.
//!
//! A reply is read line by line until its last line (`NNN ` or `NNN`), then
//! checked with smtp-proto's parser. Malformed or oversized replies are
//! protocol errors, which the caller treats as a temporary failure of the
//! connection. Bytes after a reply stay buffered for the next one: exactly
//! what pipelined replies need.

use std::fmt;
use std::io::{self, Read};

use thiserror::Error;

/// The longest reply line we accept.
pub const MAX_LINE: usize = 4096;
/// The largest multi-line reply we accept.
pub const MAX_REPLY: usize = 64 * 1024;

/// One reply: its code and its lines' text (after the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3xx.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The enhanced status code (RFC 3463) at the start of the text, or a
    /// default for the code's class.
    pub fn status(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        let word = first.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = word.split('.').collect();
        let valid = parts.len() == 3
            && parts[0] == (self.code / 100).to_string()
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        if valid {
            word.to_string()
        } else {
            format!("{}.0.0", self.code / 100)
        }
    }

    /// The whole reply on one line, for logs, mailq and DSNs.
    pub fn one_line(&self) -> String {
        let text: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        let s = format!("{} {}", self.code, text.join(" "));
        s.trim_end()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// A reply that cannot be understood.
#[derive(Debug, Error)]
pub enum ReplyError {
    /// The connection failed or timed out.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// Not a reply.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// Too long.
    #[error("reply too long")]
    TooLong,
}

/// Reads replies from a stream, keeping what follows for the next one.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
}

impl ReplyReader {
    /// A reader with nothing buffered.
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    /// Bytes received but not yet read as a reply (STARTTLS injection check).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads one complete reply.
    pub fn read(&mut self, stream: &mut impl Read) -> Result<Reply, ReplyError> {
        loop {
            if let Some(end) = complete_reply(&self.buf)? {
                let raw: Vec<u8> = self.buf.drain(..end).collect();
                return parse(&raw);
            }
            if self.buf.len() > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            let mut chunk = [0u8; 4096];
            let n = match stream.read(&mut chunk) {
                Ok(0) => return Err(ReplyError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReplyError::Io(e)),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Where the first complete reply in `buf` ends, if it is complete.
fn complete_reply(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        if line.len() > MAX_LINE {
            return Err(ReplyError::TooLong);
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(malformed(line));
        }
        start += nl + 1;
        match line.get(3) {
            None | Some(b' ') => return Ok(Some(start)),
            Some(b'-') => {}
            Some(_) => return Err(malformed(line)),
        }
    }
    if buf.len() - start > MAX_LINE {
        return Err(ReplyError::TooLong);
    }
    Ok(None)
}

/// A malformed reply, its text escaped (it may hold anything a server sent).
fn malformed(line: &[u8]) -> ReplyError {
    ReplyError::Malformed(crate::escape::escape(&String::from_utf8_lossy(line)).into_owned())
}

/// Parses one complete reply: every line has the same code. The text is
/// escaped ([`crate::escape::escape`]): no control byte from a server goes
/// further than this.
pub fn parse(raw: &[u8]) -> Result<Reply, ReplyError> {
    let text = String::from_utf8_lossy(raw);
    let mut code = None;
    let mut lines = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let c: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| malformed(line.as_bytes()))?;
        if *code.get_or_insert(c) != c {
            return Err(ReplyError::Malformed(format!(
                "mixed codes in one reply: {}",
                crate::escape::escape(line)
            )));
        }
        lines.push(crate::escape::escape(line.get(4..).unwrap_or("")).into_owned());
    }
    let code = code.ok_or_else(|| ReplyError::Malformed("empty reply".into()))?;
    // smtp-proto must agree that this is a reply.
    let mut rx = smtp_proto::response::parser::ResponseReceiver::default();
    let mut it = raw.iter();
    rx.parse(&mut it).map_err(|e| {
        ReplyError::Malformed(crate::escape::escape(&format!("{e:?}")).into_owned())
    })?;
    Ok(Reply { code, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_replies_one_at_a_time() {
        let mut r = ReplyReader::new();
        let mut s = &b"250 2.1.0 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n354 go ahead\r\n"[..];
        let a = r.read(&mut s).unwrap();
        assert_eq!((a.code, a.status()), (250, "2.1.0".into()));
        let b = r.read(&mut s).unwrap();
        assert_eq!(b.one_line(), "550 5.1.1 no such 5.1.1 user");
        assert!(b.is_permanent());
        assert_eq!(r.read(&mut s).unwrap().code, 354);
        assert!(matches!(r.read(&mut s), Err(ReplyError::Closed)));
    }

    #[test]
    fn bad_replies() {
        for raw in [
            &b"hello\r\n"[..],
            b"250-a\r\n251 b\r\n",
            b"2x0 x\r\n",
            b"250+x\r\n",
            b"999 x\r\n",
        ] {
            let mut s = raw;
            assert!(ReplyReader::new().read(&mut s).is_err(), "{raw:?}");
        }
        let huge = format!("250-{}\r\n", "x".repeat(100)).repeat(1000);
        let mut s = huge.as_bytes();
        assert!(matches!(
            ReplyReader::new().read(&mut s),
            Err(ReplyError::TooLong)
        ));
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE + 10));
        let mut s = long.as_bytes();
        assert!(matches!(
            ReplyReader::new().read(&mut s),
            Err(ReplyError::TooLong)
        ));
    }

    #[test]
    fn server_control_bytes_are_escaped() {
        // A greeting whose text carries ESC, BEL and a bare CR.
        let mut s = &b"220 mx \x1b[2J\x07ready\rnow\\\r\n"[..];
        let r = ReplyReader::new().read(&mut s).unwrap();
        assert_eq!(r.lines, ["mx \\x1b[2J\\x07ready\\rnow\\\\"]);
        assert_eq!(r.one_line(), "220 mx \\x1b[2J\\x07ready\\rnow\\\\");
        // A malformed one.
        let mut s = &b"2\x1b0 \x07\r\n"[..];
        match ReplyReader::new().read(&mut s) {
            Err(ReplyError::Malformed(t)) => assert_eq!(t, "2\\x1b0 \\x07"),
            other => panic!("{other:?}"),
        }
        let mut s = &b"220-a\r\n250 b\x1b\r\n"[..];
        let e = ReplyReader::new().read(&mut s).unwrap_err().to_string();
        assert!(!e.contains('\x1b') && e.contains("\\x1b"), "{e}");
    }

    #[test]
    fn status_defaults_by_class() {
        let r = parse(b"451 try later\r\n").unwrap();
        assert_eq!(r.status(), "4.0.0");
        let r = parse(b"250 ok\r\n").unwrap();
        assert_eq!(r.status(), "2.0.0");
        let r = parse(b"550 4.1.1 mismatched\r\n").unwrap();
        assert_eq!(r.status(), "5.0.0");
    }
}
