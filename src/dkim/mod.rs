//! DKIM signing of outgoing mail (RFC 6376; Ed25519 keys per RFC 8463).
//!
//! Which mail: a message whose every From: address is in the signing
//! domain (`DKIM_DOMAIN`, else the mail name) or below it, when at least
//! one `DKIM_KEY` is configured, and only for its remote recipients: a
//! copy for a local mailbox, command or file is not signed.
//!
//! When: the runner signs a message once, before its first remote
//! transaction, with every key (RSA and Ed25519 together make two
//! signatures), and stores the DKIM-Signature fields in the envelope
//! (durably, before anything is sent: [`crate::spool::Envelope::dkim`]).
//! Every attempt then sends them in front of the message, so a retry, or
//! another recipient's transaction, sends the same bytes. What is signed
//! is the message as it goes out: CRLF line ends, long lines folded as
//! [`crate::smtp::body`] sends them, after every header change of ours
//! (Received is not among the signed fields); a message with 8-bit octets
//! is signed in its 7-bit form ([`crate::smtp::downgrade`]), and that
//! form then goes to every server, 8BITMIME or not (RFC 6376 §5.3).
//!
//! How: relaxed/relaxed canonicalization, `t=`, no `l=`; the signed fields
//! are From (twice, so that no second From can be added), To, Cc, Subject,
//! Date, Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding,
//! Reply-To, In-Reply-To and References, each also when absent (so that
//! none can be added).
//!
//! A key that can not be used (missing, unreadable, open to other users,
//! malformed) defers the remote recipients with 4.3.5 and the reason,
//! rather than sending mail unsigned that the domain's policy may have
//! receivers refuse. Each decision is logged: `dkim: signed d=... s=...`
//! or `dkim: not signed: <why>`.

#[cfg(feature = "dkim")]
pub mod key;

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};

use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::config::Config;
use crate::spool::Envelope;
use crate::{info, notice};

/// The header fields signed. Each is listed once more than the message
/// has it ([`oversigned`]): mail-auth signs a name listed beyond the
/// message's fields as absent, so that none of them can be added above
/// the signed ones (RFC 6376 §8.15), not a second From, Subject or
/// Reply-To that a reader would show instead.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "In-Reply-To",
    "References",
];

/// How much of the message, as sent, is read for its header section:
/// intake refuses a user's header section larger than
/// [`crate::intake::MAX_HEADER`], and adds its own fields to it (sent
/// with CRLF line ends). A header section that does not end within this
/// is not signed: a From: past the part checked must not ride on a
/// signature.
const MAX_HEADER: usize = crate::intake::MAX_HEADER * 2 + 64 * 1024;

/// What DKIM makes of a message about to go to its remote recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No signature: no key configured, or not mail of the domain.
    Unsigned,
    /// The signatures made at an earlier attempt, in the envelope.
    Stored,
    /// New signatures, to be stored in the envelope (durably) before
    /// anything is sent.
    Signed(Vec<String>),
    /// A key could not be used: the remote recipients wait, with this
    /// reason (`4.3.5 ...`).
    Defer(String),
}

/// Decides (and logs) whether and how the message in `data`, with
/// envelope `env`, is signed for its remote recipients.
pub fn plan(config: &Config, data: &File, env: &Envelope) -> Plan {
    if !env.dkim.is_empty() {
        for h in &env.dkim {
            info!(
                "dkim: signed d={} s={} (the signature made for the first attempt)",
                tag(h, "d"),
                tag(h, "s")
            );
        }
        return Plan::Stored;
    }
    if config.dkim_keys.is_empty() {
        return Plan::Unsigned;
    }
    let domain = config.dkim_domain();
    // What is checked is what is signed and sent: the 7-bit form of an
    // 8-bit message, its bare CRs line ends, its long lines folded.
    let signed = crate::remote::signed_form(data)
        .map_err(Unsignable::Io)
        .and_then(|form| Ok((wire_header(&form)?, form)));
    let (head, form) = match signed {
        Ok(found) => found,
        Err(Unsignable::Header(why)) => {
            notice!("dkim: not signed: {why}");
            return Plan::Unsigned;
        }
        Err(Unsignable::Io(why)) => {
            crate::warning!("dkim: not signed, the remote recipients wait: {why}");
            return Plan::Defer(why);
        }
    };
    if let Err(why) = from_in_domain(&head, &domain) {
        notice!("dkim: not signed: {why}");
        return Plan::Unsigned;
    }
    match sign(config, &form, &oversigned(&head), &domain) {
        Ok(headers) => {
            for h in &headers {
                info!(
                    "dkim: signed d={} s={} a={}",
                    tag(h, "d"),
                    tag(h, "s"),
                    tag(h, "a")
                );
            }
            Plan::Signed(headers)
        }
        Err(why) => {
            crate::warning!("dkim: not signed, the remote recipients wait: {why}");
            Plan::Defer(why)
        }
    }
}

