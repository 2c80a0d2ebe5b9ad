"""make bench: the full worker against the raw aiokafka ceiling and a stock Faust agent doing
nothing, on the local stack, in one run (issue 20: CPU per event of every process).

Steps (every figure is measured here, none is typed in):

1. ``shopstream generate`` writes the event file (cached in ``.stack/bench``); its first part
   is preloaded into a fresh input topic per configuration (scripts/bench_loadgen.py, flat
   out), the rest feeds the latency runs.
2. **ceiling**: a raw aiokafka consume → orjson decode → orjson encode → produce loop drains
   the preloaded topic into a scratch topic (its own consumer group), twice: the first a
   warm-up of the broker, the second measured.
3. **peer**: a stock Faust agent that does nothing (scripts/bench_noop.py) drains it too.
4. **pipeline**, once per configuration (*shared*: no pinning; *dedicated*: the worker alone on
   the last core, the rest on the others, scripts/bench_pipeline.py): the real worker process
   (all agents, real Redis) drains the preloaded topic; its consumer group's committed offsets
   are sampled every 0.5 s (the lag curve) with its RSS and the CPU of the worker, Redis and
   the broker (``/proc/PID/stat``); events/s and CPU µs per event are taken between the first
   commit and lag 0 (start-up and rebalancing excluded). Stage timings: the worker's
   ``/metrics`` (thread CPU time per batch stage).
5. **latency**: the rest of the file is offered open-loop at half the measured drain rate for
   ``--latency-seconds`` (30; played again with later times and new ids when the rest is
   shorter) by scripts/bench_loadgen.py in its own process (its CPU per event reported); each
   recommendation's ``trigger_event_id`` is matched to the send time of its input event, and
   latency = the output record's Kafka timestamp - that send time.
6. memory: Redis ``MEMORY USAGE`` of sampled keys per key kind (see models/similarity/store.py),
   per item and per user; the serialized profile size per user, read back from the profile
   table's changelog topic (shared configuration).

Writes ``bench/results/latest.json`` (schema: scripts/bench_report.py) and
``bench/results/latest.png``; then ``python scripts/bench_report.py`` regenerates the README
and docs/performance.md tables. ``--scale-out`` instead drains the preloaded topic with 1, 2
and 4 workers and writes ``bench/results/scale-out.json``. With ``--profile``, py-spy samples
the worker (``.stack/bench/profile-*.folded``; ``bench/results/profile.txt`` summarises).
Everything it creates (topics, Redis keys, processes) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from bench_loadgen import send_file
from bench_phases import ceiling, prepare_events
from bench_pipeline import configuration, faust_noop, scale_out_drain
from bench_probe import (
    RESULTS,
    ROOT,
    WORK,
    Run,
    cleanup,
    free_port,
    machine,
    percentile,
    profile_sizes,
    redis_memory,
    say,
)
from bench_report import check, config_summary, readme_table, stage_us_per_event
from box_check import box_ms

from streams.core.settings import Settings
from streams.kafka import ensure_topics

# --- chart ---------------------------------------------------------------------------------


def chart(run: Run, ceiling_eps: float, lat: list[tuple[float, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax3) = plt.subplots(2, 1, figsize=(10, 7.5))
    smp = run.samples
    # offsets are committed about once a second: rate over a 2 s sliding window
    win = 4
    ts = [smp[i].t for i in range(win, len(smp))]
    rates = [
        (smp[i].committed - smp[i - win].committed) / (smp[i].t - smp[i - win].t)
        for i in range(win, len(smp))
    ]
    ax1.plot(ts, rates, color="tab:blue", label="pipeline events/s (committed)")
    ax1.axhline(ceiling_eps, color="tab:green", linestyle="--", label="raw aiokafka ceiling")
    ax1.set_xlabel("seconds since worker start")
    ax1.set_ylabel("events/s")
    ax2 = ax1.twinx()
    ax2.plot([x.t for x in smp], [x.end - x.committed for x in smp], color="tab:red",
             label="consumer lag")  # fmt: skip
    ax2.set_ylabel("lag (events)")
    for i, (name, t) in enumerate(run.phase_marks.items()):
        ax1.axvline(t, color="grey", linewidth=0.8)
        ax1.text(t, ax1.get_ylim()[1] * (0.6 - 0.1 * i), f" {name}", fontsize=8, color="grey")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax1.set_title("throughput and lag (preloaded drain, then fixed-rate latency run)")
    if lat:
        t0 = lat[0][0]
        ax3.scatter([a - t0 for a, _ in lat], [d * 1000 for _, d in lat], s=2, alpha=0.4,
                    label="recommendation latency")  # fmt: skip
        window = max(1, len(lat) // 40)
        xs, p99 = [], []
        for i in range(0, len(lat) - window + 1, window):
            chunk = [d * 1000 for _, d in lat[i : i + window]]
            xs.append(lat[i + window // 2][0] - t0)
            p99.append(percentile(chunk, 99))
        ax3.plot(xs, p99, color="tab:red", label="rolling p99")
        ax3.set_yscale("log")
    ax3.set_xlabel("seconds since latency run start")
    ax3.set_ylabel("produce → output (ms)")
    ax3.legend(loc="upper right", fontsize=8)
    ax3.set_title("end-to-end latency at half the measured maximum rate")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


# --- main ----------------------------------------------------------------------------------


def fresh_settings(tag: str, partitions: int) -> Settings:
    return Settings.from_env().namespaced(tag).with_(
        web_port=free_port(),
        data_dir=str(WORK / tag / "worker"),
        partitions=partitions,
        # the file is produced in seconds: a per-user limit in record time would refuse the
        # heavy users' events (docs/security.md, "Rate limit")
        max_events_per_min=0,
    )


async def preload(s: Settings, pre: Path) -> dict[str, Any]:
    await ensure_topics(s)
    loaded = await send_file(s, pre, s.topic_events)
    loaded.pop("sent")
    if loaded["send_errors"]:
        raise SystemExit(f"preload failed: {loaded}")
    say(f"preloaded {loaded['events']} events into {s.topic_events} ({s.partitions} partitions)")
    return loaded


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pre, rest, _ = prepare_events(args.users, args.seed, args.events)
    tag = uuid.uuid4().hex[:8]
    made: list[Settings] = []
    result: dict[str, Any] = {"run_id": tag, "configs": {}, "box_check_ms": {}}
    ceiling_topic = f"bench{tag}.ceiling"
    try:
        for i, name in enumerate(("shared", "dedicated")):
            s = fresh_settings(f"bench{tag}{name[0]}", args.partitions)
            made.append(s)
            loaded = await preload(s, pre)
            if i == 0:
                result["preload"] = loaded
                await ensure_topics(s.with_(topic_events=ceiling_topic))
                say("ceiling: raw aiokafka consume -> orjson decode -> produce")
                # A broker just started (`make bench` starts the stack) runs its first drain
                # at half speed (its JIT warms up): 56,807 events/s, then 91-112k in the
                # runs after it (docs/performance.md, "Fifteenth round"). The worker's drains
                # come later, on a warm broker: the ceiling is measured warm too.
                warm = await ceiling(s, ceiling_topic, loaded["events"], group="warm-up")
                say(f"ceiling: warm-up {warm['eps']:,.0f} events/s")
                result["ceiling"] = await ceiling(s, ceiling_topic, loaded["events"])
                result["ceiling"]["warm_up_eps"] = warm["eps"]
                say(f"ceiling: {result['ceiling']['eps']:,.0f} events/s")
                say("peer: a stock Faust agent doing nothing")
                result["faust_noop"] = await faust_noop(s, loaded["events"], args.timeout)
                say(f"peer: {result['faust_noop']['eps']:,.0f} events/s")
            result["box_check_ms"][name] = box_ms()  # the box's state (scripts/box_check.py)
            say(f"box check: {result['box_check_ms'][name]} ms")
            say(f"pipeline ({name}): the worker on the preloaded topic")
            detail, run, lat = await configuration(s, args, rest, dedicated=name == "dedicated")
            result["configs"][name] = detail
            if i == 0:
                result["redis"] = await redis_memory(s, args.users)
                result["profiles"] = await profile_sizes(s)
                result["chart"] = args.out.with_suffix(".png").name
                chart(run, result["ceiling"]["eps"], lat, args.out.with_suffix(".png"))
        result["box_check_ms"]["end"] = box_ms()
        say(f"box check: {result['box_check_ms']['end']} ms")
    finally:
        if not args.keep:
            for s in made:
                await cleanup(s, [ceiling_topic])
    return result


async def scale_out(args: argparse.Namespace) -> dict[str, Any]:
    pre, _, _ = prepare_events(args.users, args.seed, args.events)
    tag = uuid.uuid4().hex[:8]
    runs = []
    for n in (1, 2, 4):
        s = fresh_settings(f"bench{tag}x{n}", args.partitions)
        try:
            await ensure_topics(s)
            say(f"scale-out: {n} worker(s)")
            try:
                runs.append(await scale_out_drain(s, n, args.timeout, partial(preload, s, pre)))
            except SystemExit as exc:  # a stalled drain is a result too: say so, go on
                runs.append({"workers": n, "eps": None, "cpu_us_per_event": {},
                             "error": str(exc)})  # fmt: skip
                say(f"scale-out: {n} worker(s) failed: {exc}")
                continue
            say(f"scale-out: {n} worker(s) {runs[-1]['eps']:,.0f} events/s, "
                f"{runs[-1]['cpu_us_per_event'].get('workers', 0):,.0f} µs per event")  # fmt: skip
        finally:
            if not args.keep:
                await cleanup(s, [])
    events = next((r["loaded"] for r in runs if "loaded" in r), 0)
    return {"events": events, "partitions": args.partitions, "runs": runs}


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "?"


HEADLINE_FROM_SHARED = ("pipeline_eps", "ratio", "p50_ms", "p95_ms", "p99_ms", "latency_rate_eps",
                        "rss_mb", "worker_cpu_us_per_event", "redis_cpu_us_per_event",
                        "broker_cpu_us_per_event", "loadgen_cpu_us_per_event")  # fmt: skip


def headline(detail: dict[str, Any]) -> dict[str, Any]:
    """The top of latest.json (scripts/bench_report.py SCHEMA): the shared configuration."""
    ceiling_eps = detail["ceiling"]["eps"]
    configs = {k: config_summary(v, ceiling_eps) for k, v in detail["configs"].items()}
    shared = configs["shared"]
    return {
        "ceiling_eps": ceiling_eps,
        **{k: shared[k] for k in HEADLINE_FROM_SHARED},
        "faust_noop_eps": detail["faust_noop"]["eps"],
        "faust_noop_cpu_us_per_event": detail["faust_noop"]["cpu_us_per_event"],
        "stage_cpu_us_per_event": stage_us_per_event(detail["configs"]["shared"]["batches"]),
        "stage_wall_us_per_event": stage_us_per_event(
            detail["configs"]["shared"]["batches"], "wall_ms_per_batch_by_stage"
        ),
        "configs": configs,
        "redis_bytes_per_item": detail["redis"]["bytes_per_item"],
        "redis_bytes_per_user": detail["redis"]["bytes_per_user"],
        "profile_bytes_per_user": detail["profiles"]["mean_bytes"],
        "events": detail["configs"]["shared"]["events"],
        "box_check_ms": detail["box_check_ms"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1200, help="users to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000, help="events to preload")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="drain limit")
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--latency-fraction", type=float, default=0.5, help="latency-run rate / pipeline max"
    )
    parser.add_argument(
        "--latency-rate", type=float, default=0.0,
        help="latency-run rate in events/s instead of a fraction of the drain (A/B runs of "
        "two variants at one rate: the drain rate moves with the box)",
    )  # fmt: skip
    parser.add_argument(
        "--no-pin-services", dest="pin_services", action="store_false",
        help="dedicated configuration: leave Kafka and Redis where they are",
    )  # fmt: skip
    parser.add_argument(
        "--scale-out", action="store_true",
        help="drain with 1, 2, 4 workers -> bench/results/scale-out.json",
    )  # fmt: skip
    parser.add_argument(
        "--markdown", action="store_true", help="print the README table of --out and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(readme_table(orjson.loads(args.out.read_bytes())))
        return

    subprocess.run([str(ROOT / "scripts/stack.sh"), "up"], check=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started, load_start = time.time(), round(os.getloadavg()[0], 2)
    stamp = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
             "commit": commit()}  # fmt: skip
    if args.scale_out:
        out = RESULTS / "scale-out.json"
        body = {**asyncio.run(scale_out(args)), **stamp, "machine": machine()}
        body["machine"]["loadavg_1m_start"] = load_start
        out.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        say(f"wrote {out}")
        return
    detail = asyncio.run(bench(args))
    latest = {
        **headline(detail),
        "partitions": args.partitions,
        "profiled": bool(args.profile),
        **stamp,
        "bench_seconds": round(time.time() - started, 1),
        "machine": machine() | {"loadavg_1m_start": load_start},
        "detail": detail,
    }
    problems = check(latest)
    if problems:
        raise SystemExit(f"latest.json would not match its schema: {problems}")
    args.out.write_bytes(orjson.dumps(latest, option=orjson.OPT_INDENT_2) + b"\n")
    say(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    summary = {k: v for k, v in latest.items() if k not in {"detail", "machine", "configs"}}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
