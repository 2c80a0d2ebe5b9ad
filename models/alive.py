"""The analytic churn scorer: an MBG/NBD P(no purchase in H) with an online population fit.

It needs no labels. Each customer is summarised by the classic ``(x, t_x, T)`` of Fader,
Hardie & Lee (2005): ``x`` repeat orders (orders after the first), ``t_x`` days from the
first to the last order, ``T`` days from the first order to now. The population parameters
``(r, alpha, a, b)`` -- purchase rates ``lambda ~ Gamma(r, alpha)``, drop-out chances
``p ~ Beta(a, b)`` -- are refitted by penalised maximum likelihood every few days of event
time on a bounded, deterministic sample of the customers (bottom-k by a stable hash of the
user id: the same sample whatever the arrival order).

The score is exactly what the churn truth asks::

    P(churn in H) = P(no purchase in (T, T+H] | x, t_x, T)
                  = 1 - P(alive) * (1 - ((alpha+T) / (alpha+T+H)) ** (r+x))

(an alive customer with rate lambda buys within H with probability 1 - e^{-lambda H};
averaged over the posterior Gamma(r+x, alpha+T) that is the bracket). For fixed ``x`` and
``T`` a longer silence always raises it, so it cannot turn around past the silences it has
seen, which is how a learned model failed on real customers (docs/churn.md).

``variant="mbg"`` (default) is the MBG/NBD of Batislam et al. (2007): a customer may drop
out right after the *first* purchase too, so one-time buyers can be gone (the plain BG/NBD,
``"bg"``, calls every one-time buyer alive whatever their silence).

Scoring is plain float arithmetic (a few microseconds); numpy only in the periodic refit.
The state is plain JSON (:meth:`AliveModel.to_dict`).

>>> day, t0 = 86_400_000, 1_704_067_200_000
>>> m = AliveModel(capacity=500, min_customers=20, refit_every_days=7.0)
>>> for u in range(200):          # buyers every 10 days; a fifth of them stop early
...     first = t0 + (u % 30) * day
...     n = len(range(0, min(40 if u % 5 == 0 else 400, 300 - u % 30), 10))
...     m.observe(f"u{u}", first, first + (n - 1) * 10 * day, n)
>>> m.maybe_refit(t0 + 300 * day)
True
>>> round(m.score(t0, t0 + 290 * day, 30, t0 + 300 * day, 30.0), 2)   # steady, 10 days silent
0.07
>>> m.score(t0, t0 + 30 * day, 4, t0 + 300 * day, 30.0) > 0.9          # stopped 270 days ago
True
>>> AliveModel.from_dict(m.to_dict()).to_dict() == m.to_dict()
True
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

DAY_MS: Final = 86_400_000
STATE_VERSION: Final = 1
MODEL_VERSION: Final = "churn-mbgnbd-v1"

Variant = Literal["bg", "mbg"]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Summary = tuple[int, float, float]  # (x, t_x, T)


@dataclass(frozen=True, slots=True)
class Params:
    """Population parameters: lambda ~ Gamma(r, alpha) (alpha in days), p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_list(self) -> list[float]:
        return [self.r, self.alpha, self.a, self.b]

    @classmethod
    def from_log(cls, theta: Iterable[float]) -> Params:
        r, al, a, b = (math.exp(min(max(float(v), -12.0), 12.0)) for v in theta)
        return cls(r, al, a, b)

    def log(self) -> Floats:
        return np.log(np.array(self.as_list(), dtype=np.float64))

    def finite(self) -> bool:
        return all(math.isfinite(v) and v > 0 for v in self.as_list())


#: Used until the first fit, and the centre of every fit's weak prior: a median time between
#: orders of ~2 months, a drop-out chance of ~1/4 per order. It only matters for the first
#: weeks of a stream, or a partition with very few buyers.
DEFAULT_PARAMS: Final = Params(r=0.5, alpha=30.0, a=1.0, b=3.0)


# --- one customer (pure floats) -----------------------------------------------------------


def _log_dead_over_alive(pr: Params, x: int, t_x: float, T: float, variant: Variant) -> float:
    """log(P(dead, data) / P(alive, data)); -inf when the customer cannot be dead."""
    if variant == "bg":
        if x <= 0:
            return -math.inf
        w = pr.a / (pr.b + x - 1.0)
    else:
        w = pr.a / (pr.b + x)
    return math.log(w) + (pr.r + x) * (math.log(pr.alpha + T) - math.log(pr.alpha + t_x))


