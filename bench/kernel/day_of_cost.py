"""CPU per call of ``streams.domain.kpis.day_of`` (5% of the drain's busy samples, self)
against a per-day memo of the same function, on the benchmark's event times (no compiler:
the comparison a kernel has to beat). Alternating rounds, one process, medians.

    PYTHONPATH=. .venv/bin/python bench/kernel/day_of_cost.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from streams.domain.kpis import DAY_MS, day_of

EVENTS = Path(__file__).resolve().parents[2] / ".stack" / "bench"
_days: dict[int, str] = {}


def day_of_memo(ts_ms: int) -> str:
    n = ts_ms // DAY_MS
    day = _days.get(n)
    if day is None:
        day = _days[n] = day_of(ts_ms)
    return day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events-file", default=str(EVENTS / "events-u1200-s7.jsonl"))
    args = parser.parse_args()
    ts = [orjson.loads(line)["ts"] for line in Path(args.events_file).open("rb")]
    fns: dict[str, Callable[[int], str]] = {"day_of": day_of, "memo": day_of_memo}
    runs: dict[str, list[float]] = {k: [] for k in fns}
    days: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            started = time.process_time()
            days[name] = [fn(t) for t in ts]
            runs[name].append((time.process_time() - started) / len(ts) * 1e6)
    same = days["day_of"] == days["memo"]
    for name, r in runs.items():
        print(f"{name:<7} {statistics.median(r):.3f} µs per call "
              f"(rounds: {', '.join(f'{x:.3f}' for x in r)})")  # fmt: skip
    print(f"{len(ts)} event times; same days: {same}")


if __name__ == "__main__":
    main()
