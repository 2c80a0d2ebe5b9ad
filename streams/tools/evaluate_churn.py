"""``shopstream evaluate churn``: replay a transaction history up to a cutoff, then score.

The CSV has a header with ``user_id,timestamp,amount`` (other columns are ignored);
``timestamp`` is an ISO date (midnight UTC) or datetime (no zone means UTC). The cutoff day
is part of the history: history is ``ts < T`` with ``T`` = the midnight *after* the cutoff
date, and a customer's truth is "no purchase in ``[T, T + H)``".

Honesty is structural: the file is split once into the history (replayed through the same
:mod:`streams.domain.profile`, :mod:`streams.domain.churn` and :mod:`models.guarded` code as
the live worker, configured from the same :class:`Settings`) and, for rows at or after
``T``, only the *set of users* who purchase within the horizon. Scores are computed from
the replay alone, before the truth is even looked at. Reported: the alert score (each
partition's champion), the analytic and the learned scorer and recency, each with ROC AUC
(overall and per recency bucket), PR AUC and Brier score, and precision/recall/F1 of the
alerts the worker sent for each customer's current silence.

>>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.75
>>> average_precision([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.8333333333333333
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka.partitioner import murmur2

from models.guarded import GuardedChurn
from streams.core.errors import InputError
from streams.core.events import Event
from streams.core.payloads import ChurnAlert
from streams.core.settings import Settings
from streams.domain.alerts import alert_id
from streams.domain.churn import advance, alert_score, model_features, step
from streams.domain.churn_state import ChurnConfig, ChurnState
from streams.domain.profile import DAY_MS, Profile, season_return
from streams.tools.churn_metrics import (
    average_precision,
    brier,
    by_bucket,
    min_bucket_auc,
    prf,
    roc_auc,
)
from streams.worker.configs import churn_scorers

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


@dataclass(slots=True)
class Scored:
    """One customer at the cutoff: what each scorer says, recency, alerted this silence."""

    alert: float  # the champion's P(churn): what alerts use
    analytic: float
    learned: float
    recency_days: float
    alerted: bool


@dataclass(slots=True)
class Replayed:
    """A replay to the cutoff: every customer scored, and each partition's scorers."""

    scores: dict[str, Scored]
    scorers: list[GuardedChurn]
    alerts_sent: int


def eval_settings(settings: Settings, horizon_days: float) -> Settings:
    """The worker's settings with the evaluated horizon (and idle days below it)."""
    return settings.with_(
        churn_horizon_days=horizon_days,
        churn_idle_days=min(settings.churn_idle_days, horizon_days / 2),
    )


def replay_history(
    history: Sequence[Row], cutoff_ms: int, cfg: ChurnConfig, scorer: GuardedChurn,
    on_row: Callable[[], None] | None = None,
) -> tuple[dict[str, Profile], ChurnState, list[ChurnAlert]]:  # fmt: skip
    """Replay rows strictly before ``cutoff_ms`` in event time through the worker's churn
    step; labels are learned online, alerts collected."""
    assert all(r.ts_ms < cutoff_ms for r in history), "a row at/after the cutoff was replayed"
    state = ChurnState()
    profiles: dict[str, Profile] = {}
    alerts: list[ChurnAlert] = []
    for r in sorted(history, key=lambda r: (r.ts_ms, r.line)):
        amount = max(r.amount, 0.0)  # refunds (negative amounts) still count as contact
        ev = Event(f"l{r.line}", "purchase", r.user_id, f"{r.user_id}:{r.ts_ms}", r.ts_ms,
                   item_id="-", price=amount, quantity=1)  # fmt: skip
        if ev.ts_ms > state.clock_ms:  # as the worker does (streams.worker.users): the
            # timers due before the event first, so the analytic fit refits at the same instants
            alerts += advance(state, ev.ts_ms - 1, profiles.get, scorer, cfg)[0]
        profiles[r.user_id], sent, _ = step(
            state, profiles.get(r.user_id), ev, scorer, cfg, profiles.get
        )
        alerts += sent
        if on_row is not None:
            on_row()
    alerts += advance(state, cutoff_ms - 1, profiles.get, scorer, cfg)[0]
    return profiles, state, alerts


