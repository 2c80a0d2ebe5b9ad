"""Anomaly and bot flags: transparent rules plus Half-Space Trees, in event time.

Per user, :class:`AnomalyDetector` keeps short event-time windows (events in the last minute,
views with no dwell, distinct items in ten minutes); per item a running mean price; over all
purchases streaming quantiles of line values. Rules name what is odd in plain words:

* ``bot``: a burst of events, views with no dwell time, or very many distinct items;
* ``large_order``: a purchase line far above the usual (or a huge quantity);
* ``price_outlier``: a price far from the item's usual price;
* ``unusual_activity``: the Half-Space Trees score (scaled inputs in [0, 1]) is extreme
  (:mod:`models.hst`: River's algorithm, same scores, plain-JSON state).

Each (user, kind) is reported at most once per ``cooldown_ms`` of event time. A user flagged
``bot`` stays flagged for ``bot_ttl_ms`` after the last detection
(:meth:`AnomalyDetector.is_bot`), and their events are not learned by the model (poisoning
protection).

>>> from types import SimpleNamespace as Ev
>>> d = AnomalyDetector(AnomalyConfig(burst_per_min=40, cooldown_ms=3_600_000,
...                                   bot_ttl_ms=86_400_000))
>>> t0 = 1_704_067_200_000
>>> flags = [(i, f) for i in range(60) for f in d.observe(Ev(type="view", user_id="bot1",
...          ts_ms=t0 + i * 1000, item_id=f"i{i}", price=None, quantity=None))]
>>> [(i, f.kind, f.reason) for i, f in flags]
[(40, 'bot', '41 events within 60 s (limit 40)')]
>>> d.is_bot("bot1"), d.is_bot("u2")
(True, False)
>>> AnomalyDetector.from_dict(d.to_dict(), d.config).to_dict() == d.to_dict()
True
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields
from typing import Any, Final, NamedTuple

from models.hst import HalfSpaceTrees
from models.protocols import Interaction
from models.sketch import P2Quantile

MINUTE_MS: Final = 60_000
STATE_VERSION: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyConfig:
    """Thresholds of the rules and the model. ``burst_per_min``, ``cooldown_ms`` and
    ``bot_ttl_ms`` are the application's settings (it holds their defaults)."""

    burst_per_min: int
    cooldown_ms: int
    bot_ttl_ms: int
    no_dwell_ms: int = 1_000
    no_dwell_min_views: int = 20
    no_dwell_share: float = 0.8
    items_window_ms: int = 10 * MINUTE_MS
    max_distinct_items: int = 60
    large_order_factor: float = 5.0  # times the 95th percentile of purchase line values
    large_order_min_obs: int = 50
    large_order_abs: float = 5_000.0  # always large (also during warm-up)
    large_quantity: int = 20
    price_ratio: float = 3.0
    price_min_obs: int = 5
    hst_threshold: float = 0.97
    hst_warmup: int = 1_000
    hst_every: int = 4
    max_users: int = 100_000
    max_items: int = 100_000
    seed: int = 7


@dataclass(slots=True)
class _User:
    last_ts: int = 0
    recent: deque[int] = field(default_factory=deque)  # timestamps, last minute
    items: deque[tuple[int, str]] = field(default_factory=deque)  # (ts, item), window
    views: deque[tuple[int, bool]] = field(default_factory=deque)  # (ts, no dwell), window
    last_view_ts: int = -1
    item_counts: dict[str, int] = field(default_factory=dict)  # distinct items in window
    no_dwell: int = 0  # views in window with no dwell
    n_seen: int = 0
    bot_until: int = -1
    emitted: dict[str, int] = field(default_factory=dict)  # kind -> ts of last report


class Flag(NamedTuple):
    """One anomaly found in one event: its kind, strength in [0, 1] and why, in words."""

    kind: str
    score: float
    reason: str


def _squash(x: float, scale: float) -> float:
    return x / (x + scale) if x > 0 else 0.0


class Observed(NamedTuple):
    """What :meth:`AnomalyDetector.observe_rules` found for one event, for
    :meth:`AnomalyDetector.observe_model`."""

    user: _User
    ts_ms: int
    found: list[tuple[str, float, str]]
    x: dict[str, float]
    use_model: bool
    teach: bool


