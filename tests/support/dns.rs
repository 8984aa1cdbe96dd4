//! A fake DNS server for tests: UDP and TCP on the same 127.0.0.1 port,
//! answering from a fixed list of [`Record`]s in background threads until
//! dropped.
//!
//! Use it as `support::dns` (through `mod support;`) or on its own:
//! `#[path = "support/dns.rs"] mod fakedns;`.
//!
//! Unknown names get NXDOMAIN; a known name without records of the asked
//! type gets NOERROR with no answers. [`Record::Cname`] chains are followed
//! in the answer, like a recursive server does; [`Record::BareCname`] ones
//! are not (the client must ask about the target).

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use simple_dns::rdata::{A, AAAA, CNAME, MX, NULL, RData, TXT};
use simple_dns::{
    CLASS, CharacterString, Name, Packet, PacketFlag, QTYPE, RCODE, ResourceRecord, TYPE,
};

/// The type code of TLSA, unknown to simple-dns.
const TLSA: u16 = 52;

/// Rewrites a query's TLSA question to NULL (see dma_rs's resolver); whether
/// it did.
fn shim_tlsa(msg: &mut [u8]) -> bool {
    if msg.len() < 12 {
        return false;
    }
    let mut i = 12;
    while let Some(&len) = msg.get(i) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        i += 1 + usize::from(len);
    }
    match msg.get(i + 1..i + 3) {
        Some(t) if t == TLSA.to_be_bytes() => {
            msg[i + 1..i + 3].copy_from_slice(&10u16.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// What the fake knows. Names are matched case-insensitively, with or
/// without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `domain MX pref exchange`; an exchange of "." is a null MX.
    Mx(String, u16, String),
    /// `name A addr`.
    A(String, Ipv4Addr),
    /// `name AAAA addr`.
    Aaaa(String, Ipv6Addr),
    /// `name CNAME target`, followed in answers.
    Cname(String, String),
    /// `name CNAME target`, not followed: the answer holds only the CNAME.
    BareCname(String, String),
    /// The name does not exist (NXDOMAIN).
    NxDomain(String),
    /// Questions about the name get SERVFAIL.
    ServFail(String),
    /// Questions about the name get REFUSED.
    Refused(String),
    /// UDP replies for the name have TC set and no answers; TCP replies are
    /// complete.
    Truncate(String),
    /// Questions about the name are never answered (for timeouts).
    Silent(String),
    /// Each UDP reply for the name is preceded by a bogus one (an A record
    /// 192.0.2.66, NXDOMAIN) with the wrong id.
    WrongIdFirst(String),
    /// ... by a bogus one with the right id from another port.
    WrongSourceFirst(String),
    /// ... by a bogus one with the right id about another question.
    WrongQuestionFirst(String),
    /// `name TXT "string" ...`: one record; strings longer than 255 bytes
    /// are split into several, as zone files do.
    Txt(String, Vec<String>),
    /// `name TLSA usage selector matching-type data`.
    Tlsa(String, u8, u8, u8, Vec<u8>),
    /// Replies to questions about the name have the AD bit set (the
    /// resolver validated them).
    Secure(String),
}

/// One question the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The name as sent.
    pub name: String,
    /// The query type code (1 A, 5 CNAME, 15 MX, 16 TXT, 28 AAAA, 52 TLSA).
    pub qtype: u16,
    /// Whether it came over TCP.
    pub tcp: bool,
    /// Whether the RD bit was set.
    pub rd: bool,
    /// Whether the AD bit was set (asking for it in the reply, RFC 6840).
    pub ad: bool,
}

/// A running fake server.
pub struct FakeDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    records: Vec<Record>,
    log: Mutex<Vec<Seen>>,
    count: AtomicUsize,
    stop: AtomicBool,
}

impl FakeDns {
    /// Starts serving `records` on 127.0.0.1 (UDP and TCP, same port).
    pub fn start(records: Vec<Record>) -> FakeDns {
        FakeDns::serve(bind_pair(), records)
    }

    /// Starts serving `records` on `addr` (UDP and TCP), such as
    /// 127.0.0.153:53 for a program that asks port 53 (root binds it).
    pub fn start_on(addr: &str, records: Vec<Record>) -> FakeDns {
        let udp = UdpSocket::bind(addr).unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        FakeDns::serve((udp, tcp), records)
    }

