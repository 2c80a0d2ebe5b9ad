"""CPU time of one analytic churn refit (``models.alive.fit``, 8 Newton steps as the worker's
``AliveModel`` does) at several sample sizes: synthetic ``(x, t_x, T)`` summaries, fixed
seed, the best of ``--repeat`` timings of ``--fits`` fits each (the least disturbed by other
work on the box). Run it from two checkouts to compare two versions of the fit:

    PYTHONPATH=. .venv/bin/python scripts/refit_cost.py --sizes 100 300 1000 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.alive import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 2000])
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    for n in args.sizes:
        x = rng.integers(0, 12, n)
        t_x = rng.random(n) * 300 * (x > 0)
        big_t = t_x + rng.random(n) * 300
        runs = []
        for _ in range(args.repeat):
            started = time.process_time()
            for _ in range(args.fits):
                fit(x, t_x, big_t, max_iter=8)
            runs.append((time.process_time() - started) / args.fits * 1e3)
        print(f"{n:>6} customers: {min(runs):6.1f} ms per refit (best of {args.repeat})")


if __name__ == "__main__":
    main()
