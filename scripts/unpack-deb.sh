#!/bin/sh
# Unpacks a Debian package into a directory of its own, for a test peer that
# must not be installed as a package (an MTA: it conflicts with other MTAs,
# and with us), and installs the shared libraries it needs. Run as root; it
# is idempotent, and quick once done.
#   usage: unpack-deb.sh [--libdir DIR] PACKAGE DEST BINARY...
# The .deb is downloaded once (scripts/fetch-deb.sh, into
# /opt/dma-rs-test/debs) and unpacked with dpkg-deb -x into DEST (again
# whenever the cached .deb is newer than the tree). Every lib* package of its
# Depends (first alternative) that is not installed yet is then installed,
# and each BINARY (a path below DEST) is checked with ldd, with DIR (below
# DEST) on the library path for the package's private libraries.
# Used by scripts/exim-setup.sh and scripts/postfix-setup.sh.
set -eu

libdir=""
if [ "${1:-}" = --libdir ]; then
    libdir=$2
    shift 2
fi
pkg=$1
dest=$2
shift 2
root=$(dirname "$dest")

export DEBIAN_FRONTEND=noninteractive

# 1. The .deb, downloaded once into the cache.
deb=$("$(dirname "$0")/fetch-deb.sh" "$pkg" "$root/debs")

# 2. Unpacked into $dest.
stamp="$dest/.unpacked-from"
if [ ! -e "$stamp" ] || [ "$(cat "$stamp")" != "$(basename "$deb")" ]; then
    tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    dpkg-deb -x "$deb" "$tmp"
    basename "$deb" >"$tmp/.unpacked-from"
    rm -rf "$dest"
    mv "$tmp" "$dest"
fi

# 3. The shared libraries.
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
    echo "unpack-deb: $pkg: installing libraries:$missing"
    # shellcheck disable=SC2086
    if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi
for bin in "$@"; do
    if LD_LIBRARY_PATH="${libdir:+$dest/$libdir}" ldd "$dest/$bin" | grep -q 'not found'; then
        echo "unpack-deb: $dest/$bin still misses shared libraries:" >&2
        LD_LIBRARY_PATH="${libdir:+$dest/$libdir}" ldd "$dest/$bin" | grep 'not found' >&2
        exit 1
    fi
done
