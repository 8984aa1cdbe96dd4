//! A small synchronous stub resolver for mail routing (RFC 5321 §5.1).
//!
//! [`Resolver::mx_hosts`] finds the mail exchangers of a domain, with the
//! implicit MX (the domain itself when it has no MX records) and the RFC 7505
//! null MX; [`Resolver::addresses`] finds the AAAA and A records of a host;
//! [`Resolver::txt`] and [`Resolver::tlsa`] find the records MTA-STS
//! (RFC 8461) and DANE (RFC 7672) start from.
//!
//! DNSSEC: we do not validate, we ask (the AD bit, RFC 6840 §5.7) and
//! believe the answer only from a resolver we trust to validate: one on
//! loopback, or any under `options trust-ad` in resolv.conf, as glibc and
//! Postfix do. [`Lookup::secure`] says whether every answer on the way was
//! so validated.
//! The recursion is the nameserver's job: we send one question with the RD
//! bit over UDP to each configured server in turn, fall back to TCP when the
//! reply is truncated, and follow the CNAME chains in the answers. The wire
//! format is simple-dns's.
//!
//! Failures come as [`DnsError`]s, which say whether they are permanent
//! (bounce) or temporary (keep the message and retry later).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};

use super::deadline::{Deadline, TimedTcp, is_timeout};

/// How many CNAMEs we follow from one name before giving up.
const MAX_CNAME: usize = 10;

/// A stub resolver: where to send questions, and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// The nameservers, tried in this order.
    pub servers: Vec<SocketAddr>,
    /// How long we wait for one reply from one server.
    pub timeout: Duration,
    /// How many rounds over all the servers before we give up.
    pub attempts: u32,
    /// Whether the servers' AD bit is believed: every server is on loopback,
    /// or resolv.conf says `options trust-ad`.
    pub trust_ad: bool,
}

/// Records found, and whether DNSSEC vouched for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<T> {
    /// The records (empty: the name exists without records of the type).
    pub records: T,
    /// Whether every answer on the way (CNAMEs included) came with the AD
    /// bit from a resolver trusted to set it ([`Resolver::trust_ad`]).
    pub secure: bool,
}

/// The DNS type code of TLSA (RFC 6698), which simple-dns does not know.
const TLSA: u16 = 52;

/// One mail exchanger of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The MX preference: lower is tried first.
    pub preference: u16,
    /// The exchanger's host name, without a trailing dot.
    pub name: String,
}

/// Why a lookup gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the domain does not exist (permanent: bounce).
    #[error("DNS lookup failure: host {0} not found")]
    NotFound(String),
    /// RFC 7505 null MX ("0 ."): the domain accepts no mail (permanent).
    #[error("{0} does not accept mail (null MX)")]
    NullMx(String),
    /// The name exists but has no address record (permanent for that host).
    #[error("{0} has no address")]
    NoAddress(String),
    /// SERVFAIL, REFUSED, timeouts, network errors, malformed answers
    /// (temporary: retry later).
    #[error("temporary DNS failure for {0}: {1}")]
    Temporary(String, String),
}

impl DnsError {
    /// Whether retrying later cannot help (the message should bounce).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Temporary(..))
    }
}

/// The record data we care about, owned.
#[derive(Debug, Clone)]
enum Data {
    Mx(u16, String),
    Addr(IpAddr),
    Cname(String),
    /// A TXT record, its strings joined (RFC 7208 §3.3 and RFC 8461 §3.1
    /// both read a record so); None when that is not UTF-8.
    Txt(Option<String>),
    /// A TLSA record's data (RFC 6698 §2.1).
    Tlsa(Vec<u8>),
    Other,
}

impl Data {
    fn is(&self, qtype: TYPE) -> bool {
        matches!(
            (self, qtype),
            (Data::Mx(..), TYPE::MX)
                | (Data::Addr(IpAddr::V4(_)), TYPE::A)
                | (Data::Addr(IpAddr::V6(_)), TYPE::AAAA)
                | (Data::Txt(_), TYPE::TXT)
        ) || matches!((self, qtype), (Data::Tlsa(_), TYPE::Unknown(TLSA)))
    }
}

/// A reply that matched our question: its rcode and answer section, with
/// owner names in lower case.
struct Reply {
    rcode: RCODE,
    /// The AD bit.
    authentic: bool,
    answers: Vec<(String, Data)>,
}

