//! Just enough HTTP/1.1 to fetch a policy (RFC 8461 §3.3): the GET request,
//! and a reader of its response that takes only a `200` of `text/plain`
//! (no redirect is followed), with a body delimited by Content-Length, by
//! chunks, or by the end of the connection, of at most [`MAX_BODY`] bytes.
//!
//! It reads from any byte stream: a test gives it bytes, the fetcher a TLS
//! stream whose every read ends by one deadline. A body larger than the
//! limit is an error, never a policy parsed from its first part.

use std::io::{self, BufRead, BufReader, Read};

use super::policy::shown;

/// The largest policy body taken, in bytes (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The most bytes of status lines and header fields taken.
const MAX_HEAD: usize = 16 * 1024;

/// The path of a policy on its host (§3.3).
pub const PATH: &str = "/.well-known/mta-sts.txt";

/// The request for the policy on `host`.
pub fn request(host: &str) -> String {
    format!(
        "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: dma-rs/{}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// How the body ends.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// Reads the response to [`request`] from `r` and returns its body: only
/// for status 200 and media type text/plain. Errors are one line
/// ("HTTP 404", "more than 64 KiB", an I/O error's words).
pub fn read_body(r: impl Read) -> Result<Vec<u8>, String> {
    let mut r = BufReader::new(r);
    // The bytes of status lines and fields read so far.
    let mut read = 0;
    let head = loop {
        let h = read_head(&mut r, &mut read)?;
        // An interim response (103 Early Hints): the real one follows.
        if !((100..200).contains(&h.code) && h.code != 101) {
            break h;
        }
    };
    if head.code != 200 {
        let mut why = format!("HTTP {}", head.code);
        if !head.reason.is_empty() {
            why.push_str(&format!(" {}", shown(&head.reason)));
        }
        if (300..400).contains(&head.code) {
            if let Some(to) = head.fields("location").next() {
                why.push_str(&format!(" to {}", shown(to)));
            }
            why.push_str(" (a policy is never fetched through a redirect: RFC 8461 §3.3)");
        }
        return Err(why);
    }
    match head.fields("content-type").next() {
        None => return Err("no Content-Type (a policy is text/plain)".into()),
        Some(t) => {
            let media = t.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("text/plain") {
                return Err(format!("Content-Type {:?}, not text/plain", shown(t)));
            }
        }
    }
    if let Some(coding) = head
        .fields("content-encoding")
        .find(|c| !c.eq_ignore_ascii_case("identity"))
    {
        return Err(format!(
            "Content-Encoding {:?}, which was not asked for",
            shown(coding)
        ));
    }
    let body = match framing(
        &head.fields("transfer-encoding").collect::<Vec<_>>(),
        &head.fields("content-length").collect::<Vec<_>>(),
    )? {
        Framing::Length(n) => {
            if n > MAX_BODY as u64 {
                return Err(format!("more than 64 KiB (Content-Length: {n})"));
            }
            let mut body = Vec::with_capacity(n as usize);
            (&mut r).take(n).read_to_end(&mut body).map_err(words)?;
            if body.len() as u64 != n {
                return Err(format!(
                    "the connection closed after {} of {n} bytes of the policy",
                    body.len()
                ));
            }
            body
        }
        Framing::Chunked => chunked(&mut r, &mut read)?,
        Framing::Close => {
            let mut body = Vec::new();
            (&mut r)
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(words)?;
            body
        }
    };
    if body.len() > MAX_BODY {
        return Err("more than 64 KiB".into());
    }
    Ok(body)
}

/// How the body is delimited, from the Transfer-Encoding and
/// Content-Length fields (RFC 9112 §6.3).
fn framing(te: &[&str], cl: &[&str]) -> Result<Framing, String> {
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            _ => Err(format!(
                "Transfer-Encoding {:?}: only chunked is understood",
                shown(&te.join(", "))
            )),
        };
    }
    let mut length = None;
    for v in cl.iter().flat_map(|v| v.split(',')).map(str::trim) {
        let n = (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| format!("Content-Length {:?} is not a length", shown(v)))?;
        if length.is_some_and(|l| l != n) {
            return Err("two different Content-Length fields".into());
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// A chunked body (RFC 9112 §7.1), trailer fields read and dropped.
fn chunked(r: &mut impl BufRead, read: &mut usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, 1024, "a chunk size")?;
        let size = line
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches([' ', '\t']);
        let n = (!size.is_empty() && size.len() <= 8)
            .then(|| u64::from_str_radix(size, 16).ok())
            .flatten()
            .ok_or_else(|| format!("chunk size {:?} is not a hexadecimal number", shown(size)))?;
        if n == 0 {
            // Trailer fields, up to the empty line.
            while !head_line(r, read, "the trailer fields")?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + n > MAX_BODY as u64 {
            return Err("more than 64 KiB".into());
        }
        let before = body.len();
        r.take(n).read_to_end(&mut body).map_err(words)?;
        if (body.len() - before) as u64 != n {
            return Err("the connection closed inside a chunk of the policy".into());
        }
        if !read_line(r, 2, "the end of a chunk")?.is_empty() {
            return Err("a chunk is longer than its size says".into());
        }
    }
}

/// A response's status line and header fields.
struct Head {
    code: u16,
    reason: String,
    fields: Vec<(String, String)>,
}

impl Head {
    /// The values of the fields called `name`.
    fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One response's head, reading at most [`MAX_HEAD`] bytes counted in
/// `read` across the interim ones.
fn read_head(r: &mut impl BufRead, read: &mut usize) -> Result<Head, String> {
    let line = head_line(r, read, "the status line")?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").trim().to_string();
    let code = (version.starts_with("HTTP/1.") && code.len() == 3)
        .then(|| code.parse::<u16>().ok())
        .flatten()
        .filter(|c| *c >= 100)
        .ok_or_else(|| format!("not an HTTP/1.1 response: {:?}", shown(&line)))?;
    let mut fields = Vec::new();
    loop {
        let line = head_line(r, read, "the header fields")?;
        if line.is_empty() {
            return Ok(Head {
                code,
                reason,
                fields,
            });
        }
        if line.starts_with([' ', '\t']) {
            return Err(format!("a folded header field line: {:?}", shown(&line)));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "a header field without a colon: {:?}",
                shown(&line)
            ));
        };
        fields.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
}

/// A line of a response's head, counted in `read`.
fn head_line(r: &mut impl BufRead, read: &mut usize, what: &str) -> Result<String, String> {
    let line = read_line(r, MAX_HEAD, what)?;
    *read += line.len() + 2;
    if *read > MAX_HEAD {
        return Err("more than 16 KiB of header fields".into());
    }
    Ok(line)
}

/// One line without its CRLF (or LF), of at most `max` bytes; text that
/// is not UTF-8 is replaced, since only ASCII is ever looked at.
fn read_line(r: &mut impl BufRead, max: usize, what: &str) -> Result<String, String> {
    let mut line = Vec::new();
    r.take(max as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(words)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > max {
            format!("a line longer than {max} bytes in {what}")
        } else {
            format!("the connection closed in {what}")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// An I/O error from the connection, in words.
fn words(e: io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        // rustls: the server closed the TCP connection without ending TLS,
        // so what came may have been cut short by someone in between.
        return "the connection closed without a TLS close_notify (the policy may be cut short)"
            .into();
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
    const POLICY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 86400\r\n";

    fn body(wire: &[u8]) -> Result<String, String> {
        read_body(wire).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn the_request_asks_for_the_policy_and_a_close() {
        assert_eq!(
            request("mta-sts.example.com"),
            format!(
                "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nUser-Agent: dma-rs/{}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn bodies_by_length_by_chunks_and_by_close() {
        let length = format!(
            "{OK}Content-Length: {}\r\n\r\n{POLICY}trailing junk",
            POLICY.len()
        );
        let mut chunks = format!("{OK}Transfer-Encoding: chunked\r\n\r\n");
        for part in [&POLICY[..10], &POLICY[10..11], &POLICY[11..]] {
            chunks.push_str(&format!("{:X};ext=1\r\n{part}\r\n", part.len()));
        }
        chunks.push_str("0\r\nX-Trailer: 1\r\n\r\n");
        let close = format!("{OK}\r\n{POLICY}");
        let lf_only =
            format!("HTTP/1.0 200 OK\nContent-type: Text/Plain; charset=utf-8\n\n{POLICY}");
        let interim = format!("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n{close}");
        let both = format!(
            "{OK}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{POLICY}\r\n0\r\n\r\n",
            POLICY.len()
        );
        for wire in [length, chunks, close, lf_only, interim, both] {
            assert_eq!(body(wire.as_bytes()).as_deref(), Ok(POLICY), "{wire}");
        }
    }

    #[test]
    fn only_a_200_of_text_plain_under_64_kib_is_a_policy() {
        let big = "x".repeat(70 * 1024);
        let chunk = "y".repeat(40 * 1024);
        for (wire, want) in [
            (
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno".to_string(),
                "HTTP 404 Not Found",
            ),
            (
                "HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/p.txt\r\n\r\n".into(),
                "HTTP 301 Moved Permanently to https://elsewhere.example/p.txt (a policy is never fetched through a redirect: RFC 8461 §3.3)",
            ),
            ("HTTP/1.1 500\r\n\r\n".into(), "HTTP 500"),
            (
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n{POLICY}"),
                "Content-Type \"text/html\", not text/plain",
            ),
            (
                format!("HTTP/1.1 200 OK\r\n\r\n{POLICY}"),
                "no Content-Type (a policy is text/plain)",
            ),
            (format!("{OK}\r\n{big}"), "more than 64 KiB"),
            (
                format!("{OK}Content-Length: {}\r\n\r\n{big}", big.len()),
                "more than 64 KiB (Content-Length: 71680)",
            ),
            (
                format!("{OK}Transfer-Encoding: chunked\r\n\r\n{0:x}\r\n{chunk}\r\n{0:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()),
                "more than 64 KiB",
            ),
            (
                format!("{OK}Content-Length: 100\r\n\r\n{POLICY}"),
                "the connection closed after 66 of 100 bytes of the policy",
            ),
            (
                format!("{OK}Content-Length: 5\r\nContent-Length: 6\r\n\r\n{POLICY}"),
                "two different Content-Length fields",
            ),
            (
                format!("{OK}Content-Length: -1\r\n\r\n"),
                "Content-Length \"-1\" is not a length",
            ),
            (
                format!("{OK}Transfer-Encoding: gzip, chunked\r\n\r\n"),
                "Transfer-Encoding \"gzip, chunked\": only chunked is understood",
            ),
            (
                format!("{OK}Content-Encoding: gzip\r\n\r\n"),
                "Content-Encoding \"gzip\", which was not asked for",
            ),
            (
                format!("{OK}Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
                "chunk size \"zz\" is not a hexadecimal number",
            ),
            (
                format!("{OK}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"),
                "a chunk is longer than its size says",
            ),
            (
                format!("{OK}Transfer-Encoding: chunked\r\n\r\n10\r\nabc"),
                "the connection closed inside a chunk of the policy",
            ),
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n".into(), "the connection closed in the header fields"),
            ("".into(), "the connection closed in the status line"),
            ("SSH-2.0-OpenSSH_9.2\r\n".into(), "not an HTTP/1.1 response: \"SSH-2.0-OpenSSH_9.2\""),
            (format!("{OK} folded\r\n\r\n"), "a folded header field line: \" folded\""),
            (
                format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "h".repeat(20_000)),
                "a line longer than 16384 bytes in the header fields",
            ),
            (
                "HTTP/1.1 302 \u{202e}dnuoF\r\nLocation: https://x/\u{2028}\x1b[2J\r\n\r\n".into(),
                "HTTP 302 ?dnuoF to https://x/??[2J (a policy is never fetched through a redirect: RFC 8461 §3.3)",
            ),
        ] {
            let got = body(wire.as_bytes()).unwrap_err();
            assert_eq!(got, want, "{}", shown(&wire));
        }
    }

    /// A stream that yields `data` and then fails as rustls does when the
    /// server closes TCP without a TLS close_notify.
    struct Cut(&'static [u8]);
    impl Read for Cut {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
            }
            let n = self.0.read(b)?;
            Ok(n)
        }
    }

    #[test]
    fn a_close_delimited_body_needs_a_close_notify() {
        let got = read_body(Cut(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n",
        ));
        assert_eq!(
            got.unwrap_err(),
            "the connection closed without a TLS close_notify (the policy may be cut short)"
        );
        // With a length, what follows the body is never read.
        let got = read_body(Cut(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
        ));
        assert_eq!(got.unwrap(), b"ok");
    }

    proptest::proptest! {
        #[test]
        fn the_reader_never_panics(
            head in "HTTP/1\\.[01] [0-9]{3}[ -~]{0,10}\r?\n((Content-Type|Content-Length|Transfer-Encoding|X)[ -~]{0,20}\r?\n){0,4}\r?\n",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut wire = head.into_bytes();
            wire.extend_from_slice(&body);
            if let Ok(b) = read_body(&wire[..]) {
                proptest::prop_assert!(b.len() <= MAX_BODY);
            }
        }

        #[test]
        fn the_reader_never_panics_on_any_bytes(wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..500)) {
            let _ = read_body(&wire[..]);
        }
    }

    #[test]
    fn too_many_interim_responses_hit_the_header_limit() {
        let wire = "HTTP/1.1 100 Continue\r\n\r\n".repeat(1000);
        assert_eq!(
            body(wire.as_bytes()).unwrap_err(),
            "more than 16 KiB of header fields"
        );
    }
}
