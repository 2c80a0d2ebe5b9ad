"""Fuzzing as a habit (issue 13): arbitrary bytes, arbitrary JSON and extreme-but-valid
values through ``split()`` and through the real ``BatchProcessor.process``.

Properties: no exception escapes; every record is applied or on the DLQ with a known reason
and a detail (a valid event sent twice is applied once); and the good users' results (their
envelopes and every output about them) equal a run without the hostile records, cut into
the same batches. Valid hostile events go to a partition of their own (they may teach that
partition's models, as any valid event does); rejected ones are mixed into the good
partition.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st

from streams.core.events import MAX_TS_MS, MIN_TS_MS
from streams.core.settings import Settings
from streams.worker.intake import Clock, split
from tests.support.hostile import (
    GOOD,
    HOSTILE,
    NOW_MS,
    good_traffic,
    log_text,
    raw_with,
    run_batches,
)

SETTINGS = Settings(churn_min_labels=0)
CLOCK = Clock.from_settings(SETTINGS, NOW_MS)
TRAFFIC = good_traffic(users=6, seed=9, days=45)
USERS = {orjson.loads(v)["user_id"] for v in TRAFFIC}
#: README, "What goes in": every reason a dead letter may carry.
REASONS = {
    "empty", "oversize", "bad_utf8", "not_json", "not_object", "missing_field", "wrong_type",
    "unknown_type", "bad_number", "bad_ts", "absurd_ts", "future_ts", "stale_ts", "too_long",
    "too_deep", "bad_chars", "key_mismatch", "rate_limited", "decode_error", "processing_error",
}  # fmt: skip
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# --- strategies -------------------------------------------------------------------------
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**600), 10**600),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["\x00", "a\nb", "\x1b[31m", "\u202e", "\ud800", "x" * 300, "view",
                     "2099-01-01T00:00:00Z", "2024-03-01T10:00:00+01:00"]),
)  # fmt: skip
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
extreme = st.one_of(
    _scalars,
    st.sampled_from([0, 1, 10**400, -1, 1e308, 2**63, 2**53 + 1, MIN_TS_MS, MAX_TS_MS - 1,
                     NOW_MS + SETTINGS.max_future_ms, NOW_MS + SETTINGS.max_future_ms + 1,
                     SETTINGS.max_price, SETTINGS.max_quantity, SETTINGS.max_quantity + 1,
                     "\U0001f600" * 256, "\U0001f600" * 257, "e" * 1024]),
)  # fmt: skip
_fields = [*GOOD, "query", "category", "extra"]


def _mutated(field: str, value: Any) -> bytes:
    obj = {**GOOD, field: value}
    return json.dumps(obj).encode("utf-8", "surrogatepass")  # stdlib: huge ints, \ud800


def _deep(field: str, depth: int, nest: tuple[bytes, bytes]) -> bytes:
    return raw_with(field, nest[0] * depth + b"1" + nest[1] * depth)


records = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.builds(_mutated, st.sampled_from(_fields), extreme),
    st.builds(_mutated, st.sampled_from(_fields), json_values),
    st.builds(_deep, st.sampled_from(_fields), st.integers(1, 3000),
              st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")])),
    st.sampled_from([raw for _, raw, _ in HOSTILE]),
)  # fmt: skip


# --- split() ----------------------------------------------------------------------------
@given(st.lists(records, max_size=20))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_split_never_raises_and_rejects_with_a_known_reason(values: list[bytes]) -> None:
    from streams.core.events import Record

    recs = [Record("t", 0, i, b"h-user", v, NOW_MS) for i, v in enumerate(values)]
    valid, rejected = split(recs, CLOCK)
    assert len(valid) + len(rejected) == len(recs)
    for _, reason, detail in rejected:
        assert reason in REASONS and reason != "decode_error", (reason, detail)
        assert detail
    for _, event in valid:  # what is accepted is within every bound
        assert MIN_TS_MS <= event.ts_ms <= NOW_MS + SETTINGS.max_future_ms
        assert event.price is None or 0 <= event.price <= SETTINGS.max_price
        assert event.quantity is None or 0 <= event.quantity <= SETTINGS.max_quantity
        ids = (event.event_id, event.user_id, event.session_id, event.item_id, event.category)
        assert all(i is None or i.isprintable() for i in ids)


# --- the whole batch --------------------------------------------------------------------
@given(
    hostile=st.lists(st.tuples(records, st.integers(0, len(TRAFFIC))), max_size=12),
    batch_size=st.integers(1, 250),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_records_cost_no_good_record(
    hostile: list[tuple[bytes, int]], batch_size: int
) -> None:
    from streams.core.events import Record

    good = [(0, orjson.loads(v)["user_id"].encode(), v) for v in TRAFFIC]
    mixed: list[tuple[int, bytes | None, bytes | None]] = list(good)
    accepted: dict[str, set[str]] = {}
    for value, at in sorted(hostile, key=lambda h: -h[1]):
        (ok, _), = [split([Record("t", 0, 0, b"h-user", value, NOW_MS)], CLOCK)]
        if ok:  # a valid event: its own partition, never a good user's
            event = ok[0][1]
            if event.user_id in USERS:
                continue
            accepted.setdefault(event.user_id, set()).add(event.event_id)
        mixed.insert(at, (1 if ok else 0, b"h-user", value))
    batches = [mixed[i : i + batch_size] for i in range(0, len(mixed), batch_size)]
    clean_batches = [[r for r in b if r[1] != b"h-user"] for b in batches]
    tally(f"valid hostile events: {min(sum(map(len, accepted.values())), 3)}")
    dirty = asyncio.run(run_batches(SETTINGS, batches))
    clean = asyncio.run(run_batches(SETTINGS, clean_batches))

    assert dirty.for_users(USERS) == clean.for_users(USERS)
    dead = dirty.dlq()
    n_hostile = sum(1 for r in mixed if r[1] == b"h-user")
    n_rejected = n_hostile - sum(1 for r in mixed if r[1] == b"h-user" and r[0] == 1)
    assert all(p == 0 for p, _, _, _ in dead) and len(dead) == n_rejected
    for _, _, reason, detail in dead:
        assert reason in REASONS and reason not in ("decode_error", "processing_error")
        assert detail and not CONTROL.search(detail)
    for user, ids in accepted.items():  # every valid hostile event applied, once
        assert orjson.loads(dirty.table[user])["p"]["n_events"] == len(ids)
    for record in dirty.logs:
        assert not CONTROL.search(log_text(record)), log_text(record)
