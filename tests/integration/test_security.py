"""Security options end to end: Kafka SASL/PLAIN and a password-protected Redis."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, consume, free_port, produce

ROOT = Path(__file__).resolve().parents[2]
SASL_PORT = os.environ.get("SHOPSTREAM_KAFKA_SASL_PORT", "9094")
# The local broker's SASL_PLAINTEXT listener accepts this user (scripts/stack.sh).
SASL_USER, SASL_PASSWORD = "shopstream", "shopstream-secret"
REDIS_PASSWORD = "s3cret-for-tests"


@pytest.fixture
def redis_with_password(tmp_path: Path, stack: None) -> Iterator[str]:
    """A second redis-server, started by the project's script, that requires a password."""
    port = free_port()
    env = {
        **os.environ,
        "SHOPSTREAM_STACK_DIR": str(tmp_path / "stack"),
        "SHOPSTREAM_REDIS_PORT": str(port),
        "SHOPSTREAM_REDIS_PASSWORD": REDIS_PASSWORD,
    }
    script = str(ROOT / "scripts/stack.sh")
    subprocess.run([script, "redis-up"], env=env, check=True, capture_output=True, timeout=60)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "redis-down"], env=env, check=True, capture_output=True, timeout=60)


async def test_redis_without_the_password_is_refused(redis_with_password: str) -> None:
    client = aioredis.from_url(f"redis://{redis_with_password}/0")
    with pytest.raises(AuthenticationError):
        await client.ping()
    await client.aclose()


async def test_worker_over_sasl_plain_and_redis_auth(
    settings: Settings, redis_with_password: str, tmp_path: Path
) -> None:
    secure = settings.with_(
        kafka_bootstrap=f"127.0.0.1:{SASL_PORT}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=SASL_USER,
        kafka_sasl_password=SASL_PASSWORD,
        redis_url=f"redis://:{REDIS_PASSWORD}@{redis_with_password}/0",
    )
    await ensure_topics(secure)  # the admin client authenticates too
    events = [
        orjson.dumps(
            {"event_id": f"e{n}", "type": "view", "user_id": "carol", "session_id": "cs",
             "item_id": item, "ts": 1_709_283_600_000 + n}
        )
        for n, item in enumerate(["a", "b", "a", "b"])
    ]
    with WorkerProcess(secure, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, [(b"carol", e) for e in events])  # storefront on PLAINTEXT
        recs = await consume(settings.topic_recommendations, settings, until=1)
        assert recs, worker.logs()
        assert orjson.loads(recs[-1].value)["user_id"] == "carol"
    client = aioredis.from_url(secure.redis_url)
    assert await client.dbsize() > 0  # the worker's state went to the protected server
    await client.aclose()