def p_alive(pr: Params, x: int, t_x: float, T: float, variant: Variant = "mbg") -> float:
    """Posterior probability that the customer is still active at ``T``.

    >>> pr = Params(0.5, 30.0, 1.0, 3.0)
    >>> p_alive(pr, 5, 100.0, 100.0) > p_alive(pr, 5, 100.0, 300.0)
    True
    """
    z = _log_dead_over_alive(pr, x, t_x, T, variant)
    if z == -math.inf:
        return 1.0
    return 1.0 / (1.0 + math.exp(z)) if z < 700.0 else 0.0


def p_churn(
    pr: Params, x: int, t_x: float, T: float, horizon: float, variant: Variant = "mbg"
) -> float:
    """P(no purchase in (T, T + horizon] | x, t_x, T), in closed form.

    >>> round(p_churn(Params(0.5, 30.0, 1.0, 3.0), 0, 0.0, 0.0, 30.0), 4)  # brand new
    0.7803
    """
    buy_if_alive = -math.expm1(-(pr.r + x) * math.log1p(horizon / (pr.alpha + T)))
    return 1.0 - p_alive(pr, x, t_x, T, variant) * buy_if_alive


def summary(first_purchase_ms: int, last_purchase_ms: int, n_orders: int, now_ms: int) -> Summary:
    """``(x, t_x, T)`` in days from a profile's purchase fields (clamped for late events).

    >>> summary(0, 10 * DAY_MS, 3, 40 * DAY_MS)
    (2, 10.0, 40.0)
    """
    x = max(n_orders - 1, 0)
    T = max(now_ms - first_purchase_ms, 0) / DAY_MS
    t_x = min(max(last_purchase_ms - first_purchase_ms, 0) / DAY_MS, T) if x else 0.0
    return x, t_x, T


# --- likelihood and fit (vectorised) ------------------------------------------------------


def log_likelihood(
    theta: Floats, x: Ints, t_x: Floats, T: Floats, variant: Variant = "mbg"
) -> Floats:
    """Per-customer log-likelihood at ``theta = log([r, alpha, a, b])``; for a stack of
    parameter vectors (shape ``(K, 4)``), one row per vector.

    Gamma-function ratios are finite products over the integer ``x`` (cumulative sums of
    logs), so no special functions are needed. Each row is computed element by element
    exactly as a single vector would be (the fit relies on it: its 32 finite-difference
    points are one call).
    """
    rows = np.atleast_2d(theta)
    e = np.exp(np.clip(rows, -12.0, 12.0))
    r, al, a, b = (e[:, k : k + 1] for k in range(4))  # columns: broadcast over customers
    i = np.arange((int(x.max()) if x.size else 0) + 2, dtype=np.float64)
    zero = np.zeros((len(rows), 1))
    cr = np.concatenate((zero, np.cumsum(np.log(r + i), axis=1)), axis=1)  # lnG(r+x) - lnG(r)
    # lnB(a, b+x) - lnB(a, b)
    cb = np.concatenate((zero, np.cumsum(np.log(b + i) - np.log(a + b + i), axis=1)), axis=1)
    rx = r + x
    alive = -rx * np.log(al + T)
    dead = -rx * np.log(al + t_x)
    if variant == "bg":
        beta_part = cb[:, x]
        w = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-12)), -np.inf)
    else:
        beta_part = cb[:, x + 1]
        w = np.log(a) - np.log(b + x)
    out: Floats = cr[:, x] + r * np.log(al) + beta_part + np.logaddexp(alive, w + dead)
    return out if np.ndim(theta) == 2 else out[0]


#: Customers x parameter vectors evaluated per call of :func:`log_likelihood` in a fit: few
#: customers gain most from one call for all 32 points (numpy's per-call cost), many lose
#: when the stack outgrows the cache.
STACK_CELLS: Final = 16_384


