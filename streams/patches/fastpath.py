"""A cheaper hand-off from Faust's consumer to the agent's stream (docs/performance.md).

For every fetched message Faust's ``Consumer._drain_messages`` runs
``await self.wait_first(callback(message), self.suspend_flow.wait())``: it races the
conductor callback (decode the message, put it into the agent's buffer) against a rebalance
suspending the flow. mode's ``Service.wait_first`` builds that race out of four tasks per
message (the callback, the flow wait, the service's *stopped* and *crashed* events) and an
``asyncio.wait``; in a py-spy profile of the worker that was the largest single cost of
Faust's per-message path.

Almost always the callback finishes without suspending: the agent's buffer has room and the
flow is not suspended. :class:`FastConsumer` therefore first runs the callback *eagerly*, one
step, the way Python 3.12's eager tasks do. If it finishes in that step, no task, future or
race is needed. If it suspends (full buffer, suspended flow), the original race runs with the
rest of the callback (:func:`resume`) as its first contender, so a rebalance still interrupts
a blocked callback exactly as before. Only ``wait_first`` of the consumer is changed; it has
this one call site in ``faust/transport/consumer.py`` (faust-streaming 0.15.3).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from mode.services import WaitResults

from streams.patches import order


async def resume(coro: Any, yielded: Any) -> Any:
    """Finish a coroutine that was stepped once by hand and then yielded ``yielded``.

    Does what an asyncio Task does between steps: wait for the future the coroutine is
    blocked on (or give the loop one turn for a bare ``yield``), then send ``None`` into it;
    a cancellation while waiting cancels that future and is thrown into the coroutine.

    >>> async def two_steps(fut):
    ...     return await fut + 1
    >>> async def main():
    ...     fut = asyncio.get_running_loop().create_future()
    ...     coro = two_steps(fut)
    ...     yielded = coro.send(None)  # blocks on fut
    ...     fut.set_result(41)
    ...     return await resume(coro, yielded)
    >>> asyncio.run(main())
    42
    """
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
        except BaseException as exc:  # noqa: BLE001 (cancelled while the coroutine waits)
            if yielded is not None:
                yielded.cancel()
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value


class FastConsumer(order.GuardedConsumer):
    """The guarded consumer (:mod:`streams.patches.order`) with an eager first step for the
    per-message callback."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109
        if len(coros) != 2 or timeout is not None or self.suspend_flow.is_set():
            return await super().wait_first(*coros, timeout=timeout)
        callback, flow_wait = coros
        if not hasattr(callback, "send"):  # not a coroutine: nothing to step
            return await super().wait_first(*coros)
        try:
            yielded = callback.send(None)
        except StopIteration as stop:
            flow_wait.close()  # never started
            return WaitResults([callback], [stop.value], False)
        except BaseException:
            flow_wait.close()
            raise
        return await super().wait_first(resume(callback, yielded), flow_wait)


class FastTransport(aiokafka_driver.Transport):
    Consumer = FastConsumer


class App(order.App):
    """``faust.App`` whose consumer is :class:`FastConsumer` (the producer is unchanged)."""

    def _new_transport(self) -> Any:
        return FastTransport(self.conf.broker_consumer, self)
