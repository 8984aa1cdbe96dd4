//! The connection under an SMTP session: TCP, then possibly TLS.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::session::Transport;

/// A plain or TLS connection.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects with a time limit; TCP_NODELAY, since we write each command
    /// group in one write and wait for the answer.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        Ok(Stream::Plain(s))
    }

    /// Whether TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Starts TLS on a plain connection and completes the handshake.
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
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    /// The certificate the server showed (TLS only), DER.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Tls(s) => s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec()),
            Stream::Plain(_) => None,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Transport for Stream {
    fn set_timeout(&mut self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }
}
