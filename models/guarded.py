"""One partition's churn scorers: the learned model, the analytic scorer and their guard.

:class:`GuardedChurn` is what the event-time churn logic (``streams.domain.churn``) talks
to. It keeps the analytic scorer's sample and fit current (:meth:`observe`, :meth:`tick`),
learns each delayed label after scoring it with *both* scorers as they are now (the
:class:`~models.guard.Guard` keeps the score), and answers :meth:`score` with the current
champion, naming it. The learned model is never used for alerts before it has beaten the
analytic one on live labels. Whichever scores, the annual-return layer
(:class:`~models.season.SeasonalReturn`) then lowers P(churn) of a customer who bought in the
coming season a year ago; it learns from the same labels. All of it is plain JSON
(:meth:`to_dict`).

>>> from models.alive import summary
>>> day, t0 = 86_400_000, 1_704_067_200_000
>>> g = GuardedChurn.new(horizon_days=30.0, kind="logistic", guard=GuardConfig(
...     mode="auto", threshold=0.5, half_life_days=90.0, min_labels=500, min_class=50,
...     margin=0.01, z=2.0, decide_every=50), min_customers=1)
>>> g.observe("u1", t0, t0 + 20 * day, 3)
>>> g.tick(t0 + 60 * day)
>>> s = summary(t0, t0 + 20 * day, 3, t0 + 60 * day)   # (x, t_x, T): 2 repeats, 20 d, 60 d
>>> p, version, reasons = g.score({"log_recency": 3.7}, s)
>>> version, round(p, 2), sorted(reasons)
('churn-mbgnbd-v1', 0.8, ['silence_vs_rhythm', 'slow_buyer'])
>>> GuardedChurn.from_dict(g.to_dict()).to_dict() == g.to_dict()
True
"""

from __future__ import annotations

import math
from typing import Any, Final

from models.alive import AliveModel, Summary
from models.churn import ChurnModel, ModelKind
from models.guard import Guard, GuardConfig
from models.season import SeasonalReturn

STATE_VERSION: Final = 1


