"""``shopstream evaluate recs``: next-click evaluation of the similarity store.

Protocol: replay TRAIN in time order (learn only), then the TEST clicks in global time order
(sessions interleave): for each click whose session has a next click, rank the top k given the
session so far, current click included, and check the true next item (HR@k, MRR@k); then
learn the click. Our method runs the real :class:`~models.similarity.SimilarityStore` script
against redis-server under a private prefix (deleted afterwards); the baselines
(:mod:`.baselines`) run the same protocol in memory, on the same clicks, in the same run, and
each is compared with the store by a paired bootstrap over the predictions.

>>> ci = paired_bootstrap([1, 1, 0, 2], [1, 0, 0, 1], resamples=200)
>>> ci["hr"][0], ci["mrr"][0]
(0.25, 0.125)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.similarity import RecConfig, SimilarityStore
from streams.core.errors import StateUnavailable
from streams.tools.baselines import next_items, run_baseline
from streams.tools.clicks import Click, read_file
from streams.tools.evaluate_churn import Progress
from streams.tools.splits import by_time, diginetica_split, read_diginetica, session_split

BATCH = 1000


def load_split(
    train: Path | None = None, test: Path | None = None, *, diginetica: Path | None = None,
    holdout: float | None = None, min_support: int = 5,
) -> tuple[list[Click], list[Click], str]:
    """(train, test, description) from TRAIN and TEST files, from TRAIN alone with its last
    ``holdout`` share of sessions as the test, or from the Diginetica file (its documented
    split with items of >= ``min_support`` clicks; :mod:`.splits`)."""
    if diginetica is not None:
        tr, te = diginetica_split(read_diginetica(diginetica), min_support=min_support)
        return tr, te, f"diginetica {diginetica.name}, support >= {min_support}, last 20%"
    if train is None:
        raise ValueError("give --train (with --test or --holdout) or --diginetica")
    if test is not None:
        return by_time(read_file(train)), by_time(read_file(test)), f"{train.name} / {test.name}"
    if holdout is None:
        raise ValueError("give --test or --holdout with --train")
    tr, te = session_split(by_time(read_file(train)), holdout)
    return tr, te, f"{train.name}, last {holdout:.0%} of sessions"


def paired_bootstrap(
    ours: Sequence[int], theirs: Sequence[int], *, resamples: int = 2000, seed: int = 0
) -> dict[str, list[float]]:
    """Paired bootstrap of the differences ``ours - theirs`` of HR and MRR (ranks of the same
    predictions, 0 = miss): ``{"hr": [mean, lo, hi], "mrr": [...]}`` with a 95 % interval
    over ``resamples`` resamples of the predictions (fixed seed: reproducible)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("both rank lists must be non-empty and of the same length")
    diffs = {"hr": (a > 0) * 1.0 - (b > 0), "mrr": _rr(a) - _rr(b)}
    rng = np.random.default_rng(seed)
    n = a.size
    means: dict[str, list[np.ndarray]] = {"hr": [], "mrr": []}
    for done in range(0, resamples, 100):  # chunks keep the index matrix small
        idx = rng.integers(0, n, size=(min(100, resamples - done), n))
        for key, d in diffs.items():
            means[key].append(d[idx].mean(axis=1))
    out: dict[str, list[float]] = {}
    for key, d in diffs.items():
        lo, hi = np.percentile(np.concatenate(means[key]), [2.5, 97.5])
        out[key] = [float(d.mean()), float(lo), float(hi)]
    return out


def _rr(ranks: np.ndarray) -> np.ndarray:
    out = np.zeros_like(ranks)
    np.divide(1.0, ranks, out=out, where=ranks > 0)
    return out


async def _redis_cpu_s(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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
        ranks: list[int] = []
        shown: set[str] = set()
        total = len(train) + len(test)
        report = progress or (lambda done, total: None)
        cpu0, t_start = await _redis_cpu_s(client), time.perf_counter()
        no_targets = [""] * BATCH
        for j in range(0, len(train), BATCH):
            await store.evaluate_clicks("train", j, train[j : j + BATCH], no_targets, k)
            report(min(j + BATCH, len(train)), total)
        cpu1, t_test = await _redis_cpu_s(client), time.perf_counter()
        for j in range(0, len(test), BATCH):
            chunk = test[j : j + BATCH]
            _, got, covered = await store.evaluate_clicks(
                "test", j, chunk, targets[j : j + BATCH], k
            )
            shown.update(covered)
            ranks += got
            report(len(train) + j + len(chunk), total)
        t_end, cpu2 = time.perf_counter(), await _redis_cpu_s(client)
        catalogue = {c[1] for c in train} | {c[1] for c in test}
        n = len(ranks)
        return {
            "hr": sum(1 for r in ranks if r) / max(n, 1),
            "mrr": sum(1.0 / r for r in ranks if r) / max(n, 1),
            "n": n,
            "coverage": len(shown) / max(len(catalogue), 1),
            "clicks_per_s": (len(train) + len(test)) / max(t_end - t_start, 1e-9),
            "test_clicks_per_s": len(test) / max(t_end - t_test, 1e-9),
            # redis-server CPU (the whole server: exact only on a private one)
            "redis_cpu_us_per_train_click": (cpu1 - cpu0) * 1e6 / max(len(train), 1),
            "redis_cpu_us_per_test_click": (cpu2 - cpu1) * 1e6 / max(len(test), 1),
            "train_clicks": len(train),
            "test_clicks": len(test),
            "items": len(catalogue),
            "ranks": ranks,
        }
    finally:
        try:
            await store.delete_all()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass
        await client.aclose()


def evaluate(
    train: Sequence[Click],
    test: Sequence[Click],
    *,
    k: int,
    baselines: Sequence[str],
    redis_url: str,
    config: RecConfig,
    progress: Progress | None = None,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Run the evaluation on time-ordered clicks; returns {"hr", "mrr", "n", "coverage",
    "clicks_per_s", ..., "baselines": [{"name", "hr", "mrr", "n", "seconds", "store_gain"}]}
    where ``store_gain`` is :func:`paired_bootstrap` of the store against that baseline."""
    result = asyncio.run(_replay(redis_url, list(train), list(test), k, config, progress))
    ours = result.pop("ranks")
    result["k"] = k
    result["baselines"] = []
    for name in baselines:
        b = run_baseline(name, train, test, k)
        theirs = b.pop("ranks")
        if ours:
            b["store_gain"] = paired_bootstrap(ours, theirs, resamples=resamples)
        result["baselines"].append(b)
    return result
