"""make bench, the box's state: CPU milliseconds of a fixed pure-Python workload (dict
updates, orjson round trips), best of a few rounds.

On this shared 2-vCPU box the same code needs 30-70% more CPU per event in some runs than
in others (docs/performance.md, "Ninth round"), worker and Redis alike. The workload
below does not depend on the repository's code; it was meant to say what state the box was
in when a benchmark ran, but its small working set missed a 13% slowdown of the batch code
once (docs/performance.md, "Running the benchmark"): read it as a check of CPU contention
only. ``scripts/bench.py`` takes it before each configuration and at the
end (``box_check_ms`` in ``bench/results/latest.json``). Compare it between runs, not with
other machines.

    .venv/bin/python scripts/box_check.py
"""

from __future__ import annotations

import time

import orjson

DOC = {"a": list(range(50)), "b": {str(i): i * 0.1 for i in range(30)}, "s": "x" * 200}


def workload() -> float:
    """CPU milliseconds of one round (~0.1 s on an idle core of this box)."""
    started = time.process_time()
    counts: dict[str, float] = {}
    for i in range(150_000):
        key = str(i % 997)
        counts[key] = counts.get(key, 0.0) * 0.5 + i
    for _ in range(15_000):
        orjson.loads(orjson.dumps(DOC))
    return (time.process_time() - started) * 1e3


def box_ms(rounds: int = 3) -> float:
    """The least CPU time of ``rounds`` rounds, in ms (one decimal)."""
    return round(min(workload() for _ in range(max(rounds, 1))), 1)


if __name__ == "__main__":
    print(f"box check: {box_ms(5)} ms of CPU (best of 5)")
