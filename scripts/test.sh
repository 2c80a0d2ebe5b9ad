#!/usr/bin/env bash
# make test: start the real Kafka broker and redis-server, then run every test.
# The services stay up afterwards only if they were already running before.
set -euo pipefail
cd "$(dirname "$0")/.."
# The long fault-injection tests run with `make chaos`; deselect them unless -m is given.
marker=(-m "not chaos")
for arg in "$@"; do case "$arg" in -m|-m*) marker=() ;; esac; done
rc=0
scripts/stack.sh with .venv/bin/python -m pytest "${marker[@]}" "$@" || rc=$?
# The whole suite runs on the project's Python (.venv); the unit suite also on 3.13, the
# newest supported (~2 min; `make test-versions` adds 3.12). Only for a plain `make test`.
if [ $# -eq 0 ] && [ "${SHOPSTREAM_TEST_VERSIONS:-3.13}" != none ]; then
  scripts/test_versions.sh ${SHOPSTREAM_TEST_VERSIONS:-3.13} || rc=1
fi
exit $rc
