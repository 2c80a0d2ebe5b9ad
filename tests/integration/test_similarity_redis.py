"""The similarity store against a real redis-server (SHOPSTREAM_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import math
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from models.similarity import SENTINEL, SimilarityStore, scoring_variant
from models.similarity.reference import (
    Index,
    growth,
    index_click,
    neighbourhood,
    pair_increments,
    score,
    session_update,
    top_k,
)
from streams.core.events import Event
from streams.core.settings import Settings
from streams.worker.configs import rec_config

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 1_700_000_000_000
StoreFactory = Callable[..., Awaitable[SimilarityStore]]


def redis_url() -> str:
    url = os.environ.get("SHOPSTREAM_TEST_REDIS_URL")
    if not url:
        pytest.fail("SHOPSTREAM_TEST_REDIS_URL is not set; start Redis with `make up`")
    return url


@pytest.fixture
async def make_store() -> AsyncIterator[StoreFactory]:
    client = aioredis.Redis.from_url(redis_url(), decode_responses=False)
    try:
        await client.ping()
    except (redis.ConnectionError, OSError) as exc:
        pytest.fail(f"no Redis at {redis_url()} ({exc}); start it with `make up`")
    stores: list[SimilarityStore] = []

    async def factory(**changes: object) -> SimilarityStore:
        config = replace(rec_config(Settings()), **changes)
        store = SimilarityStore(client, prefix=f"t-{uuid.uuid4().hex[:10]}", config=config)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.delete_all()
    await client.aclose()


def ev(n: int, item: str | None, *, session: str = "s1", user: str = "u1", etype: str = "view",
       ts: int = T0, category: str | None = None) -> tuple[int, Event]:
    e = Event(f"e{n}", etype, user, session, ts, item_id=item, category=category)  # type: ignore[arg-type]
    return n, e


async def keys_of(store: SimilarityStore) -> list[bytes]:
    return sorted([k async for k in store.redis.scan_iter(match=store.base + "*", count=1000)])


#: Every key under a store's prefix (cut off): its value and whether it has a TTL.
State = dict[bytes, tuple[object, bool]]


async def state(store: SimilarityStore, *, offsets: bool = True) -> State:
    """Every key under the store's prefix (prefix cut off): its value and whether it has a TTL
    (how long depends on the wall clock of the call that set it). Strings and sorted sets by
    their DUMP, whose bytes are a function of the value (a sorted set's entries are in score
    order, its encoding chosen the same way in every mode); sets and hashes by their members:
    Redis 7.0 keeps a set of 5 or more strings (``ub:``, ``us:``, ``ui:``) as a hash table
    whose DUMP order depends on when it was resized, and a resize waits while an AOF rewrite's
    child runs, so the same SADDs dump differently (seen: ``ub:u0``, 7 purchases)."""
    keys = await keys_of(store)
    pipe = store.redis.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.pttl(key)
    meta = await pipe.execute()
    for key, kind in zip(keys, meta[::2], strict=True):
        read = {b"set": pipe.smembers, b"hash": pipe.hgetall}.get(kind, pipe.dump)
        read(key)
    values = await pipe.execute()
    base = store.base.encode()
    return {key.removeprefix(base): (ordered(value), ttl > 0)
            for key, value, ttl in zip(keys, values, meta[1::2], strict=True)
            if offsets or key != base + b"off"}  # fmt: skip


def ordered(value: object) -> object:
    """A set's members or a hash's fields in order; a DUMP as it is."""
    if isinstance(value, dict):
        return sorted(value.items())
    return sorted(value) if isinstance(value, set) else value


async def test_fencing_by_offset(make_store: StoreFactory) -> None:
    store = await make_store()
    batch = [ev(i, f"i{i % 3}", ts=T0 + i) for i in range(5)]
    assert await store.apply_batch("events", 0, batch) == 5
    before = await state(store)
    assert await store.apply_batch("events", 0, batch) == 0
    assert await state(store) == before
    more = [*batch[3:], ev(5, "i9", ts=T0 + 5)]
    assert await store.apply_batch("events", 0, more) == 1
    assert await store.stored_offset("events", 0) == 5
    assert await store.apply_batch("events", 1, batch[:1]) == 1  # partitions are independent


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["view", "add_to_cart", "purchase", "search"]),
                          st.integers(0, 6), st.integers(0, 2), st.integers(0, 3 * DAY),
                          st.sampled_from([None, "shoes", "hats"])),
                min_size=1, max_size=40))
def test_redelivered_batch_leaves_redis_byte_identical(  # every key kind, is: and ui: too
    batch: list[tuple[str, int, int, int, str | None]],
) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url(), decode_responses=False)
        store = SimilarityStore(client, prefix=f"t-{uuid.uuid4().hex[:10]}",
                                config=replace(rec_config(Settings()), max_neighbours=3,
                                               session_window=4, knn_weight=0.5, knn_keep=2,
                                               knn_min_neighbours=1))
        try:
            records = [
                ev(n, None if t == "search" else f"i{i}", session=f"s{s}", user=f"u{s}",
                   etype=t, ts=T0 + ts, category=c)
                for n, (t, i, s, ts, c) in enumerate(sorted(batch, key=lambda r: r[3]))
            ]
            half = len(records) // 2
            await store.apply_batch("events", 0, records[:half])
            first = await store.apply_batch("events", 0, records)
            before = await state(store)
            assert await store.apply_batch("events", 0, records) == 0
            assert await store.apply_batch("events", 0, records[:half]) == 0
            assert first == len(records) - half
            assert await state(store) == before
        finally:
            await store.delete_all()
            await client.aclose()

    asyncio.run(run())


def replay_reference(
    store: SimilarityStore, clicks: list[tuple[str, str, int]],
) -> tuple[dict[str, dict[str, float]], dict[str, float], Index, dict[str, list[str]], int]:
    """The store's state after ``clicks`` (session, item, ts), computed by the reference:
    decayed rows and counts, the item -> sessions index, the session lists, and the clock."""
    c = store.config
    keep = max(c.session_window, c.score_items)
    hl = c.half_life_days * DAY
    rows: dict[str, dict[str, float]] = {}
    counts: dict[str, float] = {}
    index: Index = {}
    lists: dict[str, list[str]] = {}
    times: dict[str, list[int]] = {}  # each listed item's latest click, aligned with lists
    t0 = clicks[0][2]
    for session, item, ts in clicks:
        g = growth(ts, t0, hl)
        prev = lists.get(session, [])
        at = times.get(session, [])
        fwd, bwd = pair_increments(prev, item, g=g, window=c.session_window, norm=c.pair_norm,
                                   gaps=[ts - t for t in at],
                                   time_decay_ms=c.pair_time_decay_s * 1000)
        for a, v in fwd.items():
            rows.setdefault(a, {})[item] = rows.get(a, {}).get(item, 0.0) + v
        for a, v in bwd.items():
            rows.setdefault(item, {})[a] = rows.get(item, {}).get(a, 0.0) + v
        counts[item] = counts.get(item, 0.0) + g
        lists[session], gone = session_update(prev, item, keep=keep, dedup=c.dedup_sessions)
        if c.dedup_sessions and item in prev:
            at = [t for a, t in zip(prev, at, strict=True) if a != item]
        times[session] = [ts, *at][:keep]
        if c.knn_weight > 0:
            index_click(index, session, item, ts, gone, keep=c.knn_keep)
    clock = max(ts for _, _, ts in clicks)
    now = growth(clock, t0, hl)
    rows = {a: {b: v / now for b, v in row.items()} for a, row in rows.items()}
    return rows, {i: v / now for i, v in counts.items()}, index, lists, clock


def reference_scores(
    store: SimilarityStore, clicks: list[tuple[str, str, int]], session: str
) -> tuple[dict[str, float], dict[str, float] | None]:
    """The reference's scores of ``session`` after ``clicks``, and its neighbourhood scores."""
    c = store.config
    rows, counts, index, lists, clock = replay_reference(store, clicks)
    kn = None
    if c.knn_weight > 0:
        kn = neighbourhood(
            lists[session], index, lists, clock, self=session, items=c.knn_items,
            sessions=c.knn_sessions, keep=max(c.session_window, c.score_items),
            position_decay=c.knn_position_decay, recency_ms=c.knn_recency_days * DAY,
            item_decay=c.knn_item_decay, item_window=c.knn_item_window,
            neighbours=c.knn_neighbours, min_neighbours=c.knn_min_neighbours,
        )  # fmt: skip
    return score(
        lists[session], rows, counts, score_items=c.score_items, recency_decay=c.recency_decay,
        alpha=c.alpha, beta=c.beta, repeat_boost=c.repeat_boost, neighbours=c.score_neighbours,
        two_hop=c.two_hop, two_hop_neighbours=c.two_hop_neighbours, two_hop_row=c.two_hop_row,
        older_boost=c.older_boost, knn=kn, knn_weight=c.knn_weight,
    ), kn  # fmt: skip


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["view", "view", "add_to_cart", "purchase"]),
                          st.integers(0, 7), st.integers(0, 2),
                          st.integers(0, 6 * 3_600_000)),  # hours apart: time-decayed to ~0
                min_size=1, max_size=60),
       st.sampled_from([True, False]), st.integers(2, 6))
