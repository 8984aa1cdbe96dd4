#!/bin/sh
# Installs what the test suite needs on a Debian machine. Run as root
# (CI does); it is idempotent.
#  - bsd-mailx: a real mail client that calls our sendmail;
#  - groff-base and man-db: tests/manpages.rs renders the man pages;
#  - python3-dkim, python3-nacl, python3-dnspython: dkimpy, the independent
#    verifier of our DKIM signatures (tests/dkim.rs, Debian's /usr/bin/python3);
#  - the test users dmt-alice, dmt-bob, dmt-carol, with home directories;
#  - for the package tests (tests/package.rs): Debian's dma .deb, downloaded
#    into /opt/dma-rs-test/debs (not installed: the tests install it in an
#    overlay), the libraries it depends on, dpkg-dev and binutils to build
#    our package, lintian to check it, man-db for `man'.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "test-setup: not root; skipping package and user setup" >&2
    exit 0
fi

need_pkgs=""
command -v bsd-mailx >/dev/null 2>&1 || need_pkgs="$need_pkgs bsd-mailx"
command -v groff >/dev/null 2>&1 || need_pkgs="$need_pkgs groff-base"
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_pkgs="$need_pkgs dpkg-dev"
command -v strip >/dev/null 2>&1 || need_pkgs="$need_pkgs binutils"
command -v lintian >/dev/null 2>&1 || need_pkgs="$need_pkgs lintian"
command -v man >/dev/null 2>&1 || need_pkgs="$need_pkgs man-db"
for pkg in python3-dkim python3-nacl python3-dnspython; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
        need_pkgs="$need_pkgs $pkg"
    fi
done
# What Debian's dma needs to install (the first of each alternative).
dma_deb=$("$(dirname "$0")/fetch-deb.sh" dma)
for dep in $(dpkg-deb -f "$dma_deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g'); do
    if ! dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'ok installed'; then
        need_pkgs="$need_pkgs $dep"
    fi
done
if [ -n "$need_pkgs" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # bsd-mailx depends on default-mta | mail-transport-agent: where the
    # machine has no MTA, apt installs exim4 as its MTA (the tests never use it).
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
fi

for u in dmt-alice dmt-bob dmt-carol; do
    if ! id "$u" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/sh "$u"
    fi
done
# Empty mount points for tests/installed.rs, which bind-mounts a test
# installation over the compiled-in paths inside a private mount namespace.
mkdir -p /etc/dma /usr/local/libexec/dma-rs
echo "test-setup: users and packages ready"
