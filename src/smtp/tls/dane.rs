//! DANE for SMTP (RFC 7672, on RFC 6698 and 7671): the server's
//! certificate checked against its TLSA records instead of CAs.
//!
//! Only the two usages RFC 7672 §3.1 lets SMTP use count:
//! - DANE-EE (3) matches the server's own certificate, its full DER
//!   (selector 0) or its public key (SubjectPublicKeyInfo, selector 1), as
//!   it is (matching type 0) or by SHA-256 (1) or SHA-512 (2). Nothing else
//!   is checked: not the name, not the dates (§3.1.1), not who signed it.
//! - DANE-TA (2) names a trust anchor: a certificate the server sends in
//!   its chain (or the server's certificate itself), the only anchor the
//!   chain must lead to. The chain and its dates are checked as for a CA,
//!   and the server's certificate must carry one of the reference names
//!   (the MX host, maybe the next-hop domain; §3.2.2). A `2 1 0` record
//!   holds the whole public key, so its anchor may be absent from the chain
//!   (RFC 7671 §5.2.2).
//!
//! One usable record that matches is enough. The DNS side (TLSA lookup,
//! DNSSEC) is elsewhere; this module sees only records and certificates.

use std::fmt;

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::pki_types::{
    CertificateDer, Der, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, Error, RootCertStore};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::asn1_rs::{Any, FromDer};

use super::hex;
use super::words::{describe_cert, subject_of};

/// One TLSA record (RFC 6698 §2.1): what the server's certificate must
/// match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE (0 and 1 are not for SMTP).
    pub usage: u8,
    /// 0: the full certificate; 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type: 0 the selected bytes, 1 their SHA-256, 2 SHA-512.
    pub mtype: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// The record from its RDATA (usage, selector, matching type, data), or
    /// `None` when it is shorter than that.
    pub fn from_rdata(rdata: &[u8]) -> Option<Tlsa> {
        match rdata {
            [usage, selector, mtype, data @ ..] => Some(Tlsa {
                usage: *usage,
                selector: *selector,
                mtype: *mtype,
                data: data.to_vec(),
            }),
            _ => None,
        }
    }

    /// Whether SMTP can use this record (RFC 7672 §3.1): usage 2 or 3,
    /// selector 0 or 1, matching type 0, 1 or 2, and data that can match (a
    /// digest of its length, something to compare). An unusable record is
    /// ignored; only usable ones make DANE apply.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3)
            && matches!(self.selector, 0 | 1)
            && match self.mtype {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// `3 1 1`: the record without its data, for messages.
    fn params(&self) -> String {
        format!("{} {} {}", self.usage, self.selector, self.mtype)
    }

    /// Whether `cert` (DER) matches this record's selector, matching type
    /// and data; the usage is the caller's business.
    fn matches(&self, cert: &[u8]) -> bool {
        selected(self.selector, cert).is_some_and(|b| digest(self.mtype, &b) == self.data)
    }
}

/// As in a zone file: `3 1 1 <hex>`.
impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.params(), hex(&self.data))
    }
}

/// The bytes of `cert` that `selector` names: the certificate, or its
/// SubjectPublicKeyInfo (`None` if it can not be parsed).
fn selected(selector: u8, cert: &[u8]) -> Option<Vec<u8>> {
    match selector {
        0 => Some(cert.to_vec()),
        1 => x509_parser::parse_x509_certificate(cert)
            .ok()
            .map(|(_, c)| c.tbs_certificate.subject_pki.raw.to_vec()),
        _ => None,
    }
}

/// `bytes` as matching type `mtype` compares them.
fn digest(mtype: u8, bytes: &[u8]) -> Vec<u8> {
    match mtype {
        0 => bytes.to_vec(),
        1 => Sha256::digest(bytes).to_vec(),
        2 => Sha512::digest(bytes).to_vec(),
        _ => Vec::new(),
    }
}

/// Why no record matched: the error for rustls (and the server's alert),
/// and the words for the log and the queue.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) error: Error,
    pub(super) words: String,
}

