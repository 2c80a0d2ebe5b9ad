"""The analytic scorer, the guard and the guarded scorers: rules, robustness, JSON state."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.alive import DEFAULT_PARAMS, AliveModel, Params, _objectives, p_churn, summary
from models.churn import ChurnModel
from models.guard import ANALYTIC, MODEL, Guard, GuardConfig
from models.guarded import GuardedChurn
from models.metrics import ScoreTally
from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.worker.configs import churn_scorers, guard_config

DAY, T0 = 86_400_000, 1_704_067_200_000
CFG = GuardConfig(mode="auto", threshold=0.5, half_life_days=90.0, min_labels=200,
                  min_class=20, margin=0.01, z=2.0, decide_every=10)  # fmt: skip


def json_round_trip(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(d))
    return out


# --- analytic scorer ----------------------------------------------------------------------


def test_p_churn_rises_with_silence_however_long() -> None:
    """For a given customer, a longer silence never lowers P(churn): the analytic scorer
    cannot turn around past the silences it has seen (the learned model did, issue 14)."""
    for pr in (DEFAULT_PARAMS, Params(0.7, 60.0, 0.05, 40.0), Params(3.0, 5.0, 2.0, 1.0)):
        for x, t_x in ((0, 0.0), (3, 40.0), (30, 300.0)):
            ps = [p_churn(pr, x, t_x, t_x + silence, 90.0) for silence in range(0, 5000, 25)]
            assert all(b >= a - 1e-12 for a, b in itertools.pairwise(ps)), (pr, x)
            assert all(0.0 <= p <= 1.0 for p in ps)


def test_sample_is_the_same_whatever_the_arrival_order() -> None:
    users = [(f"u{i}", T0 + i * DAY, T0 + (i + 5) * DAY, 1 + i % 4) for i in range(300)]
    a, b = AliveModel(capacity=50), AliveModel(capacity=50)
    for u in users:
        a.observe(*u)
    for u in random.Random(3).sample(users, len(users)):
        b.observe(*u)
    assert a.sample == b.sample and len(a.sample) == 50
    assert a.forget(next(iter(a.sample))) and len(a.sample) == 49
    assert not a.forget("never-seen")


def test_refit_waits_for_enough_customers_and_its_interval() -> None:
    m = AliveModel(min_customers=5, refit_every_days=7.0)
    for i in range(4):
        m.observe(f"u{i}", T0, T0 + i * DAY, 1 + i)
    assert not m.maybe_refit(T0 + 30 * DAY) and not m.ready  # 4 < 5 customers
    m.observe("u4", T0, T0, 1)
    assert m.maybe_refit(T0 + 30 * DAY) and m.ready
    assert not m.maybe_refit(T0 + 36 * DAY)  # within the refit interval
    assert m.maybe_refit(T0 + 37 * DAY)
    assert AliveModel(min_customers=0).maybe_refit(T0) is False  # empty sample


def test_a_fit_that_comes_out_non_finite_keeps_the_last_good_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = AliveModel(min_customers=1)
    m.observe("u1", T0, T0 + 10 * DAY, 3)
    monkeypatch.setattr("models.alive.fit", lambda *a, **k: Params(math.nan, 1.0, 1.0, 1.0))
    assert m.maybe_refit(T0 + 30 * DAY)
    assert m.params == DEFAULT_PARAMS and not m.ready
    assert math.isfinite(m.score(T0, T0 + 10 * DAY, 3, T0 + 40 * DAY, 30.0))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3000), st.integers(1, 60), st.sampled_from(["mbg", "bg"]),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_the_fit_evaluates_a_stack_of_points_as_each_alone(
    n: int, max_x: int, variant: str, seed: int
) -> None:
    """The fit evaluates its 32 finite-difference points in one call: every row must be
    bit for bit what that point alone gives, or the fit steps elsewhere (a mean along the
    stack's axis summed in another order and differed in the last bits)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, max_x, n)
    t_x = rng.random(n) * 300 * (x > 0)
    data = (x, t_x, t_x + rng.random(n) * 300)
    thetas = DEFAULT_PARAMS.log() + rng.normal(0, 3, (32, 4))
    thetas[0] = [40.0, -40.0, 0.0, 13.0]  # clipped parameters
    prior = DEFAULT_PARAMS.log()
    stacked = _objectives(thetas, data, variant, prior, 2.0)  # type: ignore[arg-type]
    alone = [_objectives(t[None], data, variant, prior, 2.0)[0] for t in thetas]  # type: ignore[arg-type]
    assert stacked == alone


def test_alive_state_round_trips_through_json() -> None:
    m = AliveModel(min_customers=3)
    for i in range(20):
        m.observe(f"u{i}", T0 + i * DAY, T0 + (i + 9) * DAY, 2 + i % 3)
    m.maybe_refit(T0 + 60 * DAY)
    back = AliveModel.from_dict(json_round_trip(m.to_dict()))
    assert back.to_dict() == m.to_dict()
    for i in range(20, 40):  # goes on identically (the sample's eviction order too)
        for model in (m, back):
            model.observe(f"u{i}", T0, T0 + DAY, 2)
    assert back.sample == m.sample
    with pytest.raises(ValueError, match="version"):
        AliveModel.from_dict({"v": 0})


# --- guard --------------------------------------------------------------------------------


def feed(g: Guard, n: int, model_good: bool, start: int = 0, seed: int = 0) -> None:
    """``n`` labels; the better scorer separates the classes, the other is noisy."""
    rng = random.Random(seed)
    for i in range(start, start + n):
        y = rng.random() < 0.5
        good = min(max((0.7 if y else 0.3) + rng.gauss(0, 0.15), 0.0), 1.0)
        noisy = min(max((0.55 if y else 0.45) + rng.gauss(0, 0.2), 0.0), 1.0)
        a, m = (noisy, good) if model_good else (good, noisy)
        g.update(a, m, y, T0 + i * 3_600_000)


def test_the_learned_model_is_not_trusted_before_it_is_proven() -> None:
    g = Guard(CFG)
    feed(g, 150, model_good=True)  # much better, but on fewer labels than min_labels
    assert g.champion == "analytic"
    feed(g, 200, model_good=True, start=150)
    assert g.champion == "model" and g.switches == 1


def test_a_small_lead_within_the_noise_does_not_switch() -> None:
    g = Guard(CFG)
    rng = random.Random(1)
    for i in range(600):  # the same scores plus a little noise: at most a tiny lead
        y = rng.random() < 0.5
        s = (0.6 if y else 0.4) + rng.gauss(0, 0.25)
        g.update(min(max(s, 0.0), 1.0), min(max(s + rng.gauss(0, 0.02), 0.0), 1.0), y, T0 + i)
    assert g.champion == "analytic"


def test_the_champion_hands_back_as_soon_as_it_is_not_ahead() -> None:
    g = Guard(replace(CFG, half_life_days=20.0))
    feed(g, 400, model_good=True)
    assert g.champion == "model"
    feed(g, 600, model_good=False, start=400)  # it got worse: recent labels weigh more
    assert g.champion == "analytic" and g.switches == 2


def test_non_finite_scores_count_for_neither_scorer() -> None:
    g = Guard(CFG)
    g.update(0.4, math.nan, True, T0)
    g.update(math.inf, 0.3, False, T0)
    g.update(-0.1, 0.3, False, T0)
    assert g.n == 0 and g.effective() == (0.0, 0.0)
    g.update(0.4, 0.6, True, T0)
    assert g.n == 1


def test_forced_modes_never_switch() -> None:
    for mode in ("analytic", "model"):
        g = Guard(replace(CFG, mode=mode))
        feed(g, 400, model_good=mode == "analytic")
        assert g.champion == mode and g.switches == 0


def test_guard_metrics_and_json_state() -> None:
    g = Guard(CFG)
    feed(g, 300, model_good=True)
    m = g.metrics()
    assert m["model"]["auc"] > m["analytic"]["auc"] > 0.5
    assert m["model"]["brier"] < m["analytic"]["brier"]
    assert 0 < m["model"]["precision"] <= 1 and 0 < m["model"]["recall"] <= 1
    assert m["effective_labels"] == pytest.approx(m["model"]["n"])
    back = Guard.from_dict(json_round_trip(g.to_dict()))
    assert back.to_dict() == g.to_dict()
    feed(g, 100, model_good=False, start=300, seed=5)
    feed(back, 100, model_good=False, start=300, seed=5)
    assert back.to_dict() == g.to_dict()


def test_forgetting_rebases_without_changing_the_metrics() -> None:
    a, b = Guard(CFG), Guard(CFG)
    for g, step_ms in ((a, DAY), (b, DAY)):
        for i in range(400):
            y = i % 3 == 0
            g.update(0.7 if y else 0.4, 0.6 if y else 0.5, y, T0 + i * step_ms * 60)
    assert a.ref_ms > T0  # 400 labels over 65 years: rebased on the way
    ta, tb = a.tally[MODEL], b.tally[ANALYTIC]
    assert math.isfinite(ta.auc()) and math.isfinite(tb.auc())
    assert all(math.isfinite(v) for v in ta.to_dict()["sums"])


def test_score_tally_matches_exact_auc_up_to_ties() -> None:
    rng = np.random.default_rng(0)
    t = ScoreTally()
    ps, ys = rng.random(500), rng.random(500) < 0.4
    for p, y in zip(ps, ys, strict=True):
        t.add(float(p), bool(y))
    pos, neg = ps[ys], ps[~ys]
    exact = float(np.mean(pos[:, None] > neg[None, :]))
    assert t.auc() == pytest.approx(exact, abs=0.01)


# --- the guarded scorers ------------------------------------------------------------------


def trained_scorers(n: int = 800) -> GuardedChurn:
    g = churn_scorers(Settings(churn_min_labels=200, churn_min_customers=5))
    rng = random.Random(2)
    for i in range(30):
        g.observe(f"u{i}", T0, T0 + (i % 10) * DAY, 1 + i % 5)
    g.tick(T0 + 60 * DAY)
    for i in range(n):
        silence = rng.uniform(0, 120)
        y = silence + rng.gauss(0, 20) > 45
        s = summary(T0, T0 + 10 * DAY, 3, T0 + int((10 + silence) * DAY))
        g.learn({"log_recency": math.log1p(silence), "bg_p": g.analytic(s)}, s, y, T0 + i * DAY)
    return g


def test_guarded_scorers_round_trip_through_json_and_go_on_identically() -> None:
    g = trained_scorers()
    back = GuardedChurn.from_dict(json_round_trip(g.to_dict()))
    assert back.to_dict() == g.to_dict()
    x, s = {"log_recency": 3.0, "bg_p": 0.7}, summary(T0, T0 + 10 * DAY, 3, T0 + 40 * DAY)
    assert back.score(x, s) == g.score(x, s)
    for scorer in (g, back):
        scorer.learn(x, s, True, T0 + 900 * DAY)
        scorer.observe("new", T0, T0 + DAY, 2)
    assert back.to_dict() == g.to_dict()


def test_alerts_name_the_champion_and_the_learned_model_waits_for_its_warm_up() -> None:
    g = churn_scorers(Settings(churn_min_customers=1))
    assert not g.can_alert  # not fitted yet
    g.observe("u1", T0, T0 + 5 * DAY, 2)
    g.tick(T0 + 30 * DAY)
    assert g.can_alert and g.champion == "analytic" and g.model_version == "churn-mbgnbd-v1"
    p, version, reasons = g.score({}, summary(T0, T0 + 5 * DAY, 2, T0 + 30 * DAY))
    assert version == "churn-mbgnbd-v1" and 0 < p < 1 and set(reasons) == {
        "silence_vs_rhythm", "slow_buyer"}  # fmt: skip
    forced = churn_scorers(Settings(churn_guard="model", churn_min_labels=200))
    assert forced.champion == "model" and not forced.can_alert  # its warm-up first
    assert trained_scorers().model_ready


def test_the_forest_option_that_had_no_json_form_is_refused_with_a_reason() -> None:
    with pytest.raises(ConfigError, match="forest was removed"):
        Settings(churn_model="forest").checked()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown churn model kind"):
        ChurnModel("forest")  # type: ignore[arg-type]


def test_the_churn_model_json_state_predicts_and_learns_exactly_like_the_original() -> None:
    m = ChurnModel()
    rng = random.Random(4)
    rows = [({"a": rng.random(), "b": rng.gauss(0, 2)}, rng.random() < 0.4) for _ in range(400)]
    for x, y in rows[:300]:
        m.learn_one(x, y)
    back = ChurnModel.from_dict(json_round_trip(m.to_dict()))
    for x, y in rows[300:]:
        m.learn_one(x, y)
        back.learn_one(x, y)
    assert [m.predict_proba_one(x) for x, _ in rows] == [back.predict_proba_one(x) for x, _ in rows]
    assert back.to_dict() == m.to_dict() and back.metrics == m.metrics


def test_guard_config_comes_from_the_settings() -> None:
    c = guard_config(Settings(churn_guard="analytic", churn_min_labels=123, churn_threshold=0.7))
    assert (c.mode, c.min_labels, c.threshold) == ("analytic", 123, 0.7)
