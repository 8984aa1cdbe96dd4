#!/usr/bin/env python3
"""dma-rs vs Debian dma benchmark driver (see bench/run.sh and BENCHMARKS.md).

outer mode (default): starts the loopback sink, runs every workload for N
rounds alternating the two MTAs (the order swaps every round), each run in a
fresh temporary directory and a private mount + pid namespace, and appends
one JSON line per run to the results file. Where it applies (relay without
a queue: the relay_immediate rows) msmtp runs too, if installed, and
smtp-source (no queue, no MTA) gives the reference for every relay row.

inner mode (`bench.py inner SPEC`): runs one workload for one MTA inside the
namespace (Debian's dma sees its bind-mounted /etc/dma, /var/spool/dma,
/var/mail, /usr/lib/dma there). Being pid 1 of the namespace, it reaps
dma's detached delivery processes; when it exits every leftover process of
the run is killed by the kernel.
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DMARS = os.environ.get("DMARS", os.path.join(REPO, "target/release/dma"))
BENCH_ROOT = os.environ.get("BENCH_ROOT", "/opt/dma-rs-bench")
DEB_DMA = os.path.join(BENCH_ROOT, "dma/usr/sbin/dma")
DEB_DMA_LIB = os.path.join(BENCH_ROOT, "dma/usr/lib/dma")
PF = os.path.join(BENCH_ROOT, "postfix")
SMTP_SOURCE = os.path.join(PF, "usr/sbin/smtp-source")
MSMTP = shutil.which("msmtp")  # Debian's msmtp (not msmtp-mta): no queue
MAILNAME = "bench.local"
SENDER = "bench@bench.local"
RDOMAIN = "bench.invalid"  # remote recipients: all go to the smarthost

# workload name -> parameters (full, smoke)
FULL = dict(n=500, rcpts=10, size=4096, local_n=1000, lat_n=2000, mem_mb=100,
            queue_n=100_000, timeout=120, slow_timeout=45)
SMOKE = dict(n=3, rcpts=2, size=1024, local_n=3, lat_n=5, mem_mb=1,
             queue_n=100, timeout=20, slow_timeout=10)

RELAY = {
    # name: (queued?, delay, max sessions per client, delay per round trip?)
    # "_20ms": 20 ms before every reply (a slow server); "_rtt20": 20 ms per
    # round trip (a server 20 ms away: pipelined replies come together).
    "relay_immediate": (False, 0.0, 0, 0),
    "relay_queued": (True, 0.0, 0, 0),
    "relay_immediate_20ms": (False, 0.02, 0, 0),
    "relay_queued_20ms": (True, 0.02, 0, 0),
    "relay_immediate_rtt20": (False, 0.02, 0, 1),
    "relay_queued_rtt20": (True, 0.02, 0, 1),
    "relay_immediate_limit10": (False, 0.0, 10, 0),
    "relay_queued_limit10": (True, 0.0, 10, 0),
}
WORKLOADS = list(RELAY) + ["local_one", "local_50", "latency", "memory",
                           "queue_scale"]
MTAS = ["dma-rs", "dma"]


# ---------------------------------------------------------------- helpers

def ctl(sock_path, line):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall((line + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    s.close()
    return json.loads(buf)


def message(token, size, rcpt="bench"):
    head = (f"From: Bench <{SENDER}>\nTo: {rcpt}\nSubject: bench {token}\n"
            f"X-Bench-Token: {token}\n\n").encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,-0123456789\n"
    body = bytearray(f"token {token}\n".encode())
    while len(head) + len(body) + len(line) <= size:
        body += line
    return head + bytes(body)


def reap():
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
    except ChildProcessError:
        pass


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


class RssSampler(threading.Thread):
    """Max VmHWM over the MTA's processes (the namespace's /proc shows only ours)."""
    NAMES = {"dma", "dma-local", "sendmail", "mailq", "dma-mbox-create"}

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.stop = False

    def run(self):
        me = os.getpid()
        while not self.stop:
            for p in os.listdir("/proc"):
                if not p.isdigit() or int(p) == me:
                    continue
                try:
                    with open(f"/proc/{p}/status") as f:
                        st = f.read()
                except OSError:
                    continue
                m = re.search(r"^Name:\s*(\S+)", st, re.M)
                h = re.search(r"^VmHWM:\s*(\d+)", st, re.M)
                if m and h and m.group(1) in self.NAMES:
                    self.peak_kb = max(self.peak_kb, int(h.group(1)))
            time.sleep(0.005)


# ---------------------------------------------------------------- inner

class Mta:
    def __init__(self, spec):
        self.spec = spec
        self.kind = spec["mta"]
        self.tmp = spec["tmp"]
        if self.kind == "dma":
            self.spool = "/var/spool/dma"
            self.mail = "/var/mail"
            self.conf = "/etc/dma/dma.conf"
        else:
            self.spool = os.path.join(self.tmp, "spool")
            self.mail = os.path.join(self.tmp, "mail")
            self.conf = os.path.join(self.tmp, "dma.conf")

    def write_conf(self, defer, port=None):
        port = port or self.spec["port"]
        if self.kind == "msmtp":
            return  # everything on its command line
        lines = ["SMARTHOST 127.0.0.1", f"PORT {port}", f"MAILNAME {MAILNAME}"]
        if self.kind == "dma-rs":
            lines += [f"SPOOLDIR {self.spool}", f"MAILSPOOL {self.mail}",
                      f"ALIASES {self.tmp}/aliases", "NAMESERVER 127.0.0.1:9"]
        if defer:
            lines.append("DEFER")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self, *args):
        if self.kind == "msmtp":
            # no configuration file; the sink, plain text, no AUTH
            rcpts = [a for a in args if not a.startswith("-") and a != SENDER]
            return [MSMTP, "-C", "/dev/null", "--host=127.0.0.1", f"--port={self.spec['port']}",
                    f"--from={SENDER}", f"--domain={MAILNAME}", "--auth=off", "--tls=off",
                    "--"] + rcpts
        if self.kind == "dma":
            # dma ignores -o options; DEFER in dma.conf decides queue-only
            return [DEB_DMA] + [a for a in args if not a.startswith("-od")]
        return [DMARS, "-C", self.conf] + list(args)

    def run(self, args, stdin=b"", check=True, timeout=600):
        p = subprocess.run(self.argv(*args), input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        reap()
        if check and p.returncode != 0:
            raise RuntimeError(f"{self.argv(*args)} exit {p.returncode}: {p.stderr[-500:]!r}")
        return p

    def queued(self):
        if self.kind == "msmtp":
            return 0
        pat = "Q*" if self.kind == "dma" else "*.env"
        return len(glob.glob(os.path.join(self.spool, pat)))

    def clear(self):
        for d in (self.spool, self.mail):
            for f in os.listdir(d):
                p = os.path.join(d, f)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)


def wait_for(cond, timeout, interval=0.01):
    t0 = time.monotonic()
    while True:
        reap()
        if cond():
            return True
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(interval)


def inner_relay(m, spec, P):
    queued, _, _, _ = RELAY[spec["workload"]]
    n, r, size = P["n"], P["rcpts"], P["size"]
    # 20 ms and limit10 runs may not finish (deferrals wait RETRY_MIN / dma's
    # in-process sleep): they stop at slow_timeout and report what got through
    slow = "limit" in spec["workload"] or "20" in spec["workload"]
    timeout = P["slow_timeout"] if slow else P["timeout"]
    m.write_conf(defer=queued)
    sock = spec["ctl"]
    rcpts = [f"r{j:02d}@{RDOMAIN}" for j in range(r)]
    msgs = [message(f"{spec['tag']}-{i}", size) for i in range(n)]
    expect = n * r
    ctl(sock, "RESET")
    res = dict(expected=expect)
    t0 = time.monotonic()
    for i in range(n):
        if time.monotonic() - t0 > timeout:
            # a queue-less client (msmtp) delivers while it submits: stop
            # at the timeout like every other run, and count what got through
            res["submit_stopped_at"] = i
            break
        m.run(["-f", SENDER] + (["-odq"] if queued else []) + rcpts, msgs[i],
              check=m.kind != "msmtp")
    t_sub = time.monotonic()
    res["submit_s"] = t_sub - t0
    if queued:
        # the clock for the queued workload covers the queue run only
        if m.queued() != (n if m.kind == "dma-rs" else n * r):
            raise RuntimeError(f"expected everything queued, found {m.queued()} files")
        ctl(sock, "RESET")
        t0 = time.monotonic()
        try:
            m.run(["-q"], check=False, timeout=timeout)
        except subprocess.TimeoutExpired:  # killed; count what got through
            res["q_killed"] = True
        res["q_exit_s"] = time.monotonic() - t0
    done = wait_for(lambda: ctl(sock, "STAT")["rcpts"] >= expect and m.queued() == 0,
                    timeout - (time.monotonic() - t0))
    t1 = time.monotonic()
    st = ctl(sock, "STAT")
    res.update(seconds=t1 - t0, complete=done, delivered=st["rcpts"],
               sessions=st["sessions"], transactions=st["transactions"],
               refused=st["refused"], peak_sessions=st["peak_active"],
               left_in_queue=m.queued())
    res["msgs_per_s"] = n / res["seconds"] if done else None
    # throughput that is also meaningful for an unfinished run
    res["rcpts_per_s"] = st["rcpts"] / res["seconds"]
    res["timeout_s"] = timeout
    return res


def count_tokens(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\nX-Bench-Token: ")
    except FileNotFoundError:
        return 0


def inner_local(m, spec, P):
    n, size = P["local_n"], 2048
    users = ["benchuser"] if spec["workload"] == "local_one" else \
        [f"bench{i:02d}" for i in range(1, 51)]
    if spec["smoke"] and len(users) > 1:
        users = users[:3]
    m.write_conf(defer=False)
    per_user = {u: 0 for u in users}
    tokens = {u: [] for u in users}
    plan = []
    for i in range(n):
        u = users[i % len(users)]
        tok = f"{spec['tag']}-{i}-{random.getrandbits(32):08x}"
        per_user[u] += 1
        tokens[u].append(tok)
        plan.append((u, message(tok, size, u)))
    t0 = time.monotonic()
    for u, msg in plan:
        m.run(["-f", SENDER, u], msg)
    res = dict(submit_s=time.monotonic() - t0, expected=n, users=len(users))
    done = wait_for(lambda: m.queued() == 0 and all(
        count_tokens(os.path.join(m.mail, u)) >= per_user[u] for u in users),
        P["timeout"], 0.02)
    res["seconds"] = time.monotonic() - t0
    res["complete"] = done
    res["msgs_per_s"] = n / res["seconds"] if done else None
    # integrity: message by message
    bad, got = [], 0
    for u in users:
        try:
            data = open(os.path.join(m.mail, u), "rb").read()
        except FileNotFoundError:
            data = b""
        froms = len(re.findall(rb"(?:^|\n)From ", data))
        found = re.findall(rb"\nX-Bench-Token: (\S+)", data)
        got += len(found)
        body_ok = all(data.count(f"token {t}\n".encode()) == 1 for t in tokens[u])
        if froms != per_user[u] or sorted(x.decode() for x in found) != sorted(tokens[u]) \
                or not body_ok:
            bad.append(dict(user=u, from_lines=froms, tokens=len(found),
                            expected=per_user[u], bodies_ok=body_ok))
    res.update(delivered=got, intact=not bad and done, integrity_errors=bad[:5])
    return res


def inner_latency(m, spec, P):
    n = P["lat_n"]
    m.write_conf(defer=True)
    msg = message(f"{spec['tag']}-lat", 1024)
    lat = []
    for i in range(n):
        t = time.monotonic()
        m.run(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], msg)
        lat.append(time.monotonic() - t)
    return dict(p50_ms=pct(lat, 50) * 1e3, p99_ms=pct(lat, 99) * 1e3,
                mean_ms=statistics.mean(lat) * 1e3, expected=n, queued=m.queued(),
                complete=m.queued() == n)


def time_v(m, args, stdin_path):
    with open(stdin_path, "rb") as f:
        p = subprocess.run(["/usr/bin/time", "-v"] + m.argv(*args), stdin=f,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reap()
    mm = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.returncode, int(mm.group(1)) if mm else None


def inner_memory(m, spec, P):
    size = P["mem_mb"] * 1024 * 1024
    path = os.path.join(spec["tmp"], "big.msg")
    with open(path, "wb") as f:
        f.write(message(f"{spec['tag']}-big", 0))
        line = b"x" * 75 + b"\n"
        f.write(line * (size // len(line)))
    m.write_conf(defer=True)
    sock = spec["ctl"]
    res = {}
    s = RssSampler()
    s.start()
    t0 = time.monotonic()
    rc, kb = time_v(m, ["-f", SENDER, "-odq", f"r@{RDOMAIN}"], path)
    time.sleep(0.05)
    res.update(intake_rc=rc, intake_time_v_kb=kb, intake_s=time.monotonic() - t0,
               intake_peak_kb=max(kb or 0, s.peak_kb))
    s.stop = True
    s.join()
    ctl(sock, "RESET")
    s = RssSampler()
    s.start()
    t0 = time.monotonic()
    rc, kb = time_v(m, ["-q"], "/dev/null")
    done = wait_for(lambda: ctl(sock, "STAT")["rcpts"] >= 1 and m.queued() == 0,
                    P["timeout"], 0.02)
    s.stop = True
    s.join()
    res.update(relay_rc=rc, relay_time_v_kb=kb, relay_s=time.monotonic() - t0,
               relay_peak_kb=max(kb or 0, s.peak_kb), complete=done and rc == 0,
               sink_bytes=ctl(sock, "STAT")["bytes"])
    return res


def make_queue(m, n):
    """Queues one template message, then clones it n-1 times (deferred, due in 1 h)."""
    m.write_conf(defer=True)
    m.run(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], message("qs-template", 1024))
    rng = random.Random(1)
    if m.kind == "dma-rs":
        envs = glob.glob(os.path.join(m.spool, "*.env"))
        tid = os.path.basename(envs[0])[:-4]
        env = open(envs[0]).read()
        data = open(os.path.join(m.spool, tid + ".msg"), "rb").read()
        future = int(time.time()) + 3600
        env = env.replace("state pending\n",
                          f"state deferred\nattempts 1\nnext-try {future}\n"
                          "reply 4.4.1%20connection%20refused\n")
        assert "state deferred" in env, env
        secs = int(time.time())
        for i in range(n):
            nid = f"{(secs - i) & 0xffffffff:08x}{rng.getrandbits(32):08x}"
            with open(os.path.join(m.spool, nid + ".msg"), "wb") as f:
                f.write(data)
            with open(os.path.join(m.spool, nid + ".env"), "w") as f:
                f.write(env.replace(f"id {tid}\n", f"id {nid}\n"))
        os.unlink(os.path.join(m.spool, tid + ".msg"))
        os.unlink(envs[0])
    else:
        qs = glob.glob(os.path.join(m.spool, "Q*"))
        tid = os.path.basename(qs[0])[1:]
        q = open(qs[0]).read()
        data = open(os.path.join(m.spool, "M" + tid), "rb").read()
        for i in range(n):
            nid = f"{1000000 + i}.{rng.getrandbits(48):012x}"
            for name, content in (("M" + nid, data),
                                  ("Q" + nid, q.replace(f"ID: {tid}", f"ID: {nid}").encode())):
                p = os.path.join(m.spool, name)
                with open(p, "wb") as f:
                    f.write(content)
                os.chown(p, 8, 8)
        os.unlink(qs[0])
        os.unlink(os.path.join(m.spool, "M" + tid))
    return m.queued()


def inner_queue_scale(m, spec, P):
    n = P["queue_n"]
    t = time.monotonic()
    have = make_queue(m, n)
    res = dict(expected=n, queued=have, build_s=time.monotonic() - t, rounds=[])
    closed = spec["closed_port"]
    for _ in range(spec["qs_rounds"]):
        r = {}
        t = time.monotonic()
        p = m.run(["-bp"], check=False)
        r["mailq_s"] = time.monotonic() - t
        r["mailq_rc"] = p.returncode
        r["mailq_lines"] = p.stdout.count(b"\n")
        if m.kind == "dma-rs":
            # nothing is due: a -q5m run must find that out and deliver nothing
            m.write_conf(defer=True, port=closed)
            t = time.monotonic()
            p = m.run(["-q5m"], check=False)
            r["q5m_s"] = time.monotonic() - t
            r["q5m_rc"] = p.returncode
        m.write_conf(defer=True, port=closed)
        t = time.monotonic()
        m.run(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], message("qs-extra", 1024))
        r["intake_s"] = time.monotonic() - t
        res["rounds"].append(r)
    res["queued_after"] = m.queued()
    for k in ("mailq_s", "q5m_s", "intake_s"):
        v = [r[k] for r in res["rounds"] if k in r]
        if v:
            res[k] = statistics.median(v)
    res["complete"] = have >= n and all(r["mailq_rc"] == 0 for r in res["rounds"])
    return res


def inner(spec_path):
    spec = json.load(open(spec_path))
    P = SMOKE if spec["smoke"] else FULL
    m = Mta(spec)
    w = spec["workload"]
    if w in RELAY:
        res = inner_relay(m, spec, P)
    elif w.startswith("local"):
        res = inner_local(m, spec, P)
    elif w == "latency":
        res = inner_latency(m, spec, P)
    elif w == "memory":
        res = inner_memory(m, spec, P)
    elif w == "queue_scale":
        res = inner_queue_scale(m, spec, P)
    else:
        raise SystemExit(f"unknown workload {w}")
    with open(spec["result"], "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------- outer

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_one(a, workload, mta, rnd, port, ctl_path, closed_port, qs_rounds):
    tmp = tempfile.mkdtemp(prefix=f"dmabench-{mta}-")
    os.chmod(tmp, 0o755)
    for d, mode in (("spool", 0o2770), ("mail", 0o2775), ("etc-dma", 0o755)):
        os.mkdir(os.path.join(tmp, d))
        os.chown(os.path.join(tmp, d), 0, 8)
        os.chmod(os.path.join(tmp, d), mode)
    open(os.path.join(tmp, "aliases"), "w").close()
    spec = dict(mta=mta, workload=workload, tmp=tmp, port=port, ctl=ctl_path,
                smoke=a.smoke, tag=f"{workload}-{mta}-{rnd}",
                result=os.path.join(tmp, "result.json"), closed_port=closed_port,
                qs_rounds=qs_rounds)
    sp = os.path.join(tmp, "spec.json")
    json.dump(spec, open(sp, "w"))
    py = f"exec {sys.executable} {os.path.abspath(__file__)} inner {sp}"
    if mta == "dma":
        for d in ("/var/spool/dma", "/usr/lib/dma", "/etc/dma"):
            os.makedirs(d, exist_ok=True)  # empty mount points only
        sh = (f"mount --bind {tmp}/etc-dma /etc/dma && mount --bind {tmp}/spool /var/spool/dma"
              f" && mount --bind {tmp}/mail /var/mail && mount --bind {DEB_DMA_LIB} /usr/lib/dma"
              f" && {py}")
    else:
        sh = py
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
           "--mount-proc", "sh", "-c", sh]
    t = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - t
    try:
        res = json.load(open(spec["result"]))
        err = None
    except (OSError, ValueError):
        res, err = {}, p.stderr.decode(errors="replace")[-2000:]
    rec = dict(workload=workload, mta=mta, round=rnd, wall_s=wall, rc=p.returncode, **res)
    if err or p.returncode != 0:
        rec["error"] = err or p.stderr.decode(errors="replace")[-2000:]
        rec["complete"] = False
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


def run_source(a, workload, rnd, port, ctl_path):
    P = SMOKE if a.smoke else FULL
    n, r, size = P["n"], P["rcpts"], P["size"]
    ctl(ctl_path, "RESET")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PF, "usr/lib/postfix"))
    cmd = [SMTP_SOURCE, "-s", "10", "-m", str(n), "-r", str(r), "-l", str(size),
           "-f", SENDER, "-t", f"r@{RDOMAIN}", f"127.0.0.1:{port}"]
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=600)
    ok = wait_for(lambda: ctl(ctl_path, "STAT")["rcpts"] >= n * r, 30)
    secs = time.monotonic() - t
    st = ctl(ctl_path, "STAT")
    return dict(workload=workload, mta="smtp-source", round=rnd, seconds=secs,
                complete=ok and p.returncode == 0, delivered=st["rcpts"],
                expected=n * r, sessions=st["sessions"], refused=st["refused"],
                msgs_per_s=n / secs, command=" ".join(cmd))


def outer(a):
    if os.geteuid() != 0:
        raise SystemExit("bench.py: must run as root")
    for p in (DMARS, DEB_DMA, SMTP_SOURCE):
        if not os.path.exists(p):
            raise SystemExit(f"bench.py: missing {p} (run bench/setup.sh)")
    workloads = WORKLOADS if not a.only else a.only.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"unknown workload {w}; one of {', '.join(WORKLOADS)}")
    port, closed = free_port(), free_port()
    ctl_dir = tempfile.mkdtemp(prefix="dmabench-sink-")
    ctl_path = os.path.join(ctl_dir, "ctl.sock")
    sink = subprocess.Popen([sys.executable, os.path.join(HERE, "sink.py"), "--port",
                             str(port), "--control", ctl_path],
                            stdout=subprocess.PIPE)
    assert sink.stdout.readline().strip() == b"ready"
    out = open(a.out, "a")

    def emit(rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()
        keys = [k for k in ("seconds", "msgs_per_s", "p50_ms", "p99_ms", "intake_peak_kb",
                            "relay_peak_kb", "mailq_s", "q5m_s", "intake_s", "complete",
                            "delivered", "expected", "intact") if rec.get(k) is not None]
        print(f"[{rec['workload']}] {rec['mta']:11s} round {rec['round']}: " +
              " ".join(f"{k}={rec[k]:.3f}" if isinstance(rec[k], float) else f"{k}={rec[k]}"
                       for k in keys) + (f" ERROR {rec['error'][-300:]}" if rec.get("error") else ""),
              flush=True)

    meta = dict(kind="meta", smoke=a.smoke, rounds=a.rounds, port=port,
                params=SMOKE if a.smoke else FULL, dmars=DMARS, dma=DEB_DMA,
                started=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    out.write(json.dumps(meta) + "\n")
    try:
        for w in workloads:
            _, delay, limit, rtt = RELAY.get(w, (None, 0.0, 0, 0))
            ctl(ctl_path, f"SET delay={delay} max={limit} rtt={rtt}")
            rounds = a.rounds
            qs_rounds = 1
            if w == "queue_scale":  # build the big queue once, measure `rounds` times
                rounds, qs_rounds = 1, a.rounds
            for rnd in range(1, rounds + 1):
                order = MTAS if rnd % 2 else MTAS[::-1]
                for mta in order:
                    emit(run_one(a, w, mta, rnd, port, ctl_path, closed, qs_rounds))
                if w in RELAY and not RELAY[w][0] and MSMTP:
                    emit(run_one(a, w, "msmtp", rnd, port, ctl_path, closed, qs_rounds))
                if w in RELAY:
                    emit(run_source(a, w, rnd, port, ctl_path))
            ctl(ctl_path, "SET delay=0 max=0 rtt=0")
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait()
        shutil.rmtree(ctl_dir, ignore_errors=True)
        out.close()


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "inner":
        return inner(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    outer(ap.parse_args())


if __name__ == "__main__":
    main()
