"""Pure Python against the kernel prototype's builds, on the benchmark's events (issue 20).

Alternates child processes (one per variant per round; a build is chosen at import time,
so each variant runs in a fresh interpreter) and prints medians of CPU time
(``time.process_time``, measured inside the child around the timed loop only):

* ``hst``: the detector's Half-Space Trees on the inputs the detector hands them over the
  whole stream (score then learn, as ``observe`` does), µs per call pair;
* ``observe``: :meth:`models.anomaly.AnomalyDetector.observe` on every event of the
  stream (one detector, the worker's config), µs per call;
* ``batch``: the real ``BatchProcessor`` with in-memory I/O over the stream
  (``scripts/hotpath_cost.py``'s ``once``: batches of 300 on 4 partitions, live envelopes
  on), µs per event;

and whether every variant's outputs are byte-for-byte the pure-Python ones: the trees'
scores and ``to_dict`` (orjson), the detector's flags and ``to_dict``, and the batch's
published messages, profile table and changelog (sha256 of each, compared across variants).

    .kvenv/bin/python bench/kernel/build.py
    PYTHONPATH=. .venv/bin/python bench/kernel/bench.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / ".stack" / "bench" / "events-u1200-s7.jsonl"
VARIANTS = {"py": (), "typed": ("typed",), "asis": ("asis",), "asis+typed": ("asis", "typed")}


def digest(obj: Any) -> str:
    import orjson

    def default(o: Any) -> Any:  # record keys/values and Flag (a NamedTuple)
        if isinstance(o, bytes):
            return "b:" + o.hex()
        if isinstance(o, tuple):
            return list(o)
        raise TypeError(type(o))

    raw = orjson.dumps(obj, default=default)
    return hashlib.sha256(raw).hexdigest()[:16]


def child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from kernel.load import enable

    enable(*VARIANTS[variant])
    import orjson

    from models.anomaly import AnomalyDetector
    from models.hst import HalfSpaceTrees
    from streams.core.settings import Settings
    from streams.core.wire import parse_event
    from streams.worker.configs import anomaly_config

    values = [line.rstrip(b"\n") for line in Path(args.events_file).open("rb")][: args.events]
    events = [parse_event(v) for v in values]
    out: dict[str, Any] = {"variant": variant}

    # what the detector hands its trees (recorded untimed, then replayed on fresh trees)
    class Recording(HalfSpaceTrees):
        def learn_one(self, x: Any) -> None:
            xs.append(("learn", x))
            super().learn_one(x)

        def score_one(self, x: Any) -> float:
            xs.append(("score", x))
            return super().score_one(x)

    xs: list[tuple[str, Any]] = []
    config = anomaly_config(Settings())
    rec = AnomalyDetector(config)
    rec.hst = Recording(n_trees=10, height=6, window_size=250, seed=config.seed)
    for e in events:
        rec.observe(e)
    trees = HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=config.seed)
    scores: list[float] = []
    started = time.process_time()
    for op, x in xs:
        if op == "learn":
            trees.learn_one(x)
        else:
            scores.append(trees.score_one(x))
    cpu = time.process_time() - started
    n_learn = sum(op == "learn" for op, _ in xs)
    out["hst_us"] = cpu / n_learn * 1e6
    out["hst_calls"] = [n_learn, len(xs) - n_learn]
    out["hst_digest"] = digest([scores, trees.to_dict()])

    det = AnomalyDetector(config)
    started = time.process_time()
    flags = [det.observe(e) for e in events]
    cpu = time.process_time() - started
    out["observe_us"] = cpu / len(events) * 1e6
    out["observe_digest"] = digest([flags, det.to_dict()])

    from scripts.hotpath_cost import once

    cost, changelog, outputs, table = asyncio.run(
        once(50_000, values, argparse.Namespace(batch=300, partitions=4))
    )
    out["batch_us"] = cost
    out["batch_digest"] = digest([outputs, table])
    out["changelog_per_event"] = changelog
    out["events"] = len(values)
    out["modules"] = sorted(
        n for n, m in sys.modules.items()
        if (n.startswith(("models.", "streams.")) and getattr(m, "__file__", "").endswith(".so"))
    )  # fmt: skip
    _ = orjson
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=None, help="first N events (all)")
    parser.add_argument("--events-file", default=str(EVENTS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    # one hash seed for every child: River's k-means (the segments' exploratory ``cluster``)
    # numbers its clusters differently under another seed, in pure Python too
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:  # alternate the order too
            cmd = [sys.executable, __file__, "--child", v, "--events-file", args.events_file]
            cmd += ["--events", str(args.events)] if args.events else []
            res = subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT, env=env)
            runs[v].append(json.loads(res.stdout))
            print(f"round {r} {v}: " + json.dumps({k: runs[v][-1][k] for k in (
                "hst_us", "observe_us", "batch_us")}), file=sys.stderr)  # fmt: skip
    ref = runs[variants[0]][-1]
    print(f"{ref['events']} events; HST calls (learn, score) {ref['hst_calls']}; "
          f"changelog records per event {ref['changelog_per_event']:.3f}")  # fmt: skip
    print(f"{'variant':<11} {'HST µs/pair':>12} {'observe µs':>11} {'batch µs/event':>15}  "
          "byte-for-byte (hst, observe, batch)")  # fmt: skip
    for v in variants:
        med = {k: statistics.median(r[k] for r in runs[v])
               for k in ("hst_us", "observe_us", "batch_us")}  # fmt: skip
        same = [all(r[k] == ref[k] for r in runs[v])
                for k in ("hst_digest", "observe_digest", "batch_digest")]  # fmt: skip
        print(f"{v:<11} {med['hst_us']:12.2f} {med['observe_us']:11.2f} "
              f"{med['batch_us']:15.1f}  {same}")  # fmt: skip
        print(
            f"{'':<11} rounds: "
            + "; ".join(
                f"{r['hst_us']:.2f}/{r['observe_us']:.2f}/{r['batch_us']:.1f}" for r in runs[v]
            )
        )
        print(f"{'':<11} compiled modules loaded: {len(runs[v][-1]['modules'])}")
        if v != variants[0]:  # each round's pure-Python run ran next to it, under the same load
            pairs = list(zip(runs[v], runs[variants[0]], strict=True))
            ratio = {k: statistics.median(r[k] / p[k] for r, p in pairs)
                     for k in ("hst_us", "observe_us", "batch_us")}  # fmt: skip
            print(f"{'':<11} median of the per-round ratios to {variants[0]}: "
                  f"HST {ratio['hst_us']:.3f}, observe {ratio['observe_us']:.3f}, "
                  f"batch {ratio['batch_us']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
