//! 8-bit to 7-bit conversion for a server that does not offer 8BITMIME
//! (RFC 6152 §3: the client must not send 8-bit data to it), MIME-aware, as
//! Postfix's smtp client does: each leaf part whose body holds 8-bit octets
//! (labelled `8bit` or `binary`, or unlabelled) is encoded quoted-printable
//! and labelled so; a multipart or message/rfc822 labelled `8bit` becomes
//! `7bit` and its parts are converted in turn; base64 and quoted-printable
//! parts, preambles, epilogues and every other header field are copied
//! byte for byte. A message without MIME gets `MIME-Version: 1.0` and, when
//! it has no Content-Type, `text/plain` with charset `utf-8` (or
//! `unknown-8bit`, RFC 1428, when the text is not UTF-8).
//!
//! The header section itself is not converted: 8-bit header text needs
//! SMTPUTF8, and the caller refuses to send it where that is not offered.
//! Input and output have LF line ends, as in the spool.

use std::io::{self, BufRead, Write};

/// Quoted-printable lines are at most this long, soft break included.
const QP_LINE: usize = 76;

/// How deep multiparts and messages are followed.
const MAX_DEPTH: usize = 40;

/// Lines of the message, with one line of lookahead.
struct Lines<R> {
    r: R,
    peeked: Option<Vec<u8>>,
}

impl<R: BufRead> Lines<R> {
    fn peek(&mut self) -> io::Result<Option<&[u8]>> {
        if self.peeked.is_none() {
            let mut l = Vec::new();
            if self.r.read_until(b'\n', &mut l)? > 0 {
                self.peeked = Some(l);
            }
        }
        Ok(self.peeked.as_deref())
    }

    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.peek()?;
        Ok(self.peeked.take())
    }
}

