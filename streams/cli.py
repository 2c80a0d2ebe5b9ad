"""The ``shopstream`` command line (Typer): worker, replay, generate, evaluate, tail, topics.

Every command and all terminal output live here; the tools behind them
(:mod:`streams.tools`) return data and report progress through a callback. When Kafka,
Redis or the worker cannot be reached, or an input is malformed, a command prints one line
(what failed, what to check; :mod:`streams.tools.failures`) and exits non-zero: 2 for a
setting or an input, 3 for a service that cannot be reached, 1 for other failures.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streams import logs
from streams.core import config
from streams.core.access import check_access
from streams.core.build import version_line
from streams.core.errors import InputError, ShopstreamError
from streams.core.settings import Settings, markdown_table
from streams.tools.failures import EXIT_UNREACHABLE, explain

cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)
evaluate = typer.Typer(no_args_is_help=True, help="Offline evaluations on recorded data.")
cli.add_typer(evaluate, name="evaluate")
imports = typer.Typer(no_args_is_help=True, help="Import a shop's history as contract events.")
cli.add_typer(imports, name="import")
err = Console(stderr=True, soft_wrap=True)


class _State:
    """What the global options chose, and the settings once loaded (for error messages)."""

    config_path: Path | None = None
    loaded: config.Loaded | None = None


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit


@cli.callback()
def _options(
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file [default: $SHOPSTREAM_CONFIG]."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Real-time behaviour engine for online shops (``shopstream COMMAND --help``)."""
    _State.config_path = config_file


def _load() -> config.Loaded:
    if _State.loaded is None:
        _State.loaded = config.load(config=_State.config_path)
        for warning in _State.loaded.warnings:
            if _State.loaded.settings.log_format == "json":  # one JSON object per line
                record = logging.LogRecord(
                    "streams.core.config", logging.WARNING, __file__, 0, warning, (), None
                )
                sys.stderr.write(logs.JsonFormatter().format(record) + "\n")
            else:
                _fail_line(f"warning: {warning}")
    return _State.loaded


def _settings() -> Settings:
    return _load().settings


def _fail_line(text: str) -> None:
    """One plain line on stderr (no wrapping, no markup)."""
    sys.stderr.write(f"shopstream: {text}\n")


