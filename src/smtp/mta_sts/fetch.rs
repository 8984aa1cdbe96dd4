//! Fetching a policy (RFC 8461 §3.3): `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! over rustls, its certificate verified against the system's CAs (or
//! CAFILE) for the name `mta-sts.<domain>`, whatever FINGERPRINT or
//! TLS_NO_VERIFY say for SMTP. One deadline covers it all: the connection,
//! the handshake, the request and the whole body, so a server that
//! trickles bytes holds a delivery for no longer than [`FETCH_TIMEOUT`].
//!
//! The host's addresses come from the caller (our resolver, or a test's);
//! the time the lookup takes counts against the deadline too.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use super::Fetch;
use super::http;
use super::policy::Policy;
use crate::smtp::deadline::{Deadline, TimedTcp, is_timeout, timeout_after};
use crate::smtp::tls;

/// The time a whole fetch may take. (The RFC suggests a minute; a queue
/// run waits for this, so less.)
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The most addresses of the policy host tried, each with its share of
/// the time left.
const MAX_ADDRESSES: usize = 4;

/// Looks up a host's addresses (A and AAAA): our resolver, or a test's.
pub trait Addresses {
    /// The addresses of `host`, or why there are none (one line).
    fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String>;
}

impl<F: Fn(&str) -> Result<Vec<IpAddr>, String>> Addresses for F {
    fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self(host)
    }
}

/// Fetches policies over HTTPS.
pub struct Fetcher<A> {
    addresses: A,
    cafile: Option<PathBuf>,
    /// The port of the policy host: 443 (another only in tests).
    pub port: u16,
    /// The time a whole fetch may take: [`FETCH_TIMEOUT`].
    pub timeout: Duration,
}

impl<A: Addresses> Fetcher<A> {
    /// A fetcher that finds hosts with `addresses` and trusts the CAs in
    /// `cafile` (the config's CAFILE), or the system's without one.
    pub fn new(addresses: A, cafile: Option<PathBuf>) -> Fetcher<A> {
        Fetcher {
            addresses,
            cafile,
            port: 443,
            timeout: FETCH_TIMEOUT,
        }
    }

    /// The body served at `https://<host>/.well-known/mta-sts.txt`, or
    /// why not.
    fn get(&self, host: &str) -> Result<Vec<u8>, String> {
        let deadline = Deadline::after(self.timeout);
        let client = tls::webpki_client(self.cafile.as_deref())?;
        let name = tls::server_name(host)?;
        let addrs = self.addresses.addresses(host)?;
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let (tcp, ip) = self.connect(&addrs, &deadline)?;
        let mut tcp = TimedTcp::new(tcp);
        tcp.set_deadline(deadline);
        let mut conn = ClientConnection::new(client.config.clone(), name)
            .map_err(|e| format!("TLS with {host} [{ip}]: {e}"))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                if is_timeout(&e) {
                    return Err(e.to_string());
                }
                let (why, _) = client.why(&e);
                return Err(format!("TLS with {host} [{ip}] failed: {why}"));
            }
        }
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(http::request(host).as_bytes())
            .and_then(|()| tls.flush())
            .map_err(|e| e.to_string())?;
        http::read_body(&mut tls)
    }

    /// A connection to the first of `addrs` that takes one, each given an
    /// equal share of the time left.
    fn connect(
        &self,
        addrs: &[IpAddr],
        deadline: &Deadline,
    ) -> Result<(TcpStream, IpAddr), String> {
        let addrs = &addrs[..addrs.len().min(MAX_ADDRESSES)];
        let mut failed = Vec::new();
        for (i, ip) in addrs.iter().enumerate() {
            let left = deadline.left().map_err(|e| e.to_string())?;
            let share = left.map_or(self.timeout, |l| l / (addrs.len() - i) as u32);
            match TcpStream::connect_timeout(&SocketAddr::new(*ip, self.port), share) {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok((tcp, *ip));
                }
                Err(e) if is_timeout(&e) => failed.push(format!(
                    "{ip}: {}",
                    timeout_after(Duration::from_millis(share.as_millis() as u64))
                )),
                Err(e) => failed.push(format!("{ip}: {e}")),
            }
        }
        Err(format!("can not connect: {}", failed.join("; ")))
    }
}

