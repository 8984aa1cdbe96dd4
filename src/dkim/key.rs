//! DKIM private keys: the file's owner and modes, its PEM, the kind and
//! size of the key, and the DNS record that publishes its public half.
//!
//! A key file holds one PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`)
//! or PKCS#8 (`BEGIN PRIVATE KEY`, as `openssl genpkey` writes it) for RSA
//! of 2048 to 4096 bits (RFC 8301 sets the floor; ring, which signs, the
//! ceiling), or PKCS#8 for Ed25519 (RFC 8463). The file belongs to the
//! user that signs (the runners' `mail`) or to root, and neither group nor
//! others have any permission on it: only the re-credentialed runner reads
//! it, never a submitter's process.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// A key file larger than this is not a PEM private key of ours.
pub const MAX_FILE: u64 = 64 * 1024;

/// The smallest RSA key that signs (RFC 8301 §3.2).
pub const RSA_MIN_BITS: usize = 2048;

/// The largest RSA key ring signs with.
pub const RSA_MAX_BITS: usize = 4096;

/// The DER of the object identifier rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The DER of the object identifier Ed25519 (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A private key, ready to sign.
pub enum Key {
    /// RSA, for `a=rsa-sha256`.
    Rsa(RsaKey<Sha256>),
    /// Ed25519, for `a=ed25519-sha256`.
    Ed25519(Ed25519Key),
}

/// A key as read from its file, with what is published about it.
pub struct Loaded {
    /// The key.
    pub key: Key,
    /// The public key as `p=` carries it: the SubjectPublicKeyInfo DER for
    /// RSA (RFC 6376 §3.6.1), the 32 raw bytes for Ed25519 (RFC 8463 §4).
    pub public: Vec<u8>,
    /// The key size in bits.
    pub bits: usize,
}

impl Loaded {
    /// `k=` of the DNS record: `rsa` or `ed25519`.
    pub fn kind(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa",
            Key::Ed25519(_) => "ed25519",
        }
    }

    /// The text of the DNS TXT record (RFC 6376 §3.6.1).
    pub fn record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.kind(),
            STANDARD.encode(&self.public)
        )
    }

    /// The record as a zone file line for `selector` in `domain`: the
    /// absolute name (a zone does not append its origin to it), the text
    /// in strings of at most 255 octets (RFC 1035 §3.3.14).
    pub fn zone_line(&self, selector: &str, domain: &str) -> String {
        let text = self.record();
        let strings: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!(
            "{selector}._domainkey.{domain}. IN TXT {}",
            strings.join(" ")
        )
    }
}

/// Why the file at `path`, as `meta` shows it, may not hold a private key
/// that user `runner` signs with, if it may not: not a regular file, owned
/// by another user than `runner` or root, or open to group or others.
pub fn unsafe_file(meta: &std::fs::Metadata, runner: u32) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() {
        return Some("is not a regular file".into());
    }
    if meta.uid() != runner && meta.uid() != 0 {
        return Some(format!(
            "is owned by uid {}: it must belong to the user that signs (uid {runner}) or root",
            meta.uid()
        ));
    }
    if mode & 0o077 != 0 {
        return Some(format!(
            "has mode {mode:o}: a private key must give the group and others no access (600 or 400)"
        ));
    }
    None
}

/// Why a directory on the way to the key at `path` lets someone other
/// than root or `runner` replace the key (or hold signing up with a FIFO),
/// if one does.
pub fn unsafe_dirs(path: &Path, runner: u32) -> Option<String> {
    for dir in path.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        if m.uid() != 0 && m.uid() != runner {
            return Some(format!("{} belongs to uid {}", dir.display(), m.uid()));
        }
        // Sticky (/tmp): nobody else may rename or remove what is in it.
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Some(format!(
                "{} may be written by others (mode {:o})",
                dir.display(),
                m.mode() & 0o7777
            ));
        }
    }
    None
}