def test_one_call_writes_what_one_call_per_click_writes(
    clicks: list[tuple[str, int, int, int]], skiplist: bool, max_neighbours: int
) -> None:
    """A batch's row and popularity writes are deferred to the end of the call (one read and
    one write per key, not one ZINCRBY per click): the store holds exactly what learning the
    same clicks one call each leaves (:func:`state`: byte for byte by DUMP, sets and hashes by
    their members), also for rows pruned inside the call (few items, sets of 2-6
    neighbours)."""

    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url(), decode_responses=False)
        config = replace(rec_config(Settings()), max_neighbours=max_neighbours,
                         session_window=5, skiplist_neighbours=skiplist)  # fmt: skip
        batched, per_click = (SimilarityStore(client, prefix=f"t-{uuid.uuid4().hex[:10]}",
                                              config=config) for _ in range(2))  # fmt: skip
        try:
            records = [ev(n, f"i{i}", session=f"s{s}", user=f"u{s}", etype=t, ts=T0 + ts)
                       for n, (t, i, s, ts) in enumerate(sorted(clicks, key=lambda c: c[3]))]
            assert await batched.apply_batch("events", 0, records) == len(records)
            for record in records:
                assert await per_click.apply_batch("events", 0, [record]) == 1

            assert await state(batched) == await state(per_click)
        finally:
            await batched.delete_all()
            await per_click.delete_all()
            await client.aclose()

    asyncio.run(run())


