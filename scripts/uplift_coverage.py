"""Experiment (docs/marketing.md): how often does ``evaluate uplift``'s interval hold the truth?

Runs ``streams.tools.evaluate_uplift.evaluate`` for seeds 1..N at each true uplift and prints,
per uplift: how many 95 % intervals contain the true value (return rate) and the sample's
realised revenue effect, the mean estimate and interval width, the mean group sizes, and how
often the interval excludes 0 (the power to see the effect at all).

    PYTHONPATH=. .venv/bin/python scripts/uplift_coverage.py --users 1000 --seeds 20 0 0.1
"""

from __future__ import annotations

import argparse

from streams.tools.evaluate_uplift import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uplifts", nargs="+", type=float)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    for u in args.uplifts:
        runs = [evaluate(args.users, seed, u) for seed in range(1, args.seeds + 1)]
        n = len(runs)
        cover = sum(r["ci_low"] <= u <= r["ci_high"] for r in runs)
        rev = sum(r["revenue_ci_low"] <= r["realised_revenue_uplift"] <= r["revenue_ci_high"]
                  for r in runs)  # fmt: skip
        print(
            f"U={u:g}: {cover}/{n} intervals hold U; revenue {rev}/{n} hold the realised effect; "
            f"mean estimate {sum(r['uplift'] for r in runs) / n:+.4f}, mean width "
            f"{sum(r['ci_high'] - r['ci_low'] for r in runs) / n:.4f}; treated "
            f"{sum(r['n_treated'] for r in runs) / n:.0f}, held out "
            f"{sum(r['n_holdout'] for r in runs) / n:.0f} on average; 0 excluded in "
            f"{sum(r['ci_low'] > 0 or r['ci_high'] < 0 for r in runs)}/{n}"
        )


if __name__ == "__main__":
    main()
