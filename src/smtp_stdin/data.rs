//! The byte streams of a `-bs` session: stdin with a timeout, command
//! lines, and the message of DATA (dot-stuffed) or of BDAT (in chunks) as
//! a reader that ends where the message ends, for intake to read like
//! stdin of a command-line submission.
//!
//! A message cut short (end of input, timeout, a BDAT transaction ended by
//! RSET or QUIT) is an error of the reader, never an early end: intake
//! then fails and nothing is queued.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use thiserror::Error;

use super::dialogue::{self, Reply};

/// The longest command line we read, line end included (RFC 5321 asks
/// for 512; clients' long addresses get room).
pub const MAX_COMMAND: usize = 4096;

/// Why a message was not read to its end.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The input ended.
    #[error("end of input in the middle of a message")]
    Eof,
    /// Nothing came for the session timeout.
    #[error("timeout waiting for input")]
    Timeout,
    /// A BDAT transaction was ended by another command (kept by the
    /// reader: [`BdatReader::take_command`]).
    #[error("transaction ended by another command")]
    Command,
}

impl Cut {
    fn error(self) -> io::Error {
        let kind = match self {
            Cut::Eof => io::ErrorKind::UnexpectedEof,
            Cut::Timeout => io::ErrorKind::TimedOut,
            // Not Interrupted: readers retry that.
            Cut::Command => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, self)
    }

    /// The [`Cut`] an error of one of our readers carries.
    pub fn of(e: &io::Error) -> Option<Cut> {
        if e.kind() == io::ErrorKind::TimedOut {
            return Some(Cut::Timeout);
        }
        e.get_ref()?.downcast_ref::<Cut>().copied()
    }
}

/// A descriptor (stdin) read with a timeout on each read.
pub struct Timed<F> {
    fd: F,
    timeout: Duration,
}

impl<F: AsFd> Timed<F> {
    /// `fd`, each read waiting at most `timeout`.
    pub fn new(fd: F, timeout: Duration) -> Timed<F> {
        Timed { fd, timeout }
    }
}

impl<F: AsFd> Read for Timed<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let ms = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => return Err(Cut::Timeout.error()),
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        loop {
            match nix::unistd::read(self.fd.as_fd(), buf) {
                Err(nix::Error::EINTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }
}

/// One line read by [`read_command`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, its CRLF or LF off.
    Text(Vec<u8>),
    /// Longer than [`MAX_COMMAND`]: read to its end and dropped.
    TooLong,
    /// End of input (what came after the last newline is dropped).
    Eof,
}

/// Reads one command line from `input`.
pub fn read_command(input: &mut impl BufRead) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let avail = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && Cut::of(&e).is_none() => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, end) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            line.extend_from_slice(&avail[..take]);
            if line.len() > MAX_COMMAND {
                too_long = true;
                line = Vec::new();
            }
        }
        input.consume(take);
        if end {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Text(line))
}

/// Message lines are handed on in pieces of at most this many bytes.
const PIECE: usize = 64 * 1024;

/// The message after DATA: dot-stuffing undone, ending (as EOF) at the
/// line `.`, which it consumes. End of input before it is [`Cut::Eof`].
pub struct DotReader<'a, R> {
    inner: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
    at_line_start: bool,
    done: bool,
    cut: Option<Cut>,
}

impl<'a, R: BufRead> DotReader<'a, R> {
    /// The message that follows on `inner`.
    pub fn new(inner: &'a mut R) -> DotReader<'a, R> {
        DotReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            at_line_start: true,
            done: false,
            cut: None,
        }
    }

    /// Reads (and drops) the rest of the message, to its final dot.
    pub fn drain(&mut self) -> io::Result<()> {
        drain(self)
    }

    /// The next piece: up to a newline, or [`PIECE`] bytes.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        while self.buf.len() < PIECE {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) => {
                    self.cut = Some(Cut::of(&e).unwrap_or(Cut::Eof));
                    return Err(e);
                }
            };
            if avail.is_empty() {
                self.cut = Some(Cut::Eof);
                return Err(Cut::Eof.error());
            }
            let room = PIECE - self.buf.len();
            let (take, end) = match avail.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len().min(room), false),
            };
            self.buf.extend_from_slice(&avail[..take]);
            self.inner.consume(take);
            if end {
                break;
            }
        }
        if self.at_line_start && self.buf.first() == Some(&b'.') {
            if self.buf == b".\r\n" || self.buf == b".\n" {
                self.done = true;
                self.buf.clear();
                return Ok(());
            }
            self.pos = 1;
        }
        self.at_line_start = self.buf.last() == Some(&b'\n');
        Ok(())
    }
}