async def test_a_member_with_a_negligible_score_is_not_counted_as_new(
    make_store: StoreFactory,
) -> None:
    """Found by review: a pair learned 1000 s apart with ``pair_time_decay_s`` 1 leaves x in
    n:a with a score of 0, so adding to it returns exactly the increment. Counting x as a new
    member made the set's cached size one too high, and within one call the prune removed a
    member one click early (x kept per click, y3 kept by the call)."""
    one = await make_store(max_neighbours=2, pair_time_decay_s=1.0)
    per = await make_store(max_neighbours=2, pair_time_decay_s=1.0)
    history = [ev(0, "a", session="s0", ts=T0), ev(1, "x", session="s0", ts=T0 + 1_000_000)]
    t = T0 + 2_000_000
    batch = [ev(2 + 2 * n + j, item, session=f"s{n + 1}", ts=t + 2 * n + j,
                etype="view" if item == "y3" else ("purchase" if j else "view"))
             for n, second in enumerate(["y1", "x", "y2", "y3"])
             for j, item in enumerate(["a", second])]  # fmt: skip
    for store in (one, per):
        await store.apply_batch("events", 0, history)
    assert await one.redis.zscore(one.base + "n:a", "x") == 0.0
    await one.apply_batch("events", 0, batch)
    for record in batch:
        await per.apply_batch("events", 0, [record])

    assert await state(one) == await state(per)
    members = await one.redis.zrange(one.base + "n:a", 0, -1)
    assert b"x" in members and b"y3" not in members

async def test_learning_and_scoring_match_the_python_reference(make_store: StoreFactory) -> None:
    store = await make_store(repeat_boost=0.5)
    clicks = [("s1", i, T0) for i in "abacbdeb"]
    await store.apply_batch("events", 0, [ev(n, i, ts=T0) for n, (_, i, _) in enumerate(clicks)])
    rows = replay_reference(store, clicks)[0]
    for a, row in rows.items():
        got = await store.redis.zrange(f"{store.base}n:{a}", 0, -1, withscores=True)
        assert (SENTINEL, 0.0) in got
        assert {k.decode(): v for k, v in got if k != SENTINEL} == pytest.approx(row)
    expected, _ = reference_scores(store, clicks, "s1")
    got_recs = dict(await store.recommend("u1", "s1", len(expected)))
    assert got_recs == pytest.approx(expected)
    assert "e" in got_recs  # older than the 3 scored items: still boosted


