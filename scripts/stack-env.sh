# Sourced by scripts that run the worker next to the stack scripts/stack.sh starts: the worker
# and the tools talk to that Kafka and Redis, also when SHOPSTREAM_KAFKA_PORT or
# SHOPSTREAM_REDIS_PORT moved them off the default ports. Explicit settings win.
export SHOPSTREAM_KAFKA_BOOTSTRAP="${SHOPSTREAM_KAFKA_BOOTSTRAP:-127.0.0.1:${SHOPSTREAM_KAFKA_PORT:-9092}}"
export SHOPSTREAM_REDIS_URL="${SHOPSTREAM_REDIS_URL:-redis://127.0.0.1:${SHOPSTREAM_REDIS_PORT:-6379}/0}"
