"""The worker's forecast process (:class:`streams.worker.forecasts.ForecastProcess`):
``python -m streams.worker.forecast_child`` reads one request per line on stdin, the JSON
array ``[days, origin, categories]``, and writes one line per request on stdout, the JSON
object ``{"ok": forecasts}`` (:func:`streams.domain.forecasts.forecasts_for`) or
``{"error": reason}``; it ends when stdin closes (the worker stopped, or died).

Only JSON crosses: nothing is unpickled on either side.

>>> import io, orjson
>>> from models.forecast import iso_day
>>> days = [{"day": iso_day(n), "revenue": 10.0 + n % 7, "orders": 1} for n in range(14)]
>>> out = io.BytesIO()
>>> serve(io.BytesIO(orjson.dumps([days, 14, 5]) + b"\\n" + b"[]\\n"), out)
>>> [sorted(orjson.loads(line)) for line in out.getvalue().splitlines()]
[['ok'], ['error']]
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import orjson

from streams.domain.forecasts import forecasts_for


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    for line in requests:
        reply: dict[str, object]
        try:
            days, origin, categories = orjson.loads(line)
            reply = {"ok": forecasts_for(days, int(origin), int(categories))}
        except Exception as exc:  # noqa: BLE001 - told to the worker, which logs it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(orjson.dumps(reply) + b"\n")
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
