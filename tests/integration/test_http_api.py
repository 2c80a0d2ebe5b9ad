"""The HTTP API of a real worker with both tokens set (issue 16).

One worker serves the whole module: a small shop whose sessions view ``sku-a`` then
``sku-h`` (so ``sku-h`` is what follows ``sku-a``), plus customers whose ids need quoting.
Checked against it: Faust's built-in pages are gone, every route answers 401 without its
token and 200 with it (``/healthz``, ``/metrics``, ``/openapi.json`` without), Host and
CORS rules, the category and exclude filters, hidden items (also in the recommendations the
worker publishes), ``shopstream forget`` erasing exactly the id given, no work for an
unknown user, and a checkpoint after a real erasure.

Before issue 16: ``/table/profiles`` served every raw profile, nothing asked for a token,
``forget bob#x`` erased ``bob``, and ``DELETE /users/<anything>`` re-signed every stored
model bundle.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.web.openapi import ROUTES
from tests.support.worker import (
    ADMIN_TOKEN,
    PUBLIC_KEY,
    WorkerProcess,
    consume,
    free_port,
    produce,
    secret,
    settings_env,
)

T0 = 1_709_283_600_000
CATEGORY = {"sku-a": "shoes", "sku-h": "shoes", "sku-b": "bags", "sku-c": "bags"}
#: ids that need quoting, and the id an unquoted URL named instead (erased before issue 16)
SIBLING = {"bob#x": "bob", "carol?k=1": "carol", "100%25": "100%", "a/b": None, "a b": None}
SPECIAL = [*SIBLING, "bob", "carol", "100%"]


def view(user: str, n: int, item: str, session: str | None = None) -> tuple[bytes, bytes]:
    event = {"event_id": f"{user}-{n}", "type": "view", "user_id": user,
             "session_id": session or f"{user}-s", "item_id": item,
             "category": CATEGORY[item], "ts": T0 + n * 1000}  # fmt: skip
    return user.encode(), orjson.dumps(event)


def shop() -> list[tuple[bytes, bytes]]:
    records = []
    for u in range(25):
        for n, item in enumerate(["sku-a", "sku-h", "sku-b", "sku-c"]):
            records.append(view(f"h{u}", n, item))
    for user in SPECIAL:
        records += [view(user, 10, "sku-c"), view(user, 11, "sku-a")]
    return records


def q(user_id: str) -> str:
    return urllib.parse.quote(user_id, safe="")


def wait_for(check: Any, what: str, worker: WorkerProcess, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.logs()
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout}s:\n{worker.logs()}")


@pytest.fixture(scope="module")
def api(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(
        kafka_bootstrap=os.environ["SHOPSTREAM_TEST_KAFKA"],
        redis_url=os.environ["SHOPSTREAM_TEST_REDIS_URL"],
        web_port=free_port(), data_dir=str(tmp / "worker"), partitions=2, batch_within_ms=20,
        public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN, checkpoint_key=secret("http-api"),
        checkpoint_interval_s=3600.0, cors_origins="https://shop.example", demo_shop=True,
    ).namespaced(f"t{uuid.uuid4().hex[:10]}")  # fmt: skip
    asyncio.run(ensure_topics(settings))
    with WorkerProcess(settings, tmp / "worker.log") as worker:
        worker.wait_healthy()
        asyncio.run(produce(settings, shop()))
        for user in SPECIAL:
            wait_for(lambda u=user: worker.get_json(f"/users/{q(u)}"), f"profile {user}", worker)
        yield worker
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(match=key_base(settings.redis_prefix) + "*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


def concrete(route: Any) -> str:
    user = "ghost" if route.method == "DELETE" else "bob"
    return route.path.replace("{user_id}", user).replace("{item_id}", "sku-zz")


def test_faust_pages_are_gone_and_every_route_needs_its_token(api: WorkerProcess) -> None:
    for path in ("/table/profiles", "/table/profiles/bob", "/table/", "/router/", "/",
                 "/graph", "/stats/"):  # fmt: skip
        status, _, body = api.call("GET", path)
        assert status == 404, (path, body)
    for route in ROUTES:
        path = concrete(route)
        body = {"PUT": b'{"hidden": false}', "POST": b"[]"}.get(route.method)
        good = [ADMIN_TOKEN] + ([PUBLIC_KEY] if route.scope == "public" else [])
        bad = [None, "wrong", ADMIN_TOKEN + "x"] + ([PUBLIC_KEY] if route.scope == "admin" else [])
        for token in good + ([] if route.scope != "open" else bad):
            status, _, text = api.call(route.method, path, token=token, body=body)
            assert status == 200, (route, token, text[:200])
        if route.scope == "open":
            continue
        for token in bad:
            status, headers, text = api.call(route.method, path, token=token, body=body)
            assert status == 401, (route, token, text[:200])
            assert headers["WWW-Authenticate"].split()[0] in ("Bearer", "Basic")
    assert api.call("GET", "/users/bob", token=ADMIN_TOKEN)[0] == 200  # not erased by the above


def test_openapi_json_is_served_and_host_and_origin_are_checked(api: WorkerProcess) -> None:
    doc = orjson.loads(api.call("GET", "/openapi.json")[2])
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == {
        (r.method, r.path) for r in ROUTES
    }
    assert api.call("GET", "/healthz", headers={"Host": "rebound.example"})[0] == 400
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    status, headers, _ = api.call("OPTIONS", "/recommendations/bob", headers=pre)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://shop.example"
    status, _, _ = api.call("GET", "/users/bob", token=ADMIN_TOKEN,
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert status == 403


def items(answer: bytes) -> list[str]:
    return [i["item_id"] for i in orjson.loads(answer)["items"]]


def test_category_and_exclude_filters(api: WorkerProcess) -> None:
    status, _, body = api.call("GET", "/items/sku-a/similar", token=PUBLIC_KEY)
    assert status == 200 and items(body)[0] == "sku-h", body
    _, _, body = api.call("GET", "/items/sku-a/similar?category=bags", token=PUBLIC_KEY)
    assert items(body) and {CATEGORY[i] for i in items(body)} == {"bags"}
    _, _, body = api.call("GET", "/items/sku-a/similar?exclude=sku-h&exclude=sku-b",
                          token=PUBLIC_KEY)  # fmt: skip
    assert items(body) and not {"sku-h", "sku-b"} & set(items(body))
    # bob's session: sku-c then sku-a: what follows sku-a comes first
    _, _, body = api.call("GET", "/recommendations/bob?k=3", token=PUBLIC_KEY)
    assert items(body)[0] == "sku-h", body
    _, _, body = api.call("GET", "/recommendations/bob?category=bags&k=5", token=PUBLIC_KEY)
    assert items(body) and {CATEGORY[i] for i in items(body)} == {"bags"}, body
    _, _, body = api.call("GET", "/recommendations/bob?exclude=sku-h", token=PUBLIC_KEY)
    assert "sku-h" not in items(body) and items(body)
    too_many = "&".join(f"exclude=i{n}" for n in range(101))
    assert api.call("GET", f"/recommendations/bob?{too_many}", token=PUBLIC_KEY)[0] == 400


async def test_a_hidden_item_is_never_recommended_also_in_published_recommendations(
    api: WorkerProcess,
) -> None:
    put = api.call("PUT", "/items/sku-h", token=ADMIN_TOKEN, body=b'{"hidden": true}')
    assert put[0] == 200 and orjson.loads(put[2]) == {"item_id": "sku-h", "hidden": True,
                                                       "changed": True}  # fmt: skip
    assert api.call("PUT", "/items/sku-h", token=ADMIN_TOKEN, body=b'{"hidden": 1}')[0] == 400
    try:
        assert "sku-h" not in items(api.call("GET", "/items/sku-a/similar", token=PUBLIC_KEY)[2])
        assert "sku-h" not in items(api.call("GET", "/recommendations/bob", token=PUBLIC_KEY)[2])
        # the worker's batch path: fresh sessions that view sku-a
        s = api.settings
        await produce(s, [view(f"late{n}", 20, "sku-a") for n in range(5)])
        recs = await consume(s.topic_recommendations, s, done=lambda out: {
            orjson.loads(r.value)["trigger_event_id"] for r in out} >= {
            f"late{n}-20" for n in range(5)})  # fmt: skip
        late = [orjson.loads(r.value) for r in recs
                if orjson.loads(r.value)["user_id"].startswith("late")]  # fmt: skip
        assert len(late) == 5 and all(r["items"] for r in late)
        assert all("sku-h" not in {i["item_id"] for i in r["items"]} for r in late), late
    finally:
        api.call("PUT", "/items/sku-h", token=ADMIN_TOKEN, body=b'{"hidden": false}')
    assert items(api.call("GET", "/items/sku-a/similar", token=PUBLIC_KEY)[2])[0] == "sku-h"


def forget(worker: WorkerProcess, user_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "forget", user_id],
        env=settings_env(worker.settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("user_id", list(SIBLING))
def test_forget_erases_exactly_the_id_given(api: WorkerProcess, user_id: str) -> None:
    assert api.call("GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN)[0] == 200
    proc = forget(api, user_id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"forgot {user_id}: profile 1, churn_track 1"), proc.stdout
    assert api.call("GET", f"/users/{q(user_id)}", token=ADMIN_TOKEN)[0] == 404
    sibling = SIBLING[user_id]
    if sibling is not None:  # what the unquoted URL named is still there
        assert api.call("GET", f"/users/{q(sibling)}", token=ADMIN_TOKEN)[0] == 200, sibling


def checkpoints(worker: WorkerProcess) -> list[tuple[str, int]]:
    folder = Path(worker.settings.data_dir) / "checkpoints"
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.ckpt"))


def test_forgetting_an_unknown_user_does_no_work_and_a_real_one_writes_a_checkpoint(
    api: WorkerProcess,
) -> None:
    before = checkpoints(api)
    for n in range(20):
        status, _, body = api.call("DELETE", f"/users/nobody-{n}", token=ADMIN_TOKEN)
        assert status == 200
        # before issue 16: stored_models 2 (every bundle re-pickled, signed and stored)
        assert set(orjson.loads(body)["removed"].values()) == {0}, body
    assert checkpoints(api) == before
    proc = forget(api, "100%")
    assert proc.returncode == 0, proc.stderr
    removed = dict(kv.rsplit(" ", 1) for kv in proc.stdout.split(": ", 1)[1].split(", "))
    assert int(removed["model_memory"]) > 0 and int(removed["stored_models"]) > 0, proc.stdout
    after = checkpoints(api)
    assert len(after) == 1 and after != before  # the older ones remembered the user
    assert forget(api, "100%").stdout.startswith("nothing was stored for 100%")
