"""Differential test of the similarity store's learning calls, against a real redis-server.

A learning call writes each neighbour set once per call: increments are deferred, merged per
key and flushed before scoring, before a rebase and at the end of the call
(docs/recommendations.md, "Writes per call, not per pair"). How the clicks are cut into calls
must not be visible to a consumer. The same click stream is fed to four stores with the same
configuration:

(a) ``one``: all clicks in one ``learn_and_recommend`` call;
(b) ``per``: one call per click (the reference);
(c) ``chunked``: the clicks in random chunks, one call each;
(d) ``parted``: the clicks spread over 2-3 partitions by user (a user's events share a
    partition), each partition with its own offsets (with gaps) and fence, in calls of several
    partitions, each group led by records of its partition already applied (a redelivered
    batch, which the fence skips).

Every mode applies the clicks in the same global order. At the end of every call of (c) and
(d), the call's recommendations (those of the last click of each user in the call: what the
worker publishes) must equal a fresh read-only ``recommend_many`` on ``per`` after the same
clicks, and the store must hold what ``per`` holds: every key under the prefix, byte for byte
(``DUMP``) where Redis's encoding is canonical, else its members (see ``state``), and whether
it has a TTL. At the end the four stores must be equal and score every session alike. Each
call of (b) must also return what a fresh call returns right after it.

Settings drawn per example: half-lives from 2 s to 30 days with rebases from every half-life
(mid-call rebases, counts decayed to nothing and their keys deleted) to the default; 1-3
neighbours per set (prunes inside a call), both set encodings, the pair time decay on and off,
distinct and plain session lists, the neighbourhood signal off and on (``knn_weight`` 0.5,
1-3 sessions kept per item), TTLs on and off for item, session and user keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from models.similarity import SimilarityStore
from streams.core.events import Event
from tests.integration.test_similarity_redis import (
    T0,
    StoreFactory,
    ev,
    keys_of,
    make_store,
    state,
)

pytestmark = pytest.mark.integration
__all__ = ["make_store"]  # the fixture, imported for pytest

HOUR = 3_600_000
TOPIC = "events"
#: What the worker asks recommendations for: the last such click of each user in a batch.
DUE = frozenset({"view", "add_to_cart", "purchase"})
#: Views dominate a real stream; searches have no item (they move the clock and the offset).
TYPES = ["view"] * 6 + ["add_to_cart"] * 2 + ["purchase", "search"]
#: (half-life in seconds, rebase_half_lives): the origin moves every 1-4 half-lives of a 2 s
#: or 1 min half-life, so rebases happen inside calls (an hours' gap decays every count to 0:
#: keys deleted, sets recreated); 30 min with rebases every 2; the defaults (never rebased).
DECAYS = [(2.0, 1.0), (60.0, 4.0), (1_800.0, 2.0), (30 * 86_400.0, 512.0)]

Record = tuple[int, Event]
Request = tuple[str, str]
Groups = dict[tuple[str, int], list[Record]]
Call = tuple[int, Groups, list[Record]]


def gap(kind: int, size: int) -> int:
    """Event time to the next click: mostly 0-90 s (kinds 0-6), sometimes hours (7-8: the pair
    time decay and the half-life at work), sometimes a step back (9: users of different
    partitions arrive out of event-time order)."""
    if kind <= 6:
        return size
    if kind <= 8:
        return HOUR + size * 300  # 1 to 8.5 hours
    return -(size // 5)


@dataclass(frozen=True)
class Scenario:
    config: dict[str, object]  # RecConfig fields, the same for the four stores
    records: list[Record]  # offset = position (partition 0 of modes a-c)
    chunk_ends: list[int]  # mode (c): the end (exclusive) of each call
    partitions: int  # mode (d): user u<n>'s partition is n % partitions
    cuts: set[int]  # mode (d): positions where a call must start
    redeliver: list[int]  # mode (d): records re-sent ahead of the group a click starts
    steps: list[int]  # mode (d): offset step from the partition's previous record
    k: int  # recommendations per request

    def text(self) -> str:
        """A table for the failure report: with pytest-asyncio, Hypothesis's report of an
        async test shows no generated argument (``sc=,``), so the test notes this instead."""
        rows = [f"  {o:>2} {e.type:<11} {e.user_id} {e.session_id} {e.item_id or '-':<3}"
                f" T0+{e.ts_ms - T0} {e.category or ''}" for o, e in self.records]  # fmt: skip
        return "\n".join([
            f"config: {self.config}", "clicks (offset type user session item time category):",
            *rows, f"(c) calls end at {self.chunk_ends}",
            f"(d) {self.partitions} partitions, calls cut at {sorted(self.cuts)},"
            f" redeliver {self.redeliver}, offset steps {self.steps}", f"k: {self.k}",
        ])  # fmt: skip


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    half_life_s, rebase = draw(st.sampled_from(DECAYS))
    config: dict[str, object] = {
        "half_life_days": half_life_s / 86_400,
        "rebase_half_lives": rebase,
        "max_neighbours": draw(st.integers(1, 3)),
        "session_window": draw(st.sampled_from([2, 3, 5])),
        "pair_time_decay_s": draw(st.sampled_from([300.0, 300.0, 0.0])),
        "skiplist_neighbours": draw(st.booleans()),
        "dedup_sessions": draw(st.sampled_from([True, True, False])),
        "knn_weight": draw(st.sampled_from([0.0, 0.5])),
        "knn_keep": draw(st.integers(1, 3)),
        "knn_min_neighbours": 1,
        "knn_sessions": 3,
        "knn_neighbours": 2,
        "item_ttl_s": draw(st.sampled_from([0, 3_600])),
        "session_ttl_s": draw(st.sampled_from([0, 3 * 86_400])),
        "user_ttl_s": draw(st.sampled_from([0, 90 * 86_400])),
    }
    n_sessions = draw(st.integers(1, 4))
    n_users = draw(st.integers(1, n_sessions))  # a user may have two sessions
    n_items = draw(st.integers(2, 7))
    n = draw(st.integers(1, 40))  # Hypothesis's own list sizes are mostly a handful
    clicks = draw(st.lists(
        st.tuples(st.sampled_from(TYPES), st.integers(0, n_sessions - 1),
                  st.integers(0, n_items - 1), st.integers(0, 9), st.integers(0, 90_000),
                  st.sampled_from([None, None, "shoes", "hats"])),
        min_size=n, max_size=n,
    ))  # fmt: skip
    records, ts = [], T0
    for j, (etype, s, i, kind, size, category) in enumerate(clicks):
        ts += gap(kind, size) if j else 0
        item = None if etype == "search" else f"i{i}"
        records.append(ev(j, item, session=f"s{s}", user=f"u{s % n_users}", etype=etype,
                          ts=ts, category=category))  # fmt: skip
    cuts = st.sets(st.integers(1, n - 1), max_size=8) if n > 1 else st.just(set[int]())
    return Scenario(
        config=config,
        records=records,
        chunk_ends=[*sorted(draw(cuts)), n],
        partitions=draw(st.integers(2, 3)),
        cuts=draw(cuts),
        redeliver=draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
        steps=draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)),
        k=draw(st.sampled_from([1, 3, 6])),
    )


def due(records: Sequence[Record]) -> list[Request]:
    """(user, session) of the last recommendable click of each user among ``records``."""
    last: dict[str, str] = {}
    for _, e in records:
        if e.type in DUE and e.item_id:
            last.pop(e.user_id, None)
            last[e.user_id] = e.session_id
    return list(last.items())


def partition_calls(sc: Scenario) -> tuple[list[Call], dict[int, int]]:
    """Mode (d)'s calls, (end position, groups, the records new to the store), and the last
    offset of each partition. A call ends at a drawn cut and wherever the global order would
    need a second group of one partition (a call applies its groups one after the other)."""
    sent: dict[int, list[Record]] = {}  # per partition: its records so far, with its offsets
    last: dict[int, int] = {}
    calls: list[Call] = []
    groups: Groups = {}
    new: list[Record] = []
    for j, (_, e) in enumerate(sc.records):
        p = int(e.user_id[1:]) % sc.partitions
        key = (TOPIC, p)
        if groups and (j in sc.cuts or (key in groups and list(groups)[-1] != key)):
            calls.append((j, groups, new))
            groups, new = {}, []
        if key not in groups:  # led by up to redeliver[j] records of earlier calls
            old = sent.setdefault(p, [])
            groups[key] = old[len(old) - min(sc.redeliver[j], len(old)) :]
        last[p] = last.get(p, -1) + sc.steps[j]
        record = (last[p], e)
        groups[key].append(record)
        new.append(record)
        sent[p].append(record)
    calls.append((len(sc.records), groups, new))
    return calls, last


async def check_ttls(store: SimilarityStore) -> None:
    """Each key kind has a TTL exactly when its setting asks for one, never above it."""
    c = store.config
    ttl_s = {"n": c.item_ttl_s, "s": c.session_ttl_s, "is": c.session_ttl_s,
             "us": c.user_ttl_s, "ub": c.user_ttl_s, "ui": c.user_ttl_s}  # fmt: skip
    for key in await keys_of(store):
        kind = key.decode().removeprefix(store.base).split(":")[0]
        if kind in ttl_s:
            pttl = await store.redis.pttl(key)
            assert (pttl > 0) == (ttl_s[kind] > 0) and pttl <= ttl_s[kind] * 1000, (key, pttl)


def session_leaves_a_full_listing() -> Scenario:
    """Drawn rarely, so stated: in one call, s0's fourth item pushes i0 out of its list (3
    items kept) and off ``is:i0`` (``knn_keep`` 1: trimmed past 2 sessions); then s1 and s2
    are listed there. A call that did not count s0's leaving trims s1 at once (a fault that
    random streams caught in 1 of 5 runs: tests/support/script_mutants.py, unlist_card)."""
    clicks = [("s0", "u0", "i0"), ("s0", "u0", "i1"), ("s0", "u0", "i2"), ("s0", "u0", "i3"),
              ("s1", "u1", "i0"), ("s2", "u2", "i0")]  # fmt: skip
    records = [ev(j, item, session=s, user=u, ts=T0 + 1_000 * j)
               for j, (s, u, item) in enumerate(clicks)]  # fmt: skip
    config: dict[str, object] = {"session_window": 2, "knn_weight": 0.5, "knn_keep": 1,
                                 "knn_min_neighbours": 1, "knn_sessions": 3,
                                 "knn_neighbours": 2}  # fmt: skip
    n = len(records)
    return Scenario(config=config, records=records, chunk_ends=[n], partitions=2, cuts=set(),
                    redeliver=[0] * n, steps=[1] * n, k=3)  # fmt: skip


# 150 examples: ~13 s against a local redis-server (6,000 found no difference in 8 minutes).
# The fixture is shared by the examples on purpose: each example makes its own four stores.
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sc=scenarios())
@example(sc=session_leaves_a_full_listing())
async def test_any_cut_of_the_clicks_into_calls_is_invisible(
    make_store: StoreFactory, sc: Scenario
) -> None:
    """(a)-(d) above. Recommendations are compared exactly, scores included: a store holds the
    same doubles in every mode (the merged writes add a key's increments in click order, the
    same additions ZINCRBY makes), and scoring reads them in an order that depends only on
    the stored values, so no summation order differs and no tolerance is needed."""
    note(sc.text())
    stores = [await make_store(**sc.config) for _ in range(4)]
    one, per, chunked, parted = stores
    k, records = sc.k, sc.records
    try:
        chunks = list(pairwise([0, *sc.chunk_ends]))
        parts, offsets = partition_calls(sc)
        for j, record in enumerate(records):
            asked = due([record])
            assert await per.learn_and_recommend({(TOPIC, 0): [record]}, asked, k) == (
                1, await per.recommend_many(asked, k))  # fmt: skip
            while chunks and chunks[0][1] == j + 1:
                start, end = chunks.pop(0)
                batch, asked = records[start:end], due(records[start:end])
                got = await chunked.learn_and_recommend({(TOPIC, 0): batch}, asked, k)
                assert got == (len(batch), await per.recommend_many(asked, k)), (start, end)
                assert await state(chunked) == await state(per), (start, end)
            while parts and parts[0][0] == j + 1:
                end, groups, new = parts.pop(0)
                asked = due(new)
                got = await parted.learn_and_recommend(groups, asked, k)
                assert got == (len(new), await per.recommend_many(asked, k)), (end, groups)
                assert await state(parted, offsets=False) == await state(per, offsets=False)
        assert not chunks and not parts
        asked = [*due(records), ("nobody", "none")]  # a cold start too: popular items
        got = await one.learn_and_recommend({(TOPIC, 0): records}, asked, k)
        assert got == (len(records), await per.recommend_many(asked, k))
        reference = await state(per)
        assert await state(one) == reference
        assert await state(chunked) == reference
        assert await state(parted, offsets=False) == await state(per, offsets=False)
        everyone = sorted({(e.user_id, e.session_id) for _, e in records})
        expected = await per.recommend_many(everyone, k + 2)
        for store in (one, chunked, parted):
            assert await store.recommend_many(everyone, k + 2) == expected
        for p in range(sc.partitions):  # (d)'s fences: the last offset of each partition
            assert await parted.stored_offset(TOPIC, p) == offsets.get(p)
        await check_ttls(per)
        assert await per.stored_offset(TOPIC, 0) == len(records) - 1
    finally:
        for store in stores:
            await store.delete_all()
