"""CPU seconds of one origin's sales forecasts (``forecasts_for``), as the forecast child
makes them: 182 random days, the shop and 5 categories (6 scopes), best of ``--repeat``.

    PYTHONPATH=. .venv/bin/python scripts/forecast_cost.py --repeat 5
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.forecast import iso_day
from streams.domain.forecasts import HISTORY_DAYS, forecasts_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = 19_000
    days = [
        {
            "day": iso_day(n),
            "revenue": 500 + rng.random() * 300 + 100 * (n % 7 == 5),
            "orders": rng.randint(5, 30),
            "categories": {
                f"c{j}": {"revenue": rng.random() * 100, "purchases": rng.randint(0, 9)}
                for j in range(8)
            },
        }
        for n in range(start, start + HISTORY_DAYS)
    ]
    runs = []
    for _ in range(args.repeat):
        t = time.process_time()
        made = forecasts_for(days, start + HISTORY_DAYS, 5)
        runs.append(time.process_time() - t)
    print(f"{len(made)} scopes, {HISTORY_DAYS} days: CPU s per origin best {min(runs):.3f}, "
          f"runs {', '.join(f'{r:.3f}' for r in runs)}")  # fmt: skip


if __name__ == "__main__":
    main()
