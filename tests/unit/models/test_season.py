"""The annual-return layer: its prior, its estimate from live labels, and the scorers with it."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from models.alive import summary
from models.bundle import Models, ModelSet
from models.guarded import GuardedChurn
from models.season import MIN_ODDS, SeasonalReturn
from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.worker.configs import churn_scorers, model_factory

DAY, T0 = 86_400_000, 1_704_067_200_000


def labels(layer: SeasonalReturn, n: int, p: float, churn_1: float, churn_0: float) -> None:
    """``n`` labels of each kind; the scorer expects P(churn) = ``p`` for all of them, the
    truth is ``churn_1`` among anniversary customers and ``churn_0`` among the others."""
    rng = random.Random(1)
    for _ in range(n):
        layer.update(1.0, p, rng.random() < churn_1)
        layer.update(0.0, p, rng.random() < churn_0)


def odds(p: float) -> float:
    return p / (1.0 - p)


def test_the_prior_holds_until_labels_and_one_turns_the_layer_off() -> None:
    on, off = SeasonalReturn(prior_odds=0.5), SeasonalReturn(prior_odds=1.0)
    assert round(on.odds, 9) == 0.5 and off.odds == 1.0
    assert round(odds(on.apply(0.8, 1.0)), 9) == 2.0 and on.apply(0.8, 0.0) == 0.8
    assert on.apply(1.0, 1.0) == 1.0 and math.isnan(on.apply(math.nan, 1.0))
    labels(off, 2000, 0.5, 0.2, 0.5)  # even with strong evidence: off stays off
    assert off.apply(0.5, 1.0) == 0.5


def test_the_effect_is_learned_from_the_labels() -> None:
    """Anniversary customers whose odds of staying away are 0.4 of what the scorer says
    (the others as it says): the layer finds ~0.4 from either prior; ~1 with no season."""
    churn = 0.4 / (1 + 0.4)  # odds 0.4 at a scorer's P = 1/2
    for prior in (0.3, 0.9):
        seasonal, flat = SeasonalReturn(prior_odds=prior), SeasonalReturn(prior_odds=prior)
        labels(seasonal, 20000, 0.5, churn, 0.5)
        labels(flat, 20000, 0.5, 0.5, 0.5)
        assert abs(seasonal.odds - 0.4) < 0.04
        assert flat.odds > 0.95


def test_a_scorer_that_is_off_for_everyone_is_not_read_as_seasonality() -> None:
    layer = SeasonalReturn(prior_odds=0.5)
    labels(layer, 20000, 0.5, 0.35, 0.35)  # everyone churns less than expected
    assert layer.odds > 0.95


def test_the_effect_stays_in_bounds_and_ignores_scores_that_are_not_probabilities() -> None:
    layer = SeasonalReturn(prior_odds=0.5)
    labels(layer, 3000, 0.5, 0.9, 0.5)  # anniversary customers churn *more*: not above 1
    assert layer.odds == 1.0
    layer = SeasonalReturn(prior_odds=0.5)
    labels(layer, 3000, 0.9, 0.0, 0.9)
    assert round(layer.odds, 9) == MIN_ODDS
    before = layer.to_dict()
    for bad in (math.nan, math.inf, -0.1, 1.5):
        layer.update(1.0, bad, True)
    assert layer.to_dict() == before


def test_the_guarded_scorers_lower_p_churn_of_anniversary_customers_only() -> None:
    g = churn_scorers(Settings(churn_min_customers=1, churn_season_odds=0.5))
    g.observe("u1", T0, T0 + 5 * DAY, 2)
    g.tick(T0 + 30 * DAY)
    s = summary(T0, T0 + 5 * DAY, 2, T0 + 30 * DAY)
    plain, _, reasons = g.score({}, s, 0.0)
    season, _, reasons_season = g.score({}, s, 1.0)
    assert abs(odds(season) - 0.5 * odds(plain)) < 1e-9 and reasons_season == reasons
    off = churn_scorers(Settings(churn_min_customers=1, churn_season_odds=1.0))
    off.observe("u1", T0, T0 + 5 * DAY, 2)
    off.tick(T0 + 30 * DAY)
    assert off.score({}, s, 1.0)[0] == off.score({}, s, 0.0)[0] == plain


def test_the_guarded_scorers_learn_the_share_and_keep_it_in_their_json() -> None:
    g = churn_scorers(Settings(churn_min_customers=1, churn_season_odds=0.5))
    g.observe("u1", T0, T0 + 5 * DAY, 2)
    g.tick(T0 + 30 * DAY)
    s = summary(T0, T0 + 5 * DAY, 2, T0 + 30 * DAY)
    for i in range(300):
        g.learn({"log_recency": 3.0}, s, i % 2 == 0, T0 + 30 * DAY, 1.0)
    assert sum(map(sum, g.season.counts[1])) == 300 and g.metrics()["season_odds"] == g.season.odds
    back = GuardedChurn.from_dict(orjson.loads(orjson.dumps(g.to_dict())))
    assert back.to_dict() == g.to_dict() and back.score({}, s, 1.0) == g.score({}, s, 1.0)


def test_a_state_from_before_the_layer_gets_the_configured_prior_on_upgrade() -> None:
    settings = Settings(churn_season_odds=0.5)
    fresh = model_factory(settings)
    m: Models = fresh()
    d = m.churn.to_dict()
    del d["season"]  # a checkpoint written before the layer
    m.churn = GuardedChurn.from_dict(d)
    assert m.churn.season.odds == 1.0
    ms = ModelSet(parts={0: m})
    assert ms.upgrade(fresh) == []  # same horizon: the scorers are kept ...
    assert round(m.churn.season.odds, 9) == 0.5  # ... with the configured prior


def test_the_prior_setting_is_checked() -> None:
    for bad in (0.05, 1.5, math.nan):
        with pytest.raises(ConfigError, match="CHURN_SEASON_ODDS"):
            Settings(churn_season_odds=bad).checked()
    assert Settings(churn_season_odds=1.0).checked().churn_season_odds == 1.0
