#!/usr/bin/env python3
"""Loopback SMTP sink for the dma-rs benchmark.

Accepts everything and throws it away, counting sessions, transactions
(messages accepted after the final dot), recipients of accepted transactions,
and bytes. Options (also changeable at run time through the control socket):
  --delay SECONDS      wait this long before every reply (greeting included)
  --max-per-client N   at most N concurrent sessions per client address;
                       beyond it: "421 4.7.0 too many sessions" and close
  --no-chunking        do not offer CHUNKING (BDAT, RFC 3030); offered by
                       default, as Exim and Postfix (>= 3.0) do
Control: a unix socket (--control PATH); send one line, get one JSON line:
  STAT                 counters
  RESET                zero the counters (returns the old ones)
  SET delay=0.02 max=10 rtt=1 chunking=0
Only listens on 127.0.0.1 / ::1.
"""
import argparse
import asyncio
import json
import os
import signal
import sys

C = dict(sessions=0, refused=0, transactions=0, rcpts=0, bytes=0, active=0,
         peak_active=0, rset=0)
CONF = dict(delay=0.0, max=0, rtt=0, chunking=1)
PER_CLIENT = {}


def reset():
    old = dict(C)
    for k in C:
        if k != "active":
            C[k] = 0
    C["peak_active"] = C["active"]
    return old


async def handle(reader, writer):
    peer = writer.get_extra_info("peername")
    host = peer[0] if peer else "?"
    try:
        if CONF["max"] and PER_CLIENT.get(host, 0) >= CONF["max"]:
            C["refused"] += 1
            writer.write(b"421 4.7.0 too many sessions\r\n")
            await writer.drain()
            return
        PER_CLIENT[host] = PER_CLIENT.get(host, 0) + 1
        C["active"] += 1
        C["peak_active"] = max(C["peak_active"], C["active"])
        C["sessions"] += 1
        try:
            await session(reader, writer)
        finally:
            C["active"] -= 1
            PER_CLIENT[host] -= 1
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def session(reader, writer):
    # With rtt=1 the delay models distance, not a slow server: it is paid
    # once per round trip, i.e. only by a reply to a command that arrived in
    # a new network read (pipelined commands already buffered add nothing).
    fresh = [True]

    async def reply(line):
        if CONF["delay"] and (not CONF["rtt"] or fresh[0]):
            await asyncio.sleep(CONF["delay"])
        writer.write(line)
        await writer.drain()

    async def next_line():
        fresh[0] = len(getattr(reader, "_buffer", b"")) == 0
        return await reader.readline()

    await reply(b"220 bench-sink ESMTP\r\n")
    rcpts = 0
    while True:
        line = await next_line()
        if not line:
            return
        cmd = line[:4].upper()
        if cmd == b"EHLO":
            await reply(b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                        + (b"250-CHUNKING\r\n" if CONF["chunking"] else b"")
                        + b"250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n")
        elif cmd == b"HELO":
            await reply(b"250 bench-sink\r\n")
        elif cmd == b"MAIL":
            rcpts = 0
            await reply(b"250 2.1.0 Ok\r\n")
        elif cmd == b"RCPT":
            rcpts += 1
            await reply(b"250 2.1.5 Ok\r\n")
        elif cmd == b"DATA":
            await reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            n = await read_data(reader)
            fresh[0] = len(getattr(reader, "_buffer", b"")) == 0
            C["bytes"] += n
            await reply(b"250 2.0.0 Ok: queued\r\n")
            C["transactions"] += 1
            C["rcpts"] += rcpts
            rcpts = 0
        elif cmd == b"BDAT" and CONF["chunking"]:
            # BDAT <size> [LAST]: exactly <size> octets follow the line.
            args = line.split()
            n = int(args[1])
            last = len(args) > 2 and args[2].upper() == b"LAST"
            await reader.readexactly(n)
            C["bytes"] += n
            if last:
                await reply(b"250 2.0.0 Ok: queued\r\n")
                C["transactions"] += 1
                C["rcpts"] += rcpts
                rcpts = 0
            else:
                await reply(b"250 2.0.0 %d octets received\r\n" % n)
        elif cmd == b"RSET":
            C["rset"] += 1
            rcpts = 0
            await reply(b"250 2.0.0 Ok\r\n")
        elif cmd == b"QUIT":
            await reply(b"221 2.0.0 Bye\r\n")
            return
        elif cmd == b"NOOP":
            await reply(b"250 2.0.0 Ok\r\n")
        else:
            await reply(b"502 5.5.2 Error: command not recognized\r\n")


async def read_data(reader):
    """Reads up to and including CRLF.CRLF (or a lone LF.LF); returns the size."""
    total = 0
    tail = b"\r\n"  # DATA may be followed directly by ".\r\n"
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise ConnectionError("eof in data")
        buf = tail + chunk
        i = buf.find(b"\r\n.\r\n")
        if i < 0:
            i2 = buf.find(b"\n.\n")
        else:
            i2 = -1
        if i >= 0 or i2 >= 0:
            end = (i + 5) if i >= 0 else (i2 + 3)
            rest = buf[end:]
            total += end - len(tail)
            if rest:
                # pipelined commands after the dot: give them back
                reader._buffer[0:0] = rest  # noqa: SLF001 (StreamReader internals)
            return max(total, 0)
        total += len(chunk)
        tail = buf[-4:]


async def control(reader, writer):
    try:
        line = (await reader.readline()).decode().strip()
        if line == "RESET":
            out = reset()
        elif line.startswith("SET"):
            for kv in line.split()[1:]:
                k, v = kv.split("=", 1)
                CONF[k] = float(v) if k == "delay" else int(v)
            out = dict(CONF)
        else:
            out = dict(C, **CONF)
        writer.write((json.dumps(out) + "\n").encode())
        await writer.drain()
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--max-per-client", type=int, default=0)
    ap.add_argument("--no-chunking", action="store_true")
    ap.add_argument("--control", required=True)
    ap.add_argument("--pidfile")
    a = ap.parse_args()
    assert a.host in ("127.0.0.1", "::1", "localhost")
    CONF["delay"] = a.delay
    CONF["max"] = a.max_per_client
    CONF["chunking"] = 0 if a.no_chunking else 1
    srv = await asyncio.start_server(handle, a.host, a.port, backlog=1024,
                                     limit=1 << 20)
    try:
        os.unlink(a.control)
    except FileNotFoundError:
        pass
    ctl = await asyncio.start_unix_server(control, a.control)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    loop.add_signal_handler(signal.SIGUSR1,
                            lambda: print(json.dumps(C), file=sys.stderr, flush=True))
    print("ready", flush=True)
    async with srv, ctl:
        await stop


if __name__ == "__main__":
    asyncio.run(main())
