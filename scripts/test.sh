#!/usr/bin/env bash
# make test: start the real Kafka broker and redis-server, then run every test.
# The services stay up afterwards only if they were already running before.
#
# A plain `make test` runs the unit suite (with the doctests) on both cores with
# pytest-xdist, then the integration tests one at a time (they share one broker and their
# timing matters), then the unit suite on Python 3.13. With arguments, one pytest run of
# what they select, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
# The long fault-injection tests run with `make chaos`; deselect them unless -m is given.
marker=(-m "not chaos")
for arg in "$@"; do case "$arg" in -m|-m*) marker=() ;; esac; done
rc=0
if [ $# -gt 0 ]; then
  scripts/stack.sh with .venv/bin/python -m pytest "${marker[@]}" "$@" || rc=$?
  exit $rc
fi
.venv/bin/python -m pytest -m "not integration and not chaos" -n "${SHOPSTREAM_TEST_CPUS:-auto}" \
  || rc=$?
scripts/stack.sh with .venv/bin/python -m pytest -m "integration and not chaos" || rc=$?
# The unit suite also on 3.13, the newest supported (`make test-versions` adds 3.12).
if [ "${SHOPSTREAM_TEST_VERSIONS:-3.13}" != none ]; then
  scripts/test_versions.sh ${SHOPSTREAM_TEST_VERSIONS:-3.13} || rc=1
fi
exit $rc