async def test_pairs_decay_with_the_time_between_the_clicks(make_store: StoreFactory) -> None:
    """``pair_time_decay_s``: a pair's increments shrink with the seconds between the earlier
    item's latest click and the new one, as the reference states, across batches (the times
    travel in the session key) and with gaps from one second to an hour."""
    store = await make_store(pair_time_decay_s=300.0)
    gaps = [0, 1, 30, 30, 300, 5, 3600, 2, 60, 600, 10, 1]
    clicks, ts = [], T0
    for n, gap in enumerate(gaps):
        ts += gap * 1000
        clicks.append(("s1", "abcadbecfa"[n % 10], ts))
    records = [ev(n, i, ts=t) for n, (_, i, t) in enumerate(clicks)]
    for j in range(0, len(records), 5):
        await store.apply_batch("events", 0, records[j : j + 5])
    rows, *_, clock = replay_reference(store, clicks)
    hl = store.config.half_life_days * DAY
    now = growth(clock, T0, hl)  # stored weights are growth-weighted, the reference's decayed
    for a, row in rows.items():
        got = await store.redis.zrange(f"{store.base}n:{a}", 0, -1, withscores=True)
        assert {k.decode(): v / now for k, v in got if k != SENTINEL} == pytest.approx(row)
    # the same clicks one hour apart teach (almost) nothing; a second apart, nearly the full
    # weight of the distance alone
    slow, fast = await make_store(), await make_store()
    for one, step in ((slow, 3_600_000), (fast, 1_000)):
        await one.apply_batch("events", 0, [ev(0, "a", ts=T0), ev(1, "b", ts=T0 + step)])
    slow_ab = await slow.redis.zscore(slow.base + "n:a", "b")
    fast_ab = await fast.redis.zscore(fast.base + "n:a", "b")
    assert slow_ab == pytest.approx(math.exp(-12) * growth(T0 + 3_600_000, T0, hl))
    assert fast_ab == pytest.approx(math.exp(-1 / 300) * growth(T0 + 1_000, T0, hl))


async def test_a_session_stored_without_times_learns_on(make_store: StoreFactory) -> None:
    """A session key written without times (before ``pair_time_decay_s``, or with it 0): its
    items pair undecayed, the new click is timed from then on."""
    off = await make_store(pair_time_decay_s=0.0)
    await off.apply_batch("events", 0, [ev(0, "a", ts=T0), ev(1, "b", ts=T0 + 1000)])
    assert await off.redis.get(off.base + "s:s1") == b"b\0a"
    on = SimilarityStore(off.redis, prefix=off.base[1:-2],
                         config=replace(off.config, pair_time_decay_s=300.0))
    hl = off.config.half_life_days * DAY
    t2, t3 = T0 + 601_000, T0 + 901_000
    await on.apply_batch("events", 0, [ev(2, "c", ts=t2)])
    g2, g3 = growth(t2, T0, hl), growth(t3, T0, hl)
    assert await on.redis.zscore(on.base + "n:b", "c") == pytest.approx(g2 / 1.5**0.5)
    assert await on.redis.get(on.base + "s:s1") == b"c\0b\0a\0\0%d\0-\0-" % t2
    await on.apply_batch("events", 0, [ev(3, "d", ts=t3)])
    h = (1 + 1 / 2 + 1 / 3) ** 0.5
    assert await on.redis.zscore(on.base + "n:c", "d") == pytest.approx(g3 * math.exp(-1) / h)
    assert await on.redis.zscore(on.base + "n:b", "d") == pytest.approx(g3 / 2 / h)


