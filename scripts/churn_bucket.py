"""Experiment (docs/churn.md "Long silences"): where a recency bucket's ROC AUC comes from.

Replays the file to the cutoff exactly as ``shopstream evaluate churn`` does (same code, same
settings), then splits the customers of one recency bucket into those who bought once and
those who bought more than once, and prints ROC AUC of the alert score, the analytic and the
learned scorer, and of the raw signals (silence, spend, orders), within each group and over
the pairs across the two groups. Signals are oriented "higher = more likely gone".

    PYTHONPATH=. .venv/bin/python scripts/churn_bucket.py FILE.csv 2011-09-09 90 [PARTS] [LOW]
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

from streams.core.settings import Settings
from streams.tools.churn_metrics import roc_auc
from streams.tools.evaluate_churn import eval_settings, read_transactions, score_at_cutoff

DAY = 86_400_000
ORDER_GAP = 3_600_000  # purchases closer than this are one order (as in profiles)


def cross_auc(scores: list[float], truth: list[bool], group: list[bool]) -> float:
    """AUC over the (gone, back) pairs whose two customers are in different groups."""
    pairs = wins = 0.0
    gone = [(s, g) for s, y, g in zip(scores, truth, group, strict=True) if y]
    back = [(s, g) for s, y, g in zip(scores, truth, group, strict=True) if not y]
    for s1, g1 in gone:
        for s0, g0 in back:
            if g1 != g0:
                pairs += 1
                wins += 1.0 if s1 > s0 else 0.5 if s1 == s0 else 0.0
    return wins / pairs if pairs else float("nan")


def main(path: str, cutoff: str, horizon: float, partitions: int, low: float) -> None:
    day = date.fromisoformat(cutoff)
    t = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY
    rows = read_transactions(Path(path))
    history = [r for r in rows if r.ts_ms < t]
    back = {r.user_id for r in rows if t <= r.ts_ms < t + horizon * DAY}
    run = score_at_cutoff(history, t, eval_settings(Settings(), horizon), partitions)
    orders: dict[str, list[int]] = {}
    spend: dict[str, float] = {}
    for r in sorted(history, key=lambda r: r.ts_ms):
        o = orders.setdefault(r.user_id, [])
        if not o or r.ts_ms > o[-1] + ORDER_GAP:
            o.append(r.ts_ms)
        spend[r.user_id] = spend.get(r.user_id, 0.0) + max(r.amount, 0.0)
    users = [u for u, s in run.scores.items() if s.recency_days >= low]
    truth = [u not in back for u in users]
    once = [len(orders[u]) == 1 for u in users]
    cols = {
        "alert": [run.scores[u].alert for u in users],
        "analytic": [run.scores[u].analytic for u in users],
        "learned": [run.scores[u].learned for u in users],
        "silence": [run.scores[u].recency_days for u in users],
        "spend": [-spend[u] for u in users],
        "orders": [-float(len(orders[u])) for u in users],
    }
    out = sys.stdout.write
    out(f"{Path(path).name} cutoff {cutoff} H={horizon:g} partitions {partitions}: "
        f"{len(users)} customers silent >= {low:g} days, {sum(truth)} gone\n")  # fmt: skip
    for name, keep in (("bought once", True), ("bought more than once", False)):
        idx = [i for i, o in enumerate(once) if o == keep]
        y = [truth[i] for i in idx]
        gone = sum(y) / len(y) if y else float("nan")
        aucs = "  ".join(f"{k} {roc_auc([v[i] for i in idx], y):.3f}" for k, v in cols.items())
        out(f"  {name:22s} n={len(idx):5d} gone {gone:.3f}  {aucs}\n")
    aucs = "  ".join(f"{k} {cross_auc(v, truth, once):.3f}" for k, v in cols.items())
    out(f"  {'across the two groups':22s}                    {aucs}\n")
    aucs = "  ".join(f"{k} {roc_auc(v, truth):.3f}" for k, v in cols.items())
    out(f"  {'the bucket':22s} n={len(users):5d} gone {sum(truth) / len(truth):.3f}  {aucs}\n")


if __name__ == "__main__":
    a = sys.argv
    main(a[1], a[2], float(a[3]), int(a[4]) if len(a) > 4 else 1,
         float(a[5]) if len(a) > 5 else 200.0)  # fmt: skip
