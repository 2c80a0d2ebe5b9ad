"""Records reach the batch without holes (streams/patches/order.py): a record past a hole is
held back and the hole re-read; a hole is accepted only when a fetch of its own proves it is
not in the log, and a hole that stays open without that proof stops the worker."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from streams.patches.order import (
    HOLE_DEADLINE_S,
    RESEEK_S,
    GuardedConsumer,
    ReadOffsets,
    RecordOrder,
)


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
    assert kept == [(0, 8), (1, 3), (0, 10), (1, 4), (0, 11)]  # 0@11: what 0@12 awaited
    assert holes == [(0, 11, 12)]
    assert admit(order, [(0, 13)], now=0.1) == ([], [(0, 12, 13)])  # 0@12 was held back


def test_the_records_asked_for_again_are_kept_in_the_batch_of_the_last_ones_before() -> None:
    """A debug run of the hung chaos scenario (2026-12-02): after each seek back to 500 the
    agent's first batch held the last records fetched before the seek, then 500..: e.g.
    [12100..12150, 500..948]. The whole partition was held back from its first record past
    the hole on, so 500.. were released with them, the next batch began at 949 (past the
    hole again), and every re-read failed the same way until the hole was given up (records
    lost) or forever (a stall)."""
    order = RecordOrder(lambda p: 500, lambda p, o: o)
    assert not order.read_again(0, 500, sought=True, begin=500, now=0.0)
    batch = [(0, o) for o in [*range(12100, 12151), *range(500, 949)]]
    kept, holes = admit(order, batch, now=0.5)
    assert kept == [(0, o) for o in range(500, 949)] and holes == []
    assert admit(order, [(0, o) for o in range(949, 1449)], now=0.6)[0] != []
    assert order.expected[0] == 1449 and not order.holes and order.accepted == []


def test_a_hole_without_proof_is_sought_again_but_never_accepted() -> None:
    """A hole no fetch proved absent from the log is re-read while the partition is quiet
    after a seek, never taken to be in the log: after HOLE_DEADLINE_S it is reported stuck
    (the worker stops; before, it was accepted after three re-reads and its records lost)."""
    order = RecordOrder(lambda p: 0)
    assert admit(order, [(0, 0)], now=0.0) == ([(0, 0)], [])
    assert admit(order, [(0, 5)], now=0.0)[1] == [(0, 1, 5)]
    now, reseeks = 0.0, 0
    while now < HOLE_DEADLINE_S - 1:
        now += RESEEK_S / 2
        reseeks += len(order.overdue(now))
        assert order.stuck(now) == []
    assert reseeks >= HOLE_DEADLINE_S / RESEEK_S - 2
    assert admit(order, [(0, 5), (0, 6)], now=now) == ([], [])
    assert order.stuck(HOLE_DEADLINE_S) == [(0, 1, 5, 1 + reseeks)]
    assert order.accepted == []
    assert admit(order, [(0, 1), (0, 2)], now=now)[0] == [(0, 1), (0, 2)]  # finally
    assert order.stuck(HOLE_DEADLINE_S) == []


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


def test_records_fetched_before_a_re_read_seek_do_not_give_the_re_read_up() -> None:
    """The hung chaos run of 2026-12-02 (docs/reliability.md): committed 1000, models stored
    at 499, so the restart's first seek went to 500 (``sought``); records 1000.. fetched
    before that seek came first, ~1,000 a second on a loaded machine, for longer than three
    re-reads (Faust's fetch in progress and the agent's stream buffer hold ~10,000). The
    probe found offset 500 in the log. Before, the hole was accepted at 10307 ("offsets
    500..10306 are not in the log") and 9,807 records were lost; now records past the hole
    keep it waiting without further seeks, and 500.. are processed when they come."""
    in_log = lambda p, o: o  # noqa: E731 - the probe: the first missing offset is there
    order = RecordOrder(lambda p: 500, in_log, backlog=2_000 + 8_192 + 500)
    assert not order.read_again(0, 500, sought=True, begin=1000, now=0.0)
    now, seeks = 0.0, []
    for first in range(1000, 11_000, 100):  # fetched before the seek
        batch = [(0, o) for o in range(first, first + 100)]
        kept, holes = admit(order, batch, now=now)
        assert kept == []
        seeks += holes + order.overdue(now)
        now += 0.1
    assert seeks == [] and order.accepted == [] and order.stuck(now) == []
    rereads = [(0, o) for o in range(500, 1100)]
    assert admit(order, rereads, now=now) == (rereads, [])
    assert order.expected[0] == 1100 and not order.holes


def test_a_seek_lost_in_a_stream_of_later_records_is_made_again() -> None:
    """Records past a hole can come after a seek only as long as the fetch pipeline holds
    records fetched before it (``backlog``); more mean the seek was lost: seek again."""
    order = RecordOrder(lambda p: 0, backlog=50)
    assert admit(order, [(0, 10)], now=0.0)[1] == [(0, 0, 10)]
    assert admit(order, [(0, o) for o in range(11, 61)], now=0.5) == ([], [])
    assert admit(order, [(0, 61)], now=0.6) == ([], [(0, 0, 61)])
    assert order.holes[0].seeks == 2


def test_a_re_read_hole_waits_while_the_agent_is_busy() -> None:
    """Nothing can arrive while the agent is in a batch (e.g. retrying through a Redis
    outage): that time does not count towards stopping the worker."""
    order = RecordOrder(lambda p: 0)
    admit(order, [(0, 3)], now=0.0)
    assert order.stuck(1.0) == []
    assert order.stuck(HOLE_DEADLINE_S + 1.0, busy=True) == []
    assert order.stuck(HOLE_DEADLINE_S + 1.5) == []
    assert order.stuck(2 * HOLE_DEADLINE_S + 1.0) == [(0, 0, 3, 1)]


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


def fausts_fetch_loop(offsets: ReadOffsets, tp: TP, fetched: list[int]) -> list[int]:
    """What faust-streaming 0.15.3's ``Consumer._drain_messages`` does with each fetched
    record of ``tp``: hand it on if it is at or past the read offset, which it then sets."""
    handed = []
    for offset in fetched:
        read = offsets[tp]
        if read is None or offset >= read:
            handed.append(offset)
            offsets[tp] = offset
    return handed


def bare_consumer(
    tp: TP, committed: int | None, start_at: int | None, log_start: int = 0
) -> tuple[GuardedConsumer, list]:
    """A GuardedConsumer without Faust's service machinery: its seeks are only noted (and set
    the read offset, as Faust's ``_seek_wait`` does)."""
    consumer = GuardedConsumer.__new__(GuardedConsumer)
    consumer.read_offsets = ReadOffsets({})
    consumer._read_offset = consumer.read_offsets
    consumer._committed_offset = {}
    consumer.started_at = {}
    consumer.held_back, consumer.seek_due = set(), False
    consumer._active_partitions, consumer._paused_partitions = set(), {tp}
    consumer.guard(tp.topic)
    consumer.start_at = lambda _tp: start_at
    consumer.log_start = lambda _tp: None
    consumer.assignment = lambda: {tp}  # type: ignore[method-assign]
    sought: list[tuple[TP, int]] = []

    async def seek_to_committed() -> dict[TP, int]:
        sought.append((tp, committed))
        return {tp: committed}

    async def seek_wait(partitions: dict[TP, int]) -> None:
        for part, offset in partitions.items():
            sought.append((part, offset))
            consumer._read_offset[part] = offset

    async def seek(part: TP, offset: int) -> None:  # Faust's, for the code before the fix
        sought.append((part, offset))
        consumer._read_offset[part] = offset

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, log_start)

    consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    consumer.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    consumer.seek_wait = seek_wait  # type: ignore[method-assign]
    consumer.seek = seek  # type: ignore[method-assign]
    return consumer, sought