/// Whether the certificate chain `ee` + `intermediates` (as the server
/// sent it) matches one of the usable records in `tlsa`. `names`: the
/// names a DANE-TA server certificate may carry; `host`: the name the
/// connection was made to, for messages.
pub(super) fn verify(
    tlsa: &[Tlsa],
    names: &[ServerName<'_>],
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    host: &str,
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), Refused> {
    let usable: Vec<&Tlsa> = tlsa.iter().filter(|t| t.usable()).collect();
    if usable.is_empty() {
        // client_dane never builds this; refuse rather than trust.
        return Err(Refused {
            error: Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            words: format!("no usable TLSA records for {host}"),
        });
    }
    let ee_records: Vec<&Tlsa> = usable.iter().copied().filter(|t| t.usage == 3).collect();
    if ee_records.iter().any(|t| t.matches(ee.as_ref())) {
        return Ok(());
    }
    let mut failures = Vec::new();
    if !ee_records.is_empty() {
        failures.push(ee_mismatch(&ee_records, ee.as_ref(), host));
    }
    let ta_records: Vec<&Tlsa> = usable.iter().copied().filter(|t| t.usage == 2).collect();
    if !ta_records.is_empty() {
        let chain = Chain {
            ee,
            intermediates,
            names,
            host,
            now,
            algs,
        };
        if chain.verify_ta(&ta_records, &mut failures) {
            return Ok(());
        }
    }
    // A certificate error (an expired chain, a wrong name) makes the
    // server's alert say so; Client::why needs one to give our words.
    let error = failures
        .iter()
        .find_map(|(e, _)| {
            e.clone()
                .filter(|e| matches!(e, Error::InvalidCertificate(_)))
        })
        .unwrap_or(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ));
    let mut words: Vec<String> = Vec::new();
    for (_, w) in failures {
        if !words.contains(&w) {
            words.push(w);
        }
    }
    Err(Refused {
        error,
        words: words.join("; "),
    })
}

/// A failure: the certificate error that says most (if one), and words.
type Failure = (Option<Error>, String);

/// `TLSA 3 1 1 record(s) for mx do not match the server's certificate
/// (...; SHA-256 of its public key is ...)`: what the server's certificate
/// is, for each selector and matching type the records use, so the
/// administrator sees which record would match.
fn ee_mismatch(records: &[&Tlsa], ee: &[u8], host: &str) -> Failure {
    let mut params: Vec<String> = Vec::new();
    let mut facts = vec![subject_of(ee)];
    for t in records {
        if params.contains(&t.params()) {
            continue;
        }
        params.push(t.params());
        let what = if t.selector == 0 {
            "the certificate"
        } else {
            "its public key"
        };
        facts.push(match (selected(t.selector, ee), t.mtype) {
            (None, _) => format!("{what} could not be read"),
            (Some(_), 0) => format!("{what} is not the one in the record"),
            (Some(b), 1) => format!("SHA-256 of {what} is {}", hex(&digest(1, &b))),
            (Some(b), _) => format!("SHA-512 of {what} is {}", hex(&digest(2, &b))),
        });
    }
    (
        None,
        format!(
            "TLSA {} record(s) for {host} do not match the server's certificate ({})",
            params.join(", "),
            facts.join("; ")
        ),
    )
}

/// A DANE-TA check of one chain.
struct Chain<'a, 'c> {
    ee: &'a CertificateDer<'c>,
    intermediates: &'a [CertificateDer<'c>],
    names: &'a [ServerName<'a>],
    host: &'a str,
    now: UnixTime,
    algs: &'a [&'a dyn SignatureVerificationAlgorithm],
}

