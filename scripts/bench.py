"""make bench: the full worker against the raw aiokafka ceiling, on the local stack, one run.

Steps (every figure is measured here, none is typed in):

1. ``shopstream generate`` writes the event file (cached in ``.stack/bench``); its first part
   is preloaded into a fresh input topic, the rest feeds the latency run.
2. **ceiling**: a raw aiokafka consume → orjson decode → orjson encode → produce loop drains
   the preloaded topic into a scratch topic (its own consumer group).
3. **pipeline**: the real worker process (all agents, real Redis) starts on the same
   preloaded topic; its consumer group's committed offsets are sampled every 0.5 s (the lag
   curve) together with its RSS (``/proc/PID/status``); events/s = events drained between the
   first commit and lag 0, divided by that time (start-up and rebalancing are excluded).
4. **latency**: the rest of the file is replayed open-loop at half the measured pipeline rate;
   each recommendation's ``trigger_event_id`` is matched to the send time of its input event,
   and latency = the output record's Kafka timestamp - that send time.
5. memory: Redis ``MEMORY USAGE`` of sampled keys per key kind (see models/similarity/store.py),
   per item and per user; the serialized profile size per user, read back from the profile
   table's changelog topic.

Writes ``bench/results/latest.json`` and ``bench/results/latest.png``; with ``--profile``,
py-spy samples the worker during the drain and during the latency run
(``.stack/bench/profile-*.folded``, collapsed stacks for flame graph tools) and
``bench/results/profile.txt`` summarises both.
Everything it creates (topics, Redis keys, the worker) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from bench_phases import (
    ceiling,
    drain,
    latency_run,
    match_latencies,
    pipeline_rate,
    prepare_events,
    sample_lag,
    start_spy,
    stop_spy,
    write_profile_summary,
)
from bench_probe import (
    RESULTS,
    ROOT,
    WORK,
    Run,
    batch_stats,
    cleanup,
    cpu_util,
    end_offsets,
    free_port,
    machine,
    percentile,
    profile_sizes,
    redis_memory,
    say,
    scrape_batches,
    service_pids,
    settings_env,
)

from streams.core.settings import Settings
from streams.kafka import client_options, ensure_topics
from streams.tools.replay import replay

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


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pre, rest, n_pre = prepare_events(args.users, args.seed, args.events)
    tag = uuid.uuid4().hex[:8]
    s = Settings.from_env().namespaced(f"bench{tag}").with_(
        web_port=free_port(),
        data_dir=str(WORK / tag / "worker"),
        partitions=args.partitions,
    )
    run = Run(settings=s, ceiling_topic=f"bench{tag}.ceiling")
    result: dict[str, Any] = {"run_id": tag}
    proc: subprocess.Popen[bytes] | None = None
    try:
        await ensure_topics(s)
        await ensure_topics(s.with_(topic_events=run.ceiling_topic))
        say(f"preloading {n_pre} events into {s.topic_events} ({s.partitions} partitions)")
        loaded = await replay(s, pre)
        if loaded.send_errors or loaded.events != n_pre:
            raise SystemExit(f"preload failed: {loaded.as_dict()}")
        result["preload"] = loaded.as_dict()

        say("ceiling: raw aiokafka consume -> orjson decode -> produce")
        result["ceiling"] = await ceiling(s, run.ceiling_topic, n_pre)
        say(f"ceiling: {result['ceiling']['eps']:,.0f} events/s")

        say("pipeline: starting the worker on the preloaded topic")
        cmd = [sys.executable, "-m", "streams", "worker"]
        log_path = WORK / tag / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, env=settings_env(s), stdout=log, stderr=log)  # noqa: ASYNC220
        t0 = time.monotonic()
        spies: list[subprocess.Popen[bytes] | None] = []
        run.pids = await service_pids(s)
        admin = AIOKafkaAdminClient(**client_options(s))
        await admin.start()
        try:
            pid = proc.pid

            def first_commit() -> None:
                spies.append(start_spy(args, pid, "drain"))
                run.first_batches = scrape_batches(s.web_port)

            done = await drain(
                run,
                pid,
                t0,
                admin,
                args.timeout,
                first_commit,
            )
            rate = pipeline_rate(run.samples, done)
            drained = scrape_batches(s.web_port)
            rate["batches"] = batch_stats(run.first_batches or drained, drained)
            first = next(x for x in run.samples if x.committed > 0)
            rate["cpu_cores_used"] = cpu_util(run.samples, first, done)
            result["pipeline"] = rate
            say(f"pipeline: {rate['eps']:,.0f} events/s over {rate['seconds']}s")
            run.phase_marks["drained"] = done.t
            for spy in spies:
                stop_spy(spy)
            spies = [start_spy(args, pid, "live")]

            lat_rate = max(50.0, rate["eps"] * args.latency_fraction)
            say(f"latency: fixed rate {lat_rate:,.0f} events/s for {args.latency_seconds}s")
            run.phase_marks["latency run"] = time.monotonic() - t0
            rec_start = await end_offsets(s, s.topic_recommendations)
            sent_at: dict[str, float] = {}
            sampler = asyncio.create_task(_sample_forever(run, proc.pid, t0, admin))
            live_first, own_cpu = len(run.samples), time.process_time()
            try:
                sent = await latency_run(s, rest, lat_rate, args.latency_seconds, sent_at)
            finally:
                sampler.cancel()
            # CPU shares while the load is offered: the load generator (this process) shares
            # the two cores with the worker, Kafka and Redis.
            live_cpu = cpu_util(run.samples, run.samples[live_first], run.samples[-1])
            live_cpu["load_generator"] = round(
                (time.process_time() - own_cpu) / max(sent["seconds"], 1e-9), 2
            )
            await drain(run, proc.pid, t0, admin, limit_s=60)
            live_batches = batch_stats(drained, scrape_batches(s.web_port))
            for spy in spies:
                stop_spy(spy)
            if args.profile:
                write_profile_summary(args.out.with_name("profile.txt"))
            await asyncio.sleep(1.0)  # outputs of the last batch
            lat = await match_latencies(s, rec_start, sent_at)
        finally:
            await admin.close()
        ms = [d * 1000 for _, d in lat]
        result["latency"] = {
            "rate_eps": round(lat_rate, 1),
            "replay": sent,
            "recommendations_matched": len(ms),
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "batches": live_batches,
            "cpu_cores_used": live_cpu,
        }
        say(f"latency: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
        result["rss_mb_max"] = round(max(x.rss_mb for x in run.samples), 1)
        result["rss_mb_end"] = round(run.samples[-1].rss_mb, 1)
        result["redis"] = await redis_memory(s, args.users)
        result["profiles"] = await profile_sizes(s)
        result["lag_curve"] = [
            [round(x.t, 2), x.end - x.committed, round(x.rss_mb, 1)] for x in run.samples
        ]
        result["chart"] = args.out.with_suffix(".png").name
        chart(run, result["ceiling"]["eps"], lat, args.out.with_suffix(".png"))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not args.keep:
            await cleanup(s, [run.ceiling_topic])
    return result


async def _sample_forever(run: Run, pid: int, t0: float, admin: AIOKafkaAdminClient) -> None:
    while True:
        await sample_lag(run, pid, t0, admin)
        await asyncio.sleep(0.5)


def markdown(latest: dict[str, Any]) -> str:
    """The README's performance table, from a ``latest.json`` (no number typed by hand)."""
    m = latest["machine"]
    live = latest.get("detail", {}).get("latency", {}).get("cpu_cores_used", {})
    rows = [
        ("raw aiokafka ceiling (consume → decode → produce)",
         f"{latest['ceiling_eps']:,.0f} events/s"),
        ("full pipeline, one worker process", f"{latest['pipeline_eps']:,.0f} events/s"),
        ("pipeline / ceiling", f"{latest['ratio']:.0%}"),
        (f"end-to-end latency at {latest['latency_rate_eps']:,.0f} events/s (p50 / p95 / p99)",
         f"{latest['p50_ms']:,.0f} / {latest['p95_ms']:,.0f} / {latest['p99_ms']:,.0f} ms"),
        ("worker CPU per event while draining",
         f"{latest.get('worker_cpu_us_per_event', 0):,.0f} µs"),
        ("CPU cores used in the latency run: worker / load generator / Kafka / Redis",
         " / ".join(f"{live.get(k, float('nan')):.2f}"
                    for k in ("worker", "load_generator", "kafka", "redis"))),
        ("worker RSS (max)", f"{latest['rss_mb']:.0f} MB"),
        ("Redis memory per item / per user", f"{latest['redis_bytes_per_item']:,.0f} B / "
         f"{latest['redis_bytes_per_user']:,.0f} B"),
        ("serialized profile per user (mean)", f"{latest['profile_bytes_per_user']:,.0f} B"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    lines.append(
        f"\nMeasured by `make bench` on {latest['measured_at'][:10]}: {latest['events']:,} events, "
        f"{latest['partitions']} partitions; {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']}, Kafka {m['kafka']}, Redis {m['redis']}; {m['note']} "
        f"(load average {m.get('loadavg_1m', '?')} at the end of the run)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=800, help="users to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000, help="events to preload")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="pipeline drain limit")
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--latency-fraction", type=float, default=0.5, help="latency-run rate / pipeline max"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the README table of --out and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(orjson.loads(args.out.read_bytes())))
        return

    subprocess.run([str(ROOT / "scripts/stack.sh"), "up"], check=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    detail = asyncio.run(bench(args))
    ceiling_eps = detail["ceiling"]["eps"]
    pipeline_eps = detail["pipeline"]["eps"]
    latest = {
        "ceiling_eps": ceiling_eps,
        "pipeline_eps": pipeline_eps,
        "ratio": round(pipeline_eps / ceiling_eps, 3),
        "p50_ms": detail["latency"]["p50_ms"],
        "p95_ms": detail["latency"]["p95_ms"],
        "p99_ms": detail["latency"]["p99_ms"],
        "latency_rate_eps": detail["latency"]["rate_eps"],
        "rss_mb": detail["rss_mb_max"],
        "worker_cpu_us_per_event": round(
            1e6 * detail["pipeline"]["cpu_cores_used"]["worker"] * detail["pipeline"]["seconds"]
            / max(detail["pipeline"]["events"], 1)
        ),
        "redis_bytes_per_item": detail["redis"]["bytes_per_item"],
        "redis_bytes_per_user": detail["redis"]["bytes_per_user"],
        "profile_bytes_per_user": detail["profiles"]["mean_bytes"],
        "events": detail["pipeline"]["events"],
        "partitions": args.partitions,
        "profiled": bool(args.profile),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "bench_seconds": round(time.time() - started, 1),
        "machine": machine(),
        "detail": detail,
    }
    args.out.write_bytes(orjson.dumps(latest, option=orjson.OPT_INDENT_2) + b"\n")
    say(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    summary = {k: v for k, v in latest.items() if k not in {"detail", "machine"}}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
