"""The composition root: one :class:`Settings` in, one wired :class:`ShopApp` out.

Nothing connects at import time. :func:`create_app` builds the Faust app (with the
faust-streaming corrections of :mod:`streams.patches`), its topics and the profile table,
the telemetry and the batch processor, then attaches the agent (:mod:`streams.agents`) and
the HTTP views (:mod:`streams.web`). The Redis client lives in
:class:`streams.worker.runtime.Runtime`, a mode service started and stopped with the worker.
"""

from __future__ import annotations

from typing import Any

from streams import web
from streams.agents import events as events_agent
from streams.core.settings import Settings
from streams.kafka import broker_credentials
from streams.patches import fastpath, handoff, order, recovery, table
from streams.telemetry import Telemetry
from streams.worker.batch import BatchProcessor
from streams.worker.context import ShopApp
from streams.worker.forecast_process import ForecastProcess
from streams.worker.forecasts import ForecastEmitter
from streams.worker.runtime import Runtime


def create_app(settings: Settings, forecast_process: ForecastProcess | None = None) -> ShopApp:
    """Build the app. Topics are created beforehand by :func:`streams.kafka.ensure_topics`.
    ``forecast_process``: the sales forecasts' child process, if already started (``shopstream
    worker`` starts it first; otherwise it starts at the first forecast)."""
    app_class = (
        handoff.App if settings.fetch_handoff
        else fastpath.App if settings.eager_handoff
        else order.App
    )  # fmt: skip
    app = app_class(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        store=f"{settings.table_store}://",  # rocksdb: needs rocksdict (docs/operations.md)
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        broker_max_poll_records=settings.max_poll_records,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        # where the other workers forward requests for users of this worker's partitions
        canonical_url=f"http://{settings.web_advertise_host or settings.web_host}:"
        f"{settings.web_port}",
        web_enabled=True,
        # Faust's own pages are off: /table serves raw profiles, /router the workers' URLs
        # (the rest, and the index at /, go in streams/patches/webpages.py)
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        table_cleanup_interval=60.0,
        TableManager=recovery.TableManager,  # never drops records after a rebalance
        Table=table.Table,  # a user moved by `shopstream repartition` is recovered right
    )
    if settings.fetch_handoff:  # the consumer delivers it a fetch at a time from the start
        app.hand_off_topics = (settings.topic_events,)  # type: ignore[attr-defined]

    def raw_topic(name: str) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    # an instance of Table=table.Table (below): with send_changelog_batch
    profiles: table.Table = app.Table(  # type: ignore[assignment]
        "profiles",
        # Faust derives the changelog serializers from the types: str keys are JSON,
        # bytes values are raw (our orjson envelope). (faust-streaming 0.15 ignores schema=.)
        key_type=str,
        value_type=bytes,
        partitions=settings.partitions,
        help="user_id -> profile envelope (orjson): the live customer profile",
    )
    runtime = Runtime(settings)
    app.service(runtime)  # type: ignore[arg-type]  # an instance works: started after recovery
    shop = ShopApp(
        settings=settings,
        app=app,
        events=raw_topic(settings.topic_events),
        dlq=raw_topic(settings.topic_dlq),
        recommendations=raw_topic(settings.topic_recommendations),
        churn_alerts=raw_topic(settings.topic_churn_alerts),
        segments=raw_topic(settings.topic_segments),
        anomalies=raw_topic(settings.topic_anomalies),
        kpis=raw_topic(settings.topic_kpis),
        alert_outcomes=raw_topic(settings.topic_alert_outcomes),
        profiles=profiles,
        runtime=runtime,
        telemetry=Telemetry(bucket_s=settings.dashboard_bucket_s),
    )
    processor = BatchProcessor(shop)
    events_agent.register(shop, processor)
    forecasts = ForecastEmitter(  # shop.forecasts: a timer, next to the agent
        shop, raw_topic(settings.topic_forecasts), processor.parts.sources, processor.retry,
        forecast_process,
    )
    forecasts.register()
    web.register(shop, processor)
    return shop
