#!/usr/bin/env bash
# Profile the shopstream worker under load with py-spy (sampling, out of process: the worker
# runs unmodified, overhead is a few percent with --nonblocking).
#
#   scripts/profile_worker.sh                 # start a worker under py-spy until Ctrl-C
#   scripts/profile_worker.sh --pid 12345     # attach to a running worker for DURATION s
#
# Settings come from the usual SHOPSTREAM_* variables. Output (PROFILE_OUT, default
# .stack/profile/worker-<time>.svg): a flame graph; PROFILE_FORMAT=speedscope gives a file
# for https://www.speedscope.app, PROFILE_FORMAT=raw collapsed stacks. PROFILE_RATE samples/s
# (default 250), DURATION seconds when attaching (default 30). `make bench BENCH_ARGS=--profile`
# does the same during the benchmark and summarises it in bench/results/profile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
SPY="$VENV/bin/py-spy"
if [ ! -x "$SPY" ]; then
  "$VENV/bin/pip" install -q 'py-spy>=0.3.14'
fi
FORMAT="${PROFILE_FORMAT:-flamegraph}"
case "$FORMAT" in flamegraph) EXT=svg ;; speedscope) EXT=json ;; *) EXT=txt ;; esac
mkdir -p .stack/profile
OUT="${PROFILE_OUT:-.stack/profile/worker-$(date +%Y%m%d-%H%M%S).$EXT}"
COMMON=(--rate "${PROFILE_RATE:-250}" --idle --threads --nonblocking --format "$FORMAT" --output "$OUT")
if [ "${1:-}" = "--pid" ]; then
  "$SPY" record "${COMMON[@]}" --pid "$2" --duration "${DURATION:-30}"
else
  echo "profiling a new worker; stop it with Ctrl-C to write $OUT" >&2
  "$SPY" record "${COMMON[@]}" -- "$VENV/bin/python" -m streams worker
fi
echo "profile written to $OUT" >&2
