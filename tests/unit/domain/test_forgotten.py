"""Erasure fences (issue 16): which records of a forgotten user are dropped, which come back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.events import Event, Record
from streams.domain.envelope import Envelope
from streams.domain.forgotten import ErasureFences, erasure_offsets, user_digest
from streams.domain.privacy import pseudonymise
from streams.domain.profile import Profile


def ev(user: str, offset: int, partition: int = 0, inc: str = "ab") -> tuple[Record, Event]:
    rec = Record("t", partition, offset, user.encode(), b"", incarnation=inc)
    return rec, Event(f"{user}-{offset}", "view", user, "s", offset, item_id="i")


def envelope(**kw: object) -> Envelope:
    return Envelope(profile=Profile("u", 0, 0), **kw)  # type: ignore[arg-type]


def test_events_at_or_below_the_fence_are_dropped_later_ones_come_back() -> None:
    fences = ErasureFences()
    fences.add(user_digest("gone"), {"ab:0": 10})
    batch = [ev("gone", 3), ev("kept", 4), ev("gone", 10), ev("gone", 11), ev("gone", 2, 1),
             ev("gone", 5, inc="cd")]  # fmt: skip
    kept, dropped = fences.screen(batch)
    assert [(r.partition, r.offset) for r, _ in dropped] == [(0, 3), (0, 10)]
    # another user; the user back after the erasure; another partition; a recreated topic
    assert [(r.partition, r.offset, e.user_id) for r, e in kept] == [
        (0, 4, "kept"),
        (0, 11, "gone"),
        (1, 2, "gone"),
        (0, 5, "gone"),
    ]


def test_no_fences_no_work_and_a_fence_never_moves_back() -> None:
    fences = ErasureFences()
    batch = [ev("u", 1)]
    assert fences.screen(batch) == (batch, [])
    fences.add(user_digest("u"), {"ab:0": 9})
    fences.add(user_digest("u"), {"ab:0": 4})  # erased again from an older view
    assert fences.by_source == {"ab:0": {user_digest("u"): 9}} and len(fences) == 1


def test_the_fence_covers_the_log_end_at_the_erasure_and_every_source_of_the_incarnation() -> None:
    env = envelope(partition=1, offset=7, fences={"old:1": 50, "ab:0": 4, "ab:1": 7})
    # records the worker had not reached yet (offsets 8..19) were produced before the erasure
    assert erasure_offsets(env, "ab", 20) == {"ab:0": 4, "ab:1": 19}
    assert erasure_offsets(env, "ab", None) == {"ab:0": 4, "ab:1": 7}  # broker unreachable
    # an envelope written before fences named their source
    assert erasure_offsets(envelope(partition=2, offset=5), "ab", None) == {"ab:2": 5}
    # the user's partition of a topic created again since: only its log end
    assert erasure_offsets(envelope(partition=0, fences={"old:0": 8}), "ab", 3) == {"ab:0": 2}
    assert erasure_offsets(envelope(partition=0, fences={"old:0": 8}), "ab", 0) == {}


def test_purge_drops_fences_whose_records_retention_deleted() -> None:
    fences = ErasureFences({"ab:0": {"x": 4, "y": 9}, "ab:1": {"z": 1}})
    assert fences.purge("ab:0", 5) == 1  # records 0..4 are gone: x's fence covers nothing
    assert fences.purge("ab:0", 9) == 0  # record 9 is still there: y's fence holds
    assert fences.purge("ab:1", 2) == 1
    assert fences.by_source == {"ab:0": {"y": 9}}
    fences.hold({"ab:3": {"w": 2}, "ab:4": {}})  # a new assignment
    assert fences.by_source == {"ab:3": {"w": 2}}


def test_rejected_records_of_a_forgotten_user_are_not_dead_lettered_again() -> None:
    key = b"k" * 32
    fences = ErasureFences({"ab:0": {user_digest(pseudonymise("gone", key)): 5}})
    rejected = [(ev(u, o)[0], "not_json", "") for u, o in [("gone", 5), ("gone", 6), ("x", 1)]]
    kept, dropped = fences.screen_rejected(rejected, key)
    assert dropped == 1 and [r.offset for r, _, _ in kept] == [6, 1]
    assert fences.screen_rejected(rejected)[1] == 0  # without the key: another id


def test_the_digest_is_not_the_id() -> None:
    digest = user_digest("alice@example.com")
    assert len(digest) == 32 and "alice" not in digest
    assert digest == user_digest("alice@example.com") != user_digest("alice@example.org")


@given(
    st.lists(st.tuples(st.sampled_from("uvw"), st.integers(0, 30), st.integers(0, 1)),
             max_size=40),
    st.dictionaries(st.sampled_from("uvw"), st.integers(-1, 30)),
)  # fmt: skip
def test_screen_splits_a_batch_in_order_by_the_fence_alone(
    events: list[tuple[str, int, int]], erased: dict[str, int]
) -> None:
    fences = ErasureFences()
    for user, offset in erased.items():
        fences.add(user_digest(user), {"ab:0": offset})
    batch = [ev(u, o, p) for u, o, p in events]
    kept, dropped = fences.screen(batch)
    expect = [(r, e) for r, e in batch
              if r.partition == 0 and r.offset <= erased.get(e.user_id, -1)]  # fmt: skip
    assert dropped == expect
    assert kept == [item for item in batch if item not in expect]