/// The value of tag `name` in DKIM-Signature field `h` (`?` if none).
fn tag<'h>(h: &'h str, name: &str) -> &'h str {
    let value = h.split_once(':').map_or("", |(_, v)| v);
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map_or("?", |(_, v)| v.trim())
}

/// `Ok` when every From: address of the header section `head` (as sent:
/// [`wire_header`]) is in `domain` or one of its subdomains (ASCII case
/// ignored); else why not.
pub fn from_in_domain(head: &[u8], domain: &str) -> Result<(), String> {
    let msg = MessageParser::default()
        .parse_headers(head)
        .ok_or("no header section")?;
    let mut seen = 0;
    for h in msg.headers().iter().filter(|h| h.name == HeaderName::From) {
        let HeaderValue::Address(list) = &h.value else {
            return Err("a From: field holds no address".into());
        };
        for a in list.iter() {
            let Some(addr) = a.address.as_deref() else {
                return Err("a From: field holds no address".into());
            };
            let shown = crate::escape::controls(addr);
            let Some((_, d)) = addr.rsplit_once('@') else {
                return Err(format!("From: <{shown}> has no domain"));
            };
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !in_domain(&d, domain) {
                return Err(format!("From: <{shown}> is not in {domain} (DKIM_DOMAIN)"));
            }
            seen += 1;
        }
    }
    if seen == 0 {
        return Err("no From: address".into());
    }
    Ok(())
}

/// Whether `d` is `domain` or below it (both lower case).
fn in_domain(d: &str, domain: &str) -> bool {
    d == domain
        || d.strip_suffix(domain)
            .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
}

/// Why a message is not signed: its header section (it goes unsigned),
/// or the spool (it waits).
enum Unsignable {
    Header(String),
    Io(String),
}

/// The header section of the message in `form` as it goes over the wire
/// ([`crate::smtp::body::write_chunk`]: CRLF, a bare CR a line end, long
/// lines folded), through its empty line; refused when it does not end
/// within [`MAX_HEADER`].
fn wire_header(form: &File) -> Result<Vec<u8>, Unsignable> {
    let mut head = Head(Vec::new());
    let file = reader(form)
        .map_err(|e| Unsignable::Io(format!("4.3.0 can not read the queued message: {e}")))?;
    let mut r = BufReader::with_capacity(64 * 1024, file);
    match crate::smtp::body::write_chunk(&mut r, &[], &mut head) {
        Ok(_) => Ok(head.0),
        Err(e) if e.kind() == io::ErrorKind::WriteZero => Ok(head.0),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(Unsignable::Header(format!(
            "its header section does not end within {} KiB",
            MAX_HEADER / 1024
        ))),
        Err(e) => Err(Unsignable::Io(format!(
            "4.3.0 can not read the queued message: {e}"
        ))),
    }
}

/// Takes the bytes written up to the end of the header section (then
/// stops the writer with `WriteZero`), at most [`MAX_HEADER`] of them.
struct Head(Vec<u8>);

