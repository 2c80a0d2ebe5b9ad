"""Telemetry: Prometheus exposition, dashboard series, and the HTTP views (fake web layer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from streams.telemetry import CONTENT_TYPE, LATENCY_BUCKETS, Telemetry, observe_many
from streams.telemetry.measure import consumer_lag
from streams.web import dashboard


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def samples(t: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(t.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def busy(t: Telemetry, clock: Clock) -> None:
    stamps = [clock.t - 0.2] * 99 + [clock.t - 0.75]  # the oldest waited 0.7 s for its batch
    t.on_batch(100, 0.05, {"view": 80, "purchase": 20}, stamps)  # started at clock.t - 0.05
    t.on_dlq("not_json")
    t.on_dlq("bad_ts")
    t.on_recommendations(30)
    t.on_alert(
        {
            "alert_id": "a1",
            "user_id": "u1",
            "probability": 0.8,
            "segment": "at_risk",
            "ts": 5,
            "reasons": [{"feature": f"f{i}", "contribution": 0.1} for i in range(5)],
        }
    )
    t.on_anomaly(
        {
            "anomaly_id": "x",
            "user_id": "b1",
            "kind": "bot",
            "score": 0.9,
            "reason": "fast",
            "event_id": "e",
            "ts": 5,
        }
    )
    t.on_segment({"user_id": "u1", "segment": "loyal", "previous": None})
    t.on_segment({"user_id": "u1", "segment": "at_risk", "previous": "loyal"})
    t.on_redis_retry(ConnectionError("down"), "ConnectionError")
    t.set_lag(42)
    t.set_model_quality(0.81, 0.45)


def test_metrics_parse_as_prometheus_text_with_the_expected_values() -> None:
    clock = Clock()
    t = Telemetry(clock=clock)
    busy(t, clock)
    s = samples(t)
    assert s[("shopstream_events_in_total", (("type", "view"),))] == 80
    assert s[("shopstream_dlq_total", (("reason", "not_json"),))] == 1
    assert s[("shopstream_messages_out_total", (("topic", "recommendations"),))] == 30
    assert s[("shopstream_messages_out_total", (("topic", "dlq"),))] == 2
    assert s[("shopstream_consumer_lag", ())] == 42
    assert s[("shopstream_model_auc", (("model", "churn"),))] == pytest.approx(0.81)
    assert s[("shopstream_model_log_loss", (("model", "churn"),))] == pytest.approx(0.45)
    assert s[("shopstream_churn_alerts_total", ())] == 1
    assert s[("shopstream_anomalies_total", (("kind", "bot"),))] == 1
    assert s[("shopstream_segment_users", (("segment", "at_risk"),))] == 1
    assert s[("shopstream_segment_users", (("segment", "loyal"),))] == 0
    assert s[("shopstream_redis_retries_total", (("error", "ConnectionError"),))] == 1
    t.on_state_refused("checkpoint")
    t.on_state_refused("handover")
    t.on_state_refused("handover")
    s = samples(t)
    assert s[("shopstream_model_state_refused_total", (("source", "handover"),))] == 2
    assert s[("shopstream_model_state_refused_total", (("source", "checkpoint"),))] == 1
    assert s[("shopstream_batch_processing_seconds_count", ())] == 1
    assert s[("shopstream_last_batch_timestamp_seconds", ())] == clock.t  # the batch's end
    assert s[("shopstream_end_to_end_latency_seconds_count", ())] == 100
    assert s[("shopstream_end_to_end_latency_seconds_bucket", (("le", "0.25"),))] == 99
    assert s[("shopstream_batch_wait_seconds_count", ())] == 1  # one per batch: its oldest
    assert s[("shopstream_batch_wait_seconds_sum", ())] == pytest.approx(0.7)
    assert "version=0.0.4" in CONTENT_TYPE


def test_registries_are_private_to_each_instance() -> None:
    a, b = Telemetry(), Telemetry()
    a.on_recommendations(3)
    key = ("shopstream_messages_out_total", (("topic", "recommendations"),))
    assert key not in samples(b)
    assert samples(a)[key] == 3


def test_snapshot_series_buckets_and_latest_rows() -> None:
    clock = Clock(1_000.0)
    t = Telemetry(bucket_s=2.0, clock=clock)
    busy(t, clock)
    clock.t = 1_002.5  # closes [1000, 1002)
    t.on_batch(10, 0.01, {"view": 10})
    clock.t = 1_010.1  # closes [1002, 1004) and shows [1004..1008] as idle zeros
    snap = t.snapshot()
    ser = snap["series"]
    assert ser["t"] == [1000.0, 1002.0, 1004.0, 1006.0, 1008.0]
    assert ser["events_per_s"] == [50.0, 5.0, 0.0, 0.0, 0.0]
    assert ser["recs_per_s"][0] == 15.0
    assert ser["e2e_p50_ms"][0] == pytest.approx(200.0)
    assert ser["batch_p99_ms"][:3] == [50.0, 10.0, None]
    assert ser["lag"] == [42] * 5 and ser["auc"][0] == 0.81
    assert ser["alerts"][0] == 1 and ser["anomalies"][0] == 1 and ser["bots"][0] == 1
    assert snap["totals"]["events_in"] == 110 and snap["totals"]["dlq"] == 2
    assert snap["dlq_by_reason"] == {"not_json": 1, "bad_ts": 1}
    assert snap["segments"] == {"at_risk": 1}
    assert len(snap["latest_alerts"][0]["reasons"]) == 3
    assert snap["latest_anomalies"][0]["kind"] == "bot"
    assert orjson.loads(orjson.dumps(snap)) == snap  # JSON-safe


def test_ring_buffer_is_bounded_and_quality_ignores_nan() -> None:
    clock = Clock(0.0)
    t = Telemetry(bucket_s=1.0, points=10, clock=clock)
    for i in range(100):
        clock.t = float(i)
        t.on_batch(1, 0.001, {"view": 1})
    t.set_model_quality(float("nan"), None)
    snap = t.snapshot()
    assert len(snap["series"]["t"]) == 10
    assert snap["model"] == {"auc": None, "logloss": None}
    t.set_segment_sizes({"loyal": 5, "champions": 2})
    assert t.snapshot()["segments"] == {"champions": 2, "loyal": 5}


def test_consumer_lag_sums_partitions_and_skips_unknown_watermarks() -> None:
    hw = {"p0": 10, "p1": 5, "p2": None}
    assert consumer_lag(hw.get, {"p0": 4, "p1": 9, "p2": 3}) == 5


class FakeApp:
    def __init__(self) -> None:
        self.pages: dict[str, Callable[..., Any]] = {}

    def page(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.pages[path] = fn
            return fn

        return deco


class FakeWeb:
    def bytes(self, value: bytes, **kw: Any) -> Any:
        return ("bytes", value, kw)

    def json(self, value: Any, **kw: Any) -> Any:
        return ("json", orjson.loads(orjson.dumps(value)), kw)

    def html(self, value: str, **kw: Any) -> Any:
        return ("html", value, kw)


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def popular(self, k: int) -> list[tuple[str, float]]:
        if self.fail:
            raise ConnectionError("redis down")
        return [("a", 9.0), ("b", 5.0), ("c", 1.0)][:k]

    async def similar(self, item: str, k: int) -> list[tuple[str, float]]:
        return {"a": [("b", 0.8)], "b": [("a", 0.6), ("c", 0.3)]}.get(item, [])[:k]


def fake_shop(store: FakeStore) -> Any:
    return SimpleNamespace(app=FakeApp(), runtime=SimpleNamespace(store=store))


NO_QUERY = SimpleNamespace(query={})  # a request without ?from=&to=


async def test_views_serve_metrics_dashboard_json_and_page() -> None:
    clock = Clock()
    t = Telemetry(clock=clock)
    busy(t, clock)
    shop = fake_shop(FakeStore())
    dashboard.register(shop, t)
    web = FakeWeb()
    kind, body, kw = await shop.app.pages["/metrics"](web, None)
    assert kw["headers"]["Content-Type"] == CONTENT_TYPE
    assert any(
        f.name == "shopstream_events_in" for f in text_string_to_metric_families(body.decode())
    )
    kind, snap, _ = await shop.app.pages["/api/dashboard"](web, NO_QUERY)
    assert snap["trending"][0] == {"item_id": "a", "score": 9.0}
    assert snap["pairs"][0] == {"a": "a", "b": "b", "score": 0.8}
    assert snap["segment_labels"]["cant_lose"] == "Can't lose them"
    assert snap["totals"]["events_in"] == 100
    kind, html, _ = await shop.app.pages["/dashboard"](web, None)
    assert kind == "html" and "/api/dashboard" in html


async def test_dashboard_api_survives_a_redis_outage() -> None:
    t = Telemetry()
    shop = fake_shop(FakeStore(fail=True))
    dashboard.register(shop, t)
    _, snap, _ = await shop.app.pages["/api/dashboard"](FakeWeb(), NO_QUERY)
    assert snap["trending"] == [] and "redis down" in snap["store_error"]
    assert "error" in snap["business"]  # the business panels say so too, never raise


def test_churn_quality_of_both_scorers_and_stale_alerts_reach_metrics_and_dashboard() -> None:
    """What ``ModelSet.churn_metrics()`` says becomes gauges per scorer (``model="churn"`` is
    what alerts use), the champions per scorer, and the dashboard's churn card; alerts held
    back from a backfill are counted."""
    t = Telemetry()
    nan = float("nan")
    q = {"auc": 0.7, "log_loss": 0.6, "brier": 0.2, "precision": 0.5, "recall": nan,
         "labels": 800.0}  # fmt: skip
    t.set_churn_quality({
        "analytic": q, "model": {**q, "auc": 0.65}, "champion": q,
        "champions": {"analytic": 3, "model": 1},
    })  # fmt: skip
    t.on_stale_alerts(4)
    families = {f.name: f for f in text_string_to_metric_families(t.render().decode())}
    auc = {s.labels["model"]: s.value for s in families["shopstream_model_auc"].samples}
    assert auc == {"churn": 0.7, "churn-analytic": 0.7, "churn-learned": 0.65}
    recall = [s for s in families["shopstream_model_recall"].samples]
    assert recall == []  # a NaN is never exported
    champions = {s.labels["scorer"]: s.value
                 for s in families["shopstream_churn_champion_partitions"].samples}  # fmt: skip
    assert champions == {"analytic": 3.0, "model": 1.0}
    assert families["shopstream_churn_alerts_stale"].samples[0].value == 4.0
    snap = t.snapshot()
    assert snap["totals"]["stale_alerts"] == 4 and snap["model"]["auc"] == 0.7
    assert snap["churn"]["scorers"]["model"]["auc"] == 0.65
    assert snap["churn"]["scorers"]["analytic"]["recall"] is None


def _histogram_samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for s in h.collect()[0].samples
            if not s.name.endswith("_created")}  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.one_of(
    st.floats(-1, 20), st.sampled_from([*LATENCY_BUCKETS, math.inf, math.nan, 1e308])
), max_size=60))  # fmt: skip
def test_observe_many_counts_as_observing_one_by_one(values: list[float]) -> None:
    """Every bucket (a value on a bound counts in it; NaN in none) and the count as
    ``observe`` per value; the sum to rounding; and it uses the batched path (the private
    fields exist)."""
    one, many = (Histogram("x", "x", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
                 for _ in range(2))  # fmt: skip
    for v in values:
        one.observe(v)
    observe_many(many, values)
    a, b = _histogram_samples(one), _histogram_samples(many)
    sa, sb = a.pop(("x_sum", "")), b.pop(("x_sum", ""))
    assert (math.isnan(sa) and math.isnan(sb)) or sa == pytest.approx(sb, rel=1e-12, abs=1e-12)
    assert a == b
    assert hasattr(many, "_buckets") and hasattr(many, "_upper_bounds") and hasattr(many, "_sum")


@given(
    st.lists(st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False)), max_size=20),
    st.floats(0.0, 1e4, allow_nan=False),
)
def test_a_batch_of_any_timestamps_records_its_oldest_wait_once(
    stamps: list[float | None], seconds: float
) -> None:
    """Hostile producer clocks (none, zero, negative, years ahead or behind): one wait per
    batch with a real timestamp, its start (now - seconds) minus the oldest, never negative."""
    clock = Clock(1_700_000_000.0)
    t = Telemetry(clock=clock)
    t.on_batch(len(stamps), seconds, {"view": len(stamps)}, stamps)
    s = samples(t)
    real = [x for x in stamps if x is not None and x > 0]
    assert s[("shopstream_batch_wait_seconds_count", ())] == (1 if real else 0)
    expected = max(clock.t - seconds - min(real), 0.0) if real else 0.0
    assert s[("shopstream_batch_wait_seconds_sum", ())] == pytest.approx(expected)
    # the slow-batch log line reads the same figure (streams.worker.batch)
    assert t.last_batch_wait_s == (pytest.approx(expected) if real else None)
