#!/usr/bin/env python3
"""The cost of one submission as installed: `sendmail rcpt < msg` with `dma`
set-group-id mail, DEFER (so it only queues), against the floor: a small C
program, installed set-group-id mail too, that writes its stdin as one
durable file in the same spool directory (write, fdatasync, rename,
directory fsync). The same directory matters: on ext4 the cost of a new
inode depends on how many were deleted near it lately.

Usage, as root:
    bench/submission.py [-n 500] [--user root,dmt-alice] NAME=PATH/TO/dma ...

Each NAME's dma is installed 2755 root:mail in one installation under
target/ (set-id bits need a file system without nosuid), with one spool and
one dma.conf bind-mounted at /etc/dma inside `unshare --mount`, as
tests/support/installed.rs does. The programs run round-robin, one
submission each in turn, so that the load of a shared machine falls on all
alike; for each user it prints p50, p25, min and the mean CPU time (user
and system, from the children's rusage) per submission.
"""

import argparse
import grp
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))

FLOOR_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char tmp[4096], fin[4096], buf[65536];
    snprintf(tmp, sizeof tmp, "%s/.%d.tmp", argv[1], (int)getpid());
    snprintf(fin, sizeof fin, "%s/%d", argv[1], (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0660);
    if (fd < 0) return 1;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) if (write(fd, buf, n) != n) return 1;
    if (fdatasync(fd) || rename(tmp, fin)) return 1;
    int d = open(argv[1], O_RDONLY);
    return d < 0 || fsync(d) ? 1 : 0;
}
"""

# Runs inside the namespace, as the user: the round-robin timing loop.
LOOP = r"""
import os, resource, subprocess, sys, tempfile, time
n = int(sys.argv[1]); floordir = sys.argv[2]; progs = sys.argv[3:]
fd, p = tempfile.mkstemp(); os.write(fd, b"Subject: bench\n\nhello\n"); os.close(fd)
ts = {s: [] for s in progs}; cpu = {s: [0.0, 0.0] for s in progs}
for i in range(n):
    for s in progs:
        argv = [s, floordir] if s.endswith("/floor") else [s, "bob@example.org"]
        with open(p, "rb") as f:
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter_ns()
            r = subprocess.run(argv, stdin=f, close_fds=False)
            ts[s].append((time.perf_counter_ns() - t) / 1e6)
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[s][0] += ru2.ru_utime - ru.ru_utime
            cpu[s][1] += ru2.ru_stime - ru.ru_stime
        if r.returncode:
            sys.exit("%s: exit %d" % (s, r.returncode))
os.unlink(p)
for s, v in ts.items():
    v.sort()
    print("  %-10s p50 %6.3f ms  p25 %6.3f  min %6.3f  cpu user %6.3f sys %6.3f ms" % (
        "floor" if s.endswith("/floor") else s.split("/")[-2], v[n // 2], v[n // 4], v[0],
        cpu[s][0] / n * 1e3, cpu[s][1] / n * 1e3))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--user", default="root,dmt-alice")
    ap.add_argument("programs", nargs="+", metavar="NAME=PATH")
    a = ap.parse_args()
    if os.getuid() != 0:
        sys.exit("submission.py: run as root")
    mail_gid = grp.getgrnam("mail").gr_gid
    root = tempfile.mkdtemp(prefix="submission-bench.", dir=TARGET)
    try:
        os.chmod(root, 0o755)
        for d in ("etc", "libexec", "spool", "mail"):
            os.mkdir(os.path.join(root, d), 0o755)
        spool = os.path.join(root, "spool")
        os.chown(spool, 0, mail_gid)
        os.chmod(spool, 0o2770)
        with open(os.path.join(root, "etc/dma.conf"), "w") as f:
            f.write("SPOOLDIR %s\nMAILSPOOL %s/mail\nALIASES %s/etc/aliases\n"
                    "MAILNAME example.test\nDEFER\n" % (spool, root, root))
        open(os.path.join(root, "etc/aliases"), "w").close()
        progs = []
        os.mkdir(os.path.join(root, "floor.bin"))
        src = os.path.join(root, "floor.c")
        with open(src, "w") as f:
            f.write(FLOOR_C)
        cc = subprocess.run(["cc", "-O2", "-o", os.path.join(root, "floor.bin/floor"), src])
        if cc.returncode == 0:
            floor = os.path.join(root, "floor.bin/floor")
            os.chown(floor, 0, mail_gid)
            os.chmod(floor, 0o2755)
            progs.append(floor)
        for spec in a.programs:
            name, path = spec.split("=", 1)
            os.mkdir(os.path.join(root, name), 0o755)
            dst = os.path.join(root, name, "sendmail")
            shutil.copy(path, dst)
            os.chown(dst, 0, mail_gid)
            os.chmod(dst, 0o2755)
            progs.append(dst)
        loop = os.path.join(root, "loop.py")
        with open(loop, "w") as f:
            f.write(LOOP)
        for user in a.user.split(","):
            print("as %s (%d submissions each, round-robin):" % (user, a.n), flush=True)
            inner = ["python3", loop, str(a.n), spool] + progs
            if user != "root":
                inner = ["runuser", "-u", user, "--"] + inner
            script = ('set -e; mount --bind "$0"/etc /etc/dma; '
                      'mount --bind "$0"/libexec /usr/local/libexec/dma-rs; exec "$@"')
            subprocess.run(["unshare", "--mount", "--propagation", "private",
                            "sh", "-c", script, root] + inner, check=True)
            for x in os.listdir(spool):
                if not x.startswith("."):
                    os.unlink(os.path.join(spool, x))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
