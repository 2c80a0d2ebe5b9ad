"""Requests for one user are answered by the worker that owns the user's partition.

A user's profile, churn track and partition models live on one worker: the one Kafka
assigned the user's partition of the events topic (keys are user ids, so the partition is
the producer's hash of the id). Any worker may receive ``GET /recommendations/{u}``,
``GET /users/{u}`` or ``DELETE /users/{u}``; :class:`Owners` looks the partition's owner up
in the group assignment (Faust's assignor metadata, the same that ``app.router`` uses) and
either answers itself or forwards the request, with its ``Authorization`` header, to the
owner's advertised URL (``SHOPSTREAM_WEB_ADVERTISE_HOST``). The owner answers from its own
state. When that is not possible — no assignment yet, a rebalance moved the partition while
the request was forwarded, the owner cannot be reached, the partition is being recovered —
the answer is 409 with the reason and ``Retry-After``, never a wrong answer.

>>> meta = {"http://a:1": {"ev": [0, 2]}, "http://b:1": {"ev": [1, 3], "out": [0]}}
>>> owner_url(meta, "ev", 3), owner_url(meta, "ev", 7)
('http://b:1', None)
>>> decide("http://a:1", "http://a:1", forwarded=False), decide("http://a:1", "http://b:1",
...        forwarded=False), decide("http://a:1", "http://b:1", forwarded=True)
('local', 'forward', 'conflict')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal

import aiohttp
from yarl import URL

from streams.worker.context import ShopApp

log = logging.getLogger(__name__)

#: Marks a forwarded request: its receiver answers or fails, never forwards again. The
#: value is the sender's deadline (epoch ms): a request that reaches the owner after it
#: (the sender answered 409 already) is refused, so that a 409 leaves nothing done.
FORWARDED: Final = "X-Shopstream-Forwarded"
FORWARD_TIMEOUT_S: Final = 10.0
Decision = Literal["local", "forward", "conflict"]


def owner_url(
    metadata: Mapping[str, Mapping[str, Sequence[int]]], topic: str, partition: int
) -> str | None:
    """The URL of the worker whose active partitions include ``topic:partition``."""
    for url, topics in metadata.items():
        if partition in topics.get(topic, ()):
            return url
    return None


def _same(a: str, b: str) -> bool:
    ua, ub = URL(a), URL(b)
    return (ua.host, ua.port) == (ub.host, ub.port)


def decide(own: str, owner: str | None, *, forwarded: bool) -> Decision:
    """Answer here, forward to the owner, or refuse (409)."""
    if owner is None:
        return "conflict"
    if _same(own, owner):
        return "local"
    return "conflict" if forwarded else "forward"


class Owners:
    """Answers a user's request here or at the owner of the user's partition."""

    def __init__(self, shop: ShopApp) -> None:
        self.app = shop.app
        self.topic = shop.settings.topic_events

    def partition(self, user_id: str) -> int | None:
        """The user's partition of the events topic (the storefront keys events by id)."""
        try:
            return self.app.consumer.key_partition(self.topic, user_id.encode())
        except Exception:  # noqa: BLE001 - no consumer or metadata yet: no owner known
            return None

    async def serve(
        self, web: Any, request: Any, user_id: str, here: Callable[[], Awaitable[Any]]
    ) -> Any:
        """``here()`` on the owner; elsewhere the owner's answer, or 409."""
        partition = self.partition(user_id)
        owner = None
        if partition is not None:
            owner = owner_url(self.app.router.external_topics_metadata(), self.topic, partition)
        own = str(self.app.conf.canonical_url)
        forwarded = request.headers.get(FORWARDED)
        decision = decide(own, owner, forwarded=forwarded is not None)
        if decision == "local":
            if self.app.in_recovery:
                return _conflict(web, f"partition {partition} is being recovered here")
            if forwarded is not None and _past(forwarded):
                return _conflict(web, "request reached its owner after the forwarder gave up")
            return await here()
        if decision == "conflict":
            why = "no worker owns it yet" if owner is None else "it moved during forwarding"
            return _conflict(web, f"partition {partition} is not served here and {why}")
        assert owner is not None
        return await self.forward(web, request, owner, partition)

    async def forward(self, web: Any, request: Any, owner: str, partition: int | None) -> Any:
        """The owner's answer to the same request (method, path, query, token)."""
        url = URL(owner.rstrip("/") + request.raw_path, encoded=True)
        deadline = int((time.time() + FORWARD_TIMEOUT_S) * 1000)
        headers = {FORWARDED: str(deadline), "Accept": request.headers.get("Accept", "*/*")}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        try:
            async with self.app.http_client.request(
                request.method, url, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                body = await resp.read()
                return web.bytes(body, content_type=resp.content_type, status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("forwarding %s %s to %s failed: %r", request.method, request.path,
                        owner, exc)  # fmt: skip
            if isinstance(exc, aiohttp.ClientConnectorError):
                why = "cannot be reached"
            elif isinstance(exc, TimeoutError):  # it may get the request later: it refuses it
                why = f"did not answer within {FORWARD_TIMEOUT_S:.0f} s"
            else:
                why = f"broke off the answer ({type(exc).__name__})"
            return _conflict(web, f"partition's owner {why}")


def _past(deadline: str) -> bool:
    """Whether a forwarded request's deadline (epoch ms) has passed (the workers' clocks are
    assumed synchronised, NTP; a malformed value counts as passed).

    >>> _past("0"), _past(str(int(time.time() * 1000) + 60_000)), _past("soon")
    (True, False, True)
    """
    try:
        return time.time() * 1000 > int(deadline)
    except ValueError:
        return True


def _conflict(web: Any, reason: str) -> Any:
    return web.json(
        {"error": f"the user's {reason}"}, status=409, headers={"Retry-After": "1"}
    )