def test_records_fetched_before_the_first_seek_do_not_make_faust_drop_the_re_read() -> None:
    """The hung chaos run of 2026-12-02: committed 1000, read again from 500 (the consumer's
    first seek, :meth:`GuardedConsumer.perform_seek`). Faust had fetched from 1000 before
    that seek (stream partitions are resumed before it); handing those on moved its read
    offset past 500, and its fetch loop dropped 500..999 when the seek brought them ("records
    skipped by the consumer: offsets 500..999"). The read offset now holds at 500 until the
    re-read reached it (:meth:`GuardedConsumer.rewound`, when the agent's hole closes)."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=1000, start_at=500)
    asyncio.run(consumer.perform_seek())
    assert sought[-1] == (tp, 500) and consumer.started_at == {tp: 500}
    assert consumer.began_at == {tp: 1000}  # where it began, whatever commit_back sets later
    handed = fausts_fetch_loop(consumer.read_offsets, tp, [*range(1000, 3000), *range(500, 3000)])
    assert handed[2000:2500] == list(range(500, 1000))
    consumer.rewound(tp)
    assert fausts_fetch_loop(consumer.read_offsets, tp, [2999, 3000, 2998]) == [2999, 3000]


@pytest.mark.parametrize("start_at", [None, 500])
def test_a_partition_without_a_committed_offset_is_sought_to_its_log_start(
    start_at: int | None,
) -> None:
    """The chaos run of 2026-12-04 (crash between the changelog write and the publish, 1 in
    6 runs): the first worker had committed nothing; the restarted one fetched 0..1999
    before its first seek, Faust dropped them, and aiokafka's ``seek_to_committed`` left a
    partition without a committed offset where its fetches had moved it. Its first records
    to reach the agent were 2000.. ("records skipped by the consumer: offsets 500..1999").
    It now goes back to its log start, as one with a committed offset goes back to that,
    whether or not it is read again from stored models (they are past the log start)."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=None, start_at=start_at, log_start=7)
    consumer.read_offsets[tp] = 1999  # where the dropped fetch left Faust's read offset
    asyncio.run(consumer.perform_seek())
    assert sought[-1] == (tp, 7) and consumer.started_at == {}
    assert consumer.began_at == {tp: None}
    handed = fausts_fetch_loop(consumer.read_offsets, tp, [*range(2000, 2010), *range(7, 2010)])
    assert handed[10:] == list(range(7, 2010))  # nothing below the later records dropped


