#!/usr/bin/env python3
"""dma-rs vs Debian dma benchmark driver (see bench/run.sh and BENCHMARKS.md).

outer mode (default): measures the floor (what exec, a durable queue entry
and a durable mbox append cost on this machine: one `kind: floor` line),
starts the loopback sink, runs every workload for N rounds alternating the
two MTAs (the order swaps every round), each run in a fresh temporary
directory and a private mount + pid namespace, and appends one JSON line
per run to the results file. Where it applies (relay without a queue: the
relay_immediate rows) msmtp runs too, if installed, and smtp-source (no
queue, no MTA) gives the reference for every relay row.

Both MTAs run as installed, set-id, with their system configuration at
the compiled-in path (bind-mounted in the run's namespace): dma-rs's
`dma` 2755 root:mail with `dma-local` 4750 root:mail at LIBEXEC_DIR and
/etc/dma/dma.conf; Debian's dma 2755 root:mail with dma-mbox-create 4754
root:mail at /usr/lib/dma, /etc/dma, /var/spool/dma and /var/mail.
Submissions run as an ordinary user (benchsend) unless `--submitter root`;
queue runs (`-q`) run as root, as cron runs them. `--with-C` adds the old
`dma-rs-C` kind: the build's binary with `-C`, as root, never set-id.

inner mode (`bench.py inner SPEC`): runs one workload for one MTA inside the
namespace. Being pid 1 of the namespace, it reaps every orphan (dma's
detached delivery processes, dma-rs's runners); the run's cgroup (made by
the outer mode where the machine allows) gives the CPU time of every MTA
process of the run; when it exits every leftover process of the run is
killed by the kernel.
"""
import argparse
import glob
import grp
import json
import os
import pwd
import random
import re
import resource
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
# the helper installed next to the set-group-id dma (the build's own by default)
DMARS_LOCAL = os.environ.get("DMARS_LOCAL", os.path.join(os.path.dirname(DMARS), "dma-local"))
# where a set-id dma-rs looks for dma-local (LIBEXEC_DIR in src/context.rs)
LIBEXEC = os.environ.get("DMARS_LIBEXEC", "/usr/local/libexec/dma-rs")
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
            queue_n=100_000, timeout=120, slow_timeout=45, floor_n=500)
SMOKE = dict(n=3, rcpts=2, size=1024, local_n=3, lat_n=5, mem_mb=1,
             queue_n=100, timeout=20, slow_timeout=10, floor_n=20)

RELAY = {
    # name: (queued?, delay, max sessions per client, delay per round trip?)
    # "_20ms": 20 ms before every reply (a slow server); "_rtt20": 20 ms per
    # round trip (a server 20 ms away: pipelined replies come together).
    "relay_immediate": (False, 0.0, 0, 0),
    "relay_immediate_1": (False, 0.0, 0, 0),
    "relay_queued": (True, 0.0, 0, 0),
    "relay_immediate_20ms": (False, 0.02, 0, 0),
    "relay_queued_20ms": (True, 0.02, 0, 0),
    "relay_immediate_rtt20": (False, 0.02, 0, 1),
    "relay_queued_rtt20": (True, 0.02, 0, 1),
    "relay_immediate_limit10": (False, 0.0, 10, 0),
    "relay_queued_limit10": (True, 0.0, 10, 0),
}
# relay workloads whose recipient count is not `rcpts`
RCPTS = {"relay_immediate_1": 1}
# local workloads: name -> (queued first, then one -q?, number of users)
LOCAL = {"local_one": (False, 1), "local_50": (False, 50),
         "local_queued": (True, 1), "local_queued_50": (True, 50)}
WORKLOADS = list(RELAY) + list(LOCAL) + ["latency", "memory", "queue_scale"]
MTAS = ["dma-rs", "dma"]
SUBMITTER = "benchsend"  # bench/setup.sh: no home, nologin, no groups but its own


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

def children_cpu():
    """User + system seconds of every reaped child (and their reaped children)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# CPU accounting. RUSAGE_CHILDREN of pid 1 misses every process whose parent
# ignored SIGCHLD (the kernel frees it without adding its times to anyone's):
# dma's queue runs and multi-recipient deliveries fork one such process per
# item. So each run gets a cgroup of its own when the machine lets us make
# one (cgroup v2 `cpu.stat` usage_usec, or v1 `cpuacct.usage`), which counts
# every process in it however it ends; RUSAGE_CHILDREN is the fallback.
CGROUP_BASES = (("cgroup2", "/sys/fs/cgroup"), ("cgroup2", "/sys/fs/cgroup/unified"),
                ("cpuacct", "/sys/fs/cgroup/cpuacct"))


def cg_create(name):
    """Makes an empty cgroup to account one run's CPU: {kind, path}, or None."""
    for kind, base in CGROUP_BASES:
        probe = "cpu.stat" if kind == "cgroup2" else "cpuacct.usage"
        if kind == "cgroup2" and not os.path.exists(os.path.join(base, "cgroup.controllers")):
            continue
        if not os.path.isdir(base):
            continue
        path = os.path.join(base, name)
        try:
            os.mkdir(path)
        except OSError:
            continue
        if os.path.exists(os.path.join(path, probe)):
            return dict(kind=kind, path=path)
        cg_remove(dict(kind=kind, path=path))
    return None


