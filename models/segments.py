"""Customer segments: online RFM scores (streaming quantiles) and River k-means clusters.

Scores run 1..5 (5 is best) and are computed in event time:

* **R**ecency: days since the last purchase, in units of the shop's own rhythm: compared
  with streaming quantiles (20/40/60/80 %) of the gaps between consecutive orders.
* **F**requency (orders) and **M**onetary (total spend): compared with streaming quantiles
  over buyers; each buyer is sampled at most once per ``observe_every_days`` of event time,
  so very active users do not dominate the thresholds.

Until ``min_obs`` observations exist, fixed prior thresholds are used. Names follow the
usual RFM grid (see :func:`segment_name`); :data:`LABELS` gives display names. Alongside,
a River :class:`~river.cluster.KMeans` clusters standardised profile features (the
``cluster`` id is exploratory; the named segment is RFM). State is plain JSON.

>>> from dataclasses import replace
>>> from types import SimpleNamespace
>>> day, t0 = 86_400_000, 1_704_067_200_000
>>> m = SegmentModel(SegmentConfig(n_clusters=5))
>>> p = SimpleNamespace(user_id="u1", first_seen_ms=t0, last_purchase_ms=-1, n_orders=0,
...                     monetary=0.0, n_events=1, n_sessions=1, abandoned_carts=0, categories={})
>>> m.update(p, t0)[:3]
('prospects', True, None)
>>> p.last_purchase_ms, p.n_orders, p.monetary, p.n_events = t0 + 1000, 1, 30.0, 2
>>> upd = m.update(p, p.last_purchase_ms)
>>> upd.segment, upd.previous, upd.rfm
('new_customers', 'prospects', (5, 1, 2))
>>> m.update(p, p.last_purchase_ms + 90 * day).segment  # 90 silent days later
'hibernating'
>>> SegmentModel.from_dict(m.to_dict(), m.config).to_dict() == m.to_dict()
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from river import cluster

from models.protocols import Customer
from models.sketch import P2Quantile, RunningScaler

DAY_MS: Final = 86_400_000

LEVELS: Final = (0.2, 0.4, 0.6, 0.8)
#: Prior thresholds (used until enough observations): gap days, orders, spend.
PRIOR_GAP_DAYS: Final = (4.0, 8.0, 14.0, 30.0)
PRIOR_ORDERS: Final = (1.0, 1.0, 2.0, 4.0)
PRIOR_MONETARY: Final = (20.0, 50.0, 100.0, 250.0)
CLUSTER_FEATURES: Final = (
    "log_recency", "log_orders", "log_monetary", "log_events", "log_sessions",
    "abandoned_carts", "category_focus",
)  # fmt: skip
LABELS: Final[dict[str, str]] = {
    "champions": "Champions",
    "loyal": "Loyal",
    "new_customers": "New customers",
    "promising": "Promising",
    "need_attention": "Need attention",
    "at_risk": "At risk",
    "cant_lose": "Can't lose them",
    "about_to_sleep": "About to sleep",
    "hibernating": "Hibernating",
    "prospects": "Prospects (no order yet)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentConfig:
    """``n_clusters`` is the application's setting (it holds the default)."""

    n_clusters: int
    seed: int = 42
    min_obs: int = 50
    observe_every_days: float = 7.0
    max_users: int = 200_000


class SegmentUpdate(NamedTuple):
    segment: str
    changed: bool
    previous: str | None
    rfm: tuple[int, int, int]
    cluster: int


def segment_name(r: int, f: int, m: int, n_orders: int) -> str:
    """The named RFM segment of scores ``r, f, m`` (1..5).

    >>> segment_name(5, 5, 4, 9), segment_name(2, 4, 4, 6), segment_name(1, 1, 1, 1)
    ('champions', 'at_risk', 'hibernating')
    """
    if n_orders == 0:
        return "prospects"
    fm = round((f + m) / 2)
    if r >= 4 and fm >= 4:
        return "champions"
    if r >= 4 and n_orders == 1:
        return "new_customers"
    if r >= 3 and fm >= 3:
        return "loyal"
    if r >= 4:
        return "promising"
    if r == 3:
        return "need_attention"
    if r == 2 and fm >= 3:
        return "at_risk"
    if r == 1 and fm >= 4:
        return "cant_lose"
    if r == 2:
        return "about_to_sleep"
    return "hibernating"


