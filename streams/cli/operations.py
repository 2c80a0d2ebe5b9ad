"""Operating commands: the worker, topics, sources, repartition, reset, forget, settings."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams import logs
from streams.cli.base import (
    _fail_line,
    _load,
    _logging,
    _settings,
    cli,
    err,
)
from streams.core.access import check_access
from streams.core.errors import ShopstreamError
from streams.core.settings import markdown_table
from streams.tools.failures import EXIT_UNREACHABLE


@cli.command()
def worker() -> None:
    """Run the stream worker in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    from streams.worker.forecast_process import ForecastProcess

    settings = _settings()
    forecasts = ForecastProcess()
    if settings.forecast_interval_s > 0:  # first: its imports overlap ours (seconds of CPU)
        forecasts.start()

    import faust

    from streams.app import create_app
    from streams.kafka import ensure_topics
    from streams.tools.preflight import check_redis
    from streams.worker import heap

    exposure = check_access(settings)  # before anything starts: an unsafe exposure is refused
    _logging(settings.log_level, settings)
    asyncio.run(ensure_topics(settings))  # logs the topics it created
    asyncio.run(check_redis(settings))
    for note in exposure:  # once Kafka and Redis answered: the worker is about to serve
        logging.getLogger("streams.web").warning("%s", note)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)  # from now on Faust's to report
    shop = create_app(settings, forecasts)
    # Everything imported and built so far (modules, River, Faust's app: ~165k objects) lives
    # as long as the process: out of the cyclic collector's sight, a full collection scans
    # only what the stream creates (on the bench, 23-29 ms instead of 150-290 ms per
    # collection, a pause of every batch under way: docs/performance.md, "Seventh round");
    # young objects are collected every 10,000 allocations, not 700 ("Eleventh round").
    heap.settle()
    faust.Worker(
        shop.app, loglevel=settings.log_level.upper(), quiet=settings.log_format == "json",
        logging_config=logs.logging_config(settings.log_level, settings.log_format),
    ).execute_from_commandline()  # fmt: skip


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
    typer.echo(f"reset: {summary['redis_keys']} Redis keys deleted (the erasure fences of "
               f"{summary['erasure_fences_kept']} forgotten users kept), changelog and group "
               "offsets deleted; the workers start over from the beginning of the events topic")
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
def forget(
    user_id: Annotated[str, typer.Argument(help="The storefront's user id.")],
    url: Annotated[str, typer.Option(help="The worker's HTTP address.")] = "",
) -> None:
    """Erase a user: profile, session state, stored recommendations, pending alerts.

    Any worker will do: the one asked forwards to the owner of the user's partition. Sends
    SHOPSTREAM_ADMIN_TOKEN; the id is sent percent-encoded, so it is erased exactly as given.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = _settings()
    base = (url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    path = "/users/" + urllib.parse.quote(user_id, safe="")
    headers = {"Accept": "application/json"}
    if settings.admin_token:
        headers["Authorization"] = f"Bearer {settings.admin_token}"
    request = urllib.request.Request(base + path, method="DELETE", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            result = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        _fail_line(_forget_refused(base, user_id, exc))
        raise typer.Exit(EXIT_UNREACHABLE if exc.code == 409 else 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail_line(
            f"cannot reach the worker at {base} ({reason}); it holds the profiles, "
            "so start it (make worker) or pass --url"
        )
        raise typer.Exit(EXIT_UNREACHABLE) from None
    removed = result["removed"]
    counts = ", ".join(f"{k} {v}" for k, v in removed.items())
    if not any(removed.values()):
        typer.echo(f"nothing was stored for {result['user_id']} (nothing to erase): {counts}")
    else:
        typer.echo(f"forgot {result['user_id']}: {counts}")


def _forget_refused(base: str, user_id: str, exc: Any) -> str:
    """The line for a worker's refusal of ``DELETE /users/...``."""
    try:
        detail = str(orjson.loads(exc.read()).get("error", ""))[:300]
    except (orjson.JSONDecodeError, AttributeError, OSError):
        detail = ""
    what = f"the worker at {base} answered {exc.code} {exc.reason} to forget {user_id!r}"
    if exc.code == 401:
        return f"{what}: set SHOPSTREAM_ADMIN_TOKEN to the worker's admin token"
    if exc.code == 409:
        detail = detail or "the owner of the user could not be reached"
        return f"{what}: {detail}; run it again (forgetting twice is harmless)"
    return f"{what}" + (f": {detail}" if detail else "")


@cli.command("settings")
def show_settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The README's table of variables and defaults.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print the settings in effect: value (secrets masked) and source (default, file,
    .env or env)."""
    if markdown:
        sys.stdout.write(markdown_table() + "\n")
        return
    loaded = _load()
    rows = loaded.rows()
    if json_out:
        data = {var: {"value": value, "source": source} for var, value, source in rows}
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        return
    table = Table(title="settings in effect" + (f" ({loaded.config_path})" if loaded.config_path
                                                 else ""))  # fmt: skip
    for col in ("variable", "value", "source"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)