impl Chain<'_, '_> {
    /// Whether a DANE-TA record's anchor verifies the chain; if not, why
    /// (each anchor's failure) is added to `failures`.
    fn verify_ta(&self, records: &[&Tlsa], failures: &mut Vec<Failure>) -> bool {
        let sent: Vec<&CertificateDer<'_>> =
            std::iter::once(self.ee).chain(self.intermediates).collect();
        let mut tried: Vec<usize> = Vec::new();
        let mut unanchored: Vec<String> = Vec::new();
        for t in records {
            let found: Vec<usize> = (0..sent.len())
                .filter(|&i| t.matches(sent[i].as_ref()))
                .collect();
            if found.is_empty() {
                if t.selector == 1 && t.mtype == 0 {
                    // `2 1 0`: the record is the anchor's key itself.
                    match self.by_key(&t.data) {
                        Ok(()) => return true,
                        Err(e) => failures.push(self.failed(
                            &e,
                            t,
                            "a public key the server sent no certificate for",
                        )),
                    }
                } else if !unanchored.contains(&t.params()) {
                    unanchored.push(t.params());
                }
            }
            for i in found {
                if tried.contains(&i) {
                    continue;
                }
                tried.push(i);
                let subject = subject_of(sent[i].as_ref());
                let (r, anchor) = if i == 0 {
                    let anchor = format!("the server's own certificate ({subject})");
                    (self.ee_as_anchor(), anchor)
                } else {
                    let anchor = format!("the certificate ({subject}) in its chain");
                    (self.by_anchor(sent[i]), anchor)
                };
                match r {
                    Ok(()) => return true,
                    Err(e) => failures.push(self.failed(&e, t, &anchor)),
                }
            }
        }
        if !unanchored.is_empty() {
            let subjects: Vec<String> = sent.iter().map(|c| subject_of(c.as_ref())).collect();
            failures.push((
                None,
                format!(
                    "TLSA {} record(s) for {} match no certificate the server sent ({}): a DANE-TA trust anchor must be in the server's chain",
                    unanchored.join(", "),
                    self.host,
                    subjects.join(", ")
                ),
            ));
        }
        false
    }

    /// The chain verified up to `anchor` alone, then the names.
    fn by_anchor(&self, anchor: &CertificateDer<'_>) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        self.under(&roots)
    }

    /// For `2 1 0`: the chain verified up to the public key `spki` (DER),
    /// whose certificate the server did not send. Its subject is unknown, so
    /// the key stands as the issuer of each certificate sent; only a
    /// signature by that key makes a path.
    fn by_key(&self, spki: &[u8]) -> Result<(), Error> {
        let key =
            der_value(spki).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let mut roots = RootCertStore::empty();
        for c in std::iter::once(self.ee).chain(self.intermediates) {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(c.as_ref()) else {
                continue;
            };
            let Some(issuer) = der_value(parsed.issuer().as_raw()) else {
                continue;
            };
            roots.roots.push(TrustAnchor {
                subject: Der::from(issuer.to_vec()),
                subject_public_key_info: Der::from(key.to_vec()),
                name_constraints: None,
            });
        }
        self.under(&roots)
    }

    /// The chain (with its dates) to one of `roots`, and a name.
    fn under(&self, roots: &RootCertStore) -> Result<(), Error> {
        let ee = ParsedCertificate::try_from(self.ee)?;
        verify_server_cert_signed_by_trust_anchor(
            &ee,
            roots,
            self.intermediates,
            self.now,
            self.algs,
        )?;
        let mut last = Error::InvalidCertificate(CertificateError::NotValidForName);
        for n in self.names {
            match verify_server_name(&ee, n) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A DANE-TA record that matches the server's certificate itself: it is
    /// its own anchor, trusted as it is (as a certificate in CAFILE), so
    /// only a name and the dates are checked.
    fn ee_as_anchor(&self) -> Result<(), Error> {
        let mut first = None;
        for n in self.names {
            match super::trusted_as_is(self.ee, n, self.now) {
                Ok(()) => return Ok(()),
                // A date error means the name matched: it says more.
                Err(e) if !is_name_error(&e) => return Err(e),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or(Error::InvalidCertificate(CertificateError::NotValidForName)))
    }

    /// `e` (under record `t`, which makes `anchor` the trust anchor) in
    /// words.
    fn failed(&self, e: &Error, t: &Tlsa, anchor: &str) -> Failure {
        let mut why = describe_cert(e, self.ee.as_ref(), self.host, "the chain to that anchor");
        if is_name_error(e) {
            // describe_cert ends `not for <host>`: the other names too.
            for n in self.names.iter().map(|n| n.to_str()) {
                if n != self.host {
                    why.push_str(&format!(" or {n}"));
                }
            }
        }
        (
            Some(e.clone()),
            format!(
                "{why} (DANE-TA: the TLSA {} record for {} makes {anchor} the trust anchor)",
                t.params(),
                self.host
            ),
        )
    }
}

fn is_name_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The contents of a DER SEQUENCE (without its tag and length), as webpki
/// keeps a trust anchor's subject and key; `None` unless `tlv` is exactly
/// one SEQUENCE.
fn der_value(tlv: &[u8]) -> Option<&[u8]> {
    match Any::from_der(tlv) {
        Ok((rest, any)) if rest.is_empty() && any.tag() == x509_parser::asn1_rs::Tag::Sequence => {
            Some(any.data)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
