"""Plain aiokafka helpers shared by the CLI tools: client options and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client, security included."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol.upper(),
    }
    if "SSL" in opts["security_protocol"]:
        opts["ssl_context"] = ssl.create_default_context()
    if opts["security_protocol"].startswith("SASL"):
        opts.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return opts


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the input and output topics with the configured partitions; return those created."""
    names = (settings.topic_events, *settings.output_topics)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            topics = [
                NewTopic(n, settings.partitions, settings.replication_factor) for n in missing
            ]
            try:
                await admin.create_topics(topics)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently by someone else")
            log.info("created topics %s with %d partitions", missing, settings.partitions)
        return missing
    finally:
        await admin.close()
