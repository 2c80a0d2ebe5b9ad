"""The Redis similarity store: incremental, decayed, bounded, exactly-once item co-occurrence.

All logic runs inside one Lua script (``similarity.lua`` next to this file, with the parts it
includes: ``neighbourhood.lua``, ``scoring.lua``) so that a batch of
events is learned atomically and fenced by its Kafka offset, and so that live recommendations
and the offline evaluation use exactly the same scoring code. The formula and the key design are in
``docs/recommendations.md``.

>>> c = RecConfig(session_window=10, half_life_days=30.0, max_neighbours=200, knn_weight=0.0,
...               item_ttl_s=0)
>>> c.weights, c.score_items, c.two_hop
((1.0, 2.0, 3.0), 3, 0.3)
>>> key_base("ss")
'{ss}:'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from importlib import resources
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from models.errors import InvalidConfig
from models.protocols import Interaction

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
#: Member that every neighbour set holds (score 0) so Redis keeps it a skiplist; see the script.
SENTINEL = b"\0shopstream:skiplist" + b"." * 60


@dataclass(frozen=True, slots=True, kw_only=True)
class RecConfig:
    """Parameters of learning and scoring (defaults tuned on the YOOCHOOSE split, see docs).

    The fields without a default are the application's settings, which hold their defaults
    (``streams/core/settings.py``, built by ``streams/worker/configs.py``).
    """

    #: Last N interactions of a session that a new click is paired with.
    session_window: int
    #: Half-life of every count, in event-time days.
    half_life_days: float
    #: Neighbours kept per item (pruning keeps the heaviest ones).
    max_neighbours: int
    #: Session-neighbourhood signal: share of the item-to-item mass of non-session candidates
    #: re-distributed by neighbourhood scores (0 = off, and no ``is:``/``ui:`` keys are written).
    knn_weight: float
    #: Wall-clock TTL of an item's neighbour set, renewed whenever the item is learned
    #: (0 = none).
    item_ttl_s: int
    #: Extra neighbours tolerated before a prune, as a fraction of ``max_neighbours``.
    prune_slack: float = 0.1
    #: Event-type weights: view, add_to_cart, purchase.
    weights: tuple[float, float, float] = (1.0, 2.0, 3.0)
    #: Pair (a before b at distance d) adds ``forward / d**forward_decay`` to sim(a, b) ...
    forward: float = 1.0
    forward_decay: float = 1.0
    #: ... and ``backward / d**backward_decay`` to sim(b, a).
    backward: float = 0.5
    backward_decay: float = 1.0
    #: A click's pair increments (both directions) are divided by ``H**pair_norm``, where
    #: ``H = sum_d forward / d**forward_decay`` over the earlier items it is paired with: a
    #: click deep in a long session spreads less evidence per pair than one early in a short
    #: one (0 = off, 1 = every click teaches one unit of forward weight).
    pair_norm: float = 0.5
    #: A pair's increments are also multiplied by ``exp(-gap / pair_time_decay_s)``, ``gap`` the
    #: seconds from the earlier item's latest click in the session to the new click: items
    #: clicked minutes apart are less related than ones clicked seconds apart (0 = off, and
    #: session keys hold no times).
    pair_time_decay_s: float = 300.0
    #: Most recent session items that score candidates.
    score_items: int = 3
    #: Recency weight of the p-th most recent session item is ``1 / p**recency_decay``.
    recency_decay: float = 2.0
    #: Asymmetric cosine: sim(a, c) / (count(a)**alpha * count(c)**beta).
    alpha: float = 0.5
    beta: float = 0.2
    #: Boost of an item already in the session (repeat clicks), times its recency weight.
    repeat_boost: float = 1.0
    #: Heaviest neighbours of each session item read when scoring (speed/quality trade-off).
    score_neighbours: int = 20
    #: Keep neighbour sets as skiplists (a sentinel member): ~10x faster updates, ~2.5x memory.
    skiplist_neighbours: bool = True
    #: Retention (wall-clock TTL) of session keys and of user keys; 0 = keep forever.
    session_ttl_s: int = 3 * 86_400
    user_ttl_s: int = 90 * 86_400
    #: Half-lives of event time after which the decay origin moves forward (every count is
    #: rescaled once): the growth factor 2^(t/HL) stays far below a double's 2^1024.
    rebase_half_lives: float = 512.0
    #: Session state lists distinct items (a re-click moves its item to the front): repeats
    #: fill neither the pairing window nor the scoring window.
    dedup_sessions: bool = True
    #: Weight of two-hop candidates: neighbours of the ``two_hop_neighbours`` heaviest
    #: neighbours of the current item (0 = off); ``two_hop_row`` heaviest read from each.
    two_hop: float = 0.3
    two_hop_neighbours: int = 3
    two_hop_row: int = 10
    #: Flat boost (times ``repeat_boost``) of session items older than the ``score_items``
    #: most recent ones (0 = off).
    older_boost: float = 0.1
    #: Most recent session items whose recent-session lists give the candidate neighbours,
    #: sessions read per such item, neighbours kept, fewest neighbours for the signal to count.
    knn_items: int = 2
    knn_sessions: int = 25
    knn_neighbours: int = 50
    knn_min_neighbours: int = 10
    #: Sessions remembered per item in ``is:<item>`` (bound; the oldest go first).
    knn_keep: int = 50
    #: Decays: position of a query item, neighbour recency (days), distance of a candidate to
    #: the matched item inside the neighbour; only candidates within ``knn_item_window`` of it.
    knn_position_decay: float = 4.0
    knn_recency_days: float = 5.0
    knn_item_decay: float = 4.0
    knn_item_window: int = 2

    def __post_init__(self) -> None:
        sizes = (self.session_window, self.score_items, self.max_neighbours, self.score_neighbours)
        if min(sizes) <= 0:
            raise InvalidConfig("window, score_items and neighbour bounds must be positive")
        if self.half_life_days <= 0:
            raise InvalidConfig("half_life_days must be positive")
        if not 0 < self.rebase_half_lives <= 900:
            raise InvalidConfig("rebase_half_lives must be in (0, 900]")
        bounds = (self.knn_items, self.knn_sessions, self.knn_neighbours, self.knn_keep,
                  self.knn_min_neighbours, self.two_hop_neighbours, self.two_hop_row)
        if min(bounds) <= 0:
            raise InvalidConfig("knn and two-hop bounds must be positive")
        if min(self.knn_weight, self.two_hop, self.older_boost, self.knn_item_window,
               self.pair_norm, self.pair_time_decay_s) < 0:
            raise InvalidConfig(
                "knn_weight, two_hop, older_boost, knn_item_window, pair_norm,"
                " pair_time_decay_s must be >= 0"
            )
        if min(self.knn_position_decay, self.knn_recency_days, self.knn_item_decay) <= 0:
            raise InvalidConfig("knn decays must be positive")

    def as_json(self) -> bytes:
        """The script's configuration argument: one JSON object, names as in the script.

        >>> orjson.loads(RecConfig(session_window=5, half_life_days=1.0, max_neighbours=10,
        ...                        knn_weight=0.0, item_ttl_s=0).as_json())["half_life_ms"]
        86400000.0
        """
        return orjson.dumps({
            "session_window": self.session_window,
            "score_items": self.score_items,
            "half_life_ms": self.half_life_days * _DAY_MS,
            "max_neighbours": self.max_neighbours,
            "prune_slack": max(1, int(self.max_neighbours * self.prune_slack)),
            "weights": dict(zip(("view", "add_to_cart", "purchase"), self.weights, strict=True)),
            "forward": self.forward,
            "forward_decay": self.forward_decay,
            "backward": self.backward,
            "backward_decay": self.backward_decay,
            "pair_norm": self.pair_norm,
            "pair_time_decay_ms": self.pair_time_decay_s * 1000,
            "recency_decay": self.recency_decay,
            "alpha": self.alpha,
            "beta": self.beta,
            "repeat_boost": self.repeat_boost,
            "session_ttl_ms": self.session_ttl_s * 1000,
            "user_ttl_ms": self.user_ttl_s * 1000,
            "item_ttl_ms": self.item_ttl_s * 1000,
            "score_neighbours": self.score_neighbours,
            "skiplist_neighbours": self.skiplist_neighbours,
            "rebase_half_lives": self.rebase_half_lives,
            "dedup_sessions": self.dedup_sessions,
            "two_hop": self.two_hop,
            "two_hop_neighbours": self.two_hop_neighbours,
            "two_hop_row": self.two_hop_row,
            "older_boost": self.older_boost,
            "knn_weight": self.knn_weight,
            "knn_items": self.knn_items,
            "knn_sessions": self.knn_sessions,
            "knn_neighbours": self.knn_neighbours,
            "knn_min_neighbours": self.knn_min_neighbours,
            "knn_keep": self.knn_keep,
            "knn_position_decay": self.knn_position_decay,
            "knn_recency_ms": self.knn_recency_days * _DAY_MS,
            "knn_item_decay": self.knn_item_decay,
            "knn_item_window": self.knn_item_window,
        })  # fmt: skip


#: RecConfig fields that change only how candidates are scored, never what is learned or
#: kept: what a second recommendation setting (an experiment's arm B) may override.
SCORING_FIELDS: Final = frozenset({
    "recency_decay", "alpha", "beta", "repeat_boost", "score_neighbours", "two_hop",
    "two_hop_neighbours", "two_hop_row", "older_boost", "knn_weight", "knn_items",
    "knn_sessions", "knn_neighbours", "knn_min_neighbours", "knn_position_decay",
    "knn_recency_days", "knn_item_decay", "knn_item_window",
})  # fmt: skip


def scoring_variant(config: RecConfig, overrides: Mapping[str, float]) -> RecConfig:
    """``config`` with other scoring parameters (:data:`SCORING_FIELDS`), for scoring only:
    the store keeps learning with ``config``.

    >>> base = RecConfig(session_window=5, half_life_days=1.0, max_neighbours=10,
    ...                  knn_weight=0.0, item_ttl_s=0)
    >>> scoring_variant(base, {"two_hop": 0, "score_neighbours": 30.0}).score_neighbours
    30
    >>> scoring_variant(base, {"half_life_days": 2})
    Traceback (most recent call last):
    ...
    models.errors.InvalidConfig: not scoring parameters (learning must not differ): half_life_days
    """
    unknown = sorted(set(overrides) - SCORING_FIELDS)
    if unknown:
        raise InvalidConfig(
            "not scoring parameters (learning must not differ): " + ", ".join(unknown)
        )
    if overrides.get("knn_weight", 0) > 0 and config.knn_weight <= 0:
        raise InvalidConfig("knn_weight > 0 needs it > 0 in the learning setting (no keys)")
    ints = {f.name for f in fields(RecConfig) if f.type in ("int", int)}
    values: dict[str, Any] = {
        k: (round(v) if k in ints else float(v)) for k, v in overrides.items()
    }
    return replace(config, **values)


def guard(epoch: str, owners: Mapping[str, str]) -> bytes:
    """The guard of a learn call: the store's epoch and the owner token of each
    ``topic:partition`` the call writes for (see ``similarity.lua``, ``refused``).

    >>> guard("e1", {"t:0": "7"}), guard("", {})
    (b'{"epoch":"e1","owners":{"t:0":"7"}}', b'{"owners":{}}')
    """
    checks: dict[str, Any] = {"epoch": epoch} if epoch else {}
    return orjson.dumps({**checks, "owners": dict(owners)})


def key_base(prefix: str) -> str:
    """``{prefix}:`` — the hash tag puts every key of one store in one Redis Cluster slot."""
    if not prefix or any(ch in prefix for ch in "{}*?[]\\"):
        raise InvalidConfig(f"redis prefix {prefix!r} must be non-empty without {{}}*?[]\\")
    return "{" + prefix + "}:"


_INCLUDE = re.compile(r"^-- #include ([\w.]+\.lua)$", re.MULTILINE)


def load_lua() -> str:
    """Source of the similarity script (package data): ``similarity.lua`` with each
    ``-- #include FILE`` line replaced by that file (one level).

    >>> src = load_lua()
    >>> any(line.startswith("-- #include") for line in src.splitlines())
    False
    >>> "local function knn(" in src, src.count("local COMMANDS = {}")
    (True, 1)
    """
    files = resources.files("models.similarity")
    main = files.joinpath("similarity.lua").read_text("utf-8")
    return _INCLUDE.sub(lambda m: files.joinpath(m.group(1)).read_text("utf-8"), main)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> list[tuple[str, float]]:
    return [(_s(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]


def _without(
    pairs: list[tuple[str, float]], exclude: Collection[str], k: int
) -> list[tuple[str, float]]:
    """The first ``k`` pairs whose item is not in ``exclude``.

    >>> _without([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a"}, 1)
    [('b', 2.0)]
    """
    if not exclude:
        return pairs[:k]
    drop = set(exclude)
    return [p for p in pairs if p[0] not in drop][:k]


#: Records of one topic:partition to learn, keyed by (topic, partition), in offset order.
Groups = Mapping[tuple[str, int], Sequence[tuple[int, Interaction]]]


def encode_groups(groups: Groups) -> bytes:
    """The ``learn`` command's single argument: one JSON array, decoded by ``cjson`` in Lua.

    One argument instead of 7 per record: redis-py's command packing of thousands of small
    arguments cost more than the JSON encoding.

    >>> from types import SimpleNamespace
    >>> e = SimpleNamespace(type="view", user_id="u", session_id="s", item_id="i", category=None,
    ...                     ts_ms=5)
    >>> encode_groups({("t", 0): [(7, e)], ("t", 1): []})
    b'[["t:0",[[7,"view","u","s","i","",5]]]]'
    """
    return orjson.dumps([
        [f"{topic}:{partition}",
         [[o, e.type, e.user_id, e.session_id, e.item_id or "", e.category or "", e.ts_ms]
          for o, e in records]]
        for (topic, partition), records in groups.items() if records
    ])  # fmt: skip


class SimilarityStore:
    """Item-to-item similarity in Redis, learned per event, queried per session."""

    def __init__(self, redis: Redis, *, prefix: str, config: RecConfig) -> None:
        self.redis = redis
        self.config = config
        self.base = key_base(prefix)
        self._meta = self.base + "meta"
        self._script = redis.register_script(load_lua())
        self._cfg = config.as_json()

    async def _call(self, cmd: str, args: Sequence[Any]) -> Any:
        return await self._script(keys=[self._meta], args=[cmd, self.base, self._cfg, *args])

    async def apply_batch(
        self, source: str, partition: int, records: Sequence[tuple[int, Interaction]]
    ) -> int:
        """Learn ``records`` of one partition (offset order); see :meth:`apply_many`."""
        return await self.apply_many({(source, partition): records})

    async def apply_many(self, groups: Groups, guard: bytes = b"") -> int:
        """Learn the records of several partitions in one script call, each group fenced by
        the offset stored for its ``topic:partition`` (``topic`` names the source: the
        worker appends the topic's incarnation, ``topic@id``).

        Returns how many records were past their fence (each moves the offset; only
        view/add_to_cart/purchase with an item teach co-occurrence). ``guard``
        (:func:`guard`) makes the call refuse with an ``EPOCH`` or ``FENCED`` error.
        """
        if not any(groups.values()):
            return 0
        return int(await self._call("learn", [guard, encode_groups(groups)]))

    async def learn_and_recommend(
        self, groups: Groups, requests: Sequence[tuple[str, str]], k: int, guard: bytes = b""
    ) -> tuple[int, list[list[tuple[str, float]]]]:
        """:meth:`apply_many`, then :meth:`recommend` (purchased items excluded) for each
        ``(user_id, session_id)`` on the updated store, in one call.

        The worker's batch path: one round trip instead of two, and the scoring overlaps
        with the profile updates like the learning does.
        """
        if not requests or k <= 0:
            return await self.apply_many(groups, guard), [[] for _ in requests]
        want = orjson.dumps([k, requests])
        applied, recs = await self._call("learn", [guard, encode_groups(groups), want])
        return int(applied), [_pairs(r) for r in recs]

    async def recommend_many(
        self, requests: Sequence[tuple[str, str]], k: int, config: RecConfig | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` for each ``(user_id, session_id)`` (purchased items excluded, as in
        :meth:`learn_and_recommend`), scored with ``config`` (default: the store's own; a
        :func:`scoring_variant` of it for an experiment arm) in one read-only call."""
        if not requests or k <= 0:
            return [[] for _ in requests]
        cfg = self._cfg if config is None else config.as_json()
        req = orjson.dumps([[u, s, 1, ""] for u, s in requests])
        res = await self._script(keys=[self._meta], args=["rec", self.base, cfg, k, req])
        return [_pairs(r) for r in res]

    async def evaluate_clicks(
        self, source: str, start: int, clicks: Sequence[tuple[str, str, int]],
        targets: Sequence[str], k: int,
    ) -> tuple[int, list[int], list[str]]:
        """Score-then-learn each click (session, item, ts_ms) in order inside Redis.

        Used by the offline evaluation: the same script and learning code as
        :meth:`apply_many` (clicks are views of user = session, offsets ``start + j``), and
        the same scoring code as :meth:`recommend`. ``targets[j]`` is the true next item of
        click j ('' = no prediction). Returns (clicks applied, 1-based rank of each target or
        0 if not in the top k, items shown in any top k).
        """
        records = orjson.dumps([
            [start + j, "view", session, session, item, "", ts, targets[j]]
            for j, (session, item, ts) in enumerate(clicks)
        ])  # fmt: skip
        applied, ranks, covered = await self._call("eval", [f"{source}:0", k, records])
        return int(applied), [int(r) for r in ranks], [_s(c) for c in covered]

    async def recommend(
        self,
        user_id: str,
        session_id: str,
        k: int,
        *,
        exclude_purchased: bool = True,
        category: str | None = None,
        exclude: Collection[str] = (),
        config: RecConfig | None = None,
    ) -> list[tuple[str, float]]:
        """Top ``k`` (item, score) for the session; popular items fill a cold start.

        ``exclude``: items never to return (the top ``k + len(exclude)`` without them is the
        top ``k`` of the rest). Hidden items (:meth:`set_hidden`) are never returned.
        ``config``: score with this :func:`scoring_variant` (an experiment arm).
        """
        if k <= 0:
            return []
        req = [[user_id, session_id, int(exclude_purchased), category or ""]]
        cfg = self._cfg if config is None else config.as_json()
        res = await self._script(keys=[self._meta], args=[
            "rec", self.base, cfg, k + len(exclude), orjson.dumps(req)])  # fmt: skip
        return _without(_pairs(res[0]), exclude, k)

    async def similar(
        self, item_id: str, k: int, *, category: str | None = None, exclude: Collection[str] = ()
    ) -> list[tuple[str, float]]:
        """Items most similar to ``item_id`` (itself, hidden and ``exclude`` items excluded;
        only ``category``'s if given)."""
        if k <= 0:
            return []
        res = await self._call("sim", [item_id, k + len(exclude), category or ""])
        return _without(_pairs(res), exclude, k)

    async def set_hidden(self, item_id: str, hidden: bool) -> bool:
        """Hide an item from every recommendation and similar-items list (or show it again).
        Returns whether that changed anything."""
        key = self.base + "hidden"
        changed = await (self.redis.sadd(key, item_id) if hidden else self.redis.srem(key, item_id))
        return bool(changed)

    async def popular(self, k: int) -> list[tuple[str, float]]:
        """Decayed trending items: weighted counts decayed to the stream clock."""
        if k <= 0:
            return []
        return _pairs(await self._call("pop", [k]))

    async def forget_user(self, user_id: str) -> int:
        """Delete the user's session and purchase keys; return how many keys were deleted."""
        return int(await self._call("forget", [user_id]))

    async def forget_users(self, user_ids: Sequence[str]) -> int:
        """:meth:`forget_user` for many users in one round trip (one script call each)."""
        if not user_ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for uid in user_ids:
            await self._script(keys=[self._meta], args=["forget", self.base, self._cfg, uid],
                               client=pipe)  # fmt: skip
        return sum(int(n) for n in await pipe.execute())

    async def stored_offset(self, source: str, partition: int) -> int | None:
        """Offset of the last applied record of (source, partition), if any."""
        raw = await self.redis.hget(self.base + "off", f"{source}:{partition}")
        return None if raw is None else int(raw)

    async def delete_all(self) -> int:
        """Delete every key of this store (SCAN + UNLINK); returns the number deleted."""
        return await delete_prefix(self.redis, self.base)


async def delete_prefix(redis: Redis, base: str, *, chunk: int = 500) -> int:
    """UNLINK every key that starts with ``base`` (glob-escaped), in chunks."""
    pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in base) + "*"
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=chunk):
        batch.append(key)
        if len(batch) >= chunk:
            deleted += int(await redis.unlink(*batch))
            batch = []
    if batch:
        deleted += int(await redis.unlink(*batch))
    log.debug("deleted %d keys under %s", deleted, base)
    return deleted
