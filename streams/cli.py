"""The ``shopstream`` command line (Typer): worker, replay, generate, evaluate, tail, topics.

Every command and all terminal output live here; the tools behind them
(:mod:`streams.tools`) return data and report progress through a callback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streams.core.errors import ConfigError, ShopstreamError
from streams.core.settings import Settings, markdown_table

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
evaluate = typer.Typer(no_args_is_help=True, help="Offline evaluations on recorded data.")
cli.add_typer(evaluate, name="evaluate")
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:  # one clear line, no traceback
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@contextmanager
def _progress(label: str, *, show: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only on a terminal): yields ``update(done, total)``."""
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, disable=not show or not err.is_terminal, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )


@cli.command()
def worker() -> None:
    """Run the stream worker in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    import faust

    from streams.app import create_app
    from streams.kafka import ensure_topics

    settings = _settings()
    _logging(settings.log_level)
    created = asyncio.run(ensure_topics(settings))
    if created:
        err.print(f"created topics: {', '.join(created)}")
    shop = create_app(settings)
    faust.Worker(shop.app, loglevel=settings.log_level.upper()).execute_from_commandline()


@cli.command()
def repartition(
    partitions: Annotated[int, typer.Option("--partitions", min=2, help="The new count.")],
) -> None:
    """Add partitions to every topic and move each user's state with their key (stop the
    workers first; docs/reliability.md, "Adding partitions")."""
    from streams.tools.repartition import repartition as run_repartition

    settings = _settings()
    _logging("warning")
    try:
        summary = asyncio.run(run_repartition(settings, partitions))
    except ShopstreamError as exc:
        err.print(f"[red]repartition refused:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(
        f"{settings.topic_events}: {summary['before']} -> {summary['after']} partitions "
        f"({', '.join(summary['topics'])}); {summary['moved']} of {summary['users']} users moved"
    )


@cli.command()
def sources(
    accept: Annotated[
        bool, typer.Option("--accept", help="Accept the events topic's current id.")
    ] = False,
) -> None:
    """The events topic's id against the one the state was built from; with --accept,
    continue on a recreated topic (the old fences are set aside; docs/reliability.md)."""
    import redis.asyncio as aioredis

    from models.similarity import key_base
    from streams.kafka import topic_ids

    settings = _settings()
    _logging("warning")

    async def run() -> tuple[str, str]:
        current = (await topic_ids(settings, [settings.topic_events])).get(
            settings.topic_events, ""
        )
        client = aioredis.from_url(settings.redis_url)
        key = key_base(settings.redis_prefix) + "sources"
        try:
            stored = await client.hget(key, settings.topic_events)
            if accept and current:
                await client.hset(key, settings.topic_events, current)
        finally:
            await client.aclose()
        return current, stored.decode() if isinstance(stored, bytes) else str(stored or "")

    current, stored = asyncio.run(run())
    typer.echo(f"{settings.topic_events}: id {current or 'unknown'}; state built from "
               f"{stored or 'nothing yet'}")  # fmt: skip
    if accept and current and current != stored:
        typer.echo("accepted: the workers continue on this topic; its fences start afresh")


@cli.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the derived state.")] = False,
) -> None:
    """Start over from the retained input: delete the group's offsets, the profile
    changelog, the Redis keys and the checkpoints (workers stopped; docs/reliability.md)."""
    from streams.tools.reset import reset as run_reset

    settings = _settings()
    _logging("warning")
    if not yes:
        err.print("[red]refused:[/red] add --yes: this deletes every profile and the store")
        raise typer.Exit(2)
    try:
        summary = asyncio.run(run_reset(settings))
    except ShopstreamError as exc:
        err.print(f"[red]reset refused:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"reset: {summary['redis_keys']} Redis keys deleted, changelog and group offsets "
               "deleted; the workers start over from the beginning of the events topic")
    if summary["lost_to_retention"]:
        typer.echo(f"warning: retention already deleted the start of partitions "
                   f"{summary['lost_to_retention']}: those events are not derived again")


@cli.command()
def topics() -> None:
    """Create the input and output topics (idempotent)."""
    from streams.kafka import ensure_topics

    created = asyncio.run(ensure_topics(_settings()))
    typer.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")


@cli.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or TSV file.")],
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
    from streams.tools.replay import count_lines
    from streams.tools.replay import replay as run_replay

    settings = _settings()
    _logging("warning")
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


@evaluate.command("churn")
def evaluate_churn(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="CSV with header user_id,timestamp,amount.")
    ],
    cutoff: Annotated[str, typer.Option("--cutoff", help="Last day of history, YYYY-MM-DD.")],
    horizon_days: Annotated[
        float, typer.Option("--horizon-days", help="Churn = no purchase within H days.")
    ] = 30.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object.")
    ] = False,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            help="Split users as a worker with this many partitions does, one model each.",
        ),
    ] = 1,
) -> None:
    """ROC/PR AUC of the churn model at a cutoff vs recency: replay transactions to the
    cutoff, score every customer, compare with the truth."""
    from streams.tools.evaluate_churn import TransactionsError, evaluate

    try:
        day = date.fromisoformat(cutoff)
    except ValueError:
        err.print(f"[red]error:[/red] --cutoff {cutoff!r} is not a YYYY-MM-DD date")
        raise typer.Exit(2) from None
    try:
        with _progress("replaying") as update:
            result = evaluate(transactions, day, horizon_days, update, partitions=partitions)
    except TransactionsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    table = Table(title=f"churn at {result['cutoff']}, horizon {horizon_days:g} days")
    for col in ("", "ROC AUC", "PR AUC"):
        table.add_column(col)
    table.add_row("model", f"{result['auc']:.4f}", f"{result['pr_auc']:.4f}")
    table.add_row(
        "recency baseline", f"{result['baseline_auc']:.4f}", f"{result['baseline_pr_auc']:.4f}"
    )
    console = Console()
    console.print(table)
    console.print(
        f"customers {result['n']}, churned {result['positives']} "
        f"({result['positive_rate']:.1%}), labels learned {result['labels_learned']}, "
        f"progressive AUC {result['progressive_auc']:.4f}"
    )
    console.print(f"truth window: [{result['history_end']}, +{horizon_days:g} days)")


def _recs_table(r: dict[str, Any]) -> Table:
    t = Table(title=f"next-click evaluation @ {r['k']} ({r['n']} predictions)")
    for col in ("method", f"HR@{r['k']}", f"MRR@{r['k']}"):
        t.add_column(col)
    t.add_row("similarity store (Redis)", f"{r['hr']:.4f}", f"{r['mrr']:.4f}")
    if r["baseline"]:
        b = r["baseline"]
        t.add_row(f"baseline {b['name']}", f"{b['hr']:.4f}", f"{b['mrr']:.4f}")
    t.caption = (
        f"coverage {r['coverage']:.3f} · {r['clicks_per_s']:,.0f} clicks/s overall · "
        f"{r['test_clicks_per_s']:,.0f} clicks/s score-then-learn"
    )
    return t


@evaluate.command("recs")
def evaluate_recs(
    train: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                        help="Train TSV: SessionId ItemId Time.")],
    test: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                       help="Test TSV: SessionId ItemId Time.")],
    k: Annotated[int, typer.Option(min=1, help="Length of the ranked list.")] = 20,
    baseline: Annotated[
        str, typer.Option(help="Baseline in the same run: pop, ar or none.")
    ] = "ar",
    redis_url: Annotated[
        str, typer.Option(help="Redis to replay against [default: SHOPSTREAM_REDIS_URL].")
    ] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Next-click HR@k/MRR@k of the similarity store, with the worker's configuration, vs a
    baseline: replay TRAIN then TEST through the store."""
    from streams.tools.evaluate_recs import evaluate as run_evaluate
    from streams.worker.configs import rec_config

    if baseline not in ("pop", "ar", "none"):
        raise typer.BadParameter("must be pop, ar or none", param_hint="--baseline")
    chosen: Literal["pop", "ar"] | None = None if baseline == "none" else baseline  # type: ignore[assignment]
    settings = _settings()
    try:
        with _progress("replay", show=not json_out) as update:
            result = run_evaluate(
                train, test, k=k, baseline=chosen, redis_url=redis_url or settings.redis_url,
                config=rec_config(settings), progress=update,
            )  # fmt: skip
    except ShopstreamError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if json_out:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        Console().print(_recs_table(result))


@cli.command()
def forget(
    user_id: Annotated[str, typer.Argument(help="The storefront's user id.")],
    url: Annotated[str, typer.Option(help="The worker's HTTP address.")] = "",
) -> None:
    """Erase a user: profile, session state, stored recommendations, pending alerts."""
    import urllib.error
    import urllib.request

    settings = _settings()
    base = url or f"http://{settings.web_host}:{settings.web_port}"
    request = urllib.request.Request(f"{base}/users/{user_id}", method="DELETE")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            result = orjson.loads(resp.read())
    except urllib.error.URLError as exc:
        err.print(
            f"[red]cannot reach the worker at {base}[/red] ({exc}); it holds the profiles, "
            "so start it (make worker) and try again"
        )
        raise typer.Exit(1) from None
    removed = result["removed"]
    typer.echo(f"forgot {result['user_id']}: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


@cli.command("settings")
def show_settings() -> None:
    """Print every setting with its environment variable and default (Markdown)."""
    sys.stdout.write(markdown_table() + "\n")


def main() -> None:
    cli()
