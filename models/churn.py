"""The online churn model: a River pipeline with progressive validation and explanations.

``learn_one`` first predicts, updates the progressive metrics (ROC AUC and log loss, in a
:class:`~models.metrics.ScoreTally`), then learns, so :attr:`ChurnModel.metrics` is an
honest online estimate that survives checkpoints. The model's whole state is plain JSON
(:meth:`ChurnModel.to_dict`: scaler statistics, weights, intercept, optimizer state).

>>> m = ChurnModel(seed=1)
>>> for i in range(200):
...     m.learn_one({"recency_days": float(i % 40), "log_orders": 1.0}, i % 40 > 20)
>>> m.predict_proba_one({"recency_days": 39.0, "log_orders": 1.0}) > 0.5
True
>>> m.n_learned, m.model_version
(200, 'churn-logistic-v1')
>>> top = max(m.contributions({"recency_days": 39.0, "log_orders": 1.0}).items(),
...           key=lambda kv: kv[1])
>>> top[0]
'recency_days'
>>> ChurnModel.from_dict(m.to_dict()).to_dict() == m.to_dict()
True

Poison is refused (docs/security.md): an example with a non-finite or absurdly large
feature is not learned (``n_refused`` counts it), a learning step that would leave the
logistic model non-finite is undone (it keeps its last good state), and a probability that
cannot be computed is ``nan``, never a default: callers publish no alert for it.

>>> m.learn_one({"recency_days": float("inf"), "log_orders": 1.0}, True)
>>> m.n_refused, m.n_learned
(1, 200)
>>> m.predict_proba_one({"recency_days": float("nan"), "log_orders": 1.0})
nan
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Literal

from river import compose, linear_model, optim, preprocessing, utils

from models.metrics import ScoreTally

#: The one learned model (an ARF forest was an option; it had no JSON form: removed, see the
#: CHANGELOG).
ModelKind = Literal["logistic"]
#: Bumped when the wrapper's layout changes; checkpoints record it.
MODEL_SCHEMA = 1
STATE_VERSION = 1
#: Largest magnitude of a feature the model learns from or scores (features are rates,
#: ratios, logs and days: far below this); beyond it an example is refused.
FEATURE_BOUND = 1e9


def credible(x: dict[str, float]) -> bool:
    """Every feature finite and within :data:`FEATURE_BOUND`.

    >>> credible({"a": 1.0}), credible({"a": float("nan")}), credible({"a": 1e300})
    (True, False, False)
    """
    return all(-FEATURE_BOUND <= v <= FEATURE_BOUND for v in x.values())  # False for NaN


def model_version(kind: str) -> str:
    """``churn-<kind>-v<schema>``: what alerts and ``GET /models`` name the model by.

    >>> model_version("logistic")
    'churn-logistic-v1'
    """
    return f"churn-{kind}-v{MODEL_SCHEMA}"


class ChurnModel:
    """P(churn) from a profile's feature dict: a scaled logistic regression."""

    n_refused: int = 0  # the class default serves models pickled before it existed

    def __init__(
        self,
        kind: ModelKind = "logistic",
        *,
        seed: int = 42,
        learning_rate: float = 0.1,
        l2: float = 0.0,
    ) -> None:
        self.kind: ModelKind = kind
        self.seed = seed
        self.learning_rate = learning_rate
        self.l2 = l2
        self.n_learned = 0
        self.n_positive = 0
        self.n_refused = 0
        self.tally = ScoreTally()
        self.scaler: Any = preprocessing.StandardScaler()
        if kind != "logistic":
            raise ValueError(f"unknown churn model kind {kind!r}; use 'logistic'")
        self.estimator: Any = linear_model.LogisticRegression(
            optimizer=optim.AdaGrad(learning_rate), l2=l2
        )
        self.pipeline = compose.Pipeline(self.scaler, self.estimator)

    @property
    def model_version(self) -> str:
        """Names the model family and schema (stable across learning, for alert payloads)."""
        return model_version(self.kind)

    def predict_proba_one(self, x: dict[str, float]) -> float:
        """P(churn) in [0, 1]; 0.5 before any learning; ``nan`` when it cannot be computed
        (a non-credible feature, or a non-finite result)."""
        if not credible(x):
            return math.nan
        if self.n_learned == 0:
            return 0.5
        proba = self.pipeline.predict_proba_one(dict(x))
        p = float(proba.get(True, 0.0)) if proba else math.nan
        return min(max(p, 0.0), 1.0) if math.isfinite(p) else math.nan

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        """Progressive validation (predict, score, then learn). ``x`` is not mutated.

        A non-credible ``x`` is refused; a step that leaves the logistic model non-finite is
        undone (both counted in ``n_refused``)."""
        if not credible(x):
            self.n_refused += 1
            return
        if self.n_learned:
            p = self.predict_proba_one(x)
            if math.isfinite(p):
                self.tally.add(p, y)
        saved = self._save() if self.kind == "logistic" else None
        self.pipeline.learn_one(dict(x), bool(y))
        if saved is not None and not self._finite():
            self._restore(saved)
            self.n_refused += 1
            return
        self.n_learned += 1
        self.n_positive += int(bool(y))

    # The logistic pipeline's learned numbers (River 0.2x layout), small dicts: copying them
    # costs a few microseconds, a pickle of the pipeline ~200.
    def _save(self) -> tuple[Any, ...]:
        sc, est = self.scaler, self.estimator
        return (dict(sc.counts), dict(sc.means), dict(sc.vars), dict(est._weights),
                est.intercept, dict(est.optimizer.g2), est.optimizer.n_iterations)  # fmt: skip

    def _restore(self, saved: tuple[Any, ...]) -> None:
        sc, est = self.scaler, self.estimator
        counts, means, variances, weights, intercept, g2, n_iterations = saved
        for live, old in ((sc.counts, counts), (sc.means, means), (sc.vars, variances),
                          (est._weights, weights), (est.optimizer.g2, g2)):  # fmt: skip
            live.clear()
            live.update(old)
        est.intercept, est.optimizer.n_iterations = intercept, n_iterations

    def _finite(self) -> bool:
        est, sc = self.estimator, self.scaler
        values = [est.intercept, *est._weights.values(), *sc.means.values(), *sc.vars.values()]
        return all(math.isfinite(v) for v in values)

    def contributions(self, x: dict[str, float]) -> dict[str, float]:
        """Per-feature push towards churn, in log-odds units: weight x standardised value."""
        scaled = self.scaler.transform_one(dict(x))
        w = self.estimator.weights
        return {k: float(w.get(k, 0.0) * v) for k, v in scaled.items()}

    @property
    def metrics(self) -> dict[str, float]:
        """Progressive ROC AUC and log loss so far, with the label counts."""
        return {
            "auc": self.tally.auc(),
            "log_loss": self.tally.log_loss(),
            "n_learned": float(self.n_learned),
            "n_positive": float(self.n_positive),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the whole model."""
        sc, est = self.scaler, self.estimator
        return {
            "v": STATE_VERSION, "kind": self.kind, "seed": self.seed,
            "learning_rate": self.learning_rate, "l2": self.l2,
            "n_learned": self.n_learned, "n_positive": self.n_positive,
            "n_refused": self.n_refused, "tally": self.tally.to_dict(),
            "scaler": {"counts": dict(sc.counts), "means": dict(sc.means), "vars": dict(sc.vars)},
            "weights": dict(est._weights), "intercept": est.intercept,
            "g2": dict(est.optimizer.g2), "iterations": est.optimizer.n_iterations,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChurnModel:
        """Inverse of :meth:`to_dict`: predicts and goes on learning exactly as the original."""
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"churn model state version {d.get('v')!r} is not {STATE_VERSION}")
        m = cls(d["kind"], seed=d["seed"], learning_rate=d["learning_rate"], l2=d["l2"])
        m.n_learned, m.n_positive = int(d["n_learned"]), int(d["n_positive"])
        m.n_refused = int(d.get("n_refused", 0))
        m.tally = ScoreTally.from_dict(d["tally"])
        sc, est = m.scaler, m.estimator
        sc.counts = Counter({k: int(v) for k, v in d["scaler"]["counts"].items()})
        sc.means = defaultdict(float, {k: float(v) for k, v in d["scaler"]["means"].items()})
        sc.vars = defaultdict(float, {k: float(v) for k, v in d["scaler"]["vars"].items()})
        est._weights = utils.VectorDict({k: float(v) for k, v in d["weights"].items()})
        est.intercept = float(d["intercept"])
        est.optimizer.g2 = defaultdict(float, {k: float(v) for k, v in d["g2"].items()})
        est.optimizer.n_iterations = int(d["iterations"])
        return m
