#!/bin/sh
# dma-rs in one minute, without root and without touching the system: builds
# the program, makes a private configuration in a temporary directory, sends
# a message to you, and shows the queue and your (private) mailbox.
# The temporary directory is removed at the end (DEMO_KEEP=1 keeps it).
set -eu
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH=$HOME/.cargo/bin:$PATH
    else
        echo "demo.sh: cargo not found: install Rust >= $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) (https://rustup.rs) and put cargo on your PATH" >&2
        exit 69
    fi
fi
cargo build --release --quiet
demo=$(mktemp -d "${TMPDIR:-/tmp}/dma-rs-demo.XXXXXX")
if [ "${DEMO_KEEP:-}" = 1 ]; then
    echo "== keeping $demo"
else
    trap 'rm -rf "$demo"' EXIT
    trap 'exit 1' HUP INT TERM
fi
mkdir "$demo/mail"
cat >"$demo/dma.conf" <<CONF
SPOOLDIR $demo/spool
MAILSPOOL $demo/mail
ALIASES $demo/aliases
CONF
me=$(id -un)
echo "== sendmail -odi -v $me (config $demo/dma.conf)"
printf 'Subject: hello from dma-rs\n\nIt works.\n' |
    ./target/release/dma -C "$demo/dma.conf" -odi -v "$me"
echo "== mailq"
./target/release/dma -C "$demo/dma.conf" -bp
echo "== $demo/mail/$me"
cat "$demo/mail/$me"