impl<R: BufRead> Read for DotReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<R: BufRead> BufRead for DotReader<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(c) = self.cut {
            return Err(c.error());
        }
        while self.pos >= self.buf.len() && !self.done {
            self.refill()?;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// The message of BDAT chunks: `size` octets after each BDAT, until the
/// chunk marked LAST (then EOF). Between chunks it answers the chunk
/// (250, or the refusal set with [`BdatReader::fail`]) and reads the next
/// command: BDAT goes on, NOOP is answered, RSET and QUIT end the
/// transaction ([`Cut::Command`]; the line is kept for the session), any
/// other command gets 503.
pub struct BdatReader<'a, R, W> {
    input: &'a mut R,
    output: &'a mut W,
    left: u64,
    last: bool,
    received: u64,
    refusal: Option<Reply>,
    cut: Option<Cut>,
    command: Option<Vec<u8>>,
}

impl<'a, R: BufRead, W: Write> BdatReader<'a, R, W> {
    /// The message whose first chunk, of `size` octets, follows on
    /// `input`; replies between chunks go to `output`.
    pub fn new(input: &'a mut R, output: &'a mut W, size: u64, last: bool) -> Self {
        BdatReader {
            input,
            output,
            left: size,
            last,
            received: size,
            refusal: None,
            cut: None,
            command: None,
        }
    }

    /// From now on every chunk is answered with `refusal`.
    pub fn fail(&mut self, refusal: Reply) {
        self.refusal = Some(refusal);
    }

    /// The command that ended the transaction ([`Cut::Command`]).
    pub fn take_command(&mut self) -> Option<Vec<u8>> {
        self.command.take()
    }

    /// The octets of all chunks so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads (and drops) the rest of the chunks, to the LAST one.
    pub fn drain(&mut self) -> io::Result<()> {
        drain(self)
    }

    fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        self.output.write_all(&reply.to_wire())?;
        self.output.flush()
    }

    fn cut(&mut self, c: Cut) -> io::Error {
        self.cut = Some(c);
        c.error()
    }

    /// Answers the chunk just read and reads commands up to the next BDAT.
    fn next_chunk(&mut self) -> io::Result<()> {
        let answer = self
            .refusal
            .clone()
            .unwrap_or_else(|| Reply::new(250, format!("2.0.0 {} octets received", self.received)));
        self.reply(&answer)?;
        loop {
            let line = match read_command(self.input) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    self.reply(&Reply::new(500, "5.5.6 line too long"))?;
                    continue;
                }
                Ok(Line::Eof) => return Err(self.cut(Cut::Eof)),
                Err(e) => return Err(self.cut(Cut::of(&e).unwrap_or(Cut::Eof))),
            };
            let text = String::from_utf8_lossy(&line);
            let (verb, args) = text.split_once(' ').unwrap_or((&text, ""));
            match verb.to_ascii_uppercase().as_str() {
                "BDAT" => match dialogue::parse_bdat(args) {
                    Some((size, last)) => {
                        self.left = size;
                        self.last = last;
                        // A hostile size must not overflow the count.
                        self.received = self.received.saturating_add(size);
                        return Ok(());
                    }
                    None => self.reply(&Reply::new(501, "5.5.4 syntax: BDAT size [LAST]"))?,
                },
                "NOOP" => self.reply(&Reply::new(250, "2.0.0 Ok"))?,
                "RSET" | "QUIT" => {
                    self.command = Some(line);
                    return Err(self.cut(Cut::Command));
                }
                _ => self.reply(&Reply::new(503, "5.5.1 BDAT, RSET or QUIT expected"))?,
            }
        }
    }
}

impl<R: BufRead, W: Write> Read for BdatReader<'_, R, W> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<R: BufRead, W: Write> BufRead for BdatReader<'_, R, W> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(c) = self.cut {
            return Err(c.error());
        }
        while self.left == 0 {
            if self.last {
                return Ok(&[]);
            }
            self.next_chunk()?;
        }
        let ended = match self.input.fill_buf() {
            Ok(a) => a.is_empty().then_some(Cut::Eof),
            Err(e) => Some(Cut::of(&e).unwrap_or(Cut::Eof)),
        };
        if let Some(c) = ended {
            return Err(self.cut(c));
        }
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        let avail = self.input.fill_buf()?;
        let n = avail.len().min(left);
        Ok(&avail[..n])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.input.consume(n);
        self.left -= n as u64;
    }
}

/// `Read::read` for a reader whose buffer ([`BufRead`]) is the truth.
fn read_buffered(r: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let avail = r.fill_buf()?;
    let n = avail.len().min(out.len());
    out[..n].copy_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n)
}

