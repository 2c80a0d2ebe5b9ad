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


def test_a_hole_the_fetch_after_the_seek_skips_is_accepted_at_once() -> None:
    """A transaction's commit marker: the first fetch after the seek back to it starts one
    offset later, which proves the offset is not in the log; no second re-read."""
    after_seek: dict[tuple[int, int], int] = {}
    order = RecordOrder(lambda p: 0, lambda p, o: after_seek.get((p, o)))
    assert admit(order, [(0, 0), (0, 1), (0, 3)], now=0.0) == ([(0, 0), (0, 1)], [(0, 2, 3)])
    assert admit(order, [(0, 4)], now=0.1) == ([], [])  # fetched before the seek
    after_seek[0, 2] = 3
    assert admit(order, [(0, 3), (0, 4)], now=0.2) == ([(0, 3), (0, 4)], [])
    assert order.accepted == [(0, 2, 3)] and not order.holes and order.expected[0] == 5


def test_a_verified_hole_followed_by_a_second_one_is_sought_again() -> None:
    after_seek = {(0, 2): 3}
    order = RecordOrder(lambda p: 2, lambda p, o: after_seek.get((p, o)))
    assert admit(order, [(0, 6)], now=0.0) == ([], [(0, 2, 6)])
    # 3 is in the log (the fetch began there), 4..5 not yet seen: a new hole from 3
    assert admit(order, [(0, 6)], now=0.1) == ([], [(0, 3, 6)])
    assert order.accepted == [(0, 2, 3)]


def test_re_reads_made_by_the_timer_count_towards_giving_up() -> None:
    """Without proof from a fetch, a hole is re-read MAX_REREADS times, whoever seeks: the
    timer's re-reads count too (before, the timer re-read such a hole forever)."""
    order = RecordOrder(lambda p: 0)
    assert admit(order, [(0, 5)], now=0.0)[1] == [(0, 0, 5)]
    now = 0.0
    for _ in range(MAX_REREADS - 1):
        now += RESEEK_S
        assert order.overdue(now) == [(0, 0)]
        assert admit(order, [(0, 5)], now=now + 0.1) == ([], [])  # right after the seek
    # the last re-read has its RESEEK_S to bring the records, then the hole is given up
    assert admit(order, [(0, 5), (0, 6)], now=now + RESEEK_S) == ([(0, 5), (0, 6)], [])
    assert order.accepted == [(0, 0, 5)]


def test_a_re_read_from_models_stored_after_the_commit_needs_no_seek() -> None:
    """Issue 15: committed 13000, the models stored at 14500 (a checkpoint after the last
    commit), then kill -9. The consumer reads from 13000 anyway; the seek back to 14500 that
    was made once 20000 had been fetched read 14500..19999 twice, and every later batch was
    cut elsewhere than in a clean run (other recommendation triggers)."""
    order = RecordOrder(lambda p: 13000)
    assert not order.read_again(0, 14500, sought=False, begin=13000, now=0.0)
    stream = [(0, o) for o in range(13000, 20000)]
    assert admit(order, stream, now=0.0) == (stream, [])


def test_a_re_read_behind_what_was_read_seeks_back_and_holds_later_records() -> None:
    order = RecordOrder(lambda p: 0)
    admit(order, [(0, 0), (0, 1), (0, 2)], now=0.0)
    assert order.read_again(0, 1, sought=False, begin=0, now=1.0)
    assert admit(order, [(0, 3)], now=1.0) == ([], [])  # fetched before the seek
    assert admit(order, [(0, 1), (0, 2), (0, 3)], now=1.5)[0] == [(0, 1), (0, 2), (0, 3)]


def test_a_re_read_where_the_first_seek_went_expects_its_offset() -> None:
    order = RecordOrder(lambda p: 2000)
    assert not order.read_again(0, 1500, sought=True, begin=2000, now=0.0)
    assert admit(order, [(0, 1500)], now=0.0) == ([(0, 1500)], [])
