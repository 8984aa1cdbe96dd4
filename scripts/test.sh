#!/bin/sh
# Runs every test. As root (CI), it first installs what the tests need
# (scripts/test-setup.sh: bsd-mailx, groff-base, man-db, the test users;
# scripts/exim-setup.sh and scripts/postfix-setup.sh: a real exim and a
# real postfix unpacked from their .debs, as test smarthosts) and makes the tests that need root mandatory; as another user
# those tests report SKIPPED.
#
# Under sudo, cargo is usually not on root's PATH (secure_path) and rustup's
# toolchain is the invoking user's: the script then takes cargo and rustup
# from SUDO_USER's home, and builds as that user, so that target/ and
# ~/.cargo stay theirs; only the test run itself is root's.
set -eu
cd "$(dirname "$0")/.."

builder=""
if ! command -v cargo >/dev/null 2>&1; then
    home=""
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    fi
    cargo_home=${CARGO_HOME:-${home:+$home/.cargo}}
    if [ -n "$cargo_home" ] && [ -x "$cargo_home/bin/cargo" ]; then
        PATH=$cargo_home/bin:$PATH
        CARGO_HOME=$cargo_home
        RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}
        export PATH CARGO_HOME RUSTUP_HOME
        builder=$SUDO_USER
    else
        echo "test.sh: cargo not found on PATH${home:+ nor in $home/.cargo/bin}; install Rust (https://rustup.rs) or run: sudo env PATH=\"\$PATH\" scripts/test.sh" >&2
        exit 69
    fi
fi

if [ "$(id -u)" -eq 0 ]; then
    scripts/test-setup.sh
    scripts/exim-setup.sh
    scripts/postfix-setup.sh
    DMA_TESTS_REQUIRE_ROOT=1
    export DMA_TESTS_REQUIRE_ROOT
fi
# The tests run the built programs as the test users: a checkout they can
# not reach (a home of mode 0700, as Debian makes them) builds into a
# directory of its own below /var/tmp instead, owned by whoever builds.
if [ "$(id -u)" -eq 0 ] && [ -z "${CARGO_TARGET_DIR:-}" ] &&
    ! runuser -u nobody -- test -x "$PWD" 2>/dev/null; then
    owner=${builder:-root}
    CARGO_TARGET_DIR=/var/tmp/dma-rs-tests.$owner
    if [ -L "$CARGO_TARGET_DIR" ] || { [ -e "$CARGO_TARGET_DIR" ] &&
        [ "$(stat -c %U "$CARGO_TARGET_DIR")" != "$owner" ]; }; then
        echo "test.sh: $CARGO_TARGET_DIR is not a directory of $owner's; remove it" >&2
        exit 73
    fi
    mkdir -p -m 755 "$CARGO_TARGET_DIR"
    chown "$owner" "$CARGO_TARGET_DIR"
    export CARGO_TARGET_DIR
    echo "test.sh: $PWD is out of the test users' reach; building in $CARGO_TARGET_DIR"
fi
if [ -n "$builder" ]; then
    # Build (and fetch crates) as the user who ran sudo; the run below then
    # finds everything built.
    runuser -u "$builder" -- env PATH="$PATH" CARGO_HOME="$CARGO_HOME" \
        RUSTUP_HOME="$RUSTUP_HOME" ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR="$CARGO_TARGET_DIR"} cargo test --locked --all-targets --no-run "$@"
fi
cargo test --locked --all-targets "$@"
