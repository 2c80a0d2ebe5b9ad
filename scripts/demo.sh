#!/usr/bin/env bash
# make demo: start Kafka, Redis and the worker, replay a generated clickstream, show outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
SS=.venv/bin/shopstream
DEMO=.stack/demo
PORT="${SHOPSTREAM_WEB_PORT:-6066}"
USERS="${DEMO_USERS:-300}"
mkdir -p "$DEMO"
. scripts/stack-env.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/5 starting Kafka and Redis (first run downloads the Kafka jars once)"
scripts/stack.sh up

say "2/5 starting the worker (log: $DEMO/worker.log, http://127.0.0.1:$PORT)"
started_worker=0
if [ -f "$DEMO/worker.pid" ] && kill -0 "$(cat "$DEMO/worker.pid")" 2>/dev/null; then
  echo "worker already running (pid $(cat "$DEMO/worker.pid"))"
else
  $SS topics
  # The demo replays four months of generated 2024 history in seconds: a per-user rate limit
  # in record time would refuse the busiest users' events (docs/security.md, "Rate limit"),
  # and its churn alerts are published however old (a real backfill keeps the default age
  # limit: docs/churn.md "Backfills"); it serves the demo storefront at /demo/shop
  # (off unless SHOPSTREAM_DEMO_SHOP is set).
  SHOPSTREAM_MAX_EVENTS_PER_MIN="${SHOPSTREAM_MAX_EVENTS_PER_MIN:-0}" \
  SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS="${SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS:-0}" \
    SHOPSTREAM_DEMO_SHOP="${SHOPSTREAM_DEMO_SHOP:-1}" nohup $SS worker >"$DEMO/worker.log" 2>&1 &
  echo $! >"$DEMO/worker.pid"
  started_worker=1
fi
stop_worker() {
  if [ "$started_worker" = 1 ] && [ "${DEMO_KEEP:-1}" != 1 ]; then
    kill -TERM "$(cat "$DEMO/worker.pid")" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$(cat "$DEMO/worker.pid")" 2>/dev/null || break; sleep 0.5; done
    rm -f "$DEMO/worker.pid"
    echo "worker stopped"
  fi
}
trap stop_worker EXIT
.venv/bin/python scripts/demo_show.py wait-healthy --port "$PORT"

say "3/5 generating a storefront clickstream ($USERS users, seed 7)"
$SS generate --users "$USERS" --seed 7 --out "$DEMO/events.jsonl"

say "4/5 replaying it into shop.events"
$SS replay "$DEMO/events.jsonl"

say "5/5 what came out"
.venv/bin/python scripts/demo_show.py outputs --port "$PORT"

if [ "${DEMO_KEEP:-1}" = 1 ]; then
  say "the worker keeps running: open http://127.0.0.1:$PORT/dashboard (metrics: /metrics)."
  echo "   demo shop (browse it, watch the recommendations change): http://127.0.0.1:$PORT/demo/shop"
  echo "   'make down' stops the worker, Kafka and Redis; DEMO_KEEP=0 make demo stops the worker at the end."
else
  echo "demo shop was at http://127.0.0.1:$PORT/demo/shop while the worker ran"
  say "done. Kafka and Redis are still running: 'make worker' to run the worker again, 'make down' to stop them"
fi
