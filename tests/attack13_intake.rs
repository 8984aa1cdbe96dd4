//! attack13: crafted headers against intake's qualification (qualify.rs),
//! and the downconversion of a crafted message (intact, in time).

#[path = "support/smtpd.rs"]
mod smtpd;
mod support;

use std::time::{Duration, Instant};

use smtpd::{Behavior, FakeSmtp};
use support::*;

/// Pathological address fields near the 1 MiB header limit are handled
/// in linear time.
#[test]
fn attack13_qualify_lexer_is_fast_on_hostile_fields() {
    let env = Env::new("");
    let n = 1 << 19;
    let cases = [
        format!("To: {}\n", "a,".repeat(n / 2 - 4)),
        format!("To: {}\n", "(".repeat(n - 8)),
        format!("To: {}\n", "<".repeat(n - 8)),
        format!("To: {}\n", "\"".repeat(n - 8)),
        format!("To: {}\n", "a:".repeat(n / 2 - 4)),
        format!("To: {}\n", "<a,".repeat(n / 3 - 4)),
        format!("To: {}\n", "a.".repeat(n / 2 - 4)),
        format!("To: {}\n", "((a)".repeat(n / 4 - 4)),
        format!("To: {}\n", "\\".repeat(n - 8)),
        format!("To: {}\n", ">a,".repeat(n / 3 - 4)),
    ];
    for (i, h) in cases.iter().enumerate() {
        let t = Instant::now();
        let r = env.send(&["-odq", "root"], &format!("{h}Subject: x\n\nbody\n"));
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "case {i} took {took:?}: {}",
            r.stderr()
        );
    }
}

/// A header of many bare names grows by @MAILNAME each: the stored header
/// may then exceed what intake itself accepts (1 MiB): delivery must still
/// work (not be refused or bounced as corrupt by our own later stages).
#[test]
fn attack13_qualified_header_over_the_limit_still_delivers() {
    let env = Env::new("");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let h = format!("Cc: {}\n", "a,".repeat((1 << 19) - 64));
    env.send(&[&me], &format!("{h}Subject: big-cc\n\nbody-end\n"))
        .expect(0, &env);
    let m = env.mbox(&me);
    assert!(
        m.contains("Subject: big-cc") && m.contains("body-end"),
        "{}",
        env.dump()
    );
}

fn no8bit() -> FakeSmtp {
    FakeSmtp::start(Behavior {
        ehlo: vec!["PIPELINING".into()],
        ..Behavior::default()
    })
}

/// Decodes quoted-printable (RFC 2045).
fn unqp(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            // Header text (`charset=utf-8`) is no escape: kept as it is.
            match b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b'=');
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Crafted MIME structures sent to a server without 8BITMIME: the 8-bit
/// text must arrive (decoded) intact, and no 8-bit octet may be sent.
#[test]
fn attack13_downgrade_keeps_every_part_and_sends_7bit_only() {
    let fake = no8bit();
    let env = Env::new(&format!(
        "SMARTHOST 127.0.0.1\nPORT {}\nSMTP_TIMEOUT 5s\n",
        fake.port()
    ));
    // A boundary that is a prefix of a line of text, a part whose text
    // looks like a close delimiter of another boundary, 8-bit preamble.
    let msg = "MIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"b\"\n\
        Subject: mime\n\
        \n\
        pr\u{e9}ambule\n\
        --b\n\
        Content-Type: text/plain; charset=utf-8\n\
        \n\
        --bogus line with \u{fc}\n\
        --b-- not a close\n\
        caf\u{e9}\n\
        --b\n\
        Content-Type: text/plain; charset=utf-8\n\
        Content-Transfer-Encoding: base64\n\
        \n\
        w6k=\n\
        --b--\n\
        \u{e9}pilogue\n";
    env.send(&["bob@remote.example"], msg).expect(0, &env);
    let got = fake.messages();
    assert_eq!(got.len(), 1, "{}", env.dump());
    let data = &got[0].data;
    assert!(
        data.is_ascii(),
        "8-bit octets sent to a server without 8BITMIME:\n{data}"
    );
    let decoded = String::from_utf8_lossy(&unqp(data)).into_owned();
    for want in [
        "--bogus line with \u{fc}",
        "caf\u{e9}",
        "pr\u{e9}ambule",
        "\u{e9}pilogue",
    ] {
        assert!(decoded.contains(want), "{want:?} lost:\n{data}");
    }
    // The base64 part is sent as it was (a decoder would take its `=` at a
    // line's end for a soft break).
    assert!(
        data.contains("\r\nw6k=\r\n--b--"),
        "the base64 part changed:\n{data}"
    );
}
