"""Test-wide configuration: where the real services started by scripts/stack.sh listen."""

from __future__ import annotations

import os

# Ports follow scripts/stack.sh (override with the same variables it reads).
KAFKA = f"127.0.0.1:{os.environ.get('SHOPSTREAM_KAFKA_PORT', '9092')}"
REDIS = f"redis://127.0.0.1:{os.environ.get('SHOPSTREAM_REDIS_PORT', '6379')}/0"
os.environ.setdefault("SHOPSTREAM_TEST_KAFKA", KAFKA)
os.environ.setdefault("SHOPSTREAM_TEST_REDIS_URL", REDIS)
