#!/usr/bin/env bash
# make chaos: the fault-injection suite (issue 6) against the real Kafka and Redis.
# Runs the short tests (also part of `make test`) and the long `chaos`-marked ones; every
# test is bounded (pytest-timeout) and the whole run is capped at CHAOS_TIMEOUT seconds.
# Outage tests start private redis/Kafka instances; the shared stack is never disturbed.
# Extra arguments go to pytest (e.g. `scripts/chaos.sh -k kill9`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/stack.sh with timeout --signal=INT --kill-after=30 "${CHAOS_TIMEOUT:-3600}" \
  .venv/bin/python -m pytest tests/chaos -p no:cacheprovider \
  -s -v -o console_output_style=classic "$@"
