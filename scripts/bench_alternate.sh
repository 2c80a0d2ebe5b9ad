#!/usr/bin/env bash
# Alternate bench runs of two or more variants, so that the box's drift over time falls on
# every variant alike (docs/performance.md: compare within a pair, never one run against one).
#
#   scripts/bench_alternate.sh OUTDIR ROUNDS VARIANT...
#
# A VARIANT is one word list: NAME=..., then environment assignments, then arguments for
# scripts/bench.py, e.g.
#   scripts/bench_alternate.sh /tmp/bs 3 "NAME=b500 SHOPSTREAM_BATCH_SIZE=500" \
#       "NAME=b1000 SHOPSTREAM_BATCH_SIZE=1000"
#   ... "NAME=eq500 SHOPSTREAM_BATCH_SIZE=500 --latency-fraction 0.68"
# Each run writes OUTDIR/NAME-ROUND.json and .log (Redis is flushed before each run: the
# bench's keys, and the stack's other keys, are dropped). Needs the stack up
# (scripts/stack.sh up) and the bench extras (pip install -e '.[bench]').
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,15p "$0"; exit 2; }
out=$1 rounds=$2
shift 2
mkdir -p "$out"
source scripts/stack-env.sh
for round in $(seq 1 "$rounds"); do
  for variant in "$@"; do
    name="" envs=() args=()
    for word in $variant; do
      case $word in
        NAME=*) name=${word#NAME=} ;;
        -*) args+=("$word") ;;
        *=*) if [ ${#args[@]} -eq 0 ]; then envs+=("$word"); else args+=("$word"); fi ;;
        *) args+=("$word") ;;
      esac
    done
    [ -n "$name" ] || { echo "a variant needs NAME=...: $variant" >&2; exit 2; }
    redis-cli -u "$SHOPSTREAM_REDIS_URL" flushall >/dev/null
    rc=0
    env "${envs[@]}" PYTHONPATH=. timeout 900 .venv/bin/python scripts/bench.py "${args[@]}" \
      --out "$out/$name-$round.json" >"$out/$name-$round.log" 2>&1 || rc=$?
    echo "$name-$round: exit $rc ($out/$name-$round.log)"
  done
done