/// The line without its LF.
fn content(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Whether `line` is a delimiter (or the close delimiter) of one of the
/// `boundaries` in force.
fn is_delimiter(line: &[u8], boundaries: &[Vec<u8>]) -> bool {
    let l = content(line);
    let l = l.trim_ascii_end();
    let Some(rest) = l.strip_prefix(b"--") else {
        return false;
    };
    boundaries
        .iter()
        .any(|b| rest == &b[..] || rest.strip_suffix(b"--") == Some(&b[..]))
}

/// The parts of a header section that matter here.
#[derive(Debug, Default)]
struct Head {
    /// The fields, folded lines joined, each with its LF.
    fields: Vec<Vec<u8>>,
    /// `type/subtype`, lowercase ("" when absent).
    ctype: String,
    /// The multipart boundary.
    boundary: Option<Vec<u8>>,
    /// The Content-Transfer-Encoding, lowercase ("" when absent).
    cte: String,
    /// A MIME-Version field is present.
    mime: bool,
}

fn name_is(field: &[u8], name: &str) -> bool {
    field.len() > name.len()
        && field[name.len()] == b':'
        && field[..name.len()].eq_ignore_ascii_case(name.as_bytes())
}

fn value(field: &[u8]) -> &[u8] {
    let i = field
        .iter()
        .position(|&b| b == b':')
        .map_or(field.len(), |i| i + 1);
    &field[i..]
}

/// The `boundary` parameter of a Content-Type value.
fn boundary(v: &[u8]) -> Option<Vec<u8>> {
    let lower = v.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].windows(9).position(|w| w == b"boundary=") {
        let at = from + i;
        from = at + 9;
        // A parameter name starts after `;` and blanks.
        let before = lower[..at].trim_ascii_end();
        if before.last() != Some(&b';') {
            continue;
        }
        let rest = &v[from..];
        let b = if let Some(q) = rest.strip_prefix(b"\"") {
            let end = q.iter().position(|&c| c == b'"')?;
            q[..end].to_vec()
        } else {
            let end = rest
                .iter()
                .position(|&c| c == b';' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            rest[..end].to_vec()
        };
        return (!b.is_empty()).then_some(b);
    }
    None
}

/// Reads a header section, up to and including its empty line (not past a
/// delimiter of `boundaries`, nor past the end).
fn read_head(lines: &mut Lines<impl BufRead>, boundaries: &[Vec<u8>]) -> io::Result<Head> {
    let mut h = Head::default();
    let mut ended = false;
    while let Some(l) = lines.peek()? {
        if is_delimiter(l, boundaries) {
            break;
        }
        let l = lines.next()?.expect("peeked");
        if l == b"\n" {
            ended = true;
            break;
        }
        match h.fields.last_mut() {
            Some(f) if matches!(l[0], b' ' | b'\t') => f.extend_from_slice(&l),
            _ => h.fields.push(l),
        }
    }
    if !ended && h.fields.last().is_some_and(|f| !f.ends_with(b"\n")) {
        h.fields.last_mut().expect("checked").push(b'\n');
    }
    for f in &h.fields {
        if name_is(f, "content-type") {
            let v = value(f);
            let t = v.split(|&b| b == b';').next().unwrap_or(b"");
            h.ctype = String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase();
            h.boundary = boundary(v);
        } else if name_is(f, "content-transfer-encoding") {
            h.cte = String::from_utf8_lossy(value(f).trim_ascii()).to_ascii_lowercase();
        } else if name_is(f, "mime-version") {
            h.mime = true;
        }
    }
    Ok(h)
}

/// Writes the header section with its Content-Transfer-Encoding set to
/// `cte` (replaced where present, else added), and the empty line.
fn write_head(h: &Head, cte: Option<&str>, extra: &[&str], out: &mut impl Write) -> io::Result<()> {
    let mut set = false;
    for f in &h.fields {
        match cte {
            Some(c) if name_is(f, "content-transfer-encoding") => {
                if !set {
                    writeln!(out, "Content-Transfer-Encoding: {c}")?;
                }
                set = true;
            }
            _ => out.write_all(f)?,
        }
    }
    for e in extra {
        writeln!(out, "{e}")?;
    }
    if let (Some(c), false) = (cte, set) {
        writeln!(out, "Content-Transfer-Encoding: {c}")?;
    }
    out.write_all(b"\n")
}

/// One line, quoted-printable encoded (RFC 2045 §6.7), with soft breaks.
fn qp_line(line: &[u8], out: &mut impl Write) -> io::Result<()> {
    let mut col = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal =
            ((33..=126).contains(&b) && b != b'=') || (matches!(b, b' ' | b'\t') && !last);
        let width = if literal { 1 } else { 3 };
        if col + width > QP_LINE - 1 {
            out.write_all(b"=\n")?;
            col = 0;
        }
        if literal {
            out.write_all(&[b])?;
        } else {
            write!(out, "={b:02X}")?;
        }
        col += width;
    }
    out.write_all(b"\n")
}

/// Copies body lines up to a delimiter of `boundaries` (or the end),
/// encoding them quoted-printable with `qp`.
fn copy_body(
    lines: &mut Lines<impl BufRead>,
    boundaries: &[Vec<u8>],
    qp: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    while let Some(l) = lines.peek()? {
        if is_delimiter(l, boundaries) {
            break;
        }
        let l = lines.next()?.expect("peeked");
        if qp {
            qp_line(content(&l), out)?;
        } else {
            out.write_all(&l)?;
        }
    }
    Ok(())
}

