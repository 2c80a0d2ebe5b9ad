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
"""

from __future__ import annotations

from typing import Any

from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery


class Recovery(FaustRecovery):
    """Faust's recovery with flow control suspended while stream partitions are resumed."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


class TableManager(FaustTableManager):
    """Faust's table manager using :class:`Recovery` (pass as ``faust.App(TableManager=...)``)."""

    @property
    def recovery(self) -> Any:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