def cluster_features(p: Customer, now_ms: int) -> dict[str, float]:
    """Clustering inputs from the profile's own fields (before standardisation)."""
    since = p.last_purchase_ms if p.n_orders else p.first_seen_ms
    total_cat = sum(p.categories.values())
    return {
        "log_recency": math.log1p(max(now_ms - since, 0) / DAY_MS),
        "log_orders": math.log1p(p.n_orders),
        "log_monetary": math.log1p(p.monetary),
        "log_events": math.log1p(p.n_events),
        "log_sessions": math.log1p(p.n_sessions),
        "abandoned_carts": math.log1p(p.abandoned_carts),
        "category_focus": max(p.categories.values()) / total_cat if total_cat else 0.0,
    }


def _score(value: float, thresholds: list[float], *, lower_is_better: bool) -> int:
    above = sum(value > t for t in thresholds)
    return 5 - above if lower_is_better else 1 + above


class _Sketch:
    """Four P² quantiles of one quantity, with prior thresholds during warm-up."""

    def __init__(self, prior: tuple[float, ...]) -> None:
        self.prior = prior
        self.q = [P2Quantile(p) for p in LEVELS]

    def update(self, x: float) -> None:
        for s in self.q:
            s.update(x)

    def thresholds(self, min_obs: int) -> list[float]:
        if self.q[0].count < min_obs:
            return list(self.prior)
        return [s.value() for s in self.q]


def nearest(centers: Mapping[int, MutableMapping[str, float]], x: Mapping[str, float],
            p: float) -> int:  # fmt: skip
    """The cluster whose center is nearest ``x``: River's ``KMeans.predict_one``, with the
    features taken in sorted order. River sums over a *set* of feature names, whose order
    changes with the process's hash seed (``PYTHONHASHSEED``), and so do the float sums and
    the random values a center draws for a feature it has not seen yet (its centers are
    ``defaultdict`` s of random draws): two workers, or a worker before and after a restart,
    put the same customer in different clusters. Ties go to the first center, as with
    River's ``min``.

    >>> from collections import defaultdict
    >>> centers = {0: defaultdict(float, {"a": 0.0}), 1: defaultdict(float, {"a": 1.0})}
    >>> nearest(centers, {"a": 0.8}, 2), nearest(centers, {"a": 0.5}, 2)
    (1, 0)
    """
    best, best_d = 0, math.inf
    xkeys, xsorted = x.keys(), None
    for c, center in centers.items():
        if center.keys() == xkeys:  # the usual case: one sorted list serves every center
            if xsorted is None:
                xsorted = sorted(xkeys)
            keys = xsorted
        else:
            keys = sorted({*center.keys(), *xkeys})
        d = sum(abs(center[k] - x.get(k, 0)) ** p for k in keys)
        if d < best_d:
            best, best_d = c, d
    return best


