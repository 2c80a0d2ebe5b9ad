#!/usr/bin/env bash
# make test: start the real Kafka broker and redis-server, then run every test.
# The services stay up afterwards only if they were already running before.
set -euo pipefail
cd "$(dirname "$0")/.."
# The long fault-injection tests run with `make chaos`; deselect them unless -m is given.
marker=(-m "not chaos")
for arg in "$@"; do case "$arg" in -m|-m*) marker=() ;; esac; done
exec scripts/stack.sh with .venv/bin/python -m pytest "${marker[@]}" "$@"
