"""Test-wide configuration and the fixtures the integration and chaos suites share.

The real services are started by scripts/stack.sh. Every test gets its own topic names,
consumer group, Redis key prefix and web port, so tests never see each other's data. Tests
fail (never skip) when the services cannot be started.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import settings as hypothesis_settings

from models.similarity import key_base
from streams.core.settings import Settings
from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[1]
# Ports follow scripts/stack.sh (override with the same variables it reads).
KAFKA = f"127.0.0.1:{os.environ.get('SHOPSTREAM_KAFKA_PORT', '9092')}"
REDIS = f"redis://127.0.0.1:{os.environ.get('SHOPSTREAM_REDIS_PORT', '6379')}/0"
os.environ.setdefault("SHOPSTREAM_TEST_KAFKA", KAFKA)
os.environ.setdefault("SHOPSTREAM_TEST_REDIS_URL", REDIS)

# Hypothesis's per-example deadline (200 ms) measures the machine, not the property: on the
# 2-core CI box, loaded by the worker processes of other tests or by the other pytest-xdist
# process, a 0.1 ms example once took 420 ms and failed test_arbitrary_bytes_never_crash with
# DeadlineExceeded. Tests that set their own ``deadline`` keep it.
hypothesis_settings.register_profile("shopstream", deadline=None)
hypothesis_settings.load_profile("shopstream")


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """Kafka + Redis via the project's own script (idempotent; a no-op when already up)."""
    proc = subprocess.run(
        [str(ROOT / "scripts/stack.sh"), "up"], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/stack.sh up failed:\n{proc.stdout}\n{proc.stderr}")
    yield


@pytest.fixture
def settings(stack: None, tmp_path: Path) -> Iterator[Settings]:
    """Settings private to one test: unique topics, group, Redis prefix, port, data dir.
    The test's Redis keys are deleted afterwards: left behind, they made every SCAN of the
    shared development Redis slower (430k keys after a day of runs: ~10 s for a SCAN with
    the default COUNT, 0.3 s with COUNT 2000)."""
    tag = uuid.uuid4().hex[:10]
    private = Settings(
        kafka_bootstrap=os.environ["SHOPSTREAM_TEST_KAFKA"],
        redis_url=os.environ["SHOPSTREAM_TEST_REDIS_URL"],
        web_port=free_port(),
        data_dir=str(tmp_path / "worker"),
        partitions=2,
        batch_within_ms=20,
        log_level="info",
        # tests produce months of history in seconds: a per-user limit in Kafka record time
        # would refuse heavy users (the limit's own tests set it)
        max_events_per_min=0,
        # replays of generated history in event time: clocks move only with events and every
        # alert is published (tests/integration/test_churn_idle.py turns both on)
        idle_advance_s=0.0,
        churn_alert_max_age_days=0.0,
    ).namespaced(f"t{tag}")
    yield private
    client = redis.Redis.from_url(private.redis_url)
    try:
        keys = list(client.scan_iter(match=key_base(private.redis_prefix) + "*", count=2000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
    finally:
        client.close()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    yield client
    keys = [
        k async for k in client.scan_iter(match=key_base(settings.redis_prefix) + "*", count=1000)
    ]
    if keys:
        await client.unlink(*keys)
    await client.aclose()
