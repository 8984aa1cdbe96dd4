//! The server side of the `-bs` dialogue as pure logic: one command line in,
//! one [`Step`] out (a reply to send, or a message to read), no I/O.
//!
//! Replies follow RFC 5321 with RFC 3463 enhanced codes (announced as
//! ENHANCEDSTATUSCODES) on every reply but the greeting and HELO/EHLO. The
//! driver ([`super`]) reads the message for [`Step::Data`] and
//! [`Step::Bdat`], queues it, and reports with [`Dialogue::finish`].

use crate::address;

/// The most recipients one message may have (RCPT beyond it: 452 4.5.3,
/// as RFC 5321 4.5.3.1.8 has it; the client sends the rest in another
/// transaction).
pub const MAX_RCPTS: usize = 1000;

/// One reply: a code and its lines' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line (with the enhanced code where there is one).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The reply as sent: `NNN-text` lines, the last `NNN text`, CRLF ends.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len();
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}{l}\r\n", self.code).as_bytes());
        }
        out
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

/// What the driver does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply and read the next command.
    Reply(Reply),
    /// DATA: send this 354, read the dot-stuffed message, then
    /// [`Dialogue::finish`].
    Data(Reply),
    /// BDAT: read exactly `size` octets. With `refusal`, throw them away
    /// and send it; else they are the (first) chunk of the message, and
    /// `last` says whether more chunks follow.
    Bdat {
        /// The chunk's size.
        size: u64,
        /// `LAST` was given.
        last: bool,
        /// The chunk is refused (no transaction, no recipient).
        refusal: Option<Reply>,
    },
    /// QUIT: send this reply and end.
    Quit(Reply),
}

/// BODY= of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// No BODY, or `BODY=7BIT`.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// One mail transaction, from MAIL on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The envelope sender as the sender policy made it ("" for `<>`).
    pub sender: String,
    /// The recipients accepted, as given (brackets and source route off).
    pub rcpts: Vec<String>,
    /// SIZE= of MAIL.
    pub size: Option<u64>,
    /// BODY= of MAIL.
    pub body: Body,
    /// SMTPUTF8 was given on MAIL (RFC 6531).
    pub smtputf8: bool,
}

/// The state of one session.
#[derive(Debug)]
pub struct Dialogue {
    host: String,
    size_limit: u64,
    max_rcpts: usize,
    txn: Option<Transaction>,
}

/// The enhanced-code reply `code status text`.
fn r(code: u16, status: &str, text: impl AsRef<str>) -> Reply {
    Reply::new(code, format!("{status} {}", text.as_ref()))
}

/// The commands HELP lists.
const COMMANDS: &str = "EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP";

