//! DANE verification with rcgen certificates: a few real handshakes on
//! 127.0.0.1, the rest through [`verify`] directly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
};
use rustls::crypto::ring;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::*;
use crate::config::Config;
use crate::smtp::tls::{Client, client_dane, server_name};

type Ca = CertifiedIssuer<'static, KeyPair>;

/// A CA named `cn`, signed by `parent` or by itself.
fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    match parent {
        None => CertifiedIssuer::self_signed(p, key).unwrap(),
        Some(parent) => CertifiedIssuer::signed_by(p, key, parent).unwrap(),
    }
}

/// A server certificate `CN=leaf.test` for `names`, signed by `signer` (or
/// by itself); expired in 2002 if asked.
fn leaf(names: &[&str], signer: Option<&Ca>, expired: bool) -> (CertificateDer<'static>, KeyPair) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "leaf.test");
    if expired {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = match signer {
        None => p.self_signed(&key).unwrap(),
        Some(ca) => p.signed_by(&key, ca).unwrap(),
    };
    (cert.der().clone(), key)
}

/// The record `usage selector mtype` for a certificate and its key (the
/// SubjectPublicKeyInfo as rcgen wrote it, not as the code under test reads
/// it).
fn record(usage: u8, selector: u8, mtype: u8, cert: &[u8], key: &impl PublicKeyData) -> Tlsa {
    let bytes = match selector {
        0 => cert.to_vec(),
        _ => key.subject_public_key_info(),
    };
    let data = match mtype {
        0 => bytes,
        1 => Sha256::digest(&bytes).to_vec(),
        _ => Sha512::digest(&bytes).to_vec(),
    };
    Tlsa {
        usage,
        selector,
        mtype,
        data,
    }
}

/// [`verify`] of `chain` (the server's certificate first) now, for the
/// reference names `names` (the first is the host connected to); the
/// refusal in words.
fn check(tlsa: &[Tlsa], names: &[&str], chain: &[CertificateDer<'static>]) -> Result<(), String> {
    let refs: Vec<ServerName<'static>> = names.iter().map(|n| server_name(n).unwrap()).collect();
    let algs = ring::default_provider()
        .signature_verification_algorithms
        .all;
    verify(
        tlsa,
        &refs,
        &chain[0],
        &chain[1..],
        names[0],
        UnixTime::now(),
        algs,
    )
    .map_err(|r| r.words)
}

/// A TLS handshake on 127.0.0.1 with a server sending `chain` (with the
/// key of its first certificate), the client being `client` connecting to
/// `mx.example`. On failure: [`Client::why`].
fn handshake(
    client: &Client,
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> Result<(), (String, bool)> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let cfg = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(Arc::new(cfg)).unwrap(), sock);
        // The client may refuse the certificate: then this fails.
        let _ = tls.write_all(b"220 ready").and_then(|_| tls.flush());
    });
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn =
        ClientConnection::new(client.config.clone(), server_name("mx.example").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    let mut got = [0u8; 9];
    let r = tls.read_exact(&mut got);
    drop(tls);
    server.join().unwrap();
    match r {
        Ok(()) => {
            assert_eq!(&got, b"220 ready");
            Ok(())
        }
        Err(e) => Err(client.why(&e)),
    }
}

fn client(tlsa: Vec<Tlsa>, names: &[&str]) -> Client {
    client_dane(
        &Config::default(),
        tlsa,
        names.iter().map(|n| n.to_string()).collect(),
    )
    .unwrap()
}

#[test]
fn dane_ee_delivers_over_a_handshake_whatever_the_name() {
    let (cert, key) = leaf(&["wrong.example"], None, false);
    let c = client(vec![record(3, 1, 1, &cert, &key)], &["mx.example"]);
    assert_eq!(handshake(&c, vec![cert], &key), Ok(()));
    assert_eq!(c.unverified(), None);
}

#[test]
fn a_tlsa_mismatch_refuses_the_handshake_in_words() {
    let (cert, key) = leaf(&["mx.example"], None, false);
    let (_, other) = leaf(&["mx.example"], None, false);
    let c = client(vec![record(3, 1, 1, &cert, &other)], &["mx.example"]);
    let (why, refused) = handshake(&c, vec![cert], &key).unwrap_err();
    assert!(refused, "{why}");
    let spki = hex(&Sha256::digest(key.subject_public_key_info()));
    assert_eq!(
        why,
        format!(
            "TLSA 3 1 1 record(s) for mx.example do not match the server's certificate (subject CN=leaf.test; SHA-256 of its public key is {spki})"
        )
    );
}

