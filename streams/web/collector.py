"""``POST /v1/events``: the HTTP way in for storefronts without a Kafka client (browsers).

Served by every worker's web server (not a separate process): one thing to deploy and
secure, the same guard (public key, CORS, Host) in front of it, and the same settings and
contract code as the intake. It is stateless apart from the rate-limit buckets, so any
worker takes any request; a shop that wants to scale the collector apart from the stream
processing runs more workers (docs/storefront.md).

A request is read up to ``SHOPSTREAM_COLLECTOR_MAX_BYTES`` (413 beyond), rate limited per
peer address (429 with ``Retry-After``), parsed element by element
(:func:`streams.domain.collect.parse_body`), then:

* ``identify`` calls store the link anonymous id -> customer id in Redis for
  ``SHOPSTREAM_IDENTITY_TTL_DAYS``; events of the request (and of later requests) whose
  ``user_id`` is a linked anonymous id are produced under the customer id;
* valid events are produced to the events topic keyed by ``user_id``, with ``acks=all``
  and an idempotent producer, and answered ``accepted`` once the broker has them;
* rejected elements are answered with the reason and also sent to the DLQ, with the same
  headers as the worker's (``source_topic`` is ``http:/v1/events``).

The answer is 200 with one entry per element (503 if the broker did not take some).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import mode
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.web import View
from msgspec.structs import replace
from redis.exceptions import RedisError

from streams.core.events import Event, Record
from streams.domain.collect import BodyError, TokenBuckets, Verdict, parse_body
from streams.domain.privacy import pseudonymise
from streams.domain.profile import DAY_MS
from streams.kafka import client_options
from streams.worker.context import ShopApp
from streams.worker.identity import Identities
from streams.worker.intake import dlq_headers

log = logging.getLogger(__name__)
SOURCE: Final = "http:/v1/events"
SEND_TIMEOUT_S: Final = 30.0


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, or :class:`BodyError` (413) as soon as it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "too_large", f"the body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _key(verdict: Verdict) -> bytes | None:
    """The record key of a rejected element: its ``user_id`` when it has a usable one."""
    try:
        uid = orjson.loads(verdict.raw).get("user_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return uid.encode("utf-8", "replace")[:1024] if isinstance(uid, str) and uid else None


class Collector(mode.Service):
    """The collector's producer (started on first use) and the identity links in Redis."""

    def __init__(self, shop: ShopApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shop, self.settings = shop, shop.settings
        s = shop.settings
        self.buckets = TokenBuckets(
            s.collector_events_per_s, max(s.collector_events_per_s, s.collector_max_events)
        )
        self.alias_ttl_ms = int(s.identity_ttl_days * DAY_MS)
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **client_options(self.settings), acks="all", enable_idempotence=True,
                    linger_ms=self.settings.producer_linger_ms,
                )  # fmt: skip
                await producer.start()
                self._producer = producer
            return self._producer

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def link(self, verdicts: Sequence[Verdict], events: list[Event]) -> list[Event]:
        """Store the request's identify links, then put every event whose user is a linked
        anonymous id under the customer id (one Redis round trip each way)."""
        ids = Identities(self.shop.runtime.redis, self.settings.redis_prefix, self.alias_ttl_ms)
        await ids.link([(a, c, self.state_id(c)) for a, c in (v.link for v in verdicts if v.link)])
        aliases = await ids.resolve(sorted({e.user_id for e in events}))
        return [replace(e, user_id=aliases[e.user_id]) if e.user_id in aliases else e
                for e in events]  # fmt: skip

    def state_id(self, customer: str) -> str:
        """The id the worker keeps the customer under (what ``forget`` is given)."""
        key = self.settings.pseudonymise_key.encode()
        return pseudonymise(customer, key) if key else customer

    async def collect(self, verdicts: list[Verdict]) -> tuple[int, dict[str, Any]]:
        """Produce, dead-letter and link; the HTTP status and the answer."""
        owners = [v.index for v in verdicts for _ in v.events]
        events = await self.link(verdicts, [e for v in verdicts for e in v.events])
        producer, s = await self.producer(), self.settings
        sends: list[Any] = [
            await producer.send(s.topic_events, e.to_json(), key=e.user_id.encode())
            for e in events
        ]
        rejected = [v for v in verdicts if v.status == "rejected"]
        for v in rejected:
            rec = Record(SOURCE, -1, -1, _key(v), v.raw)
            headers = dlq_headers(rec, v.reason or "", v.detail or "")
            sends.append(await producer.send(s.topic_dlq, v.raw, key=rec.key, headers=headers))
            self.shop.telemetry.on_dlq(v.reason or "")
        results = await asyncio.wait_for(
            asyncio.gather(*sends, return_exceptions=True), SEND_TIMEOUT_S
        )
        for result in results[len(events) :]:
            if isinstance(result, BaseException):
                log.warning("collector: a rejected element not dead-lettered: %r", result)
        answers = [v.answer() for v in verdicts]
        failed = {i for i, r in zip(owners, results, strict=False) if isinstance(r, BaseException)}
        for i in failed:
            log.warning("collector: element %d not (wholly) produced", i)
            detail = "not produced (the broker did not acknowledge it): retry"
            answers[i] |= {"status": "failed", "reason": "broker", "detail": detail}
        counts = {
            "accepted": sum(v.status == "accepted" for v in verdicts) - len(failed),
            "rejected": len(rejected), "failed": len(failed),
            "identified": sum(v.link is not None for v in verdicts),
            "ignored": sum(v.status == "ignored" for v in verdicts),
        }  # fmt: skip
        return (503 if failed else 200), {**counts, "results": answers}


def register(shop: ShopApp) -> Collector:
    """Add ``POST /v1/events`` and start its service with the app."""
    collector = Collector(shop)
    shop.app.service(collector)  # type: ignore[arg-type]  # an instance works, as the runtime
    s = shop.settings

    @shop.app.page("/v1/events")
    class Events(View):
        """POST a JSON array of contract events (and identify calls)."""

        async def post(self, request: web.Request) -> Any:
            try:
                body = await read_body(request, s.collector_max_bytes)
                verdicts = parse_body(
                    body, max_events=s.collector_max_events, max_bytes=s.max_event_bytes
                )
            except BodyError as exc:
                return self.json({"error": exc.detail, "reason": exc.reason}, status=exc.status)
            wait = collector.buckets.take(request.remote or "-", len(verdicts), time.monotonic())
            if wait:
                return self.json(
                    {"error": "too many events from this client: retry later",
                     "reason": "rate_limited"},
                    status=429, headers={"Retry-After": str(max(1, round(wait + 0.5)))},
                )  # fmt: skip
            if not shop.runtime.ready:
                return self.json({"error": "starting: retry shortly", "reason": "starting"},
                                 status=503, headers={"Retry-After": "1"})  # fmt: skip
            try:
                status, answer = await collector.collect(verdicts)
            except (RedisError, KafkaError, OSError, TimeoutError) as exc:
                log.warning("collector: request not taken: %r", exc)
                return self.json({"error": f"Kafka or Redis unavailable ({type(exc).__name__}): "
                                  "retry (event ids make it safe)", "reason": "unavailable"},
                                 status=503, headers={"Retry-After": "2"})  # fmt: skip
            return self.json(answer, status=status)

    return collector