def _objectives(
    thetas: Floats, data: tuple[Ints, Floats, Floats], variant: Variant, prior: Floats,
    prior_sd: float,
) -> list[float]:  # fmt: skip
    """The penalised mean log-likelihood at each row of ``thetas`` (``-inf`` if not finite).
    Each row's mean is taken on its own: a mean along an axis of the stack sums in another
    order, and the fit would take other steps than with one vector at a time."""
    x, t_x, T = data
    step = max(1, STACK_CELLS // max(len(x), 1))  # rows per call: the arrays stay in cache
    stacks = (log_likelihood(thetas[i : i + step], x, t_x, T, variant)
              for i in range(0, len(thetas), step))  # fmt: skip
    ll = np.array([row.mean() for stack in stacks for row in stack])
    penalty = 0.5 * np.sum((thetas - prior) ** 2, axis=1) / (prior_sd**2 * max(len(x), 1))
    return [v if math.isfinite(v) else -math.inf for v in (ll - penalty).tolist()]


def fit(
    x: Ints, t_x: Floats, T: Floats, *, start: Params = DEFAULT_PARAMS, variant: Variant = "mbg",
    max_iter: int = 30, prior: Params = DEFAULT_PARAMS, prior_sd: float = 2.0,
) -> Params:  # fmt: skip
    """Penalised maximum likelihood of the population parameters: damped Newton steps in
    log space (finite-difference gradient and Hessian, eigenvalues floored, a trust region).

    The penalty is a weak Gaussian prior on the log-parameters (``prior_sd`` log units, worth
    one customer): it only matters when the data cannot identify a parameter (no drop-outs
    seen yet, a handful of customers).

    >>> rng = np.random.default_rng(0)
    >>> lam, p = rng.gamma(2.0, 1 / 20.0, 3000), rng.beta(1.0, 4.0, 3000)
    >>> xs, txs = [], []
    >>> for li, pi in zip(lam, p):             # simulate BG/NBD customers for 200 days
    ...     t, tx, n = 0.0, 0.0, 0
    ...     while True:
    ...         t += rng.exponential(1 / li)
    ...         if t > 200: break
    ...         n, tx = n + 1, t
    ...         if rng.random() < pi: break
    ...     xs.append(n); txs.append(tx)
    >>> est = fit(np.array(xs), np.array(txs), np.full(3000, 200.0), variant="bg")
    >>> [round(v, 1) for v in est.as_list()]    # the truth: 2, 20, 1, 4
    [1.9, 19.3, 1.0, 4.0]
    """
    data = (np.asarray(x, dtype=np.int64), np.asarray(t_x, np.float64), np.asarray(T, np.float64))
    pri = prior.log()

    def f_at(*ths: Floats) -> list[float]:
        return _objectives(np.array(ths), data, variant, pri, prior_sd)

    theta = start.log()
    (f,) = f_at(theta)
    if not math.isfinite(f):
        theta, (f,) = pri.copy(), f_at(pri)
    h, eye = 1e-4, np.eye(4)
    pairs = [(k, j) for k in range(4) for j in range(k + 1, 4)]
    for _ in range(max_iter):
        # the 8 + 24 finite-difference points in one call
        vals = f_at(
            *(theta + h * eye[k] for k in range(4)), *(theta - h * eye[k] for k in range(4)),
            *(p for k, j in pairs for e, o in [(eye[k] + eye[j], eye[k] - eye[j])]
              for p in (theta + h * e, theta + h * o, theta - h * e, theta - h * o)),
        )  # fmt: skip
        fp, fm = np.array(vals[:4]), np.array(vals[4:8])
        g = (fp - fm) / (2 * h)
        H = np.diag((fp - 2 * f + fm) / h**2)
        for n, (k, j) in enumerate(pairs):
            pe, po, me, mo = vals[8 + 4 * n : 12 + 4 * n]
            v = pe - po
            v += me - mo
            H[k, j] = H[j, k] = v / (4 * h**2)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            break
        w, V = np.linalg.eigh(-H)  # ascent direction (-H)^-1 g with eigenvalues floored
        w = np.maximum(w, max(1e-6, 1e-3 * float(np.max(np.abs(w)))))
        d = V @ ((V.T @ g) / w)
        size = float(np.max(np.abs(d)))
        if size > 2.0:  # trust region, in log units
            d *= 2.0 / size
        t = 1.0
        while t > 1e-4:
            cand = theta + t * d
            (fc,) = f_at(cand)
            if fc >= f:
                break
            t *= 0.5
        else:
            break
        theta, f_old, f = cand, f, fc
        if f - f_old < 1e-10 and float(np.max(np.abs(t * d))) < 1e-5:
            break
    return Params.from_log(theta)


# --- the online model: a bounded deterministic sample and a periodic refit ---------------


def _hash64(uid: str) -> int:
    return int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "big")