def cg_remove(cg):
    """Removes a run's cgroup (empty once the namespace is gone); best effort."""
    for _ in range(50):
        try:
            os.rmdir(cg["path"])
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # the last process is still leaving


def cg_usage(cg):
    """CPU seconds of every process that ran in the cgroup."""
    if cg["kind"] == "cgroup2":
        with open(os.path.join(cg["path"], "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
        raise RuntimeError(f"{cg['path']}/cpu.stat: no usage_usec")
    with open(os.path.join(cg["path"], "cpuacct.usage")) as f:
        return int(f.read()) / 1e9


def self_cpu():
    """Our own CPU (every thread), to take out of the cgroup's figure."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def submitter_env(pw):
    """The environment of a login shell of `pw`, nothing of ours."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pw.pw_dir, "USER": pw.pw_name,
            "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell, "LANG": "C.UTF-8"}


def build_timer(dest_dir):
    """Compiles bench/spawn.c (times a run from a small process, not from
    Python) into dest_dir; None, and Python's own timing, without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    exe = os.path.join(dest_dir, "spawn")
    p = subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "spawn.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        print(f"bench.py: cc spawn.c failed, timing from Python: {p.stdout[-300:]!r}",
              file=sys.stderr)
        return None
    os.chmod(dest_dir, 0o755)
    os.chmod(exe, 0o755)
    return exe


class Spawned:
    """One finished child: exit code, output, wall seconds, CPU seconds (its own
    and its waited-for descendants', from wait4), the timer's own CPU seconds
    (bench/spawn.c: counted by the namespace, not the MTA's), and whether it
    was killed at its timeout."""

    def __init__(self, returncode, stdout, stderr, seconds, cpu, killed, overhead=0.0):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.seconds, self.cpu, self.killed = seconds, cpu, killed
        self.overhead = overhead


def spawn(argv, stdin=b"", user=None, stdin_path=None, timeout=600, timer=None):
    """Runs argv as `user` (a pwd entry; None: as we are, root), stdin from
    bytes through a pipe (as a program piping into sendmail) or from a file.
    With `timer` (bench/spawn.c built), that small program switches to the
    user, starts argv and reports its wall time from posix_spawn to wait4 and
    its CPU; without, it is timed here from fork to the end of wait4 (Python's
    fork, and the user switch without vfork, included). Output goes to files,
    so a child that writes much never blocks on us. The timeout kills the
    child we started (with a timer: the timer, not the program), so give
    the runs that may hit it (queue runs) no timer."""
    kw = {}
    if timer:
        res = tempfile.TemporaryFile()
        uid, gid = (user.pw_uid, user.pw_gid) if user else (-1, -1)
        argv = [timer, str(res.fileno()), str(uid), str(gid), "--"] + list(argv)
        kw = dict(pass_fds=(res.fileno(),), cwd="/",
                  env=submitter_env(user or pwd.getpwuid(0)))
    elif user is not None:
        kw = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                  env=submitter_env(user), cwd="/")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        src = open(stdin_path, "rb") if stdin_path else subprocess.PIPE
        t = time.monotonic()
        p = subprocess.Popen(argv, stdin=src, stdout=out, stderr=err, **kw)
        killed = []
        killer = threading.Timer(timeout, lambda: (killed.append(1), p.kill()))
        killer.start()
        if stdin_path:
            src.close()
        else:
            try:
                p.stdin.write(stdin)
            except BrokenPipeError:
                pass
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.monotonic() - t
        killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu, overhead = ru.ru_utime + ru.ru_stime, 0.0
        if timer:
            res.seek(0)
            line = res.read().split()
            res.close()
            if len(line) == 3:
                secs = int(line[0]) / 1e9
                overhead = int(line[2]) / 1e6
                cpu = int(line[1]) / 1e6
        return Spawned(p.returncode, out.read(), err.read(), secs, cpu, bool(killed),
                       overhead)


class Mta:
    """One MTA as installed in this namespace; `run` submits as the
    submitter and records each submission's time and CPU, `run(..., root=True)`
    runs as root (queue runs, as cron does)."""

    def __init__(self, spec):
        self.spec = spec
        self.kind = spec["mta"]
        self.tmp = spec["tmp"]
        s = spec["submitter"]
        self.user = None if s == "root" else pwd.getpwnam(s)
        self.sub_s, self.sub_cpu = [], []  # per submission: wall, CPU seconds
        self.timer = spec.get("timer")
        self.overhead = 0.0  # the timer's own CPU, counted in RUSAGE_CHILDREN
        self.cg = spec.get("cgroup")
        if self.kind == "dma":
            self.spool = "/var/spool/dma"
            self.mail = "/var/mail"
            self.conf = "/etc/dma/dma.conf"
            self.bin = os.path.join(self.tmp, "dma-sbin/sendmail")
        elif self.kind == "dma-rs":
            self.spool = os.path.join(self.tmp, "spool")
            self.mail = os.path.join(self.tmp, "mail")
            self.conf = os.path.join(self.tmp, "etc-dma/dma.conf")  # = /etc/dma/dma.conf here
            self.bin = os.path.join(self.tmp, "sbin/sendmail")
        else:  # msmtp (no queue), or dma-rs-C: the build's binary, -C, as root
            self.spool = os.path.join(self.tmp, "spool")
            self.mail = os.path.join(self.tmp, "mail")
            self.conf = os.path.join(self.tmp, "dma.conf")
            self.bin = DMARS
            if self.kind == "dma-rs-C":
                self.user = None

    def cpu(self):
        """CPU seconds the MTA's processes used so far in this run: the
        run's cgroup without us and the timer, or (no cgroup) the reaped
        children without the timer."""
        if self.cg:
            return cg_usage(self.cg) - self_cpu() - self.overhead
        return children_cpu() - self.overhead

    def write_conf(self, defer, port=None, size_limit=None):
        port = port or self.spec["port"]
        if self.kind == "msmtp":
            return  # everything on its command line
        lines = ["SMARTHOST 127.0.0.1", f"PORT {port}", f"MAILNAME {MAILNAME}"]
        if self.kind.startswith("dma-rs"):
            lines += [f"SPOOLDIR {self.spool}", f"MAILSPOOL {self.mail}",
                      f"ALIASES {self.tmp}/aliases", "NAMESERVER 127.0.0.1:9"]
            if size_limit is not None:  # dma has none: ours defaults to 50M
                lines.append(f"MESSAGE_SIZE_LIMIT {size_limit}")
        if defer:
            lines.append("DEFER")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        if self.kind == "dma":  # as Debian's postinst installs it
            os.chown(self.conf, 0, grp.getgrnam("mail").gr_gid)
            os.chmod(self.conf, 0o640)
        else:  # as tests/support/installed.rs (and `make install`) leave it
            os.chmod(self.conf, 0o644)

    def argv(self, *args):
        if self.kind == "msmtp":
            # no configuration file; the sink, plain text, no AUTH
            rcpts = [a for a in args if not a.startswith("-") and a != SENDER]
            return [MSMTP, "-C", "/dev/null", "--host=127.0.0.1", f"--port={self.spec['port']}",
                    f"--from={SENDER}", f"--domain={MAILNAME}", "--auth=off", "--tls=off",
                    "--"] + rcpts
        if self.kind == "dma":
            # dma ignores -o options; DEFER in dma.conf decides queue-only
            return [self.bin] + [a for a in args if not a.startswith("-od")]
        if self.kind == "dma-rs-C":
            return [DMARS, "-C", self.conf] + list(args)
        return [self.bin] + list(args)

    def submit_all(self, items, check=True, seconds=0):
        """Submits every (args, message) of `items` one after the other as
        the submitter, as a shell loop would: with the timer, one
        `spawn --list` runs them all (no Python between two submissions);
        without, one `run` each. Stops starting submissions after `seconds`
        (0: never); returns how many were made."""
        if not self.timer:
            t0 = time.monotonic()
            for k, (args, msg) in enumerate(items):
                if seconds and time.monotonic() - t0 > seconds:
                    return k
                self.run(args, msg, check=check)
            return len(items)
        d = tempfile.mkdtemp(prefix="in-", dir=self.tmp)
        os.chmod(d, 0o755)
        lines = []
        for k, (args, msg) in enumerate(items):
            path = os.path.join(d, str(k))
            with open(path, "wb") as f:
                f.write(msg)
            os.chmod(path, 0o644)
            argv = self.argv(*args)
            if any("\t" in a or "\n" in a for a in argv):
                raise RuntimeError(f"argument with a tab or newline: {argv!r}")
            lines.append("\t".join([path] + argv))
        listing = os.path.join(d, "list")
        with open(listing, "w") as f:
            f.write("\n".join(lines) + "\n")
        uid, gid = (self.user.pw_uid, self.user.pw_gid) if self.user else (-1, -1)
        with tempfile.TemporaryFile() as res, tempfile.TemporaryFile() as out:
            cmd = [self.timer, str(res.fileno()), str(uid), str(gid), "--list", listing]
            if seconds:
                cmd.append(str(seconds))
            p = subprocess.run(cmd, pass_fds=(res.fileno(),), cwd="/", stdout=out,
                               stderr=out, stdin=subprocess.DEVNULL,
                               env=submitter_env(self.user or pwd.getpwuid(0)))
            reap()
            res.seek(0)
            rows = res.read().decode().split("\n")
            out.seek(0)
            said = out.read()[-500:]
        made = 0
        for row in rows:
            w = row.split()
            if len(w) == 2 and w[0] == "end":
                self.overhead += int(w[1]) / 1e6
            elif len(w) == 3:
                made += 1
                self.sub_s.append(int(w[0]) / 1e9)
                self.sub_cpu.append(int(w[1]) / 1e6)
                if check and w[2] != "0":
                    raise RuntimeError(f"{self.kind}: submission {made} exit {w[2]}: {said!r}")
        if p.returncode != 0:
            raise RuntimeError(f"spawn --list exit {p.returncode}: {said!r}")
        shutil.rmtree(d, ignore_errors=True)
        return made

    def run(self, args, stdin=b"", check=True, timeout=600, root=False, stdin_path=None,
            prefix=()):
        """Runs the MTA with `args`; as root (`root`) or the submitter, whose
        runs are recorded as submissions."""
        p = spawn(list(prefix) + self.argv(*args), stdin, None if root else self.user,
                  stdin_path, timeout, None if root else self.timer)
        reap()
        self.overhead += p.overhead
        if not root:
            self.sub_s.append(p.seconds)
            self.sub_cpu.append(p.cpu)
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


def others():
    """The processes of this pid namespace but us (we are pid 1): the MTA's."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def wait_quiet(timeout):
    """Waits (reaping) until no other process is left: dma-rs's runner waits
    a second for more mail, dma's detached deliverers end after their
    delivery. Returns the number still running at the timeout."""
    wait_for(lambda: not others(), timeout, 0.02)
    return len(others())


def inner_relay(m, spec, P):
    queued, _, _, _ = RELAY[spec["workload"]]
    n, r, size = P["n"], RCPTS.get(spec["workload"], P["rcpts"]), P["size"]
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
    res = dict(expected=expect, messages=n)
    t0 = time.monotonic()
    c0 = m.cpu()
    # A queue-less client (msmtp) delivers while it submits: it stops at
    # the timeout like every other run, and what got through is counted.
    made = m.submit_all([(["-f", SENDER] + (["-odq"] if queued else []) + rcpts, msgs[i])
                         for i in range(n)], check=m.kind != "msmtp", seconds=timeout)
    if made < n:
        res["submit_stopped_at"] = made
        res["messages"] = made
    t_sub = time.monotonic()
    res["submit_s"] = t_sub - t0
    # everything reaped meanwhile, runners included, but the timer's own CPU
    res["submit_window_cpu_s"] = m.cpu() - c0
    if queued:
        # the clock for the queued workload covers the queue run only
        if m.queued() != (n if m.kind.startswith("dma-rs") else n * r):
            raise RuntimeError(f"expected everything queued, found {m.queued()} files")
        ctl(sock, "RESET")
        wait_quiet(5)
        res["run_cpu0"] = m.cpu()
        t0 = time.monotonic()
        p = m.run(["-q"], check=False, timeout=timeout, root=True)
        if p.killed:  # killed; count what got through
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
    # the sink saw every recipient exactly once (more: a duplicate)
    res["sink_ok"] = st["rcpts"] == expect if done else st["rcpts"] <= expect
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
    queued, nusers = LOCAL[spec["workload"]]
    n, size = P["local_n"], 2048
    users = ["benchuser"] if nusers == 1 else [f"bench{i:02d}" for i in range(1, nusers + 1)]
    if spec["smoke"] and len(users) > 1:
        users = users[:3]
    m.write_conf(defer=queued)
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
    c0 = m.cpu()
    m.submit_all([(["-f", SENDER] + (["-odq"] if queued else []) + [u], msg)
                  for u, msg in plan])
    res = dict(submit_s=time.monotonic() - t0, expected=n, users=len(users), messages=n,
               submit_window_cpu_s=m.cpu() - c0)
    if queued:
        # the clock covers the queue run only, as for relay_queued
        if m.queued() != n:
            raise RuntimeError(f"expected {n} messages queued, found {m.queued()}")
        wait_quiet(5)
        res["run_cpu0"] = m.cpu()
        t0 = time.monotonic()
        p = m.run(["-q"], check=False, timeout=P["timeout"], root=True)
        res["q_exit_s"] = time.monotonic() - t0
        res["q_rc"] = p.returncode
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
    m.submit_all([(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], msg)] * n)
    lat = m.sub_s
    return dict(p50_ms=pct(lat, 50) * 1e3, p99_ms=pct(lat, 99) * 1e3,
                mean_ms=statistics.mean(lat) * 1e3, expected=n, queued=m.queued(),
                complete=m.queued() == n, messages=n)


def time_v(m, args, stdin_path, root=False):
    p = m.run(args, check=False, root=root, stdin_path=stdin_path,
              prefix=["/usr/bin/time", "-v"])
    mm = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    err = p.stderr.split(b"\tCommand being timed")[0].decode(errors="replace").strip()
    return p.returncode, int(mm.group(1)) if mm else None, err[-500:]


def inner_memory(m, spec, P):
    size = P["mem_mb"] * 1024 * 1024
    path = os.path.join(spec["tmp"], "big.msg")
    with open(path, "wb") as f:
        f.write(message(f"{spec['tag']}-big", 0))
        line = b"x" * 75 + b"\n"
        f.write(line * (size // len(line)))
    os.chmod(path, 0o644)
    m.write_conf(defer=True, size_limit="0")
    sock = spec["ctl"]
    res = dict(messages=1)
    s = RssSampler()
    s.start()
    t0 = time.monotonic()
    rc, kb, err = time_v(m, ["-f", SENDER, "-odq", f"r@{RDOMAIN}"], path)
    time.sleep(0.05)
    if rc != 0:
        res["intake_error"] = err
    res.update(intake_rc=rc, intake_time_v_kb=kb, intake_s=time.monotonic() - t0,
               intake_peak_kb=max(kb or 0, s.peak_kb))
    s.stop = True
    s.join()
    ctl(sock, "RESET")
    s = RssSampler()
    s.start()
    t0 = time.monotonic()
    rc, kb, err = time_v(m, ["-q"], "/dev/null", root=True)
    if rc != 0:
        res["relay_error"] = err
    done = wait_for(lambda: ctl(sock, "STAT")["rcpts"] >= 1 and m.queued() == 0,
                    P["timeout"], 0.02)
    s.stop = True
    s.join()
    res.update(relay_rc=rc, relay_time_v_kb=kb, relay_s=time.monotonic() - t0,
               relay_peak_kb=max(kb or 0, s.peak_kb), complete=done and rc == 0,
               sink_bytes=ctl(sock, "STAT")["bytes"])
    return res


def clone(template, path, content):
    """Writes a queue file with the owner and mode of `template`."""
    st = os.stat(template)
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)


def make_queue(m, n):
    """Queues one template message, then clones it n-1 times (deferred, due in 1 h)."""
    m.write_conf(defer=True)
    m.run(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], message("qs-template", 1024))
    rng = random.Random(1)
    if m.kind.startswith("dma-rs"):
        envs = glob.glob(os.path.join(m.spool, "*.env"))
        tid = os.path.basename(envs[0])[:-4]
        tmsg = os.path.join(m.spool, tid + ".msg")
        env = open(envs[0]).read()
        data = open(tmsg, "rb").read()
        future = int(time.time()) + 3600
        env = env.replace("state pending\n",
                          f"state deferred\nattempts 1\nnext-try {future}\n"
                          "reply 4.4.1%20connection%20refused\n")
        assert "state deferred" in env, env
        secs = int(time.time())
        for i in range(n):
            nid = f"{(secs - i) & 0xffffffff:08x}{rng.getrandbits(32):08x}"
            clone(tmsg, os.path.join(m.spool, nid + ".msg"), data)
            clone(envs[0], os.path.join(m.spool, nid + ".env"),
                  env.replace(f"id {tid}\n", f"id {nid}\n").encode())
        os.unlink(tmsg)
        os.unlink(envs[0])
    else:
        qs = glob.glob(os.path.join(m.spool, "Q*"))
        tid = os.path.basename(qs[0])[1:]
        q = open(qs[0]).read()
        tm = os.path.join(m.spool, "M" + tid)
        data = open(tm, "rb").read()
        for i in range(n):
            nid = f"{1000000 + i}.{rng.getrandbits(48):012x}"
            clone(tm, os.path.join(m.spool, "M" + nid), data)
            clone(qs[0], os.path.join(m.spool, "Q" + nid),
                  q.replace(f"ID: {tid}", f"ID: {nid}").encode())
        os.unlink(qs[0])
        os.unlink(tm)
    return m.queued()


def inner_queue_scale(m, spec, P):
    n = P["queue_n"]
    t = time.monotonic()
    have = make_queue(m, n)
    res = dict(expected=n, queued=have, build_s=time.monotonic() - t, rounds=[])
    closed = spec["closed_port"]
    for _ in range(spec["qs_rounds"]):
        r = {}
        # mailq as the submitter: what an ordinary user runs
        p = m.run(["-bp"], check=False)
        r["mailq_s"] = p.seconds
        r["mailq_rc"] = p.returncode
        r["mailq_lines"] = p.stdout.count(b"\n")
        if m.kind.startswith("dma-rs"):
            # nothing is due: a -q5m run (root, as cron) must find that out and deliver nothing
            m.write_conf(defer=True, port=closed)
            p = m.run(["-q5m"], check=False, root=True)
            r["q5m_s"] = p.seconds
            r["q5m_rc"] = p.returncode
        m.write_conf(defer=True, port=closed)
        p = m.run(["-f", SENDER, "-odq", f"r@{RDOMAIN}"], message("qs-extra", 1024))
        r["intake_s"] = p.seconds
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
    c0 = m.cpu()
    if w in RELAY:
        res = inner_relay(m, spec, P)
    elif w in LOCAL:
        res = inner_local(m, spec, P)
    elif w == "latency":
        res = inner_latency(m, spec, P)
    elif w == "memory":
        res = inner_memory(m, spec, P)
    elif w == "queue_scale":
        res = inner_queue_scale(m, spec, P)
    else:
        raise SystemExit(f"unknown workload {w}")
    # CPU: once every MTA process is gone (and reaped by us, pid 1), the
    # children's usage is all of theirs; an unfinished run (dma sleeping
    # in-process against the session limit) is cut short and says so.
    res["lingering"] = wait_quiet(3 if res.get("complete") is False else 15)
    total = m.cpu() - c0
    res["cpu_method"] = m.cg["kind"] if m.cg else "rusage"
    res["cpu_s"] = total
    if res.get("lingering"):
        res["cpu_partial"] = True
    run0 = res.pop("run_cpu0", None)
    if run0 is not None:
        res["run_cpu_s"] = m.cpu() - run0
    if m.sub_s:
        res.update(sub_n=len(m.sub_s), sub_p50_ms=pct(m.sub_s, 50) * 1e3,
                   sub_p99_ms=pct(m.sub_s, 99) * 1e3, sub_cpu_s=sum(m.sub_cpu))
    msgs = res.get("messages")
    if msgs:
        res["cpu_per_msg_s"] = total / msgs
        if m.sub_cpu:
            res["sub_cpu_per_msg_s"] = sum(m.sub_cpu) / len(m.sub_cpu)
        if run0 is not None:
            res["run_cpu_per_msg_s"] = res["run_cpu_s"] / msgs
    with open(spec["result"], "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------- outer

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def install(src, dst, mode):
    """Copies a program owned root:mail with `mode` (set-id bits included),
    as the package or `make install` leaves it, and checks the result."""
    mail = grp.getgrnam("mail").gr_gid
    shutil.copyfile(src, dst)
    os.chown(dst, 0, mail)
    os.chmod(dst, mode)  # after chown, which clears set-id bits
    st = os.stat(dst)
    if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, mail, mode):
        raise SystemExit(f"bench.py: {dst}: could not install as root:mail {mode:o}")


def nosuid(path):
    """Whether the file system holding `path` ignores set-id bits."""
    o = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", "-T", path],
                       stdout=subprocess.PIPE, text=True).stdout.strip()
    return "nosuid" in o.split(",")


def run_one(a, workload, mta, rnd, port, ctl_path, closed_port, qs_rounds):
    tmp = tempfile.mkdtemp(prefix=f"dmabench-{mta}-")
    os.chmod(tmp, 0o755)  # the submitter reaches the installed programs
    mail = grp.getgrnam("mail").gr_gid
    for d, mode in (("spool", 0o2770), ("mail", 0o2775), ("etc-dma", 0o755)):
        os.mkdir(os.path.join(tmp, d))
        os.chown(os.path.join(tmp, d), 0, mail)
        os.chmod(os.path.join(tmp, d), mode)
    open(os.path.join(tmp, "aliases"), "w").close()
    os.chmod(os.path.join(tmp, "aliases"), 0o644)
    submitter = "root" if mta == "dma-rs-C" else a.submitter
    cg = cg_create(os.path.basename(tmp)) if a.cgroup else None
    spec = dict(mta=mta, workload=workload, tmp=tmp, port=port, ctl=ctl_path,
                smoke=a.smoke, tag=f"{workload}-{mta}-{rnd}",
                result=os.path.join(tmp, "result.json"), closed_port=closed_port,
                qs_rounds=qs_rounds, submitter=submitter, timer=a.timer, cgroup=cg)
    sp = os.path.join(tmp, "spec.json")
    json.dump(spec, open(sp, "w"))
    py = f"exec {sys.executable} {os.path.abspath(__file__)} inner {sp}"
    if mta == "dma":
        # Debian's layout: /usr/sbin/dma 2755 root:mail (here run from $TMP),
        # /usr/lib/dma/dma-mbox-create 4754 root:mail (the path dma has compiled in)
        for d in ("dma-sbin", "dma-lib"):
            os.mkdir(os.path.join(tmp, d), 0o755)
        install(DEB_DMA, os.path.join(tmp, "dma-sbin/dma"), 0o2755)
        os.symlink("dma", os.path.join(tmp, "dma-sbin/sendmail"))
        install(os.path.join(DEB_DMA_LIB, "dma-mbox-create"),
                os.path.join(tmp, "dma-lib/dma-mbox-create"), 0o4754)
        for d in ("/var/spool/dma", "/usr/lib/dma", "/etc/dma"):
            os.makedirs(d, exist_ok=True)  # empty mount points only
        sh = (f"mount --bind {tmp}/etc-dma /etc/dma && mount --bind {tmp}/spool /var/spool/dma"
              f" && mount --bind {tmp}/mail /var/mail && mount --bind {tmp}/dma-lib /usr/lib/dma"
              f" && {py}")
    elif mta == "dma-rs":
        # as tests/support/installed.rs: dma 2755 root:mail (sendmail -> dma),
        # dma-local 4750 root:mail at LIBEXEC_DIR, the config at /etc/dma
        for d in ("sbin", "libexec"):
            os.mkdir(os.path.join(tmp, d), 0o755)
        install(DMARS, os.path.join(tmp, "sbin/dma"), 0o2755)
        os.symlink("dma", os.path.join(tmp, "sbin/sendmail"))
        install(DMARS_LOCAL, os.path.join(tmp, "libexec/dma-local"), 0o4750)
        for d in (LIBEXEC, "/etc/dma"):
            os.makedirs(d, exist_ok=True)  # empty mount points only
        sh = (f"mount --bind {tmp}/etc-dma /etc/dma && mount --bind {tmp}/libexec {LIBEXEC}"
              f" && {py}")
    else:  # dma-rs-C: -C as root, the build's binary as is
        sh = py
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
           "--mount-proc", "sh", "-c", sh]
    def join_cgroup():
        with open(os.path.join(cg["path"], "cgroup.procs" if cg["kind"] == "cgroup2"
                               else "tasks"), "w") as f:
            f.write(str(os.getpid()))

    load = os.getloadavg()[0]  # other work on the machine skews a run: say how much there was
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=join_cgroup if cg else None)
    finally:
        if cg:
            cg_remove(cg)
    wall = time.monotonic() - t
    try:
        res = json.load(open(spec["result"]))
        err = None
    except (OSError, ValueError):
        res, err = {}, p.stderr.decode(errors="replace")[-2000:]
    rec = dict(workload=workload, mta=mta, round=rnd, wall_s=wall, rc=p.returncode,
               loadavg=load, **res)
    if err or p.returncode != 0:
        rec["error"] = err or p.stderr.decode(errors="replace")[-2000:]
        rec["complete"] = False
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


