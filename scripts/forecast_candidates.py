"""Experiment (docs/marketing.md): which River time-series model for the daily forecast?

On one transactions file, the same rolling-origin protocol as ``shopstream evaluate
forecast`` (origins after a 56-day warm-up, 7 days ahead, daily revenue): MAE of River's
SNARIMAX (a few weekly orders), of single Holt-Winters settings on the raw and on the
``log1p`` series, and of the shipped online selector (``models.forecast``) with several
``decay`` values, each next to seasonal naive on the same pairs.

    PYTHONPATH=. .venv/bin/python scripts/forecast_candidates.py FILE.csv
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from river import time_series

from models.forecast import Selector
from streams.tools.evaluate_forecast import daily_totals

H, WARMUP = 7, 56


def mae(y: list[float], model: Any, log: bool, forecast: Callable[[Any], list[float]]) -> float:
    """Rolling origins: forecast days t..t+H-1 from days < t, then learn day t."""
    errs = []
    for t, v in enumerate(y):
        if t >= WARMUP and t + H <= len(y):
            f = forecast(model)
            f = [max(math.expm1(min(x, 700.0)) if log else x, 0.0) for x in f]
            errs += [abs(f[h] - y[t + h]) for h in range(H)]
        model.learn_one(math.log1p(max(v, 0.0)) if log else v)
    return sum(errs) / len(errs)


def main() -> None:
    y = [rev for _, rev, _ in daily_totals(Path(sys.argv[1]))]
    naive = [abs(y[t + h - 7] - y[t + h]) for t in range(WARMUP, len(y) - H + 1) for h in range(H)]
    base = sum(naive) / len(naive)
    print(f"{len(y)} days, {len(naive)} (origin, day) pairs; seasonal naive MAE {base:.1f}")
    rows: list[tuple[str, float]] = []
    for p, q, sp, sq in ((1, 0, 1, 0), (1, 1, 1, 1), (2, 1, 1, 1), (7, 0, 1, 0)):
        for log in (False, True):
            m = time_series.SNARIMAX(p=p, d=0, q=q, m=7, sp=sp, sd=0, sq=sq)
            try:
                rows.append((f"SNARIMAX p={p} q={q} sp={sp} sq={sq} log={log}",
                             mae(y, m, log, lambda m: m.forecast(H))))  # fmt: skip
            except (OverflowError, ValueError) as exc:
                rows.append((f"SNARIMAX p={p} q={q} sp={sp} sq={sq} log={log} ({exc})", math.nan))
    for a, g in ((0.1, 0.1), (0.2, 0.2), (0.3, 0.05)):
        for log in (False, True):  # River's own start-up (the selector corrects it)
            m = time_series.HoltWinters(alpha=a, beta=0.01, gamma=g, seasonality=7)
            rows.append((f"River HoltWinters a={a} g={g} log={log}",
                         mae(y, m, log, lambda m: m.forecast(H))))  # fmt: skip
    for a, g, log in ((0.1, 0.1, False), (0.2, 0.2, False), (0.3, 0.05, True)):
        s = Selector(H, ((a, g, log),))
        rows.append((f"one member a={a} g={g} log={log} (corrected start-up)",
                     mae(y, _Learner(s), False, lambda s: s.sel.forecast())))  # fmt: skip
    rows += [(f"selector, 18 members, decay {decay}",
              mae(y, _Learner(Selector(H, decay=decay)), False, lambda s: s.sel.forecast()))
             for decay in (0.95, 0.97, 0.99, 0.995)]  # fmt: skip
    for name, v in rows:
        if not v < 1e12:  # a forecast that ran away
            print(f"{'diverged':>12}  {'':6}  {name}")
        else:
            print(f"{v:12.1f}  {1 - v / base:+.3f}  {name}")


class _Learner:
    """A selector with River's ``learn_one`` name."""

    def __init__(self, sel: Selector) -> None:
        self.sel = sel

    def learn_one(self, y: float) -> None:
        self.sel.learn(y)


if __name__ == "__main__":
    main()