@pytest.mark.parametrize("knn_weight", [0.0, 0.5])
async def test_many_sessions_score_as_the_reference(
    make_store: StoreFactory, knn_weight: float
) -> None:
    """Two-hop candidates, decay over days and (with ``knn_weight``) the neighbourhood signal,
    its index trimmed to ``knn_keep`` sessions per item, against the Python statement."""
    store = await make_store(knn_weight=knn_weight, knn_min_neighbours=2, knn_keep=4,
                             knn_sessions=3, knn_neighbours=3)
    rng = random.Random(5)
    clicks = []
    for n in range(240):  # 40 sessions of 6 clicks over 8 days, items follow loose chains
        step = rng.choice([1, 1, 2, 5])
        item = rng.randrange(12) if n % 6 == 0 else int(clicks[-1][1][1:]) + step
        clicks.append((f"s{n // 6}", f"i{item % 15}", T0 + n * (DAY // 30)))
    records = [ev(n, i, session=s, user=f"u{s}", ts=ts) for n, (s, i, ts) in enumerate(clicks)]
    for j in range(0, len(records), 50):
        await store.apply_batch("events", 0, records[j : j + 50])
    for session in ("s39", "s20"):
        expected, kn = reference_scores(store, clicks, session)
        assert (kn is not None) == (knn_weight > 0)
        k = min(len(expected), 12)
        got = await store.recommend(f"u{session}", session, k)
        assert [i for i, _ in got] == [i for i, _ in top_k(expected, k)]
        assert dict(got) == pytest.approx(dict(top_k(expected, k)))


async def test_session_recommendations_follow_the_session(make_store: StoreFactory) -> None:
    store = await make_store()
    history = [ev(n, i, session=f"h{n // 2}", ts=T0 + n)
               for n, i in enumerate(["a", "x", "a", "x", "b", "y", "b", "y"])]
    await store.apply_batch("events", 0, history)
    await store.apply_batch("events", 0, [ev(100, "a", session="live", user="me", ts=T0 + 100)])
    first = [i for i, _ in await store.recommend("me", "live", 3)]
    assert first[:2] == ["a", "x"] or first[:2] == ["x", "a"]
    await store.apply_batch("events", 0, [ev(101, "b", session="live", user="me", ts=T0 + 101)])
    second = [i for i, _ in await store.recommend("me", "live", 3)]
    assert second[0] in {"b", "y"}
    assert "y" in second[:2]
    assert first != second
    cold = await store.recommend("nobody", "none", 3)
    assert [i for i, _ in cold] == [i for i, _ in await store.popular(3)]  # cold start
    assert await store.recommend("me", "live", 0) == []


async def test_learning_and_scoring_in_one_call_equal_two_calls(make_store: StoreFactory) -> None:
    """The worker's path (``learn_and_recommend``) against ``apply_many`` + ``recommend``
    on a second store: same store contents, same recommendations, also when redelivered."""
    one_call, two_calls = await make_store(), await make_store()
    history = [ev(n, i, session=f"h{n // 3}", user=f"u{n % 4}", ts=T0 + n * 1000)
               for n, i in enumerate("abcabdacdbcdabce")]  # fmt: skip
    groups = {("events", 0): history[:10], ("events", 1): [(0, history[12][1])]}
    requests = [("u1", "h1"), ("u3", "h2"), ("nobody", "none")]
    applied, recs = await one_call.learn_and_recommend(groups, requests, 4)
    assert applied == await two_calls.apply_many(groups) == 11
    assert recs == [await two_calls.recommend(u, s, 4) for u, s in requests]
    assert all(recs)
    assert await state(one_call) == await state(two_calls)
    again = await one_call.learn_and_recommend(groups, requests, 4)  # a redelivered batch
    assert again == (0, recs)
    assert await one_call.learn_and_recommend({}, [], 4) == (0, [])
    assert await one_call.learn_and_recommend({}, requests[:1], 0) == (0, [[]])


async def test_purchases_categories_similar_and_forget(make_store: StoreFactory) -> None:
    store = await make_store()
    recs = [
        ev(0, "a", ts=T0, category="hats"),
        ev(1, "b", ts=T0 + 1, category="shoes"),
        ev(2, "c", ts=T0 + 2, category="hats"),
        ev(3, "b", ts=T0 + 3, etype="purchase", category="shoes"),
        ev(4, None, ts=T0 + 4, etype="search"),
    ]
    assert await store.apply_batch("events", 0, recs) == 5
    items = [i for i, _ in await store.recommend("u1", "s1", 10)]
    assert "b" not in items and set(items) == {"a", "c"}
    assert "b" in [i for i, _ in await store.recommend("u1", "s1", 10, exclude_purchased=False)]
    hats = [i for i, _ in await store.recommend("u1", "s1", 10, category="hats")]
    assert set(hats) == {"a", "c"}
    assert [i for i, _ in await store.recommend("u1", "s1", 10, category="shoes")] == []
    assert "a" not in [i for i, _ in await store.similar("a", 5)]
    assert await store.forget_user("u1") == 3  # session, purchases, session index
    assert await store.forget_user("u1") == 0


async def test_forget_erases_the_user_from_every_key(make_store: StoreFactory) -> None:
    """Also from the item -> sessions index when a session's own key has already expired."""
    store = await make_store(knn_weight=0.5)
    records = [ev(n, f"i{n % 5}", session=f"{u}-{n // 2 % 2}", user=u, ts=T0 + n)
               for n, u in enumerate(["me", "other"] * 12)]  # fmt: skip
    await store.apply_batch("events", 0, records)
    mine = {"me-0", "me-1"}

    async def listed() -> set[str]:
        out: set[str] = set()
        async for key in store.redis.scan_iter(match=store.base + "is:*", count=2000):
            out |= {m.decode() for m in await store.redis.zrange(key, 0, -1)}
        return out

    assert mine <= await listed() and {"other-0", "other-1"} <= await listed()
    await store.redis.delete(store.base + "s:me-0")  # as if its TTL had run out
    assert await store.forget_user("me") == 3  # ui:, s:me-1, us: (no purchases: no ub:)
    assert not mine & await listed()
    assert {"other-0", "other-1"} <= await listed()
    names = [k.decode() for k in await keys_of(store)]
    assert not [k for k in names if k.endswith((":me", ":me-0", ":me-1"))]
    assert await store.forget_user("me") == 0


async def test_session_index_bounded_with_ttls(make_store: StoreFactory) -> None:
    store = await make_store(knn_weight=0.5, knn_keep=10)
    rng = random.Random(3)
    records = [ev(n, f"i{rng.randrange(30)}", session=f"s{n // 7}", user=f"u{n // 21}",
                  ts=T0 + n * 1000) for n in range(3_000)]  # fmt: skip
    for j in range(0, len(records), 500):
        await store.apply_batch("events", 0, records[j : j + 500])
    keep = max(store.config.session_window, store.config.score_items)
    kinds: dict[str, int] = {}
    for key in await keys_of(store):
        kind = key.decode().removeprefix(store.base).split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("is", "ui", "s", "us"):
            assert await store.redis.pttl(key) > 0, key
        if kind == "is":
            assert await store.redis.zcard(key) <= 10 + 1
        if kind == "s":
            items = (await store.redis.get(key)).split(b"\0\0")[0].split(b"\0")
            assert len(items) == len(set(items)) <= keep
    assert kinds["is"] == 30 and kinds["ui"] == 3_000 // 21 + 1


@pytest.mark.parametrize("knn_weight", [0.0, 0.5])
async def test_evaluation_ranks_do_not_depend_on_the_batch_size(
    make_store: StoreFactory, knn_weight: float
) -> None:
    rng = random.Random(11)
    clicks, targets = [], []
    for n in range(1_200):
        clicks.append((f"s{n // 6}", f"i{rng.randrange(40)}", T0 + n * 60_000))
        targets.append(f"i{rng.randrange(40)}" if n % 6 != 5 else "")
    ranks = []
    for batch in (1_000, 37):
        store = await make_store(knn_weight=knn_weight, knn_min_neighbours=2)
        got: list[int] = []
        for j in range(0, len(clicks), batch):
            got += (await store.evaluate_clicks("t", j, clicks[j : j + batch],
                                                targets[j : j + batch], 20))[1]
        ranks.append(got)
    assert ranks[0] == ranks[1] and any(ranks[0])


async def test_popular_is_decayed_in_event_time(make_store: StoreFactory) -> None:
    store = await make_store(half_life_days=1.0)
    records = [ev(0, "old", ts=T0), ev(1, "new", session="s2", ts=T0 + DAY)]
    await store.apply_batch("events", 0, records)
    assert await store.popular(2) == [("new", pytest.approx(1.0)), ("old", pytest.approx(0.5))]


async def test_script_survives_noscript(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.apply_batch("events", 0, [ev(0, "a")])
    await store.redis.script_flush()
    assert await store.apply_batch("events", 0, [ev(1, "b")]) == 1


async def test_all_keys_share_one_cluster_slot_and_are_deleted(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.apply_batch("events", 0, [ev(i, f"i{i}", etype="purchase", category="c")
                                          for i in range(5)])
    keys = await keys_of(store)
    assert len({key_slot(k) for k in keys}) == 1
    assert await store.delete_all() == len(keys)
    assert await keys_of(store) == []


async def _memory_per_item(store: SimilarityStore, n_items: int, clicks: int) -> tuple[float, int]:
    rng = random.Random(7)
    records = []
    for n in range(clicks):  # Zipf-like popularity: popular items meet many neighbours
        item = f"item{min(int(rng.paretovariate(0.8)) - 1, n_items - 1)}"
        if rng.random() < 0.5:
            item = f"item{rng.randrange(n_items)}"
        records.append(ev(n, item, session=f"s{n // 8}", user=f"u{n // 8}", ts=T0 + n * 1000))
    for j in range(0, len(records), 2000):
        await store.apply_batch("events", 0, records[j : j + 2000])
    total, biggest = 0, 0
    for key in await keys_of(store):
        if b":s:" in key or b":us:" in key:
            continue  # session state is per session, not per item
        total += int(await store.redis.memory_usage(key, samples=0) or 0)
        if b":n:" in key:
            biggest = max(biggest, int(await store.redis.zcard(key)))
    return total / n_items, biggest


@pytest.mark.parametrize("skiplist", [True, False])
async def test_memory_per_item_stays_bounded(make_store: StoreFactory, skiplist: bool) -> None:
    m = 20
    small = await make_store(max_neighbours=m, skiplist_neighbours=skiplist)
    big = await make_store(max_neighbours=m, skiplist_neighbours=skiplist)
    per_item_small, top_small = await _memory_per_item(small, 300, 9_000)
    per_item_big, top_big = await _memory_per_item(big, 2400, 72_000)
    slack = max(1, int(m * 0.1))
    bound = m + slack + int(skiplist)  # + the sentinel
    assert top_small <= bound and top_big <= bound
    assert per_item_big <= 1.25 * per_item_small, (per_item_small, per_item_big)


async def test_every_neighbour_set_gets_the_item_ttl(make_store: StoreFactory) -> None:
    """A neighbour set created by a later click (n:a when b follows a) expires too: before,
    only n:<clicked item> got the TTL, so n:a of an item never clicked again lived forever."""
    store = await make_store(item_ttl_s=3600)
    await store.apply_batch("events", 0, [ev(1, "a", ts=T0), ev(2, "b", ts=T0 + 1000)])
    for item in ("a", "b"):
        ttl = await store.redis.pttl(f"{store.base}n:{item}")
        assert 0 < ttl <= 3_600_000, (item, ttl)


async def test_an_experiment_arm_scores_with_its_setting_on_the_same_counts(
    make_store: StoreFactory,
) -> None:
    """``recommend_many`` with a scoring variant (arm B, streams.worker.configs.rec_arms)
    reads the counts arm A learned and scores them as the reference does with B's setting;
    without one it equals ``recommend``."""
    store = await make_store()
    rng = random.Random(9)
    clicks = []
    for n in range(180):
        item = rng.randrange(12) if n % 6 == 0 else int(clicks[-1][1][1:]) + rng.choice([1, 2])
        clicks.append((f"s{n // 6}", f"i{item % 15}", T0 + n * (DAY // 30)))
    await store.apply_batch("events", 0, [ev(n, i, session=s, user=f"u{s}", ts=ts)
                                          for n, (s, i, ts) in enumerate(clicks)])  # fmt: skip
    requests = [("us29", "s29"), ("us12", "s12")]
    assert await store.recommend_many(requests, 8) == [
        await store.recommend(u, s, 8) for u, s in requests
    ]
    variant = scoring_variant(store.config, {"two_hop": 0.0, "recency_decay": 0.5})
    b = SimilarityStore(store.redis, prefix=store.base[1:-2], config=variant)
    got = await store.recommend_many(requests, 8, variant)
    assert got != await store.recommend_many(requests, 8)
    for (_, session), recs in zip(requests, got, strict=True):
        expected, _ = reference_scores(b, clicks, session)
        assert [i for i, _ in recs] == [i for i, _ in top_k(expected, 8)]
        assert dict(recs) == pytest.approx(dict(top_k(expected, 8)))
