"""The Faust application factory: one :class:`Settings` in, one wired :class:`ShopApp` out.

Nothing connects at import time. ``create_app`` builds the Faust app, its topics and the
profile table; the agents (``streams/agents``) and HTTP views (``streams/web.py``) attach to
it; the Redis client lives in :class:`streams.runtime.Runtime`, a mode service started and
stopped with the worker.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust

from streams import fastpath, recovery
from streams.runtime import Runtime
from streams.settings import Settings


@dataclass(slots=True)
class ShopApp:
    """The Faust app and the handles the agents and views need."""

    settings: Settings
    app: faust.App
    events: Any  # faust.TopicT: input, raw bytes (validated by streams.events)
    dlq: Any
    recommendations: Any
    churn_alerts: Any
    segments: Any
    anomalies: Any
    profiles: Any  # faust.Table[str, bytes]: user_id -> orjson profile envelope
    runtime: Runtime
    telemetry: Any = None  # streams.telemetry.Telemetry: metrics and dashboard series
    processor: Any = None  # streams.processor.BatchProcessor, set by register()


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL and/or SSL, or ``None`` for PLAINTEXT."""
    proto = settings.kafka_security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    ssl_context = ssl.create_default_context() if "SSL" in proto else None
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def create_app(settings: Settings) -> ShopApp:
    """Build the app. Topics are created beforehand by :func:`streams.topics.ensure_topics`."""
    app_class = fastpath.App if settings.eager_handoff else faust.App
    app = app_class(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        broker_max_poll_records=settings.max_poll_records,
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        table_cleanup_interval=60.0,
        TableManager=recovery.TableManager,  # never drops records after a rebalance
    )

    def raw_topic(name: str) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    profiles = app.Table(
        "profiles",
        # Faust derives the changelog serializers from the types: str keys are JSON,
        # bytes values are raw (our orjson envelope).
        key_type=str,
        value_type=bytes,
        partitions=settings.partitions,
        help="user_id -> profile envelope (orjson): the live customer profile",
    )
    runtime = Runtime(settings)
    shop = ShopApp(
        settings=settings,
        app=app,
        events=raw_topic(settings.topic_events),
        dlq=raw_topic(settings.topic_dlq),
        recommendations=raw_topic(settings.topic_recommendations),
        churn_alerts=raw_topic(settings.topic_churn_alerts),
        segments=raw_topic(settings.topic_segments),
        anomalies=raw_topic(settings.topic_anomalies),
        profiles=profiles,
        runtime=runtime,
    )
    app.service(runtime)  # type: ignore[arg-type]  # an instance works: started after recovery

    from streams import dashboard, telemetry, web
    from streams.agents import events as events_agent

    shop.telemetry = telemetry.Telemetry(bucket_s=settings.dashboard_bucket_s)
    events_agent.register(shop)
    web.register(shop)
    telemetry.register_views(shop, shop.telemetry)
    dashboard.register(shop)
    return shop