def test_the_log_start_the_agent_read_at_assignment_is_used() -> None:
    """``plan()`` read the log starts already (streams/agents/events.py): no second lookup,
    and the seek and the agent's expected first offset are the same number."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=None, start_at=None, log_start=7)
    consumer.log_start = lambda _tp: 3

    async def no_lookup(*tps: TP) -> dict[TP, int]:
        raise AssertionError("known already")

    consumer.earliest_offsets = no_lookup  # type: ignore[method-assign]
    asyncio.run(consumer.perform_seek())
    assert sought[-1] == (tp, 3)


def test_no_seek_to_the_log_start_while_the_flow_is_stopped() -> None:
    """Faust's ``getmany`` seeks to the committed offsets when it fetched while the flow was
    stopped (a rebalance under way): the assignment's own seek follows, and a seek now could
    leave a floor behind for a partition the revocation forgot."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=None, start_at=None)
    consumer.flow_active = False
    asyncio.run(consumer.perform_seek())
    assert sought == [(tp, None)] and not consumer.read_offsets.rewinding


def test_a_partition_without_a_committed_offset_is_resumed_only_once_sought() -> None:
    """Faust's recovery resumes the stream partitions before its seek: a fetch in between
    would bring the records past the ones Faust dropped before the seek, ahead of them (the
    agent would see a hole and log "records skipped by the consumer")."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=None, start_at=None, log_start=0)
    consumer.seek_due = True
    consumer.resume_partitions({tp})
    assert consumer.held_back == {tp} and tp not in consumer._active_partitions
    asyncio.run(consumer.perform_seek())
    assert sought[-1] == (tp, 0) and consumer._active_partitions == {tp}


def test_a_partition_with_a_committed_offset_asks_for_no_log_start() -> None:
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=1000, start_at=None)

    async def no_lookup(*tps: TP) -> dict[TP, int]:
        raise AssertionError("the committed offset is where it starts")

    consumer.earliest_offsets = no_lookup  # type: ignore[method-assign]
    asyncio.run(consumer.perform_seek())
    assert sought == [(tp, 1000)] and not consumer.read_offsets.rewinding


def test_a_seek_to_the_committed_offsets_keeps_a_re_read_under_way() -> None:
    """Faust's own ``perform_seek`` (the commit watchdog's repair, a fetch while the flow is
    stopped) sets the read offsets with ``dict.update``: it must not lift a partition being
    re-read, and the partition is sought back to its re-read, not left at the committed
    offset past it."""
    tp = TP("t.events", 0)
    consumer, sought = bare_consumer(tp, committed=1000, start_at=None)
    asyncio.run(consumer.rewind(tp, 400))
    asyncio.run(consumer.perform_seek())
    assert consumer.read_offsets[tp] == 400 and sought[-1] == (tp, 400)


def test_a_partition_read_again_is_resumed_only_once_sought() -> None:
    """Faust's recovery resumes the stream partitions before its ``perform_seek``: records
    fetched from the committed offset in between reached the agent ahead of the re-read and
    cut its batches elsewhere than the first time (review of 2026-12-02). A partition that
    :attr:`GuardedConsumer.start_at` starts elsewhere stays paused until it was sought there;
    another one, or one resumed once the assignment's seek is done, is resumed at once."""
    tp, other = TP("t.events", 0), TP("t.changelog", 0)
    consumer, sought = bare_consumer(tp, committed=1000, start_at=500)
    consumer.seek_due = True  # on_partitions_assigned
    consumer.resume_partitions({tp, other})
    assert consumer._active_partitions == {other} and consumer.held_back == {tp}
    asyncio.run(consumer.perform_seek())
    assert sought[-1] == (tp, 500) and consumer._active_partitions == {tp, other}
    assert not consumer.held_back and not consumer.seek_due
    consumer._active_partitions.discard(tp)
    consumer.resume_partitions({tp})  # no seek due: as Faust
    assert tp in consumer._active_partitions
