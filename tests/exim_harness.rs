//! Tests of the exim test harness (tests/support/exim.rs) itself, with a
//! tiny hand-written SMTP client: what exim offers, the RCPT ACL, the message
//! store with its envelope, AUTH, STARTTLS and implicit TLS.
//!
//! They need root and the exim that `scripts/exim-setup.sh` unpacks; without
//! them they report SKIPPED (or fail, when DMA_TESTS_REQUIRE_ROOT is set).

#[path = "support/exim.rs"]
mod exim;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use exim::{Exim, EximOptions, StoredMessage, need_exim};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A plain or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A reply: its code and the text of each line.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

/// The tiny SMTP client.
struct Client {
    conn: BufReader<Conn>,
}

impl Client {
    /// Connects to the plain port and reads the greeting.
    fn connect(port: u16) -> Client {
        Client::start(Conn::Plain(tcp(port)))
    }

    /// Connects to the implicit-TLS port, verifying exim's certificate for
    /// "localhost" against the harness CA, and reads the greeting.
    fn connect_tls(exim: &Exim) -> Client {
        Client::start(Conn::Tls(Box::new(tls(exim, tcp(exim.tls_port())))))
    }

    fn start(conn: Conn) -> Client {
        let mut c = Client {
            conn: BufReader::new(conn),
        };
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    fn reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.conn.read_line(&mut line).unwrap();
            assert!(line.ends_with("\r\n"), "truncated reply line {line:?}");
            let line = line.trim_end_matches("\r\n");
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code = line[..3].parse().unwrap();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Reply { code, lines };
            }
        }
    }

    fn send(&mut self, text: &str) {
        let w = self.conn.get_mut();
        w.write_all(text.as_bytes()).unwrap();
        w.flush().unwrap();
    }

    fn cmd(&mut self, line: &str) -> Reply {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// Sends a command and asserts the reply code.
    fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line}: {r:?}");
        r
    }

    /// STARTTLS, then the TLS handshake.
    fn starttls(self, exim: &Exim) -> Client {
        let mut c = self;
        c.expect("STARTTLS", 220);
        let Conn::Plain(tcp) = c.conn.into_inner() else {
            panic!("already TLS")
        };
        Client {
            conn: BufReader::new(Conn::Tls(Box::new(tls(exim, tcp)))),
        }
    }
}

fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A TLS client over `tcp` that trusts only the harness CA; the handshake
/// is completed here.
fn tls(exim: &Exim, mut tcp: TcpStream) -> StreamOwned<ClientConnection, TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(exim.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .unwrap_or_else(|e| panic!("TLS handshake with exim: {e}\n{}", exim.log()));
    }
    StreamOwned::new(conn, tcp)
}

fn start(users: &[(&str, &str)], tls: bool) -> Exim {
    Exim::start(EximOptions {
        users: users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        tls,
        mechanisms: Vec::new(),
        ..EximOptions::default()
    })
}

const MSG: &str = "From: a@example.net\r\nTo: ok1@example.org\r\nSubject: harness\r\n\r\nbody\r\n..dot-stuffed line\r\nFrom the start\r\n";

/// One transaction: MAIL, the RCPTs (asserting each code), DATA.
fn transaction(c: &mut Client, from: &str, rcpts: &[(&str, u16)]) {
    c.expect(&format!("MAIL FROM:<{from}>"), 250);
    for (rcpt, code) in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(r.code, *code, "RCPT {rcpt}: {r:?}");
    }
    c.expect("DATA", 354);
    c.send(MSG);
    c.expect(".", 250);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The message as sent: CRLF made LF, dot-stuffing undone.
fn sent_body() -> String {
    MSG.replace("\r\n", "\n").replace("\n..", "\n.")
}

fn check_message(exim: &Exim, m: &StoredMessage, sender: &str, rcpts: &[&str]) {
    assert_eq!(m.rcpts, strings(rcpts), "{}", exim.log());
    assert_eq!(m.sender, sender);
    assert!(m.data.starts_with("Received: from "), "{}", m.data);
    assert!(m.data.ends_with(&sent_body()), "{}", m.data);
}

#[test]
fn ehlo_offers_pipelining_and_auth_and_no_starttls_without_tls() {
    if !need_exim("ehlo_offers_pipelining_and_auth") {
        return;
    }
    let exim = start(&[], false);
    let mut c = Client::connect(exim.port());
    let r = c.expect("EHLO client.test", 250);
    assert!(r.has_line("PIPELINING"), "{r:?}");
    assert!(r.has_line("AUTH PLAIN LOGIN CRAM-MD5"), "{r:?}");
    assert!(!r.has_line("STARTTLS"), "{r:?}");
    c.expect("QUIT", 221);
}

