//! The stub resolver (dma_rs::smtp::dns) against a fake DNS server on
//! 127.0.0.1.

#[path = "support/dns.rs"]
mod fakedns;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dma_rs::smtp::dns::{DnsError, Lookup, MxHost, Resolver};
use fakedns::{FakeDns, Record};

fn s(text: &str) -> String {
    text.to_string()
}

fn mx(domain: &str, pref: u16, exchange: &str) -> Record {
    Record::Mx(s(domain), pref, s(exchange))
}

fn a(name: &str, ip: [u8; 4]) -> Record {
    Record::A(s(name), Ipv4Addr::from(ip))
}

fn aaaa(name: &str, ip: &str) -> Record {
    Record::Aaaa(s(name), ip.parse().unwrap())
}

fn host(preference: u16, name: &str) -> MxHost {
    MxHost {
        preference,
        name: s(name),
    }
}

/// A resolver for the fake, impatient so that failures are quick.
fn resolver(fake: &FakeDns) -> Resolver {
    let mut r = Resolver::with_server(fake.addr());
    r.timeout = Duration::from_millis(300);
    r.attempts = 1;
    r
}

fn temporary(result: Result<impl std::fmt::Debug, DnsError>) -> String {
    match result {
        Err(e @ DnsError::Temporary(..)) => {
            assert!(!e.is_permanent());
            e.to_string()
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

/// A loopback port with nothing behind it.
fn dead_port() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap()
}

#[test]
fn mx_sorted_by_preference() {
    let fake = FakeDns::start(vec![
        mx("example.test", 20, "mx2.example.test"),
        mx("example.test", 5, "mx0.example.test"),
        mx("example.test", 10, "mx1.example.test"),
        mx("other.test", 1, "wrong.example.test"),
    ]);
    let hosts = resolver(&fake).mx_hosts("example.test").unwrap();
    assert_eq!(
        hosts,
        [
            host(5, "mx0.example.test"),
            host(10, "mx1.example.test"),
            host(20, "mx2.example.test")
        ]
    );
    assert_eq!(fake.queries(), 1);
    let seen = &fake.log()[0];
    assert_eq!(
        (seen.name.as_str(), seen.qtype, seen.tcp, seen.rd),
        ("example.test", 15, false, true)
    );
}

#[test]
fn mx_equal_preferences_are_shuffled() {
    let fake = FakeDns::start(vec![
        mx("tie.test", 10, "a.tie.test"),
        mx("tie.test", 10, "b.tie.test"),
        mx("tie.test", 10, "c.tie.test"),
        mx("tie.test", 20, "z.tie.test"),
        mx("tie.test", 5, "first.tie.test"),
    ]);
    let r = resolver(&fake);
    let mut orders = HashSet::new();
    for _ in 0..40 {
        let hosts = r.mx_hosts("tie.test").unwrap();
        assert_eq!(hosts.len(), 5);
        assert_eq!(hosts[0], host(5, "first.tie.test"));
        assert_eq!(hosts[4], host(20, "z.tie.test"));
        let middle: Vec<String> = hosts[1..4].iter().map(|h| h.name.clone()).collect();
        let set: HashSet<&String> = middle.iter().collect();
        assert_eq!(set.len(), 3);
        orders.insert(middle);
    }
    // 6 orders, 40 draws: all the same has probability 6^-39.
    assert!(orders.len() > 1, "{orders:?}");
}

#[test]
fn implicit_mx() {
    let fake = FakeDns::start(vec![a("plain.test", [192, 0, 2, 1])]);
    let r = resolver(&fake);
    assert_eq!(r.mx_hosts("plain.test").unwrap(), [host(0, "plain.test")]);
    // The trailing dot goes.
    assert_eq!(r.mx_hosts("plain.test.").unwrap(), [host(0, "plain.test")]);
}

#[test]
fn null_mx() {
    let fake = FakeDns::start(vec![
        mx("nomail.test", 0, "."),
        a("nomail.test", [192, 0, 2, 1]),
    ]);
    let err = resolver(&fake).mx_hosts("nomail.test").unwrap_err();
    assert_eq!(err, DnsError::NullMx(s("nomail.test")));
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "nomail.test does not accept mail (null MX)"
    );
}

#[test]
fn null_mx_mixed_with_real_ones_is_skipped() {
    let fake = FakeDns::start(vec![
        mx("mixed.test", 0, "."),
        mx("mixed.test", 10, "mx.mixed.test"),
    ]);
    assert_eq!(
        resolver(&fake).mx_hosts("mixed.test").unwrap(),
        [host(10, "mx.mixed.test")]
    );
}

#[test]
fn nxdomain() {
    let fake = FakeDns::start(vec![
        Record::NxDomain(s("gone.test")),
        a("here.test", [192, 0, 2, 1]),
    ]);
    let r = resolver(&fake);
    let err = r.mx_hosts("gone.test").unwrap_err();
    assert_eq!(err, DnsError::NotFound(s("gone.test")));
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "DNS lookup failure: host gone.test not found"
    );
    // Unknown names too.
    assert_eq!(
        r.mx_hosts("unknown.test"),
        Err(DnsError::NotFound(s("unknown.test")))
    );
    assert_eq!(
        r.addresses("unknown.test"),
        Err(DnsError::NotFound(s("unknown.test")))
    );
    // NXDOMAIN on AAAA: no need to ask for A.
    assert_eq!(fake.queries(), 3);
}

