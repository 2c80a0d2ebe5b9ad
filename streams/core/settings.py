"""The one settings object. Every option has an environment variable and a documented default.

``Settings.from_env()`` reads ``SHOPSTREAM_*`` variables; nothing else in the code reads
``os.environ``. ``python -m streams.core.settings`` prints the table that the README shows.

>>> s = Settings.from_env({"SHOPSTREAM_PARTITIONS": "8", "SHOPSTREAM_TOPIC_EVENTS": "in"})
>>> s.partitions, s.topic_events, s.topic_dlq
(8, 'in', 'shop.events.dlq')
>>> Settings.from_env({"SHOPSTREAM_PARTITIONS": "many"})
Traceback (most recent call last):
...
streams.core.errors.ConfigError: SHOPSTREAM_PARTITIONS='many' is not a valid int
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from streams.core.errors import ConfigError

PREFIX = "SHOPSTREAM_"
ChurnModelKind = Literal["logistic", "forest"]


def _opt(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """All configuration. Field ``x`` is read from ``SHOPSTREAM_X``."""

    # --- connectivity -------------------------------------------------------------------
    app_id: str = _opt("shopstream", "Faust app id; also the Kafka consumer group id.")
    kafka_bootstrap: str = _opt("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated.")
    kafka_security_protocol: str = _opt(
        "PLAINTEXT", "Kafka security protocol: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL."
    )
    kafka_sasl_mechanism: str = _opt("PLAIN", "SASL mechanism when SASL is used.")
    kafka_sasl_username: str = _opt("", "SASL user name.")
    kafka_sasl_password: str = _opt("", "SASL password.")
    redis_url: str = _opt(
        "redis://127.0.0.1:6379/0",
        "Redis URL; redis://:PASSWORD@host:port/db for AUTH, rediss:// for TLS.",
    )
    redis_prefix: str = _opt("ss", "Prefix of every Redis key this app writes.")
    web_host: str = _opt("127.0.0.1", "Bind address of the HTTP server.")
    web_port: int = _opt(6066, "Port of the HTTP server (recommendations, health, metrics).")
    data_dir: str = _opt(".stack/worker", "Worker data directory (table state, checkpoints).")
    log_level: str = _opt("info", "Log level of the worker.")

    # --- topics -------------------------------------------------------------------------
    topic_events: str = _opt("shop.events", "Input topic of storefront events.")
    topic_dlq: str = _opt("shop.events.dlq", "Dead-letter topic for rejected input records.")
    topic_recommendations: str = _opt("shop.recommendations", "Output topic of recommendations.")
    topic_churn_alerts: str = _opt("shop.churn-alerts", "Output topic of churn alerts.")
    topic_segments: str = _opt("shop.segments", "Output topic of segment changes.")
    topic_anomalies: str = _opt("shop.anomalies", "Output topic of anomaly flags.")
    partitions: int = _opt(4, "Partitions of every topic the app creates.")
    replication_factor: int = _opt(1, "Replication factor of the topics the app creates.")

    # --- processing ---------------------------------------------------------------------
    max_event_bytes: int = _opt(65536, "Records larger than this go to the DLQ as 'oversize'.")
    max_price: float = _opt(1_000_000.0, "Highest valid 'price'; above it: DLQ 'bad_number'.")
    max_quantity: int = _opt(10_000, "Highest valid 'quantity'; above it: DLQ 'bad_number'.")
    max_line_value: float = _opt(
        10_000_000.0, "Highest valid price x quantity of one event; above it: DLQ 'bad_number'."
    )
    max_future_ms: int = _opt(
        3_600_000, "Events dated more than this after their Kafka record time: DLQ 'future_ts'."
    )
    max_past_ms: int = _opt(
        0, "Events dated more than this before their record time: DLQ 'stale_ts' (0 = off)."
    )
    max_events_per_min: int = _opt(
        600, "Per user and minute of Kafka record time; more: DLQ 'rate_limited' (0 = off)."
    )
    batch_size: int = _opt(500, "Most events processed together (one Redis round trip).")
    batch_within_ms: int = _opt(20, "Longest wait to fill a batch, in milliseconds.")
    stream_buffer_maxsize: int = _opt(8192, "Faust per-partition stream buffer size.")
    max_poll_records: int = _opt(2000, "Kafka max records per poll.")
    commit_interval_s: float = _opt(1.0, "Kafka offset commit interval, in seconds.")
    session_timeout_s: float = _opt(
        60.0, "Kafka group session timeout: a worker silent this long loses its partitions."
    )
    eager_handoff: bool = _opt(
        True, "Hand fetched messages to the agent without a task per message (patches/fastpath.py)."
    )
    producer_linger_ms: int = _opt(5, "Producer linger before a produce request, in ms.")
    producer_max_batch_bytes: int = _opt(
        524288, "Producer batch size per partition, in bytes (a full batch makes sends wait)."
    )
    shutdown_grace_s: float = _opt(
        15.0, "On SIGTERM, how long the batch in progress may take to finish, in seconds."
    )

    # --- recommendations ----------------------------------------------------------------
    rec_k: int = _opt(10, "Items per published recommendation.")
    rec_session_window: int = _opt(
        5, "Last N interactions of a session paired with a new click (the evaluated value)."
    )
    rec_throttle_ms: int = _opt(
        0, "Publish at most one recommendation per user per this many ms (event time)."
    )
    rec_half_life_days: float = _opt(30.0, "Half-life of co-occurrence counts, in event-time days.")
    rec_max_neighbours: int = _opt(200, "Most neighbours kept per item (bounded memory).")

    # --- churn --------------------------------------------------------------------------
    churn_horizon_days: float = _opt(30.0, "Churn = no purchase within this many days.")
    churn_idle_days: float = _opt(14.0, "Score a user for an alert after this many idle days.")
    churn_threshold: float = _opt(0.5, "Publish an alert at or above this churn probability.")
    churn_model: ChurnModelKind = _opt(  # noqa: RUF009 - a str; checked() keeps it a kind
        "logistic", "Churn model: logistic (scaled logistic regression) or forest."
    )
    churn_min_labels: int = _opt(
        200, "Labels a partition's churn model learns before it may publish alerts."
    )
    checkpoint_key: str = _opt("", "HMAC key that signs model checkpoints (required to save).")
    checkpoint_interval_s: float = _opt(
        60.0, "Seconds between model checkpoints (and one at shutdown)."
    )

    # --- segments, anomalies, dashboard ---------------------------------------------------
    segment_clusters: int = _opt(5, "Clusters of the online k-means over profile features.")
    anomaly_burst_per_min: int = _opt(40, "Events per event-time minute that flag a bot burst.")
    anomaly_cooldown_ms: int = _opt(
        3_600_000, "Report a user's anomaly kind at most once per this."
    )
    bot_ttl_ms: int = _opt(86_400_000, "How long (event time) a flagged bot stays flagged.")
    exclude_bots: bool = _opt(
        True, "Keep flagged bots out of similarity counts and model training."
    )
    dashboard_bucket_s: float = _opt(2.0, "Seconds per point of the dashboard's time series.")

    # --- privacy ------------------------------------------------------------------------
    pseudonymise_key: str = _opt(
        "", "If set, user ids are replaced by HMAC-SHA256 pseudonyms before anything is stored."
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SHOPSTREAM_*`` variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name not in env:
                continue
            raw = env[name]
            kind: type = type(f.default)
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        return cls(**values).checked()

    def checked(self) -> Settings:
        """Reject values that cannot work, naming the variable."""
        positive = ("partitions", "batch_size", "max_event_bytes", "rec_k", "rec_session_window",
                    "max_price", "max_quantity", "max_line_value", "max_future_ms")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:  # NaN is not positive either
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.max_past_ms < 0 or self.max_events_per_min < 0:
            raise ConfigError(f"{PREFIX}MAX_PAST_MS and {PREFIX}MAX_EVENTS_PER_MIN must be >= 0")
        if self.churn_model not in get_args(ChurnModelKind):
            raise ConfigError(f"{PREFIX}CHURN_MODEL must be logistic or forest")
        if not 0 < self.churn_threshold <= 1:
            raise ConfigError(f"{PREFIX}CHURN_THRESHOLD must be in (0, 1]")
        if self.churn_min_labels < 0:
            raise ConfigError(f"{PREFIX}CHURN_MIN_LABELS must not be negative")
        if self.churn_idle_days >= self.churn_horizon_days:
            raise ConfigError(f"{PREFIX}CHURN_IDLE_DAYS must be below {PREFIX}CHURN_HORIZON_DAYS")
        return self

    def to_env(self) -> dict[str, str]:
        """The ``SHOPSTREAM_*`` variables that make :meth:`from_env` return these settings
        (how tests and benchmarks hand settings to a worker process).

        >>> Settings.from_env(Settings(partitions=3).to_env()).partitions
        3
        """
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests give each run its own topics and prefix)."""
        return replace(self, **changes).checked()

    def namespaced(self, tag: str) -> Settings:
        """A copy whose consumer group, Redis prefix and topics all carry ``tag``.

        Tests and benchmarks use it to run side by side on one broker and one Redis.

        >>> s = Settings().namespaced("t1")
        >>> s.app_id, s.redis_prefix, s.topic_events, s.topic_dlq
        ('shopstream-t1', 't1', 't1.events', 't1.events.dlq')
        """
        return self.with_(
            app_id=f"shopstream-{tag}",
            redis_prefix=tag,
            topic_events=f"{tag}.events",
            topic_dlq=f"{tag}.events.dlq",
            topic_recommendations=f"{tag}.recommendations",
            topic_churn_alerts=f"{tag}.churn-alerts",
            topic_segments=f"{tag}.segments",
            topic_anomalies=f"{tag}.anomalies",
        )

    @property
    def output_topics(self) -> tuple[str, ...]:
        return (
            self.topic_dlq,
            self.topic_recommendations,
            self.topic_churn_alerts,
            self.topic_segments,
            self.topic_anomalies,
        )


def _parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def markdown_table() -> str:
    """The configuration table of the README, generated from the fields above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `{PREFIX}{f.name.upper()}` | `{f.default}` | {f.metadata['doc']} |")  # noqa: PERF401
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())  # noqa: T201
