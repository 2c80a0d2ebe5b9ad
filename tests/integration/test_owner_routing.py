"""Any worker answers for any user: two real workers on four partitions give the same
answers for every user, whichever worker is asked (streams/web/owner.py).

Before issue 16 each worker answered from its own table: on the worker that did not own a
user's partition, ``GET /users/{u}`` was 404 (or a standby copy without a churn
probability), ``GET /recommendations/{u}`` cold-start items for an empty session, and
``DELETE /users/{u}`` reported success while the owner kept the data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.integration.test_scale_out import cleanup, wait_drained, wait_members
from tests.support.worker import (
    ADMIN_TOKEN,
    PUBLIC_KEY,
    WorkerProcess,
    free_port,
    produce,
    secret,
    settings_env,
)

QUOTED = ["bob#x", "a/b", "100%25", "carol?k=1", "a b"]


def storefront() -> tuple[list[tuple[bytes, bytes]], list[str]]:
    events, _ = generate(users=40, seed=17, days=40)
    extra = [
        {"event_id": f"q{n}-{i}", "type": "view", "user_id": user, "session_id": f"q{n}",
         "item_id": events[i]["item_id"] if events[i].get("item_id") else "i00001",
         "ts": events[-1]["ts"] + i}
        for n, user in enumerate(QUOTED) for i in (1, 2)
    ]  # fmt: skip
    records = [(e["user_id"].encode(), orjson.dumps(e)) for e in [*events, *extra]]
    return records, sorted({e["user_id"] for e in [*events, *extra]})


def partition_of(user_id: str, partitions: int) -> int:
    """The producer's partition of a key (murmur2, as the storefront's Kafka client)."""
    parts = list(range(partitions))
    return int(DefaultPartitioner()(user_id.encode(), parts, parts))


def q(user_id: str) -> str:
    return urllib.parse.quote(user_id, safe="")


@pytest.fixture(scope="module")
async def cluster(
    stack: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[list[WorkerProcess], list[str]]]:
    tmp: Path = tmp_path_factory.mktemp("owners")
    s = Settings(
        kafka_bootstrap=os.environ["SHOPSTREAM_TEST_KAFKA"],
        redis_url=os.environ["SHOPSTREAM_TEST_REDIS_URL"],
        partitions=4, public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN,
        checkpoint_key=secret("owners"), churn_min_labels=5,
    ).namespaced(f"t{uuid.uuid4().hex[:10]}")  # fmt: skip
    await ensure_topics(s)
    workers = [
        WorkerProcess(s.with_(web_port=free_port(), data_dir=str(tmp / f"w{i}")), tmp / f"w{i}.log")
        for i in range(2)
    ]
    records, users = storefront()
    try:
        for w in workers:
            w.start()
        for w in workers:
            await asyncio.to_thread(w.wait_healthy, 90.0)
        await wait_members(s, 2, 60.0)
        await produce(s, records)
        await wait_drained(s, 90.0)
        await asyncio.sleep(1.5)  # the last batch's table writes
        yield workers, users
    finally:
        for w in workers:
            w.stop()
        await cleanup(s)


def held(worker: WorkerProcess) -> set[int]:
    return {int(p) for p in worker.get_json("/models")["partitions"]}


async def test_both_workers_give_the_same_answer_for_every_user(
    cluster: tuple[list[WorkerProcess], list[str]],
) -> None:
    (a, b), users = cluster
    assert held(a) and held(b) and not held(a) & held(b), "the partitions are not shared out"
    paths = [(path, token) for u in users for path, token in (
        (f"/users/{q(u)}", ADMIN_TOKEN), (f"/recommendations/{q(u)}", PUBLIC_KEY),
        (f"/recommendations/{q(u)}?k=3&exclude=i00001", PUBLIC_KEY))]  # fmt: skip
    for path, token in paths:
        answers = [await asyncio.to_thread(w.call, "GET", path, token=token) for w in (a, b)]
        (sa, _, ba), (sb, _, bb) = answers
        assert sa == sb == 200, (path, sa, sb, ba[:200], bb[:200])
        assert orjson.loads(ba) == orjson.loads(bb), path
    for u in users:  # and the answer is the owner's: a churn probability where models live
        user = orjson.loads(a.call("GET", f"/users/{q(u)}", token=ADMIN_TOKEN)[2])
        assert user["user_id"] == u and "segment" in user


def forget(worker: WorkerProcess, user_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "forget", user_id],
        env=settings_env(worker.settings), capture_output=True, text=True, timeout=90,
    )  # fmt: skip


async def test_forget_through_the_worker_that_does_not_own_the_user(
    cluster: tuple[list[WorkerProcess], list[str]],
) -> None:
    (a, b), users = cluster
    owned_by_a = held(a)
    for user_id in ["bob#x", "a/b", next(u for u in users if u.startswith("u"))]:
        owner, other = (a, b) if partition_of(user_id, 4) in owned_by_a else (b, a)
        proc = await asyncio.to_thread(forget, other, user_id)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"forgot {user_id}: profile 1, churn_track 1"), proc.stdout
        for w in (owner, other):
            assert w.call("GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN)[0] == 404


async def test_a_request_the_owner_cannot_answer_is_refused_with_409(
    cluster: tuple[list[WorkerProcess], list[str]],
) -> None:
    """The owner paused (SIGSTOP): the other worker's forward times out, it answers 409, and
    the owner, resumed, refuses the late request (past its deadline): nothing is erased."""
    (a, b), users = cluster
    owned_by_a = held(a)
    user_id = [u for u in users if u.startswith("u") and partition_of(u, 4) in owned_by_a][-1]
    assert a.call("GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN)[0] == 200
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        proc = await asyncio.to_thread(forget, b, user_id)
        status, headers, body = await asyncio.to_thread(
            b.call, "GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN
        )
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert f"answered 409 Conflict to forget {user_id!r}" in line
    assert "the user's partition's owner did not answer within 10 s; run it again" in line
    assert status == 409 and headers["Retry-After"] == "1", body
    # the resumed owner reads the queued requests and refuses them; the pause may have
    # started a rebalance (409 while it lasts)
    for _ in range(120):
        status = a.call("GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN)[0]
        if status != 409:
            break
        await asyncio.sleep(0.5)
    assert status == 200, "the late request erased the user after the 409"
    assert "forgot user " + user_id not in a.full_log() + b.full_log()