impl Dialogue {
    /// A session of this host (`MAILNAME`), whose messages may have at most
    /// `size_limit` bytes (0: no limit) and `max_rcpts` recipients.
    pub fn new(host: &str, size_limit: u64, max_rcpts: usize) -> Dialogue {
        Dialogue {
            host: host.to_string(),
            size_limit,
            max_rcpts,
            txn: None,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP dma-rs", self.host))
    }

    /// Whether a transaction is open (MAIL given, message not yet taken).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The reply for a command line longer than we read.
    pub fn line_too_long(&self) -> Reply {
        r(500, "5.5.6", "line too long")
    }

    /// The 421 for a session that ends without QUIT (`why`: the cause).
    pub fn closing(&self, why: &str) -> Reply {
        r(421, "4.4.2", format!("{} {why}; closing", self.host))
    }

    /// Takes one command line (without its line end). `sender_policy`
    /// turns the address of MAIL (brackets off, "" for `<>`) into the
    /// envelope sender, or says why not: the caller's `-f` rules.
    pub fn command(
        &mut self,
        line: &[u8],
        sender_policy: &dyn Fn(&str) -> Result<String, String>,
    ) -> Step {
        let Ok(line) = std::str::from_utf8(line) else {
            return Step::Reply(r(500, "5.5.2", "command is not UTF-8"));
        };
        let (verb, args) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim_matches([' ', '\t'])),
            None => (line, ""),
        };
        let reply = match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if args.is_empty() => r(501, "5.5.4", format!("{verb} needs a domain")),
            "EHLO" => {
                self.txn = None;
                let mut lines = vec![format!("{} greets {args}", self.host), "PIPELINING".into()];
                lines.push(match self.size_limit {
                    0 => "SIZE".into(),
                    n => format!("SIZE {n}"),
                });
                for ext in ["8BITMIME", "CHUNKING", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
                    lines.push(ext.into());
                }
                Reply { code: 250, lines }
            }
            "HELO" => {
                self.txn = None;
                Reply::new(250, self.host.clone())
            }
            "MAIL" => self.mail(args, sender_policy),
            "RCPT" => self.rcpt(args),
            "DATA" if !args.is_empty() => r(501, "5.5.4", "DATA takes no argument"),
            "DATA" => match self.ready() {
                Err(refusal) => refusal,
                Ok(()) => return Step::Data(Reply::new(354, "End data with <CR><LF>.<CR><LF>")),
            },
            "BDAT" => return self.bdat(args),
            "RSET" => {
                self.txn = None;
                r(250, "2.0.0", "Ok")
            }
            "NOOP" => r(250, "2.0.0", "Ok"),
            "QUIT" => return Step::Quit(r(221, "2.0.0", format!("{} closing", self.host))),
            "VRFY" if args.is_empty() => r(501, "5.5.4", "VRFY needs an address"),
            "VRFY" => r(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            "HELP" => r(214, "2.0.0", format!("Commands: {COMMANDS}")),
            "EXPN" | "STARTTLS" | "AUTH" | "ETRN" | "TURN" | "SEND" | "SOML" | "SAML" => {
                r(502, "5.5.1", format!("{verb} not implemented"))
            }
            _ => r(500, "5.5.2", "command not recognized"),
        };
        Step::Reply(reply)
    }

    /// Whether a message may start now: MAIL and at least one RCPT.
    fn ready(&self) -> Result<(), Reply> {
        match &self.txn {
            None => Err(r(503, "5.5.1", "MAIL first")),
            Some(t) if t.rcpts.is_empty() => Err(r(554, "5.5.1", "no valid recipients")),
            Some(_) => Ok(()),
        }
    }

    fn mail(&mut self, args: &str, policy: &dyn Fn(&str) -> Result<String, String>) -> Reply {
        if self.txn.is_some() {
            return r(503, "5.5.1", "nested MAIL command");
        }
        let Some((addr, params)) = path_and_params(args, "FROM:") else {
            return r(501, "5.5.4", "syntax: MAIL FROM:<address>");
        };
        let mut t = Transaction::default();
        for p in params {
            let (key, value) = match p.split_once('=') {
                Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
                None => (p.to_ascii_uppercase(), None),
            };
            match (key.as_str(), value) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => t.size = Some(n),
                    _ => return r(501, "5.5.4", "bad SIZE value"),
                },
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => t.body = Body::SevenBit,
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    t.body = Body::EightBitMime
                }
                ("BODY", _) => return r(501, "5.5.4", "BODY is 7BIT or 8BITMIME"),
                ("SMTPUTF8", None) => t.smtputf8 = true,
                _ => return r(555, "5.5.4", format!("unsupported parameter {p}")),
            }
        }
        if let Some(n) = t.size
            && self.size_limit != 0
            && n > self.size_limit
        {
            return r(
                552,
                "5.3.4",
                format!(
                    "message size {n} exceeds the limit of {} (MESSAGE_SIZE_LIMIT)",
                    self.size_limit
                ),
            );
        }
        if !addr.is_ascii() && !t.smtputf8 {
            return r(553, "5.6.7", "non-ASCII address needs SMTPUTF8");
        }
        if !addr.is_empty()
            && let Err(why) = check_address(addr)
        {
            return r(501, "5.1.7", format!("bad sender address syntax: {why}"));
        }
        match policy(addr) {
            Ok(sender) => t.sender = sender,
            Err(why) => return r(553, "5.1.7", format!("sender refused: {why}")),
        }
        let shown = t.sender.clone();
        self.txn = Some(t);
        r(250, "2.1.0", format!("sender <{shown}> ok"))
    }

    fn rcpt(&mut self, args: &str) -> Reply {
        let max = self.max_rcpts;
        let Some(t) = self.txn.as_mut() else {
            return r(503, "5.5.1", "MAIL first");
        };
        let Some((addr, mut params)) = path_and_params(args, "TO:") else {
            return r(501, "5.5.4", "syntax: RCPT TO:<address>");
        };
        if let Some(p) = params.next() {
            return r(555, "5.5.4", format!("unsupported parameter {p}"));
        }
        if addr.is_empty() {
            return r(501, "5.1.3", "bad recipient address syntax: empty address");
        }
        if !addr.is_ascii() && !t.smtputf8 {
            return r(553, "5.6.7", "non-ASCII address needs SMTPUTF8");
        }
        if let Err(why) = check_address(addr) {
            return r(501, "5.1.3", format!("bad recipient address syntax: {why}"));
        }
        if t.rcpts.len() >= max {
            return r(452, "4.5.3", format!("too many recipients (at most {max})"));
        }
        t.rcpts.push(addr.to_string());
        r(250, "2.1.5", format!("recipient <{addr}> ok"))
    }

    fn bdat(&mut self, args: &str) -> Step {
        let Some((size, last)) = parse_bdat(args) else {
            return Step::Reply(r(501, "5.5.4", "syntax: BDAT size [LAST]"));
        };
        Step::Bdat {
            size,
            last,
            refusal: self.ready().err(),
        }
    }

    /// Hands the open transaction to the driver for its message; the
    /// session has none after it.
    pub fn take_transaction(&mut self) -> Option<Transaction> {
        self.txn.take()
    }

    /// The reply at the end of a message: queued as `id`, or refused.
    pub fn finish(&self, outcome: Result<&str, Reply>) -> Reply {
        match outcome {
            Ok(id) => r(250, "2.0.0", format!("Ok: queued as {id}")),
            Err(refusal) => refusal,
        }
    }
}

