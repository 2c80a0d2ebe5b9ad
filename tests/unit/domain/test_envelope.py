"""The per-user fence and de-duplication that make user-state effects exactly-once."""

from __future__ import annotations

from collections import Counter

import orjson

from streams.core.events import Event, Record
from streams.domain.envelope import Envelope, classify, id_hash, is_redelivery
from streams.domain.profile import update_profile


def item(offset: int, event_id: str, user: str = "u1") -> tuple[Record, Event]:
    event = Event(event_id, "view", user, "s1", 1_709_283_600_000 + offset, item_id="i1")
    return Record("t", 0, offset, user.encode(), b""), event


def stored(offset: int, *event_ids: str) -> dict[str, Envelope]:
    profile = update_profile(None, item(0, "x")[1])
    env = Envelope(profile=profile, offset=offset, session_id="s1", partition=0,
                   recent=[id_hash(i) for i in event_ids])  # fmt: skip
    return {"u1": Envelope.from_bytes(env.to_bytes())}


def test_fresh_redelivered_and_duplicate_events_are_told_apart() -> None:
    batch = [
        item(4, "e4"),  # redelivered: offset <= the fence (5)
        item(5, "e5"),  # redelivered
        item(6, "e3"),  # duplicate of an event applied earlier
        item(7, "e7"),  # fresh
        item(8, "e7"),  # duplicate within the batch
        item(9, "e9", user="u2"),  # fresh, unknown user
    ]
    verdicts = classify(batch, stored(5, "e3", "e4", "e5").get)
    assert dict(zip((r.offset for r, _ in batch), verdicts, strict=True)) == {
        4: "redelivered", 5: "redelivered", 6: "duplicate", 7: "fresh", 8: "duplicate",
        9: "fresh",
    }  # fmt: skip


def test_classification_is_the_same_when_the_batch_is_redelivered() -> None:
    batch = [item(6, "e6"), item(7, "e6")]
    assert classify(batch, stored(5).get) == ["fresh", "duplicate"]
    # After the batch was applied, the fence is 6 and e6 is remembered: nothing is fresh.
    assert "fresh" not in classify(batch, stored(6, "e6").get)


def test_rate_limit_counts_per_user_and_event_time_minute() -> None:
    batch = [item(10 + n, f"r{n}") for n in range(5)] + [item(20, "other", user="u2")]
    verdicts = classify(batch, stored(5).get, limit_per_min=3)
    assert Counter(verdicts) == {"fresh": 4, "rate_limited": 2}  # u1: 3 + 2 limited; u2: 1
    assert verdicts[3:5] == ["rate_limited", "rate_limited"]


def test_rate_limit_counts_events_of_earlier_batches() -> None:
    """The per-minute count is part of the stored envelope, so it survives between batches."""
    first = [item(10 + n, f"a{n}") for n in range(3)]
    users = stored(5)
    assert classify(first, users.get, limit_per_min=4) == ["fresh"] * 3
    env = users["u1"]
    env.rate, env.offset = [first[-1][1].ts_ms // 60_000, 3], 12
    later = {"u1": Envelope.from_bytes(env.to_bytes())}  # as the next batch reads it
    verdicts = classify([item(13 + n, f"b{n}") for n in range(2)], later.get, 4)
    assert verdicts == ["fresh", "rate_limited"]


def ev(offset: int, user: str = "u1", ts: int = 1_709_283_600_000, etype: str = "view") -> Event:
    return Event(f"e{offset}", etype, user, "s1", ts, item_id=f"i{offset}")  # type: ignore[arg-type]


def envelope(offset: int, *events: Event) -> Envelope:
    profile = None
    for e in events:
        profile = update_profile(profile, e)
    assert profile is not None
    return Envelope(
        profile=profile, offset=offset, session_id=events[-1].session_id, partition=0,
        segment="new", track=[1], recent=["a1b2c3"], rate=[28_488_061, 3],
    )  # fmt: skip


def at(offset: int, partition: int = 0, incarnation: str = "") -> Record:
    return Record("t", partition, offset, b"u1", b"", incarnation=incarnation)


def test_user_state_is_fenced_by_offset() -> None:
    env = envelope(2, ev(1), ev(2, ts=1_709_283_700_000))
    # Redelivery of offsets 1 and 2 after a crash: recognised, so nothing is applied twice.
    assert is_redelivery(env, at(1)) and is_redelivery(env, at(2))
    assert not is_redelivery(env, at(3)) and not is_redelivery(None, at(0))
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_a_fence_knows_its_source() -> None:
    """Issue 15, hole 1: the fence compared offsets only, so the user's next purchase on
    another partition (partitions added) or a recreated topic (offsets start over) was taken
    for a redelivery and silently skipped."""
    from streams.domain.envelope import applied

    env = applied(None, at(5000, 0, "ab"), ev(1), update_profile(None, ev(1)))
    assert is_redelivery(env, at(5000, 0, "ab")) and is_redelivery(env, at(7, 0, "ab"))
    assert not is_redelivery(env, at(7, 1, "ab")), "another partition"
    assert not is_redelivery(env, at(7, 0, "cd")), "another incarnation of the topic"
    env = applied(env, at(7, 1, "ab"), ev(2), env.profile)
    assert env.fences == {"ab:0": 5000, "ab:1": 7} and env.partition == 1
    assert is_redelivery(env, at(4000, 0, "ab")) and is_redelivery(env, at(7, 1, "ab"))
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_an_envelope_of_the_previous_version_keeps_its_fence() -> None:
    old = orjson.loads(envelope(9, ev(1)).to_bytes())
    del old["f"]
    env = Envelope.from_bytes(orjson.dumps(old))
    assert is_redelivery(env, at(9, 0, "ab")) and not is_redelivery(env, at(10, 0, "ab"))
    assert not is_redelivery(env, at(3, 1, "ab"))
