"""Replay's fault injection and producer split: deterministic, lossless, contract-breaking."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from streams.core.events import InvalidEvent
from streams.core.wire import parse_event
from streams.tools.faults import Faults, inject, malformed, shift_back
from streams.tools.generate import generate
from streams.tools.replay import ReplaySummary, task_of


def records(n_users: int = 6) -> list[tuple[bytes, bytes]]:
    events, _ = generate(users=n_users, seed=3, days=20)
    return [(e["user_id"].encode(), orjson.dumps(e)) for e in events]


def test_no_faults_is_the_identity() -> None:
    recs = records()
    out = list(inject(recs, Faults(), random.Random(0)))
    assert [(k, v) for k, v, _, _ in out] == recs
    assert {kind for *_, kind in out} == {""}


def test_same_seed_same_output_other_seed_differs() -> None:
    recs = records()
    faults = Faults(duplicates=0.1, out_of_order=0.1, late=0.1, malformed=0.1)
    one = list(inject(recs, faults, random.Random(5)))
    assert one == list(inject(recs, faults, random.Random(5)))
    assert one != list(inject(recs, faults, random.Random(6)))


def test_fractions_are_roughly_respected_and_nothing_is_lost() -> None:
    recs = records(12)
    faults = Faults(duplicates=0.05, out_of_order=0.05, late=0.05, malformed=0.05)
    out = list(inject(recs, faults, random.Random(1)))
    kinds = Counter(kind for *_, kind in out)
    n = len(recs)
    for kind in ("duplicate", "out_of_order", "malformed"):
        assert 0.02 * n < kinds[kind] < 0.09 * n, (kind, kinds[kind], n)
    # late events that were then held back are counted as out_of_order
    assert kinds["late"] > 0.02 * n
    assert len(out) == n + kinds["duplicate"]
    # every original record (or its disturbed replacement) leaves exactly once, plus duplicates
    assert Counter(k for k, *_ in out) == Counter(k for k, _ in recs) + Counter(
        k for k, _, _, kind in out if kind == "duplicate"
    )


def test_out_of_order_really_reorders_a_user() -> None:
    recs = records()
    out = list(inject(recs, Faults(out_of_order=0.2), random.Random(2)))
    assert sorted(v for _, v, _, _ in out) == sorted(v for _, v in recs)
    assert [v for _, v, _, _ in out] != [v for _, v in recs]
    by_user: dict[bytes, list[int]] = {}
    for key, value, _, _ in out:
        by_user.setdefault(key, []).append(orjson.loads(value)["ts"])
    assert any(ts != sorted(ts) for ts in by_user.values())


def test_malformed_records_break_the_contract() -> None:
    rng = random.Random(9)
    for _, value in records()[:300]:
        bad = malformed(value, rng)
        with pytest.raises(InvalidEvent):
            parse_event(bad)


def test_late_records_stay_valid_and_move_back() -> None:
    _, value = records()[1]
    late = shift_back(value, 5.0)
    assert parse_event(late).ts_ms == parse_event(value).ts_ms - 5 * 3_600_000
    iso = b'{"ts":"2024-03-01T10:00:00+01:00"}'
    assert orjson.loads(shift_back(iso, 0.5))["ts"] == "2024-03-01T09:30:00+01:00"


def test_producer_tasks_keep_each_user_on_one_task() -> None:
    keys = [f"u{i}".encode() for i in range(200)]
    tasks = {k: task_of(k, 4) for k in keys}
    assert tasks == {k: task_of(k, 4) for k in keys}  # stable across calls
    assert set(tasks.values()) == {0, 1, 2, 3}
    assert {task_of(k, 1) for k in keys} == {0}


def test_faults_reject_bad_fractions() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        Faults(duplicates=1.5)
    with pytest.raises(ValueError, match="max_delay"):
        Faults(max_delay=0)


def test_summary_reports_injected_counts() -> None:
    s = ReplaySummary(events=10, seconds=2.0)
    s.injected["late"] += 3
    d = s.as_dict()
    assert d["events_per_s"] == 5.0
    assert d["injected"] == {"duplicate": 0, "out_of_order": 0, "late": 3, "malformed": 0}
