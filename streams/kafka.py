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
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    IncompatibleBrokerVersion,
    TopicAlreadyExistsError,
    for_code,
)

from streams.core.errors import BrokerUnavailable
from streams.core.settings import Settings

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
#: DescribeConfigs' config_source of a value set on the topic itself.
DYNAMIC_TOPIC_CONFIG = 1


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


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The topic-level configs shopstream sets, by topic (docs/security.md).

    The profile changelog is compacted with a deadline: ``max.compaction.lag.ms`` makes a
    segment with a tombstone (an erased or retired profile) eligible for compaction within
    that time, and ``segment.ms`` rolls the active segment, which is never compacted, as
    often. The dead-letter topic keeps rejected records (raw user ids included) for
    ``retention.ms``; with a one-day ``segment.ms``, so that retention deletes them within a
    day of it.

    >>> configs = topic_configs(Settings(changelog_max_compaction_lag_ms=60000))
    >>> configs["shopstream-profiles-changelog"]
    {'cleanup.policy': 'compact', 'max.compaction.lag.ms': '60000', 'segment.ms': '60000'}
    """
    lag, dlq = settings.changelog_max_compaction_lag_ms, settings.dlq_retention_ms
    return {
        changelog_topic(settings): {
            "cleanup.policy": "compact", "max.compaction.lag.ms": str(lag), "segment.ms": str(lag),
        },
        settings.topic_dlq: {"retention.ms": str(dlq), "segment.ms": str(min(dlq, DAY_MS))},
    }  # fmt: skip


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-profiles-changelog"


def faust_topics(settings: Settings) -> list[NewTopic]:
    """The topics Faust itself creates at start: the profile table's changelog (compacted,
    one partition per source partition) and the assignor's leader topic.

    :func:`ensure_topics` creates them beforehand. Created by the worker a moment before it
    joins its group, a topic can still be missing from the metadata the group leader
    assigns from ("Ignoring missing topic"): the changelog then stays unassigned until a
    metadata refresh (5 minutes), and a worker was seen to stop after its first batch.
    """
    rf, changelog = settings.replication_factor, changelog_topic(settings)
    return [
        NewTopic(changelog, settings.partitions, rf,
                 topic_configs=topic_configs(settings)[changelog]),
        NewTopic(f"{settings.app_id}-__assignor-__leader", 1, rf),
    ]  # fmt: skip


async def ensure_topics(settings: Settings, wait_s: float = 30.0) -> list[str]:
    """Create the input, output and Faust's own topics (the configured partitions) and wait
    until the broker's metadata shows a leader for every partition; return those created."""
    configs = topic_configs(settings)
    wanted = [
        NewTopic(n, settings.partitions, settings.replication_factor,
                 topic_configs=configs.get(n, {}))
        for n in (settings.topic_events, *settings.output_topics)
    ] + faust_topics(settings)  # fmt: skip
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
        await align_configs(admin, configs)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def align_configs(
    admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]], wait_s: float = 15.0
) -> None:
    """Give existing topics the configs of ``wanted`` (topics created before a setting
    changed, or by an older version), keeping every other config set on them.

    Kafka's AlterConfigs replaces all of a topic's own configs, so the values set on the
    topic now are read first and sent back with ours. The broker applies a change a moment
    after it answers (KRaft: once the metadata record is replayed), so this waits, up to
    ``wait_s``, until it describes the new values: what ``shopstream topics`` reports is then
    in effect.
    """
    pending = await _differing(admin, wanted)
    if not pending:
        return
    for name in pending:
        log.info("topic %s: setting %s", name, wanted[name])
    for resp in await admin.alter_configs([
        ConfigResource(ConfigResourceType.TOPIC, name, configs=merged)
        for name, merged in pending.items()
    ]):  # fmt: skip
        for error_code, message, _, name in resp.resources:
            if error_code:
                raise for_code(error_code)(f"altering the configs of {name}: {message}")
    deadline = time.monotonic() + wait_s
    while pending := await _differing(admin, {n: wanted[n] for n in pending}):
        if time.monotonic() > deadline:
            log.warning("topics %s: the broker does not show the new configs yet", sorted(pending))
            return
        await asyncio.sleep(0.2)


async def _differing(
    admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """The topics whose own configs differ from ``wanted``: name -> own configs | wanted."""
    [resp] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in sorted(wanted)]
    )
    out = {}
    for error_code, _, _, name, entries in resp.resources:
        if error_code:
            raise for_code(error_code)(f"describing the configs of {name}")
        own = {e[0]: e[1] for e in entries if _set_on_topic(resp.API_VERSION, e[3])}
        if any(own.get(k) != v for k, v in wanted[name].items()):
            out[name] = own | wanted[name]
    return out


def _set_on_topic(version: int, source_or_default: Any) -> bool:
    """DescribeConfigs v0 says ``is_default``; v1+ the ``config_source``."""
    if version == 0:
        return not source_or_default
    return bool(source_or_default == DYNAMIC_TOPIC_CONFIG)


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


