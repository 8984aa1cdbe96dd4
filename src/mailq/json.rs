//! `mailq --json`, `-bp --json`: the queue as one JSON document, for
//! monitoring (Nagios, Prometheus exporters), as Postfix's `postqueue -j`.
//!
//! The schema is versioned: `version` changes only when a field changes
//! meaning or goes away; fields may be added within a version. Version 1
//! (README, "mailq --json"):
//!
//! ```text
//! {"version": 1,
//!  "view": "full" | "as-submitted",
//!  "messages": [{"id": "692a1f3b5c8e9d01", "sender": "alice@host" ("" for <>),
//!                "arrival": "2026-12-02T11:18:59Z", "size": 2048,
//!                "held": false, "held_since": null | RFC 3339,
//!                "recipients": [{"address": "bob", "via": null | "team",
//!                                "state": "pending" | "deferred" | "delivered"
//!                                       | "expanded" | "failed" | "bounced",
//!                                "attempts": 2, "next_try": null | RFC 3339
//!                                  (deferred only; null: at the next run),
//!                                "last_reply": null | "4.2.0 ...",
//!                                "host": null | "mx.example [192.0.2.1]",
//!                                "destinations": {"delivered": 0, "pending": 0,
//!                                                 "deferred": 1, "failed": 0}
//!                                  (expanded recipients only)}]}],
//!  "corrupt": [{"id": "...", "reason": "...", "moved": null | RFC 3339}]}
//! ```
//!
//! Times are RFC 3339 in UTC. What each user sees is what the plain
//! listing shows them ([`View`]): root every recipient with its `via`;
//! everyone else the recipients as submitted, an expanded one with the
//! counts of where its destinations stand, never the destinations.

use std::io::{self, Write};

use super::{View, destinations, scan};
use crate::spool::{Envelope, Rcpt, Spool, State};

/// The schema version this program writes.
pub const VERSION: u32 = 1;

/// Writes the JSON document for `spool` as `view` shows it, and a newline.
pub fn list(spool: &Spool, view: View, out: &mut impl Write) -> io::Result<()> {
    let (queued, corrupt) = scan(spool)?;
    let moved = spool.corrupt()?;
    let mut s = String::with_capacity(256 + queued.len() * 256);
    s.push_str(&format!("{{\"version\":{VERSION},\"view\":"));
    string(
        &mut s,
        match view {
            View::Full => "full",
            View::AsSubmitted => "as-submitted",
        },
    );
    s.push_str(",\"messages\":[");
    for (k, env) in queued.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        message(&mut s, env, view);
    }
    s.push_str("],\"corrupt\":[");
    let entries = corrupt
        .iter()
        .map(|(id, why)| (id, None, why))
        .chain(moved.iter().map(|(id, when, why)| (id, Some(*when), why)));
    for (k, (id, when, why)) in entries.enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str("{\"id\":");
        string(&mut s, id);
        s.push_str(",\"reason\":");
        string(&mut s, why);
        s.push_str(",\"moved\":");
        time(&mut s, when);
        s.push('}');
    }
    s.push_str("]}\n");
    out.write_all(s.as_bytes())
}

fn message(s: &mut String, env: &Envelope, view: View) {
    s.push_str("{\"id\":");
    string(s, &env.id);
    s.push_str(",\"sender\":");
    string(s, &env.sender);
    s.push_str(",\"arrival\":");
    time(s, Some(env.created));
    s.push_str(&format!(
        ",\"size\":{},\"held\":{},\"held_since\":",
        env.size.unwrap_or(0),
        env.held.is_some()
    ));
    time(s, env.held);
    s.push_str(",\"recipients\":[");
    let mut first = true;
    for (i, r) in env.rcpts.iter().enumerate() {
        if view == View::AsSubmitted && r.parent.is_some() {
            continue;
        }
        if !first {
            s.push(',');
        }
        first = false;
        rcpt(s, env, i, r, view);
    }
    s.push_str("]}");
}

fn rcpt(s: &mut String, env: &Envelope, i: usize, r: &Rcpt, view: View) {
    s.push_str("{\"address\":");
    string(s, &r.addr);
    s.push_str(",\"via\":");
    match r.parent.filter(|_| view == View::Full) {
        Some(p) => string(s, &env.rcpts[p].addr),
        None => s.push_str("null"),
    }
    s.push_str(",\"state\":");
    string(s, r.state.as_str());
    s.push_str(&format!(",\"attempts\":{},\"next_try\":", r.attempts));
    time(
        s,
        (r.state == State::Deferred && r.next_try != 0).then_some(r.next_try),
    );
    s.push_str(",\"last_reply\":");
    opt(s, r.reply.as_deref());
    s.push_str(",\"host\":");
    opt(s, r.mta.as_deref());
    if r.state == State::Expanded {
        let [delivered, pending, deferred, failed] = destinations(env, i);
        s.push_str(&format!(
            ",\"destinations\":{{\"delivered\":{delivered},\"pending\":{pending},\
             \"deferred\":{deferred},\"failed\":{failed}}}"
        ));
    }
    s.push('}');
}

fn opt(s: &mut String, v: Option<&str>) {
    match v {
        Some(v) => string(s, v),
        None => s.push_str("null"),
    }
}

/// Unix seconds as an RFC 3339 string in UTC; `null` for none (or one out
/// of range).
fn time(s: &mut String, secs: Option<i64>) {
    match secs.and_then(|t| jiff::Timestamp::from_second(t).ok()) {
        Some(t) => string(s, &t.to_string()),
        None => s.push_str("null"),
    }
}

/// `v` as a JSON string: quotes, backslashes and every control character
/// escaped (U+2028 and U+2029 too, for readers that are JavaScript).
fn string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        for (raw, want) in [
            ("plain", "\"plain\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("\n\r\t\x00\x1b\x7f", "\"\\n\\r\\t\\u0000\\u001b\\u007f\""),
            ("é\u{2028}", "\"é\\u2028\""),
        ] {
            let mut s = String::new();
            string(&mut s, raw);
            assert_eq!(s, want, "{raw:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let mut s = String::new();
        time(&mut s, Some(1764410000));
        time(&mut s, None);
        assert_eq!(s, "\"2025-11-29T09:53:20Z\"null");
    }
}