/// Opens the key at `path` without waiting (a FIFO put there must not
/// hold the runner up), and reads what it is.
pub fn open(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = f.metadata()?;
    Ok((f, meta))
}

/// Reads the key at `path` as the signing process: the file must pass
/// [`unsafe_file`] for our own effective uid (checked on the open file,
/// so a file swapped meanwhile is not read), then [`parse`].
pub fn load(path: &Path) -> Result<Loaded, String> {
    let (f, meta) = open(path).map_err(|e| e.to_string())?;
    if let Some(why) = unsafe_file(&meta, nix::unistd::geteuid().as_raw()) {
        return Err(why);
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "is larger than {MAX_FILE} bytes: not a PEM private key"
        ));
    }
    let mut pem = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut pem)
        .map_err(|e| e.to_string())?;
    parse(&pem)
}

/// Reads a PEM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
pub fn parse(pem: &[u8]) -> Result<Loaded, String> {
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("holds no PEM private key ({e})"))?;
    let (alg, rsa_der) = match &der {
        PrivateKeyDer::Pkcs1(k) => (OID_RSA.to_vec(), k.secret_pkcs1_der().to_vec()),
        PrivateKeyDer::Pkcs8(k) => {
            pkcs8_parts(k.secret_pkcs8_der()).ok_or("holds a malformed PKCS#8 key")?
        }
        _ => return Err("holds an EC key: DKIM signs with RSA or Ed25519".into()),
    };
    if alg == OID_RSA {
        let bits = rsa_bits(&rsa_der).ok_or("holds a malformed RSA key")?;
        if bits < RSA_MIN_BITS {
            return Err(format!(
                "holds a {bits}-bit RSA key: DKIM needs {RSA_MIN_BITS} bits at least (RFC 8301)"
            ));
        }
        if bits > RSA_MAX_BITS {
            return Err(format!(
                "holds a {bits}-bit RSA key: dma-rs signs with {RSA_MAX_BITS} bits at most"
            ));
        }
        // PKCS#1 whatever the file held: the one form both readers take.
        let key =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(rsa_der)))
                .map_err(|e| format!("holds an RSA key that can not sign: {e}"))?;
        let public = spki_rsa(&key.public_key());
        Ok(Loaded {
            key: Key::Rsa(key),
            public,
            bits,
        })
    } else if alg == OID_ED25519 {
        let PrivateKeyDer::Pkcs8(k) = &der else {
            unreachable!("only PKCS#8 names Ed25519")
        };
        let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(k.secret_pkcs8_der())
            .map_err(|e| format!("holds an Ed25519 key that can not sign: {e}"))?;
        let public = key.public_key();
        Ok(Loaded {
            key: Key::Ed25519(key),
            public,
            bits: 256,
        })
    } else {
        Err("holds a key of another kind: DKIM signs with RSA or Ed25519".into())
    }
}

