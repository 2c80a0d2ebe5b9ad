"""The batch classification that makes user-state effects exactly-once."""

from __future__ import annotations

from streams.events import Event
from streams.pipeline import Envelope, Record
from streams.processor import UserUpdates, classify, id_hash
from streams.profile import update_profile


def item(offset: int, event_id: str, user: str = "u1") -> tuple[Record, Event]:
    event = Event(event_id, "view", user, "s1", 1_709_283_600_000 + offset, item_id="i1")
    return Record("t", 0, offset, user.encode(), b""), event


def stored(offset: int, *event_ids: str) -> dict[str, bytes]:
    profile = update_profile(None, item(0, "x")[1])
    env = Envelope(profile, offset, "s1", partition=0, recent=[id_hash(i) for i in event_ids])
    return {"u1": env.to_bytes()}


def test_fresh_redelivered_and_duplicate_events_are_told_apart() -> None:
    batch = [
        item(4, "e4"),  # redelivered: offset <= the fence (5)
        item(5, "e5"),  # redelivered
        item(6, "e3"),  # duplicate of an event applied earlier
        item(7, "e7"),  # fresh
        item(8, "e7"),  # duplicate within the batch
        item(9, "e9", user="u2"),  # fresh, unknown user
    ]
    fresh, dups, _ = classify(batch, UserUpdates(stored(5, "e3", "e4", "e5")))
    by_offset = {
        rec.offset: ("fresh" if id(e) in fresh else "dup" if id(e) in dups else "old")
        for rec, e in batch
    }
    assert by_offset == {4: "old", 5: "old", 6: "dup", 7: "fresh", 8: "dup", 9: "fresh"}


def test_classification_is_the_same_when_the_batch_is_redelivered() -> None:
    batch = [item(6, "e6"), item(7, "e6")]
    first = classify(batch, UserUpdates(stored(5)))
    assert [len(s) for s in first] == [1, 1, 0]
    # After the batch was applied, the fence is 6 and e6 is remembered: nothing is fresh.
    again = classify(batch, UserUpdates(stored(6, "e6")))
    assert again[0] == set()


def test_rate_limit_counts_per_user_and_event_time_minute() -> None:
    batch = [item(10 + n, f"r{n}") for n in range(5)] + [item(20, "other", user="u2")]
    fresh, _, limited = classify(batch, UserUpdates(stored(5)), limit_per_min=3)
    assert len(fresh) == 4 and len(limited) == 2  # u1: 3 fresh + 2 limited; u2: 1 fresh
    assert all(id(e) in limited for _, e in batch[3:5])


def test_rate_limit_counts_events_of_earlier_batches() -> None:
    """The per-minute count is part of the stored envelope, so it survives between batches."""
    first = [item(10 + n, f"a{n}") for n in range(3)]
    users = UserUpdates(stored(5))
    fresh, _, limited = classify(first, users, limit_per_min=4)
    assert len(fresh) == 3 and not limited
    env = users.load("u1")
    assert env is not None
    env.rate, env.offset = [first[-1][1].ts_ms // 60_000, 3], 12
    later = UserUpdates({"u1": env.to_bytes()})  # as the next batch reads it from the table
    fresh, _, limited = classify([item(13 + n, f"b{n}") for n in range(2)], later, 4)
    assert len(fresh) == 1 and len(limited) == 1
