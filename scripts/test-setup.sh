#!/bin/sh
# Installs what the test suite needs on a Debian machine. Run as root
# (CI does); it is idempotent.
#  - bsd-mailx: a real mail client that calls our sendmail;
#  - groff-base and man-db: tests/manpages.rs renders the man pages;
#  - the test users dmt-alice, dmt-bob, dmt-carol, with home directories.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "test-setup: not root; skipping package and user setup" >&2
    exit 0
fi

need_pkgs=""
command -v bsd-mailx >/dev/null 2>&1 || need_pkgs="$need_pkgs bsd-mailx"
command -v groff >/dev/null 2>&1 || need_pkgs="$need_pkgs groff-base"
command -v man >/dev/null 2>&1 || need_pkgs="$need_pkgs man-db"
if [ -n "$need_pkgs" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # bsd-mailx recommends an MTA; we are the MTA under test.
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
