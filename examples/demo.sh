#!/bin/sh
# dma-rs in one minute, without root and without touching the system: builds
# the program, makes a private configuration in a temporary directory, sends
# a message to you, and shows the queue and your (private) mailbox.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
demo=$(mktemp -d "${TMPDIR:-/tmp}/dma-rs-demo.XXXXXX")
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
