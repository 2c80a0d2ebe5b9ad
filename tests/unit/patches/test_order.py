"""Records reach the batch without holes (streams/patches/order.py): a record past a hole is
held back and the hole re-read; a hole that stays after several re-reads is in the log."""

from __future__ import annotations

from streams.patches.order import MAX_REREADS, RESEEK_S, RecordOrder


def admit(order: RecordOrder, recs: list[tuple[int, int]], now: float) -> tuple[list, list]:
    return order.admit(recs, now, recs)


def test_the_first_record_after_an_assignment_is_checked_against_the_committed_offset() -> None:
    """The new owner of a partition must start where the group committed: a first record
    past it means records were dropped (the scale-out run lost a session so)."""
    order = RecordOrder(lambda p: 302)
    kept, holes = admit(order, [(1, 319), (1, 320)], now=0.0)
    assert kept == [] and holes == [(1, 302, 319)]
    kept, holes = admit(order, [(1, 302), (1, 303)], now=0.5)
    assert kept == [(1, 302), (1, 303)] and holes == []
    assert order.expected[1] == 304 and not order.holes


def test_redeliveries_pass_and_other_partitions_go_on() -> None:
    order = RecordOrder(lambda p: {0: 10}.get(p))
    kept, holes = admit(order, [(0, 8), (1, 3), (0, 10), (0, 12), (1, 4), (0, 11)], now=0.0)
    assert kept == [(0, 8), (1, 3), (0, 10), (1, 4)]  # 0@11 after the hole waits too
    assert holes == [(0, 11, 12)]


def test_a_hole_is_sought_again_then_accepted_as_part_of_the_log() -> None:
    order = RecordOrder(lambda p: 0)
    assert admit(order, [(0, 0)], now=0.0) == ([(0, 0)], [])
    seeks = [admit(order, [(0, 5)], now=0.0)[1]]
    assert admit(order, [(0, 5)], now=RESEEK_S / 2) == ([], [])  # the seek is under way
    now = 0.0
    for _ in range(MAX_REREADS - 1):
        now += RESEEK_S
        seeks.append(admit(order, [(0, 5)], now=now)[1])
    assert seeks == [[(0, 1, 5)]] * MAX_REREADS
    kept, holes = admit(order, [(0, 5), (0, 6)], now=now + RESEEK_S)
    assert kept == [(0, 5), (0, 6)] and holes == []
    assert order.accepted == [(0, 1, 5)]


def test_a_revoked_partition_starts_again_from_the_committed_offset() -> None:
    committed = {0: 7}
    order = RecordOrder(committed.get)
    admit(order, [(0, 7), (0, 8)], now=0.0)
    order.forget(0)
    committed[0] = 20  # another worker processed and committed meanwhile
    assert admit(order, [(0, 21)], now=1.0) == ([], [(0, 20, 21)])


def test_without_a_committed_offset_the_first_record_starts_the_partition() -> None:
    order = RecordOrder(lambda p: None)
    assert admit(order, [(0, 4), (0, 5)], now=0.0) == ([(0, 4), (0, 5)], [])
