"""``shopstream evaluate recs``: next-click evaluation of the similarity store (DESIGN §5).

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
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
import redis.asyncio as aioredis
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from models.similarity import RecConfig, SimilarityStore
from models.tsv import Click, read_file
from streams.errors import ShopstreamError, StateUnavailable

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
    progress: bool,
) -> dict[str, Any]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    store = SimilarityStore(client, prefix=f"eval-{uuid.uuid4().hex[:12]}", config=config)
    try:
        try:
            await client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StateUnavailable(
                f"cannot reach Redis at {redis_url} ({exc}); start it with `make up`"
            ) from exc
        targets = next_items(test)
        hits, rr, n = 0, 0.0, 0
        shown: set[str] = set()
        console = Console(stderr=True)
        with Progress(console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task("replay", total=len(train) + len(test))
            t_start = time.perf_counter()
            no_targets = [""] * BATCH
            for j in range(0, len(train), BATCH):
                await store.evaluate_clicks("train", j, train[j : j + BATCH], no_targets, k)
                bar.advance(task, len(train[j : j + BATCH]))
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
                bar.advance(task, len(chunk))
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
    progress: bool,
) -> dict[str, Any]:
    """Run the evaluation; returns {"hr","mrr","n","coverage","clicks_per_s","baseline",...}."""
    tr, te = by_time(read_file(train)), by_time(read_file(test))
    result = asyncio.run(_replay(redis_url, tr, te, k, config, progress))
    result["k"] = k
    result["baseline"] = None if baseline is None else run_baseline(baseline, tr, te, k)
    return result


def _table(r: dict[str, Any]) -> Table:
    t = Table(title=f"next-click evaluation @ {r['k']} ({r['n']} predictions)")
    for col in ("method", f"HR@{r['k']}", f"MRR@{r['k']}"):
        t.add_column(col)
    t.add_row("similarity store (Redis)", f"{r['hr']:.4f}", f"{r['mrr']:.4f}")
    if r["baseline"]:
        b = r["baseline"]
        t.add_row(f"baseline {b['name']}", f"{b['hr']:.4f}", f"{b['mrr']:.4f}")
    t.caption = (
        f"coverage {r['coverage']:.3f} · {r['clicks_per_s']:,.0f} clicks/s overall · "
        f"{r['test_clicks_per_s']:,.0f} clicks/s score-then-learn"
    )
    return t


_TRAIN = typer.Option(..., exists=True, dir_okay=False, help="Train TSV: SessionId ItemId Time.")
_TEST = typer.Option(..., exists=True, dir_okay=False, help="Test TSV: SessionId ItemId Time.")


def recs_command(
    train: Path = _TRAIN,
    test: Path = _TEST,
    k: int = typer.Option(20, min=1, help="Length of the ranked list."),
    baseline: str = typer.Option("ar", help="Baseline in the same run: pop, ar or none."),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", envvar="SHOPSTREAM_REDIS_URL", help="Redis to replay against."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Replay TRAIN then TEST through the similarity store and report HR@k and MRR@k."""
    if baseline not in ("pop", "ar", "none"):
        raise typer.BadParameter("must be pop, ar or none", param_hint="--baseline")
    chosen: Literal["pop", "ar"] | None = None if baseline == "none" else baseline  # type: ignore[assignment]
    try:
        result = evaluate(
            train, test, k=k, baseline=chosen, redis_url=redis_url, config=RecConfig(),
            progress=sys.stderr.isatty(),
        )
    except ShopstreamError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if json_out:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        Console().print(_table(result))


if __name__ == "__main__":  # pragma: no cover
    typer.run(recs_command)