class AliveModel:
    """One partition's analytic scorer: a sample of its buyers and the fitted parameters.

    * :meth:`observe` after each purchase of a customer (first/last order time and order
      count of their profile): keeps the ``capacity`` customers with the smallest
      ``hash(user_id)``.
    * :meth:`maybe_refit` on the event-time clock: refits every ``refit_every_days`` once
      ``min_customers`` are sampled (a few warm-started Newton steps: tens of ms for
      2,000 customers). A fit that comes out non-finite is discarded (the last good
      parameters stay).
    * :meth:`score`: P(no purchase in the next ``horizon_days``).
    """

    model_version = MODEL_VERSION

    def __init__(
        self, *, variant: Variant = "mbg", capacity: int = 2000, min_customers: int = 50,
        refit_every_days: float = 7.0, max_iter: int = 8,
    ) -> None:  # fmt: skip
        self.variant: Variant = variant
        self.capacity = int(capacity)
        self.min_customers = int(min_customers)
        self.refit_every_days = float(refit_every_days)
        self.max_iter = int(max_iter)
        self.params = DEFAULT_PARAMS
        self.last_fit_ms = -1
        self.n_fits = 0
        self.sample: dict[str, tuple[int, int, int]] = {}  # uid -> (first_ms, last_ms, orders)
        self._heap: list[tuple[int, str]] = []  # (-hash, uid): the largest hash on top

    @property
    def ready(self) -> bool:
        """Fitted at least once (before that, scores come from the generic prior)."""
        return self.n_fits > 0

    def observe(
        self, uid: str, first_purchase_ms: int, last_purchase_ms: int, n_orders: int
    ) -> None:
        """Record a customer's current purchase summary (after each of their purchases)."""
        if n_orders <= 0:
            return
        rec = (int(first_purchase_ms), int(last_purchase_ms), int(n_orders))
        if uid in self.sample:
            self.sample[uid] = rec
            return
        h = _hash64(uid)
        if len(self.sample) < self.capacity:
            self.sample[uid] = rec
            heapq.heappush(self._heap, (-h, uid))
        elif h < -self._heap[0][0]:
            _, out = heapq.heapreplace(self._heap, (-h, uid))
            del self.sample[out]
            self.sample[uid] = rec

    def forget(self, uid: str) -> bool:
        """Erase a customer (GDPR); the sample refills with the next new customers."""
        if self.sample.pop(uid, None) is None:
            return False
        self._heap = [(h, u) for h, u in self._heap if u != uid]
        heapq.heapify(self._heap)
        return True

    def arrays(self, now_ms: int) -> tuple[Ints, Floats, Floats]:
        rows = [summary(f, last, n, now_ms) for f, last, n in self.sample.values()]
        x = np.array([r[0] for r in rows], dtype=np.int64)
        return x, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])

    def maybe_refit(self, now_ms: int) -> bool:
        """Refit if due (event time) and the sample is large enough; True if it refitted."""
        if not self.sample or len(self.sample) < self.min_customers:
            return False
        if self.last_fit_ms >= 0 and now_ms - self.last_fit_ms < self.refit_every_days * DAY_MS:
            return False
        x, t_x, T = self.arrays(now_ms)
        if float(T.max()) <= 0.0:
            return False
        params = fit(x, t_x, T, start=self.params, variant=self.variant, max_iter=self.max_iter)
        self.last_fit_ms = int(now_ms)
        if params.finite():
            self.params = params
            self.n_fits += 1
        return True

    def p_churn(self, s: Summary, horizon_days: float) -> float:
        """P(no purchase within ``horizon_days``) of a customer summarised by ``s``."""
        return p_churn(self.params, s[0], s[1], s[2], horizon_days, self.variant)

    def p_alive(self, s: Summary) -> float:
        return p_alive(self.params, s[0], s[1], s[2], self.variant)

    def score(
        self, first_purchase_ms: int, last_purchase_ms: int, n_orders: int, now_ms: int,
        horizon_days: float,
    ) -> float:  # fmt: skip
        """P(no purchase within ``horizon_days`` of ``now_ms``); 1.0 for a non-buyer."""
        if n_orders <= 0:
            return 1.0
        s = summary(first_purchase_ms, last_purchase_ms, n_orders, now_ms)
        return self.p_churn(s, horizon_days)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: configuration, parameters, fit bookkeeping and the sample."""
        return {
            "v": STATE_VERSION,
            "variant": self.variant,
            "capacity": self.capacity,
            "min_customers": self.min_customers,
            "refit_every_days": self.refit_every_days,
            "max_iter": self.max_iter,
            "params": self.params.as_list(),
            "last_fit_ms": self.last_fit_ms,
            "n_fits": self.n_fits,
            # in insertion order: the fit sums over the sample in this order, so a sorted
            # copy would refit to parameters 1e-10 away from the original's
            "sample": {u: list(v) for u, v in self.sample.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AliveModel:
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"alive-model state version {d.get('v')!r} is not {STATE_VERSION}")
        m = cls(
            variant=d["variant"], capacity=d["capacity"], min_customers=d["min_customers"],
            refit_every_days=d["refit_every_days"], max_iter=d["max_iter"],
        )  # fmt: skip
        m.params = Params(*(float(v) for v in d["params"]))
        m.last_fit_ms, m.n_fits = int(d["last_fit_ms"]), int(d["n_fits"])
        m.sample = {u: (int(a), int(b), int(c)) for u, (a, b, c) in d["sample"].items()}
        m._heap = [(-_hash64(u), u) for u in m.sample]
        heapq.heapify(m._heap)
        return m