#[test]
fn dane_ta_delivers_over_a_handshake_with_the_anchor_in_the_chain() {
    let root = ca("dma-rs test CA", None);
    let (cert, key) = leaf(&["mx.example"], Some(&root), false);
    let c = client(
        vec![record(2, 0, 1, root.der(), root.key())],
        &["mx.example"],
    );
    assert_eq!(handshake(&c, vec![cert, root.der().clone()], &key), Ok(()));
}

#[test]
fn a_dane_ta_refusal_over_a_handshake_is_ours_in_words() {
    let root = ca("dma-rs test CA", None);
    let (cert, key) = leaf(&["other.example"], Some(&root), false);
    let c = client(vec![record(2, 1, 1, root.der(), root.key())], &[]);
    let (why, refused) = handshake(&c, vec![cert, root.der().clone()], &key).unwrap_err();
    assert!(refused, "{why}");
    assert!(
        why.starts_with("wrong name: the certificate of mx.example (subject CN=leaf.test) is for other.example, not for mx.example (DANE-TA"),
        "{why}"
    );
}

#[test]
fn dane_ee_matches_the_certificate_or_its_key_by_any_matching_type_ignoring_name_and_dates() {
    for expired in [false, true] {
        let (cert, key) = leaf(&["wrong.example"], None, expired);
        for (selector, mtype) in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] {
            let t = record(3, selector, mtype, &cert, &key);
            assert_eq!(
                check(&[t], &["mx.example"], std::slice::from_ref(&cert)),
                Ok(()),
                "3 {selector} {mtype}, expired: {expired}"
            );
        }
    }
}

#[test]
fn a_dane_ee_mismatch_says_what_would_match() {
    let (cert, key) = leaf(&["mx.example"], None, false);
    let (other, other_key) = leaf(&["mx.example"], None, false);
    let tlsa = [
        record(3, 0, 1, &other, &other_key),
        record(3, 1, 2, &other, &other_key),
        record(3, 1, 0, &other, &other_key),
    ];
    let why = check(&tlsa, &["mx.example"], std::slice::from_ref(&cert)).unwrap_err();
    assert_eq!(
        why,
        format!(
            "TLSA 3 0 1, 3 1 2, 3 1 0 record(s) for mx.example do not match the server's certificate (subject CN=leaf.test; SHA-256 of the certificate is {}; SHA-512 of its public key is {}; its public key is not the one in the record)",
            hex(&Sha256::digest(&cert)),
            hex(&Sha512::digest(key.subject_public_key_info()))
        )
    );
}

#[test]
fn dane_ta_of_a_ca_in_the_chain_verifies() {
    let root = ca("dma-rs test CA", None);
    let (cert, _) = leaf(&["mx.example"], Some(&root), false);
    let chain = [cert, root.der().clone()];
    for (selector, mtype) in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] {
        let t = record(2, selector, mtype, root.der(), root.key());
        assert_eq!(
            check(&[t], &["mx.example"], &chain),
            Ok(()),
            "2 {selector} {mtype}"
        );
    }
}

#[test]
fn dane_ta_anchors_anywhere_in_a_chain_through_an_intermediate() {
    let root = ca("dma-rs test CA", None);
    let mid = ca("dma-rs intermediate", Some(&root));
    let (cert, _) = leaf(&["mx.example"], Some(&mid), false);
    let chain = [cert, mid.der().clone(), root.der().clone()];
    for anchor in [&root, &mid] {
        let t = record(2, 1, 1, anchor.der(), anchor.key());
        assert_eq!(check(&[t], &["mx.example"], &chain), Ok(()));
    }
}