/// The arguments of `BDAT size [LAST]`.
pub fn parse_bdat(args: &str) -> Option<(u64, bool)> {
    let mut words = args.split_ascii_whitespace();
    let size = words.next()?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size = size.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

/// `FROM:<path> params` (or `TO:`): the address inside the path (brackets
/// and an RFC 5321 source route off; a path without brackets is taken as
/// clients send it) and the parameters after it.
fn path_and_params<'a>(
    args: &'a str,
    keyword: &str,
) -> Option<(&'a str, impl Iterator<Item = &'a str>)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start_matches([' ', '\t']);
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        // The closing bracket outside a quoted local part.
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        (&inner[..end], &inner[end + 1..])
    } else {
        match rest.split_once(' ') {
            Some((p, a)) => (p, a),
            None => (rest, ""),
        }
    };
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // `@a,@b:user@c`: the route is obsolete and ignored (RFC 5321 C).
    let path = match path.strip_prefix('@').and_then(|p| p.split_once(':')) {
        Some((_, addr)) => addr,
        None => path,
    };
    Some((path, params.split_ascii_whitespace()))
}

/// Our envelope address rules ([`address::validate`]), and no empty side
/// of an `@`.
fn check_address(addr: &str) -> Result<(), String> {
    address::validate(addr).map_err(|e| e.to_string())?;
    match address::split(addr) {
        ("", _) => Err("empty local part".into()),
        (_, Some("")) => Err("empty domain".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qualify(a: &str) -> Result<String, String> {
        Ok(match a {
            "" => String::new(),
            a if a.contains('@') => a.to_string(),
            a => format!("{a}@host.example"),
        })
    }

    fn reply(d: &mut Dialogue, line: &str) -> Reply {
        match d.command(line.as_bytes(), &qualify) {
            Step::Reply(r) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn code(d: &mut Dialogue, line: &str) -> String {
        let r = reply(d, line);
        let status = r.lines[0].split(' ').next().unwrap().to_string();
        format!("{} {status}", r.code)
    }

    #[test]
    fn ehlo_announces_the_extensions() {
        let mut d = Dialogue::new("host.example", 1000, MAX_RCPTS);
        assert_eq!(
            String::from_utf8(d.greeting().to_wire()).unwrap(),
            "220 host.example ESMTP dma-rs\r\n"
        );
        let r = reply(&mut d, "EHLO client");
        assert_eq!(
            String::from_utf8(r.to_wire()).unwrap(),
            "250-host.example greets client\r\n250-PIPELINING\r\n250-SIZE 1000\r\n\
             250-8BITMIME\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
        );
        let mut d = Dialogue::new("h", 0, MAX_RCPTS);
        assert!(reply(&mut d, "ehlo x").lines.contains(&"SIZE".to_string()));
        assert_eq!(code(&mut d, "EHLO"), "501 5.5.4");
        assert_eq!(reply(&mut d, "HELO x"), Reply::new(250, "h"));
    }

    #[test]
    fn a_transaction_and_its_replies() {
        let mut d = Dialogue::new("h", 1000, 3);
        // Table: command, reply code and enhanced status.
        for (cmd, want) in [
            ("RCPT TO:<bob>", "503 5.5.1"),
            ("DATA", "503 5.5.1"),
            ("EHLO c", "250 h"),
            ("MAIL FROM:<alice> SIZE=1001", "552 5.3.4"),
            ("MAIL FROM:<alice> BODY=BINARYMIME", "501 5.5.4"),
            ("MAIL FROM:<alice> SIZE=x", "501 5.5.4"),
            ("MAIL FROM:<alice> RET=FULL", "555 5.5.4"),
            ("MAIL FROM:<a b@x>", "501 5.1.7"),
            ("MAIL FROM:<-oQ@x>", "501 5.1.7"),
            ("MAIL FROM alice", "501 5.5.4"),
            ("MAIL FROM:<alice> SIZE=1000 BODY=8BITMIME", "250 2.1.0"),
            ("MAIL FROM:<alice>", "503 5.5.1"),
            ("DATA", "554 5.5.1"),
            ("RCPT TO:<>", "501 5.1.3"),
            ("RCPT TO:<bob@>", "501 5.1.3"),
            ("RCPT TO:<@x>", "501 5.1.3"),
            ("RCPT TO:<bob\u{1}>", "501 5.1.3"),
            ("RCPT TO:<b\u{e9}b@x>", "553 5.6.7"),
            ("RCPT TO:<bob> NOTIFY=NEVER", "555 5.5.4"),
            ("RCPT TO:<bob>", "250 2.1.5"),
            ("rcpt to: <@relay,@r2:carol@x.example>", "250 2.1.5"),
            ("RCPT TO:dave", "250 2.1.5"),
            ("RCPT TO:<erin>", "452 4.5.3"),
            ("VRFY bob", "252 2.0.0"),
            ("NOOP", "250 2.0.0"),
            ("EXPN list", "502 5.5.1"),
            ("STARTTLS", "502 5.5.1"),
            ("FOO", "500 5.5.2"),
            ("", "500 5.5.2"),
            ("HELP", "214 2.0.0"),
        ] {
            assert_eq!(code(&mut d, cmd), want, "{cmd}");
        }
        assert_eq!(
            d.command(b"DATA", &qualify),
            Step::Data(Reply::new(354, "End data with <CR><LF>.<CR><LF>"))
        );
        let t = d.take_transaction().unwrap();
        assert_eq!(t.sender, "alice@host.example");
        assert_eq!(t.rcpts, ["bob", "carol@x.example", "dave"]);
        assert_eq!((t.size, t.body), (Some(1000), Body::EightBitMime));
        assert_eq!(
            d.finish(Ok("0123")),
            Reply::new(250, "2.0.0 Ok: queued as 0123")
        );
        // The next message starts afresh.
        assert!(!d.in_transaction());
        assert_eq!(code(&mut d, "RCPT TO:<bob>"), "503 5.5.1");
        assert_eq!(code(&mut d, "MAIL FROM:<>"), "250 2.1.0");
        let t = d.take_transaction().unwrap();
        assert_eq!(t.sender, "");
        assert_eq!(
            d.command(b"QUIT", &qualify),
            Step::Quit(Reply::new(221, "2.0.0 h closing"))
        );
    }

    #[test]
    fn rset_and_ehlo_end_a_transaction() {
        let mut d = Dialogue::new("h", 0, MAX_RCPTS);
        for reset in ["RSET", "EHLO again", "HELO again"] {
            assert_eq!(code(&mut d, "MAIL FROM:<a@x>"), "250 2.1.0");
            assert_eq!(code(&mut d, "RCPT TO:<b@x>"), "250 2.1.5");
            reply(&mut d, reset);
            assert!(!d.in_transaction(), "{reset}");
        }
    }

    #[test]
    fn smtputf8_and_the_sender_policy() {
        let mut d = Dialogue::new("h", 0, MAX_RCPTS);
        assert_eq!(code(&mut d, "MAIL FROM:<j\u{f6}rg@x>"), "553 5.6.7");
        assert_eq!(
            code(&mut d, "MAIL FROM:<j\u{f6}rg@x> SMTPUTF8"),
            "250 2.1.0"
        );
        assert_eq!(code(&mut d, "RCPT TO:<b\u{e9}b@x>"), "250 2.1.5");
        d.take_transaction();
        let refuse = |_: &str| Err("no".to_string());
        let Step::Reply(r) = d.command(b"MAIL FROM:<a@x>", &refuse) else {
            panic!()
        };
        assert_eq!(r, Reply::new(553, "5.1.7 sender refused: no"));
        assert!(!d.in_transaction());
        assert!(matches!(
            d.command(b"\xff", &qualify),
            Step::Reply(Reply { code: 500, .. })
        ));
    }

    #[test]
    fn bdat_steps() {
        let mut d = Dialogue::new("h", 0, MAX_RCPTS);
        assert_eq!(
            d.command(b"BDAT 10", &qualify),
            Step::Bdat {
                size: 10,
                last: false,
                refusal: Some(Reply::new(503, "5.5.1 MAIL first"))
            }
        );
        assert_eq!(code(&mut d, "BDAT"), "501 5.5.4");
        assert_eq!(code(&mut d, "BDAT -1"), "501 5.5.4");
        assert_eq!(code(&mut d, "BDAT 1 LAST x"), "501 5.5.4");
        code(&mut d, "MAIL FROM:<a@x>");
        code(&mut d, "RCPT TO:<b@x>");
        assert_eq!(
            d.command(b"bdat 0 last", &qualify),
            Step::Bdat {
                size: 0,
                last: true,
                refusal: None
            }
        );
        assert_eq!(parse_bdat("12 LAST"), Some((12, true)));
        assert_eq!(parse_bdat("12"), Some((12, false)));
        assert_eq!(parse_bdat("+1"), None);
    }
}