impl Resolver {
    /// Nameservers from /etc/resolv.conf (port 53); 127.0.0.1:53 if none.
    ///
    /// Its `timeout` and `attempts` options are honoured (default 5 s and 2,
    /// capped at 30 s and 5 like glibc).
    pub fn from_system() -> Resolver {
        let conf = std::fs::read("/etc/resolv.conf")
            .ok()
            .map(|bytes| resolv_conf::Config::parse_with_errors(&bytes).0);
        let mut resolver = Resolver::with_server(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        if let Some(conf) = conf {
            let servers: Vec<SocketAddr> = conf
                .nameservers
                .iter()
                .map(|ip| match ip {
                    resolv_conf::ScopedIp::V4(ip) => SocketAddr::from((*ip, 53)),
                    resolv_conf::ScopedIp::V6(ip, scope) => {
                        let scope = scope.as_deref().and_then(|s| s.parse().ok());
                        SocketAddrV6::new(*ip, 53, 0, scope.unwrap_or(0)).into()
                    }
                })
                .collect();
            if !servers.is_empty() {
                resolver.servers = servers;
            }
            resolver.timeout = Duration::from_secs(conf.timeout.clamp(1, 30).into());
            resolver.attempts = conf.attempts.clamp(1, 5);
            resolver.trust_ad = conf.trust_ad || all_loopback(&resolver.servers);
        }
        resolver
    }

    /// One nameserver (the NAMESERVER config key; tests use a loopback fake).
    pub fn with_server(addr: SocketAddr) -> Resolver {
        Resolver {
            servers: vec![addr],
            timeout: Duration::from_secs(5),
            attempts: 2,
            trust_ad: all_loopback(&[addr]),
        }
    }

    /// The MX hosts of `domain`, best first.
    ///
    /// Hosts of equal preference come in random order. A domain without MX
    /// records has the implicit MX `0 domain`; a null MX gives
    /// [`DnsError::NullMx`].
    pub fn mx_hosts(&self, domain: &str) -> Result<Vec<MxHost>, DnsError> {
        self.mx_lookup(domain).map(|l| l.records)
    }

    /// [`Resolver::mx_hosts`], saying whether the MX RRset (or, for the
    /// implicit MX, the NODATA answer) was DNSSEC-validated.
    pub fn mx_lookup(&self, domain: &str) -> Result<Lookup<Vec<MxHost>>, DnsError> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let (records, secure) = self.lookup(domain, TYPE::MX)?;
        if records.is_empty() {
            return Ok(Lookup {
                records: vec![MxHost {
                    preference: 0,
                    name: domain.to_string(),
                }],
                secure,
            });
        }
        // The root exchange is the null MX. It must stand alone (RFC 7505
        // §3); mixed with real exchangers, we just skip it.
        let mut hosts: Vec<MxHost> = records
            .into_iter()
            .filter_map(|data| match data {
                Data::Mx(preference, name) if !name.is_empty() => Some(MxHost { preference, name }),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Err(DnsError::NullMx(domain.to_string()));
        }
        hosts.sort_by_key(|h| h.preference);
        for group in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
            for i in (1..group.len()).rev() {
                group.swap(i, (random_u32() % (i as u32 + 1)) as usize);
            }
        }
        Ok(Lookup {
            records: hosts,
            secure,
        })
    }