#[test]
fn dane_ta_names_are_the_mx_host_or_the_next_hop_domain() {
    let root = ca("dma-rs test CA", None);
    let t = record(2, 1, 1, root.der(), root.key());
    let (cert, _) = leaf(&["example.com"], Some(&root), false);
    let chain = [cert, root.der().clone()];
    assert_eq!(
        check(
            std::slice::from_ref(&t),
            &["mx.example", "example.com"],
            &chain
        ),
        Ok(())
    );
    let why = check(&[t], &["mx.example"], &chain).unwrap_err();
    assert!(
        why.starts_with("wrong name: the certificate of mx.example (subject CN=leaf.test) is for example.com, not for mx.example (DANE-TA"),
        "{why}"
    );
}

#[test]
fn dane_ta_with_the_wrong_name_fails_naming_every_reference_name() {
    let root = ca("dma-rs test CA", None);
    let (cert, _) = leaf(&["other.example"], Some(&root), false);
    let t = record(2, 1, 1, root.der(), root.key());
    let why = check(
        &[t],
        &["mx.example", "example.com"],
        &[cert, root.der().clone()],
    )
    .unwrap_err();
    assert_eq!(
        why,
        "wrong name: the certificate of mx.example (subject CN=leaf.test) is for other.example, not for mx.example or example.com (DANE-TA: the TLSA 2 1 1 record for mx.example makes the certificate (subject CN=dma-rs test CA) in its chain the trust anchor)"
    );
}

#[test]
fn dane_ta_whose_anchor_is_not_in_the_chain_fails_saying_so() {
    let root = ca("dma-rs test CA", None);
    let (cert, _) = leaf(&["mx.example"], Some(&root), false);
    for (selector, mtype) in [(0, 1), (1, 1), (0, 0)] {
        let t = record(2, selector, mtype, root.der(), root.key());
        let why = check(&[t], &["mx.example"], std::slice::from_ref(&cert)).unwrap_err();
        assert_eq!(
            why,
            format!(
                "TLSA 2 {selector} {mtype} record(s) for mx.example match no certificate the server sent (subject CN=leaf.test): a DANE-TA trust anchor must be in the server's chain"
            )
        );
    }
}

#[test]
fn dane_ta_2_1_0_holds_the_anchor_key_itself() {
    let root = ca("dma-rs test CA", None);
    let (cert, _) = leaf(&["mx.example"], Some(&root), false);
    let t = record(2, 1, 0, root.der(), root.key());
    assert_eq!(
        check(&[t], &["mx.example"], std::slice::from_ref(&cert)),
        Ok(())
    );
    // Another key under the same name: the signature says no.
    let other = ca("dma-rs test CA", None);
    let t = record(2, 1, 0, other.der(), other.key());
    let why = check(&[t], &["mx.example"], &[cert]).unwrap_err();
    assert!(
        why.starts_with("the certificate of mx.example (subject CN=leaf.test) has a bad signature (DANE-TA: the TLSA 2 1 0 record for mx.example makes a public key the server sent no certificate for the trust anchor)"),
        "{why}"
    );
}

#[test]
fn dane_ta_checks_the_dates() {
    let root = ca("dma-rs test CA", None);
    let (cert, _) = leaf(&["mx.example"], Some(&root), true);
    let t = record(2, 0, 1, root.der(), root.key());
    let why = check(&[t], &["mx.example"], &[cert, root.der().clone()]).unwrap_err();
    assert!(
        why.starts_with("the certificate of mx.example (subject CN=leaf.test) expired on 2002-01-01 00:00:00 UTC (DANE-TA"),
        "{why}"
    );
}

#[test]
fn dane_ta_matching_the_server_certificate_trusts_it_as_it_is() {
    let root = ca("dma-rs test CA", None);
    for signer in [None, Some(&root)] {
        let (cert, key) = leaf(&["mx.example"], signer, false);
        let t = record(2, 1, 1, &cert, &key);
        let chain = std::slice::from_ref(&cert);
        assert_eq!(
            check(std::slice::from_ref(&t), &["mx.example"], chain),
            Ok(())
        );
        let why = check(&[t], &["other.example"], chain).unwrap_err();
        assert!(why.starts_with("wrong name: "), "{why}");
        assert!(
            why.ends_with(
                "makes the server's own certificate (subject CN=leaf.test) the trust anchor)"
            ),
            "{why}"
        );
    }
    let (cert, key) = leaf(&["mx.example"], None, true);
    let why = check(&[record(2, 0, 2, &cert, &key)], &["mx.example"], &[cert]).unwrap_err();
    assert!(why.contains("expired on 2002-01-01"), "{why}");
}

