//! The message as SMTP DATA: CRLF everywhere, dot-stuffing, no bare CR or
//! LF, lines longer than 998 octets folded as Postfix does (CRLF SPACE,
//! which is a correct header fold and the least damage in a body). For BDAT
//! (RFC 3030) the same lines without dot-stuffing and without the final dot.

use std::io::{self, BufRead, Write};

/// The longest line we send, without its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// Writes `prepend` header lines, then the message read from `input` (LF
/// line ends, as in the spool), then the final `.` line.
pub fn write_data(
    input: &mut impl BufRead,
    prepend: &[String],
    out: &mut impl Write,
) -> io::Result<u64> {
    let n = write_lines(input, prepend, out, true)?;
    out.write_all(b".\r\n")?;
    Ok(n + 3)
}

/// The message as a BDAT chunk: the lines of [`write_data`] without
/// dot-stuffing and without the final `.` line.
pub fn write_chunk(
    input: &mut impl BufRead,
    prepend: &[String],
    out: &mut impl Write,
) -> io::Result<u64> {
    write_lines(input, prepend, out, false)
}

fn write_lines(
    input: &mut impl BufRead,
    prepend: &[String],
    out: &mut impl Write,
    stuff: bool,
) -> io::Result<u64> {
    let mut n = 0u64;
    for h in prepend {
        n += emit_line(h.as_bytes(), out, stuff)?;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        // A bare CR inside a line would be a line end to some servers and
        // not to others (SMTP smuggling): make it one for everybody.
        for part in body.split(|&b| b == b'\r') {
            n += emit_line(part, out, stuff)?;
        }
    }
    Ok(n)
}

/// One logical line: dot-stuffed (with `stuff`), folded into pieces of at
/// most MAX_LINE.
fn emit_line(mut line: &[u8], out: &mut impl Write, stuff: bool) -> io::Result<u64> {
    let mut n = 0u64;
    let mut first = true;
    loop {
        let (lead, room): (&[u8], usize) = if first {
            (
                if stuff && line.first() == Some(&b'.') {
                    b"."
                } else {
                    b""
                },
                MAX_LINE - 1,
            )
        } else {
            (b" ", MAX_LINE - 1)
        };
        let mut take = line.len().min(room);
        // Never fold inside a UTF-8 sequence.
        while take > 0 && take < line.len() && (line[take] & 0xC0) == 0x80 {
            take -= 1;
        }
        if take == 0 {
            take = line.len().min(room);
        }
        out.write_all(lead)?;
        out.write_all(&line[..take])?;
        out.write_all(b"\r\n")?;
        n += (lead.len() + take + 2) as u64;
        line = &line[take..];
        first = false;
        if line.is_empty() {
            return Ok(n);
        }
    }
}

/// What [`scan`] learns about a spooled message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Some octet above 127 anywhere (BODY=8BITMIME).
    pub eightbit: bool,
    /// Some octet above 127 in the header section (raw UTF-8 header text:
    /// SMTPUTF8, RFC 6532).
    pub header_8bit: bool,
    /// The size as sent (for SIZE=): LF counts as CRLF.
    pub size: u64,
}

/// Reads the whole message once: its 8-bit octets and its size as sent.
pub fn scan(input: &mut impl BufRead) -> io::Result<Scan> {
    let mut s = Scan::default();
    // In the header section until an empty line; `at_start`: at a line's
    // start there.
    let mut in_header = true;
    let mut at_start = true;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(s);
        }
        let mut body = buf;
        if in_header {
            let mut end = buf.len();
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' {
                    if at_start {
                        in_header = false;
                        end = i + 1;
                        break;
                    }
                    at_start = true;
                } else {
                    at_start = false;
                    s.header_8bit |= b >= 0x80;
                }
            }
            body = &buf[end..];
        }
        s.eightbit |= s.header_8bit || body.iter().any(|&b| b >= 0x80);
        s.size += buf.len() as u64 + buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let l = buf.len();
        input.consume(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(msg: &str, prepend: &[String]) -> String {
        let mut out = Vec::new();
        write_data(&mut msg.as_bytes(), prepend, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn crlf_dots_and_bare_cr() {
        assert_eq!(
            data(
                "Subject: x\n\n.leading dot\n.\nbare\rcr\nend",
                &["Delivered-To: a@b".into()]
            ),
            "Delivered-To: a@b\r\nSubject: x\r\n\r\n..leading dot\r\n..\r\nbare\r\ncr\r\nend\r\n.\r\n"
        );
    }

    #[test]
    fn a_chunk_is_the_same_lines_without_stuffing_or_dot() {
        let msg = "Subject: x\n\n.leading dot\n.\nbare\rcr\nend";
        let mut chunk = Vec::new();
        let n = write_chunk(
            &mut msg.as_bytes(),
            &["Delivered-To: a@b".into()],
            &mut chunk,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(chunk.clone()).unwrap(),
            "Delivered-To: a@b\r\nSubject: x\r\n\r\n.leading dot\r\n.\r\nbare\r\ncr\r\nend\r\n"
        );
        assert_eq!(n, chunk.len() as u64);
    }

    #[test]
    fn long_lines_are_folded_and_never_exceed_the_limit() {
        let long = ".".to_string() + &"x".repeat(2500);
        let out = data(&format!("{long}\n"), &[]);
        for l in out.split("\r\n") {
            assert!(l.len() <= MAX_LINE, "{}", l.len());
        }
        let joined: String = out
            .trim_end_matches(".\r\n")
            .split("\r\n")
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    l.strip_prefix('.').unwrap().to_string()
                } else {
                    l.strip_prefix(' ').unwrap_or(l).to_string()
                }
            })
            .collect();
        assert_eq!(joined, long);
        assert!(!out.replace("\r\n", "").contains(['\r', '\n']));
    }

    #[test]
    fn folding_never_splits_a_character() {
        let line = "é".repeat(1000);
        let out = data(&format!("{line}\n"), &[]);
        assert!(out.split("\r\n").all(|l| l.len() <= MAX_LINE));
        let back: String = out
            .trim_end_matches(".\r\n")
            .split("\r\n")
            .map(|l| l.trim_start_matches(' '))
            .collect();
        assert_eq!(back, line);
    }

    #[test]
    fn scan_finds_8bit_and_size() {
        let s = |m: &str| {
            let r = scan(&mut m.as_bytes()).unwrap();
            (r.eightbit, r.header_8bit, r.size)
        };
        assert_eq!(s("a\nb\n"), (false, false, 6));
        assert_eq!(s("é\n"), (true, true, 4));
        assert_eq!(s("Subject: x\n\né\n"), (true, false, 18));
        assert_eq!(s("Subject: é\n\nx\n"), (true, true, 18));
        // A message of one line has only a header section.
        assert_eq!(s("\n\né"), (true, false, 6));
    }
}
