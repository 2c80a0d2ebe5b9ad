"""Data commands: replay, import orders, tail, generate."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from streams.cli.base import (
    _fail_line,
    _logging,
    _progress,
    _settings,
    cli,
    err,
    imports,
)


@cli.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL (contract events) or TSV (clicks) file.")],
    rate: Annotated[float, typer.Option(help="Events per second (0 = as fast as possible).")] = 0,
    speed: Annotated[
        float, typer.Option(help="Replay event time this many times faster (0 = off).")
    ] = 0,
    limit: Annotated[int, typer.Option(help="Stop after this many file records (0 = all).")] = 0,
    topic: Annotated[str, typer.Option(help="Target topic (default: the events topic).")] = "",
    producers: Annotated[
        int, typer.Option(min=1, help="Producer tasks; users are split by key hash.")
    ] = 1,
    duplicates: Annotated[
        float, typer.Option(min=0, max=1, help="Fraction of records sent twice.")
    ] = 0,
    out_of_order: Annotated[
        float, typer.Option(min=0, max=1, help="Fraction held back behind later records.")
    ] = 0,
    late: Annotated[
        float, typer.Option(min=0, max=1, help="Fraction with event time shifted back.")
    ] = 0,
    late_hours: Annotated[float, typer.Option(help="How far back late events are shifted.")] = 6,
    malformed: Annotated[
        float, typer.Option(min=0, max=1, help="Fraction replaced by garbage (DLQ).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the fault injection.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Publish a recorded clickstream to shop.events, keyed by user (load tests: see --help)."""
    from streams.tools.faults import Faults
    from streams.tools.replay import check_format, count_lines
    from streams.tools.replay import replay as run_replay

    settings = _settings()
    _logging("warning", settings)
    check_format(file)
    if rate and speed:
        raise typer.BadParameter("use either --rate or --speed, not both")
    faults = Faults(
        duplicates=duplicates,
        out_of_order=out_of_order,
        late=late,
        late_hours=late_hours,
        malformed=malformed,
    )
    total = limit or count_lines(file)
    with _progress("replay", show=not json_out) as update:
        summary = asyncio.run(
            run_replay(
                settings,
                file,
                rate=rate or None,
                speed=speed or None,
                limit=limit or None,
                topic=topic or None,
                producers=producers,
                faults=faults,
                seed=seed,
                progress=lambda n: update(n, total),
            )
        )
    if json_out:
        sys.stdout.write(orjson.dumps(summary.as_dict()).decode() + "\n")
    else:
        injected = ", ".join(f"{k} {v}" for k, v in summary.as_dict()["injected"].items() if v)
        err.print(
            f"replayed [bold]{summary.events}[/bold] events in {summary.seconds:.2f}s "
            f"({summary.events_per_s:,.0f} events/s, {summary.producers} producer(s)), "
            f"{summary.errors} unreadable lines, {summary.send_errors} send errors"
            + (f"; injected: {injected}" if injected else "")
        )
    if summary.send_errors:
        _fail_line(f"{summary.send_errors} records could not be delivered to Kafka")
        raise typer.Exit(1)
    if summary.errors:
        _fail_line(
            f"{file}: {summary.errors} unreadable lines skipped "
            f"(first: {', '.join(map(str, summary.error_lines[:10]))})"
        )
        raise typer.Exit(2)


@imports.command("orders")
def import_orders(
    file: Annotated[Path, typer.Argument(help="CSV: order lines, order totals or Online Retail.")],
    tz: Annotated[str, typer.Option(help="Time zone of times without one.")] = "UTC",
    limit: Annotated[int, typer.Option(help="Only the first N events in event time.")] = 0,
    allow_alerts: Annotated[
        bool, typer.Option("--allow-alerts", help="Run even if alerts of any age are published.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send an order history to shop.events in event-time order (docs/storefront.md)."""
    from streams.tools.import_orders import import_orders as run_import

    settings = _settings()
    _logging("warning", settings)
    if not settings.churn_alert_max_age_days and not allow_alerts:
        _fail_line("SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS=0 publishes every churn alert: an import "
                   "would send coupons for silences that ended long ago; keep the default (7) "
                   "for the worker, or pass --allow-alerts")  # fmt: skip
        raise typer.Exit(2)
    with _progress("import", show=not json_out) as update:
        s = asyncio.run(run_import(settings, file, tz=tz, limit=limit or None, progress=update))
    if json_out:
        sys.stdout.write(orjson.dumps(s.as_dict()).decode() + "\n")
    else:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())) or "none"
        err.print(
            f"imported [bold]{s.events}[/bold] purchase events ({s.shape}: {s.rows} rows, "
            f"{s.orders} orders, {s.customers} customers, {s.first} .. {s.last}) in "
            f"{s.seconds:.1f}s ({s.events_per_s:,.0f} events/s); skipped: {skipped}; "
            f"{s.send_errors} send errors. Churn alerts older than "
            f"{settings.churn_alert_max_age_days:g} days are counted, not published."
        )
    if s.send_errors:
        _fail_line(f"{s.send_errors} events could not be delivered to Kafka")
        raise typer.Exit(1)


@cli.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Topic to read from the beginning.")],
    max_messages: Annotated[int, typer.Option("--max", help="Stop after this many.")] = 10,
    timeout: Annotated[float, typer.Option(help="Stop after this many idle seconds.")] = 10.0,
    last: Annotated[
        bool, typer.Option("--last", help="The newest messages, not the oldest.")
    ] = False,
) -> None:
    """Print messages of a topic (value, and headers if any), one JSON line each."""
    from streams.tools.tail import read_topic

    settings = _settings()
    messages = asyncio.run(
        read_topic(settings, topic, max_messages=max_messages, idle_s=timeout, last=last)
    )
    for msg in messages:
        sys.stdout.write(orjson.dumps(msg).decode() + "\n")


@cli.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Events file (JSON lines, contract format).")],
    users: Annotated[int, typer.Option("--users", min=1, help="Number of customers.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same output).")] = 7,
    days: Annotated[
        int, typer.Option("--days", min=1, help="Length of the history in days.")
    ] = 120,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Truth file [default: OUT.truth.jsonl].")
    ] = None,
    transactions: Annotated[
        Path | None,
        typer.Option(
            "--transactions", help="Also write purchases as user_id,timestamp,amount CSV."
        ),
    ] = None,
    bots: Annotated[
        int, typer.Option("--bots", min=0, help="Also scrapers (bursts of fast views).")
    ] = 0,
) -> None:
    """Write a synthetic storefront clickstream (JSONL) and its truth."""
    from streams.tools.generate import generate as run_generate
    from streams.tools.generate import transactions_csv, write_jsonl

    events, rows = run_generate(users, seed, days=days, bots=bots)
    truth_path = truth or out.with_name(out.name.removesuffix(".jsonl") + ".truth.jsonl")
    write_jsonl(out, events)
    write_jsonl(truth_path, rows)
    if transactions is not None:
        transactions.write_text(transactions_csv(events))
    churned = sum(r.get("churned", False) for r in rows)
    purchases = sum(e["type"] == "purchase" for e in events)
    Console(soft_wrap=True).print(
        f"wrote {len(events)} events ({purchases} purchases) of {users} users "
        f"({churned} churned) to {out}; truth in {truth_path}"
    )
