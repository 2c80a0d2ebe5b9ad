"""In-memory stand-ins for the worker's I/O (Kafka topics, the Faust table, Redis), so the
real :class:`~streams.worker.batch.BatchProcessor` can run in a unit test or a timing script.

Only I/O is faked: intake, classification, anomalies, profiles, churn, segments and the
publishing logic are the real code. The similarity store is a small deterministic model of
the Lua script's contract (offset fence per ``topic:partition``, per-session items, a
recommendation = the session's items, most recent first), not its scoring.

>>> import asyncio
>>> from streams.core.settings import Settings
>>> shop = fake_shop(Settings(max_events_per_min=0))
>>> proc = new_processor(shop)
>>> raw = b'{"event_id":"e1","type":"view","user_id":"u1","session_id":"s","item_id":"i",'
>>> asyncio.run(proc.process([message("t", 0, 0, b"u1", raw + b'"ts":1709283600000}')]))
>>> sorted(shop.profiles.data), len(topic_of(shop, "recommendations").sent)
(['u1'], 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from streams.core.settings import Settings
from streams.domain.kpis import KpiState, figures, kpi_record, step
from streams.telemetry import Telemetry
from streams.worker.context import ShopApp


@dataclass
class FakeTopic:
    name: str
    sent: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = field(
        default_factory=list
    )

    async def send(
        self, *, key: bytes | None = None, value: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:  # fmt: skip
        self.sent.append((key, value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done  # the delivery, already acknowledged

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class FakeTable:
    """The profile table: ``data`` plus the changelog records written (partition, key, value)."""

    data: dict[str, bytes] = field(default_factory=dict)
    changelog: list[tuple[int | None, Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def send_changelog(
        self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any
    ) -> None:
        self.changelog.append((partition, key, value))

    async def send_changelog_batch(self, records: Sequence[tuple[int, str, bytes]]) -> None:
        self.changelog.extend(records)


class FakeStore:
    """The similarity store's contract: fenced per ``topic:partition``; sessions of items."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.sessions: dict[str, list[str]] = {}
        self.learned: list[tuple[str, int, str]] = []  # (topic:partition, offset, event_id)

    async def learn_and_recommend(
        self, groups: Any, requests: Sequence[tuple[str, str]], k: int, guard: bytes = b""
    ) -> tuple[int, list[list[tuple[str, float]]]]:
        applied = 0
        for (topic, partition), records in groups.items():
            fence = f"{topic}:{partition}"
            for offset, e in records:
                if offset <= self.offsets.get(fence, -1):
                    continue
                self.offsets[fence] = offset
                applied += 1
                self.learned.append((fence, offset, e.event_id))
                if e.item_id and e.type in ("view", "add_to_cart", "purchase"):
                    items = self.sessions.setdefault(e.session_id, [])
                    items[:] = [e.item_id, *(i for i in items if i != e.item_id)][:20]
        recs = [
            [(item, 1.0 / (rank + 1)) for rank, item in enumerate(self.sessions.get(s, [])[:k])]
            for _, s in requests
        ]
        return applied, recs

    async def forget_user(self, user_id: str) -> int:
        return 0


class FakeKpis:
    """The KPI store's contract (streams.worker.kpi_store): the reference arithmetic of
    :func:`streams.domain.kpis.step`, fenced per ``source:partition``; alerts registered."""

    def __init__(self) -> None:
        self.state = KpiState()
        self.offsets: dict[str, int] = {}
        self.alerts: dict[str, Any] = {}
        self.kept: dict[str, Any] = {}

    async def keep_outcomes(self, outcomes: Any) -> None:
        self.kept.update({o["alert_id"]: o for o in outcomes})

    async def outcomes(self) -> dict[str, Any]:
        return dict(self.kept)

    async def forget_user(self, uid: str) -> int:
        named = [k for k, o in self.kept.items() if o["user_id"] == uid]
        for k in named:
            self.kept[k] = self.kept[k] | {"user_id": ""}
        return len(named)

    async def apply(
        self, valid: Any, alerts: Any = (), *, epoch: str = "", owners: Any = None,
        arm_of: Any = lambda _: "", shown: Any = (),
    ) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
        for a in alerts:
            self.alerts.setdefault(a["alert_id"], a)
        applied, days = 0, set()
        for rec, e in sorted(valid, key=lambda re: (re[0].source, re[0].partition, re[0].offset)):
            fence = f"{rec.source}:{rec.partition}"
            row = kpi_record(rec.offset, e, arm_of(e.user_id), shown=e.event_id in shown)
            if row is None:
                continue
            days.add(row[1])
            if rec.offset > self.offsets.get(fence, -1):
                self.offsets[fence] = rec.offset
                step(self.state, row)
                applied += 1
        return applied, [figures(d, self.state.days.get(d, {})) for d in sorted(days)]


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.ops = redis, []  # type: list[tuple[str, bool]]

    def set(self, key: str, value: Any, *, nx: bool = False, ex: int | None = None) -> None:
        self.ops.append((key, nx))

    def eval(self, *args: Any) -> None:
        self.ops.append(("", False))

    async def execute(self) -> list[bool]:
        out = []
        for key, nx in self.ops:
            new = not (nx and key in self.redis.keys)
            self.redis.keys.add(key)
            out.append(new)
        return out


