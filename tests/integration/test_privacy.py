"""Pseudonymised user ids end to end, and `shopstream forget` erasing a user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from models.similarity import key_base
from streams.core.settings import Settings
from streams.domain.privacy import pseudonymise
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, consume, produce, settings_env


async def test_pseudonyms_everywhere_and_forget_erases_the_user(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(pseudonymise_key="shop-secret")
    pseudo = pseudonymise("dave", b"shop-secret")
    events = [
        orjson.dumps({"event_id": f"d{n}", "type": t, "user_id": "dave", "session_id": "ds",
                      "item_id": i, "price": 5.0, "ts": 1_709_283_600_000 + n * 1000})
        for n, (t, i) in enumerate([("view", "a"), ("view", "b"), ("purchase", "b")])
    ]  # fmt: skip
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, [(b"dave", e) for e in events])
        recs = await consume(settings.topic_recommendations, settings, until=1)
        assert recs, worker.logs()
        out = orjson.loads(recs[-1].value)
        assert out["user_id"] == pseudo and recs[-1].key == pseudo.encode()
        dave = worker.poll_json("/users/dave", bool, "dave's profile", timeout=30, absent_ok=True)
        assert dave["user_id"] == pseudo  # the storefront asks by its own id

        client = aioredis.from_url(settings.redis_url)
        pattern = key_base(settings.redis_prefix) + "*"
        keys = [k async for k in client.scan_iter(match=pattern, count=2000)]
        assert not any(b"dave" in k for k in keys)  # the raw id is stored nowhere
        assert any(pseudo.encode() in k for k in keys)

        cli = subprocess.run(
            [sys.executable, "-m", "streams", "forget", "dave"],
            env=settings_env(settings), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert f"forgot {pseudo}: profile 1, churn_track 1" in cli.stdout, cli.stdout
        print("verified:", cli.stdout.strip())
        keys = [k async for k in client.scan_iter(match=pattern, count=2000)]
        assert not any(pseudo.encode() in k for k in keys), keys
        await client.aclose()
        try:
            worker.get_json("/users/dave")
            raise AssertionError("the profile is still there")
        except OSError as exc:
            assert "404" in str(exc)