/// Converts one entity (header section and body), up to a delimiter of
/// `boundaries` or the end. `top`: the message itself (where MIME-Version
/// may be missing); `digest`: a part of multipart/digest (message/rfc822
/// by default).
fn entity(
    lines: &mut Lines<impl BufRead>,
    boundaries: &[Vec<u8>],
    top: bool,
    digest: bool,
    depth: usize,
    out: &mut impl Write,
) -> io::Result<()> {
    let h = read_head(lines, boundaries)?;
    // Deeper than this, a part is taken as a leaf (no recursion without
    // end on a hostile message; Postfix's mime_nesting_limit is 100).
    let nested = depth < MAX_DEPTH;
    let eight_label = matches!(h.cte.as_str(), "8bit" | "binary");
    let ctype = if h.ctype.is_empty() && digest {
        "message/rfc822"
    } else {
        h.ctype.as_str()
    };
    if let (true, true, Some(b)) = (nested, ctype.starts_with("multipart/"), &h.boundary) {
        write_head(&h, eight_label.then_some("7bit"), &[], out)?;
        let mut inner = boundaries.to_vec();
        inner.push(b.clone());
        let mine = [b.clone()];
        // The preamble, then each part after its delimiter, up to the close
        // delimiter; then the epilogue.
        copy_body(lines, &inner, false, out)?;
        while let Some(l) = lines.peek()? {
            if !is_delimiter(l, &mine) {
                break;
            }
            let l = lines.next()?.expect("peeked");
            out.write_all(&l)?;
            // The close delimiter: `--boundary--` (a boundary may itself
            // end in `--`).
            if content(&l).trim_ascii_end() == [&b"--"[..], b, b"--"].concat() {
                copy_body(lines, boundaries, false, out)?;
                break;
            }
            entity(
                lines,
                &inner,
                false,
                ctype == "multipart/digest",
                depth + 1,
                out,
            )?;
        }
        return Ok(());
    }
    if nested && matches!(ctype, "message/rfc822" | "message/global") {
        write_head(&h, eight_label.then_some("7bit"), &[], out)?;
        return entity(lines, boundaries, false, false, depth + 1, out);
    }
    if matches!(h.cte.as_str(), "base64" | "quoted-printable") {
        write_head(&h, None, &[], out)?;
        return copy_body(lines, boundaries, false, out);
    }
    // 7bit, unlabelled or anything else: converted only if the body holds
    // 8-bit octets, which it must be read to know.
    let mut body = Vec::new();
    copy_body(lines, boundaries, false, &mut body)?;
    if !eight_label && body.is_ascii() {
        write_head(&h, None, &[], out)?;
        return out.write_all(&body);
    }
    let mut extra = Vec::new();
    if top && !h.mime {
        extra.push("MIME-Version: 1.0");
        if h.ctype.is_empty() {
            extra.push(if std::str::from_utf8(&body).is_ok() {
                "Content-Type: text/plain; charset=utf-8"
            } else {
                "Content-Type: text/plain; charset=unknown-8bit"
            });
        }
    }
    write_head(&h, Some("quoted-printable"), &extra, out)?;
    for l in body.split_inclusive(|&b| b == b'\n') {
        qp_line(content(l), out)?;
    }
    Ok(())
}