class FakeRedis:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self)

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return [b"1" if k in self.keys else None for k in keys]

    async def delete(self, *keys: str) -> int:
        gone = [k for k in keys if k in self.keys]
        self.keys.difference_update(gone)
        return len(gone)


class FakeRuntime:
    ready = True
    epoch = ""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.redis = FakeRedis()
        self.kpis = FakeKpis()

    async def wait_ready(self) -> None:
        return None


class FakeProducer:
    async def flush(self) -> None:
        return None


def fake_shop(settings: Settings) -> ShopApp:
    """A :class:`ShopApp` whose topics, table and Redis are in memory (outputs go through
    the fake topics' ``send``: ``batch_produce`` off, there is no aiokafka producer)."""
    settings = settings.with_(batch_produce=False)
    consumer = SimpleNamespace(highwater=lambda tp: None)
    app = SimpleNamespace(producer=FakeProducer(), should_stop=False, consumer=consumer)
    topics = {
        name: FakeTopic(name)
        for name in (
            "events", "dlq", "recommendations", "churn_alerts", "segments", "anomalies", "kpis",
            "alert_outcomes",
        )
    }
    return ShopApp(
        settings=settings, app=app, events=topics["events"], dlq=topics["dlq"],  # type: ignore[arg-type]
        recommendations=topics["recommendations"], churn_alerts=topics["churn_alerts"],
        segments=topics["segments"], anomalies=topics["anomalies"], kpis=topics["kpis"],
        alert_outcomes=topics["alert_outcomes"], profiles=FakeTable(), runtime=FakeRuntime(),  # type: ignore[arg-type]
        telemetry=Telemetry(bucket_s=settings.dashboard_bucket_s),
    )  # fmt: skip


async def assign(proc: Any, redis: Any, log_start: int = 0) -> dict[int, Any]:
    """What an assignment of partition 0 does before its first batch, with ``redis`` a real
    client: the real ``Partitions.settle`` (the topic's identity and fences need Kafka and
    are skipped: tests/integration/test_fences.py covers them). Returns the partitions to
    read again (``Partitions.take_replays``)."""
    parts = proc.parts
    parts.shop.runtime.redis = redis

    async def claim_only(partitions: set[int]) -> None:
        await parts.sources.claim(redis, partitions)

    parts.check_sources = claim_only
    parts.note_log_starts({0: log_start})
    parts.on_assigned({0})
    await parts.plan_replays({0})
    await proc.prepare()
    replays: dict[int, Any] = parts.take_replays()
    return replays


def topic_of(shop: ShopApp, name: str) -> FakeTopic:
    """One of the shop's fake topics by field name (``"dlq"``, ``"recommendations"``...)."""
    topic = getattr(shop, name)
    assert isinstance(topic, FakeTopic)
    return topic


def new_processor(shop: ShopApp) -> Any:
    from streams.worker.batch import BatchProcessor

    return BatchProcessor(shop)


def keyed_messages(
    records: Sequence[tuple[int, bytes, bytes]], timestamp_s: float | None = None
) -> list[Any]:
    """:func:`message` of each ``(partition, key, value)`` on topic ``events``, with the
    offsets a Kafka partition would give them (0, 1, ... per partition, in order)."""
    offsets: dict[int, int] = {}
    out = []
    for p, key, value in records:
        out.append(message("events", p, offsets.get(p, 0), key, value, timestamp_s))
        offsets[p] = offsets.get(p, 0) + 1
    return out


def message(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
    timestamp_s: float | None = None,
) -> Any:  # fmt: skip
    """What Faust hands the agent for one record (the fields the worker reads); the record
    timestamp is in seconds, as Faust gives it (default: now)."""
    ts = time.time() if timestamp_s is None else timestamp_s
    msg = SimpleNamespace(
        topic=topic, partition=partition, offset=offset, timestamp=ts, tp=(topic, partition)
    )
    return SimpleNamespace(message=msg, key=key, value=value)
