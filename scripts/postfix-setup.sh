#!/bin/sh
# Unpacks Debian's postfix into /opt/dma-rs-test/postfix, for the integration
# tests that use its smtpd as a second real smarthost on loopback
# (tests/support/postfix.rs). Run as root; it is idempotent.
#
# postfix is NOT installed as a package: it conflicts with other MTAs (and
# with us). The .deb is only downloaded (into /opt/dma-rs-test/debs) and
# unpacked with dpkg -x (scripts/unpack-deb.sh); the daemons are in
# /opt/dma-rs-test/postfix/usr/lib/postfix/sbin. Debian links them with
# RUNPATH /usr/lib/postfix for postfix's own libraries (libpostfix-*.so):
# the harness puts the unpacked copy of that directory on LD_LIBRARY_PATH
# (and lets master pass it on, import_environment). What the daemons still
# need from the system is installed here:
#  - the shared libraries they link (ordinary library packages, taken from
#    the .deb's Depends and checked with ldd);
#  - the users and groups postfix runs as (mail_owner postfix, and the
#    setgid_group postdrop, which master checks at start-up).
set -eu

ROOT=/opt/dma-rs-test
DEST="$ROOT/postfix"
PKG=postfix

if [ "$(id -u)" -ne 0 ]; then
    echo "postfix-setup: not root; skipping (the postfix tests will be skipped)" >&2
    exit 0
fi

# 1. The .deb, unpacked into $DEST, and the shared libraries it links.
sbin=usr/lib/postfix/sbin
"$(dirname "$0")/unpack-deb.sh" --libdir usr/lib/postfix "$PKG" "$DEST" \
    $sbin/master $sbin/smtpd $sbin/cleanup $sbin/qmgr $sbin/trivial-rewrite \
    $sbin/virtual $sbin/bounce $sbin/anvil $sbin/postlogd usr/sbin/postconf

# 2. The users and groups, as Debian's postinst makes them.
if ! getent group postdrop >/dev/null; then
    groupadd --system postdrop
fi
if ! getent group postfix >/dev/null; then
    groupadd --system postfix
fi
if ! getent passwd postfix >/dev/null; then
    useradd --system --gid postfix --no-create-home --home-dir /var/spool/postfix \
        --shell /usr/sbin/nologin postfix
fi

# The version, which also proves that the programs run (-c: an empty
# configuration, not the system's).
conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
touch "$conf/main.cf" "$conf/master.cf"
if ! out=$(LD_LIBRARY_PATH="$DEST/usr/lib/postfix" "$DEST/usr/sbin/postconf" \
    -c "$conf" -d -h mail_version 2>&1); then
    echo "postfix-setup: $DEST/usr/sbin/postconf failed:" >&2
    echo "$out" >&2
    exit 1
fi
echo "Postfix version $out"
