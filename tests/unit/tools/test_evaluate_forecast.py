"""``evaluate forecast``: rolling origins, the baseline on the same pairs, the command."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from streams.cli import evaluate_forecast
from streams.tools.evaluate_churn import TransactionsError
from streams.tools.evaluate_forecast import daily_totals, evaluate, rolling
from streams.tools.generate import generate, transactions_csv


@pytest.fixture(scope="module")
def tx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events, _ = generate(users=400, seed=5, days=120)
    path = tmp_path_factory.mktemp("forecast") / "tx.csv"
    path.write_text(transactions_csv(events))
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_forecast)
    return app


def test_origins_pairs_and_baseline_are_the_protocol() -> None:
    """Origins from the warm-up to H days before the end; seasonal naive = y[d - 7]."""
    rng = random.Random(1)
    y = [(d, 100.0 + (50 if d % 7 == 2 else 0) + rng.gauss(0, 10), 3) for d in range(100)]
    r = rolling(y, horizon=7, warmup_days=28)
    assert r["n"] == (100 - 7 + 1 - 28) * 7
    naive = [abs(y[t + h - 7][1] - y[t + h][1]) for t in range(28, 94) for h in range(7)]
    assert r["baseline_mae"] == pytest.approx(sum(naive) / len(naive))
    assert r["mae"] < r["baseline_mae"]  # noise: last week's value carries it, the model less
    assert sum(w["n"] for w in r["by_weekday"]) == r["n"] == sum(m["n"] for m in r["by_month"])
    assert [s["step"] for s in r["by_step"]] == list(range(1, 8))


def test_a_period_restricts_the_origins_only() -> None:
    y = [(d, float(d % 7), 1) for d in range(100)]
    full = rolling(y, warmup_days=14)
    part = rolling(y, warmup_days=14, first_origin=50, last_origin=59)
    assert part["n"] == 10 * 7 < full["n"]


def test_daily_totals_fill_days_without_orders(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user_id,timestamp,amount\na,2024-03-01,5\nb,2024-03-01,2\nb,2024-03-04,1\n")
    days = daily_totals(path)
    assert [(r, n) for _, r, n in days] == [(7.0, 2), (0.0, 0), (0.0, 0), (1.0, 1)]


def test_too_short_or_bad_inputs_are_input_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user_id,timestamp,amount\na,2024-03-01,5\n")
    with pytest.raises(TransactionsError, match="no origin"):
        evaluate(path)
    with pytest.raises(TransactionsError, match="between 1 and 7"):
        rolling([(0, 1.0, 1)] * 100, horizon=14)


def test_command_json_has_the_promised_keys(tx: Path) -> None:
    out = CliRunner().invoke(_app(), ["--transactions", str(tx), "--horizon-days", "7",
                                      "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    r = orjson.loads(out.stdout)
    assert {"mae", "baseline_mae", "n", "mape", "baseline_mape", "by_weekday"} <= set(r)
    assert r["n"] == (120 - 56 - 7 + 1) * 7
    table = CliRunner().invoke(_app(), ["--transactions", str(tx)])
    assert table.exit_code == 0 and "seasonal" in table.stdout
