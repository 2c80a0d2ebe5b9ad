"""Annual returns: customers who bought in the coming season a year ago come back for it.

A customer's own purchase rhythm, as the analytic and the learned scorer see it (orders,
silence, age), knows nothing of the calendar. But shops are seasonal, and so are many
customers: a gift buyer seen once, last December, has been silent for nine months in
September and is *more* likely to buy in the next three months than one seen once in
February (measured on Online Retail, docs/churn.md "Long silences"). The only trace of that
in a customer's data is the date of their orders, so the signal used here is whether the
customer ordered in the weeks that were, a year ago, the coming horizon
(:func:`streams.domain.profile.season_return`, 0 or 1).

The layer multiplies such a customer's odds of staying away by ``exp(beta)`` (``beta <=
0``)::

    logit P(churn) = logit P_scorer(churn) + beta * season

``beta`` is the coefficient of a logistic recalibration fitted on the delayed labels: the
analytic scorer's logit at each label is the offset, an intercept absorbs a scorer that is
off for everyone (so that does not read as seasonality), and ``beta`` has a Gaussian prior
at ``log(prior_odds)`` worth ``weight`` labels at P = 1/2. The labels are kept as counts in
logit cells (:data:`CELLS` per class and signal), so the state is small and the fit exact up
to the cell width. A label with ``season = 1`` needs a stream longer than a year; until then
``beta`` is the prior. On the odds scale a customer the scorer is sure of stays near it, so
a wrong prior costs little where the scorer is confident (docs/churn.md). ``prior_odds = 1``
turns the layer off.

>>> s = SeasonalReturn(prior_odds=0.5)
>>> round(s.odds, 6), round(s.apply(0.8, 1.0), 6), s.apply(0.8, 0.0)
(0.5, 0.666667, 0.8)
>>> for i in range(4000):        # a year on: the anniversary customers churn as expected
...     s.update(i % 2, 0.5, i % 4 < 2)
>>> round(s.odds, 2)              # the prior is worth 100 of these 4,000 labels
0.94
>>> SeasonalReturn.from_dict(s.to_dict()).to_dict() == s.to_dict()
True
"""

from __future__ import annotations

import math
from typing import Any, Final

#: Prior weight, in labels at P = 1/2: the labels take over once there are about as many.
DEFAULT_WEIGHT: Final = 100.0
#: Logit cells of the label counts: [-LOGIT_MAX, LOGIT_MAX] in CELLS steps (0.25 wide).
CELLS: Final = 64
LOGIT_MAX: Final = 8.0
#: The strongest effect assumed: odds of staying away divided by at most 10.
MIN_ODDS: Final = 0.1
#: Refit after this many new labels with ``season = 1`` (and on restore).
REFIT_EVERY: Final = 25
STATE_VERSION: Final = 1


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _cell(z: float) -> int:
    i = int((z + LOGIT_MAX) / (2 * LOGIT_MAX) * CELLS)
    return min(max(i, 0), CELLS - 1)


_CENTRES: Final = tuple(-LOGIT_MAX + (i + 0.5) * 2 * LOGIT_MAX / CELLS for i in range(CELLS))


class SeasonalReturn:
    """The annual-return layer of one partition's scorers: its prior, label counts, fit."""

    def __init__(self, prior_odds: float = 1.0, weight: float = DEFAULT_WEIGHT) -> None:
        self.prior_odds = float(prior_odds)
        self.weight = float(weight)
        # counts[season][churned][cell] of the analytic scorer's logit at each label
        self.counts = [[[0.0] * CELLS for _ in range(2)] for _ in range(2)]
        self.since_fit = 0
        self.beta = self._prior_beta()

    def _prior_beta(self) -> float:
        return math.log(min(max(self.prior_odds, MIN_ODDS), 1.0))

    @property
    def on(self) -> bool:
        return self.prior_odds < 1.0

    @property
    def odds(self) -> float:
        """The current factor on an anniversary customer's odds of staying away."""
        return math.exp(self.beta)

    def apply(self, p: float, season: float) -> float:
        """A scorer's P(churn) ``p`` for a customer with this ``season`` signal (NaN stays
        NaN; 0 and 1 stay)."""
        if season <= 0.0 or not self.on or not 0.0 < p < 1.0:
            return p
        stay = p / (1.0 - p) * math.exp(self.beta * min(season, 1.0))
        return stay / (1.0 + stay)

    def update(self, season: float, expected: float, churned: bool) -> None:
        """One resolved label: its ``season`` signal when it was taken, the analytic
        scorer's P(churn) for it (not a probability: not counted) and the truth."""
        if not self.on or not 0.0 <= expected <= 1.0:  # also False for NaN
            return
        g = 1 if season > 0.0 else 0
        self.counts[g][int(churned)][_cell(_logit(expected))] += 1.0
        if g:
            self.since_fit += 1
            if self.since_fit >= REFIT_EVERY:
                self.refit()

    def refit(self) -> None:
        """Penalised maximum likelihood of (intercept, beta): Newton steps on 2 parameters."""
        self.since_fit = 0
        b0 = self._prior_beta()
        prec = self.weight / 4.0  # a label at P = 1/2 carries 1/4 of information
        a, b = 0.0, b0
        for _ in range(25):
            ga, gb = -1e-3 * a, -prec * (b - b0)  # a very weak prior keeps the intercept finite
            haa, hbb, hab = 1e-3, prec, 0.0
            for g in (0, 1):
                for i, z in enumerate(_CENTRES):
                    n0, n1 = self.counts[g][0][i], self.counts[g][1][i]
                    if n0 == 0.0 and n1 == 0.0:
                        continue
                    q = _sigmoid(z + a + b * g)
                    r, w = n1 - (n0 + n1) * q, (n0 + n1) * q * (1.0 - q)
                    ga, haa = ga + r, haa + w
                    if g:
                        gb, hbb, hab = gb + r, hbb + w, hab + w
            det = haa * hbb - hab * hab
            da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
            a, b = a + da, b + db
            if abs(da) + abs(db) < 1e-9:
                break
        self.beta = min(max(b, math.log(MIN_ODDS)), 0.0)

    def set_prior(self, prior_odds: float) -> None:
        """A new prior (a setting changed, or a state from before the layer): refit."""
        if prior_odds != self.prior_odds:
            self.prior_odds = float(prior_odds)
            self.refit()

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION, "prior_odds": self.prior_odds, "weight": self.weight,
            "counts": self.counts, "since_fit": self.since_fit, "beta": self.beta,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeasonalReturn:
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"season state version {d.get('v')!r} is not {STATE_VERSION}")
        s = cls(float(d["prior_odds"]), float(d["weight"]))
        s.counts = [[[float(v) for v in row] for row in g] for g in d["counts"]]
        s.since_fit, s.beta = int(d["since_fit"]), float(d["beta"])
        return s
