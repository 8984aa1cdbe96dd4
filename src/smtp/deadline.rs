//! Deadlines for network I/O: a limit on a whole exchange (one SMTP reply,
//! one block of writes, a TLS handshake, a DNS query over TCP), not on each
//! read.
//!
//! A socket timeout alone starts again with every read, so a server that
//! trickles one byte a second never trips it and holds the queue run for as
//! long as it likes (a slowloris). Here the time left until the deadline,
//! measured on the monotonic clock, is given to the socket before every
//! read and every write, and an exchange with no time left fails at once.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A byte stream whose reads and writes must be done by a deadline (TCP,
/// TLS over TCP, test mocks).
pub trait Transport: Read + Write {
    /// The reads and writes that follow must be done by `d`.
    fn set_deadline(&mut self, d: Deadline);
}

/// The most bytes written under one deadline (the RFC 5321 §4.5.3.2 "data
/// block"): a larger write is cut into blocks of this size, each with a
/// deadline of its own. A server that takes a block in no less than the
/// limit is cut off; one that takes each within it may take as long as
/// the message needs (at least [`BLOCK`] bytes per limit: 364 B/s at the
/// RFC's 3 minutes).
pub const BLOCK: usize = 64 * 1024;

/// A point on the monotonic clock by which an exchange must be over, with
/// the limit it was set from (for messages).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// None: too far away to be represented, so never.
    at: Option<Instant>,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline::starting(Instant::now(), limit)
    }

    fn starting(now: Instant, limit: Duration) -> Deadline {
        Deadline {
            at: now.checked_add(limit),
            limit,
        }
    }

    /// The time left (None: no end), or the timeout error when none is.
    pub fn left(&self) -> io::Result<Option<Duration>> {
        self.left_at(Instant::now())
    }

    fn left_at(&self, now: Instant) -> io::Result<Option<Duration>> {
        match self.at {
            None => Ok(None),
            Some(at) => match at.checked_duration_since(now) {
                Some(d) if !d.is_zero() => Ok(Some(d)),
                _ => Err(self.expired()),
            },
        }
    }

    /// The error for a deadline that passed: "timeout after 3s".
    pub fn expired(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, timeout_after(self.limit))
    }
}

/// "timeout after 3s", the words of every SMTP timeout.
pub fn timeout_after(limit: Duration) -> String {
    if limit.subsec_nanos() == 0 {
        format!("timeout after {}s", limit.as_secs())
    } else {
        format!("timeout after {limit:?}")
    }
}

/// Whether `e` is a socket timeout (EAGAIN from SO_RCVTIMEO/SO_SNDTIMEO)
/// or a passed deadline.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A TCP stream whose every read and write ends by its deadline (blocking
/// without one). Its timeouts read "timeout after Ns".
#[derive(Debug)]
pub struct TimedTcp {
    tcp: TcpStream,
    deadline: Option<Deadline>,
}

impl TimedTcp {
    /// `tcp`, with no deadline yet.
    pub fn new(tcp: TcpStream) -> TimedTcp {
        TimedTcp {
            tcp,
            deadline: None,
        }
    }

    /// The reads and writes that follow must be done by `d`.
    pub fn set_deadline(&mut self, d: Deadline) {
        self.deadline = Some(d);
    }

    /// Runs one syscall with the time left as the socket's timeout.
    fn timed<R>(
        &mut self,
        arm: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
        op: impl FnOnce(&mut TcpStream) -> io::Result<R>,
    ) -> io::Result<R> {
        let Some(d) = self.deadline else {
            return op(&mut self.tcp);
        };
        arm(&self.tcp, d.left()?)?;
        op(&mut self.tcp).map_err(|e| if is_timeout(&e) { d.expired() } else { e })
    }
}

impl Read for TimedTcp {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.timed(TcpStream::set_read_timeout, |t| t.read(b))
    }
}

impl Write for TimedTcp {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.timed(TcpStream::set_write_timeout, |t| t.write(b))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Writes through a [`Transport`] in blocks of at most [`BLOCK`] bytes,
/// each of which must be written within `limit`: a command group, or the
/// message data behind a buffer of [`BLOCK`] bytes. (Under TLS the tail of
/// a block may go out at the start of the next one, when rustls finishes
/// its write: one deadline then covers at most two blocks' bytes.)
pub struct Blocks<'a, T: Transport> {
    stream: &'a mut T,
    limit: Duration,
}

impl<'a, T: Transport> Blocks<'a, T> {
    /// Writes to `stream`, `limit` per block.
    pub fn new(stream: &'a mut T, limit: Duration) -> Blocks<'a, T> {
        Blocks { stream, limit }
    }
}

impl<T: Transport> Write for Blocks<'_, T> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        for block in b.chunks(BLOCK) {
            self.stream.set_deadline(Deadline::after(self.limit));
            self.stream.write_all(block)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        // What TLS still holds is the last block's tail: a block's time.
        self.stream.set_deadline(Deadline::after(self.limit));
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_runs_out_on_the_deadline() {
        let now = Instant::now();
        let d = Deadline::starting(now, Duration::from_secs(3));
        let left =
            |s: u64, ms: u64| d.left_at(now + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(left(0, 0).unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(left(2, 500).unwrap(), Some(Duration::from_millis(500)));
        for (s, ms) in [(3, 0), (3, 1), (3600, 0)] {
            let e = left(s, ms).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(e.to_string(), "timeout after 3s");
            assert!(is_timeout(&e));
        }
    }

    #[test]
    fn a_limit_past_the_clock_s_end_never_ends() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.left().unwrap(), None);
        assert_eq!(
            timeout_after(Duration::from_millis(1500)),
            "timeout after 1.5s"
        );
    }

    /// A transport that takes at most 1000 bytes per write and records the
    /// deadlines it was given.
    #[derive(Default)]
    struct Slow {
        written: Vec<u8>,
        deadlines: usize,
    }
    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(1000);
            self.written.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Read for Slow {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }
    impl Transport for Slow {
        fn set_deadline(&mut self, _: Deadline) {
            self.deadlines += 1;
        }
    }

    #[test]
    fn each_block_of_a_write_has_its_own_deadline() {
        let mut s = Slow::default();
        let data: Vec<u8> = (0..(2 * BLOCK + 10)).map(|i| i as u8).collect();
        Blocks::new(&mut s, Duration::from_secs(1))
            .write_all(&data)
            .unwrap();
        assert_eq!(s.written, data);
        assert_eq!(s.deadlines, 3);
    }
}
