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
from streams.core.values import PREFIX as PREFIX  # re-exported: the prefix of every variable
from streams.core.values import coerce, coupon_tiers, rec_overrides, tiers_text

ChurnModelKind = Literal["logistic"]
ChurnGuard = Literal["auto", "analytic", "model"]
LogFormat = Literal["text", "json"]
TableStore = Literal["memory", "rocksdb"]
#: Settings whose values are never printed (``shopstream settings`` masks them).
SECRETS = frozenset({
    "kafka_sasl_password", "checkpoint_key", "pseudonymise_key", "redis_url", "public_key",
    "admin_token",
})  # fmt: skip


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
    log_format: LogFormat = _opt(  # noqa: RUF009 - a str; checked() keeps it a format
        "text", "Log lines as text or json (one JSON object per line, for log collectors)."
    )
    web_advertise_host: str = _opt(
        "", "Host name other workers use to reach this one's HTTP server (default: web host)."
    )

    # --- HTTP access (docs/security.md) -------------------------------------------------
    public_key: str = _opt(
        "", "Bearer token of the storefront (browser code too): recommendations, similar items."
    )
    admin_token: str = _opt(
        "", "Bearer token for personal data and operations: /users, /models, /dashboard, items."
    )
    web_allowed_hosts: str = _opt(
        "",
        "Host names the HTTP server answers to, besides loopback names and the advertised "
        "host (comma-separated; .example.com = its subdomains; * = any).",
    )
    cors_origins: str = _opt(
        "", "Browser origins allowed to call the API, comma-separated (* = any, public calls)."
    )

    # --- storefront: collector, tracker, demo shop (README "From a storefront") ----------
    collector_max_events: int = _opt(500, "Most events in one POST /v1/events request.")
    collector_max_bytes: int = _opt(
        1_048_576, "Largest POST /v1/events body, in bytes (larger: 413, nothing produced)."
    )
    collector_events_per_s: float = _opt(
        100.0,
        "Events per second one client (peer address) may send to POST /v1/events, with "
        "bursts up to a full request; more: 429 (0 = off).",
    )
    identity_ttl_days: float = _opt(
        30.0, "How long an identify call's link anonymous id -> customer id is kept (Redis)."
    )
    demo_shop: bool = _opt(False, "Serve the demo storefront at /demo/shop (make demo sets it).")

    # --- topics -------------------------------------------------------------------------
    topic_events: str = _opt("shop.events", "Input topic of storefront events.")
    topic_dlq: str = _opt("shop.events.dlq", "Dead-letter topic for rejected input records.")
    topic_recommendations: str = _opt("shop.recommendations", "Output topic of recommendations.")
    topic_churn_alerts: str = _opt("shop.churn-alerts", "Output topic of churn alerts.")
    topic_segments: str = _opt("shop.segments", "Output topic of segment changes.")
    topic_anomalies: str = _opt("shop.anomalies", "Output topic of anomaly flags.")
    topic_kpis: str = _opt(
        "shop.kpis", "Output topic of the daily business figures (one snapshot per day)."
    )
    topic_alert_outcomes: str = _opt(
        "shop.alert-outcomes",
        "Output topic of churn alert outcomes: did the customer buy within the horizon.",
    )
    topic_forecasts: str = _opt(
        "shop.forecasts",
        "Output topic of the sales forecasts (one per origin day and scope: shop, category).",
    )
    partitions: int = _opt(4, "Partitions of every topic the app creates.")
    replication_factor: int = _opt(1, "Replication factor of the topics the app creates.")
    changelog_max_compaction_lag_ms: int = _opt(
        43_200_000,
        "max.compaction.lag.ms and segment.ms of the profile changelog: bounds how long an "
        "erased profile stays in Kafka (docs/security.md).",
    )
    dlq_retention_ms: int = _opt(
        604_800_000, "retention.ms of the dead-letter topic (rejected records hold raw user ids)."
    )

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
    batch_size: int = _opt(
        1000,
        "Most events processed together (one Redis round trip); a live batch holds what "
        "arrived while the previous one ran, so only a backlog fills it.",
    )
    batch_within_ms: int = _opt(
        2,
        "Longest wait for more records once a batch has its first ones, in milliseconds, "
        "counted from when the oldest of them was fetched (a full batch, or records that "
        "waited this long for the batch before, start at once). With the fetch hand-off off "
        "it is Faust's wait after every batch, which an idle worker repeats every this many "
        "ms.",
    )
    stream_buffer_maxsize: int = _opt(8192, "Faust per-partition stream buffer size.")
    max_poll_records: int = _opt(2000, "Kafka max records per poll.")
    commit_interval_s: float = _opt(1.0, "Kafka offset commit interval, in seconds.")
    session_timeout_s: float = _opt(
        60.0, "Kafka group session timeout: a worker silent this long loses its partitions."
    )
    eager_handoff: bool = _opt(
        True, "Hand fetched messages to the agent without a task per message (patches/fastpath.py)."
    )
    fetch_handoff: bool = _opt(
        True,
        "Hand the events topic to the agent one partition fetch at a time, acked as offset "
        "ranges (patches/handoff.py); off: one Faust message per record.",
    )
    batch_produce: bool = _opt(
        True,
        "Produce a batch's outputs and changelog records in one aiokafka batch per topic "
        "partition (patches/produce.py); off: one Faust send per record.",
    )
    live_envelopes: int = _opt(
        50_000,
        "Most users whose decoded profile envelope is kept between batches (a few KB of "
        "memory each); 0: decoded from the table's bytes in every batch.",
    )
    producer_linger_ms: int = _opt(5, "Producer linger before a produce request, in ms.")
    producer_max_batch_bytes: int = _opt(
        524288, "Producer batch size per partition, in bytes (a full batch makes sends wait)."
    )
    shutdown_grace_s: float = _opt(
        15.0, "On SIGTERM, how long the batch in progress may take to finish, in seconds."
    )
    table_store: TableStore = _opt(  # noqa: RUF009 - a str; checked() keeps it a store
        "memory",
        "Profile table store: memory (rebuilt from the changelog at start) or rocksdb "
        "(on disk in the data dir; pip install 'shopstream[rocksdb]').",
    )

    # --- recommendations ----------------------------------------------------------------
    rec_k: int = _opt(10, "Items per published recommendation.")
    rec_session_window: int = _opt(
        10, "Last N distinct items of a session paired with a new click (the evaluated value)."
    )
    rec_throttle_ms: int = _opt(
        0, "Publish at most one recommendation per user per this many ms (event time)."
    )
    rec_half_life_days: float = _opt(30.0, "Half-life of co-occurrence counts, in event-time days.")
    rec_max_neighbours: int = _opt(200, "Most neighbours kept per item (bounded memory).")
    rec_item_ttl_days: float = _opt(
        180.0,
        "Items not seen for this long are forgotten: neighbour keys expire (wall clock), "
        "popularity and category entries are evicted (event time); 0 = keep forever.",
    )
    rec_knn_weight: float = _opt(
        0.0, "Weight of the session-neighbourhood signal (0 = off; costs Redis CPU, see docs)."
    )
    rec_arm_b_share: float = _opt(
        0.0,
        "Share of users in recommendation arm B (a salted hash of user_id decides), scored "
        "with SHOPSTREAM_REC_ARM_B; 0 = no experiment (docs/recommendations.md).",
    )
    rec_arm_b: str = _opt(
        "",
        'Arm B\'s scoring parameters as JSON overrides of arm A\'s, e.g. {"two_hop": 0}; '
        "only scoring parameters (docs/recommendations.md).",
    )

    # --- churn --------------------------------------------------------------------------
    churn_horizon_days: float = _opt(30.0, "Churn = no purchase within this many days.")
    churn_idle_days: float = _opt(14.0, "Score a user for an alert after this many idle days.")
    churn_threshold: float = _opt(0.5, "Publish an alert at or above this churn probability.")
    churn_model: ChurnModelKind = _opt(  # noqa: RUF009 - a str; checked() keeps it a kind
        "logistic", "Learned churn model: logistic (scaled logistic regression), the only one."
    )
    churn_guard: ChurnGuard = _opt(  # noqa: RUF009 - a str; checked() keeps it a mode
        "auto",
        "Which churn scorer alerts: auto (the analytic one until the learned model beats it "
        "on live labels), analytic, or model.",
    )
    churn_min_labels: int = _opt(
        500,
        "Labels a partition's learned churn model learns, and is then scored on, before it "
        "may replace the analytic scorer.",
    )
    churn_min_customers: int = _opt(
        50, "Buyers a partition's analytic churn scorer is fitted on before it may alert."
    )
    churn_season_odds: float = _opt(
        0.5,
        "Prior factor on the odds of staying away of a customer who bought in the coming "
        "season a year ago, until live labels say (1 = off; docs/churn.md).",
    )
    churn_alert_max_age_days: float = _opt(
        7.0,
        "Alerts older than this (event time vs wall clock: a backfill) are learned from but "
        "not published (0 = publish all).",
    )
    idle_advance_s: float = _opt(
        60.0,
        "A partition with no record for this long is idle: its event-time clock then follows "
        "the wall clock, this far behind (0 = off: the clock moves only with events).",
    )
    checkpoint_key: str = _opt("", "HMAC key that signs model checkpoints (required to save).")
    checkpoint_interval_s: float = _opt(
        60.0, "Seconds between model checkpoints (and one at shutdown)."
    )
    coupon_tiers: str = _opt(
        "gold:500:20,silver:100:15,bronze:0:10",
        "Coupon tiers of churn alerts, highest first: name:min_lifetime_spend:discount_pct.",
    )
    alert_holdout_share: float = _opt(
        0.1,
        "Share of churn alerts in the holdout group (no coupon; a hash of alert_id decides), "
        "against which the coupons' uplift is measured (docs/marketing.md); 0 = none.",
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
    kpi_session_ttl_days: float = _opt(
        3.0,
        "How long (wall clock) the sessions of a day are kept to count each once in the "
        "funnel; a later event of the day may count its session again (0 = forever).",
    )
    forecast_categories: int = _opt(
        5,
        "Categories forecast besides the shop: the top ones by revenue over the 28 days "
        "before each origin day (0 = the shop only).",
    )
    forecast_interval_s: float = _opt(
        5.0,
        "Seconds between the worker's checks for days that every partition has passed, "
        "whose forecasts go to the forecasts topic (0 = no forecasts published).",
    )
    forecast_origins_per_check: int = _opt(
        1,
        "Origin days whose forecasts one check works out at most, oldest first (each is "
        "0.25-3.6 s of CPU in the forecast process): a catch-up is paced, not a burst; an "
        "origin is passed over only when event time runs over 35 days ahead of the "
        "forecasts (a backfill, a fast replay). 0 = every due origin at once.",
    )

    # --- privacy ------------------------------------------------------------------------
    pseudonymise_key: str = _opt(
        "", "If set, user ids are replaced by HMAC-SHA256 pseudonyms before anything is stored."
    )

    # --- retention ----------------------------------------------------------------------
    retention_days: float = _opt(
        400.0,
        "Customers inactive this long (event time) are removed: profile (changelog "
        "tombstone), churn track, Redis keys; 0 = keep forever.",
    )
    retention_interval_s: float = _opt(
        60.0, "Seconds between retention sweeps (each looks at a bounded slice of users)."
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SHOPSTREAM_*`` variables (``os.environ`` by default).

        The command line reads a config file and ``.env`` too (:mod:`streams.core.config`).
        """
        env = os.environ if env is None else env
        return cls.from_values(
            {f.name: env[PREFIX + f.name.upper()] for f in fields(cls)
             if PREFIX + f.name.upper() in env}
        )  # fmt: skip

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from field names to values: strings (environment) or TOML values.

        >>> Settings.from_values({"rec_k": 5, "exclude_bots": "off"}).exclude_bots
        False
        >>> Settings.from_values({"coupon_tiers": [{"name": "vip", "min_value": 0,
        ...                                          "discount_pct": 5}]}).coupon_tiers
        'vip:0:5'
        """
        kinds = {f.name: type(f.default) for f in fields(cls)}
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            kind = kinds[name]
            if name == "coupon_tiers" and isinstance(raw, list):
                raw = tiers_text(raw)
            try:
                parsed[name] = coerce(raw, kind)
            except (ValueError, TypeError):
                var = PREFIX + name.upper()
                raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
        return cls(**parsed).checked()

    def checked(self) -> Settings:
        """Reject values that cannot work, naming the variable."""
        positive = ("partitions", "batch_size", "max_event_bytes", "rec_k", "rec_session_window",
                    "max_price", "max_quantity", "max_line_value", "max_future_ms",
                    "changelog_max_compaction_lag_ms", "dlq_retention_ms", "collector_max_events",
                    "collector_max_bytes", "identity_ttl_days", "batch_within_ms")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:  # NaN is not positive either
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.max_past_ms < 0 or self.max_events_per_min < 0:
            raise ConfigError(f"{PREFIX}MAX_PAST_MS and {PREFIX}MAX_EVENTS_PER_MIN must be >= 0")
        if self.rec_knn_weight < 0:
            raise ConfigError(f"{PREFIX}REC_KNN_WEIGHT must not be negative")
        if self.churn_model not in get_args(ChurnModelKind):
            raise ConfigError(f"{PREFIX}CHURN_MODEL must be logistic (forest was removed: "
                              "it could only be stored as a pickle; see the CHANGELOG)")
        if not 0 < self.churn_threshold <= 1:
            raise ConfigError(f"{PREFIX}CHURN_THRESHOLD must be in (0, 1]")
        if self.churn_guard not in get_args(ChurnGuard):
            raise ConfigError(f"{PREFIX}CHURN_GUARD must be auto, analytic or model")
        for name in ("churn_min_labels", "churn_min_customers", "churn_alert_max_age_days",
                     "idle_advance_s", "collector_events_per_s",
                     "kpi_session_ttl_days", "forecast_categories",
                     "forecast_interval_s", "forecast_origins_per_check"):  # fmt: skip
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must not be negative")
        if not 0.1 <= self.churn_season_odds <= 1:
            raise ConfigError(f"{PREFIX}CHURN_SEASON_ODDS must be in [0.1, 1]")
        if self.churn_idle_days >= self.churn_horizon_days:
            raise ConfigError(f"{PREFIX}CHURN_IDLE_DAYS must be below {PREFIX}CHURN_HORIZON_DAYS")
        choices = (("log_format", LogFormat), ("table_store", TableStore))
        for name, kind in choices:
            if getattr(self, name) not in get_args(kind):
                raise ConfigError(f"{PREFIX}{name.upper()} must be one of {get_args(kind)}")
        coupon_tiers(self.coupon_tiers)
        if not 0 <= self.alert_holdout_share < 1:
            raise ConfigError(f"{PREFIX}ALERT_HOLDOUT_SHARE must be in [0, 1)")
        if not 0 <= self.rec_arm_b_share <= 1:
            raise ConfigError(f"{PREFIX}REC_ARM_B_SHARE must be in [0, 1]")
        rec_overrides(self.rec_arm_b)
        if self.retention_days and self.retention_days <= self.churn_horizon_days:
            raise ConfigError(
                f"{PREFIX}RETENTION_DAYS must be 0 (off) or above {PREFIX}CHURN_HORIZON_DAYS"
            )
        if min(self.retention_days, self.rec_item_ttl_days, self.retention_interval_s) < 0:
            raise ConfigError("retention periods must not be negative")
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
            topic_kpis=f"{tag}.kpis",
            topic_alert_outcomes=f"{tag}.alert-outcomes",
            topic_forecasts=f"{tag}.forecasts",
        )

    @property
    def output_topics(self) -> tuple[str, ...]:
        return (
            self.topic_dlq,
            self.topic_recommendations,
            self.topic_churn_alerts,
            self.topic_segments,
            self.topic_anomalies,
            self.topic_kpis,
            self.topic_alert_outcomes,
            self.topic_forecasts,
        )


def markdown_table() -> str:
    """The configuration table of the README, generated from the fields above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `{PREFIX}{f.name.upper()}` | `{f.default}` | {f.metadata['doc']} |")  # noqa: PERF401
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())  # noqa: T201
