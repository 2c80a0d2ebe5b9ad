"""Table recovery that never drops fetched records (a fix of faust-streaming 0.15.3).

The bug (found by ``tests/integration/test_scale_out.py``, docs/reliability.md "Findings"):
at the end of a rebalance, ``Recovery.on_recovery_completed`` resumes the stream partitions
and *then* awaits ``consumer.perform_seek()``. Flow control is already active at that point
(recovery resumed it to read the changelogs), so the consumer's fetcher can deliver records
of those partitions into the agents' buffers while the seek is in flight. The next line,
``app.flow_control.resume()``, clears every agent buffer ("clear on resume"): the records
delivered in between are dropped. Faust has already advanced its read offset past them, so
they are not fetched again; the next record looks like a jump, ``Consumer._add_gap`` marks
the dropped offsets as done and the commit moves past them. Nothing is logged. In the test
a second worker joining mid-stream lost 10-150 records in 2 of 11 runs (on a worker
that was *not* the one taking over partitions, too: every member re-runs recovery). When
the dropped records had been processed before the rebalance, the same hole instead stalled
the commits (``_new_offset`` refuses a gap at the head of the acked offsets): the stall
that :class:`streams.patches.watchdogs.CommitWatchdog` was written to repair.

The fix: suspend flow control *before* the partitions are resumed. A record fetched during
the seek then waits in the conductor (``await app.flow_control.acquire()``) instead of
entering a buffer; ``flow_control.resume()`` clears the buffers and releases it, so it is
delivered after the clear. Records fetched before the seek point at or after the committed
offset (the consumer was positioned there on assignment), so nothing is skipped; a record
seen twice is fenced like any redelivery. (Faust takes this path whenever the app has a
table; shopstream always has the profile table.)

A second race, ours: Faust runs the app's ``on_partitions_assigned`` handlers side by side
with this recovery, and shopstream's handler plans where the seek starts a partition that
is read again from its stored models (``streams.agents.events``, ``plan_made``). A recovery
shorter than that plan (a small changelog) sought to the committed offset alone; the re-read
then met a first fetch past the stored models, sought back while later records were in
flight, and cut its batches elsewhere than the first run. So the stream partitions are
resumed and sought only once the app's ``before_resume`` says the plan is made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery


class Recovery(FaustRecovery):
    """Faust's recovery with flow control suspended while stream partitions are resumed, and
    resuming them only once the app's ``before_resume`` (if it has one) is done."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.flow_control.suspend()
        before: Callable[[], Awaitable[None]] | None = getattr(self.app, "before_resume", None)
        if before is not None:  # the assignment's plan: where the seek puts each partition
            await before()
        await super().on_recovery_completed(generation_id)


class TableManager(FaustTableManager):
    """Faust's table manager using :class:`Recovery` (pass as ``faust.App(TableManager=...)``)."""

    @property
    def recovery(self) -> Any:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