#[test]
fn servfail_and_refused_are_temporary() {
    let fake = FakeDns::start(vec![
        Record::ServFail(s("broken.test")),
        Record::Refused(s("closed.test")),
    ]);
    let mut r = resolver(&fake);
    let why = temporary(r.mx_hosts("broken.test"));
    assert!(
        why.starts_with("temporary DNS failure for broken.test: "),
        "{why}"
    );
    assert!(why.contains("SERVFAIL"), "{why}");
    assert!(temporary(r.addresses("closed.test")).contains("REFUSED"));
    // Every attempt asks again.
    r.attempts = 2;
    let before = fake.queries();
    temporary(r.mx_hosts("broken.test"));
    assert_eq!(fake.queries() - before, 2);
}

#[test]
fn silence_times_out() {
    let fake = FakeDns::start(vec![Record::Silent(s("slow.test"))]);
    let r = resolver(&fake);
    let start = Instant::now();
    let why = temporary(r.mx_hosts("slow.test"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(why.contains("no reply within 300ms"), "{why}");
    assert_eq!(fake.queries(), 1);
}

#[test]
fn dead_server_then_live_one() {
    let fake = FakeDns::start(vec![mx("example.test", 10, "mx.example.test")]);
    let dead = dead_port();
    let mut r = resolver(&fake);
    // Alone, the dead server fails fast (ICMP port unreachable) or times out.
    r.servers = vec![dead];
    temporary(r.mx_hosts("example.test"));
    r.servers = vec![dead, fake.addr()];
    assert_eq!(
        r.mx_hosts("example.test").unwrap(),
        [host(10, "mx.example.test")]
    );
}

#[test]
fn no_servers_is_temporary() {
    let mut r = Resolver::with_server(dead_port());
    r.servers.clear();
    assert!(temporary(r.mx_hosts("example.test")).contains("no nameserver"));
}

#[test]
fn truncated_udp_retried_over_tcp() {
    let fake = FakeDns::start(vec![
        Record::Truncate(s("big.test")),
        mx("big.test", 10, "mx1.big.test"),
        mx("big.test", 20, "mx2.big.test"),
        Record::Truncate(s("mx1.big.test")),
        a("mx1.big.test", [192, 0, 2, 7]),
    ]);
    let r = resolver(&fake);
    assert_eq!(
        r.mx_hosts("big.test").unwrap(),
        [host(10, "mx1.big.test"), host(20, "mx2.big.test")]
    );
    let log = fake.log();
    assert_eq!(log.iter().map(|q| q.tcp).collect::<Vec<_>>(), [false, true]);
    assert_eq!(
        r.addresses("mx1.big.test").unwrap(),
        [IpAddr::from([192, 0, 2, 7])]
    );
}

#[test]
fn cname_followed_for_mx() {
    let fake = FakeDns::start(vec![
        Record::Cname(s("alias.test"), s("real.test")),
        mx("real.test", 10, "mx.real.test"),
    ]);
    let r = resolver(&fake);
    assert_eq!(
        r.mx_hosts("alias.test").unwrap(),
        [host(10, "mx.real.test")]
    );
    assert_eq!(fake.queries(), 1);
}

#[test]
fn cname_target_asked_when_the_answer_stops_there() {
    let fake = FakeDns::start(vec![
        Record::BareCname(s("alias.test"), s("middle.test")),
        Record::Cname(s("middle.test"), s("real.test")),
        mx("real.test", 10, "mx.real.test"),
        a("real.test", [192, 0, 2, 9]),
        Record::BareCname(s("loop1.test"), s("loop2.test")),
        Record::BareCname(s("loop2.test"), s("loop1.test")),
        Record::BareCname(s("dangling.test"), s("nowhere.test")),
        Record::BareCname(s("nomx.test"), s("real2.test")),
        a("real2.test", [192, 0, 2, 10]),
    ]);
    let r = resolver(&fake);
    assert_eq!(
        r.mx_hosts("alias.test").unwrap(),
        [host(10, "mx.real.test")]
    );
    let log = fake.log();
    let names: Vec<&str> = log.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["alias.test", "middle.test"]);
    assert_eq!(
        r.addresses("alias.test").unwrap(),
        [IpAddr::from([192, 0, 2, 9])]
    );
    // A loop ends.
    assert!(temporary(r.mx_hosts("loop1.test")).contains("CNAME"));
    // A CNAME to nowhere.
    assert_eq!(
        r.mx_hosts("dangling.test"),
        Err(DnsError::NotFound(s("dangling.test")))
    );
    // The implicit MX is the domain asked about, not the CNAME target.
    assert_eq!(r.mx_hosts("nomx.test").unwrap(), [host(0, "nomx.test")]);
}

#[test]
fn cname_followed_for_addresses() {
    let fake = FakeDns::start(vec![
        Record::Cname(s("www.test"), s("web.test")),
        Record::Cname(s("web.test"), s("server.test")),
        a("server.test", [192, 0, 2, 20]),
        aaaa("server.test", "2001:db8::20"),
    ]);
    let addrs = resolver(&fake).addresses("www.test").unwrap();
    assert_eq!(
        addrs,
        [
            IpAddr::from("2001:db8::20".parse::<Ipv6Addr>().unwrap()),
            IpAddr::from([192, 0, 2, 20])
        ]
    );
}

#[test]
fn aaaa_before_a() {
    let fake = FakeDns::start(vec![
        a("dual.test", [192, 0, 2, 1]),
        aaaa("dual.test", "2001:db8::1"),
        a("dual.test", [192, 0, 2, 2]),
        aaaa("dual.test", "2001:db8::2"),
        a("v4.test", [192, 0, 2, 4]),
        aaaa("v6.test", "2001:db8::6"),
        mx("nohost.test", 10, "mx.nohost.test"),
    ]);
    let r = resolver(&fake);
    let want: Vec<IpAddr> = ["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    assert_eq!(r.addresses("dual.test").unwrap(), want);
    let qtypes: Vec<u16> = fake.log().iter().map(|q| q.qtype).collect();
    assert_eq!(qtypes, [28, 1]);
    assert_eq!(
        r.addresses("v4.test").unwrap(),
        [IpAddr::from([192, 0, 2, 4])]
    );
    assert_eq!(
        r.addresses("v6.test.").unwrap(),
        ["2001:db8::6".parse::<IpAddr>().unwrap()]
    );
    let err = r.addresses("nohost.test").unwrap_err();
    assert_eq!(err, DnsError::NoAddress(s("nohost.test")));
    assert!(err.is_permanent());
}

#[test]
fn names_are_case_insensitive() {
    let fake = FakeDns::start(vec![
        mx("Example.TEST", 10, "MX.Example.Test"),
        Record::Cname(s("WWW.example.test"), s("Host.Example.test")),
        a("host.example.TEST", [192, 0, 2, 30]),
    ]);
    let r = resolver(&fake);
    // The exchange keeps the case it has in the zone.
    assert_eq!(
        r.mx_hosts("eXaMpLe.test").unwrap(),
        [host(10, "MX.Example.Test")]
    );
    assert_eq!(
        r.addresses("www.EXAMPLE.test.").unwrap(),
        [IpAddr::from([192, 0, 2, 30])]
    );
}

#[test]
fn stray_replies_are_ignored() {
    let fake = FakeDns::start(vec![
        Record::WrongIdFirst(s("spoof.test")),
        Record::WrongSourceFirst(s("spoof.test")),
        Record::WrongQuestionFirst(s("spoof.test")),
        a("spoof.test", [192, 0, 2, 40]),
        mx("spoof.test", 10, "mx.spoof.test"),
    ]);
    let r = resolver(&fake);
    // The bogus replies are NXDOMAIN with 192.0.2.66; the real ones win.
    assert_eq!(
        r.addresses("spoof.test").unwrap(),
        [IpAddr::from([192, 0, 2, 40])]
    );
    assert_eq!(
        r.mx_hosts("spoof.test").unwrap(),
        [host(10, "mx.spoof.test")]
    );
    assert_eq!(fake.queries(), 3);
}

#[test]
fn wrong_id_alone_is_ignored() {
    let fake = FakeDns::start(vec![
        Record::WrongIdFirst(s("id.test")),
        a("id.test", [192, 0, 2, 41]),
    ]);
    assert_eq!(
        resolver(&fake).addresses("id.test").unwrap(),
        [IpAddr::from([192, 0, 2, 41])]
    );
}

#[test]
fn from_system_does_not_panic() {
    let r = Resolver::from_system();
    assert!(!r.servers.is_empty());
    assert!(r.servers.iter().all(|s| s.port() == 53));
    assert!(r.attempts >= 1 && r.timeout >= Duration::from_secs(1));
}

#[test]
fn txt_records_join_their_strings() {
    let long = "p=".to_string() + &"A".repeat(400);
    let fake = FakeDns::start(vec![
        Record::Txt(s("_mta-sts.example.test"), vec![s("v=STSv1; id=20260101")]),
        Record::Txt(s("_mta-sts.example.test"), vec![s("v=spf1 "), s("-all")]),
        Record::Txt(s("sel._domainkey.example.test"), vec![long.clone()]),
        a("bare.example.test", [192, 0, 2, 50]),
    ]);
    let r = resolver(&fake);
    let got = r.txt("_mta-sts.example.test").unwrap();
    assert_eq!(got.records, ["v=STSv1; id=20260101", "v=spf1 -all"]);
    // 400 bytes go as two strings of one record, and come back as one.
    assert_eq!(
        r.txt("sel._domainkey.example.test.").unwrap().records,
        [long]
    );
    // NODATA is an empty answer; NXDOMAIN an error.
    assert_eq!(
        r.txt("bare.example.test").unwrap().records,
        Vec::<String>::new()
    );
    assert_eq!(
        r.txt("_mta-sts.nowhere.test"),
        Err(DnsError::NotFound(s("_mta-sts.nowhere.test")))
    );
    assert_eq!(
        fake.log().iter().map(|q| q.qtype).collect::<Vec<_>>(),
        [16; 4]
    );
}

#[test]
fn tlsa_records_come_back_raw() {
    let digest: Vec<u8> = (0u8..32).collect();
    let fake = FakeDns::start(vec![
        Record::Tlsa(s("_25._tcp.mx.example.test"), 3, 1, 1, digest.clone()),
        Record::Tlsa(s("_25._tcp.mx.example.test"), 2, 0, 1, vec![7; 32]),
        Record::Cname(
            s("_25._tcp.alias.example.test"),
            s("_25._tcp.mx.example.test"),
        ),
        a("mx2.example.test", [192, 0, 2, 51]),
        Record::Truncate(s("_25._tcp.big.example.test")),
        Record::Tlsa(s("_25._tcp.big.example.test"), 3, 1, 2, vec![9; 64]),
    ]);
    let r = resolver(&fake);
    let mut want = vec![3, 1, 1];
    want.extend_from_slice(&digest);
    let mut second = vec![2, 0, 1];
    second.extend_from_slice(&[7; 32]);
    let got = r.tlsa("_25._tcp.mx.example.test").unwrap();
    assert_eq!(got.records, [want.clone(), second.clone()]);
    assert_eq!(fake.log()[0].qtype, 52);
    // Through a CNAME, and over TCP after truncation.
    assert_eq!(
        r.tlsa("_25._tcp.alias.example.test").unwrap().records,
        [want, second]
    );
    let mut third = vec![3, 1, 2];
    third.extend_from_slice(&[9; 64]);
    assert_eq!(
        r.tlsa("_25._tcp.big.example.test").unwrap().records,
        [third]
    );
    assert!(fake.log().iter().any(|q| q.tcp && q.qtype == 52));
    // A name without TLSA records: NODATA; no name: NXDOMAIN.
    assert!(r.tlsa("mx2.example.test").unwrap().records.is_empty());
    assert!(matches!(
        r.tlsa("_25._tcp.none.example.test"),
        Err(DnsError::NotFound(_))
    ));
}

#[test]
fn the_ad_bit_counts_only_from_a_trusted_resolver() {
    let fake = FakeDns::start(vec![
        mx("signed.test", 10, "mx.signed.test"),
        Record::Secure(s("signed.test")),
        a("mx.signed.test", [192, 0, 2, 60]),
        aaaa("mx.signed.test", "2001:db8::60"),
        Record::Secure(s("mx.signed.test")),
        Record::Tlsa(s("_25._tcp.mx.signed.test"), 3, 1, 1, vec![1; 32]),
        Record::Secure(s("_25._tcp.mx.signed.test")),
        Record::Secure(s("_25._tcp.nodata.signed.test")),
        mx("plain.test", 10, "mx.plain.test"),
        a("mx.plain.test", [192, 0, 2, 61]),
        // A signed name behind an unsigned CNAME is not secure.
        Record::BareCname(s("alias.test"), s("mx.signed.test")),
    ]);
    let r = resolver(&fake);
    // On loopback, the fake is trusted to validate.
    assert!(r.trust_ad);
    let mx = r.mx_lookup("signed.test").unwrap();
    assert_eq!(mx.records, [host(10, "mx.signed.test")]);
    assert!(mx.secure);
    assert!(r.address_lookup("mx.signed.test").unwrap().secure);
    assert!(r.tlsa("_25._tcp.mx.signed.test").unwrap().secure);
    let nodata = r.tlsa("_25._tcp.nodata.signed.test").unwrap();
    assert_eq!(
        nodata,
        Lookup {
            records: Vec::new(),
            secure: true
        }
    );
    assert!(!r.mx_lookup("plain.test").unwrap().secure);
    assert!(!r.address_lookup("mx.plain.test").unwrap().secure);
    let alias = r.address_lookup("alias.test").unwrap();
    assert_eq!(alias.records.len(), 2);
    assert!(!alias.secure);
    // Every query asked for AD.
    assert!(fake.log().iter().all(|q| q.rd && q.ad));
    // The same answers from a resolver not trusted for AD are insecure.
    let mut untrusted = resolver(&fake);
    untrusted.trust_ad = false;
    assert!(!untrusted.mx_lookup("signed.test").unwrap().secure);
    assert!(!untrusted.tlsa("_25._tcp.mx.signed.test").unwrap().secure);
}

#[test]
fn a_resolver_elsewhere_is_not_trusted_for_ad() {
    let r = Resolver::with_server("192.0.2.53:53".parse().unwrap());
    assert!(!r.trust_ad);
    let r = Resolver::with_server("[::1]:53".parse().unwrap());
    assert!(r.trust_ad);
}
