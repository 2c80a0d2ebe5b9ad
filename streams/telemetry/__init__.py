"""Operational telemetry: Prometheus metrics and the dashboard's short time series.

:class:`Telemetry` owns a private :class:`~prometheus_client.CollectorRegistry` (so tests and
several apps in one process never collide; the process, platform and garbage-collector
collectors that the default registry has are added to it, with ``shopstream_build_info``)
and ring buffers of wall-clock buckets (wall clock
is right here: this is about the running worker, not about the shop's event time). The agent
calls its ``on_*`` / ``set_*`` methods; :mod:`streams.web.dashboard` serves ``GET /metrics``
and ``GET /api/dashboard`` from it. A sensor: it imports only the core (the build info).

>>> now = [100.0]
>>> t = Telemetry(bucket_s=1.0, clock=lambda: now[0])
>>> t.on_batch(50, 0.02, {"view": 40, "purchase": 10}, kafka_timestamps=[99.5])
>>> t.on_dlq("not_json")
>>> now[0] = 101.2  # the bucket [100, 101) is closed: series show closed buckets only
>>> s = t.snapshot()
>>> s["totals"]["events_in"], s["totals"]["dlq"], s["series"]["events_per_s"]
(50, 1, [50.0])
>>> b"shopstream_events_in_total" in t.render()
True
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client import Counter as PCounter
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from streams.core.build import build_labels

log = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MAX_SAMPLES: Final = 2_000  # latency samples kept per bucket (enough for p99)
COUNTED: Final = ("events", "recs", "dlq", "alerts", "anomalies", "segment_changes", "bots")


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds (``None`` when empty).

    >>> _pct([0.001, 0.002, 0.003, 0.004], 0.5), _pct([], 0.5)
    (2.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(math.ceil(q * len(ordered)) - 1, 0))] * 1e3, 3)


def observe_many(hist: Histogram, values: Sequence[float]) -> None:
    """``hist.observe(v)`` for each of ``values``, with one increment per bucket: a batch's
    per-record latencies cost one bisection each instead of a locked increment of the sum
    and of a bucket (prometheus_client's ``observe``). Relies on the histogram's private
    ``_upper_bounds`` / ``_buckets`` / ``_sum`` (as in prometheus_client 0.26; checked
    against ``observe`` by ``tests/unit/test_telemetry.py``); without them it observes one
    by one.

    >>> from prometheus_client import CollectorRegistry
    >>> h = Histogram("x", "x", buckets=(1, 2), registry=CollectorRegistry())
    >>> observe_many(h, [0.5, 1.0, 1.5, 9.0])
    >>> [(s.labels.get("le"), s.value) for s in h.collect()[0].samples if s.name == "x_bucket"]
    [('1.0', 2.0), ('2.0', 3.0), ('+Inf', 4.0)]
    """
    bounds, buckets, total = (getattr(hist, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            hist.observe(v)
        return
    counts, added = [0] * len(bounds), 0.0
    for v in values:
        added += v
        if v == v:  # NaN: in no bucket, as with observe
            counts[bisect_left(bounds, v)] += 1  # the first bound >= v (the last is +Inf)
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    total.inc(added)


def _new_bucket(start: float) -> dict[str, Any]:
    return {"t": start, **dict.fromkeys(COUNTED, 0), "batch": [], "e2e": []}


class Telemetry:
    """Metrics registry + dashboard ring buffers. Methods are cheap and never raise."""

    def __init__(
        self, *, bucket_s: float = 2.0, points: int = 300, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket_s, self.clock = bucket_s, clock
        #: the last batch's start minus its oldest record's Kafka timestamp (None: no stamp)
        self.last_batch_wait_s: float | None = None
        self.registry = r = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)  # process_*, python_info, python_gc_* (stateless readers)
        p = "shopstream_"
        Info(p + "build", "Version of shopstream and of its stack.", registry=r).info(
            build_labels()
        )
        self.m_in = PCounter(
            p + "events_in", "Valid events consumed, by type.", ["type"], registry=r
        )
        self.m_out = PCounter(
            p + "messages_out", "Messages produced, by topic.", ["topic"], registry=r
        )
        self.m_dlq = PCounter(
            p + "dlq", "Records sent to the DLQ, by reason.", ["reason"], registry=r
        )
        self.m_batches = PCounter(p + "batches", "Batches processed.", registry=r)
        self.m_last_batch = Gauge(
            p + "last_batch_timestamp_seconds",
            "Unix time the last batch ended (alert when it stops moving while there is lag).",
            registry=r,
        )  # fmt: skip
        self.m_batch_s = Histogram(p + "batch_processing_seconds", "Processing time of one batch.",
                                   buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.m_stage = PCounter(
            p + "batch_stage_seconds", "Thread CPU time inside batch processing, by stage.",
            ["stage"], registry=r,
        )  # fmt: skip
        self.m_stage_wall = PCounter(
            p + "batch_stage_wall_seconds",
            "Wall time inside batch processing, by stage (CPU plus waits for Redis and Kafka).",
            ["stage"], registry=r,
        )  # fmt: skip
        self.m_batch_wait = Histogram(
            p + "batch_wait_seconds",
            "Start of a batch minus the Kafka timestamp of its oldest record: how long the "
            "batch's first event waited (producer, broker, fetch, the batches before it).",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.m_e2e = Histogram(p + "end_to_end_latency_seconds",
                               "Now minus the Kafka timestamp of each consumed record.",
                               buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.m_lag = Gauge(p + "consumer_lag", "Records behind the high watermark.", registry=r)
        self.m_part_lag = Gauge(
            p + "partition_lag", "Records behind the high watermark, per source partition.",
            ["topic", "partition"], registry=r,
        )  # fmt: skip
        self.m_retention = PCounter(
            p + "retention_removed", "Inactive users removed and stale items evicted.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.m_profiles = Gauge(
            p + "profiles", "Profiles in this worker's table (at the last retention sweep).",
            registry=r,
        )
        self.m_stalls = PCounter(
            p + "commit_stalls",
            "Offset commits found stalled (and repaired by seeking back); should stay 0.",
            registry=r,
        )
        self.m_erased = PCounter(
            p + "erased_dropped",
            "Records of forgotten users delivered again and dropped at their erasure fence "
            "(kind: event, or rejected: a record that would have gone to the DLQ again).",
            ["kind"], registry=r,
        )  # fmt: skip
        self.m_auc = Gauge(p + "model_auc", "Online (prequential) ROC AUC.", ["model"], registry=r)
        self.m_logloss = Gauge(p + "model_log_loss", "Online log loss.", ["model"], registry=r)
        self.m_brier = Gauge(p + "model_brier", "Online Brier score.", ["model"], registry=r)
        self.m_precision = Gauge(p + "model_precision",
                                 "Online precision at the alert threshold.", ["model"], registry=r)
        self.m_recall = Gauge(p + "model_recall", "Online recall at the alert threshold.",
                              ["model"], registry=r)  # fmt: skip
        self.m_champions = Gauge(
            p + "churn_champion_partitions",
            "Partitions whose churn alerts come from this scorer (analytic or model).",
            ["scorer"], registry=r,
        )  # fmt: skip
        self.m_alerts = PCounter(p + "churn_alerts", "Churn alerts published.", registry=r)
        self.m_stale = PCounter(
            p + "churn_alerts_stale",
            "Churn alerts not published: older than SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS "
            "(history being imported).", registry=r,
        )  # fmt: skip
        self.m_outcomes = PCounter(
            p + "alert_outcomes", "Churn alert outcomes published, by group and whether the "
            "customer bought again within the horizon.", ["group", "returned"], registry=r,
        )  # fmt: skip
        self.m_outcome_money = PCounter(
            p + "alert_outcome_money", "Alert outcomes: revenue of the alerted customers' "
            "purchases within the horizon, and the discount their coupons cost, by group.",
            ["group", "kind"], registry=r,
        )  # fmt: skip
        self.m_rec_arm = PCounter(
            p + "recommendations_by_arm", "Recommendations published, by experiment arm.",
            ["arm"], registry=r,
        )  # fmt: skip
        self.m_rec_feedback = PCounter(
            p + "rec_feedback", "Events carrying a rec_id (feedback on a recommendation) "
            "this worker applied, by arm and event type; exact figures: GET /experiments.",
            ["arm", "type"], registry=r,
        )  # fmt: skip
        self.m_rec_revenue = PCounter(
            p + "rec_attributed_revenue", "Revenue of purchases carrying a rec_id this "
            "worker applied, by arm.", ["arm"], registry=r,
        )  # fmt: skip
        self.m_anom = PCounter(p + "anomalies", "Anomalies flagged, by kind.", ["kind"], registry=r)
        self.m_seg = PCounter(p + "segment_changes", "Segment changes, by new segment.",
                              ["segment"], registry=r)  # fmt: skip
        self.m_seg_users = Gauge(p + "segment_users", "Users per segment.", ["segment"], registry=r)
        self.m_skipped = PCounter(
            p + "skipped_records",
            "Records the consumer never handed to the agent (offset gaps); should stay 0.",
            registry=r,
        )
        self.m_refused = PCounter(
            p + "model_state_refused",
            "Model checkpoints and hand-over bundles refused (older pickle format, tampered, "
            "unreadable); the models start fresh or keep their own copy.",
            ["source"], registry=r,
        )  # fmt: skip
        self.m_retries = PCounter(
            p + "redis_retries", "Redis calls retried, by error.", ["error"], registry=r
        )
        self.m_batch_fail = PCounter(
            p + "batch_failures",
            "Batches that failed unexpectedly (the worker stops; redelivered on restart).",
            registry=r,
        )
        self.m_ckpt_fail = PCounter(
            p + "checkpoint_failures", "Model checkpoints that could not be written.",
            registry=r,
        )  # fmt: skip
        self.m_redis_err = PCounter(
            p + "redis_errors", "Redis errors (retried or not).", registry=r
        )
        self.started = clock()
        self.buckets: deque[dict[str, Any]] = deque(maxlen=points)
        self.cur = _new_bucket(self._start_of(self.started))
        self.totals: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.dlq_reasons: Counter[str] = Counter()
        self.anomaly_kinds: Counter[str] = Counter()
        self.segments: Counter[str] = Counter()
        self.lag: int | None = None
        self.quality: dict[str, float | None] = {"auc": None, "logloss": None}
        self.churn: dict[str, Any] = {}
        self.latest_alerts: deque[dict[str, Any]] = deque(maxlen=20)
        self.latest_anomalies: deque[dict[str, Any]] = deque(maxlen=20)

    # --- buckets ------------------------------------------------------------------------
    def _start_of(self, now: float) -> float:
        return math.floor(now / self.bucket_s) * self.bucket_s

    def _bucket(self) -> dict[str, Any]:
        start = self._start_of(self.clock())
        if start > self.cur["t"]:
            self._close(self.cur)
            idle = min(round((start - self.cur["t"]) / self.bucket_s) - 1, self.buckets.maxlen or 0)
            for i in range(idle, 0, -1):  # idle periods show as zeros, not as gaps
                self._close(_new_bucket(start - i * self.bucket_s))
            self.cur = _new_bucket(start)
        return self.cur

    def _close(self, b: dict[str, Any]) -> None:
        b["lag"], b["auc"], b["logloss"] = self.lag, self.quality["auc"], self.quality["logloss"]
        self.buckets.append(b)

    # --- what the agent calls -----------------------------------------------------------
    def on_stages(
        self, seconds: Mapping[str, float], wall: Mapping[str, float] | None = None
    ) -> None:
        """Thread CPU time of each stage of one batch (``shopstream_batch_stage_seconds_total``;
        :class:`streams.telemetry.measure.StageClock`) and its wall time
        (``shopstream_batch_stage_wall_seconds_total``: the difference is waiting)."""
        for stage, secs in seconds.items():
            self.m_stage.labels(stage).inc(secs)
        for stage, secs in (wall or {}).items():
            self.m_stage_wall.labels(stage).inc(secs)

    def on_batch(
        self,
        n_events: int,
        seconds: float,
        by_type: Mapping[str, int],
        kafka_timestamps: Sequence[float | None] = (),
    ) -> None:
        """One processed batch, ended now: its size, duration, valid events by type and
        record timestamps (unix seconds; the oldest one's wait until the batch started)."""
        b = self._bucket()
        now = self.clock()
        b["events"] += n_events
        self.totals["events_in"] += n_events
        self.m_batches.inc()
        self.m_batch_s.observe(seconds)
        self.m_last_batch.set(now)
        if len(b["batch"]) < MAX_SAMPLES:
            b["batch"].append(seconds)
        for etype, n in by_type.items():
            self.m_in.labels(etype).inc(n)
            self.by_type[etype] += n
        stamps = [ts for ts in kafka_timestamps if ts is not None and ts > 0]
        delays = [max(now - ts, 0.0) for ts in stamps]
        observe_many(self.m_e2e, delays)
        self.last_batch_wait_s = None
        if stamps:  # the batch started at now - seconds
            self.last_batch_wait_s = max(now - seconds - min(stamps), 0.0)
            self.m_batch_wait.observe(self.last_batch_wait_s)
        room = MAX_SAMPLES - len(b["e2e"])
        if room > 0:
            b["e2e"] += delays[:room]

    def _out(self, topic: str, n: int, field: str) -> None:
        self.m_out.labels(topic).inc(n)
        self._bucket()[field] += n
        self.totals[field] += n

    def on_dlq(self, reason: str) -> None:
        self.m_dlq.labels(reason).inc()
        self.dlq_reasons[reason] += 1
        self._out("dlq", 1, "dlq")

    def on_recommendations(self, n: int) -> None:
        self._out("recommendations", n, "recs")

    def on_alert(self, alert: Mapping[str, Any]) -> None:
        """A published churn alert (the ``shop.churn-alerts`` payload)."""
        self.m_alerts.inc()
        self._out("churn_alerts", 1, "alerts")
        keep = ("alert_id", "user_id", "probability", "segment", "ts")
        row = {k: alert.get(k) for k in keep}
        row["reasons"] = list(alert.get("reasons") or [])[:3]
        self.latest_alerts.appendleft(row)

    def on_rec_arm(self, arm: str) -> None:
        """A published recommendation of ``arm``."""
        self.m_rec_arm.labels(arm).inc()

    def on_rec_feedback(self, arm: str, etype: str, revenue: float) -> None:
        """An applied event carrying a ``rec_id`` (``revenue``: a purchase's)."""
        self.m_rec_feedback.labels(arm, etype).inc()
        if revenue:
            self.m_rec_revenue.labels(arm).inc(revenue)

    def on_outcome(self, o: Mapping[str, Any]) -> None:
        """A published alert outcome (the ``shop.alert-outcomes`` payload)."""
        group = str(o.get("group"))
        self.m_outcomes.labels(group, str(bool(o.get("returned"))).lower()).inc()
        self.m_outcome_money.labels(group, "revenue").inc(float(o.get("revenue") or 0.0))
        self.m_outcome_money.labels(group, "discount").inc(float(o.get("discount_cost") or 0.0))
        self.m_out.labels("alert_outcomes").inc()

    def on_stale_alerts(self, n: int) -> None:
        """Alerts too old to publish (``shopstream_churn_alerts_stale_total``)."""
        self.m_stale.inc(n)
        self.totals["stale_alerts"] += n

    def on_anomaly(self, a: Mapping[str, Any]) -> None:
        """A published anomaly (the ``shop.anomalies`` payload)."""
        kind = str(a.get("kind", "unknown"))
        self.m_anom.labels(kind).inc()
        self.anomaly_kinds[kind] += 1
        self._out("anomalies", 1, "anomalies")
        if kind == "bot":
            self._bucket()["bots"] += 1
        self.latest_anomalies.appendleft(dict(a))

    def on_segment(self, change: Mapping[str, Any]) -> None:
        """A published segment change (the ``shop.segments`` payload)."""
        new, old = str(change.get("segment")), change.get("previous")
        self.m_seg.labels(new).inc()
        self._out("segments", 1, "segment_changes")
        if old is not None and self.segments[str(old)] > 0:
            self.segments[str(old)] -= 1
            self.m_seg_users.labels(str(old)).set(self.segments[str(old)])
        self.segments[new] += 1
        self.m_seg_users.labels(new).set(self.segments[new])

    def set_segment_sizes(self, sizes: Mapping[str, int]) -> None:
        """Authoritative sizes (e.g. ``SegmentModel.segment_sizes()``), replacing the tally."""
        for name in set(self.segments) | set(sizes):
            self.m_seg_users.labels(name).set(sizes.get(name, 0))
        self.segments = Counter(dict(sizes))

    def on_skipped_records(self, n: int) -> None:
        self.m_skipped.inc(n)

    def on_state_refused(self, source: str) -> None:
        """A checkpoint (``source="checkpoint"``) or hand-over bundle was refused."""
        self.m_refused.labels(source).inc()

    def on_redis_retry(self, exc: BaseException | None = None, kind: str = "") -> None:
        self.m_retries.labels(kind or (type(exc).__name__ if exc else "unknown")).inc()
        self.m_redis_err.inc()
        self.totals["redis_retries"] += 1

    def on_batch_failure(self) -> None:
        self.m_batch_fail.inc()

    def on_checkpoint_failure(self) -> None:
        self.m_ckpt_fail.inc()

    def on_redis_error(self, exc: BaseException | None = None) -> None:
        self.m_redis_err.inc()
        self.totals["redis_errors"] += 1

    def set_lag(self, n: int) -> None:
        self.lag = max(int(n), 0)
        self.m_lag.set(self.lag)

    def set_partition_lags(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Lag of each source partition of a batch (``shopstream_partition_lag``) and their
        total (``shopstream_consumer_lag``)."""
        for (topic, partition), n in lags.items():
            self.m_part_lag.labels(topic, str(partition)).set(n)
        self.set_lag(sum(lags.values()))

    def on_retention(self, users: int, items: int) -> None:
        self.m_retention.labels("users").inc(users)
        self.m_retention.labels("items").inc(items)

    def set_profiles(self, n: int) -> None:
        self.m_profiles.set(n)

    def on_commit_stall(self) -> None:
        self.m_stalls.inc()

    def on_erased_dropped(self, events: int, rejected: int) -> None:
        self.m_erased.labels("event").inc(events)
        self.m_erased.labels("rejected").inc(rejected)

    def set_model_quality(
        self, auc: float | None, logloss: float | None, model: str = "churn"
    ) -> None:
        for key, value, gauge in (("auc", auc, self.m_auc), ("logloss", logloss, self.m_logloss)):
            if value is not None and math.isfinite(value):
                if model == "churn":
                    self.quality[key] = round(float(value), 5)
                gauge.labels(model).set(value)

    def set_churn_quality(self, m: Mapping[str, Any]) -> None:
        """The churn scorers' quality (``ModelSet.churn_metrics()``): ``model="churn"`` is what
        alerts use (each partition's champion), ``churn-analytic`` and ``churn-learned`` the
        two scorers on the same delayed labels."""
        scorers = {"churn": "champion", "churn-analytic": "analytic", "churn-learned": "model"}
        for label, key in scorers.items():
            q = m.get(key) or {}
            for gauge, field in ((self.m_brier, "brier"), (self.m_precision, "precision"),
                                 (self.m_recall, "recall")):  # fmt: skip
                value = q.get(field)
                if value is not None and math.isfinite(value):
                    gauge.labels(label).set(value)
            self.set_model_quality(q.get("auc"), q.get("log_loss"), model=label)
        champion = m.get("champion") or {}
        self.quality = {
            "auc": _rounded(champion.get("auc")), "logloss": _rounded(champion.get("log_loss")),
        }  # fmt: skip
        champions = dict(m.get("champions") or {})
        for scorer in ("analytic", "model"):
            self.m_champions.labels(scorer).set(champions.get(scorer, 0))
        self.churn = {
            "champions": champions,
            "scorers": {k: {f: _rounded(v) for f, v in (m.get(k) or {}).items()}
                        for k in ("analytic", "model")},
        }  # fmt: skip

    # --- what the views read ------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return bytes(generate_latest(self.registry))

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state for the dashboard: totals, closed-bucket series, latest rows."""
        self._bucket()
        rows = list(self.buckets)
        per_s = 1.0 / self.bucket_s
        series: dict[str, list[Any]] = {
            "t": [b["t"] for b in rows],
            "events_per_s": [b["events"] * per_s for b in rows],
            "recs_per_s": [b["recs"] * per_s for b in rows],
            "dlq_per_s": [b["dlq"] * per_s for b in rows],
            "batch_p50_ms": [_pct(b["batch"], 0.5) for b in rows],
            "batch_p99_ms": [_pct(b["batch"], 0.99) for b in rows],
            "e2e_p50_ms": [_pct(b["e2e"], 0.5) for b in rows],
            "e2e_p99_ms": [_pct(b["e2e"], 0.99) for b in rows],
            "lag": [b["lag"] for b in rows],
            "auc": [b["auc"] for b in rows],
            "logloss": [b["logloss"] for b in rows],
        }
        for name in ("alerts", "anomalies", "segment_changes", "bots"):
            series[name] = [b[name] for b in rows]
        return {
            "now": self.clock(),
            "uptime_s": round(self.clock() - self.started, 1),
            "bucket_s": self.bucket_s,
            "totals": {k: self.totals[k]
                       for k in ("events_in", *COUNTED[1:], "redis_retries", "stale_alerts")},
            "events_by_type": dict(self.by_type),
            "dlq_by_reason": dict(self.dlq_reasons),
            "anomalies_by_kind": dict(self.anomaly_kinds),
            "segments": {k: v for k, v in sorted(self.segments.items()) if v > 0},
            "lag": self.lag,
            "model": dict(self.quality),
            "churn": self.churn,
            "series": series,
            "latest_alerts": list(self.latest_alerts),
            "latest_anomalies": list(self.latest_anomalies),
        }


CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4


def _rounded(v: Any) -> Any:
    """Finite floats rounded for JSON, NaN and infinities as ``None``, the rest unchanged."""
    if isinstance(v, float):
        return round(v, 5) if math.isfinite(v) else None
    return v