@contextmanager
def _progress(label: str, *, show: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only on a terminal): yields ``update(done, total)``."""
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, disable=not show or not err.is_terminal, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _logging(level: str, settings: Settings | None = None) -> None:
    logs.setup(level, settings.log_format if settings else "text")


@cli.command()
def worker() -> None:
    """Run the stream worker in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    import faust

    from streams.app import create_app
    from streams.kafka import ensure_topics
    from streams.tools.preflight import check_redis

    settings = _settings()
    exposure = check_access(settings)  # before anything starts: an unsafe exposure is refused
    _logging(settings.log_level, settings)
    asyncio.run(ensure_topics(settings))  # logs the topics it created
    asyncio.run(check_redis(settings))
    for note in exposure:  # once Kafka and Redis answered: the worker is about to serve
        logging.getLogger("streams.web").warning("%s", note)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)  # from now on Faust's to report
    shop = create_app(settings)
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
    """The churn scores at a cutoff vs recency, with the worker's settings: replay
    transactions to the cutoff, score every customer, compare with the truth (overall, per
    recency bucket, calibration, and the alerts the worker sent)."""
    from streams.tools.evaluate_churn import evaluate

    settings = _settings()
    try:
        day = date.fromisoformat(cutoff)
    except ValueError:
        raise InputError(f"--cutoff {cutoff!r} is not a YYYY-MM-DD date") from None
    with _progress("replaying") as update:
        result = evaluate(transactions, day, horizon_days, update, partitions=partitions,
                          settings=settings)  # fmt: skip
    if json_out:
        typer.echo(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    _churn_report(result, horizon_days)


def _f(v: float, digits: int = 4) -> str:
    return "-" if v != v else f"{v:.{digits}f}"


def _churn_report(r: dict[str, Any], horizon_days: float) -> None:
    """The human form of ``evaluate churn``: scores, buckets, alerts."""
    table = Table(title=f"churn at {r['cutoff']}, horizon {horizon_days:g} days")
    for col in ("score", "ROC AUC", "PR AUC", "Brier"):
        table.add_column(col)
    champions = ", ".join(sorted(set(r["champions"])))
    table.add_row(f"alerts ({champions})", _f(r["auc"]), _f(r["pr_auc"]), _f(r["brier"]))
    table.add_row("analytic (MBG/NBD)", _f(r["analytic_auc"]), "", _f(r["analytic_brier"]))
    table.add_row("learned model", _f(r["learned_auc"]), "", _f(r["learned_brier"]))
    table.add_row("recency baseline", _f(r["baseline_auc"]), _f(r["baseline_pr_auc"]), "")
    buckets = Table(title="ROC AUC by days since the last purchase")
    for col in ("days", "customers", "share", "churned", "alerts", "analytic", "learned",
                "recency"):  # fmt: skip
        buckets.add_column(col)
    for b in r["buckets"]:
        buckets.add_row(
            b["days"], str(b["n"]), f"{b['share']:.1%}", f"{b['churn_rate']:.1%}",
            _f(b["alert_auc"], 3), _f(b["analytic_auc"], 3), _f(b["learned_auc"], 3),
            _f(b["recency_auc"], 3),
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(buckets)
    a = r["alerts"]
    console.print(
        f"lift over recency {r['lift']:+.4f}; lowest bucket AUC (buckets >= 5%) "
        f"{_f(r['min_bucket_auc'], 3)}\n"
        f"alerts for the current silence (threshold {a['threshold']:g}, idle "
        f"{a['idle_days']:g} d): {a['n']} customers, precision {_f(a['precision'], 3)}, "
        f"recall {_f(a['recall'], 3)}, F1 {_f(a['f1'], 3)} ({a['sent']} sent in the replay)\n"
        f"customers {r['n']}, churned {r['positives']} ({r['positive_rate']:.1%}), labels "
        f"learned {r['labels_learned']}, champion per partition: {', '.join(r['champions'])}"
    )
    console.print(f"truth window: [{r['history_end']}, +{horizon_days:g} days)")


@evaluate.command("forecast")
def evaluate_forecast(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="CSV with header user_id,timestamp,amount.")
    ],
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, max=7, help="Days forecast at each origin.")
    ] = 7,
    warmup_days: Annotated[
        int, typer.Option("--warmup-days", min=7, help="Days learned before the first origin.")
    ] = 56,
    first: Annotated[str, typer.Option("--from", help="First origin, YYYY-MM-DD.")] = "",
    last: Annotated[str, typer.Option("--to", help="Last origin, YYYY-MM-DD.")] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rolling-origin forecasts of daily revenue (and orders) vs seasonal naive (the same
    weekday last week) in the same run: MAE and MAPE, per step, weekday and month."""
    from streams.tools.evaluate_forecast import evaluate as run_evaluate

    try:
        days = [date.fromisoformat(d) if d else None for d in (first, last)]
    except ValueError:
        raise InputError(f"--from/--to {first!r}, {last!r}: not YYYY-MM-DD dates") from None
    r = run_evaluate(transactions, horizon_days, warmup_days, days[0], days[1])
    if json_out:
        typer.echo(orjson.dumps(r).decode())
        return
    t = Table(title=f"daily forecast, {r['horizon_days']} days ahead, origins from "
                    f"{r['first_day']} + {r['warmup_days']} d to {r['last_day']}")  # fmt: skip
    for col in ("", "MAE", "seasonal naive MAE", "MAPE", "naive MAPE", "skill", "n"):
        t.add_column(col)
    rows = [("revenue", r), ("orders", r["orders"])]
    rows += [(w["weekday"], w) for w in r["by_weekday"]]
    rows += [(m["month"], m) for m in r["by_month"]]
    for name, e in rows:
        t.add_row(name, _f(e["mae"], 2), _f(e["baseline_mae"], 2), _f(e["mape"], 3),
                  _f(e["baseline_mape"], 3), _f(e["skill"], 3), str(e["n"]))  # fmt: skip
    t.caption = (f"skill = 1 - MAE / naive MAE; MAPE over {r['n_mape']} of {r['n']} days with "
                 f"sales; chosen now: {r['chosen']}")  # fmt: skip
    Console().print(t)


@evaluate.command("uplift")
def evaluate_uplift(
    users: Annotated[int, typer.Option("--users", min=1, help="Generated customers.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shop and the coupons.")] = 7,
    true_uplift: Annotated[float, typer.Option(
        "--true-uplift", min=0, max=0.99, help="The coupon's effect on the return probability."
    )] = 0.1,
    days: Annotated[int, typer.Option("--days", min=60, help="Days of generated history.")] = 180,
    holdout_share: Annotated[float | None, typer.Option(
        "--holdout-share", min=0.01, max=0.99,
        help="Share of alerts held out [default: SHOPSTREAM_ALERT_HOLDOUT_SHARE].",
    )] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Simulate the coupon loop on a generated shop with a known effect: the worker's churn
    alerts and holdout, each alert resolved after the horizon, the uplift with its interval."""
    from streams.tools.evaluate_uplift import evaluate as run_evaluate

    settings = _settings()
    if holdout_share is not None:
        settings = settings.with_(alert_holdout_share=holdout_share)
    r = run_evaluate(users, seed, true_uplift, days, settings)
    if json_out:
        typer.echo(orjson.dumps(r).decode())
        return
    t = Table(title=f"coupon uplift: {r['users']} customers, seed {r['seed']}, horizon "
                    f"{r['horizon_days']:g} days, holdout {r['holdout_share']:.0%}")  # fmt: skip
    for col in ("", "treatment - holdout", "95% interval", "simulated truth"):
        t.add_column(col)
    t.add_row("return rate", f"{r['uplift']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
              f"{r['true_uplift']:+.4f} (this sample {r['realised_uplift']:+.4f})")
    t.add_row("revenue per customer", f"{r['revenue_uplift']:+.2f}",
              f"[{r['revenue_ci_low']:+.2f}, {r['revenue_ci_high']:+.2f}]",
              f"{r['realised_revenue_uplift']:+.2f}")  # fmt: skip
    t.caption = (f"{r['n_treated']} treated, {r['n_holdout']} held out (each customer's first "
                 f"resolved alert of {r['alerts']}); return rate {r['return_rate_treated']:.3f}"
                 f" vs {r['return_rate_holdout']:.3f}, without coupons "
                 f"{r['base_return_rate']:.3f}")  # fmt: skip
    Console().print(t)