impl io::Write for Head {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let from = self.0.len().saturating_sub(3);
        self.0.extend_from_slice(buf);
        if let Some(i) = self.0[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            self.0.truncate(from + i + 4);
            return Err(io::ErrorKind::WriteZero.into());
        }
        if self.0.len() > MAX_HEADER {
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// [`SIGNED_FIELDS`], each as many times as the header section `head`
/// has it, and once more.
fn oversigned(head: &[u8]) -> Vec<&'static str> {
    let names: Vec<&[u8]> = head
        .split(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        .filter_map(|l| {
            l.iter()
                .position(|&b| b == b':')
                .map(|i| l[..i].trim_ascii())
        })
        .collect();
    let mut out = Vec::new();
    for field in SIGNED_FIELDS {
        let n = names
            .iter()
            .filter(|n| n.eq_ignore_ascii_case(field.as_bytes()))
            .count();
        out.extend(std::iter::repeat_n(*field, n + 1));
    }
    out
}

fn reader(data: &File) -> io::Result<File> {
    let mut f = data.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

/// Signs the message in `data` with every key of `config`, for `domain`:
/// the DKIM-Signature fields, as the envelope keeps them.
#[cfg(feature = "dkim")]
fn sign(
    config: &Config,
    form: &File,
    fields: &[&str],
    domain: &str,
) -> Result<Vec<String>, String> {
    use mail_auth::common::headers::HeaderWriter as _;

    let mut keys = Vec::new();
    for k in &config.dkim_keys {
        let loaded = key::load(&k.path).map_err(|why| {
            format!(
                "4.3.5 DKIM_KEY {}: {why}; the mail waits rather than going out unsigned",
                k.path.display()
            )
        })?;
        keys.push((k, loaded));
    }
    let mut out = Vec::new();
    for (k, loaded) in keys {
        let sig = match loaded.key {
            key::Key::Rsa(rsa) => sign_with(rsa, domain, &k.selector, fields, form),
            key::Key::Ed25519(ed) => sign_with(ed, domain, &k.selector, fields, form),
        }
        .map_err(|e| format!("4.3.0 DKIM signing with {} failed: {e}", k.path.display()))?;
        let header = sig
            .to_header()
            .trim_end_matches("\r\n")
            .replace("\r\n", "\n");
        if !crate::spool::envelope::valid_dkim_header(&header) {
            return Err(format!(
                "4.3.0 DKIM signing with {} made an unexpected header: {header:?}",
                k.path.display()
            ));
        }
        out.push(header);
    }
    Ok(out)
}

/// One signature with `key`: relaxed/relaxed, `fields` ([`oversigned`]),
/// over the message in `form` as it goes over the wire, without the
/// dot-stuffing (what BDAT sends: [`crate::smtp::body`]).
#[cfg(feature = "dkim")]
fn sign_with<K>(
    key: K,
    domain: &str,
    selector: &str,
    fields: &[&str],
    form: &File,
) -> Result<mail_auth::dkim::Signature, String>
where
    K: mail_auth::common::crypto::SigningKey,
    <K::Hasher as mail_auth::common::crypto::HashImpl>::Context:
        mail_auth::common::crypto::HashContext,
{
    use mail_auth::dkim::{Canonicalization, DkimSigner};
    let signer = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(fields.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    let mut stream = Feed(signer.sign_streaming());
    {
        let mut r = BufReader::with_capacity(64 * 1024, reader(form).map_err(|e| e.to_string())?);
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut stream);
        crate::smtp::body::write_chunk(&mut r, &[], &mut w)
            .and_then(|_| io::Write::flush(&mut w))
            .map_err(|e| e.to_string())?;
    }
    stream.0.finish().map_err(|e| e.to_string())
}

/// A signing stream as a writer.
#[cfg(feature = "dkim")]
struct Feed<'a, K: mail_auth::common::crypto::SigningKey>(
    mail_auth::dkim::DkimSigningStream<'a, K>,
);

#[cfg(feature = "dkim")]
impl<K: mail_auth::common::crypto::SigningKey> io::Write for Feed<'_, K> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// No signing in a build without the `dkim` feature (whose configuration
/// can name no key: see `config::conf`).
#[cfg(not(feature = "dkim"))]
fn sign(_: &Config, _: &File, _: &[&str], _: &str) -> Result<Vec<String>, String> {
    Err("4.3.5 this dma-rs was built without DKIM signing".into())
}

/// What `dma --check` says of the DKIM keys of `config`, which the user
/// `runner` signs with: lines to print (`# ` notes, and each key's DNS
/// record as a zone file line), and warnings.
pub fn check(config: &Config, runner: u32) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warn = Vec::new();
    if config.dkim_keys.is_empty() {
        return (lines, warn);
    }
    let domain = config.dkim_domain();
    lines.push(format!(
        "# DKIM: mail whose From: addresses are all in {domain} (or below it) is signed for remote recipients"
    ));
    for k in &config.dkim_keys {
        check_key(k, &domain, runner, &mut lines, &mut warn);
    }
    (lines, warn)
}

/// [`check`] for one key.
#[cfg(feature = "dkim")]
fn check_key(
    k: &crate::config::conf::DkimKey,
    domain: &str,
    runner: u32,
    lines: &mut Vec<String>,
    warn: &mut Vec<String>,
) {
    use std::os::unix::fs::MetadataExt;
    let shown = k.path.display();
    let meta = match std::fs::metadata(&k.path) {
        Ok(m) => m,
        Err(e) => {
            warn.push(format!("DKIM_KEY {shown}: {e} (mail to be signed waits)"));
            return;
        }
    };
    if let Some(why) = key::unsafe_file(&meta, runner) {
        warn.push(format!(
            "DKIM_KEY {shown}: {why} (the runners refuse it: mail to be signed waits)"
        ));
    } else if meta.uid() != runner && runner != 0 {
        let name = nix::unistd::User::from_uid(runner.into())
            .ok()
            .flatten()
            .map_or(runner.to_string(), |u| u.name);
        warn.push(format!(
            "DKIM_KEY {shown} belongs to root, and the runners (user {name}) can not read it: chown {name} {shown}"
        ));
    }
    if let Some(why) = key::unsafe_dirs(&k.path, runner) {
        warn.push(format!(
            "DKIM_KEY {shown}: {why}: whoever may write there can swap the key or hold signed mail up"
        ));
    }
    // Read as the runner would: without waiting on a FIFO, a regular file
    // only, and no more of it than a key can be.
    let read = key::open(&k.path).and_then(|(f, m)| {
        if !m.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut pem = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(f, key::MAX_FILE), &mut pem)?;
        Ok(pem)
    });
    let pem = match read {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            lines.push(format!(
                "# DKIM_KEY {shown}: not readable by this user; run dma --check as root to see its DNS record"
            ));
            return;
        }
        Err(e) => {
            warn.push(format!("DKIM_KEY {shown}: {e}"));
            return;
        }
    };
    match key::parse(&pem) {
        Err(why) => warn.push(format!("DKIM_KEY {shown}: {why}")),
        Ok(loaded) => {
            lines.push(format!(
                "# DKIM_KEY {shown}: {} {} bits, selector {}; publish this TXT record:",
                loaded.kind(),
                loaded.bits,
                k.selector
            ));
            lines.push(loaded.zone_line(&k.selector, domain));
        }
    }
}