#[test]
fn ehlo_offers_starttls_with_tls_and_again_auth_after_it() {
    if !need_exim("ehlo_offers_starttls_with_tls") {
        return;
    }
    let exim = start(&[("alice", "secret")], true);
    let mut c = Client::connect(exim.port());
    let r = c.expect("EHLO client.test", 250);
    assert!(r.has_line("STARTTLS"), "{r:?}");
    assert!(r.has_line("PIPELINING"), "{r:?}");
    assert!(r.has_line("AUTH PLAIN LOGIN CRAM-MD5"), "{r:?}");
    let mut c = c.starttls(&exim);
    let r = c.expect("EHLO client.test", 250);
    assert!(!r.has_line("STARTTLS"), "{r:?}");
    assert!(r.has_line("AUTH PLAIN LOGIN CRAM-MD5"), "{r:?}");
    let plain = B64.encode("\0alice\0secret");
    c.expect(&format!("AUTH PLAIN {plain}"), 235);
    transaction(&mut c, "s@example.net", &[("ok1@example.org", 250)]);
    c.expect("QUIT", 221);
    let msgs = exim.messages();
    assert_eq!(msgs.len(), 1, "{}", exim.log());
    check_message(&exim, &msgs[0], "s@example.net", &["ok1@example.org"]);
    assert!(
        exim.log().contains("X=TLS1.3"),
        "TLS not logged:\n{}",
        exim.log()
    );
}

#[test]
fn one_transaction_keeps_its_accepted_recipients_together() {
    if !need_exim("one_transaction_keeps_its_accepted_recipients_together") {
        return;
    }
    let exim = start(&[], false);
    let mut c = Client::connect(exim.port());
    c.expect("EHLO client.test", 250);

    exim.set_defer(true);
    let rcpts = [
        ("ok1@example.org", 250),
        ("reject1@example.org", 550),
        ("defer1@example.org", 451),
        ("ok2@example.org", 250),
    ];
    transaction(&mut c, "sender@example.net", &rcpts);
    let msgs = exim.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", exim.log());
    check_message(
        &exim,
        &msgs[0],
        "sender@example.net",
        &["ok1@example.org", "ok2@example.org"],
    );

    // The exact replies, and the flag off: defer1 is accepted.
    exim.set_defer(false);
    c.expect("MAIL FROM:<>", 250);
    c.expect("RCPT TO:<ok1@example.org>", 250);
    let r = c.expect("RCPT TO:<reject2@example.org>", 550);
    assert_eq!(r.lines, ["5.1.1 no such user"]);
    c.expect("RCPT TO:<defer1@other.example>", 250);
    c.expect("RCPT TO:<ok2@example.org>", 250);
    c.expect("DATA", 354);
    c.send(MSG);
    c.expect(".", 250);
    exim.set_defer(true);
    c.expect("MAIL FROM:<x@example.net>", 250);
    let r = c.expect("RCPT TO:<defer2@example.org>", 451);
    assert_eq!(r.lines, ["4.3.0 deferred by the test harness"]);
    c.expect("QUIT", 221);

    let msgs = exim.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}\n{}", exim.log());
    check_message(
        &exim,
        &msgs[0],
        "sender@example.net",
        &["ok1@example.org", "ok2@example.org"],
    );
    check_message(
        &exim,
        &msgs[1],
        "",
        &["ok1@example.org", "defer1@other.example", "ok2@example.org"],
    );
}

#[test]
fn pipelined_messages_arrive_in_order() {
    if !need_exim("pipelined_messages_arrive_in_order") {
        return;
    }
    let exim = start(&[], false);
    let mut c = Client::connect(exim.port());
    c.expect("EHLO client.test", 250);
    for i in 0..12 {
        // MAIL and RCPTs in one write, as a pipelining client sends them.
        c.send(&format!(
            "MAIL FROM:<s{i}@example.net>\r\nRCPT TO:<a{i}@example.org>\r\nRCPT TO:<b{i}@example.com>\r\nDATA\r\n"
        ));
        for code in [250, 250, 250, 354] {
            assert_eq!(c.reply().code, code);
        }
        c.send(MSG);
        c.expect(".", 250);
    }
    c.expect("QUIT", 221);
    let msgs = exim.messages();
    assert_eq!(msgs.len(), 12, "{}", exim.log());
    for (i, m) in msgs.iter().enumerate() {
        let a = format!("a{i}@example.org");
        let b = format!("b{i}@example.com");
        check_message(&exim, m, &format!("s{i}@example.net"), &[&a, &b]);
    }
}

