"""``shopstream evaluate churn``: replay a transaction history up to a cutoff, then score.

The CSV has a header with ``user_id,timestamp,amount`` (other columns are ignored);
``timestamp`` is an ISO date (midnight UTC) or datetime (no zone means UTC). The cutoff day
is part of the history: history is ``ts < T`` with ``T`` = the midnight *after* the cutoff
date, and a customer's truth is "no purchase in ``[T, T + H)``".

Honesty is structural: the file is split once into the history (replayed through the same
:mod:`streams.domain.profile`, :mod:`streams.domain.churn` and :mod:`models.churn` code as the live
worker) and, for rows at or after ``T``, only the *set of users* who purchase within the
horizon. Scores are computed from the replay alone, before the truth is even looked at.

>>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.75
>>> average_precision([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.8333333333333333
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka.partitioner import murmur2

from models.churn import ChurnModel, ModelKind
from streams.core.errors import InputError
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.churn import advance, step
from streams.domain.churn_state import ChurnConfig, ChurnState
from streams.domain.profile import DAY_MS, Profile, features

#: (rows replayed, rows in all): how long tools report progress to the command line
Progress = Callable[[int, int], None]


class TransactionsError(InputError):
    """The transactions file is unreadable or has a bad row (the message names the line)."""


class Row(NamedTuple):
    user_id: str
    ts_ms: int
    amount: float
    line: int


def _parse_ts(text: str) -> int:
    text = text.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
    else:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def read_transactions(path: Path) -> list[Row]:
    """Parse the CSV; raise :class:`TransactionsError` naming the line of a bad row."""
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise TransactionsError(f"{path}: cannot open ({exc.strerror})") from exc
    rows: list[Row] = []
    with fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "timestamp", "amount"} - set(reader.fieldnames or ())
        if missing:
            raise TransactionsError(f"{path}:1: header lacks column(s) {sorted(missing)}")
        for rec in reader:
            line = reader.line_num
            user = (rec.get("user_id") or "").strip()
            if not user:
                raise TransactionsError(f"{path}:{line}: empty user_id")
            try:
                ts = _parse_ts(rec.get("timestamp") or "")
            except ValueError:
                raise TransactionsError(
                    f"{path}:{line}: timestamp {rec.get('timestamp')!r} is not an ISO date/time"
                ) from None
            try:
                amount = float(rec.get("amount") or "")
            except ValueError:
                raise TransactionsError(
                    f"{path}:{line}: amount {rec.get('amount')!r} is not a number"
                ) from None
            if not math.isfinite(amount):
                raise TransactionsError(f"{path}:{line}: amount {amount} is not finite")
            rows.append(Row(user, ts, amount, line))
    return rows


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Exact ROC AUC (Mann-Whitney, ties count half); NaN if a class is missing."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return math.nan
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        rank_sum += mid * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """PR AUC as average precision (tied scores are taken as one step)."""
    pos = sum(labels)
    if not pos:
        return math.nan
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    ap, tp, seen, i = 0.0, 0, 0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        hits = sum(labels[order[k]] for k in range(i, j + 1))
        tp, seen = tp + hits, seen + (j - i + 1)
        ap += hits * (tp / seen)
        i = j + 1
    return ap / pos  # divided once: all-positive data gives exactly 1.0


def replay_history(
    history: Sequence[Row],
    cutoff_ms: int,
    cfg: ChurnConfig,
    model: ChurnModel,
    on_row: Callable[[], None] | None = None,
) -> dict[str, Profile]:
    """Replay rows strictly before ``cutoff_ms`` in event time; labels are learned online."""
    assert all(r.ts_ms < cutoff_ms for r in history), "a row at/after the cutoff was replayed"
    state = ChurnState()
    profiles: dict[str, Profile] = {}
    for r in sorted(history, key=lambda r: (r.ts_ms, r.line)):
        amount = max(r.amount, 0.0)  # refunds (negative amounts) still count as contact
        ev = Event(f"l{r.line}", "purchase", r.user_id, f"{r.user_id}:{r.ts_ms}", r.ts_ms,
                   item_id="-", price=amount, quantity=1)  # fmt: skip
        profiles[r.user_id], _, _ = step(
            state, profiles.get(r.user_id), ev, model, cfg, profiles.get
        )
        if on_row is not None:
            on_row()
    advance(state, cutoff_ms - 1, profiles.get, model, cfg)
    return profiles


def score_at_cutoff(
    history: Sequence[Row], cutoff_ms: int, horizon_days: float, kind: ModelKind = "logistic",
    on_row: Callable[[], None] | None = None, partitions: int = 1,
) -> tuple[dict[str, tuple[float, float]], list[ChurnModel]]:  # fmt: skip
    """``{user: (P(churn), days since last purchase)}`` at the cutoff, and the models.

    With ``partitions`` > 1 the users are split as the worker sees them (Kafka's key
    partitioner on the user id) and each partition has its own model, learning only from
    its own users' labels, like the worker's per-partition models.
    """
    cfg = ChurnConfig.from_settings(
        Settings(), horizon_days=horizon_days, idle_days=min(14.0, horizon_days / 2), alerts=False
    )
    groups: dict[int, list[Row]] = {}
    for r in history:
        groups.setdefault(partition_of(r.user_id, partitions), []).append(r)
    models = {p: ChurnModel(kind) for p in range(partitions)}
    scores: dict[str, tuple[float, float]] = {}
    for p, rows in sorted(groups.items()):
        profiles = replay_history(rows, cutoff_ms, cfg, models[p], on_row)
        for uid in sorted(profiles):
            x = features(profiles[uid], cutoff_ms)
            scores[uid] = (models[p].predict_proba_one(x), x["recency_days"])
    return dict(sorted(scores.items())), [models[p] for p in range(partitions)]


def partition_of(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by ``user_id``.

    >>> [partition_of(u, 4) for u in ("u00001", "u00002", "u00003")]
    [1, 0, 3]
    """
    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def evaluate(
    transactions: Path, cutoff: date, horizon_days: float, progress: Progress | None = None,
    partitions: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Replay up to the cutoff, score every customer seen, compare with the truth."""
    if horizon_days <= 0:
        raise TransactionsError("horizon_days must be positive")
    if partitions < 1:
        raise TransactionsError("partitions must be at least 1")
    rows = read_transactions(transactions)
    t_ms = int(datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC).timestamp() * 1000)
    t_ms += DAY_MS  # the cutoff day belongs to the history
    end_ms = t_ms + int(horizon_days * DAY_MS)
    history = [r for r in rows if r.ts_ms < t_ms]
    returning = {r.user_id for r in rows if t_ms <= r.ts_ms < end_ms}  # only users, no values
    del rows
    if not history:
        raise TransactionsError(f"{transactions}: no transactions before the cutoff {cutoff}")
    done = [0]

    def on_row() -> None:
        done[0] += 1
        if progress is not None and done[0] % 1000 == 0:
            progress(done[0], len(history))

    scores, models = score_at_cutoff(
        history, t_ms, horizon_days, partitions=partitions, on_row=on_row
    )
    users = sorted(scores)
    truth = [u not in returning for u in users]
    p = [scores[u][0] for u in users]
    rec = [scores[u][1] for u in users]
    learned = sum(m.n_learned for m in models)
    # progressive metrics of several models: their mean, weighted by labels learned
    live = {
        k: sum(m.metrics[k] * m.n_learned for m in models if m.n_learned) / learned
        if learned else math.nan
        for k in ("auc", "log_loss")
    }  # fmt: skip
    return {
        "auc": roc_auc(p, truth),
        "pr_auc": average_precision(p, truth),
        "baseline_auc": roc_auc(rec, truth),
        "baseline_pr_auc": average_precision(rec, truth),
        "n": len(users),
        "positives": sum(truth),
        "positive_rate": sum(truth) / len(users),
        "cutoff": cutoff.isoformat(),
        "history_end": datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat(),
        "horizon_days": horizon_days,
        "history_rows": len(history),
        "labels_learned": learned,
        "partitions": partitions,
        "progressive_auc": live["auc"],
        "progressive_log_loss": live["log_loss"],
        "model_version": models[0].model_version,
    }
