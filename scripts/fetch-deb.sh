#!/bin/sh
# Downloads a package's .deb (apt-get download, nothing installed) into a
# cache directory once, and prints its path. Run as root.
#   usage: fetch-deb.sh PACKAGE [DIR]   (DIR: default /opt/dma-rs-test/debs)
# Used for the test peers: exim (scripts/exim-setup.sh), and Debian's dma
# for the package tests (scripts/test-setup.sh, tests/package.rs).
set -eu

pkg=$1
dir=${2:-/opt/dma-rs-test/debs}

latest() {
    find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1
}

mkdir -p "$dir"
deb=$(latest)
if [ -z "$deb" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Empty package lists on a fresh machine: no candidate until an update.
    if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    # apt-get download saves into the current directory; make it readable by
    # the _apt sandbox user so that apt does not warn.
    chown _apt "$dir" 2>/dev/null || true
    # Stale lists may name a version the archive no longer has.
    if ! (cd "$dir" && apt-get download -qq "$pkg"); then
        apt-get update -qq
        (cd "$dir" && apt-get download -qq "$pkg")
    fi
    deb=$(latest)
fi
[ -n "$deb" ] || { echo "fetch-deb: no ${pkg}_*.deb in $dir" >&2; exit 1; }
echo "$deb"
