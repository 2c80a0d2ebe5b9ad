"""The similarity store under hostile time and ids, against a real redis-server.

Issue 13, case 4: the decay factor 2^((ts - t0)/HL) overflowed after 1024 half-lives (2.8
years with a 1-day half-life) because t0 never moved; case 5: a NUL inside an item id
injected items into the session list (NUL is its separator).
"""

from __future__ import annotations

import math

import pytest

from models.similarity import SimilarityStore
from tests.integration.test_similarity_redis import DAY, T0, StoreFactory, ev, make_store

pytestmark = pytest.mark.integration
__all__ = ["make_store"]  # the fixture, imported for pytest

ITEMS = [f"i{n}" for n in range(6)]


def sessions(days: int, *, start: int = 0, every_h: int = 12) -> list[tuple[int, object]]:
    """A session of three views of neighbouring items every ``every_h`` hours."""
    out = []
    n = start
    for step in range(days * 24 // every_h):
        ts = T0 + step * every_h * 3_600_000
        for j in range(3):
            out.append(ev(n, ITEMS[(step + j) % len(ITEMS)], session=f"s{step}", ts=ts + j))
            n += 1
    return out


async def learn_all(store: SimilarityStore, records: list[tuple[int, object]]) -> None:
    for i in range(0, len(records), 600):
        await store.apply_batch("events", 0, records[i : i + 600])  # type: ignore[arg-type]


async def t0_of(store: SimilarityStore) -> float:
    return float(await store.redis.hget(store.base + "meta", "t0"))


async def test_a_one_day_half_life_runs_for_years(make_store: StoreFactory) -> None:
    store = await make_store(half_life_days=1.0)
    years = 5
    await learn_all(store, sessions(365 * years))
    popular = await store.popular(6)
    similar = await store.similar("i0", 3)
    recs = await store.recommend("u1", f"s{365 * years * 2 - 1}", 5)
    scores = [s for _, s in popular + similar + recs]
    assert scores and all(math.isfinite(s) for s in scores), (popular, similar, recs)
    assert all(s > 0 for _, s in popular + similar), (popular, similar)
    # the origin moved forward at least every 512 half-lives
    assert await t0_of(store) > T0 + (365 * years - 512) * DAY


async def test_moving_the_decay_origin_changes_no_score(make_store: StoreFactory) -> None:
    """A store rebased every 4 half-lives scores like one never rebased (40 half-lives)."""
    often = await make_store(half_life_days=1.0, rebase_half_lives=4.0)
    never = await make_store(half_life_days=1.0)
    records = sessions(40)
    await learn_all(often, records)
    await learn_all(never, records)
    assert await t0_of(often) > T0 + 30 * DAY and await t0_of(never) == T0
    for query in (
        lambda s: s.popular(6), lambda s: s.similar("i2", 5),
        lambda s: s.recommend("u1", "s79", 5),
    ):  # fmt: skip
        a, b = await query(often), await query(never)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert all(math.isclose(x, y, rel_tol=1e-9) for (_, x), (_, y) in zip(a, b, strict=True))


async def test_an_event_far_before_the_origin_leaves_no_zero_count(
    make_store: StoreFactory,
) -> None:
    store = await make_store(half_life_days=1.0)
    await learn_all(store, sessions(2))
    old = T0 - 3000 * DAY  # 2^-3000: the weight underflows to 0
    await store.apply_batch("events", 0, [ev(100, "i0", session="old", ts=old),
                                          ev(101, "fresh-item", session="old", ts=old + 1)])
    counts = await store.redis.zrange(store.base + "pop", 0, -1, withscores=True)
    assert all(score > 0 for _, score in counts), counts
    assert all(math.isfinite(s) for _, s in await store.recommend("u1", "old", 5))


async def test_a_nul_in_an_item_id_injects_nothing(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.apply_batch("events", 0, [ev(0, "i1", session="s"), ev(1, "i2\0i3", session="s"),
                                          ev(2, "i4", session="s")])
    raw = await store.redis.get(store.base + "s:s")
    assert raw is not None and raw.split(b"\0\0")[0].split(b"\0") == [b"i4", b"i1"]
    members = await store.redis.zrange(store.base + "pop", 0, -1)
    assert b"i3" not in members and not any(b"\0" in m for m in members)
