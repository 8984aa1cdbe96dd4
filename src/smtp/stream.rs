//! The connection under an SMTP session: TCP, then possibly TLS.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::deadline::{Deadline, TimedTcp, Transport};

/// A plain or TLS connection. The deadline is kept on the TCP stream under
/// TLS: one TLS read may take many socket reads (a whole record), and each
/// of them must end by the deadline.
pub enum Stream {
    /// Plain TCP.
    Plain(TimedTcp),
    /// TLS over TCP, and why its certificate is unverified (OPPORTUNISTIC_TLS
    /// accepted it), if it is.
    Tls(Box<StreamOwned<ClientConnection, TimedTcp>>, Option<String>),
}

impl Stream {
    /// Connects with a time limit; TCP_NODELAY, since we write each command
    /// group in one write and wait for the answer.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        Ok(Stream::Plain(TimedTcp::new(s)))
    }

    /// Whether TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(..))
    }

    /// Starts TLS on a plain connection and completes the handshake, all
    /// of it within `timeout` (a server that sends its handshake a byte at
    /// a time is cut off at that deadline too).
    pub fn into_tls(
        self,
        config: Arc<ClientConfig>,
        host: &str,
        timeout: Duration,
    ) -> io::Result<Stream> {
        let Stream::Plain(mut tcp) = self else {
            return Err(io::Error::other("TLS is already up"));
        };
        let name = super::tls::server_name(host).map_err(io::Error::other)?;
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        tcp.set_deadline(Deadline::after(timeout));
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp)), None))
    }

    /// Marks a TLS connection whose certificate could not be verified
    /// (OPPORTUNISTIC_TLS), with why: it counts as plain text for AUTH.
    pub fn set_unverified(&mut self, why: String) {
        if let Stream::Tls(_, u) = self {
            *u = Some(why);
        }
    }

    /// Why the certificate of this TLS connection is unverified, if it is.
    pub fn unverified(&self) -> Option<&str> {
        match self {
            Stream::Tls(_, u) => u.as_deref(),
            Stream::Plain(_) => None,
        }
    }

    /// The certificate the server showed (TLS only), DER.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Tls(s, _) => s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec()),
            Stream::Plain(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s, _) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s, _) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s, _) => s.flush(),
        }
    }
}

impl Transport for Stream {
    fn set_deadline(&mut self, d: Deadline) {
        match self {
            Stream::Plain(s) => s.set_deadline(d),
            Stream::Tls(s, _) => s.sock.set_deadline(d),
        }
    }
}
