#!/usr/bin/env python3
"""A real SMTP client (Python's smtplib) speaking to `sendmail -bs` over a
pipe, for tests/smtp_stdin.rs.

usage: bs_client.py SCENARIO DMA-ARGV...

smtplib talks to the command's stdin and stdout as it would to a socket.
Every reply the scenario gets is printed as one line, `CODE TEXT` (the
lines of a multi-line reply joined by `|`); the test compares them. After
the session, a line `EXIT <status>` gives the command's exit status.
"""

import smtplib
import subprocess
import sys


class PipeSock:
    """What smtplib needs of a socket, over the process's stdin."""

    def __init__(self, proc):
        self.proc = proc

    def sendall(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self):
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


class PipeSMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection is a subprocess's stdin and stdout."""

    def __init__(self, argv):
        self.argv = argv
        super().__init__()
        self.connect()

    def connect(self, host="localhost", port=0, source_address=None):
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.sock = PipeSock(self.proc)
        self.file = self.proc.stdout
        code, msg = self.getreply()
        show(code, msg)
        return code, msg

    def close(self):
        # smtplib closes its file and socket; we keep stdout open, to read
        # anything the server sends after (there must be nothing).
        if self.sock:
            self.sock.close()
        self.sock = None

    def replies(self, n):
        """Reads `n` replies to pipelined commands, in order."""
        for _ in range(n):
            show(*self.getreply())

    def finish(self):
        self.close()
        rest = self.proc.stdout.read()
        if rest:
            print("AFTER " + rest.decode(errors="replace").replace("\r\n", "|"))
        print("EXIT %d" % self.proc.wait())


def show(code, msg):
    text = msg.decode(errors="replace").replace("\n", "|")
    print("%d %s" % (code, text), flush=True)


def message(subject, body):
    return ("Subject: %s\r\n\r\n%s" % (subject, body)).encode()


def data_block(msg):
    """The message dot-stuffed, with its final dot."""
    q = smtplib.quotedata(msg.decode()).encode()
    if not q.endswith(b"\r\n"):
        q += b"\r\n"
    return q + b".\r\n"


def two_and_more(s):
    """Three messages in one session: two with pipelined commands (the
    second's MAIL, RCPT and DATA sent with the first's final dot), then one
    through smtplib's own sendmail, then one in BDAT chunks."""
    show(*s.ehlo("client.example"))
    s.send(
        b"MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n"
        b"RCPT TO:<dmt-alice>\r\nRCPT TO:<dmt-bob@test.example>\r\nDATA\r\n"
    )
    s.replies(4)
    first = message("first", "line one\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n")
    s.send(
        data_block(first)
        + b"MAIL FROM:<>\r\nRCPT TO:<dmt-bob>\r\nNOOP\r\nDATA\r\n"
    )
    s.replies(5)
    s.send(data_block(message("second", "from the null sender\r\n")))
    s.replies(1)
    # smtplib's own transaction (lockstep, with SIZE=).
    refused = s.sendmail(
        "third@example.org", ["dmt-alice"], message("third", "via sendmail()\r\n")
    )
    print("REFUSED %r" % refused)
    show(*s.noop())
    # CHUNKING: two chunks, pipelined.
    chunk1 = b"Subject: fourth\r\n\r\nin two"
    chunk2 = b" chunks\r\n"
    s.send(
        b"MAIL FROM:<chunks@example.org>\r\nRCPT TO:<dmt-alice>\r\n"
        + b"BDAT %d\r\n" % len(chunk1)
        + chunk1
        + b"BDAT %d LAST\r\n" % len(chunk2)
        + chunk2
    )
    s.replies(4)
    show(*s.docmd("VRFY", "dmt-alice"))
    show(*s.docmd("RSET"))
    show(*s.quit())


def errors(s):
    """The refusals, each followed by a message that goes through."""
    show(*s.ehlo("client.example"))
    # Over MESSAGE_SIZE_LIMIT (2k), announced.
    show(*s.mail("big@example.org", ["SIZE=5000"]))
    # Over it, unannounced: refused after the final dot.
    show(*s.mail("big@example.org"))
    show(*s.rcpt("dmt-alice"))
    show(*s.data(message("big", ("x" * 70 + "\r\n") * 70)))
    # Bad addresses, and commands out of sequence.
    show(*s.rcpt("dmt-alice"))
    show(*s.mail("-oQ/tmp@example.org"))
    show(*s.mail("sender@example.org"))
    show(*s.docmd("RCPT", "TO:<two words@example.org>"))
    show(*s.docmd("RCPT", "TO:<dmt-bob@>"))
    show(*s.docmd("DATA"))
    show(*s.rset())
    # Too many recipients: 1000 taken, the 1001st refused, all pipelined.
    s.send(
        b"MAIL FROM:<many@example.org>\r\n"
        + b"".join(b"RCPT TO:<user%d@remote.example>\r\n" % i for i in range(1001))
    )
    s.replies(1)
    codes = {}
    for _ in range(1001):
        code, msg = s.getreply()
        codes.setdefault(code, []).append(msg)
    for code in sorted(codes):
        print("%d x%d %s" % (code, len(codes[code]), codes[code][-1].decode()))
    show(*s.data(message("many", "to many\r\n")))
    show(*s.quit())


def eof_in_data(s):
    """The client goes away in the middle of a message."""
    show(*s.ehlo("client.example"))
    show(*s.mail("sender@example.org"))
    show(*s.rcpt("dmt-alice"))
    show(*s.docmd("DATA"))
    s.send(b"Subject: cut\r\n\r\nhalf a mess")


def eof_in_bdat(s):
    """The client goes away between BDAT chunks."""
    show(*s.ehlo("client.example"))
    s.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<dmt-alice>\r\nBDAT 4\r\nSubj")
    s.replies(3)


def one(s):
    """One message, smtplib's way."""
    print("REFUSED %r" % s.sendmail("someone@example.org", ["dmt-bob"], message("one", "hello\r\n")))
    show(*s.quit())


SCENARIOS = {
    "one": one,
    "two_and_more": two_and_more,
    "errors": errors,
    "eof_in_data": eof_in_data,
    "eof_in_bdat": eof_in_bdat,
}

if __name__ == "__main__":
    s = PipeSMTP(sys.argv[2:])
    SCENARIOS[sys.argv[1]](s)
    s.finish()
