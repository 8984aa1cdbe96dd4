#!/bin/sh
# Idempotent setup for the dma-rs vs dma benchmark (run as root).
# - unpacks Debian's dma and postfix packages under /opt/dma-rs-bench (never installs them:
#   dma, postfix and exim4 conflict and the machine's MTA must stay untouched)
# - checks smtp-sink/smtp-source run from the unpacked tree
# - installs msmtp (the client only) for the rows where it applies
# - creates the local test users benchuser, bench01..bench50 (recipients) and
#   benchsend (the ordinary user who submits)
# - builds dma-rs (cargo build --release)
set -eu
BENCH_ROOT=${BENCH_ROOT:-/opt/dma-rs-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

if [ "$(id -u)" != 0 ]; then echo "setup.sh: must run as root" >&2; exit 1; fi
mkdir -p "$BENCH_ROOT/debs"
cd "$BENCH_ROOT/debs"
need_dl=0
for p in dma postfix; do ls ${p}_*.deb >/dev/null 2>&1 || need_dl=1; done
if [ $need_dl = 1 ]; then
    apt-get update -qq || true
    apt-get download dma postfix
fi
for p in dma postfix; do
    if [ ! -x "$BENCH_ROOT/$p/usr/sbin/$p" ] && [ ! -x "$BENCH_ROOT/$p/usr/sbin/smtp-sink" ]; then
        rm -rf "${BENCH_ROOT:?}/$p"; mkdir -p "$BENCH_ROOT/$p"
        dpkg-deb -x ${p}_*.deb "$BENCH_ROOT/$p"
    fi
done
PF="$BENCH_ROOT/postfix"
export LD_LIBRARY_PATH="$PF/usr/lib/postfix"
# Missing shared libraries (outside the package's own libpostfix-*): install the library packages.
missing=$( (ldd "$PF/usr/sbin/smtp-source"; ldd "$PF/usr/sbin/smtp-sink"; ldd "$BENCH_ROOT/dma/usr/sbin/dma") | awk '/not found/{print $1}' | sort -u)
if [ -n "$missing" ]; then
    echo "setup.sh: missing libraries: $missing" >&2
    for l in $missing; do
        pkg=$(apt-file search -l "$l" 2>/dev/null | grep '^lib' | head -1 || true)
        [ -n "$pkg" ] && apt-get install -y --no-install-recommends "$pkg"
    done
fi
# smoke: smtp-source/-sink print usage (exit 1) when run without arguments
"$PF/usr/sbin/smtp-source" 2>&1 | grep -q usage || { echo "smtp-source does not run" >&2; exit 1; }
"$PF/usr/sbin/smtp-sink" 2>&1 | grep -q usage || { echo "smtp-sink does not run" >&2; exit 1; }
cat > "$BENCH_ROOT/env.sh" <<EOT
BENCH_ROOT=$BENCH_ROOT
DEB_DMA=$BENCH_ROOT/dma/usr/sbin/dma
DEB_DMA_LIBDIR=$BENCH_ROOT/dma/usr/lib/dma
SMTP_SOURCE=$PF/usr/sbin/smtp-source
SMTP_SINK=$PF/usr/sbin/smtp-sink
POSTFIX_LIBDIR=$PF/usr/lib/postfix
EOT
command -v /usr/bin/time >/dev/null || apt-get install -y time
# msmtp (the client, not msmtp-mta: no MTA conflict), compared where it applies
command -v msmtp >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends msmtp \
    || echo "setup.sh: msmtp not installed: its columns are left out" >&2
command -v unshare >/dev/null || { echo "need unshare (util-linux)" >&2; exit 1; }

# test users (no home, no login); benchsend submits, the others receive
for u in benchuser benchsend; do
    id "$u" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$u"
done
i=1
while [ $i -le 50 ]; do
    u=$(printf 'bench%02d' $i)
    id "$u" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$u"
    i=$((i+1))
done

# dma-rs release build (as the owner of the checkout, so target/ keeps its owner)
cd "$REPO"
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    owner=$(stat -c %U "$REPO")
    if [ "$owner" != root ] && command -v runuser >/dev/null; then
        runuser -u "$owner" -- sh -lc "cd '$REPO' && cargo build --release"
    else
        cargo build --release
    fi
fi
test -x "$REPO/target/release/dma" && test -x "$REPO/target/release/dma-local"
echo "setup.sh: ok ($BENCH_ROOT)"
