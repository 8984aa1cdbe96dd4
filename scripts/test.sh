#!/bin/sh
# Runs every test. As root (CI), it first installs what the tests need
# (scripts/test-setup.sh: bsd-mailx, groff-base, man-db, the test users;
# scripts/exim-setup.sh: a real exim unpacked from its .deb, as a test
# smarthost) and makes the tests that need root mandatory; as another user
# those tests report SKIPPED.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    scripts/test-setup.sh
    scripts/exim-setup.sh
    DMA_TESTS_REQUIRE_ROOT=1
    export DMA_TESTS_REQUIRE_ROOT
fi
cargo test --locked --all-targets "$@"
