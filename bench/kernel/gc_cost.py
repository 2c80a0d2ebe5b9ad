"""How much of the batch's CPU per event is the cyclic garbage collector (a question the
kernel decision raised: the drain profile charges allocation sites such as ``day_of`` far
more than they cost alone). Alternating rounds in one process, the
``scripts/hotpath_cost.py`` batch (in-memory I/O, live envelopes on) with the collector as
it is and with ``gc.disable()`` during the run; medians of ``time.process_time``.

    PYTHONPATH=. .venv/bin/python bench/kernel/gc_cost.py --events 30000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
from pathlib import Path

from scripts.hotpath_cost import once

EVENTS = Path(__file__).resolve().parents[2] / ".stack" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--events-file", default=str(EVENTS / "events-u1200-s7.jsonl"))
    args = parser.parse_args()
    values = [line.rstrip(b"\n") for line in Path(args.events_file).open("rb")][: args.events]
    runs: dict[str, list[float]] = {"gc on": [], "gc off": []}
    results = {}
    for r in range(args.rounds):
        for mode in runs if r % 2 == 0 else list(runs)[::-1]:
            gc.collect()
            if mode == "gc off":
                gc.disable()
            counts = [s["collections"] for s in gc.get_stats()]
            cost, _, outputs, table = asyncio.run(
                once(50_000, values, argparse.Namespace(batch=300, partitions=4))
            )
            collections = [
                s["collections"] - c for s, c in zip(gc.get_stats(), counts, strict=True)
            ]
            gc.enable()
            runs[mode].append(cost)
            results[mode] = (outputs, table, collections)
    for mode, costs in runs.items():
        print(f"{mode:<7} {statistics.median(costs):6.1f} µs CPU per event "
              f"(rounds: {', '.join(f'{c:.1f}' for c in costs)}); collections per generation "
              f"in the last run {results[mode][2]}")  # fmt: skip
    same = results["gc on"][:2] == results["gc off"][:2]
    print(f"{len(values)} events; outputs and table identical: {same}")


if __name__ == "__main__":
    main()
