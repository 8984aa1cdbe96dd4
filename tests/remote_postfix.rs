//! Remote delivery against a real Postfix smarthost (Debian's postfix,
//! unpacked by scripts/postfix-setup.sh; one private instance per test):
//! recipient limits, size limits, CHUNKING on and off, SMTPUTF8 on and off,
//! and an 8-bit body to a server without 8BITMIME.

#[path = "support/postfix.rs"]
mod postfix;
mod support;

use postfix::{Postfix, PostfixOptions, StoredMessage, need_postfix};
use support::*;

/// A body with everything a transfer may damage: lines that start with
/// dots (one is a lone dot), trailing white space, a tab, an empty line, a
/// long line, and no empty last line.
fn tricky_body() -> String {
    format!(
        ".leading dot\n..two dots\n.\ntrailing space \ntab\there\n\n{}\nlast line\n",
        "x".repeat(900)
    )
}

/// A config that sends everything to `postfix`.
fn smarthost(postfix: &Postfix) -> String {
    format!("SMARTHOST 127.0.0.1\nPORT {}\n", postfix.port())
}

/// The recipients of the copies, sorted.
fn rcpts(m: &[StoredMessage]) -> Vec<String> {
    let mut r: Vec<String> = m.iter().map(|m| m.rcpt.clone()).collect();
    r.sort();
    r
}

#[test]
fn recipients_over_the_limit_go_in_a_further_transaction() {
    if !need_postfix("postfix_recipient_limit") {
        return;
    }
    let postfix = Postfix::start(PostfixOptions {
        recipient_limit: Some(3),
        ..PostfixOptions::default()
    });
    let env = Env::new(&smarthost(&postfix));
    let to: Vec<String> = (1..=5).map(|i| format!("r{i}@example.org")).collect();
    let mut args = vec!["-f", "root"];
    args.extend(to.iter().map(String::as_str));
    env.send(&args, "Subject: five\n\nfive recipients\n")
        .expect(0, &env);
    let m = postfix.messages();
    assert_eq!(rcpts(&m), to, "{}\n{}", env.mailq().stdout(), postfix.log());
    assert!(m.iter().all(|m| m.sender == "root@test.example"));
    assert!(m.iter().all(|m| m.body() == b"five recipients\n"));
    // Postfix refused the 4th and 5th (452 4.5.3): they went in a second
    // transaction of the same session, at once, and nothing bounced. (smtpd
    // counts the 452s as RCPT commands, not as failed ones: 5 + 2.)
    let sessions = postfix.sessions();
    assert_eq!(
        sessions,
        ["ehlo=1 mail=2 rcpt=7 bdat=2 quit=1 commands=13"],
        "{}",
        postfix.log()
    );
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
    assert!(env.messages("root").is_empty(), "{}", env.dump());
}

/// Sends a message larger than postfix's `message_size_limit` (and one that
/// fits); returns the bounce to root.
fn send_too_large(postfix: &Postfix) -> String {
    let env = Env::new(&smarthost(postfix));
    let big = format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(1000));
    env.send(&["-f", "root", "big@example.org"], &big)
        .expect(0, &env);
    env.send(
        &["-f", "root", "small@example.org"],
        "Subject: small\n\nfits\n",
    )
    .expect(0, &env);
    let m = postfix.messages();
    assert_eq!(rcpts(&m), ["small@example.org"], "{}", postfix.log());
    // Not lost: bounced to the sender, with the reason, and out of the queue.
    assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
    let b = env.messages("root");
    assert_eq!(b.len(), 1, "{}", env.dump());
    assert!(
        b[0].contains("Final-Recipient: rfc822; big@example.org")
            && b[0].contains("Action: failed")
            && b[0].contains("Status: 5.3.4"),
        "{}",
        b[0]
    );
    b[0].clone()
}

#[test]
fn a_message_over_the_size_limit_bounces_with_the_reason() {
    if !need_postfix("postfix_size_limit") {
        return;
    }
    // SIZE offered: we do not even try, and say why.
    let postfix = Postfix::start(PostfixOptions {
        message_size_limit: Some(10_000),
        ..PostfixOptions::default()
    });
    let b = send_too_large(&postfix);
    // Our own refusal, in our words: no server reply, no Remote-MTA.
    assert!(
        b.contains("Diagnostic-Code: X-Dma-Rs; 5.3.4 dma-rs refused: message size ")
            && b.contains(
                " exceeds the limit of 10000 that 127.0.0.1 [127.0.0.1] advertised (SIZE)"
            ),
        "{b}\n{}",
        postfix.log()
    );
    assert!(!b.contains("Remote-MTA"), "{b}");
    assert!(!b.contains(" said "), "{b}");
    // The message was never offered: one transaction, the small one.
    assert_eq!(postfix.sessions().len(), 2, "{}", postfix.log());
    assert!(
        postfix
            .sessions()
            .iter()
            .filter(|s| s.contains("mail=1"))
            .count()
            == 1,
        "{}",
        postfix.log()
    );

    // SIZE not offered: postfix refuses it once the data goes over the
    // limit (here, the one BDAT chunk), and we bounce it with postfix's
    // reply.
    let postfix = Postfix::start(PostfixOptions {
        message_size_limit: Some(10_000),
        size: false,
        ..PostfixOptions::default()
    });
    let b = send_too_large(&postfix);
    assert!(
        b.contains("Diagnostic-Code: smtp; 552 5.3.4 Chunk exceeds message size limit"),
        "{b}\n{}",
        postfix.log()
    );
}