/// Writes the message from `input` to `out` with every 8-bit body part
/// encoded quoted-printable (see the module documentation).
pub fn to_7bit(input: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    let mut lines = Lines {
        r: input,
        peeked: None,
    };
    entity(&mut lines, &[], true, false, 0, out)?;
    // Whatever follows (nothing, for a well-formed message) is copied.
    while let Some(l) = lines.next()? {
        out.write_all(&l)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(m: &str) -> String {
        let mut out = Vec::new();
        to_7bit(&mut m.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// RFC 2045 quoted-printable decoding, for checking.
    fn unqp(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for line in s.split_inclusive('\n') {
            let l = line.strip_suffix('\n').unwrap_or(line);
            let (l, soft) = match l.strip_suffix('=') {
                Some(l) => (l, true),
                None => (l, false),
            };
            let b = l.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'=' {
                    out.push(u8::from_str_radix(&l[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            if !soft && line.ends_with('\n') {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn a_plain_8bit_message_becomes_quoted_printable_mime() {
        let body = "Grüße aus Köln = 100 % \n\tend \n";
        let out = conv(&format!("Subject: hi\nFrom: a@b\n\n{body}"));
        assert_eq!(
            out,
            "Subject: hi\nFrom: a@b\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\n\
             Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100 %=20\n\tend=20\n"
        );
        let (_, enc) = out.split_once("\n\n").unwrap();
        assert_eq!(unqp(enc), body.as_bytes());
    }

    #[test]
    fn a_labelled_8bit_part_is_converted_and_relabelled() {
        let m = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\
                 Content-Transfer-Encoding: 8bit\n\npreamble\n--b1\n\
                 Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
                 é\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n\
                 AAEC\n--b1\nContent-Type: text/plain\n\nplain ascii = kept\n--b1--\nepilogue\n";
        assert_eq!(
            conv(m),
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\
             Content-Transfer-Encoding: 7bit\n\npreamble\n--b1\n\
             Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
             =C3=A9\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n\
             AAEC\n--b1\nContent-Type: text/plain\n\nplain ascii = kept\n--b1--\nepilogue\n"
        );
    }

    #[test]
    fn nested_multiparts_and_messages() {
        let m = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n\
                 --outer\nContent-Type: multipart/alternative; boundary=inner\n\n\
                 --inner\nContent-Type: text/plain\n\nä\n--inner--\n\
                 --outer\nContent-Type: message/rfc822\n\nSubject: fwd\n\nö\n--outer--\n";
        assert_eq!(
            conv(m),
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n\
             --outer\nContent-Type: multipart/alternative; boundary=inner\n\n\
             --inner\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A4\n--inner--\n\
             --outer\nContent-Type: message/rfc822\n\nSubject: fwd\nContent-Transfer-Encoding: quoted-printable\n\n=C3=B6\n--outer--\n"
        );
    }

    #[test]
    fn long_lines_get_soft_breaks_and_decode_back() {
        let body = format!("{}\n{}\n", "é".repeat(100), "x".repeat(200));
        let out = conv(&format!("Subject: x\n\n{body}"));
        let (_, enc) = out.split_once("\n\n").unwrap();
        assert!(enc.lines().all(|l| l.len() <= QP_LINE), "{enc}");
        assert!(enc.is_ascii());
        assert_eq!(unqp(enc), body.as_bytes());
    }

    #[test]
    fn not_utf8_is_unknown_8bit() {
        let mut out = Vec::new();
        to_7bit(&mut &b"Subject: x\n\n\xe9t\xe9\n"[..], &mut out).unwrap();
        assert_eq!(
            out,
            b"Subject: x\nMIME-Version: 1.0\nContent-Type: text/plain; charset=unknown-8bit\n\
              Content-Transfer-Encoding: quoted-printable\n\n=E9t=E9\n"
        );
    }

    #[test]
    fn hostile_nesting_ends() {
        // 100 000 nested messages: no recursion without end, all 7-bit out.
        let mut m = String::new();
        for _ in 0..100_000 {
            m.push_str("Content-Type: message/rfc822\n\n");
        }
        m.push_str("Subject: deep\n\n\u{e9}\n");
        let out = conv(&m);
        assert!(out.is_ascii());
        assert!(out.ends_with("=C3=A9\n"), "{}", &out[out.len() - 40..]);
    }

    proptest::proptest! {
        /// Any body of a text message comes out 7-bit and decodes back.
        #[test]
        fn any_body_round_trips(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut m = b"Subject: x\n\n".to_vec();
            m.extend_from_slice(&body);
            let mut out = Vec::new();
            to_7bit(&mut &m[..], &mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            proptest::prop_assert!(out.is_ascii());
            let (_, enc) = out.split_once("\n\n").unwrap();
            let mut want = body.clone();
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.push(b'\n');
            }
            if body.is_ascii() {
                // Copied as it is, a missing last newline too.
                proptest::prop_assert_eq!(enc.as_bytes(), &body[..]);
            } else {
                proptest::prop_assert_eq!(unqp(enc), want);
            }
        }
    }
}