    fn serve((udp, tcp): (UdpSocket, TcpListener), records: Vec<Record>) -> FakeDns {
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let shared = Arc::new(Shared {
            records,
            log: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let udp_thread = std::thread::spawn(move || serve_udp(&udp, &s));
        let s = shared.clone();
        let tcp_thread = std::thread::spawn(move || serve_tcp(&tcp, &s));
        FakeDns {
            addr,
            shared,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many questions it received (UDP and TCP).
    pub fn queries(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// The questions it received, in order.
    pub fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the UDP loop polls the flag.
        if TcpStream::connect(self.addr).is_ok() {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// A UDP socket on a free port and a TCP listener on the same one.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (udp, tcp);
        }
    }
    panic!("no free port for UDP and TCP on 127.0.0.1");
}

fn serve_udp(udp: &UdpSocket, shared: &Shared) {
    let mut buf = [0; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        for reply in shared.answer(&buf[..n], false) {
            match reply {
                Out::Direct(bytes) => drop(udp.send_to(&bytes, from)),
                Out::FromElsewhere(bytes) => {
                    let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                    let _ = other.send_to(&bytes, from);
                }
            }
        }
    }
}

fn serve_tcp(tcp: &TcpListener, shared: &Arc<Shared>) {
    for stream in tcp.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut len = [0; 2];
            while stream.read_exact(&mut len).is_ok() {
                let mut msg = vec![0; u16::from_be_bytes(len).into()];
                if stream.read_exact(&mut msg).is_err() {
                    return;
                }
                for reply in shared.answer(&msg, true) {
                    if let Out::Direct(bytes) = reply {
                        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&bytes);
                        if stream.write_all(&framed).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// A reply to send back, from the server's socket or from another one.
enum Out {
    Direct(Vec<u8>),
    FromElsewhere(Vec<u8>),
}

fn same(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn name(text: &str) -> Name<'_> {
    Name::new(text).unwrap()
}

impl Record {
    fn owner(&self) -> &str {
        match self {
            Record::Mx(n, ..)
            | Record::A(n, _)
            | Record::Aaaa(n, _)
            | Record::Cname(n, _)
            | Record::BareCname(n, _)
            | Record::NxDomain(n)
            | Record::ServFail(n)
            | Record::Refused(n)
            | Record::Truncate(n)
            | Record::Silent(n)
            | Record::WrongIdFirst(n)
            | Record::WrongSourceFirst(n)
            | Record::WrongQuestionFirst(n)
            | Record::Txt(n, _)
            | Record::Tlsa(n, ..)
            | Record::Secure(n) => n,
        }
    }

    /// The resource record, for the data kinds.
    fn rr(&self) -> Option<ResourceRecord<'_>> {
        let rdata = match self {
            Record::Mx(_, preference, exchange) => RData::MX(MX {
                preference: *preference,
                exchange: name(exchange),
            }),
            Record::A(_, ip) => RData::A(A::from(*ip)),
            Record::Aaaa(_, ip) => RData::AAAA(AAAA::from(*ip)),
            Record::Cname(_, target) | Record::BareCname(_, target) => {
                RData::CNAME(CNAME(name(target)))
            }
            Record::Txt(_, strings) => {
                let mut txt = TXT::new();
                for s in strings {
                    for piece in s.as_bytes().chunks(255) {
                        txt.add_char_string(CharacterString::new(piece).unwrap());
                    }
                }
                RData::TXT(txt)
            }
            Record::Tlsa(_, usage, selector, mtype, data) => {
                let mut raw = vec![*usage, *selector, *mtype];
                raw.extend_from_slice(data);
                let null = NULL::new(&raw).unwrap().into_owned();
                RData::NULL(TLSA, null)
            }
            _ => return None,
        };
        Some(ResourceRecord::new(
            name(self.owner()),
            CLASS::IN,
            300,
            rdata,
        ))
    }
}

impl Shared {
    fn has(&self, owner: &str, pick: impl Fn(&Record) -> bool) -> bool {
        self.records
            .iter()
            .any(|r| same(r.owner(), owner) && pick(r))
    }

    /// The replies to one query message (none for garbage or silence).
    fn answer(&self, msg: &[u8], tcp: bool) -> Vec<Out> {
        // simple-dns refuses questions of type TLSA: parse it as NULL, and
        // put TLSA back in the reply.
        let mut msg = msg.to_vec();
        let tlsa = shim_tlsa(&mut msg);
        let Ok(query) = Packet::parse(&msg) else {
            return Vec::new();
        };
        let Some(mut question) = query.questions.first().cloned() else {
            return Vec::new();
        };
        if tlsa {
            question.qtype = QTYPE::TYPE(TYPE::Unknown(TLSA));
        }
        let qname = question.qname.to_string();
        let qtype = u16::from(question.qtype);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(Seen {
            name: qname.clone(),
            qtype,
            tcp,
            rd: query.has_flags(PacketFlag::RECURSION_DESIRED),
            ad: query.has_flags(PacketFlag::AUTHENTIC_DATA),
        });
        if self.has(&qname, |r| matches!(r, Record::Silent(_))) {
            return Vec::new();
        }

        let mut reply = Packet::new_reply(query.id());
        reply.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
        if self.has(&qname, |r| matches!(r, Record::Secure(_))) {
            reply.set_flags(PacketFlag::AUTHENTIC_DATA);
        }
        reply.questions.push(question.clone());
        let mut out = Vec::new();
        if !tcp {
            let bogus = |id: u16, q: simple_dns::Question<'static>| {
                let mut p = Packet::new_reply(id);
                p.questions.push(q);
                let ip = A::from(Ipv4Addr::new(192, 0, 2, 66));
                let rr = ResourceRecord::new(question.qname.clone(), CLASS::IN, 300, RData::A(ip));
                p.answers.push(rr);
                *p.rcode_mut() = RCODE::NameError;
                p.build_bytes_vec().unwrap()
            };
            let q = question.clone().into_owned();
            if self.has(&qname, |r| matches!(r, Record::WrongIdFirst(_))) {
                out.push(Out::Direct(bogus(query.id().wrapping_add(1), q.clone())));
            }
            if self.has(&qname, |r| matches!(r, Record::WrongSourceFirst(_))) {
                out.push(Out::FromElsewhere(bogus(query.id(), q.clone())));
            }
            if self.has(&qname, |r| matches!(r, Record::WrongQuestionFirst(_))) {
                let other = simple_dns::Question::new(
                    name("elsewhere.invalid").into_owned(),
                    q.qtype,
                    q.qclass,
                    false,
                );
                out.push(Out::Direct(bogus(query.id(), other)));
            }
        }

        if self.has(&qname, |r| matches!(r, Record::ServFail(_))) {
            *reply.rcode_mut() = RCODE::ServerFailure;
        } else if self.has(&qname, |r| matches!(r, Record::Refused(_))) {
            *reply.rcode_mut() = RCODE::Refused;
        } else if !tcp && self.has(&qname, |r| matches!(r, Record::Truncate(_))) {
            reply.set_flags(PacketFlag::TRUNCATION);
        } else {
            // Resolve like a recursive server: the chain of CNAMEs, then the
            // records of the asked type at its end.
            let mut owner = qname.clone();
            for _ in 0..20 {
                if !self.has(&owner, |r| {
                    r.rr().is_some() || matches!(r, Record::Secure(_))
                }) || self.has(&owner, |r| matches!(r, Record::NxDomain(_)))
                {
                    *reply.rcode_mut() = RCODE::NameError;
                    break;
                }
                let wanted = |r: &Record| {
                    r.rr()
                        .is_some_and(|rr| u16::from(rr.rdata.type_code()) == qtype)
                };
                let cname = self.records.iter().find(|r| {
                    same(r.owner(), &owner)
                        && matches!(r, Record::Cname(..) | Record::BareCname(..))
                });
                match cname {
                    Some(c @ (Record::Cname(_, target) | Record::BareCname(_, target)))
                        if qtype != u16::from(TYPE::CNAME) =>
                    {
                        reply.answers.push(c.rr().unwrap());
                        if matches!(c, Record::BareCname(..)) {
                            break;
                        }
                        owner = target.clone();
                    }
                    _ => {
                        let found = self
                            .records
                            .iter()
                            .filter(|r| same(r.owner(), &owner) && wanted(r));
                        reply.answers.extend(found.filter_map(Record::rr));
                        break;
                    }
                }
            }
        }
        out.push(Out::Direct(reply.build_bytes_vec().unwrap()));
        out
    }
}