/// One DER element of `b`: its tag, its contents, and what follows it.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |l, &x| l << 8 | usize::from(x));
        (len, &b[n..])
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The contents of the DER element of `tag` that starts `b`, and what
/// follows it.
fn element(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = der(b)?;
    (t == tag).then_some((content, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;

/// The algorithm (its OID's DER) of a PKCS#8 PrivateKeyInfo, and the
/// private key it wraps.
fn pkcs8_parts(pkcs8: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (info, _) = element(pkcs8, SEQUENCE)?;
    let (_version, rest) = element(info, INTEGER)?;
    let (alg, rest) = element(rest, SEQUENCE)?;
    let (oid, _) = element(alg, OID)?;
    let (key, _) = element(rest, OCTET_STRING)?;
    Some((oid.to_vec(), key.to_vec()))
}

/// The modulus size in bits of a PKCS#1 RSAPrivateKey.
fn rsa_bits(pkcs1: &[u8]) -> Option<usize> {
    let (seq, _) = element(pkcs1, SEQUENCE)?;
    let (_version, rest) = element(seq, INTEGER)?;
    let (n, _) = element(rest, INTEGER)?;
    let n = &n[n.iter().position(|&b| b != 0)?..];
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// A DER element of `tag` around `content`.
fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The SubjectPublicKeyInfo of a PKCS#1 RSAPublicKey: what `p=` holds
/// for RSA (and what `openssl pkey -pubout` writes).
fn spki_rsa(pkcs1_public: &[u8]) -> Vec<u8> {
    let mut alg = der_wrap(OID, OID_RSA);
    alg.extend_from_slice(&[0x05, 0x00]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1_public);
    let mut spki = der_wrap(SEQUENCE, &alg);
    spki.extend(der_wrap(0x03, &bits));
    der_wrap(SEQUENCE, &spki)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ed25519 key as `openssl genpkey -algorithm ed25519` writes it
    /// (PKCS#8 v1, no public key), and its public key (RFC 8032 §7.1,
    /// test 1).
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";
    const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn ed25519_keys_publish_their_raw_public_key() {
        let k = parse(ED25519_PEM.as_bytes()).unwrap();
        assert_eq!(k.kind(), "ed25519");
        assert_eq!(
            k.record(),
            format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}")
        );
        assert_eq!(
            k.zone_line("ed", "example.org"),
            format!("ed._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p={ED25519_PUBLIC}\"")
        );
    }

    #[test]
    fn der_lengths_round_trip() {
        for len in [0, 1, 127, 128, 255, 256, 300, 70_000] {
            let content = vec![7u8; len];
            let w = der_wrap(0x04, &content);
            let (tag, c, rest) = der(&w).unwrap();
            assert_eq!((tag, c.len(), rest.len()), (0x04, len, 0));
        }
        // Cut short, or a length of more than four octets: refused.
        assert!(der(&[0x30, 0x82, 0x01]).is_none());
        assert!(der(&[0x30, 0x05, 1, 2]).is_none());
        assert!(der(&[0x30, 0x85, 0, 0, 0, 0, 1, 0]).is_none());
    }

    #[test]
    fn rsa_sizes_are_read_from_the_modulus() {
        // SEQUENCE { INTEGER 0, INTEGER n } with n of 1024 bits (a leading
        // 0x00 since its top bit is set) and of 2047 bits.
        let key = |n: Vec<u8>| {
            let mut seq = der_wrap(0x02, &[0]);
            seq.extend(der_wrap(0x02, &n));
            der_wrap(0x30, &seq)
        };
        let mut n1024 = vec![0u8, 0x80];
        n1024.extend(vec![1u8; 127]);
        assert_eq!(rsa_bits(&key(n1024)), Some(1024));
        let mut n2047 = vec![0x7f];
        n2047.extend(vec![1u8; 255]);
        assert_eq!(rsa_bits(&key(n2047)), Some(2047));
        assert_eq!(rsa_bits(&[0x30, 0x00]), None);
    }

    #[test]
    fn other_things_are_refused_with_a_reason() {
        for (pem, why) in [
            ("", "no PEM private key"),
            (
                "-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n",
                "no PEM",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMAo=\n-----END PRIVATE KEY-----\n",
                "malformed PKCS#8",
            ),
        ] {
            let e = parse(pem.as_bytes()).err().unwrap();
            assert!(e.contains(why), "{pem:?}: {e}");
        }
    }

    #[test]
    fn a_key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, ED25519_PEM).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(unsafe_file(&meta, me).is_none(), ok, "{mode:o}");
            assert_eq!(load(&p).is_ok(), ok, "{mode:o}");
        }
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert!(unsafe_file(&meta, me).unwrap().contains("regular file"));
        // Another user's file (unless that user is root).
        let meta = std::fs::metadata(&p).unwrap();
        if me != 0 {
            assert!(unsafe_file(&meta, me + 1).unwrap().contains("owned by"));
        }
    }
}
