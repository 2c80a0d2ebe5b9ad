"""``evaluate uplift`` (issue 18, done when): the loop offline recovers a known uplift.

Each run generates a shop, replays it through the worker's churn step (the alerts and their
holdout group come from the worker's code), resolves each customer's first alert after the
horizon and estimates the uplift. Sizes are bounded (800 customers) so a run takes seconds.
"""

from __future__ import annotations

import orjson
import pytest
import typer
from typer.testing import CliRunner

from streams.cli import evaluate_uplift
from streams.core.errors import InputError
from streams.core.settings import Settings
from streams.domain.alerts import alert_group
from streams.tools import evaluate_uplift as tool

USERS = 800
KEYS = {"uplift", "ci_low", "ci_high", "true_uplift", "n_treated", "n_holdout"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_known_uplift_lies_inside_the_interval(seed: int) -> None:
    r = tool.evaluate(USERS, seed, true_uplift=0.1)
    assert r["ci_low"] <= 0.1 <= r["ci_high"], r
    assert r["n_holdout"] > 20 and r["n_treated"] > 5 * r["n_holdout"]
    assert abs(r["realised_uplift"] - 0.1) < 0.05  # the draws built the effect in


def test_no_effect_gives_an_interval_around_zero() -> None:
    r = tool.evaluate(USERS, 4, true_uplift=0.0)
    assert r["ci_low"] <= 0.0 <= r["ci_high"], r
    assert r["realised_uplift"] == 0.0 == r["realised_revenue_uplift"]


def test_a_large_effect_is_detected_and_groups_follow_the_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wide effect and half held out: the interval is far from 0; each alert's group is
    the worker's hash of its id (the simulation does not choose groups itself)."""
    seen: list[dict[str, object]] = []
    replay = tool.replay_history

    def spy(*args: object, **kw: object):  # type: ignore[no-untyped-def]
        out = replay(*args, **kw)  # type: ignore[arg-type]
        seen.extend(out[2])
        return out

    monkeypatch.setattr(tool, "replay_history", spy)
    settings = Settings().with_(alert_holdout_share=0.5)
    r = tool.evaluate(400, 5, true_uplift=0.4, settings=settings)
    assert r["ci_low"] > 0.2  # detected (coverage: the seeded tests above)
    assert seen and all(a["group"] == alert_group(str(a["alert_id"]), 0.5) for a in seen)
    assert r["realised_revenue_uplift"] > 0  # the returns bring revenue (too noisy to test)


def test_an_impossible_effect_is_an_input_error() -> None:
    with pytest.raises(InputError, match="base return rate"):
        tool.evaluate(200, 1, true_uplift=0.95)


def test_command_json(monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()
    app.command()(evaluate_uplift)
    out = CliRunner().invoke(app, ["--users", "300", "--seed", "1", "--true-uplift", "0.1",
                                   "--days", "120", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    r = orjson.loads(out.stdout)
    assert KEYS <= set(r) and r["true_uplift"] == 0.1 and r["users"] == 300
