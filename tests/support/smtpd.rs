//! A scripted SMTP server on 127.0.0.1:0 for the faults a real server will
//! not produce on demand: it records every read (to prove pipelining), every
//! command and every message, and misbehaves as told.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server behaves.
pub struct Behavior {
    /// The greeting line.
    pub greeting: String,
    /// EHLO keywords after the first line.
    pub ehlo: Vec<String>,
    /// The reply to each RCPT TO address.
    pub rcpt: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Reply 452 to the recipients after this many in one transaction.
    pub max_rcpts: Option<usize>,
    /// Close the connection after the message data, before the final reply.
    pub drop_after_data: bool,
    /// Never answer this command (prefix), to test timeouts.
    pub stall_on: Option<String>,
    /// After the STARTTLS 220, also send these bytes (injection test).
    pub starttls_inject: Option<String>,
    /// The reply to AUTH (any mechanism).
    pub auth_reply: String,
    /// The final reply after the message data.
    pub data_reply: String,
    /// Send this raw text as the reply to MAIL FROM (malformed replies).
    pub mail_reply_raw: Option<String>,
    /// Implicit TLS with this server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// STARTTLS with this server configuration: offered in EHLO (until TLS
    /// is up), and the connection upgraded.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// On the first connection only: after the message data, wait 30 s
    /// before the final reply (to kill the client meanwhile).
    pub stall_after_first_data: bool,
    /// Send this one byte at a time, for [`TRICKLE_FOR`] (a slowloris).
    pub trickle: Option<Trickle>,
}

/// What a trickling server sends slowly, without end: its bytes come often
/// enough that no per-read timeout ever trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trickle {
    /// The greeting: `220-` lines, one byte every 500 ms.
    Greeting,
    /// The reply to each RCPT: `250-` lines, one byte every 500 ms.
    Rcpt,
    /// The final reply after the message data: `250-` lines, likewise.
    DataReply,
    /// The message data: read 2 KiB a second through a 4 KiB receive
    /// buffer (so the window opens a little every second).
    DataRead,
    /// Implicit TLS: from the start, instead of a ServerHello, a TLS
    /// handshake record header and then one byte every 200 ms.
    ImplicitTls,
    /// STARTTLS (offer it in `ehlo`): "220 ready", then, once the
    /// ClientHello is in, as `ImplicitTls`.
    StartTls,
}

/// How long a trickle goes on before the server gives up and closes (the
/// client should have given up long before).
pub const TRICKLE_FOR: Duration = Duration::from_secs(75);

/// Sends `head`, then `unit` over and over, one byte each `gap`, until
/// [`TRICKLE_FOR`] has passed or the client has gone.
fn trickle(w: &mut impl Write, head: &[u8], unit: &[u8], gap: Duration) -> std::io::Result<()> {
    let start = std::time::Instant::now();
    for b in head.iter().chain(unit.iter().cycle()) {
        if start.elapsed() > TRICKLE_FOR {
            return Ok(());
        }
        w.write_all(&[*b])?;
        w.flush()?;
        std::thread::sleep(gap);
    }
    Ok(())
}

/// A TLS handshake record header announcing 16 KiB that never come whole.
const TLS_RECORD: [u8; 5] = [0x16, 0x03, 0x03, 0x40, 0x00];

impl Default for Behavior {
    fn default() -> Behavior {
        Behavior {
            greeting: "220 fake.test ESMTP".into(),
            ehlo: vec![
                "PIPELINING".into(),
                "8BITMIME".into(),
                "SIZE 10000000".into(),
            ],
            rcpt: Box::new(|_| "250 2.1.5 ok".into()),
            max_rcpts: None,
            drop_after_data: false,
            stall_on: None,
            starttls_inject: None,
            auth_reply: "235 2.7.0 ok".into(),
            data_reply: "250 2.0.0 queued".into(),
            mail_reply_raw: None,
            tls: None,
            starttls: None,
            stall_after_first_data: false,
            trickle: None,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone)]
pub struct Message {
    pub sender: String,
    pub rcpts: Vec<String>,
    pub data: String,
    /// Whether it came over TLS (implicit or STARTTLS).
    pub tls: bool,
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Every chunk read from a client, in order.
    pub reads: Vec<String>,
    /// Every command line.
    pub commands: Vec<String>,
    /// Every message accepted (the final reply was sent).
    pub messages: Vec<Message>,
    /// Connections accepted.
    pub connections: usize,
}

/// A running fake server; it stops with the test process.
pub struct FakeSmtp {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
}

impl FakeSmtp {
    pub fn start(b: Behavior) -> FakeSmtp {
        FakeSmtp::start_on("127.0.0.1:0", b)
    }

    /// On a given address (MX tests listen on 127.0.0.N:25).
    pub fn start_on(addr: &str, b: Behavior) -> FakeSmtp {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        if b.trickle == Some(Trickle::DataRead) {
            // Before the accept: the window the handshake offers is small.
            use nix::sys::socket::{setsockopt, sockopt::RcvBuf};
            setsockopt(&l, RcvBuf, &4096).expect("SO_RCVBUF");
        }
        let addr = l.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let b = Arc::new(b);
        let log2 = log.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let n = {
                    let mut log = log2.lock().unwrap();
                    log.connections += 1;
                    log.connections
                };
                let (b, log) = (b.clone(), log2.clone());
                std::thread::spawn(move || {
                    let _ = serve(c, n, &b, &log);
                });
            }
        });
        FakeSmtp { addr, log }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().commands.clone()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.log.lock().unwrap().messages.clone()
    }

    pub fn reads(&self) -> Vec<String> {
        self.log.lock().unwrap().reads.clone()
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }
}

