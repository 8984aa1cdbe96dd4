#!/bin/sh
# dma-rs vs Debian dma benchmark. Usage (as root, after bench/setup.sh):
#   bench/run.sh [--smoke] [--rounds N] [--only W1,W2] [--out results.jsonl] [--no-report]
#                [--report FILE] [--keep] [--submitter USER|root] [--with-C]
# Full runs append JSON lines to bench/results/results-<date>.jsonl and write BENCHMARKS.md.
# --smoke: tiny sizes, 1 round, results and report in a temporary directory
#          (never BENCHMARKS.md) unless --out/--report are given.
# --submitter: who submits (default benchsend, an ordinary user); queue runs are root's.
# --with-C: also run dma-rs the old way (`-C` as root, not set-id) as `dma-rs-C`.
# DMARS (default target/release/dma) and DMARS_LOCAL (default: dma-local next to it)
# are installed set-id in each run's namespace.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
smoke=0; rounds=3; only=""; out=""; report=""; noreport=0; keep=""; submitter=""; withc=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; rounds=1 ;;
        --rounds) rounds=$2; shift ;;
        --only) only=$2; shift ;;
        --out) out=$2; shift ;;
        --report) report=$2; shift ;;
        --no-report) noreport=1 ;;
        --keep) keep=--keep ;;
        --submitter) submitter=$2; shift ;;
        --with-C) withc=--with-C ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 64 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 1; }
[ -x /opt/dma-rs-bench/dma/usr/sbin/dma ] || { echo "run.sh: run bench/setup.sh first" >&2; exit 1; }
DMARS=${DMARS:-$REPO/target/release/dma}   # tests/bench_smoke.rs points this at its own build
export DMARS
[ -x "$DMARS" ] || { echo "run.sh: $DMARS missing: build dma-rs (cargo build --release)" >&2; exit 1; }
DMARS_LOCAL=${DMARS_LOCAL:-$(dirname "$DMARS")/dma-local}
export DMARS_LOCAL
[ -x "$DMARS_LOCAL" ] || { echo "run.sh: $DMARS_LOCAL missing: build dma-rs" >&2; exit 1; }
id benchsend >/dev/null 2>&1 || { echo "run.sh: no user benchsend: run bench/setup.sh" >&2; exit 1; }
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
[ -n "$submitter" ] && set -- "$@" --submitter "$submitter"
[ -n "$withc" ] && set -- "$@" "$withc"
python3 "$HERE/bench.py" "$@" --rounds "$rounds" --out "$out"
if [ $noreport = 0 ]; then
    python3 "$HERE/report.py" "$out" -o "$report"
    echo "report: $report"
fi
echo "results: $out"
