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
TARGETS = (ROOT / "README.md", ROOT / "docs" / "performance.md", ROOT / "docs" / "operations.md")

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


def stage_us_per_event(
    batches: dict[str, Any], key: str = "ms_per_batch_by_stage"
) -> dict[str, float]:
    """Thread CPU µs per event of each batch stage, from a ``batch_stats`` of the drain
    (``key="wall_ms_per_batch_by_stage"``: wall µs per event)."""
    per_batch = batches.get(key, {})
    events = batches.get("events_per_batch") or 0
    return {k: round(1000 * v / events, 1) for k, v in per_batch.items()} if events else {}


# --- the generated blocks ---------------------------------------------------------------


def _n(v: Any, fmt: str = ",.0f") -> str:
    return "—" if v is None or v != v else format(v, fmt)


def _preloaded(latest: dict[str, Any]) -> str:
    """The preloaded events, where the run recorded them.

    >>> _preloaded({"detail": {"preload": {"events": 95721}}})
    '95,721 events preloaded, '
    >>> _preloaded({"detail": {}})
    ''
    """
    events = latest.get("detail", {}).get("preload", {}).get("events")
    return f"{events:,} events preloaded, " if events else ""


def _latency_parts(latest: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the latency run's time goes, shared and dedicated, where the run recorded it:
    how long a batch's oldest record had waited when its batch started, and the batches.

    >>> b = {"oldest_wait_ms": 41.0, "ms_per_batch": 30.0, "events_per_batch": 250.0}
    >>> run = {"latency": {"batches": b}}
    >>> _latency_parts({"detail": {"configs": {"shared": run, "dedicated": run}}})[0][1]
    '41 / 41 ms; batches of 250 / 250 events, 30 / 30 ms'
    >>> _latency_parts({"detail": {"configs": {}}})
    []
    """
    runs = [latest.get("detail", {}).get("configs", {}).get(c, {}) for c in ("shared", "dedicated")]
    parts = [r.get("latency", {}).get("batches", {}) for r in runs]
    if not all(p.get("oldest_wait_ms") is not None for p in parts):
        return []
    sh, de = parts
    out = [("latency run: the oldest record's wait when its batch started, shared / dedicated",
            f"{_n(sh['oldest_wait_ms'])} / {_n(de['oldest_wait_ms'])} ms; batches of "
            f"{_n(sh['events_per_batch'])} / {_n(de['events_per_batch'])} events, "
            f"{_n(sh['ms_per_batch'])} / {_n(de['ms_per_batch'])} ms")]  # fmt: skip
    return out + _latency_runs([r.get("latency", {}) for r in runs])


def _latency_runs(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """How long each latency run lasted, how many recommendations it matched and how many
    times Redis rewrote its AOF meanwhile (a fork that copies the dataset on the same cores),
    where the run recorded it.

    >>> run = {"replay": {"seconds": 30.1}, "recommendations_matched": 36096,
    ...        "redis_persistence": {"aof_rewrites": 2}}
    >>> _latency_runs([run, run])[0][1]
    '30 / 30 s, 36,096 / 36,096 recommendations, 2 / 2 AOF rewrites'
    >>> _latency_runs([{}, {}])
    []
    """
    if not all("redis_persistence" in r for r in runs):
        return []
    sh, de = runs
    return [("latency run: length, recommendations timed, Redis AOF rewrites in it, shared / "
             "dedicated",
             f"{_n(sh['replay']['seconds'])} / {_n(de['replay']['seconds'])} s, "
             f"{_n(sh['recommendations_matched'])} / {_n(de['recommendations_matched'])} "
             f"recommendations, {sh['redis_persistence']['aof_rewrites']} / "
             f"{de['redis_persistence']['aof_rewrites']} AOF rewrites")]  # fmt: skip


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
        *_latency_parts(latest),
        ("load generator CPU per event: flat out (preload) / latency run shared / dedicated",
         f"{latest['detail']['preload']['cpu_us_per_event']:.1f} / "
         f"{sh['loadgen_cpu_us_per_event']:.1f} / {de['loadgen_cpu_us_per_event']:.1f} µs"),
        ("worker RSS (max)", f"{_n(latest['rss_mb'])} MB"),
        ("Redis memory per item / per user", f"{_n(latest['redis_bytes_per_item'])} B / "
         f"{_n(latest['redis_bytes_per_user'])} B"),
        ("serialized profile per user (mean)", f"{_n(latest['profile_bytes_per_user'])} B"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    lines.append(
        f"\nMeasured by `make bench` on {latest['measured_at'][:10]} (commit "
        f"{latest.get('commit', '?')}): {_preloaded(latest)}{latest['events']:,} events in the "
        f"measured drain (shared), {latest['partitions']} partitions; {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, Kafka {m['kafka']}, "
        f"Redis {m['redis']}; {m['note']} (load average "
        f"{m.get('loadavg_1m_start', '?')} at the start, {m.get('loadavg_1m', '?')} at the end)."
    )
    return "\n".join(lines)


STAGES = {
    "validate": "`split`: size check, msgspec decode and contract, pseudonymisation",
    "classify": "redelivery fence, duplicate ids, rate limit",
    "anomalies": "HalfSpaceTrees + rules per event",
    "users": "recommendation planning, the `sleep(0)` turns that start the Redis call (and "
    "run whatever else is ready: Faust's delivery), profile + churn + segments per event, "
    "envelopes serialised per user",
    "similarity": "awaiting the Redis call that learns the batch and scores its recommendations",
    "publish": "DLQ, segment changes, alerts and business figures into the outbox while Redis "
    "learns; then the recommendations",
    "deliver": "ownership check and awaiting the outputs' delivery",
    "changelog": "changed envelopes into the table and its changelog, flushed (the fence)",
    "telemetry": "counters, lag, model quality",
    "checkpoint": "idle-partition clocks and model checkpoints (when due)",
    "retention": "retention sweep (when due)",
}


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def targets(latest: dict[str, Any]) -> list[str]:
    """Issue 20's "done when" and the goal beyond it, against this run."""
    sh, de = latest["configs"]["shared"], latest["configs"]["dedicated"]
    worker, noop = sh["worker_cpu_us_per_event"], latest["faust_noop_eps"]
    best_ratio = max(sh["ratio"], de["ratio"])
    best_eps = max(sh["pipeline_eps"], de["pipeline_eps"])
    rows = [
        ("worker CPU ≤ 100 µs per event while draining", _met(worker <= 100),
         f"{_n(worker)} µs (shared), {_n(de['worker_cpu_us_per_event'])} µs (dedicated)"),
        ("worker CPU ≤ 66 µs per event (≥ 15,000 events/s per core)", _met(worker <= 66),
         f"{_n(worker)} µs"),
        ("pipeline ≥ 20% of the raw ceiling, same run", _met(best_ratio >= 0.2),
         f"{sh['ratio']:.1%} shared, {de['ratio']:.1%} dedicated"),
        ("p99 ≤ 100 ms at half the measured drain rate",
         _met(min(sh["p99_ms"], de["p99_ms"]) <= 100),
         f"{_n(sh['p99_ms'])} ms shared, {_n(de['p99_ms'])} ms dedicated"),
        ("pipeline drains faster than the stock Faust no-op agent", _met(best_eps > noop),
         f"{_n(best_eps)} vs {_n(noop)} events/s"),
        ("profile ≤ 2 KB per active user", _met(latest["profile_bytes_per_user"] <= 2048),
         f"{_n(latest['profile_bytes_per_user'])} B"),
    ]  # fmt: skip
    return ["| target | status | this run |", "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows)]  # fmt: skip


def performance_tables(latest: dict[str, Any], scale_out: dict[str, Any] | None) -> str:
    cf = latest["configs"]
    lines = [*targets(latest), "", 
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
        "Batch stages of the shared drain, thread CPU time of the worker's main thread, and "
        "wall time (the difference is the batch waiting for Redis, Kafka or the core):",
        "",
        "| stage | CPU µs per event | wall µs per event | what it is |",
        "|---|---|---|---|",
    ]
    stages = latest["stage_cpu_us_per_event"]
    walls = latest.get("stage_wall_us_per_event", {})  # runs before 2026-12-03: CPU only
    lines += [f"| {k} | {v:.1f} | {_n(walls.get(k), '.1f')} | {STAGES.get(k, '')} |"
              for k, v in stages.items()]  # fmt: skip
    worker = _n(latest["worker_cpu_us_per_event"])
    wall_total = _n(sum(walls.values()), ".1f") if walls else "—"
    total = (f"| **all stages** | **{sum(stages.values()):.1f}** | **{wall_total}** | of {worker} "
             "µs of worker CPU |")  # fmt: skip
    lines.append(total)
    box = latest.get("box_check_ms")  # runs before 2026-12-03 evening: none
    if box:
        when = ", ".join(f"{'at the end' if k == 'end' else 'before ' + k} {v:.0f}"
                         for k, v in box.items())  # fmt: skip
        lines += ["", "CPU contention during the run (`scripts/box_check.py`: CPU ms of a fixed "
                  "small workload, before each configuration and at the end; docs/performance.md"
                  f" says what it shows and what it misses): {when}."]
    if scale_out:
        sm = scale_out["machine"]
        lines += ["", f"Scale-out drain ({scale_out['measured_at'][:10]}, commit "
                  f"{scale_out.get('commit', '?')}, `make bench BENCH_ARGS=--scale-out`, all "
                  f"workers unpinned, {scale_out['events']:,} events loaded once their group is "
                  "stable, load average "
                  f"{sm.get('loadavg_1m_start', '?')} to {sm.get('loadavg_1m', '?')}):", "",
                  "| workers | events/s | worker CPU µs per event, all workers | Redis | Kafka |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in scale_out["runs"]:
            cpu = r["cpu_us_per_event"]
            if r.get("error"):
                lines.append(f"| {r['workers']} | did not drain: {r['error']} | | | |")
                continue
            lines.append(f"| {r['workers']} | {_n(r['eps'])} | {_n(cpu.get('workers'))} | "
                         f"{_n(cpu.get('redis'))} | {_n(cpu.get('kafka'))} |")  # fmt: skip
    return "\n".join(lines)


def sizing(latest: dict[str, Any]) -> str:
    """docs/operations.md "Sizing": the figures of the run and what follows from them."""
    m, sh = latest["machine"], latest["configs"]["shared"]
    worker, redis = sh["worker_cpu_us_per_event"], sh["redis_cpu_us_per_event"]
    kafka = sh["broker_cpu_us_per_event"]
    per_core = 1e6 / worker
    profile, r_user = latest["profile_bytes_per_user"], latest["redis_bytes_per_user"]
    r_item = latest["redis_bytes_per_item"]
    rows = [
        ("worker CPU per event", f"**{_n(worker)} µs** (`worker_cpu_us_per_event`)",
         f"events/s per core ≈ 1 s / {_n(worker)} µs ≈ {_n(per_core)}"),
        ("Redis / Kafka CPU per event", f"{_n(redis)} / {_n(kafka)} µs "
         "(`redis_cpu_us_per_event`, `broker_cpu_us_per_event`)",
         "cores of the Redis shard and of the brokers"),
        ("pipeline throughput", f"{_n(sh['pipeline_eps'])} events/s (`pipeline_eps`)",
         "what one worker drained with everything on the same 2 cores"),
        ("worker RSS", f"{latest['rss_mb']} MB (`rss_mb`) after {latest['events']:,} events",
         "the baseline of one worker"),
        ("profile bytes per user", f"{_n(profile)} B (`profile_bytes_per_user`)",
         "table memory (memory store) or disk (RocksDB)"),
        ("Redis bytes per user", f"{_n(r_user)} B (`redis_bytes_per_user`)",
         "session and purchase keys"),
        ("Redis bytes per item", f"{_n(r_item)} B (`redis_bytes_per_item`)",
         "neighbour set (≤ 200 neighbours) and popularity"),
    ]  # fmt: skip
    lines = [
        f"The committed `make bench` run (`bench/results/latest.json`, "
        f"{latest['measured_at'][:10]}, {latest['partitions']} partitions, {m['cores']}-core "
        f"{m['cpu']} shared with Kafka, Redis, the load generator and other work: load average "
        f"{m.get('loadavg_1m_start', '?')} to {m.get('loadavg_1m', '?')}) measured:",
        "",
        "| figure | value | use it for |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        "Rules of thumb derived from those figures (not separately measured):",
        "",
        f"- **CPU.** Peak events/s × {_n(worker)} µs = worker cores needed; keep each worker "  # noqa: RUF001
        "under ~70% of a core so a rebalance or a burst catches up. A shop with 500 events/s "
        f"at peak needs ~{500 * worker / 1e6:.2f} cores; 10,000 events/s needs "
        f"~{10_000 * worker / 1e6:.1f} cores, i.e. {-(-10_000 * worker // 700_000):.0f} "
        "workers (and at least as many partitions). Redis needs peak events/s × "  # noqa: RUF001
        f"{_n(redis)} µs, Kafka × {_n(kafka)} µs.",  # noqa: RUF001
        f"- **Memory.** RSS ≈ {_n(latest['rss_mb'], '.0f')} MB + profiles. With the memory store "
        "every profile of the worker's partitions is in RAM: 1 million active customers ≈ "
        f"{profile / 1e3:.1f} GB over all workers. Above a few hundred thousand customers per "
        "worker, use `SHOPSTREAM_TABLE_STORE=rocksdb` (below).",
        f"- **Redis.** ≈ {r_user / 1e3:.1f} KB per active customer + {r_item / 1e3:.1f} KB per "
        "live item: 1 million customers and 50,000 items ≈ "
        f"{(1e6 * r_user + 5e4 * r_item) / 1e9:.1f} GB. Retention (below) is what keeps "
        "\"active\" bounded.",
    ]
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    latest = orjson.loads((RESULTS / "latest.json").read_bytes())
    scale_path = RESULTS / "scale-out.json"
    scale = orjson.loads(scale_path.read_bytes()) if scale_path.exists() else None
    return {"readme": readme_table(latest), "performance": performance_tables(latest, scale),
            "sizing": sizing(latest)}  # fmt: skip


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body``.

    >>> replace_block("a\\n<!-- bench:x -->\\nold\\n<!-- /bench:x -->\\nb", "x", "new")
    'a\\n<!-- bench:x -->\\nnew\\n<!-- /bench:x -->\\nb'
    >>> replace_block("<!-- bench:x -->\\n<!-- /bench:x -->", "x", "new")
    '<!-- bench:x -->\\nnew\\n<!-- /bench:x -->'
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start not in text:
        return text
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


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
