"""The ``shopstream`` command line (Typer): worker, replay, generate, evaluate, tail, topics."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streams.errors import ConfigError
from streams.evaluate_churn import churn_command
from streams.evaluate_recs import recs_command
from streams.generate import generate_command
from streams.settings import Settings, markdown_table

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
    from streams.replay import Faults, count_lines
    from streams.replay import replay as run_replay

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
    total = count_lines(file)
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=json_out or not err.is_terminal,
    ) as bar:
        task = bar.add_task("replay", total=limit or total)
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
                progress=lambda n: bar.update(task, completed=n),
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
    from streams.tail import read_topic

    settings = _settings()
    messages = asyncio.run(
        read_topic(settings, topic, max_messages=max_messages, idle_s=timeout, last=last)
    )
    for msg in messages:
        sys.stdout.write(orjson.dumps(msg).decode() + "\n")


cli.command("generate", help="Write a synthetic storefront clickstream (JSONL) and its truth.")(
    generate_command
)
evaluate.command("recs", help="Next-click HR@k/MRR@k of the similarity store vs a baseline.")(
    recs_command
)
evaluate.command("churn", help="ROC/PR AUC of the churn model at a cutoff vs recency.")(
    churn_command
)


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
