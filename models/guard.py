"""Champion/challenger: the analytic scorer alerts until the learned model proves better.

A :class:`Guard` scores both scorers on the *same* delayed labels, each as it is when the
label resolves (progressive validation: the learned model has not learned that label yet),
in two :class:`~models.metrics.ScoreTally` whose weights are forgotten with a half-life in
event time, so the comparison follows the recent past. The champion is what alerts use:

* the analytic scorer, by default: it needs no labels and cannot extrapolate the wrong way;
* the learned model only once, on at least ``min_labels`` effective labels (``min_class`` of
  each class), its ROC AUC beats the analytic one by ``margin`` *and* by ``z`` standard
  errors of the difference (Hanley-McNeil, unpaired, hence conservative);
* back to the analytic scorer as soon as the learned model is not ahead.

Decisions are taken every ``decide_every`` labels, so a replay takes the same decisions.
A label whose score is not finite (a model that cannot compute one) counts for neither.

>>> g = Guard(GuardConfig(mode="auto", threshold=0.5, half_life_days=90.0, min_labels=50,
...                       min_class=10, margin=0.01, z=2.0, decide_every=10))
>>> for i in range(100):
...     y = i % 2 == 0
...     g.update(0.6 if (y or i % 3 == 0) else 0.4, 0.9 if y else 0.1, y, i * 3_600_000)
>>> g.champion, round(g.tally[MODEL].auc(), 3), round(g.tally[ANALYTIC].auc(), 3)
('model', 1.0, 0.83)
>>> Guard.from_dict(g.to_dict()).to_dict() == g.to_dict()
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from models.metrics import ScoreTally, auc_se

ANALYTIC: Final = 0
MODEL: Final = 1
NAMES: Final = ("analytic", "model")
DAY_MS: Final = 86_400_000
#: Stored weights are kept relative to a reference time; rebased when they grow this much.
_REBASE: Final = 2.0**20

GuardMode = Literal["auto", "analytic", "model"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    """``mode``: "auto" (the rule above), or always "analytic" / always "model"."""

    mode: GuardMode
    threshold: float
    half_life_days: float
    min_labels: int
    min_class: int
    margin: float
    z: float
    decide_every: int


class Guard:
    """Progressive metrics of both scorers on the same labels, and the champion."""

    def __init__(self, cfg: GuardConfig) -> None:
        self.cfg = cfg
        self.tally = (ScoreTally(cfg.threshold), ScoreTally(cfg.threshold))
        self.ref_ms = -1  # weights are valued relative to this instant
        self.last_ms = -1
        self.n = 0  # labels counted
        self.champion = "model" if cfg.mode == "model" else "analytic"
        self.switches = 0

    def _weight(self, now_ms: int) -> float:
        """Weight of a label at ``now_ms`` relative to ``ref_ms`` (rebased when large)."""
        if self.ref_ms < 0:
            self.ref_ms = now_ms
        f = float(2.0 ** ((now_ms - self.ref_ms) / (self.cfg.half_life_days * DAY_MS)))
        if f > _REBASE:
            for t in self.tally:
                t.scale(1.0 / f)
            self.ref_ms, f = now_ms, 1.0
        return f

    def update(self, s_analytic: float, s_model: float, y: bool, now_ms: int) -> None:
        """One resolved label and what each scorer says of it now (skipped unless both are
        finite probabilities)."""
        if not (0.0 <= s_analytic <= 1.0 and 0.0 <= s_model <= 1.0):  # False for NaN
            return
        w = self._weight(now_ms)
        self.tally[ANALYTIC].add(s_analytic, y, w)
        self.tally[MODEL].add(s_model, y, w)
        self.last_ms = max(self.last_ms, now_ms)
        self.n += 1
        if self.n % self.cfg.decide_every == 0:
            self.decide()

    def effective(self) -> tuple[float, float]:
        """(effective positives, effective negatives) as of the last label."""
        if self.ref_ms < 0:
            return 0.0, 0.0
        f = 2.0 ** (-(self.last_ms - self.ref_ms) / (self.cfg.half_life_days * DAY_MS))
        t = self.tally[ANALYTIC]
        return t.n_pos * f, t.n_neg * f

    def decide(self) -> str:
        """Apply the rule; returns the champion."""
        c = self.cfg
        if c.mode != "auto":
            return self.champion
        pos, neg = self.effective()
        enough = pos + neg >= c.min_labels and min(pos, neg) >= c.min_class
        am, aa = self.tally[MODEL].auc(), self.tally[ANALYTIC].auc()
        new = self.champion
        if self.champion == "analytic" and enough and am > aa + c.margin:
            se = math.hypot(auc_se(am, pos, neg), auc_se(aa, pos, neg))
            if am - aa > c.z * se:
                new = "model"
        elif self.champion == "model" and (not enough or not am >= aa):
            new = "analytic"
        if new != self.champion:
            self.champion = new
            self.switches += 1
        return new

    def metrics(self) -> dict[str, Any]:
        """Both scorers' metrics on the same labels (forgetting applied), and the champion."""
        pos, neg = self.effective()
        out: dict[str, Any] = {name: self.tally[i].summary() for i, name in enumerate(NAMES)}
        for name in NAMES:  # counts as effective (decayed) labels
            out[name]["n"], out[name]["n_positive"] = pos + neg, pos
        out.update(champion=self.champion, switches=self.switches, labels=self.n,
                   effective_labels=pos + neg)  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "cfg": asdict(self.cfg), "tally": [t.to_dict() for t in self.tally],
            "ref_ms": self.ref_ms, "last_ms": self.last_ms, "n": self.n,
            "champion": self.champion, "switches": self.switches,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Guard:
        g = cls(GuardConfig(**d["cfg"]))
        a, m = (ScoreTally.from_dict(t) for t in d["tally"])
        g.tally = (a, m)
        g.ref_ms, g.last_ms, g.n = int(d["ref_ms"]), int(d["last_ms"]), int(d["n"])
        g.champion, g.switches = str(d["champion"]), int(d["switches"])
        return g