def score_at_cutoff(
    history: Sequence[Row], cutoff_ms: int, settings: Settings, partitions: int = 1,
    on_row: Callable[[], None] | None = None,
) -> Replayed:  # fmt: skip
    """Every customer at the cutoff, scored as the worker would score them.

    With ``partitions`` > 1 the users are split as the worker sees them (Kafka's key
    partitioner on the user id) and each partition has its own scorers, learning only from
    its own users, like the worker's per-partition bundles.
    """
    cfg = ChurnConfig.from_settings(settings)
    groups: dict[int, list[Row]] = {}
    for r in history:
        groups.setdefault(partition_of(r.user_id, partitions), []).append(r)
    scorers = [churn_scorers(settings) for _ in range(partitions)]
    scores: dict[str, Scored] = {}
    sent = 0
    for p, rows in sorted(groups.items()):
        scorer = scorers[p]
        profiles, state, alerts = replay_history(rows, cutoff_ms, cfg, scorer, on_row)
        sent += len(alerts)
        ids = {a["alert_id"] for a in alerts}
        for uid in sorted(profiles):
            prof = profiles[uid]
            prob, _, f, _ = alert_score(scorer, prof, cutoff_ms)
            x, _, s = model_features(scorer, prof, cutoff_ms)
            season = season_return(prof, cutoff_ms, scorer.horizon_days)
            silence = state.users[uid].last_seen_ms  # alerted for the current silence?
            scores[uid] = Scored(  # both scorers as alerts would use them: with the season
                alert=prob, analytic=scorer.adjust(scorer.analytic(s), season),
                learned=scorer.adjust(scorer.model.predict_proba_one(x), season),
                recency_days=f["recency_days"], alerted=alert_id(uid, silence) in ids,
            )  # fmt: skip
    return Replayed(dict(sorted(scores.items())), scorers, sent)


def partition_of(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by ``user_id``.

    >>> [partition_of(u, 4) for u in ("u00001", "u00002", "u00003")]
    [1, 0, 3]
    """
    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def evaluate(
    transactions: Path, cutoff: date, horizon_days: float, progress: Progress | None = None,
    partitions: int = 1, settings: Settings | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Replay up to the cutoff with the worker's churn settings, score every customer seen,
    compare with the truth: the alert score (each partition's champion), the analytic and
    the learned scorer, and recency, overall and per recency bucket; and the alerts the
    worker sent for each customer's current silence."""
    if horizon_days <= 0:
        raise TransactionsError("horizon_days must be positive")
    if partitions < 1:
        raise TransactionsError("partitions must be at least 1")
    settings = eval_settings(settings or Settings(), horizon_days)
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

    run = score_at_cutoff(history, t_ms, settings, partitions, on_row)
    users = list(run.scores)
    sc = [run.scores[u] for u in users]
    truth = [u not in returning for u in users]
    alert = [s.alert for s in sc]
    analytic = [s.analytic for s in sc]
    learned = [s.learned for s in sc]
    rec = [s.recency_days for s in sc]
    buckets = by_bucket(rec, truth, {"alert": alert, "analytic": analytic, "learned": learned,
                                     "recency": rec})  # fmt: skip
    scorers = run.scorers
    learned_n = sum(g.model.n_learned for g in scorers)
    live = {  # the learned models' progressive metrics: their mean, weighted by labels
        k: sum(g.model.metrics[k] * g.model.n_learned for g in scorers if g.model.n_learned)
        / learned_n if learned_n else math.nan
        for k in ("auc", "log_loss")
    }  # fmt: skip
    churned = {u for u, y in zip(users, truth, strict=True) if y}
    auc = roc_auc(alert, truth)
    baseline = roc_auc(rec, truth)
    return {
        "auc": auc,
        "pr_auc": average_precision(alert, truth),
        "baseline_auc": baseline,
        "baseline_pr_auc": average_precision(rec, truth),
        "lift": auc - baseline,
        "analytic_auc": roc_auc(analytic, truth),
        "learned_auc": roc_auc(learned, truth),
        "brier": brier(alert, truth),
        "analytic_brier": brier(analytic, truth),
        "learned_brier": brier(learned, truth),
        "buckets": buckets,
        "min_bucket_auc": min_bucket_auc(buckets),
        "alerts": {
            "threshold": settings.churn_threshold,
            "idle_days": settings.churn_idle_days,
            "sent": run.alerts_sent,
            **prf({u for u, s in zip(users, sc, strict=True) if s.alerted}, churned),
        },
        "champions": [g.champion for g in scorers],
        "n": len(users),
        "positives": sum(truth),
        "positive_rate": sum(truth) / len(users),
        "cutoff": cutoff.isoformat(),
        "history_end": datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat(),
        "horizon_days": horizon_days,
        "history_rows": len(history),
        "labels_learned": learned_n,
        "partitions": partitions,
        "progressive_auc": live["auc"],
        "progressive_log_loss": live["log_loss"],
        "model_version": ", ".join(sorted({g.model_version for g in scorers})),
    }
