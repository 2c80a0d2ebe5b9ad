"""``shopstream evaluate recs``: next-click evaluation of the similarity store.

Protocol: replay TRAIN in time order (learn only), then the TEST clicks in global time order
(sessions interleave): for each click whose session has a next click, rank the top k given the
session so far, current click included, and check the true next item (HR@k, MRR@k); then
learn the click. Our method runs the real :class:`~models.similarity.SimilarityStore` script
against redis-server under a private prefix (deleted afterwards); the baselines run the same
protocol in memory.

>>> next_items([("s1", "a", 1), ("s2", "x", 2), ("s1", "b", 3)])
['b', '', '']
>>> ar = AssociationRules(); ar.learn("s", "a"); ar.learn("s", "b"); ar.learn("s", "a")
>>> ar.rank("a", 5)
['b', 'a']
"""

from __future__ import annotations

import asyncio
import heapq
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.similarity import RecConfig, SimilarityStore
from streams.core.errors import StateUnavailable
from streams.tools.clicks import Click, read_file
from streams.tools.evaluate_churn import Progress

BATCH = 1000


def by_time(clicks: Sequence[Click]) -> list[Click]:
    """Stable sort by event time (file order breaks ties)."""
    return sorted(clicks, key=lambda c: c[2])


def next_items(clicks: Sequence[Click]) -> list[str]:
    """For each click, the next item of its session ('' for the last click of a session)."""
    out = [""] * len(clicks)
    following: dict[str, str] = {}
    for j in range(len(clicks) - 1, -1, -1):
        session, item, _ = clicks[j]
        out[j] = following.get(session, "")
        following[session] = item
    return out


class Baseline(Protocol):
    def learn(self, session: str, item: str) -> None: ...
    def rank(self, item: str, k: int) -> list[str]: ...


class Popular:
    """Most clicked items so far."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def learn(self, session: str, item: str) -> None:
        self.counts[item] += 1

    def rank(self, item: str, k: int) -> list[str]:
        return [i for i, _ in self.counts.most_common(k)]


class AssociationRules:
    """Association rules on the last item: counts of ordered pairs (a before b) in a session,
    repeat clicks included; rank by count (ties: first seen)."""

    def __init__(self) -> None:
        self.pairs: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.history: defaultdict[str, list[str]] = defaultdict(list)

    def learn(self, session: str, item: str) -> None:
        hist = self.history[session]
        for a in hist:
            self.pairs[a][item] += 1
        hist.append(item)

    def rank(self, item: str, k: int) -> list[str]:
        row = self.pairs.get(item)
        if not row:
            return []
        return [i for i, _ in heapq.nlargest(k, row.items(), key=lambda kv: kv[1])]


def run_baseline(
    name: Literal["pop", "ar"], train: Sequence[Click], test: Sequence[Click], k: int
) -> dict[str, Any]:
    """HR@k and MRR@k of a baseline under the same predict-then-learn protocol."""
    model: Baseline = Popular() if name == "pop" else AssociationRules()
    for session, item, _ in train:
        model.learn(session, item)
    hits, rr, n = 0, 0.0, 0
    for (session, item, _), target in zip(test, next_items(test), strict=True):
        if target:
            n += 1
            top = model.rank(item, k)
            if target in top:
                hits += 1
                rr += 1.0 / (top.index(target) + 1)
        model.learn(session, item)
    return {"name": name, "hr": hits / max(n, 1), "mrr": rr / max(n, 1), "n": n}


async def _replay(
    redis_url: str, train: list[Click], test: list[Click], k: int, config: RecConfig,
    progress: Progress | None,
) -> dict[str, Any]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    store = SimilarityStore(client, prefix=f"eval-{uuid.uuid4().hex[:12]}", config=config)
    try:
        try:
            await client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StateUnavailable(
                f"cannot reach Redis ({exc}); start it with `make up`"
            ) from exc
        targets = next_items(test)
        hits, rr, n = 0, 0.0, 0
        shown: set[str] = set()
        total = len(train) + len(test)
        report = progress or (lambda done, total: None)
        t_start = time.perf_counter()
        no_targets = [""] * BATCH
        for j in range(0, len(train), BATCH):
            await store.evaluate_clicks("train", j, train[j : j + BATCH], no_targets, k)
            report(min(j + BATCH, len(train)), total)
        t_test = time.perf_counter()
        for j in range(0, len(test), BATCH):
            chunk = test[j : j + BATCH]
            _, ranks, covered = await store.evaluate_clicks(
                "test", j, chunk, targets[j : j + BATCH], k
            )
            shown.update(covered)
            n += len(ranks)
            hits += sum(1 for r in ranks if r)
            rr += sum(1.0 / r for r in ranks if r)
            report(len(train) + j + len(chunk), total)
        t_end = time.perf_counter()
        catalogue = {c[1] for c in train} | {c[1] for c in test}
        return {
            "hr": hits / max(n, 1),
            "mrr": rr / max(n, 1),
            "n": n,
            "coverage": len(shown) / max(len(catalogue), 1),
            "clicks_per_s": (len(train) + len(test)) / max(t_end - t_start, 1e-9),
            "test_clicks_per_s": len(test) / max(t_end - t_test, 1e-9),
            "train_clicks": len(train),
            "test_clicks": len(test),
            "items": len(catalogue),
        }
    finally:
        try:
            await store.delete_all()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass
        await client.aclose()


def evaluate(
    train: Path,
    test: Path,
    *,
    k: int,
    baseline: Literal["pop", "ar"] | None,
    redis_url: str,
    config: RecConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the evaluation; returns {"hr","mrr","n","coverage","clicks_per_s","baseline",...}."""
    tr, te = by_time(read_file(train)), by_time(read_file(test))
    result = asyncio.run(_replay(redis_url, tr, te, k, config, progress))
    result["k"] = k
    result["baseline"] = None if baseline is None else run_baseline(baseline, tr, te, k)
    return result