    /// The addresses of `host`: AAAA then A records (CNAMEs followed).
    ///
    /// When one of the two lookups fails temporarily but the other gives
    /// addresses, those are the answer.
    pub fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        self.address_lookup(host).map(|l| l.records)
    }

    /// [`Resolver::addresses`], saying whether the answers it took the
    /// addresses from were DNSSEC-validated. A family whose lookup failed
    /// gives no addresses and says nothing about the others: an attacker
    /// who makes the AAAA question fail must not strip DANE from the
    /// signed A records (Postfix judges each RRset on its own too).
    pub fn address_lookup(&self, host: &str) -> Result<Lookup<Vec<IpAddr>>, DnsError> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut addrs = Vec::new();
        let mut failure = None;
        let mut all_secure = true;
        for qtype in [TYPE::AAAA, TYPE::A] {
            match self.lookup(host, qtype) {
                Ok((records, secure)) => {
                    all_secure &= secure;
                    addrs.extend(records.into_iter().filter_map(|data| match data {
                        Data::Addr(ip) => Some(ip),
                        _ => None,
                    }))
                }
                Err(e @ DnsError::NotFound(_)) if addrs.is_empty() => return Err(e),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) if addrs.is_empty() => Err(e),
            _ if addrs.is_empty() => Err(DnsError::NoAddress(host.to_string())),
            _ => Ok(Lookup {
                records: addrs,
                secure: all_secure,
            }),
        }
    }

    /// The TXT records of `name`, each one's strings joined; records that
    /// are not UTF-8 are left out. None: NODATA. Errors: NotFound (NXDOMAIN)
    /// or Temporary.
    pub fn txt(&self, name: &str) -> Result<Lookup<Vec<String>>, DnsError> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let (records, secure) = self.lookup(name, TYPE::TXT)?;
        let records = records
            .into_iter()
            .filter_map(|data| match data {
                Data::Txt(text) => text,
                _ => None,
            })
            .collect();
        Ok(Lookup { records, secure })
    }

    /// The TLSA records of `name` (`_25._tcp.mx.example`), as their raw
    /// data: usage, selector, matching type, then the association data.
    /// Errors: NotFound (NXDOMAIN) or Temporary.
    pub fn tlsa(&self, name: &str) -> Result<Lookup<Vec<Vec<u8>>>, DnsError> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let (records, secure) = self.lookup(name, TYPE::Unknown(TLSA))?;
        let records = records
            .into_iter()
            .filter_map(|data| match data {
                Data::Tlsa(raw) => Some(raw),
                _ => None,
            })
            .collect();
        Ok(Lookup { records, secure })
    }

    /// The records of type `qtype` for `name`, following CNAMEs; empty when
    /// the name exists without such records; and whether every reply on the
    /// way was validated (AD from a trusted resolver). Errors: NotFound or
    /// Temporary.
    fn lookup(&self, name: &str, qtype: TYPE) -> Result<(Vec<Data>, bool), DnsError> {
        let mut qname = name.to_string();
        let mut hops = 0;
        let mut secure = self.trust_ad;
        loop {
            let reply = self.query(name, &qname, qtype)?;
            if reply.rcode == RCODE::NameError {
                return Err(DnsError::NotFound(name.to_string()));
            }
            secure &= reply.authentic;
            let mut owner = qname.to_ascii_lowercase();
            loop {
                let found: Vec<Data> = reply
                    .answers
                    .iter()
                    .filter(|(o, data)| *o == owner && data.is(qtype))
                    .map(|(_, data)| data.clone())
                    .collect();
                if !found.is_empty() {
                    return Ok((found, secure));
                }
                let target = reply.answers.iter().find_map(|(o, data)| match data {
                    Data::Cname(target) if *o == owner => Some(target.to_ascii_lowercase()),
                    _ => None,
                });
                let Some(target) = target else { break };
                hops += 1;
                if hops > MAX_CNAME {
                    let why = format!("more than {MAX_CNAME} CNAMEs");
                    return Err(DnsError::Temporary(name.to_string(), why));
                }
                owner = target;
            }
            if owner == qname.to_ascii_lowercase() {
                return Ok((Vec::new(), secure));
            }
            // The answer ends at a CNAME: ask about its target.
            qname = owner;
        }
    }

    /// Asks the servers in turn until one gives NOERROR or NXDOMAIN.
    /// `name` is what the caller asked about, for error messages.
    fn query(&self, name: &str, qname: &str, qtype: TYPE) -> Result<Reply, DnsError> {
        let qn = match Name::new(qname) {
            Ok(qn) if !qn.get_labels().is_empty() => qn,
            _ => return Err(DnsError::NotFound(name.to_string())),
        };
        let mut why = "no nameserver configured".to_string();
        for _ in 0..self.attempts.max(1) {
            for &server in &self.servers {
                let id = random_u32() as u16;
                let mut packet = Packet::new_query(id);
                // AD in a query asks for the AD bit in the reply (RFC 6840
                // §5.7), without the signatures DO would bring.
                packet.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::AUTHENTIC_DATA);
                let question = Question::new(
                    qn.clone(),
                    QTYPE::TYPE(qtype),
                    QCLASS::CLASS(CLASS::IN),
                    false,
                );
                packet.questions.push(question);
                let bytes = packet
                    .build_bytes_vec()
                    .map_err(|e| DnsError::Temporary(name.to_string(), e.to_string()))?;
                match self.exchange(server, &bytes, id, &qn, qtype) {
                    Ok(reply) if matches!(reply.rcode, RCODE::NoError | RCODE::NameError) => {
                        return Ok(reply);
                    }
                    Ok(reply) => why = format!("{server} replied {}", rcode_name(reply.rcode)),
                    Err(e) => why = format!("{server}: {e}"),
                }
            }
        }
        Err(DnsError::Temporary(name.to_string(), why))
    }

    /// One try with one server: UDP, then TCP if the reply was truncated.
    fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        qn: &Name,
        qtype: TYPE,
    ) -> io::Result<Reply> {
        let deadline = Deadline::after(self.timeout);
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        // Connected, the kernel drops other sources and reports ICMP errors.
        socket.connect(server)?;
        socket.send(query)?;
        let mut buf = vec![0; 65535];
        loop {
            let left = deadline.left().map_err(|_| timed_out(self.timeout))?;
            socket.set_read_timeout(left)?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out(self.timeout));
                }
                Err(e) => return Err(e),
            };
            let msg = &buf[..n];
            if from.ip() != server.ip()
                || from.port() != server.port()
                || n < 12
                || msg[..2] != id.to_be_bytes()
            {
                continue;
            }
            if msg[2] & 0x02 != 0 {
                // TC: the rest may be cut anywhere; TCP gives the whole reply.
                return self.exchange_tcp(server, query, id, qn, qtype);
            }
            if let Some(reply) = parse_reply(msg, id, qn, qtype)? {
                return Ok(reply);
            }
        }
    }

    /// The query over TCP, with its 2-byte length prefix (RFC 1035 §4.2.2),
    /// all of it (connect, query, reply) within the timeout: a server that
    /// sends its reply a byte at a time is cut off all the same.
    fn exchange_tcp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        qn: &Name,
        qtype: TYPE,
    ) -> io::Result<Reply> {
        let deadline = Deadline::after(self.timeout);
        let in_time = |e: io::Error| {
            if is_timeout(&e) {
                timed_out(self.timeout)
            } else {
                e
            }
        };
        let tcp = TcpStream::connect_timeout(&server, self.timeout).map_err(in_time)?;
        let mut stream = TimedTcp::new(tcp);
        stream.set_deadline(deadline);
        let mut msg = (query.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(query);
        stream.write_all(&msg).map_err(in_time)?;
        let mut len = [0; 2];
        stream.read_exact(&mut len).map_err(in_time)?;
        let mut buf = vec![0; u16::from_be_bytes(len).into()];
        stream.read_exact(&mut buf).map_err(in_time)?;
        parse_reply(&buf, id, qn, qtype)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "TCP reply does not match the query",
            )
        })
    }
}

