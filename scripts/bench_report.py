"""make bench, part 5: what ``bench/results/latest.json`` must hold, and the README and
docs/performance.md tables generated from it (no figure is typed by hand).

    python scripts/bench_report.py           # rewrite the generated blocks from latest.json
    python scripts/bench_report.py --check   # exit 1 if a block differs (tests/unit/repo)

A generated block sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGETS = (ROOT / "README.md", ROOT / "docs" / "performance.md")

# headline keys of latest.json: the issue-20 contract of `make bench`
NUMBER = (int, float)
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "ceiling_eps": NUMBER,
    "pipeline_eps": NUMBER,
    "ratio": NUMBER,
    "p50_ms": NUMBER,
    "p95_ms": NUMBER,
    "p99_ms": NUMBER,
    "latency_rate_eps": NUMBER,
    "rss_mb": NUMBER,
    "faust_noop_eps": NUMBER,
    "faust_noop_cpu_us_per_event": NUMBER,
    "worker_cpu_us_per_event": NUMBER,
    "redis_cpu_us_per_event": NUMBER,
    "broker_cpu_us_per_event": NUMBER,
    "loadgen_cpu_us_per_event": NUMBER,
    "stage_cpu_us_per_event": dict,
    "configs": dict,
    "redis_bytes_per_item": NUMBER,
    "redis_bytes_per_user": NUMBER,
    "profile_bytes_per_user": NUMBER,
    "events": int,
    "partitions": int,
    "measured_at": str,
    "machine": dict,
    "detail": dict,
}
CONFIG_KEYS = ("pipeline_eps", "ratio", "p50_ms", "p99_ms", "latency_rate_eps",
               "worker_cpu_us_per_event", "redis_cpu_us_per_event", "broker_cpu_us_per_event",
               "loadgen_cpu_us_per_event", "rss_mb")  # fmt: skip
CONFIGS = ("shared", "dedicated")


def check(latest: dict[str, Any]) -> list[str]:
    """What is missing or mistyped in a ``latest.json``.

    >>> check({"ratio": "high"})[:2]
    ['ceiling_eps: missing', 'pipeline_eps: missing']
    """
    problems = []
    for key, kind in SCHEMA.items():
        if key not in latest:
            problems.append(f"{key}: missing")
        elif not isinstance(latest[key], kind) or isinstance(latest[key], bool):
            problems.append(f"{key}: {type(latest[key]).__name__}")
    for name in CONFIGS:
        config = latest.get("configs", {}).get(name)
        if not isinstance(config, dict):
            problems.append(f"configs.{name}: missing")
            continue
        problems += [f"configs.{name}.{k}: missing" for k in CONFIG_KEYS if k not in config]
    return problems


def config_summary(run: dict[str, Any], ceiling_eps: float) -> dict[str, Any]:
    """The headline figures of one configuration's ``detail`` (scripts/bench_pipeline.py).

    >>> run = {"eps": 4000.0, "cpu_us_per_event": {"worker": 200.0, "redis": 50.0,
    ...        "kafka": 40.0}, "rss_mb_max": 190.0, "latency": {"rate_eps": 2000.0,
    ...        "p50_ms": 20.0, "p95_ms": 60.0, "p99_ms": 90.0,
    ...        "replay": {"cpu_us_per_event": 9.5}}}
    >>> s = config_summary(run, 20000.0)
    >>> s["ratio"], s["worker_cpu_us_per_event"], s["loadgen_cpu_us_per_event"]
    (0.2, 200.0, 9.5)
    """
    cpu, lat = run["cpu_us_per_event"], run["latency"]
    return {
        "pipeline_eps": run["eps"],
        "ratio": round(run["eps"] / ceiling_eps, 3),
        "p50_ms": lat["p50_ms"],
        "p95_ms": lat["p95_ms"],
        "p99_ms": lat["p99_ms"],
        "latency_rate_eps": lat["rate_eps"],
        "worker_cpu_us_per_event": cpu.get("worker"),
        "redis_cpu_us_per_event": cpu.get("redis"),
        "broker_cpu_us_per_event": cpu.get("kafka"),
        "loadgen_cpu_us_per_event": lat["replay"]["cpu_us_per_event"],
        "rss_mb": run["rss_mb_max"],
    }


def stage_cpu(batches: dict[str, Any]) -> dict[str, float]:
    """Thread CPU µs per event of each batch stage, from a ``batch_stats`` of the drain."""
    per_batch = batches.get("ms_per_batch_by_stage", {})
    events = batches.get("events_per_batch") or 0
    return {k: round(1000 * v / events, 1) for k, v in per_batch.items()} if events else {}


# --- the generated blocks ---------------------------------------------------------------


def _n(v: Any, fmt: str = ",.0f") -> str:
    return "—" if v is None or v != v else format(v, fmt)


def readme_table(latest: dict[str, Any]) -> str:
    m, sh, de = latest["machine"], latest["configs"]["shared"], latest["configs"]["dedicated"]
    rows = [
        ("raw aiokafka ceiling (consume → decode → produce)",
         f"{_n(latest['ceiling_eps'])} events/s"),
        ("stock Faust agent doing nothing (the peer)", f"{_n(latest['faust_noop_eps'])} events/s, "
         f"{_n(latest['faust_noop_cpu_us_per_event'])} µs CPU/event"),
        ("full pipeline, one worker: shared / dedicated core",
         f"{_n(sh['pipeline_eps'])} / {_n(de['pipeline_eps'])} events/s"),
        ("pipeline / ceiling: shared / dedicated", f"{sh['ratio']:.0%} / {de['ratio']:.0%}"),
        ("CPU µs per event while draining: worker / Redis / Kafka (shared)",
         f"{_n(sh['worker_cpu_us_per_event'])} / {_n(sh['redis_cpu_us_per_event'])} / "
         f"{_n(sh['broker_cpu_us_per_event'])}"),
        (f"end-to-end latency p50 / p95 / p99, shared, at {_n(sh['latency_rate_eps'])} events/s",
         f"{_n(sh['p50_ms'])} / {_n(sh['p95_ms'])} / {_n(sh['p99_ms'])} ms"),
        (f"the same, dedicated, at {_n(de['latency_rate_eps'])} events/s",
         f"{_n(de['p50_ms'])} / {_n(de['p95_ms'])} / {_n(de['p99_ms'])} ms"),
        ("load generator CPU per event offered (shared / dedicated)",
         f"{sh['loadgen_cpu_us_per_event']:.1f} / {de['loadgen_cpu_us_per_event']:.1f} µs"),
        ("worker RSS (max)", f"{_n(latest['rss_mb'])} MB"),
        ("Redis memory per item / per user", f"{_n(latest['redis_bytes_per_item'])} B / "
         f"{_n(latest['redis_bytes_per_user'])} B"),
        ("serialized profile per user (mean)", f"{_n(latest['profile_bytes_per_user'])} B"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    lines.append(
        f"\nMeasured by `make bench` on {latest['measured_at'][:10]} (commit "
        f"{latest.get('commit', '?')}): {latest['events']:,} events, {latest['partitions']} "
        f"partitions; {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python "
        f"{m['python']}, Kafka {m['kafka']}, Redis {m['redis']}; {m['note']} (load average "
        f"{m.get('loadavg_1m_start', '?')} at the start, {m.get('loadavg_1m', '?')} at the end)."
    )
    return "\n".join(lines)


STAGES = {
    "validate": "`split`: size check, msgspec decode and contract, pseudonymisation",
    "classify": "redelivery fence, duplicate ids, rate limit",
    "anomalies": "HalfSpaceTrees + rules per event",
    "users": "recommendation planning, the `sleep(0)` turns that start the Redis call (and "
    "run whatever else is ready: Faust's delivery), profile + churn + segments per event, "
    "envelopes and changelog per user",
    "similarity": "awaiting the Redis call that learns the batch and scores its recommendations",
    "publish": "recommendations, segment changes and alerts into the outbox",
    "deliver": "ownership check and awaiting the outputs' delivery",
    "telemetry": "counters, lag, model quality",
    "checkpoint": "idle-partition clocks and model checkpoints (when due)",
    "retention": "retention sweep (when due)",
}


def performance_tables(latest: dict[str, Any], scale_out: dict[str, Any] | None) -> str:
    cf = latest["configs"]
    lines = [
        "| configuration | pipeline events/s | / ceiling | worker / Redis / Kafka CPU µs per "
        "event | p50 / p99 ms (rate) | load generator µs/event | worker RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        c = cf[name]
        lines.append(
            f"| {name} | {_n(c['pipeline_eps'])} | {c['ratio']:.0%} | "
            f"{_n(c['worker_cpu_us_per_event'])} / {_n(c['redis_cpu_us_per_event'])} / "
            f"{_n(c['broker_cpu_us_per_event'])} | {_n(c['p50_ms'])} / {_n(c['p99_ms'])} "
            f"({_n(c['latency_rate_eps'])}/s) | {c['loadgen_cpu_us_per_event']:.1f} | "
            f"{_n(c['rss_mb'])} MB |"
        )
    lines += [
        f"| raw aiokafka ceiling | {_n(latest['ceiling_eps'])} | 100% | | | | |",
        f"| stock Faust no-op agent | {_n(latest['faust_noop_eps'])} | "
        f"{latest['faust_noop_eps'] / latest['ceiling_eps']:.0%} | "
        f"{_n(latest['faust_noop_cpu_us_per_event'])} (the agent's process) | | | |",
        "",
        "Batch stages of the shared drain, thread CPU time of the worker's main thread:",
        "",
        "| stage | µs per event | what it is |",
        "|---|---|---|",
    ]
    stages = latest["stage_cpu_us_per_event"]
    lines += [f"| {k} | {v:.1f} | {STAGES.get(k, '')} |" for k, v in stages.items()]
    worker = _n(latest["worker_cpu_us_per_event"])
    total = f"| **all stages** | **{sum(stages.values()):.1f}** | of {worker} µs of worker CPU |"
    lines.append(total)
    if scale_out:
        lines += ["", f"Scale-out drain ({scale_out['measured_at'][:10]}, `make bench "
                  "BENCH_ARGS=--scale-out`, all workers unpinned, "
                  f"{scale_out['events']:,} events):", "",
                  "| workers | events/s | worker CPU µs per event, all workers | Redis | Kafka |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in scale_out["runs"]:
            cpu = r["cpu_us_per_event"]
            lines.append(f"| {r['workers']} | {_n(r['eps'])} | {_n(cpu.get('workers'))} | "
                         f"{_n(cpu.get('redis'))} | {_n(cpu.get('kafka'))} |")  # fmt: skip
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    latest = orjson.loads((RESULTS / "latest.json").read_bytes())
    scale_path = RESULTS / "scale-out.json"
    scale = orjson.loads(scale_path.read_bytes()) if scale_path.exists() else None
    return {"readme": readme_table(latest), "performance": performance_tables(latest, scale)}


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body``.

    >>> replace_block("a\\n<!-- bench:x -->\\nold\\n<!-- /bench:x -->\\nb", "x", "new")
    'a\\n<!-- bench:x -->\\nnew\\n<!-- /bench:x -->\\nb'
    """
    start, end = f"<!-- bench:{name} -->\n", f"\n<!-- /bench:{name} -->"
    if start not in text:
        return text
    head, rest = text.split(start, 1)
    return head + start + body + end + rest.split(end, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args()
    stale = []
    for path in TARGETS:
        text = path.read_text()
        new = text
        for name, body in blocks().items():
            new = replace_block(new, name, body)
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new)
    if stale:
        print(("stale: " if args.check else "rewrote: ") + ", ".join(stale))
    sys.exit(1 if stale and args.check else 0)


if __name__ == "__main__":
    main()