def _recs_table(r: dict[str, Any]) -> Table:
    t = Table(title=f"next-click evaluation @ {r['k']} ({r['n']} predictions; {r['split']})")
    for col in ("method", f"HR@{r['k']}", f"MRR@{r['k']}", "store - it: HR [95% CI]", "MRR"):
        t.add_column(col)
    t.add_row("similarity store (Redis)", f"{r['hr']:.4f}", f"{r['mrr']:.4f}", "", "")

    def ci(v: list[float]) -> str:
        return f"{100 * v[0]:+.2f} [{100 * v[1]:+.2f}, {100 * v[2]:+.2f}]"

    for b in r["baselines"]:
        gain = b.get("store_gain")
        t.add_row(f"baseline {b['name']}", f"{b['hr']:.4f}", f"{b['mrr']:.4f}",
                  ci(gain["hr"]) if gain else "", ci(gain["mrr"]) if gain else "")
    t.caption = (
        f"points (x100), paired bootstrap · coverage {r['coverage']:.3f} · "
        f"{r['clicks_per_s']:,.0f} clicks/s overall · "
        f"{r['test_clicks_per_s']:,.0f} clicks/s score-then-learn · redis CPU "
        f"{r['redis_cpu_us_per_train_click']:.0f} / {r['redis_cpu_us_per_test_click']:.0f} "
        "us per train / test click"
    )
    return t


@evaluate.command("recs")
def evaluate_recs(
    train: Annotated[Path | None, typer.Option(help="Train TSV: SessionId ItemId Time.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test TSV: SessionId ItemId Time.")] = None,
    holdout: Annotated[float | None, typer.Option(
        min=0.01, max=0.99, help="No --test: the last share of TRAIN's sessions is the test."
    )] = None,
    diginetica: Annotated[Path | None, typer.Option(
        help="Diginetica item views (CSV): its documented time split instead of TRAIN/TEST."
    )] = None,
    min_support: Annotated[int, typer.Option(
        min=1, help="--diginetica: keep items with at least this many clicks."
    )] = 5,
    k: Annotated[int, typer.Option(min=1, help="Length of the ranked list.")] = 20,
    baseline: Annotated[list[str] | None, typer.Option(
        help="Baselines in the same run (repeat or comma-separate): pop, ar, vstan-hr, "
        "vstan-mrr, vstan (both), vsknn, all, none."
    )] = None,
    redis_url: Annotated[
        str, typer.Option(help="Redis to replay against [default: SHOPSTREAM_REDIS_URL].")
    ] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Next-click HR@k/MRR@k of the similarity store, with the worker's configuration, vs
    baselines in the same run: replay TRAIN then TEST through the store."""
    from streams.tools.baselines import baseline_names
    from streams.tools.evaluate_recs import evaluate as run_evaluate
    from streams.tools.evaluate_recs import load_split
    from streams.worker.configs import rec_config

    try:
        names = baseline_names(baseline or ["ar"])
        clicks = load_split(train, test, diginetica=diginetica, holdout=holdout,
                            min_support=min_support)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings()
    if redis_url:
        settings = settings.with_(redis_url=redis_url)
        _State.loaded = config.Loaded(settings)  # so an error names the Redis in use
    with _progress("replay", show=not json_out) as update:
        result = run_evaluate(
            clicks[0], clicks[1], k=k, baselines=names, redis_url=settings.redis_url,
            config=rec_config(settings), progress=update,
        )  # fmt: skip
    result["split"] = clicks[2]
    if json_out:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        Console().print(_recs_table(result))


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


def main() -> None:
    """The ``shopstream`` entry point: a failure the operator can fix is one line."""
    # aiokafka logs every failed connection attempt; a command reports the failure once
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        cli()
    except Exception as exc:
        loaded = _State.loaded
        explained = explain(exc, loaded.settings if loaded else None)
        if explained is None:
            raise
        message, code = explained
        _fail_line(message)
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        _fail_line("interrupted")
        raise SystemExit(130) from None
