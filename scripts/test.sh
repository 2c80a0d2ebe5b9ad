#!/usr/bin/env bash
# make test: start the real Kafka broker and redis-server, then run every test.
# The services stay up afterwards only if they were already running before.
set -euo pipefail
cd "$(dirname "$0")/.."
was_running=0
scripts/stack.sh status >/dev/null 2>&1 && was_running=1
scripts/stack.sh up
cleanup() { [ "$was_running" = 1 ] || scripts/stack.sh down; }
trap cleanup EXIT
# The long fault-injection tests run with `make chaos`; deselect them unless -m is given.
marker=(-m "not chaos")
for arg in "$@"; do case "$arg" in -m|-m*) marker=() ;; esac; done
.venv/bin/python -m pytest "${marker[@]}" "$@"
