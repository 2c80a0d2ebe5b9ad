"""Offline evaluations: churn, forecast, uplift, recommendations."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams.cli.base import (
    _progress,
    _settings,
    _State,
    evaluate,
)
from streams.core import config
from streams.core.errors import InputError


@evaluate.command("churn")
def evaluate_churn(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="CSV with header user_id,timestamp,amount.")
    ],
    cutoff: Annotated[str, typer.Option("--cutoff", help="Last day of history, YYYY-MM-DD.")],
    horizon_days: Annotated[
        float | None,
        typer.Option(
            "--horizon-days",
            help="Churn = no purchase within H days [default: the worker's "
            "SHOPSTREAM_CHURN_HORIZON_DAYS].",
        ),
    ] = None,
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
    horizon = settings.churn_horizon_days if horizon_days is None else horizon_days
    try:
        day = date.fromisoformat(cutoff)
    except ValueError:
        raise InputError(f"--cutoff {cutoff!r} is not a YYYY-MM-DD date") from None
    with _progress("replaying") as update:
        result = evaluate(transactions, day, horizon, update, partitions=partitions,
                          settings=settings)  # fmt: skip
    if json_out:
        typer.echo(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    _churn_report(result, horizon)


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
