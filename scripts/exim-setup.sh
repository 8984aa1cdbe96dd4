#!/bin/sh
# Unpacks Debian's exim (exim4-daemon-light) into /opt/dma-rs-test/exim, for
# the integration tests that use it as a smarthost on loopback
# (tests/support/exim.rs). Run as root; it is idempotent.
#
# exim is NOT installed as a package: it conflicts with other MTAs (and with
# us). The .deb is only downloaded (into /opt/dma-rs-test/debs) and unpacked
# with dpkg -x (scripts/unpack-deb.sh); the binary is
# /opt/dma-rs-test/exim/usr/sbin/exim4. What the unpacked binary still needs
# from the system is installed here:
#  - the shared libraries it links (ordinary library packages, taken from the
#    .deb's Depends and checked with ldd);
#  - the system user and group compiled into Debian's build (Debian-exim).
set -eu

ROOT=/opt/dma-rs-test
DEST="$ROOT/exim"
EXIM="$DEST/usr/sbin/exim4"
PKG=exim4-daemon-light
EXIM_USER=Debian-exim

if [ "$(id -u)" -ne 0 ]; then
    echo "exim-setup: not root; skipping (the exim tests will be skipped)" >&2
    exit 0
fi

# 1. The .deb, unpacked into $DEST, and the shared libraries it links.
"$(dirname "$0")/unpack-deb.sh" "$PKG" "$DEST" usr/sbin/exim4

# 2. The exim user and group compiled into Debian's build (exim looks them up
#    by name at start-up, and refuses to run without them).
if ! getent group "$EXIM_USER" >/dev/null; then
    groupadd --system "$EXIM_USER"
fi
if ! getent passwd "$EXIM_USER" >/dev/null; then
    useradd --system --gid "$EXIM_USER" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$EXIM_USER"
fi

# The version, which also proves that the binary runs (-C /dev/null: no
# system configuration is read).
if ! out=$("$EXIM" -C /dev/null -bV 2>&1); then
    echo "exim-setup: $EXIM -bV failed:" >&2
    echo "$out" >&2
    exit 1
fi
echo "$out" | grep '^Exim version'