/// Our reply, or None when `msg` answers something else (wrong id, not a
/// response, another question). Unparseable replies are errors.
fn parse_reply(msg: &[u8], id: u16, qn: &Name, qtype: TYPE) -> io::Result<Option<Reply>> {
    // simple-dns refuses a question of a type it does not know (TLSA): read
    // it as NULL, its answers come as `RData::NULL(52, ..)` all the same.
    let mut shimmed = msg.to_vec();
    let was_tlsa = shim_tlsa_question(&mut shimmed);
    let packet = Packet::parse(&shimmed)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed reply: {e}")))?;
    let asked = if qtype == TYPE::Unknown(TLSA) {
        TYPE::NULL
    } else {
        qtype
    };
    let ours = packet.id() == id
        && packet.has_flags(PacketFlag::RESPONSE)
        && was_tlsa == (qtype == TYPE::Unknown(TLSA))
        && matches!(&packet.questions[..], [q] if q.qname == *qn && q.qtype == QTYPE::TYPE(asked));
    if !ours {
        return Ok(None);
    }
    let answers = packet
        .answers
        .iter()
        .map(|rr| {
            let data = match &rr.rdata {
                RData::MX(mx) => Data::Mx(mx.preference, plain_name(&mx.exchange)),
                RData::A(a) => Data::Addr(Ipv4Addr::from(a.address).into()),
                RData::AAAA(a) => Data::Addr(Ipv6Addr::from(a.address).into()),
                RData::CNAME(cname) => Data::Cname(plain_name(&cname.0)),
                RData::TXT(txt) => Data::Txt(String::try_from(txt.clone()).ok()),
                RData::NULL(TLSA, data) => Data::Tlsa(data.get_data().to_vec()),
                _ => Data::Other,
            };
            (plain_name(&rr.name).to_ascii_lowercase(), data)
        })
        .collect();
    Ok(Some(Reply {
        rcode: packet.rcode(),
        authentic: packet.has_flags(PacketFlag::AUTHENTIC_DATA),
        answers,
    }))
}

