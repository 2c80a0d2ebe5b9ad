"""The one place that knows how to reach the broker: client options (plain aiokafka and
Faust's credentials, security included) and topic creation."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.core.errors import BrokerUnavailable
from streams.core.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client, security included."""
    protocol = settings.kafka_security_protocol.upper()
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    ssl_context = _ssl_context(protocol)
    if ssl_context is not None:
        opts["ssl_context"] = ssl_context
    if protocol.startswith("SASL"):
        opts.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return opts


def _ssl_context(protocol: str) -> ssl.SSLContext | None:
    return ssl.create_default_context() if "SSL" in protocol else None


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL and/or SSL, or ``None`` for PLAINTEXT."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(protocol)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def faust_topics(settings: Settings) -> list[NewTopic]:
    """The topics Faust itself creates at start: the profile table's changelog (compacted,
    one partition per source partition) and the assignor's leader topic.

    :func:`ensure_topics` creates them beforehand. Created by the worker a moment before it
    joins its group, a topic can still be missing from the metadata the group leader
    assigns from ("Ignoring missing topic"): the changelog then stays unassigned until a
    metadata refresh (5 minutes), and a worker was seen to stop after its first batch.
    """
    rf = settings.replication_factor
    return [
        NewTopic(f"{settings.app_id}-profiles-changelog", settings.partitions, rf,
                 topic_configs={"cleanup.policy": "compact"}),
        NewTopic(f"{settings.app_id}-__assignor-__leader", 1, rf),
    ]  # fmt: skip


async def ensure_topics(settings: Settings, wait_s: float = 30.0) -> list[str]:
    """Create the input, output and Faust's own topics (the configured partitions) and wait
    until the broker's metadata shows a leader for every partition; return those created."""
    wanted = [
        NewTopic(n, settings.partitions, settings.replication_factor)
        for n in (settings.topic_events, *settings.output_topics)
    ] + faust_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently by someone else")
            log.info("created topics %s", [t.name for t in missing])
        await wait_for_leaders(admin, [t.name for t in wanted], wait_s)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], wait_s: float) -> None:
    """Until every partition of ``names`` has a leader in the broker's metadata."""
    deadline = time.monotonic() + wait_s
    while True:
        topics = await admin.describe_topics(names)
        pending = sorted(
            t["topic"] for t in topics
            if t["error_code"] or not t["partitions"]
            or any(p["error_code"] or p["leader"] < 0 for p in t["partitions"])
        )  # fmt: skip
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"topics {pending} have no leader after {wait_s:.0f}s: is the broker healthy?"
            )
        await asyncio.sleep(0.1)
