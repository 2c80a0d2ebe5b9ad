"""The worker's forecast process (``streams.worker.forecast_process.ForecastProcess``): the same
forecasts as :func:`streams.domain.forecasts.forecasts_for` in the worker's own process, and
a process that died is replaced at the next call (the timer's next tick), a request it
cannot work out is an error of that call only, and the process ends with the worker."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.forecast import iso_day
from streams.domain.forecasts import forecasts_for
from streams.domain.kpis import figures
from streams.worker.forecast_process import ForecastProcess

FIRST = 19_800  # 2024-03-18, a Monday


def days(n: int) -> list[dict[str, object]]:
    """``n`` days of weekly-seasonal figures, with a category and fractional revenues."""
    return [
        {
            "day": iso_day(FIRST + i),
            "revenue": round(100.0 + 37.3 * (i % 7) + 0.01 * i, 2),
            "orders": 3 + i % 5,
            "categories": {"hats": {"revenue": 12.5 + i % 3, "purchases": 1 + i % 2}},
        }
        for i in range(n)
    ]


def test_the_process_makes_the_forecasts_of_the_worker_process() -> None:
    async def run() -> None:
        process = ForecastProcess()
        try:
            for n in (3, 15, 60):
                history = days(n)
                made = await process.forecasts(history, FIRST + n, 5)
                assert made == forecasts_for(history, FIRST + n, 5)
            assert made, "60 days of history make forecasts"
        finally:
            process.close()

    asyncio.run(run())


def counters(n: int) -> list[list[object]]:
    """``n`` days as the store keeps them (:meth:`KpiStore.raw_days`: counts as text, money in
    cents), with a second category, one that sold nothing and counters forecasts ignore."""
    return [
        [iso_day(FIRST + i), {
            "revenue": str(10_000 + 3_730 * (i % 7) + i), "s_purchase": str(3 + i % 5),
            "revenue@hats": str(1_250 + 100 * (i % 3)), "purchases@hats": str(1 + i % 2),
            "revenue@caps": str(500 * (i % 2)), "purchases@caps": str(i % 2),
            "views@socks": "4", "rec_shown@knn": "2", "s_view": "40",
        }]
        for i in range(n)
    ]


def test_the_store_counters_sent_as_they_are_make_the_forecasts_of_their_figures() -> None:
    """What the worker sends (:meth:`ForecastEmitter.publish_due`: one read of the counters
    for a tick's origins, unparsed) gives the forecasts of the figures of those days."""

    async def run() -> None:
        process = ForecastProcess()
        try:
            raw = counters(70)
            figured = [figures(str(d), c) for d, c in raw]  # type: ignore[arg-type]
            for origin in (FIRST + 40, FIRST + 70):  # one read, several origins
                made = await process.forecasts(orjson.dumps(raw), origin, 5)
                assert made == forecasts_for(figured, origin, 5)
            assert {f["scope"] for f in made} == {"shop", "category:hats", "category:caps"}
            assert await process.forecasts(b"[]", FIRST, 5) == []
        finally:
            process.close()

    asyncio.run(run())


def idle_allowed() -> bool:
    """Whether this OS lets a process make itself ``SCHED_IDLE`` (asked of a throwaway
    process: the setting cannot be undone without privileges)."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    probe = "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_the_process_runs_below_the_workers_priority() -> None:
    """A burst of refits must not take a core from the batches (docs/performance.md,
    "Seventh round" and "Ninth round"): the child runs as ``SCHED_IDLE`` where Linux allows
    it, and lowers its niceness by ``NICE`` (at most to 19)."""
    from streams.worker.forecast_child import NICE

    async def run() -> None:
        process = ForecastProcess()
        try:
            await process.forecasts(days(3), FIRST + 3, 1)  # it is up and has answered
            assert process.proc is not None
            child = os.getpriority(os.PRIO_PROCESS, process.proc.pid)
            assert child == min(os.getpriority(os.PRIO_PROCESS, 0) + NICE, 19)
            if idle_allowed():  # Linux, unless a sandbox refuses it (the child then skips it)
                assert os.sched_getscheduler(process.proc.pid) == os.SCHED_IDLE
        finally:
            process.close()

    asyncio.run(run())


def test_a_killed_process_is_replaced_and_a_request_it_was_answering_fails() -> None:
    async def run() -> None:
        process = ForecastProcess()
        try:
            history = days(30)
            first = await process.forecasts(history, FIRST + 30, 5)
            assert process.proc is not None
            dead = process.proc
            os.kill(dead.pid, signal.SIGKILL)
            dead.wait()
            assert await process.forecasts(history, FIRST + 30, 5) == first  # a new one
            assert process.proc is not None and process.proc.pid != dead.pid
            # killed while it works on a request (the request is read, the reply never comes)
            long = days(182)  # 26 weeks, 13 scopes: seconds of work (1.5 s here)
            for i, day in enumerate(long):
                day["categories"] = {f"c{c}": {"revenue": 1.0 + c + i % 7, "purchases": 1}
                                     for c in range(12)}  # fmt: skip
            asking = asyncio.ensure_future(process.forecasts(long, FIRST + 182, 12))
            await asyncio.sleep(0.05)
            os.kill(process.proc.pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match=r"exited|failed"):
                await asking
            assert process.proc is None
        finally:
            process.close()

    asyncio.run(run())


def test_a_bad_request_fails_that_call_only() -> None:
    async def run() -> None:
        process = ForecastProcess()
        try:
            with pytest.raises(RuntimeError, match="could not forecast"):
                await process.forecasts([{"day": "not a day"}], FIRST + 1, 5)
            history = days(20)
            assert await process.forecasts(history, FIRST + 20, 5) == forecasts_for(
                history, FIRST + 20, 5
            )
        finally:
            process.close()

    asyncio.run(run())


def test_the_process_ends_when_the_worker_dies() -> None:
    """The child reads its requests from the worker: a worker killed with SIGKILL closes
    that pipe, and the child ends (no orphan left computing)."""
    import subprocess
    import sys
    import time

    script = (
        "import asyncio, os, signal, sys\n"
        "from streams.worker.forecast_process import ForecastProcess\n"
        "async def main():\n"
        "    p = ForecastProcess()\n"
        "    await p.forecasts([], 1, 0)\n"
        "    print(p.proc.pid, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        with open(f"/proc/{child}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break  # exited, not reaped yet
        time.sleep(0.05)
    alive = os.path.exists(f"/proc/{child}")
    if alive:
        with open(f"/proc/{child}/stat", "rb") as f:
            alive = f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    assert not alive, out.stderr.decode(errors="replace")[-500:]


def test_a_process_that_does_not_answer_is_killed_and_the_request_fails() -> None:
    async def run() -> None:
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        hung = ForecastProcess(timeout_s=1.0, command=sleeper)
        try:
            with pytest.raises(RuntimeError, match="did not answer"):
                await hung.forecasts(days(3), FIRST + 3, 5)
            proc = hung.proc
            assert proc is not None
            assert proc.wait(timeout=10) != 0  # killed, not left running
        finally:
            hung.close()

    asyncio.run(run())


NOISY_CHILD = (
    "import streams.domain.forecasts as d\n"
    "real = d.forecasts_for\n"
    "def noisy(*args):\n"
    "    print('a library says hello')\n"
    "    return real(*args)\n"
    "d.forecasts_for = noisy\n"
    "from streams.worker.forecast_child import main\n"
    "main()\n"
)


def test_what_a_library_prints_in_the_child_does_not_reach_the_replies() -> None:
    async def run() -> None:
        process = ForecastProcess(command=[sys.executable, "-c", NOISY_CHILD])
        try:
            for n in (20, 30):
                history = days(n)
                made = await process.forecasts(history, FIRST + n, 5)
                assert made == forecasts_for(history, FIRST + n, 5)
        finally:
            process.close()

    asyncio.run(run())


def test_a_reply_for_another_origin_is_refused_not_published() -> None:
    """A child out of step (a stray line on its stdout before it serves) must fail the
    request, never answer one origin with another's forecasts."""

    async def run() -> None:
        stray = "print('[]')\nfrom streams.worker.forecast_child import main\nmain()\n"
        process = ForecastProcess(command=[sys.executable, "-c", stray])
        try:
            for n in (20, 30):
                with pytest.raises(RuntimeError, match="answered something else"):
                    await process.forecasts(days(n), FIRST + n, 5)
        finally:
            process.close()

    asyncio.run(run())


def test_a_closed_process_is_not_started_again() -> None:
    async def run() -> None:
        process = ForecastProcess()
        await process.forecasts(days(10), FIRST + 10, 5)
        process.close()
        with pytest.raises(RuntimeError, match="closed"):
            await process.forecasts(days(10), FIRST + 10, 5)
        assert process.proc is None

    asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
                 | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=20).map(orjson.dumps),
    st.tuples(st.integers(-(10**20), 10**20), st.integers(-3, 10**6)).map(
        lambda oc: b'[[{"day": "2024-01-01", "revenue": 1.0}], %d, %d]' % oc),
), max_size=6))  # fmt: skip
def test_the_child_answers_every_hostile_request_with_one_line(lines: list[bytes]) -> None:
    """Whatever the worker's pipe carries (bytes, JSON of any shape, absurd origins and
    category counts), the child answers each line with exactly one JSON line and goes on:
    the worker matches replies to requests line by line."""
    from streams.worker.forecast_child import serve

    requests = [line.replace(b"\n", b" ") for line in lines]
    out = io.BytesIO()
    serve(io.BytesIO(b"".join(r + b"\n" for r in requests)), out)
    replies = out.getvalue().splitlines()
    assert len(replies) == len(requests)
    for reply in replies:
        assert set(orjson.loads(reply)) in ({"origin", "ok"}, {"origin", "error"})