/// Rewrites the type of the one question in the DNS message `msg` from
/// TLSA to NULL, so that simple-dns parses it; whether it did.
fn shim_tlsa_question(msg: &mut [u8]) -> bool {
    if msg.len() < 12 || msg[4..6] != [0, 1] {
        return false;
    }
    // The question's name: labels up to the root (no pointer can come
    // first: nothing precedes it to point at).
    let mut i = 12;
    while let Some(&len) = msg.get(i) {
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return false;
        }
        i += 1 + usize::from(len);
    }
    let at = i + 1;
    match msg.get(at..at + 2) {
        Some(t) if t == TLSA.to_be_bytes() => {
            msg[at..at + 2].copy_from_slice(&10u16.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// Whether every server is on loopback: a validating resolver of this
/// host's own, whose AD bit nobody on a network could have forged.
fn all_loopback(servers: &[SocketAddr]) -> bool {
    !servers.is_empty() && servers.iter().all(|s| s.ip().is_loopback())
}

/// A name as text, without a trailing dot ("" for the root).
fn plain_name(name: &Name) -> String {
    name.to_string().trim_end_matches('.').to_string()
}

fn rcode_name(rcode: RCODE) -> String {
    match rcode {
        RCODE::ServerFailure => "SERVFAIL".to_string(),
        RCODE::Refused => "REFUSED".to_string(),
        RCODE::FormatError => "FORMERR".to_string(),
        RCODE::NotImplemented => "NOTIMP".to_string(),
        other => format!("rcode {other:?}"),
    }
}

fn timed_out(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply within {timeout:?}"),
    )
}

/// A random number for query ids and MX shuffling; the clock if the system
/// has no randomness to give.
fn random_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanence() {
        assert!(DnsError::NotFound("a".into()).is_permanent());
        assert!(DnsError::NullMx("a".into()).is_permanent());
        assert!(DnsError::NoAddress("a".into()).is_permanent());
        assert!(!DnsError::Temporary("a".into(), "b".into()).is_permanent());
    }

    #[test]
    fn defaults() {
        let r = Resolver::with_server("127.0.0.1:53".parse().unwrap());
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert_eq!(r.attempts, 2);
    }

    /// A nameserver on 127.0.0.1 that truncates over UDP, then over TCP
    /// sends a reply of 65535 bytes, one byte every 200 ms, for a minute.
    fn trickling_nameserver() -> SocketAddr {
        use std::net::TcpListener;
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                // The query's header, as a truncated response without answers.
                let mut reply = buf[..n.min(12)].to_vec();
                reply[2] |= 0x82;
                let _ = udp.send_to(&reply, from);
            }
        });
        std::thread::spawn(move || {
            for mut c in tcp.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = c.read(&mut [0; 512]);
                    for b in [0xff, 0xff].into_iter().chain([0; 298]) {
                        if c.write_all(&[b]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_reply_over_tcp_that_trickles_ends_at_the_timeout() {
        let mut r = Resolver::with_server(trickling_nameserver());
        r.timeout = Duration::from_secs(1);
        r.attempts = 1;
        let start = std::time::Instant::now();
        let got = r.mx_hosts("slow.example");
        let took = start.elapsed();
        match got {
            Err(DnsError::Temporary(name, why)) => {
                assert_eq!(name, "slow.example");
                assert!(why.ends_with("no reply within 1s"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }

    #[test]
    fn bad_names_are_not_found_without_asking() {
        // Port 9 on loopback: nothing is asked, since the name cannot be sent.
        let r = Resolver::with_server("127.0.0.1:9".parse().unwrap());
        let long = "a".repeat(64) + ".example";
        assert_eq!(r.mx_hosts(&long), Err(DnsError::NotFound(long.clone())));
        assert_eq!(r.addresses(""), Err(DnsError::NotFound(String::new())));
    }
}