class AnomalyDetector:
    """Rules + Half-Space Trees over per-event velocity and order features."""

    def __init__(self, config: AnomalyConfig) -> None:
        self.config = c = config
        self.hst = HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=c.seed)
        self.n_learned = 0
        self.users: OrderedDict[str, _User] = OrderedDict()
        self.prices: OrderedDict[str, list[float]] = OrderedDict()  # item -> [n, mean]
        self.line_value = P2Quantile(0.95)

    # --- state ------------------------------------------------------------------------
    def _user(self, user_id: str) -> _User:
        u = self.users.get(user_id)
        if u is None:
            u = self.users[user_id] = _User()
            if len(self.users) > self.config.max_users:
                self.users.popitem(last=False)
        else:
            self.users.move_to_end(user_id)
        return u

    def is_bot(self, user_id: str) -> bool:
        """Whether the user is currently flagged as a bot (as of their latest event)."""
        u = self.users.get(user_id)
        return u is not None and u.bot_until >= u.last_ts

    def bots(self) -> list[str]:
        return [uid for uid, u in self.users.items() if u.bot_until >= u.last_ts]

    def forget(self, user_id: str) -> bool:
        """Drop what is remembered of one user (erasure); ``True`` if there was something."""
        return self.users.pop(user_id, None) is not None

    # --- per-user state, stored with the user (the worker keeps it in the envelope) -----
    def export_user(self, user_id: str) -> list[Any] | None:
        """The user's windows and flags as JSON-safe data (``None``: nothing known).

        Bot flags depend only on this per-user state, so a worker that stores it with the
        user's other state (fenced, restored exactly after a crash) flags the same bots as
        a worker that never crashed.

        >>> d = AnomalyDetector(AnomalyConfig(burst_per_min=2, cooldown_ms=1, bot_ttl_ms=9))
        >>> from types import SimpleNamespace as Ev
        >>> for t in (1, 2, 3):
        ...     _ = d.observe(Ev(type="view", user_id="b", ts_ms=t, item_id="i", price=None,
        ...                      quantity=None))
        >>> state = d.export_user("b")
        >>> fresh = AnomalyDetector(d.config)
        >>> fresh.import_user("b", state)
        >>> fresh.is_bot("b"), fresh.export_user("b") == state
        (True, True)
        """
        u = self.users.get(user_id)
        if u is None:
            return None
        return [
            u.last_ts, list(u.recent), [x for ts, item in u.items for x in (ts, item)],
            [x for ts, nd in u.views for x in (ts, int(nd))], u.last_view_ts, u.no_dwell,
            u.n_seen, u.bot_until, dict(u.emitted),
        ]  # fmt: skip

    def import_user(self, user_id: str, state: list[Any] | None) -> None:
        """Replace what is remembered of the user by ``state`` (:meth:`export_user`;
        ``None``: forget the user, they start afresh)."""
        if state is None:
            self.users.pop(user_id, None)
            return
        last_ts, recent, items, views, last_view_ts, no_dwell, n_seen, bot_until, emitted = state
        u = _User(last_ts=last_ts, recent=deque(recent), last_view_ts=last_view_ts,
                  no_dwell=no_dwell, n_seen=n_seen, bot_until=bot_until, emitted=dict(emitted))
        u.items = deque(zip(items[::2], items[1::2], strict=True))
        u.views = deque((ts, bool(nd)) for ts, nd in zip(views[::2], views[1::2], strict=True))
        for _, item in u.items:
            u.item_counts[item] = u.item_counts.get(item, 0) + 1
        self.users[user_id] = u
        self.users.move_to_end(user_id)
        if len(self.users) > self.config.max_users:
            self.users.popitem(last=False)

    def _window(self, u: _User, e: Interaction) -> None:
        c, ts = self.config, e.ts_ms
        u.n_seen += 1
        if u.views and not u.views[-1][1] and 0 <= ts - u.last_view_ts < c.no_dwell_ms:
            u.views[-1] = (u.views[-1][0], True)  # the previous view got no dwell time
            u.no_dwell += 1
        u.last_ts = max(u.last_ts, ts)
        u.recent.append(ts)
        while u.recent and u.recent[0] <= u.last_ts - MINUTE_MS:
            u.recent.popleft()
        if e.item_id is not None:
            u.items.append((ts, e.item_id))
            u.item_counts[e.item_id] = u.item_counts.get(e.item_id, 0) + 1
        if e.type == "view":
            u.views.append((ts, False))
            u.last_view_ts = ts
        horizon = u.last_ts - c.items_window_ms
        while u.items and (u.items[0][0] <= horizon or len(u.items) > 1000):
            item = u.items.popleft()[1]
            left = u.item_counts.pop(item) - 1
            if left:
                u.item_counts[item] = left
        while u.views and (u.views[0][0] <= horizon or len(u.views) > 1000):
            u.no_dwell -= u.views.popleft()[1]

    # --- rules --------------------------------------------------------------------------
    def _rules(self, u: _User, e: Interaction) -> list[tuple[str, float, str]]:
        c = self.config
        out: list[tuple[str, float, str]] = []
        n = len(u.recent)
        if n > c.burst_per_min:
            out.append(
                (
                    "bot",
                    1 - c.burst_per_min / n,
                    f"{n} events within 60 s (limit {c.burst_per_min})",
                )
            )
        nv = len(u.views)
        no_dwell = u.no_dwell
        if nv >= c.no_dwell_min_views and no_dwell >= c.no_dwell_share * nv:
            out.append(
                (
                    "bot",
                    no_dwell / nv,
                    f"{no_dwell} of {nv} views in 10 min lasted under {c.no_dwell_ms} ms",
                )
            )
        distinct = len(u.item_counts)
        if distinct > c.max_distinct_items:
            out.append(
                (
                    "bot",
                    1 - c.max_distinct_items / distinct,
                    f"{distinct} distinct items in 10 min (limit {c.max_distinct_items})",
                )
            )
        if e.price is not None and e.item_id is not None:
            out += self._price_rules(e)
        return out

    def _price_rules(self, e: Interaction) -> list[tuple[str, float, str]]:
        c = self.config
        assert e.price is not None and e.item_id is not None
        out: list[tuple[str, float, str]] = []
        stats = self.prices.get(e.item_id)
        price_ok = True
        if stats is not None and stats[0] >= c.price_min_obs and stats[1] > 0:
            ratio = e.price / stats[1]
            if ratio >= c.price_ratio or ratio <= 1 / c.price_ratio:
                price_ok = False
                dev = max(ratio, 1 / max(ratio, 1e-9))
                out.append(
                    (
                        "price_outlier",
                        1 - 1 / dev,
                        f"price {e.price:.2f} vs usual {stats[1]:.2f} for {e.item_id}",
                    )
                )
        if price_ok:  # learn usual prices from normal prices only
            if stats is None:
                stats = self.prices[e.item_id] = [0.0, 0.0]
                if len(self.prices) > c.max_items:
                    self.prices.popitem(last=False)
            stats[0] += 1
            stats[1] += (e.price - stats[1]) / stats[0]
        if e.type == "purchase":
            qty = e.quantity or 1
            value = e.price * qty
            p95 = self.line_value.value(0.0)
            warm = self.line_value.count >= c.large_order_min_obs
            limit = c.large_order_factor * p95 if warm else c.large_order_abs
            limit = min(limit, c.large_order_abs)
            if value > limit > 0 or qty >= c.large_quantity:
                out.append(
                    (
                        "large_order",
                        1 - limit / value if value > limit > 0 else 0.5,
                        f"order line {value:.2f} ({qty} x {e.price:.2f}); usual up to {p95:.2f}",
                    )
                )
            else:
                self.line_value.update(value)
        return out

    # --- model --------------------------------------------------------------------------
    def _features(self, u: _User, e: Interaction) -> dict[str, float]:
        nv = len(u.views)
        stats = self.prices.get(e.item_id) if e.item_id else None
        ratio = e.price / stats[1] if e.price and stats and stats[1] > 0 else 1.0
        value = (e.price or 0.0) * (e.quantity or 1) if e.type == "purchase" else 0.0
        return {
            "rate": _squash(len(u.recent), 20.0),
            "no_dwell": u.no_dwell / nv if nv else 0.0,
            "distinct": _squash(len(u.item_counts), 30.0),
            "value": _squash(value, 200.0),
            "price_dev": _squash(abs(math.log(max(ratio, 1e-6))), 0.5),
        }

    def observe(self, e: Interaction) -> list[Flag]:
        """Update with one event; return the anomalies to report (often none)."""
        return self.observe_model(self.observe_rules(e))

    def observe_rules(self, e: Interaction) -> Observed:
        """The first half of :meth:`observe`: the user's windows, the rules and the bot flag
        (so :meth:`is_bot` answers for this event at once), the model's inputs. The second
        half, :meth:`observe_model`, may run later, as long as the model halves of the events
        run in the order of their rule halves: nothing here reads what it changes (the
        trees, ``n_learned``, the users' cooldowns), so splitting changes no result.

        >>> from types import SimpleNamespace as Ev
        >>> cfg = AnomalyConfig(burst_per_min=2, cooldown_ms=1, bot_ttl_ms=9)
        >>> one, two = AnomalyDetector(cfg), AnomalyDetector(cfg)
        >>> evs = [Ev(type="view", user_id="b", ts_ms=t, item_id="i", price=None,
        ...           quantity=None) for t in (1, 2, 3, 4)]
        >>> together = [one.observe(e) for e in evs]
        >>> halves = [two.observe_rules(e) for e in evs]
        >>> two.is_bot("b"), [two.observe_model(o) for o in halves] == together
        (True, True)
        >>> one.to_dict() == two.to_dict()
        True
        """
        c = self.config
        u = self._user(e.user_id)
        self._window(u, e)
        found = self._rules(u, e)
        # The model sees every purchase and every ``hst_every``-th event of a user (cost).
        use_model = e.type == "purchase" or u.n_seen % c.hst_every == 0
        x = self._features(u, e) if use_model else {}
        if any(kind == "bot" for kind, _, _ in found):
            u.bot_until = u.last_ts + c.bot_ttl_ms
        # bots and poison (non-finite inputs) do not teach the model
        teach = use_model and u.bot_until < u.last_ts and all(map(math.isfinite, x.values()))
        return Observed(u, e.ts_ms, found, x, use_model, teach)

    def observe_model(self, o: Observed) -> list[Flag]:
        """The second half of :meth:`observe`: the Half-Space Trees' score and learning, and
        the flags to report (each kind at most once per ``cooldown_ms`` of the user's)."""
        c = self.config
        score = 0.0
        if o.use_model and self.n_learned >= c.hst_warmup:
            score = float(self.hst.score_one(o.x))
            score = score if math.isfinite(score) else 0.0
        found = o.found
        if score >= c.hst_threshold:
            top = max(o.x, key=o.x.__getitem__)
            found.append(("unusual_activity", score, f"unusual {top} ({o.x[top]:.2f} scaled)"))
        if o.teach:
            self.hst.learn_one(o.x)
            self.n_learned += 1
        out: list[Flag] = []
        emitted = o.user.emitted
        for kind, strength, reason in found:
            last = emitted.get(kind)
            if last is not None and 0 <= o.ts_ms - last < c.cooldown_ms:
                continue
            emitted[kind] = o.ts_ms
            out.append(Flag(kind, round(max(strength, score), 4), reason))
        return out

    # --- state as plain JSON ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of everything learned (the config is the application's, not state):
        the trees, the per-user windows, usual prices and the order-value quantile, in
        least-recently-seen order."""
        return {
            "v": STATE_VERSION, "hst": self.hst.to_dict(), "n_learned": self.n_learned,
            "users": {uid: _user_to_dict(u) for uid, u in self.users.items()},
            "prices": dict(self.prices), "line_value": self.line_value.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: AnomalyConfig) -> AnomalyDetector:
        """Inverse of :meth:`to_dict` with the application's ``config``: scores, flags and
        goes on learning exactly as the original."""
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"anomaly detector state version {d.get('v')!r}")
        m = cls(config)
        m.hst = HalfSpaceTrees.from_dict(d["hst"])
        m.n_learned = int(d["n_learned"])
        m.users = OrderedDict((str(uid), _user_from_dict(u)) for uid, u in d["users"].items())
        m.prices = OrderedDict(
            (str(item), [float(n), float(mean)]) for item, (n, mean) in d["prices"].items()
        )
        m.line_value = P2Quantile.from_dict(d["line_value"])
        return m


def _user_to_dict(u: _User) -> dict[str, Any]:
    return {f.name: list(v) if isinstance(v, deque) else v
            for f in fields(u) for v in (getattr(u, f.name),)}  # fmt: skip


def _user_from_dict(d: dict[str, Any]) -> _User:
    """A :class:`_User` from :func:`_user_to_dict`'s JSON (windows back to deques of tuples;
    a field the state does not have keeps its default, so adding one needs no new format)."""
    u = _User()
    for f in fields(u):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(getattr(u, f.name), deque):
            v = deque(tuple(e) if isinstance(e, list) else e for e in v)
        setattr(u, f.name, v)
    return u