# --- topic identity ---------------------------------------------------------------------
# Kafka gives every topic a UUID when it is created (metadata v10+); a topic deleted and
# created again under the same name gets a new one, and its offsets start over. aiokafka
# speaks metadata up to v5 only, so the request is declared here (Kafka's
# MetadataRequest/Response v12, flexible encoding).
class _Uuid:
    @staticmethod
    def encode(value: bytes) -> bytes:
        return value

    @staticmethod
    def decode(data: Any) -> bytes:
        return bytes(data.read(16))


def _metadata_v12() -> tuple[type, type]:
    from aiokafka.protocol.api import Request, RequestStruct, Response
    from aiokafka.protocol.types import (
        Boolean,
        CompactArray,
        CompactString,
        Int16,
        Int32,
        Schema,
        TaggedFields,
    )  # fmt: skip

    class MetadataResponseV12(Response):  # type: ignore[misc]
        API_KEY = 3
        API_VERSION = 12
        SCHEMA = Schema(
            ("throttle_time_ms", Int32),
            ("brokers", CompactArray(
                ("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
                ("rack", CompactString("utf-8")), ("tags", TaggedFields))),
            ("cluster_id", CompactString("utf-8")),
            ("controller_id", Int32),
            ("topics", CompactArray(
                ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", _Uuid),
                ("is_internal", Boolean),
                ("partitions", CompactArray(
                    ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                    ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                    ("isr_nodes", CompactArray(Int32)),
                    ("offline_replicas", CompactArray(Int32)), ("tags", TaggedFields))),
                ("topic_authorized_operations", Int32), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )  # fmt: skip

    class MetadataRequestV12(RequestStruct):  # type: ignore[misc]
        API_KEY = 3
        API_VERSION = 12
        FLEXIBLE_VERSION = True
        RESPONSE_TYPE = MetadataResponseV12
        SCHEMA = Schema(
            ("topics", CompactArray(
                ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
            ("allow_auto_topic_creation", Boolean),
            ("include_topic_authorized_operations", Boolean),
            ("tags", TaggedFields),
        )  # fmt: skip

    class TopicIdsRequest(Request[MetadataRequestV12]):  # type: ignore[misc]
        API_KEY = 3

        def __init__(self, names: list[str]) -> None:
            self.names = names

        def build(self, request_struct_class: type[MetadataRequestV12]) -> MetadataRequestV12:
            topics: list[tuple[bytes, str, dict[int, bytes]]] = [
                (bytes(16), name, {}) for name in self.names
            ]
            return request_struct_class(topics, False, False, {})

    return TopicIdsRequest, MetadataResponseV12


async def topic_ids(settings: Settings, names: list[str]) -> dict[str, str]:
    """``{topic: id}`` (32 hex digits) of the existing ``names``; ``{}`` when the broker is
    older than Kafka 2.8 (no topic ids): callers then rely on offsets alone."""
    return {name: tid for name, (tid, _) in (await topic_layout(settings, names)).items()}


async def topic_layout(settings: Settings, names: list[str]) -> dict[str, tuple[str, int]]:
    """``{topic: (id, partitions)}`` of the existing ``names`` (id "" on a broker without
    topic ids)."""
    request, _ = _metadata_v12()
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        response = await admin._send_request(request(names))
    except (IncompatibleBrokerVersion, NotImplementedError):
        log.warning("the broker has no topic ids: a recreated topic is caught by offsets only")
        described = await describe(settings, names)
        return {t["topic"]: ("", len(t["partitions"])) for t in described if not t["error_code"]}
    finally:
        await admin.close()
    return {
        name: (topic_id.hex() if any(topic_id) else "", len(partitions))
        for error, name, topic_id, _, partitions, *_ in response.topics if not error
    }  # fmt: skip


async def describe(settings: Settings, names: list[str]) -> list[Any]:
    """aiokafka's description of the topics (metadata v5)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        described: list[Any] = await admin.describe_topics(names)
    finally:
        await admin.close()
    return described


async def committed_offsets(settings: Settings) -> dict[int, int]:
    """The offsets the worker's consumer group committed on the events topic, by partition
    (``{}`` for a new group)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    try:  # start inside: a caller's timeout that cancels the start still closes the client
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items()
        if tp.topic == settings.topic_events and meta.offset >= 0
    }  # fmt: skip


async def group_members(
    settings: Settings, *, stable: bool = False, coordinator_wait_s: float = 15.0
) -> int:
    """Members of the worker's consumer group right now (0: no worker is running); with
    ``stable``, 0 as well while the group rebalances (state other than ``Stable``).

    A broker that has never had a group answers "coordinator not available" while it creates
    its offsets topic (the first lookup starts that): asked again for up to
    ``coordinator_wait_s`` seconds, then the error is raised."""
    deadline = time.monotonic() + coordinator_wait_s
    while True:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
        try:  # start inside: a caller's timeout that cancels the start still closes the client
            await admin.start()
            responses = await admin.describe_consumer_groups([settings.app_id])
            break
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() >= deadline:
                raise
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    groups = [g for r in responses for g in r.to_object()["groups"]
              if g["group"] == settings.app_id and (g["state"] == "Stable" or not stable)]
    return sum(len(g["members"]) for g in groups)
