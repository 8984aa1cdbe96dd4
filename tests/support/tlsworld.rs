//! What the MTA-STS and DANE tests build their worlds from: a test CA and
//! its leaves (with the public key for TLSA records), rustls server
//! configurations, DNS records for the fake DNS, policy texts, and fake
//! SMTP servers with STARTTLS on 127.0.0.N:25.
//!
//! Use it as `#[path = "support/tlsworld.rs"] mod tlsworld;` beside
//! `#[path = "support/dns.rs"] mod fakedns;` and
//! `#[path = "support/smtpd.rs"] mod smtpd;` (it names them as
//! `super::fakedns` and `super::smtpd`).

#![allow(dead_code)] // Each test binary uses a different part.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::fakedns::Record;
use super::smtpd::{Behavior, FakeSmtp};

/// A test CA.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, with the key's SubjectPublicKeyInfo.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub spki: Vec<u8>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "dma-rs policy test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for `names` with the subject `CN=<cn>`, signed by this CA or
    /// by itself; `expired`: valid only in 2000.
    pub fn make(&self, names: &[&str], cn: &str, self_signed: bool, expired: bool) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = if self_signed {
            p.self_signed(&key).unwrap()
        } else {
            p.signed_by(&key, &self.issuer).unwrap()
        };
        Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            spki: key.subject_public_key_info(),
        }
    }

    /// A leaf for `name`, signed by this CA or by itself.
    pub fn leaf(&self, name: &str, self_signed: bool) -> Leaf {
        self.make(&[name], name, self_signed, false)
    }
}

/// A server configuration presenting `leaf`, followed in its chain by
/// `chain`.
pub fn server_config_with(
    leaf: &Leaf,
    chain: &[CertificateDer<'static>],
) -> Arc<rustls::ServerConfig> {
    let mut certs = vec![leaf.cert.clone()];
    certs.extend(chain.iter().cloned());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, leaf.key.clone_key())
    .unwrap();
    Arc::new(cfg)
}

/// A server configuration presenting `leaf` alone.
pub fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    server_config_with(leaf, &[])
}

pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

pub fn a(name: &str, last: u8) -> Record {
    Record::A(name.into(), ip(last))
}

pub fn mx(domain: &str, host: &str) -> Record {
    Record::Mx(domain.into(), 10, host.into())
}

pub fn txt(name: &str, text: &str) -> Record {
    Record::Txt(name.into(), vec![text.into()])
}

pub fn secure(name: &str) -> Record {
    Record::Secure(name.into())
}

/// `3 1 1` for `leaf`: the SHA-256 of its public key.
pub fn tlsa_311(host: &str, leaf: &Leaf) -> Record {
    Record::Tlsa(
        format!("_25._tcp.{host}"),
        3,
        1,
        1,
        Sha256::digest(&leaf.spki).to_vec(),
    )
}

/// An MTA-STS policy text in `mode` listing `mx`, max_age a day.
pub fn policy(mode: &str, mx: &[&str]) -> String {
    let mut p = format!("version: STSv1\r\nmode: {mode}\r\nmax_age: 86400\r\n");
    for m in mx {
        p.push_str(&format!("mx: {m}\r\n"));
    }
    p
}

/// A server on 127.0.0.`last`:25 offering STARTTLS with `leaf`, or none.
pub fn smtp(last: u8, leaf: Option<&Leaf>) -> FakeSmtp {
    FakeSmtp::start_on(
        &format!("127.0.0.{last}:25"),
        Behavior {
            starttls: leaf.map(server_config),
            ..Behavior::default()
        },
    )
}