/// No key can be configured without the `dkim` feature.
#[cfg(not(feature = "dkim"))]
fn check_key(
    _: &crate::config::conf::DkimKey,
    _: &str,
    _: u32,
    _: &mut Vec<String>,
    _: &mut Vec<String>,
) {
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn from_must_be_in_the_domain_or_below() {
        for (msg, ok) in [
            ("From: a@example.org\n\nbody\n", true),
            ("From: A <a@Mail.EXAMPLE.org.>\n\nbody\n", true),
            (
                "Received: x\nFrom: a@example.org,\n b@sub.example.org\n\n",
                true,
            ),
            ("From: a@example.org, b@other.org\n\n", false),
            ("From: a@badexample.org\n\n", false),
            ("From: a@example.org.evil\n\n", false),
            ("From: a@example.org\nFrom: b@other.org\n\n", false),
            ("From: group: a@example.org;\n\n", true),
            ("From: alice\n\n", false),
            ("From: undisclosed:;\n\n", false),
            ("Subject: no from\n\nFrom: a@example.org\n", false),
            ("From:\n\n", false),
            // A bare CR is a line end as sent: a second From: it hides
            // from a parser of the spool's text is seen (attack15_dkim).
            ("X-A: x\rFrom: m@evil.test\nFrom: a@example.org\n\n", false),
            (
                "X-A: x\rFrom: m@evil.test\nX-B: y\r\rFrom: a@example.org\n\n",
                false,
            ),
        ] {
            let r = from_in_domain(&head(msg), "example.org");
            assert_eq!(r.is_ok(), ok, "{msg:?}: {r:?}");
        }
        let why = from_in_domain(&head("From: a@other.org\n\n"), "example.org").unwrap_err();
        assert_eq!(
            why,
            "From: <a@other.org> is not in example.org (DKIM_DOMAIN)"
        );
    }

    /// The header section of `msg` as sent.
    fn head(msg: &str) -> Vec<u8> {
        match wire_header(&file(msg)) {
            Ok(h) => h,
            Err(Unsignable::Header(why) | Unsignable::Io(why)) => panic!("{msg:?}: {why}"),
        }
    }

    #[test]
    fn the_header_is_read_as_sent_and_only_whole() {
        assert_eq!(
            head("From: a@example.org\nX: y\r\n\nbody\nFrom: b@x.org\n"),
            b"From: a@example.org\r\nX: y\r\n\r\n"
        );
        assert_eq!(head("From: a@example.org\n"), b"From: a@example.org\r\n");
        // A From: past what is read is never signed over.
        let mut big = "From: a@example.org\n".to_string();
        while big.len() <= MAX_HEADER {
            big.push_str(&format!("X-Pad: {}\n", "p".repeat(900)));
        }
        big.push_str("From: m@evil.test\n\nbody\n");
        assert!(matches!(
            wire_header(&file(&big)),
            Err(Unsignable::Header(_))
        ));
    }

    #[test]
    fn every_signed_field_is_listed_once_more_than_present() {
        let fields =
            oversigned(b"From: a\r\nSubject: s\r\nsubject: t\r\n  From: folded\r\nTo: x\r\n\r\n");
        let count = |name: &str| fields.iter().filter(|f| **f == name).count();
        assert_eq!(count("From"), 2);
        assert_eq!(count("Subject"), 3);
        assert_eq!(count("To"), 2);
        assert_eq!(count("Reply-To"), 1);
        assert_eq!(fields.len(), SIGNED_FIELDS.len() + 4);
    }

    #[test]
    fn tags_are_read_from_a_stored_signature() {
        let h = "DKIM-Signature: v=1; a=rsa-sha256; s=sel;\n\td=example.org; c=relaxed/relaxed;\n\th=From:To; b=abc";
        assert_eq!(tag(h, "d"), "example.org");
        assert_eq!(tag(h, "s"), "sel");
        assert_eq!(tag(h, "a"), "rsa-sha256");
        assert_eq!(tag(h, "x"), "?");
    }

    #[test]
    fn without_keys_nothing_is_signed_and_stored_signatures_are_kept() {
        let data = file("From: a@example.org\n\nbody\n");
        let mut env = Envelope::parse(
            "dma-rs-queue 2\nid x\ncreated 0\nsender \nuser u\nuid 1\nsize 1\nrcpt a\nstate pending\nend 1\n",
        )
        .unwrap();
        let config = Config::default();
        assert_eq!(plan(&config, &data, &env), Plan::Unsigned);
        env.dkim = vec!["DKIM-Signature: v=1; d=example.org; s=s; b=x".into()];
        assert_eq!(plan(&config, &data, &env), Plan::Stored);
    }

    #[cfg(feature = "dkim")]
    #[test]
    fn a_missing_key_defers_with_4_3_5() {
        let data = file("From: a@example.org\n\nbody\n");
        let env = Envelope::parse(
            "dma-rs-queue 2\nid x\ncreated 0\nsender \nuser u\nuid 1\nsize 1\nrcpt a\nstate pending\nend 1\n",
        )
        .unwrap();
        let config = Config::parse(
            std::path::Path::new("/x.conf"),
            "DKIM_KEY /nonexistent/dkim.pem s\nDKIM_DOMAIN example.org\n",
        )
        .unwrap();
        match plan(&config, &data, &env) {
            Plan::Defer(why) => assert!(
                why.starts_with("4.3.5 DKIM_KEY /nonexistent/dkim.pem: No such file"),
                "{why}"
            ),
            p => panic!("{p:?}"),
        }
        // Not mail of the domain: not signed, whatever the key.
        let other = file("From: a@other.org\n\nbody\n");
        assert_eq!(plan(&config, &other, &env), Plan::Unsigned);
    }
}