class SegmentModel:
    """Per-user RFM segment and cluster, learned online; keeps each user's last segment."""

    def __init__(self, config: SegmentConfig) -> None:
        self.config = config
        self.gap = _Sketch(PRIOR_GAP_DAYS)
        self.orders = _Sketch(PRIOR_ORDERS)
        self.monetary = _Sketch(PRIOR_MONETARY)
        self.scaler = RunningScaler()
        self.kmeans: Any = cluster.KMeans(
            n_clusters=self.config.n_clusters, halflife=0.1, seed=self.config.seed
        )
        # user_id -> [segment, last order ms, last observation ms, orders, cluster]; LRU order
        self.users: dict[str, list[Any]] = {}
        self.sizes: Counter[str] = Counter()

    def rfm(self, p: Customer, now_ms: int) -> tuple[int, int, int]:
        """RFM scores of ``p`` at event time ``now_ms`` (no learning)."""
        mo = self.config.min_obs
        since = p.last_purchase_ms if p.n_orders else p.first_seen_ms
        recency = max(now_ms - since, 0) / DAY_MS
        return (
            _score(recency, self.gap.thresholds(mo), lower_is_better=True),
            _score(p.n_orders, self.orders.thresholds(mo), lower_is_better=False),
            _score(p.monetary, self.monetary.thresholds(mo), lower_is_better=False),
        )

    def cluster_of(self, p: Customer, now_ms: int) -> int:
        x = self.scaler.transform_one(cluster_features(p, now_ms))
        return nearest(self.kmeans.centers, x, self.kmeans.p)

    def segment(self, p: Customer, now_ms: int) -> tuple[str, tuple[int, int, int]]:
        """Read-only: the segment and RFM scores of ``p`` now (for ``GET /users``)."""
        r, f, m = self.rfm(p, now_ms)
        return segment_name(r, f, m, p.n_orders), (r, f, m)

    def _observe(self, p: Customer, now_ms: int, mem: list[Any]) -> None:
        if p.n_orders > mem[3]:  # a new order: learn the gap since the previous one
            if mem[1] >= 0 and p.last_purchase_ms > mem[1]:
                self.gap.update((p.last_purchase_ms - mem[1]) / DAY_MS)
            mem[1], mem[3] = max(mem[1], p.last_purchase_ms), p.n_orders
        if now_ms - mem[2] < self.config.observe_every_days * DAY_MS:
            return
        mem[2] = now_ms
        x = cluster_features(p, now_ms)
        if not all(math.isfinite(v) for v in x.values()):
            return  # poison (e.g. an absurd spend) is never learned
        self.scaler.learn_one(x)
        z = self.scaler.transform_one(x)
        km = self.kmeans  # KMeans.learn_one, with the nearest center found in a fixed order
        closest = nearest(km.centers, z, km.p)
        center = km.centers[closest]
        for i, zi in z.items():
            center[i] += km.halflife * (zi - center[i])
        mem[4] = nearest(km.centers, z, km.p)
        if p.n_orders:
            self.orders.update(float(p.n_orders))
            self.monetary.update(p.monetary)

    def update(self, p: Customer, now_ms: int, previous: str | None = None) -> SegmentUpdate:
        """Learn from ``p`` and return its segment; ``changed`` when it differs from before.

        ``previous`` overrides the remembered segment (e.g. one stored with the profile).
        ``cluster`` is the user's k-means cluster as of their last (throttled) observation.
        Call it once per user per batch, with the user's profile after the batch.
        """
        mem = self.users.pop(p.user_id, None)
        if mem is None:
            mem = [previous, -1, -(2**62), 0, 0]
            if len(self.users) >= self.config.max_users:  # evict the least recently seen
                old = self.users.pop(next(iter(self.users)))
                if old[0] is not None:
                    self.sizes[old[0]] -= 1
        elif previous is not None and previous != mem[0]:
            mem[0] = previous
        self.users[p.user_id] = mem
        before: str | None = mem[0]
        self._observe(p, now_ms, mem)
        name, rfm = self.segment(p, now_ms)
        if before is not None and before in self.sizes:
            self.sizes[before] -= 1
        self.sizes[name] += 1
        mem[0] = name
        return SegmentUpdate(name, name != before, before, rfm, int(mem[4]))

    def segment_sizes(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.sizes.items()) if v > 0}

    def forget(self, user_id: str) -> bool:
        """Drop what is remembered of one user (erasure), keeping the segment sizes true;
        ``True`` if there was something."""
        mem = self.users.pop(user_id, None)
        if mem is not None and mem[0] is not None:
            self.sizes[mem[0]] -= 1
        return mem is not None

    def to_dict(self, *, include_users: bool = True) -> dict[str, Any]:
        """JSON-safe state (no pickle); without users it is a few kB (for checkpoints)."""
        return {
            "sketches": {
                name: [q.to_dict() for q in sk.q]
                for name, sk in (("gap", self.gap), ("orders", self.orders), ("m", self.monetary))
            },
            "scaler": self.scaler.to_dict(),
            "centers": {str(i): dict(c) for i, c in self.kmeans.centers.items()},
            "users": self.users if include_users else {},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: SegmentConfig) -> SegmentModel:
        m = cls(config)
        for name, sk in (("gap", m.gap), ("orders", m.orders), ("m", m.monetary)):
            sk.q = [P2Quantile.from_dict(q) for q in d["sketches"][name]]
        m.scaler = RunningScaler.from_dict(d["scaler"])
        for i, c in d["centers"].items():
            m.kmeans.centers[int(i)].update(c)
        m.users = {u: list(v) for u, v in d.get("users", {}).items()}
        m.sizes = Counter(v[0] for v in m.users.values() if v[0] is not None)
        return m