impl<A: Addresses> Fetch for Fetcher<A> {
    /// The policy of `domain`, or why not, in one line that starts
    /// "fetching https://mta-sts.<domain>/.well-known/mta-sts.txt: ".
    fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let policy = self.get(&host).and_then(|body| {
            let text =
                String::from_utf8(body).map_err(|_| "the policy is not UTF-8 text".to_string())?;
            Policy::parse(&text).map_err(|why| format!("not a valid policy: {why}"))
        });
        policy.map_err(|why| format!("fetching https://{host}{}: {why}", http::PATH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::{Arc, mpsc};
    use std::thread;
    use std::time::Instant;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    use crate::smtp::mta_sts::policy::Mode;

    const POLICY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 86400\r\n";

    /// A test CA in a CA file.
    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
        dir: tempfile::TempDir,
    }

    impl Ca {
        fn new() -> Ca {
            Ca::named("dma-rs MTA-STS test CA")
        }

        fn named(cn: &str) -> Ca {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
            Ca { issuer, dir }
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("ca.pem")
        }

        /// A TLS server configuration with a leaf for `name` from this CA.
        fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
            let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &self.issuer).unwrap();
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
            Arc::new(cfg)
        }
    }

    /// An HTTPS server on 127.0.0.1 for one connection: it reads the
    /// request (sent back on the channel), then writes each piece of
    /// `script` after its pause, then closes TLS properly.
    fn serve(
        cfg: Arc<rustls::ServerConfig>,
        script: Vec<(Duration, Vec<u8>)>,
    ) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || -> std::io::Result<()> {
            let (tcp, _) = listener.accept()?;
            let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
            let mut s = StreamOwned::new(conn, tcp);
            let mut req = Vec::new();
            let mut b = [0; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b)?;
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
            for (pause, bytes) in script {
                thread::sleep(pause);
                s.write_all(&bytes)?;
                s.flush()?;
            }
            s.conn.send_close_notify();
            s.flush()
        });
        (port, rx)
    }

    fn loopback(host: &str) -> Result<Vec<IpAddr>, String> {
        match host {
            "mta-sts.example.com" => Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
            _ => Err(format!("{host}: no such domain")),
        }
    }

    fn fetcher(ca: &Ca, port: u16) -> Fetcher<impl Addresses> {
        let mut f = Fetcher::new(loopback, Some(ca.file()));
        f.port = port;
        f.timeout = Duration::from_secs(5);
        f
    }

    fn reply(body: impl AsRef<[u8]>) -> Vec<u8> {
        let body = body.as_ref();
        let mut wire = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(body);
        wire
    }

    #[test]
    fn a_policy_is_fetched_over_verified_tls() {
        let ca = Ca::new();
        let (port, request) = serve(
            ca.server("mta-sts.example.com"),
            vec![(Duration::ZERO, reply(POLICY))],
        );
        let p = fetcher(&ca, port).fetch("example.com").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["*.example.com"]);
        let req = request.recv().unwrap();
        assert!(
            req.starts_with(
                "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            ),
            "{req}"
        );
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let ca = Ca::new();
        let (port, _) = serve(
            ca.server("www.example.com"),
            vec![(Duration::ZERO, reply(POLICY))],
        );
        let err = fetcher(&ca, port).fetch("example.com").unwrap_err();
        assert!(
            err.starts_with("fetching https://mta-sts.example.com/.well-known/mta-sts.txt: TLS with mta-sts.example.com [127.0.0.1] failed: wrong name: the certificate of mta-sts.example.com (subject CN=www.example.com) is for www.example.com, not for mta-sts.example.com"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_from_an_unknown_ca_is_refused() {
        let (ca, other) = (Ca::new(), Ca::named("another CA"));
        let (port, _) = serve(
            other.server("mta-sts.example.com"),
            vec![(Duration::ZERO, reply(POLICY))],
        );
        let err = fetcher(&ca, port).fetch("example.com").unwrap_err();
        assert!(
            err.ends_with(&format!("failed: unknown issuer: the certificate of mta-sts.example.com (subject CN=mta-sts.example.com) is issued by CN=another CA, which is not in CAFILE {}", ca.file().display())),
            "{err}"
        );
    }

    #[test]
    fn a_trickling_server_is_cut_off_at_the_deadline() {
        let ca = Ca::new();
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        let mut script = vec![(Duration::ZERO, head)];
        script.extend((0..100).map(|_| (Duration::from_millis(50), b"x".to_vec())));
        let (port, _) = serve(ca.server("mta-sts.example.com"), script);
        let mut f = fetcher(&ca, port);
        f.timeout = Duration::from_millis(600);
        let started = Instant::now();
        let err = f.fetch("example.com").unwrap_err();
        assert_eq!(
            err,
            "fetching https://mta-sts.example.com/.well-known/mta-sts.txt: timeout after 600ms"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn http_and_policy_errors_name_the_url() {
        let ca = Ca::new();
        for (wire, want) in [
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                "HTTP 404 Not Found",
            ),
            (
                reply("version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n"),
                "not a valid policy: mode enforce without an mx line",
            ),
            (
                reply(b"version: STSv1\xff\r\n"),
                "the policy is not UTF-8 text",
            ),
            (
                reply("version: STSv1\r\n\x00\r\n"),
                "not a valid policy: line 2: not \"key: value\": \"?\"",
            ),
        ] {
            let (port, _) = serve(
                ca.server("mta-sts.example.com"),
                vec![(Duration::ZERO, wire)],
            );
            let err = fetcher(&ca, port).fetch("example.com").unwrap_err();
            assert_eq!(
                err,
                format!("fetching https://mta-sts.example.com/.well-known/mta-sts.txt: {want}")
            );
        }
    }

    #[test]
    fn no_address_or_no_listener_fails_in_words() {
        let ca = Ca::new();
        let err = fetcher(&ca, 1).fetch("example.org").unwrap_err();
        assert_eq!(
            err,
            "fetching https://mta-sts.example.org/.well-known/mta-sts.txt: mta-sts.example.org: no such domain"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = fetcher(&ca, port).fetch("example.com").unwrap_err();
        assert!(err.contains(": can not connect: 127.0.0.1: "), "{err}");
    }
}