/// Something to talk over: TCP or TLS.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// `conn` with TLS on it, server side.
fn upgrade(conn: Box<dyn Conn>, cfg: &Arc<rustls::ServerConfig>) -> std::io::Result<Box<dyn Conn>> {
    let c = rustls::ServerConnection::new(cfg.clone()).map_err(std::io::Error::other)?;
    Ok(Box::new(rustls::StreamOwned::new(c, conn)))
}

/// Records each read into the log.
struct Recorder {
    s: Box<dyn Conn>,
    log: Arc<Mutex<Log>>,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.s.read(buf)?;
        if n > 0 {
            self.log
                .lock()
                .unwrap()
                .reads
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        Ok(n)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

/// One session; `n` counts connections from 1.
fn serve(s: TcpStream, n: usize, b: &Behavior, log: &Arc<Mutex<Log>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let slow = Duration::from_millis(500);
    let tls_slow = Duration::from_millis(200);
    if b.trickle == Some(Trickle::ImplicitTls) {
        return trickle(&mut &s, &TLS_RECORD, &[0], tls_slow);
    }
    let mut tls = b.tls.is_some();
    let conn: Box<dyn Conn> = match &b.tls {
        Some(cfg) => upgrade(Box::new(s), cfg)?,
        None => Box::new(s),
    };
    let mut r = BufReader::new(Recorder {
        s: conn,
        log: log.clone(),
    });
    let say = |r: &mut BufReader<Recorder>, text: &str| {
        let w = r.get_mut();
        w.write_all(format!("{text}\r\n").as_bytes())?;
        w.flush()
    };
    if b.trickle == Some(Trickle::Greeting) {
        return trickle(r.get_mut(), b"", b"220-still waking up\r\n", slow);
    }
    say(&mut r, &b.greeting)?;
    let mut sender = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut count = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        log.lock().unwrap().commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        if b.stall_on.as_deref().is_some_and(|p| upper.starts_with(p)) {
            std::thread::sleep(Duration::from_secs(30));
            return Ok(());
        }
        if upper.starts_with("EHLO") {
            let mut lines = vec!["fake.test".to_string()];
            lines.extend(b.ehlo.iter().cloned());
            if b.starttls.is_some() && !tls {
                lines.push("STARTTLS".into());
            }
            let n = lines.len();
            for (i, l) in lines.iter().enumerate() {
                say(
                    &mut r,
                    &format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }),
                )?;
            }
        } else if upper.starts_with("HELO") {
            say(&mut r, "250 fake.test")?;
        } else if upper.starts_with("STARTTLS") && b.trickle == Some(Trickle::StartTls) {
            say(&mut r, "220 ready")?;
            // The ClientHello first: a byte sent before it would arrive with
            // the 220, which the client rightly calls an injection.
            r.read_exact(&mut [0; 5])?;
            return trickle(r.get_mut(), &TLS_RECORD, &[0], tls_slow);
        } else if let (true, false, Some(cfg)) = (upper == "STARTTLS", tls, &b.starttls) {
            say(&mut r, "220 2.0.0 ready")?;
            let plain = r.into_inner().s;
            r = BufReader::new(Recorder {
                s: upgrade(plain, cfg)?,
                log: log.clone(),
            });
            tls = true;
            sender.clear();
            rcpts.clear();
        } else if upper.starts_with("STARTTLS") {
            match &b.starttls_inject {
                Some(extra) => say(&mut r, &format!("220 go ahead\r\n{}", extra.trim_end()))?,
                None => say(&mut r, "454 4.7.0 TLS not available")?,
            }
        } else if upper.starts_with("AUTH") {
            say(&mut r, &b.auth_reply)?;
        } else if upper.starts_with("MAIL FROM:") {
            sender = cmd[10..].trim().to_string();
            rcpts.clear();
            count = 0;
            match &b.mail_reply_raw {
                Some(raw) => say(&mut r, raw.trim_end())?,
                None => say(&mut r, "250 2.1.0 ok")?,
            }
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            count += 1;
            if b.trickle == Some(Trickle::Rcpt) {
                return trickle(r.get_mut(), b"", b"250-still checking\r\n", slow);
            }
            let reply = match b.max_rcpts {
                Some(m) if count > m => "452 4.5.3 too many recipients".to_string(),
                _ => (b.rcpt)(&addr),
            };
            if reply.starts_with('2') {
                rcpts.push(addr);
            }
            say(&mut r, &reply)?;
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                say(&mut r, "554 5.5.1 no valid recipients")?;
                continue;
            }
            say(&mut r, "354 go ahead")?;
            if b.trickle == Some(Trickle::DataRead) {
                let start = std::time::Instant::now();
                let mut chunk = [0; 2048];
                while start.elapsed() < TRICKLE_FOR && r.read(&mut chunk)? > 0 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                return Ok(());
            }
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            if b.drop_after_data {
                return Ok(());
            }
            if b.trickle == Some(Trickle::DataReply) {
                return trickle(r.get_mut(), b"", b"250-still storing\r\n", slow);
            }
            if b.stall_after_first_data && n == 1 {
                log.lock()
                    .unwrap()
                    .commands
                    .push("<stalled after data>".into());
                std::thread::sleep(Duration::from_secs(30));
                return Ok(());
            }
            if b.data_reply.starts_with('2') {
                log.lock().unwrap().messages.push(Message {
                    sender: sender.clone(),
                    rcpts: rcpts.clone(),
                    data,
                    tls,
                });
            }
            say(&mut r, &b.data_reply)?;
        } else if upper == "RSET" {
            rcpts.clear();
            count = 0;
            say(&mut r, "250 2.0.0 reset")?;
        } else if upper == "QUIT" {
            say(&mut r, "221 2.0.0 bye")?;
            return Ok(());
        } else {
            say(&mut r, "500 5.5.2 what")?;
        }
    }
}