class GuardedChurn:
    """The learned :class:`ChurnModel`, the analytic :class:`AliveModel` and the
    :class:`Guard` that decides which of them alerts."""

    def __init__(
        self, model: ChurnModel, alive: AliveModel, guard: Guard, horizon_days: float,
        season: SeasonalReturn | None = None,
    ) -> None:  # fmt: skip
        self.model, self.alive, self.guard = model, alive, guard
        self.horizon_days = float(horizon_days)
        self.season = season if season is not None else SeasonalReturn()  # off

    @classmethod
    def new(
        cls, *, horizon_days: float, kind: ModelKind, guard: GuardConfig, min_customers: int,
        capacity: int = 2000, refit_every_days: float = 7.0, season_odds: float = 1.0,
    ) -> GuardedChurn:  # fmt: skip
        alive = AliveModel(capacity=capacity, min_customers=min_customers,
                           refit_every_days=refit_every_days)  # fmt: skip
        season = SeasonalReturn(prior_odds=season_odds)
        return cls(ChurnModel(kind), alive, Guard(guard), horizon_days, season)

    # --- what the churn logic calls ------------------------------------------------------
    def observe(
        self, uid: str, first_purchase_ms: int, last_purchase_ms: int, n_orders: int
    ) -> None:
        """A customer's purchase summary after one of their purchases."""
        self.alive.observe(uid, first_purchase_ms, last_purchase_ms, n_orders)

    def tick(self, now_ms: int) -> None:
        """The partition's event-time clock moved: refit the analytic scorer when due."""
        self.alive.maybe_refit(now_ms)

    def analytic(self, s: Summary | None) -> float:
        """The analytic P(churn) of a customer summarised by ``s`` (``None``: never bought)."""
        return 1.0 if s is None else self.alive.p_churn(s, self.horizon_days)

    @property
    def model_ready(self) -> bool:
        """The learned model is past its warm-up: it has learned ``min_labels`` labels,
        ``min_class`` of each class. Only then do its scores count in the guard (for or
        against it), so it is judged on at least ``min_labels`` more."""
        m, c = self.model, self.guard.cfg
        least = min(m.n_positive, m.n_learned - m.n_positive)
        return m.n_learned >= c.min_labels and least >= c.min_class

    def learn(
        self, x: dict[str, float], s: Summary | None, y: bool, now_ms: int, season: float = 0.0
    ) -> None:
        """One resolved label: both scorers score it as they are now, with the annual-return
        layer (for the guard), then the layer and the learned model learn it. ``season`` is
        the customer's annual-return signal when the snapshot was taken."""
        s_analytic = self.analytic(s) if self.alive.ready else math.nan
        s_model = self.model.predict_proba_one(x) if self.model_ready else math.nan
        self.guard.update(self.adjust(s_analytic, season), self.adjust(s_model, season), y, now_ms)
        if s is not None and self.alive.ready:
            self.season.update(season, s_analytic, y)
        self.model.learn_one(x, y)

    def adjust(self, p: float, season: float) -> float:
        """A scorer's P(churn) after the annual-return layer (NaN stays NaN)."""
        return self.season.apply(p, season)

    @property
    def can_alert(self) -> bool:
        """The champion may alert: the analytic scorer once fitted, the learned model once
        promoted (or, forced by ``mode="model"``, past its warm-up)."""
        if self.guard.champion == "analytic":
            return self.alive.ready
        return self.model_ready

    @property
    def champion(self) -> str:
        return self.guard.champion

    @property
    def model_version(self) -> str:
        """The champion's version (what an alert's ``model_version`` names)."""
        return self.model.model_version if self.champion == "model" else self.alive.model_version

    def score(
        self, x: dict[str, float], s: Summary | None, season: float = 0.0
    ) -> tuple[float, str, dict[str, float]]:
        """The champion's ``(P(churn), version, reasons)`` for features ``x``, summary ``s``
        and annual-return signal ``season``. ``P`` is NaN when it cannot be computed (then
        no alert)."""
        if self.champion == "model":
            m = self.model
            return self.adjust(m.predict_proba_one(x), season), m.model_version, m.contributions(x)
        raw = self.analytic(s)
        p = self.adjust(raw, season)
        if s is None:
            return p, self.alive.model_version, {"never_bought": 1.0}
        dead = -math.log(max(self.alive.p_alive(s), 1e-12))
        reasons = {  # log-likelihood units: evidence of having left, and of buying rarely
            "silence_vs_rhythm": dead,
            "slow_buyer": -math.log(max(1.0 - raw, 1e-12)) - dead,
        }
        return p, self.alive.model_version, reasons

    def forget(self, uid: str) -> int:
        """Erase a customer from the analytic sample; returns 1 if they were in it."""
        return int(self.alive.forget(uid))

    def metrics(self) -> dict[str, Any]:
        """Guard metrics of both scorers, the fitted parameters, the learned model's own."""
        out = self.guard.metrics()
        params = self.alive.params
        out["analytic_params"] = dict(zip(("r", "alpha", "a", "b"), params.as_list(), strict=True))
        out["analytic_fits"] = self.alive.n_fits
        out["analytic_customers"] = len(self.alive.sample)
        out["season_odds"] = self.season.odds
        out["learned"] = self.model.metrics
        out["versions"] = {"analytic": self.alive.model_version, "model": self.model.model_version}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the three."""
        return {
            "v": STATE_VERSION, "horizon_days": self.horizon_days, "model": self.model.to_dict(),
            "alive": self.alive.to_dict(), "guard": self.guard.to_dict(),
            "season": self.season.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GuardedChurn:
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"guarded churn state version {d.get('v')!r} is not {STATE_VERSION}")
        return cls(
            ChurnModel.from_dict(d["model"]), AliveModel.from_dict(d["alive"]),
            Guard.from_dict(d["guard"]), d["horizon_days"],
            SeasonalReturn.from_dict(d["season"]) if "season" in d else None,
        )  # fmt: skip
