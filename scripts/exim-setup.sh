#!/bin/sh
# Unpacks Debian's exim (exim4-daemon-light) into /opt/dma-rs-test/exim, for
# the integration tests that use it as a smarthost on loopback
# (tests/support/exim.rs). Run as root; it is idempotent.
#
# exim is NOT installed as a package: it conflicts with other MTAs (and with
# us). The .deb is only downloaded (into /opt/dma-rs-test/debs) and unpacked
# with dpkg -x; the binary is /opt/dma-rs-test/exim/usr/sbin/exim4. What the
# unpacked binary still needs from the system is installed here:
#  - the shared libraries it links (ordinary library packages, taken from the
#    .deb's Depends and checked with ldd);
#  - the system user and group compiled into Debian's build (Debian-exim).
set -eu

ROOT=/opt/dma-rs-test
DEBS="$ROOT/debs"
DEST="$ROOT/exim"
EXIM="$DEST/usr/sbin/exim4"
PKG=exim4-daemon-light
EXIM_USER=Debian-exim

if [ "$(id -u)" -ne 0 ]; then
    echo "exim-setup: not root; skipping (the exim tests will be skipped)" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=""
apt_update() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
}

# 1. The .deb, downloaded once into the cache.
deb=$("$(dirname "$0")/fetch-deb.sh" "$PKG" "$DEBS")

# 2. Unpacked into $DEST (again whenever the .deb is newer than the tree).
stamp="$DEST/.unpacked-from"
if [ ! -x "$EXIM" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(basename "$deb")" ]; then
    tmp="$ROOT/exim.tmp.$$"
    rm -rf "$tmp"
    dpkg-deb -x "$deb" "$tmp"
    basename "$deb" >"$tmp/.unpacked-from"
    rm -rf "$DEST"
    mv "$tmp" "$DEST"
fi

# 3. The shared libraries: every lib* package of the .deb's Depends (first
#    alternative) that is not installed yet.
missing=""
for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g'); do
    case "$dep" in
    lib*)
        if ! dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'ok installed'; then
            missing="$missing $dep"
        fi
        ;;
    esac
done
if [ -n "$missing" ]; then
    echo "exim-setup: installing libraries:$missing"
    # shellcheck disable=SC2086
    if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
        apt_update
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi
if ldd "$EXIM" | grep -q 'not found'; then
    echo "exim-setup: $EXIM still misses shared libraries:" >&2
    ldd "$EXIM" | grep 'not found' >&2
    exit 1
fi

# 4. The exim user and group compiled into Debian's build (exim looks them up
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
