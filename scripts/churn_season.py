"""Experiment (docs/churn.md "Long silences", third round): the annual-return layer's fitted
odds factor at a cutoff, and how many labels with the signal it was fitted on.

Replays each file to its cutoff exactly as ``shopstream evaluate churn`` does (one
partition, the worker's settings, horizon 90 days) and prints the layer's state.

    PYTHONPATH=. .venv/bin/python scripts/churn_season.py FILE.csv:2011-09-09 [FILE:CUTOFF ...]
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

from streams.core.settings import Settings
from streams.tools.evaluate_churn import eval_settings, read_transactions, score_at_cutoff

DAY = 86_400_000
HORIZON = 90.0


def main(specs: list[str]) -> None:
    for spec in specs:
        path, cutoff = spec.rsplit(":", 1)
        day = date.fromisoformat(cutoff)
        t = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY
        rows = [r for r in read_transactions(Path(path)) if r.ts_ms < t]
        run = score_at_cutoff(rows, t, eval_settings(Settings(), HORIZON), 1)
        layer = run.scorers[0].season
        labels = int(sum(map(sum, layer.counts[1])))
        name, prior = Path(path).name, layer.prior_odds
        sys.stdout.write(
            f"{name} {cutoff}: odds factor {layer.odds:.3f} (prior {prior:g}), "
            f"{labels} labels with the signal\n"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
