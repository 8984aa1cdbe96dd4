#!/usr/bin/python3
"""Verifies every DKIM signature of a message with dkimpy, an independent
verifier, asking the tests' fake DNS server (tests/support/dns.rs) for the
keys.

Usage: dkim_verify.py PORT MESSAGE-FILE

Prints one line per DKIM-Signature field, top first:
`ok d=<domain> s=<selector> a=<algorithm>` or `fail d=... s=... <why>`.
Exit 0 when there is at least one signature and every one verifies, 1 when
one fails, 2 when the message has none.

Needs Debian's python3-dkim, python3-nacl (Ed25519) and python3-dnspython
(scripts/test-setup.sh installs them); run with /usr/bin/python3, which is
the interpreter they are installed for.
"""

import sys

import dkim
import dns.resolver


def main():
    port = int(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        message = f.read()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port

    def txt(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    d = dkim.DKIM(message)
    count = len([1 for name, _ in d.headers if name.lower() == b"dkim-signature"])
    if count == 0:
        print("no DKIM-Signature")
        return 2
    failed = False
    for idx in range(count):
        try:
            ok = d.verify(idx=idx, dnsfunc=txt)
            why = "signature does not verify"
        except dkim.DKIMException as e:
            ok = False
            why = "%s: %s" % (type(e).__name__, e)
        sig = d.signature_fields or {}
        shown = "d=%s s=%s a=%s" % tuple(
            sig.get(t, b"?").decode("ascii", "replace") for t in (b"d", b"s", b"a")
        )
        if ok:
            print("ok " + shown)
        else:
            failed = True
            print("fail %s %s" % (shown, why))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
