//! What the DKIM tests build on: keys made by openssl with their DNS
//! records, the TXT and MX records for the fake DNS, servers on
//! 127.0.15.N:25, and dkimpy's verdict (tests/support/dkim_verify.py)
//! asking the same fake DNS.
//!
//! Use it as `#[path = "support/dkimworld.rs"] mod dkimworld;` beside
//! `#[path = "support/dns.rs"] mod fakedns;`, `#[path =
//! "support/smtpd.rs"] mod smtpd;` and `mod support;`.

#![allow(dead_code)] // Each test binary uses a different part.

use std::net::Ipv4Addr;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::fakedns::{FakeDns, Record};
use super::smtpd::{Behavior, FakeSmtp};
use super::support::Env;

/// A key pair made by openssl, and its DNS record text.
pub struct TestKey {
    pub pem: String,
    pub record: String,
}

/// Runs openssl with `args`, `stdin` on its input; its output.
pub fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut i = c.stdin.take().unwrap();
    i.write_all(stdin.unwrap_or_default()).unwrap();
    drop(i);
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// A private key (PEM) from `openssl genpkey` with `algorithm`.
pub fn genpkey(algorithm: &[&str]) -> String {
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algorithm);
    String::from_utf8(openssl(&args, None)).unwrap()
}

/// A key of `algorithm` and its record for `k=kind` (`rsa`, `ed25519`).
pub fn make_key(algorithm: &[&str], kind: &str) -> TestKey {
    let pem = genpkey(algorithm);
    let spki = openssl(
        &["pkey", "-pubout", "-outform", "DER"],
        Some(pem.as_bytes()),
    );
    // RSA publishes the SubjectPublicKeyInfo; Ed25519 its raw 32 bytes,
    // which end the SubjectPublicKeyInfo (RFC 8463 §4).
    let public = match kind {
        "rsa" => &spki[..],
        _ => &spki[spki.len() - 32..],
    };
    TestKey {
        pem,
        record: format!("v=DKIM1; k={kind}; p={}", STANDARD.encode(public)),
    }
}

/// The TXT record publishing `key` under `selector` in `domain`, in
/// strings of at most 255 octets.
pub fn txt(selector: &str, domain: &str, key: &TestKey) -> Record {
    let strings = key
        .record
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    Record::Txt(format!("{selector}._domainkey.{domain}"), strings)
}

/// `domain`'s MX, `mx.<domain>` at 127.0.15.`last`.
pub fn mx(domain: &str, last: u8) -> Vec<Record> {
    let host = format!("mx.{domain}");
    vec![
        Record::Mx(domain.into(), 10, host.clone()),
        Record::A(host, Ipv4Addr::new(127, 0, 15, last)),
    ]
}

/// A server on 127.0.15.`last`:25.
pub fn listen(last: u8, b: Behavior) -> FakeSmtp {
    FakeSmtp::start_on(&format!("127.0.15.{last}:25"), b)
}

/// The installation's LOGFILE (`<dir>/log`).
pub fn log(env: &Env) -> String {
    std::fs::read_to_string(env.dir.path().join("log")).unwrap_or_default()
}

/// The message as the server received it, dot-stuffing undone.
pub fn unstuffed(data: &str) -> String {
    data.split_inclusive("\r\n")
        .map(|l| l.strip_prefix('.').unwrap_or(l))
        .collect()
}

/// dkimpy's verdict on `msg`: its exit code (0 all verify, 1 one fails,
/// 2 none) and its lines.
pub fn verify(dns: &FakeDns, msg: impl AsRef<[u8]>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("msg");
    std::fs::write(&f, msg).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkim_verify.py");
    // Debian's interpreter: the one python3-dkim is installed for.
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(dns.addr().port().to_string())
        .arg(&f)
        .output()
        .expect("/usr/bin/python3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("ModuleNotFoundError"),
        "{err}\n(install python3-dkim python3-nacl python3-dnspython: scripts/test-setup.sh)"
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.code().unwrap_or(-1), format!("{out}{err}"))
}

/// The DKIM-Signature fields of `msg`, unfolded.
pub fn signatures(msg: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap();
    let mut out: Vec<String> = Vec::new();
    let mut in_sig = false;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if in_sig {
                out.last_mut().unwrap().push_str(line);
            }
        } else {
            in_sig = line.to_ascii_lowercase().starts_with("dkim-signature:");
            if in_sig {
                out.push(line.to_string());
            }
        }
    }
    out
}
