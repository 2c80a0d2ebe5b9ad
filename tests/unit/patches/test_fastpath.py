"""The eager hand-off's trampoline: a coroutine stepped once by hand, finished by ``resume``.

``streams.patches.fastpath.FastConsumer`` relies on ``resume`` behaving like an asyncio Task
from the second step on: results, exceptions and cancellation must reach the coroutine as they would
under a Task (the integration suite runs every worker through the fast path).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.patches.fastpath import resume


def step_once(coro: Any) -> Any:
    """First step by hand, as ``FastConsumer.wait_first`` does."""
    return coro.send(None)


def test_a_coroutine_that_never_suspends_finishes_in_its_first_step() -> None:
    async def put_nowait(queue: asyncio.Queue[int]) -> str:
        queue.put_nowait(1)
        return "delivered"

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        with pytest.raises(StopIteration) as stop:
            step_once(put_nowait(queue))
        assert stop.value.value == "delivered" and queue.qsize() == 1

    asyncio.run(main())


def test_a_blocked_put_resumes_when_the_consumer_makes_room() -> None:
    async def put(queue: asyncio.Queue[int], value: int) -> int:
        await queue.put(value)  # blocks: the queue is full
        return value

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(0)
        coro = put(queue, 7)
        yielded = step_once(coro)
        finishing = asyncio.ensure_future(resume(coro, yielded))
        await asyncio.sleep(0.01)
        assert not finishing.done()
        assert queue.get_nowait() == 0  # the agent takes one: room for the blocked put
        assert await asyncio.wait_for(finishing, 1) == 7
        assert queue.get_nowait() == 7

    asyncio.run(main())


def test_bare_yields_and_exceptions_reach_the_caller() -> None:
    async def flaky() -> None:
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.001)  # a future
        raise ValueError("bad message")

    async def main() -> None:
        coro = flaky()
        with pytest.raises(ValueError, match="bad message"):
            await resume(coro, step_once(coro))

    asyncio.run(main())


def test_cancelling_the_resumed_call_cancels_the_coroutine_and_its_wait() -> None:
    """What a rebalance does to a callback blocked on a full buffer (via ``wait_first``)."""
    cleaned: list[str] = []

    async def put(queue: asyncio.Queue[int]) -> None:
        try:
            await queue.put(1)
        finally:
            cleaned.append("finally ran")

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(0)
        coro = put(queue)
        finishing = asyncio.ensure_future(resume(coro, step_once(coro)))
        await asyncio.sleep(0.01)
        finishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await finishing
        assert cleaned == ["finally ran"]
        queue.get_nowait()
        await asyncio.sleep(0.01)
        assert queue.empty()  # the cancelled put did not deliver later

    asyncio.run(main())


def test_the_installed_faust_still_races_each_message_against_suspend_flow() -> None:
    """FastConsumer overrides ``wait_first`` for exactly this call site; an upgrade of faust
    that changes it must be looked at (streams/patches/fastpath.py), not silently keep the
    override."""
    import inspect

    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._drain_messages)
    assert "self.wait_first(" in source and "self.suspend_flow.wait()" in source
    assert source.count("wait_first(") == 1