#[test]
fn chunking_messages_are_stored_too() {
    if !need_exim("chunking_messages_are_stored_too") {
        return;
    }
    let exim = start(&[], false);
    let mut c = Client::connect(exim.port());
    let r = c.expect("EHLO client.test", 250);
    assert!(r.has_line("CHUNKING"), "{r:?}");
    c.expect("MAIL FROM:<b@example.net>", 250);
    c.expect("RCPT TO:<ok1@example.org>", 250);
    c.expect("RCPT TO:<ok2@example.org>", 250);
    // BDAT carries the message as it is: no dot-stuffing.
    let (head, tail) = MSG.split_at(20);
    c.send(&format!("BDAT {}\r\n{head}", head.len()));
    assert_eq!(c.reply().code, 250);
    c.send(&format!("BDAT {} LAST\r\n{tail}", tail.len()));
    assert_eq!(c.reply().code, 250);
    let msgs = exim.messages();
    assert_eq!(msgs.len(), 1, "{}", exim.log());
    assert_eq!(
        msgs[0].rcpts,
        strings(&["ok1@example.org", "ok2@example.org"])
    );
    assert!(
        msgs[0].data.ends_with(&MSG.replace("\r\n", "\n")),
        "{}",
        msgs[0].data
    );
}

#[test]
fn auth_with_configured_users_only() {
    if !need_exim("auth_with_configured_users_only") {
        return;
    }
    let exim = start(&[("alice", "secret"), ("bob@example.org", "p a:ss")], false);

    let plain = |u: &str, p: &str| format!("AUTH PLAIN {}", B64.encode(format!("\0{u}\0{p}")));
    let mut c = Client::connect(exim.port());
    c.expect("EHLO client.test", 250);
    c.expect(&plain("alice", "wrong"), 535);
    c.expect(&plain("nobody", "secret"), 535);
    c.expect(&plain("alice", "secret"), 235);

    let mut c = Client::connect(exim.port());
    c.expect("EHLO client.test", 250);
    c.expect(&plain("bob@example.org", "p a:ss"), 235);

    // LOGIN.
    let mut c = Client::connect(exim.port());
    c.expect("EHLO client.test", 250);
    c.expect("AUTH LOGIN", 334);
    c.expect(&B64.encode("alice"), 334);
    c.expect(&B64.encode("secret"), 235);

    // CRAM-MD5.
    for (password, code) in [("wrong", 535), ("secret", 235)] {
        let mut c = Client::connect(exim.port());
        c.expect("EHLO client.test", 250);
        let r = c.expect("AUTH CRAM-MD5", 334);
        let challenge = B64.decode(&r.lines[0]).unwrap();
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<md5::Md5> as KeyInit>::new_from_slice(password.as_bytes()).unwrap();
        mac.update(&challenge);
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        c.expect(&B64.encode(format!("alice {digest}")), code);
    }
}

#[test]
fn implicit_tls_port_greets_after_the_handshake() {
    if !need_exim("implicit_tls_port_greets_after_the_handshake") {
        return;
    }
    let exim = start(&[], true);
    assert_ne!(exim.port(), exim.tls_port());
    assert!(exim.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        std::fs::read_to_string(exim.ca_path()).unwrap(),
        exim.ca_pem()
    );
    let mut c = Client::connect_tls(&exim);
    let r = c.expect("EHLO client.test", 250);
    assert!(!r.has_line("STARTTLS"), "{r:?}");
    transaction(&mut c, "tls@example.net", &[("ok1@example.org", 250)]);
    c.expect("QUIT", 221);
    let msgs = exim.messages();
    assert_eq!(msgs.len(), 1, "{}", exim.log());
    check_message(&exim, &msgs[0], "tls@example.net", &["ok1@example.org"]);
}

#[test]
fn drop_stops_exim_and_removes_its_directory() {
    if !need_exim("drop_stops_exim_and_removes_its_directory") {
        return;
    }
    let exim = start(&[], false);
    let (port, dir) = (exim.port(), exim.dir().to_path_buf());
    drop(exim);
    assert!(!dir.exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