#[test]
fn one_usable_record_that_matches_is_enough_and_unusable_ones_never_match() {
    let root = ca("dma-rs test CA", None);
    let (cert, key) = leaf(&["mx.example"], Some(&root), false);
    let (_, other) = leaf(&["mx.example"], None, false);
    let chain = [cert.clone(), root.der().clone()];
    let matching = [
        record(3, 1, 1, &cert, &other),
        record(2, 0, 1, root.der(), root.key()),
    ];
    assert_eq!(check(&matching, &["mx.example"], &chain), Ok(()));
    // PKIX-TA/PKIX-EE (0, 1) are not for SMTP; bad selectors, matching
    // types and digest lengths are unusable: ignored, even if they match.
    let mut short = record(3, 1, 1, &cert, &key);
    short.data.pop();
    let unusable = [
        record(1, 0, 1, &cert, &key),
        record(0, 0, 1, root.der(), root.key()),
        Tlsa {
            selector: 2,
            ..record(3, 0, 1, &cert, &key)
        },
        Tlsa {
            mtype: 3,
            ..record(3, 0, 1, &cert, &key)
        },
        short,
    ];
    for t in &unusable {
        assert!(!t.usable(), "{t}");
    }
    let mut tlsa = unusable.to_vec();
    tlsa.push(record(3, 1, 1, &cert, &other));
    let why = check(&tlsa, &["mx.example"], &chain).unwrap_err();
    assert!(
        why.starts_with("TLSA 3 1 1 record(s) for mx.example do not match"),
        "{why}"
    );
    assert_eq!(
        check(&unusable, &["mx.example"], &chain),
        Err("no usable TLSA records for mx.example".to_string())
    );
}

#[test]
fn tlsa_records_read_and_written() {
    let t = Tlsa::from_rdata(&[3, 1, 1, 0xab, 0x01]).unwrap();
    assert_eq!(
        t,
        Tlsa {
            usage: 3,
            selector: 1,
            mtype: 1,
            data: vec![0xab, 0x01]
        }
    );
    assert_eq!(t.to_string(), "3 1 1 ab01");
    assert!(!t.usable(), "a SHA-256 of two bytes");
    assert_eq!(Tlsa::from_rdata(&[3, 1]), None);
    for (usage, selector, mtype, len, usable) in [
        (3, 1, 1, 32, true),
        (2, 0, 2, 64, true),
        (3, 0, 0, 1, true),
        (3, 0, 0, 0, false),
        (2, 1, 2, 32, false),
        (1, 1, 1, 32, false),
        (0, 0, 1, 32, false),
        (4, 1, 1, 32, false),
        (3, 2, 1, 32, false),
        (3, 1, 3, 32, false),
    ] {
        let t = Tlsa {
            usage,
            selector,
            mtype,
            data: vec![0; len],
        };
        assert_eq!(
            t.usable(),
            usable,
            "{usage} {selector} {mtype} of {len} bytes"
        );
    }
}

#[test]
fn client_dane_needs_a_usable_record_and_keeps_the_client_certificate() {
    let (cert, key) = leaf(&["client.test"], None, false);
    let unusable = record(1, 1, 1, &cert, &key);
    let e = client_dane(&Config::default(), vec![unusable], vec![])
        .err()
        .unwrap();
    assert!(e.starts_with("no usable TLSA records"), "{e}");
    let usable = record(3, 1, 1, &cert, &key);
    let e = client_dane(
        &Config::default(),
        vec![usable.clone()],
        vec!["bad name!".into()],
    )
    .err()
    .unwrap();
    assert!(e.contains("bad name!"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.pem");
    let pem = rcgen::CertificateParams::new(vec!["client.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    std::fs::write(&path, pem + &key.serialize_pem()).unwrap();
    let config = Config {
        certfile: Some(path),
        ..Config::default()
    };
    let c = client_dane(&config, vec![usable], vec!["mx.example.".into()]).unwrap();
    assert!(c.config.client_auth_cert_resolver.has_certs());
    assert!(
        !client(vec![record(3, 1, 1, &cert, &key)], &[])
            .config
            .client_auth_cert_resolver
            .has_certs()
    );
}