/// Reads `r` to its end, dropping what it reads.
fn drain(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let n = r.fill_buf()?.len();
        if n == 0 {
            return Ok(());
        }
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn dot_reader_unstuffs_and_stops_at_the_dot() {
        let mut input = &b"a\r\n..b\r\n.\r\n...\r\nc\r\n.\r\nQUIT\r\n"[..];
        let mut r = DotReader::new(&mut input);
        assert_eq!(all(&mut r).unwrap(), b"a\r\n.b\r\n");
        // The next message, right after.
        let mut r = DotReader::new(&mut input);
        assert_eq!(all(&mut r).unwrap(), b"..\r\nc\r\n");
        assert_eq!(input, b"QUIT\r\n");
        // A dot in the middle of a line, a bare-LF end.
        let mut input = &b"x.\n.y\n.\n"[..];
        assert_eq!(all(&mut DotReader::new(&mut input)).unwrap(), b"x.\ny\n");
    }

    #[test]
    fn dot_reader_end_of_input_is_an_error_every_time() {
        for text in [&b"a\r\nb"[..], b"", b"a\r\n.x\r\n", b"a\r\n.\r"] {
            let mut input = text;
            let mut r = DotReader::new(&mut input);
            let e = all(&mut r).unwrap_err();
            assert_eq!(Cut::of(&e), Some(Cut::Eof), "{text:?}");
            assert_eq!(Cut::of(&r.drain().unwrap_err()), Some(Cut::Eof));
        }
    }

    #[test]
    fn dot_reader_long_lines_in_pieces() {
        let long = vec![b'x'; PIECE * 2 + 5];
        let mut text = b".".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"\r\n.\r\n");
        let mut input = &text[..];
        let mut r = DotReader::new(&mut input);
        assert!(r.fill_buf().unwrap().len() <= PIECE);
        let mut want = long.clone();
        want.extend_from_slice(b"\r\n");
        assert_eq!(all(&mut r).unwrap(), want);
    }

    #[test]
    fn bdat_reader_reads_chunks_and_answers_each() {
        let mut input =
            &b"Subject: x\r\n\r\nBDAT 5\r\nhelloNOOP\r\nBDAT 3 LAST\r\n!\r\nRSET\r\n"[..];
        let mut out = Vec::new();
        let mut r = BdatReader::new(&mut input, &mut out, 14, false);
        assert_eq!(all(&mut r).unwrap(), b"Subject: x\r\n\r\nhello!\r\n");
        assert_eq!(r.received(), 22);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250 2.0.0 14 octets received\r\n250 2.0.0 19 octets received\r\n\
             250 2.0.0 Ok\r\n"
        );
        assert_eq!(input, b"RSET\r\n");
    }

    #[test]
    fn bdat_reader_refusal_rset_and_eof() {
        // A refused message still has its chunks read, each answered.
        let mut input = &b"abcBDAT 2 LAST\r\nde"[..];
        let mut out = Vec::new();
        let mut r = BdatReader::new(&mut input, &mut out, 3, false);
        r.fail(Reply::new(552, "5.3.4 too big"));
        r.drain().unwrap();
        assert_eq!(out, b"552 5.3.4 too big\r\n");
        assert!(input.is_empty());
        // RSET between chunks ends it, kept for the session.
        let mut input = &b"abcDATA\r\nrset\r\n"[..];
        let mut out = Vec::new();
        let mut r = BdatReader::new(&mut input, &mut out, 3, false);
        let e = all(&mut r).unwrap_err();
        assert_eq!(Cut::of(&e), Some(Cut::Command));
        assert_eq!(r.take_command().unwrap(), b"rset");
        assert_eq!(Cut::of(&r.drain().unwrap_err()), Some(Cut::Command));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250 2.0.0 3 octets received\r\n503 5.5.1 BDAT, RSET or QUIT expected\r\n"
        );
        // End of input inside a chunk.
        let mut input = &b"ab"[..];
        let mut out = Vec::new();
        let mut r = BdatReader::new(&mut input, &mut out, 3, true);
        assert_eq!(Cut::of(&all(&mut r).unwrap_err()), Some(Cut::Eof));
    }

    #[test]
    fn command_lines() {
        let long = format!("NOOP {}\r\nQUIT\r\nlast", "x".repeat(MAX_COMMAND));
        let mut input = long.as_bytes();
        assert_eq!(read_command(&mut input).unwrap(), Line::TooLong);
        assert_eq!(
            read_command(&mut input).unwrap(),
            Line::Text(b"QUIT".to_vec())
        );
        assert_eq!(read_command(&mut input).unwrap(), Line::Eof);
    }

    #[test]
    fn timed_read_times_out() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let mut t = Timed::new(rx, Duration::from_millis(50));
        nix::unistd::write(&tx, b"hi").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(t.read(&mut buf).unwrap(), 2);
        let e = t.read(&mut buf).unwrap_err();
        assert_eq!(Cut::of(&e), Some(Cut::Timeout));
        drop(tx);
        assert_eq!(t.read(&mut buf).unwrap(), 0);
    }
}
