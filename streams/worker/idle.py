"""Quiet partitions still alert on time: an idle partition's clock follows the wall clock.

Churn timers run on a partition's event-time clock, which moves only when one of its records
arrives. In a quiet shop a customer who goes silent would be alerted whenever someone else
happens to write to the same partition -- days late, or never on a partition nobody else
uses. So (like Flink's source idleness and Kafka Streams' wall-clock punctuation) a partition
with no record for ``SHOPSTREAM_IDLE_ADVANCE_S`` is *idle*, and a timer in the agent layer
moves its clock on by the wall time elapsed since its last record, that many seconds behind:

    clock = clock at the last record + (now - wall time of the last record) - idle_s,
    never past now - idle_s (a clock already beyond that stays where it is).

Live traffic thus reaches the wall clock minus ``idle_s`` (a record later than that arrives
late, as any late event: labels allow for it, docs/churn.md), and a replay of old data
advances by the wall time that passed, never jumps to "now". ``0`` turns it off: clocks move
only with events, as a deterministic replay wants. After a restart a partition's idle time
starts when the worker first looks at it.

>>> idle_target(100.0, 5_000, now_s=130.0, idle_s=60.0) is None   # quiet for 30 s: not idle
True
>>> idle_target(100.0, 5_000, now_s=190.0, idle_s=60.0)           # old data: +30 s of event time
35000
>>> idle_target(100.0, 100_000, now_s=190.0, idle_s=60.0)         # live: now - idle_s
130000
>>> idle_target(100.0, 150_000, now_s=190.0, idle_s=60.0)         # ahead of the wall clock
130000
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streams.domain import churn
from streams.worker.partitions import Partitions
from streams.worker.users import (
    UserUpdates,
    drop_broken,
    keep_triggers,
    serialise,
    store_tracks,
    update_segments,
)

log = logging.getLogger(__name__)


def idle_target(anchor_s: float, anchor_clock_ms: int, now_s: float, idle_s: float) -> int | None:
    """The clock of a partition whose last record came at wall time ``anchor_s``, when its
    clock was ``anchor_clock_ms``; ``None`` while it is not idle (or the option is off)."""
    elapsed = now_s - anchor_s
    if idle_s <= 0 or elapsed < idle_s:
        return None
    return min(anchor_clock_ms + int((elapsed - idle_s) * 1000), int((now_s - idle_s) * 1000))


def advance_idle(
    parts: Partitions, partitions: Iterable[int], now_s: float, idle_s: float, out: UserUpdates
) -> list[int]:
    """Advance the clock of every idle partition among ``partitions`` (the ones assigned
    here); what fires goes to ``out`` as a batch's would (tracks and segments into the
    envelopes, serialised; alerts to ``out.alerts``). The caller holds the batch lock and
    publishes the outputs before it writes the envelopes, as a batch does (issue 15: a crash
    in between fires them again, with the same ids). Returns the partitions advanced."""
    moved = []
    for p in sorted(partitions):
        state = parts.state_for(p)
        anchor = parts.anchors.setdefault(p, (now_s, state.clock_ms))
        target = idle_target(anchor[0], anchor[1], now_s, idle_s)
        if target is None or target <= state.clock_ms or not state.users:
            continue
        models = parts.models_for(p)
        alerts, labelled = churn.advance(state, target, out.lookup, models.churn, parts.churn_cfg)
        out.alerts += alerts
        out.outcomes += state.take_outcomes()
        moved.append(p)
        if alerts or labelled:
            log.debug("partition %d idle: clock to %d, %d alerts, %d labels", p, target,
                      len(alerts), len(labelled))  # fmt: skip
    store_tracks(parts, set(moved), out)
    update_segments(parts, [], out)
    keep_triggers(out, [])
    serialise(out)
    drop_broken(parts, out)
    return moved