/// Sends the tricky message through `postfix` with or without CHUNKING, and
/// checks that what postfix stored is what was submitted.
fn byte_exact(chunking: bool) {
    let postfix = Postfix::start(PostfixOptions {
        chunking,
        ..PostfixOptions::default()
    });
    let env = Env::new(&smarthost(&postfix));
    let head = "From: Sender <s@example.net>\nTo: r@example.org\nSubject: exact\n\
                Date: Thu, 1 Jan 2026 00:00:00 +0000\nMessage-ID: <exact@example.net>\n";
    let body = tricky_body();
    env.send(
        &["-oi", "-f", "s@example.net", "r@example.org"],
        &format!("{head}\n{body}"),
    )
    .expect(0, &env);
    let m = postfix.messages();
    assert_eq!(m.len(), 1, "{}", postfix.log());
    assert_eq!(m[0].rcpt, "r@example.org");
    assert_eq!(m[0].sender, "s@example.net");
    assert_eq!(
        String::from_utf8_lossy(m[0].body()),
        body,
        "{}",
        postfix.log()
    );
    // The header as submitted, below the two Received lines added on the
    // way (ours, then postfix's on top).
    let stored = m[0].header();
    let lines: Vec<&str> = stored.lines().collect();
    assert!(lines[0].starts_with("Received: from "), "{stored}");
    assert!(stored.contains("by postfix.test (Postfix)"), "{stored}");
    assert_eq!(
        stored.matches("\nReceived: ").count() + 1,
        2,
        "two Received lines: {stored}"
    );
    assert!(stored.ends_with(head.trim_end()), "{stored}");
    // And it went as BDAT exactly when offered.
    let sessions = postfix.sessions();
    assert_eq!(sessions.len(), 1, "{}", postfix.log());
    let (used, unused) = if chunking {
        ("bdat=1", "data=")
    } else {
        ("data=1", "bdat=")
    };
    assert!(
        sessions[0].contains(used) && !sessions[0].contains(unused),
        "{}",
        postfix.log()
    );
}

#[test]
fn the_stored_message_is_the_submitted_one_with_chunking() {
    if !need_postfix("postfix_chunking_on") {
        return;
    }
    byte_exact(true);
}

#[test]
fn the_stored_message_is_the_submitted_one_without_chunking() {
    if !need_postfix("postfix_chunking_off") {
        return;
    }
    byte_exact(false);
}

#[test]
fn a_non_ascii_address_needs_smtputf8() {
    if !need_postfix("postfix_smtputf8") {
        return;
    }
    for smtputf8 in [true, false] {
        let postfix = Postfix::start(PostfixOptions {
            smtputf8,
            ..PostfixOptions::default()
        });
        let env = Env::new(&smarthost(&postfix));
        env.send(&["-f", "root", "jösé@example.org"], "Subject: utf8\n\nhi\n")
            .expect(0, &env);
        let m = postfix.messages();
        assert!(env.queue_ids().is_empty(), "{}", env.mailq().stdout());
        if smtputf8 {
            assert_eq!(rcpts(&m), ["jösé@example.org"], "{}", postfix.log());
            assert!(env.messages("root").is_empty(), "{}", env.dump());
        } else {
            // Never offered: bounced, with the reason.
            assert!(m.is_empty(), "{}", postfix.log());
            let b = env.messages("root");
            assert_eq!(b.len(), 1, "{}", env.dump());
            assert!(
                b[0].contains(
                    "Diagnostic-Code: X-Dma-Rs; 5.6.7 dma-rs refused: non-ASCII address, and 127.0.0.1 [127.0.0.1] does not offer SMTPUTF8"
                ),
                "{}",
                b[0]
            );
            assert!(!b[0].contains("Remote-MTA"), "{}", b[0]);
        }
    }
}

/// Decodes quoted-printable (RFC 2045 §6.7) text with LF line ends.
fn qp_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'=' if text.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => {
                let (h, l) = (text.get(i + 1).copied(), text.get(i + 2).copied());
                match (h.and_then(hex), l.and_then(hex)) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => panic!(
                        "bad quoted-printable at {i}: {}",
                        String::from_utf8_lossy(text)
                    ),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// RFC 6152 §3: a client must not send 8-bit data to a server that does not
/// offer 8BITMIME; it converts the body to 7 bits (quoted-printable, with a
/// Content-Transfer-Encoding header) or bounces it.
#[test]
fn an_8bit_body_is_downconverted_for_a_server_without_8bitmime() {
    if !need_postfix("postfix_8bitmime_off") {
        return;
    }
    let postfix = Postfix::start(PostfixOptions {
        eightbitmime: false,
        ..PostfixOptions::default()
    });
    let env = Env::new(&smarthost(&postfix));
    let body = "Grüße aus Köln: 10 €.\n.leading dot, naïve\n";
    env.send(
        &["-f", "root", "r@example.org"],
        &format!(
            "Subject: 8bit\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\n{body}"
        ),
    )
    .expect(0, &env);
    let m = postfix.messages();
    assert_eq!(m.len(), 1, "{}\n{}", env.mailq().stdout(), postfix.log());
    let header = m[0].header();
    assert!(
        m[0].data.iter().all(|b| b.is_ascii()),
        "8-bit octets reached a server without 8BITMIME:\n{}",
        String::from_utf8_lossy(&m[0].data)
    );
    // One Content-Transfer-Encoding: the submitted `8bit` one replaced.
    let cte: Vec<&str> = header
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-transfer-encoding:")
        })
        .collect();
    assert_eq!(
        cte,
        ["Content-Transfer-Encoding: quoted-printable"],
        "{header}"
    );
    // Byte for byte as Postfix stored it.
    assert_eq!(
        String::from_utf8_lossy(m[0].body()),
        "Gr=C3=BC=C3=9Fe aus K=C3=B6ln: 10 =E2=82=AC.\n.leading dot, na=C3=AFve\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&qp_decode(m[0].body())),
        body,
        "{}",
        String::from_utf8_lossy(&m[0].data)
    );
}
