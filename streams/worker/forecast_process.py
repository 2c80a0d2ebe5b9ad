"""The worker's forecast process, seen from the worker (the child's side:
:mod:`streams.worker.forecast_child`). A light module: ``shopstream worker`` starts the
process before it imports the app, so that the child's imports (River, SciPy: seconds of
CPU) overlap the worker's own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from streams.core.payloads import Forecast

#: Seconds the worker waits for one reply of the forecast process (one origin's forecasts),
#: and more per category asked for (each is one more refit).
REPLY_TIMEOUT_S = 120.0
REPLY_PER_SCOPE_S = 10.0


class ForecastProcess:
    """Works the forecasts out in a child process (``python -m
    streams.worker.forecast_child``), started with the worker (its imports take seconds of
    CPU) and again after it died; requests and replies are JSON lines on its stdin and
    stdout, written and read by a thread that waits on the pipe without the GIL.

    Not in a thread of the worker: the refits are pure Python, and a thread running them
    holds the GIL that the batch loop needs back after every await; each time it waited up
    to the switch interval (5 ms), and a batch awaits many times (docs/performance.md,
    "Sixth round").

    A reply that does not come within ``timeout_s`` plus ``per_scope_s`` per category asked
    for (a refit takes ~0.6 s per scope on 26 weeks of days), or that is not the answer to
    the request (its origin), fails the request and kills the process: a hung or confused
    child must not stop the forecasts for good, nor answer one origin with another's."""

    def __init__(
        self, timeout_s: float = REPLY_TIMEOUT_S, per_scope_s: float = REPLY_PER_SCOPE_S,
        command: Sequence[str] = (sys.executable, "-m", "streams.worker.forecast_child"),
    ) -> None:  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()  # one request at a time, and one start
        self.timeout_s, self.per_scope_s, self.command = timeout_s, per_scope_s, list(command)
        self.closed = False  # by close(): the worker stops, no process is started again

    def start(self) -> subprocess.Popen[bytes]:
        """The process, started if it is not running."""
        with self.lock:
            return self._started()

    def _started(self) -> subprocess.Popen[bytes]:
        if self.closed:
            raise RuntimeError("the forecast process was closed: the worker is stopping")
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command (this interpreter)
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
        return self.proc

    def ask(self, request: bytes, origin: int) -> dict[str, Any]:
        """One request, its reply (blocking: run it in a thread)."""
        with self.lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None  # the PIPEs above
            try:
                proc.stdin.write(request + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError as exc:  # the pipe broke: the process died
                self._stop()
                raise RuntimeError(f"the forecast process failed: {exc!r}") from exc
            if not line.endswith(b"\n"):
                self._stop()
                raise RuntimeError("the forecast process exited; another starts at the next tick")
            try:
                reply = orjson.loads(line)
            except orjson.JSONDecodeError:
                reply = None
            if not isinstance(reply, dict) or reply.get("origin") != origin:  # out of step
                self._stop()
                raise RuntimeError(f"the forecast process answered something else than origin "
                                   f"{origin}: {line[:200]!r}; it is started again")  # fmt: skip
            return reply

    async def forecasts(
        self, days: Sequence[Any] | bytes, origin: int, categories: int
    ) -> list[Forecast]:
        """The forecasts of ``origin`` (:func:`streams.domain.forecasts.forecasts_for`) from
        ``days``: figures, or the JSON array of :meth:`KpiStore.raw_days` as it came (sent
        as it is); raises if the process failed or died (the next call starts another)."""
        if isinstance(days, bytes):
            request = b"[%b,%d,%d]" % (days, origin, categories)
        else:
            request = orjson.dumps([list(days), origin, categories])
        timeout = self.timeout_s + self.per_scope_s * max(categories, 0)
        try:
            reply = await asyncio.wait_for(asyncio.to_thread(self.ask, request, origin), timeout)
        except TimeoutError:
            self.kill()  # the thread waiting on the reply gets EOF and ends
            raise RuntimeError(
                f"the forecast process did not answer in {timeout:.0f} s: killed; "
                "another starts at the next tick"
            ) from None
        if "error" in reply:
            raise RuntimeError(f"the forecast process could not forecast: {reply['error']}")
        made: list[Forecast] = reply["ok"]
        return made

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def kill(self) -> None:
        """Kill the process now, without waiting for a request under way (it fails)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """Stop the process for good (the worker stops; a forecast under way is worked out
        again at the next start of a worker). Blocks until a request under way has ended:
        call it from a thread, not the event loop."""
        self.closed = True  # before the kill: a request in a new thread must not restart it
        self.kill()  # unblocks a request waiting on its reply
        with self.lock:
            self._stop()
