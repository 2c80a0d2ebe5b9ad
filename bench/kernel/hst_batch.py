"""The typed HST kernel's effect on the whole batch, in one process: rounds alternate
between the pure-Python methods and the kernel's (``install``/``uninstall`` swap them at
run time, so both sides share one interpreter and heap), ``scripts/hotpath_cost.py``'s
batch on the benchmark's events; medians of ``time.process_time`` and of the per-round
differences, and whether the outputs are identical.

    .kvenv/bin/python bench/kernel/build.py typed
    PYTHONPATH=. .venv/bin/python bench/kernel/hst_batch.py --events 20000 --rounds 9
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from scripts.hotpath_cost import once

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / ".stack" / "bench" / "events-u1200-s7.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--events-file", default=str(EVENTS))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench" / "kernel" / "build" / "lib"))
    import shopstream_kernel_hst as kernel

    values = [line.rstrip(b"\n") for line in Path(args.events_file).open("rb")][: args.events]
    runs: dict[str, list[float]] = {"py": [], "typed": []}
    results = {}
    for r in range(args.rounds):
        for mode in runs if r % 2 == 0 else list(runs)[::-1]:
            (kernel.install if mode == "typed" else kernel.uninstall)()
            cost, _, outputs, table = asyncio.run(
                once(50_000, values, argparse.Namespace(batch=300, partitions=4))
            )
            runs[mode].append(cost)
            results[mode] = (outputs, table)
    kernel.uninstall()
    for mode, costs in runs.items():
        print(f"{mode:<6} {statistics.median(costs):6.1f} µs CPU per event "
              f"(rounds: {', '.join(f'{c:.1f}' for c in costs)})")  # fmt: skip
    diffs = [p - t for p, t in zip(runs["py"], runs["typed"], strict=True)]
    print(f"per-round py - typed: median {statistics.median(diffs):.1f} µs per event "
          f"({', '.join(f'{d:.1f}' for d in diffs)})")  # fmt: skip
    print(f"{len(values)} events; outputs and table identical: {results['py'] == results['typed']}")


if __name__ == "__main__":
    main()
