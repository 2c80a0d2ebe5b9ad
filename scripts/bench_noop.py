"""make bench, the peer: a stock Faust agent that does nothing, on the bench's events topic.

No shopstream code is imported (none of ``streams/patches``): this is what Faust itself costs
per message with its defaults — conductor, ``Event``, stream iteration, one ack per event,
offset commits — so the pipeline can be compared with it in the same run::

    BENCH_NOOP_APP=ID BENCH_NOOP_TOPIC=T BENCH_NOOP_BROKER=kafka://127.0.0.1:9092 \\
    BENCH_NOOP_DIR=/tmp/noop python scripts/bench_noop.py worker -l warn

Events/s from the first event the agent gets to the ``BENCH_NOOP_EXPECT``-th (start-up and
the group join excluded), and the process's CPU (all threads) over the same span, written to
``BENCH_NOOP_OUT`` as JSON.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import faust
import orjson

app = faust.App(
    os.environ.get("BENCH_NOOP_APP", "bench-noop"),
    broker=os.environ.get("BENCH_NOOP_BROKER", "kafka://127.0.0.1:9092"),
    datadir=os.environ.get("BENCH_NOOP_DIR", ".stack/bench/noop"),
    web_enabled=False,
    topic_disable_leader=True,
)
topic = app.topic(os.environ.get("BENCH_NOOP_TOPIC", "shop.events"), value_serializer="raw")
EXPECT = int(os.environ.get("BENCH_NOOP_EXPECT", "0"))
OUT = Path(os.environ.get("BENCH_NOOP_OUT", ".stack/bench/noop.json"))


@app.agent(topic)
async def noop(stream: faust.StreamT[Any]) -> None:
    """Does nothing with each event; writes its rate once ``EXPECT`` events have come."""
    n, t0, cpu0 = 0, 0.0, 0.0
    async for _ in stream:
        n += 1
        if n == 1:
            t0, cpu0 = time.perf_counter(), time.process_time()
        elif n == EXPECT:
            secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            OUT.write_bytes(orjson.dumps({  # noqa: ASYNC240 - once, at the end
                "events": n, "seconds": round(secs, 3), "eps": round((n - 1) / secs, 1),
                "cpu_us_per_event": round(1e6 * cpu / (n - 1), 1),
            }))  # fmt: skip


if __name__ == "__main__":
    app.main()
