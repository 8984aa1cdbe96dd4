#!/bin/sh
# dma-rs vs Debian dma benchmark. Usage (as root, after bench/setup.sh):
#   bench/run.sh [--smoke] [--rounds N] [--only W1,W2] [--out results.jsonl] [--no-report]
#                [--report FILE] [--keep]
# Full runs append JSON lines to bench/results/results-<date>.jsonl and write BENCHMARKS.md.
# --smoke: tiny sizes, 1 round, results and report in a temporary directory
#          (never BENCHMARKS.md) unless --out/--report are given.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
smoke=0; rounds=3; only=""; out=""; report=""; noreport=0; keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; rounds=1 ;;
        --rounds) rounds=$2; shift ;;
        --only) only=$2; shift ;;
        --out) out=$2; shift ;;
        --report) report=$2; shift ;;
        --no-report) noreport=1 ;;
        --keep) keep=--keep ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 1; }
[ -x /opt/dma-rs-bench/dma/usr/sbin/dma ] || { echo "run.sh: run bench/setup.sh first" >&2; exit 1; }
DMARS=${DMARS:-$REPO/target/release/dma}   # tests/bench_smoke.rs points this at its own build
export DMARS
[ -x "$DMARS" ] || { echo "run.sh: $DMARS missing: build dma-rs (cargo build --release)" >&2; exit 1; }
if [ $smoke = 1 ]; then
    tmp=$(mktemp -d /tmp/dmabench-smoke.XXXXXX)
    [ -n "$out" ] || out=$tmp/results.jsonl
    [ -n "$report" ] || report=$tmp/BENCHMARKS.md
    set -- --smoke
else
    mkdir -p "$HERE/results"
    [ -n "$out" ] || out=$HERE/results/results-$(date +%Y%m%d-%H%M%S).jsonl
    [ -n "$report" ] || report=$REPO/BENCHMARKS.md
    set --
fi
[ -n "$only" ] && set -- "$@" --only "$only"
[ -n "$keep" ] && set -- "$@" "$keep"
python3 "$HERE/bench.py" "$@" --rounds "$rounds" --out "$out"
if [ $noreport = 0 ]; then
    python3 "$HERE/report.py" "$out" -o "$report"
    echo "report: $report"
fi
echo "results: $out"
