//! A fake HTTPS server for MTA-STS policies: rustls on a given address
//! (127.0.0.N:443 needs root), answering every request with one canned
//! [`Answer`] in background threads until dropped.
//!
//! Use it as `#[path = "support/https.rs"] mod https;`.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200, text/plain, with this body (Content-Length).
    Policy(String),
    /// These bytes as the whole response, then close.
    Raw(Vec<u8>),
    /// `HTTP/1.1 200 OK` and headers, then one byte of body every 200 ms
    /// for a minute.
    Trickle,
}

/// A running fake server.
pub struct FakeHttps {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHttps {
    /// Serves `answer` with TLS configuration `tls` on `addr`.
    pub fn start(addr: &str, tls: Arc<rustls::ServerConfig>, answer: Answer) -> FakeHttps {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (answer.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (tls, a, r) = (tls.clone(), a.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &tls, &a, &r);
                });
            }
        });
        FakeHttps {
            addr,
            answer,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers later requests with `answer`.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// The request heads received (over TLS), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeHttps {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if TcpStream::connect(self.addr).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

fn serve(
    tcp: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    answer: &Mutex<Answer>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(tls.clone()).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if s.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    let answer = answer.lock().unwrap().clone();
    match answer {
        Answer::Policy(body) => {
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(response.as_bytes())?;
        }
        Answer::Raw(bytes) => s.write_all(&bytes)?,
        Answer::Trickle => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")?;
            s.flush()?;
            for _ in 0..300 {
                s.write_all(b"x")?;
                s.flush()?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    s.flush()?;
    s.conn.send_close_notify();
    s.flush()
}
