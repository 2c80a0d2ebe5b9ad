"""The worker's forecast process (:class:`streams.worker.forecast_process.ForecastProcess`):
``python -m streams.worker.forecast_child`` reads one request per line on stdin, the JSON
array ``[days, origin, categories]`` (each day its figures, or ``[day, {field: count}]``, the
store's counters, whose figures are worked out here: :meth:`KpiStore.raw_days`), and
writes one line per request, the JSON object
``{"origin": origin, "ok": forecasts}`` (:func:`streams.domain.forecasts.forecasts_for`) or
``{"origin": origin, "error": reason}``; it ends when stdin closes (the worker stopped, or
died).

Only JSON crosses: nothing is unpickled on either side. The replies go to a copy of the
original stdout; file descriptor 1 itself is pointed at stderr before anything is imported,
so a library that prints cannot put a line between two replies.

>>> import io, orjson
>>> from models.forecast import iso_day
>>> days = [{"day": iso_day(n), "revenue": 10.0 + n % 7, "orders": 1} for n in range(14)]
>>> out = io.BytesIO()
>>> serve(io.BytesIO(orjson.dumps([days, 14, 5]) + b"\\n" + b"[]\\n"), out)
>>> [sorted(orjson.loads(line)) for line in out.getvalue().splitlines()]
[['ok', 'origin'], ['error', 'origin']]
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, BinaryIO

import orjson


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    from streams.domain.forecasts import forecasts_for  # after stdout was set aside
    from streams.domain.kpis import figures

    for line in requests:
        origin: Any = None
        try:
            days, origin, categories = orjson.loads(line)
            days = [d if isinstance(d, dict) else figures(*d) for d in days]
            made = forecasts_for(days, int(origin), int(categories))
            reply = orjson.dumps({"origin": origin, "ok": made})
        except Exception as exc:  # noqa: BLE001 - told to the worker, which logs it
            reply = orjson.dumps({"origin": origin if isinstance(origin, int) else None,
                                  "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        replies.write(reply + b"\n")
        replies.flush()


#: The process's niceness increment: a forecast is a background job of a few seconds a day,
#: which must not take a core from the batches, Redis or the broker when they need it (on a
#: 2-core box a burst of refits at nice 0 held the batches up for 1.2-1.8 s: docs/performance.md,
#: "Seventh round"); when the cores are idle it runs at full speed all the same. Where Linux
#: allows it the process also runs as ``SCHED_IDLE`` (:func:`background`), which weighs far
#: less than any niceness (at nice +10 a burst of refits still took a tenth of a busy core).
NICE = 10


def background() -> None:
    """Lower this process's priority: ``SCHED_IDLE`` where the OS has it and allows it, and
    the niceness :data:`NICE` (which applies if ``SCHED_IDLE`` is refused); where both are
    refused (a sandbox) it keeps the worker's priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not Linux, or refused
        pass
    try:
        os.nice(NICE)
    except (OSError, AttributeError):  # refused (a sandbox), or no os.nice
        pass


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    background()
    replies = os.fdopen(os.dup(1), "wb")  # the replies' own copy of stdout
    os.dup2(2, 1)  # anything else printed goes to stderr
    try:
        serve(sys.stdin.buffer, replies)
    except BrokenPipeError:  # the worker died while we worked: nothing to answer to
        os._exit(0)


if __name__ == "__main__":
    main()