def run_source(a, workload, rnd, port, ctl_path):
    P = SMOKE if a.smoke else FULL
    n, r, size = P["n"], RCPTS.get(workload, P["rcpts"]), P["size"]
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


def floor(a):
    """What the machine allows, measured here the way the benchmark measures
    the MTAs (Python's own cost included: os.* calls and, for exec, the same
    spawn as a submission, user switch included):
    - exec: /bin/true run as the submitter, p50;
    - entry: one durable queue entry as a single file in the runs' file
      system: create, write 4 KiB, fdatasync, rename, fsync the directory;
    - append: a 2 KiB mbox append with its own fdatasync;
    - batched: 100 appends, then one fdatasync, per message."""
    n = (SMOKE if a.smoke else FULL)["floor_n"]
    user = None if a.submitter == "root" else pwd.getpwnam(a.submitter)
    ex = [spawn(["/bin/true"], b"", user, timer=a.timer).seconds for _ in range(n)]
    d = tempfile.mkdtemp(prefix="dmabench-floor-")
    try:
        block = b"x" * 4095 + b"\n"
        entry = []
        for i in range(n):
            t = time.monotonic()
            tmpname, final = os.path.join(d, f"t{i}"), os.path.join(d, f"q{i}")
            fd = os.open(tmpname, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            os.write(fd, block)
            os.fdatasync(fd)
            os.close(fd)
            os.rename(tmpname, final)
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
            entry.append(time.monotonic() - t)
        msg = message("floor", 2048)
        fd = os.open(os.path.join(d, "mbox"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        append = []
        for _ in range(n):
            t = time.monotonic()
            os.write(fd, msg)
            os.fdatasync(fd)
            append.append(time.monotonic() - t)
        batched = []
        for _ in range(max(3, n // 100)):
            t = time.monotonic()
            for _ in range(100):
                os.write(fd, msg)
            os.fdatasync(fd)
            batched.append((time.monotonic() - t) / 100)
        os.close(fd)
        fs = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", d],
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    r = dict(kind="floor", n=n, submitter=a.submitter, filesystem=fs,
             timer="bench/spawn.c" if a.timer else "python",
             exec_p50_ms=pct(ex, 50) * 1e3, exec_p99_ms=pct(ex, 99) * 1e3,
             entry_p50_ms=pct(entry, 50) * 1e3, entry_p99_ms=pct(entry, 99) * 1e3,
             append_sync_p50_ms=pct(append, 50) * 1e3,
             append_batched_ms=pct(batched, 50) * 1e3)
    r["submit_floor_ms"] = r["exec_p50_ms"] + r["entry_p50_ms"]
    return r


def outer(a):
    if os.geteuid() != 0:
        raise SystemExit("bench.py: must run as root")
    for p in (DMARS, DMARS_LOCAL, DEB_DMA, SMTP_SOURCE):
        if not os.path.exists(p):
            raise SystemExit(f"bench.py: missing {p} (run bench/setup.sh; build dma-rs)")
    if a.submitter != "root":
        try:
            pwd.getpwnam(a.submitter)
        except KeyError:
            raise SystemExit(f"bench.py: no user {a.submitter} (run bench/setup.sh)")
    if nosuid(tempfile.gettempdir()):
        raise SystemExit(f"bench.py: {tempfile.gettempdir()} is mounted nosuid: the installed "
                         "set-id programs would run without their privileges; set TMPDIR to a "
                         "directory on a file system without nosuid")
    workloads = WORKLOADS if not a.only else a.only.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"unknown workload {w}; one of {', '.join(WORKLOADS)}")
    port, closed = free_port(), free_port()
    ctl_dir = tempfile.mkdtemp(prefix="dmabench-sink-")
    a.timer = build_timer(ctl_dir)
    ctl_path = os.path.join(ctl_dir, "ctl.sock")
    sink = subprocess.Popen([sys.executable, os.path.join(HERE, "sink.py"), "--port",
                             str(port), "--control", ctl_path],
                            stdout=subprocess.PIPE)
    assert sink.stdout.readline().strip() == b"ready"
    out = open(a.out, "a")

    def emit(rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()
        keys = [k for k in ("seconds", "msgs_per_s", "p50_ms", "p99_ms", "sub_p50_ms",
                            "cpu_per_msg_s", "intake_peak_kb",
                            "relay_peak_kb", "mailq_s", "q5m_s", "intake_s", "complete",
                            "delivered", "expected", "intact") if rec.get(k) is not None]
        print(f"[{rec['workload']}] {rec['mta']:11s} round {rec['round']}: " +
              " ".join(f"{k}={rec[k]:.3f}" if isinstance(rec[k], float) else f"{k}={rec[k]}"
                       for k in keys) + (f" ERROR {rec['error'][-300:]}" if rec.get("error") else ""),
              flush=True)

    mtas = MTAS + (["dma-rs-C"] if a.with_C else [])
    meta = dict(kind="meta", smoke=a.smoke, rounds=a.rounds, port=port,
                params=SMOKE if a.smoke else FULL, dmars=DMARS, dmars_local=DMARS_LOCAL,
                libexec=LIBEXEC, dma=DEB_DMA, submitter=a.submitter, mode="installed",
                timer="bench/spawn.c" if a.timer else "python",
                mtas=mtas, started=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    out.write(json.dumps(meta) + "\n")
    fl = floor(a)
    out.write(json.dumps(fl) + "\n")
    out.flush()
    print("[floor] " + " ".join(f"{k}={v:.3f}" for k, v in fl.items() if isinstance(v, float)),
          flush=True)
    try:
        for w in workloads:
            _, delay, limit, rtt = RELAY.get(w, (None, 0.0, 0, 0))
            ctl(ctl_path, f"SET delay={delay} max={limit} rtt={rtt}")
            rounds = a.rounds
            qs_rounds = 1
            if w == "queue_scale":  # build the big queue once, measure `rounds` times
                rounds, qs_rounds = 1, a.rounds
            for rnd in range(1, rounds + 1):
                order = mtas if rnd % 2 else mtas[::-1]
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
    ap.add_argument("--submitter", default=SUBMITTER,
                    help="who submits (default benchsend, an ordinary user; or root)")
    ap.add_argument("--no-cgroup", dest="cgroup", action="store_false",
                    help="count CPU with RUSAGE_CHILDREN only (misses dma's SIGCHLD-ignored children)")
    ap.add_argument("--with-C", dest="with_C", action="store_true",
                    help="also run dma-rs-C: the build's dma with -C as root (not set-id)")
    outer(ap.parse_args())


if __name__ == "__main__":
    main()
