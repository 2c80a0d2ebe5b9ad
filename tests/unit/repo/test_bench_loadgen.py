"""make bench's load generator (scripts/bench_loadgen.py): a latency run lasts the seconds it
was asked for, playing its file again with later event times and new ids."""

from __future__ import annotations

import doctest
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.support.scripts import load_script


def lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) + b"\n" for e in events]


# ids as `shopstream generate` writes them hold no "~", the separator of a pass's suffix
ids = st.text(st.characters(blacklist_characters="~", blacklist_categories=("Cs",)),
              min_size=1, max_size=8)  # fmt: skip
event = st.fixed_dictionaries(
    {
        "event_id": ids,
        "user_id": st.sampled_from(["u1", "u2", "u3", "ü4"]),
        "session_id": ids,
        "ts": st.integers(0, 2**41),
    }
)


@given(st.lists(event, min_size=1, max_size=12, unique_by=lambda e: e["event_id"]),
       st.integers(1, 40))  # fmt: skip
def test_passes_keep_users_and_partitions_and_move_time_forward(
    events: list[dict[str, Any]], limit: int
) -> None:
    loadgen = load_script("bench_loadgen")
    events.sort(key=lambda e: e["ts"])
    p = loadgen.prepare(lines(events), 4, limit)
    n = len(events)
    assert len(p) == limit
    assert len(set(p.ids)) == limit  # the worker drops an event id it has seen
    sent = [orjson.loads(v) for v in p.values]
    for i, obj in enumerate(sent):
        first = events[i % n]
        assert p.keys[i] == first["user_id"].encode() == obj["user_id"].encode()
        assert p.parts[i] == p.parts[i % n]  # same partition: same per-user order
        if i < n:  # the first pass is the file's own bytes
            assert p.values[i] == orjson.dumps(first)
        else:
            assert obj["session_id"] != first["session_id"]
    times = [obj["ts"] for obj in sent]
    assert times == sorted(times)  # event time only moves forward


def test_a_limit_within_the_file_sends_its_first_events_unchanged() -> None:
    loadgen = load_script("bench_loadgen")
    events = [{"event_id": f"e{i}", "user_id": "u1", "ts": i} for i in range(5)]
    p = loadgen.prepare([*lines(events), b"\n"], 2, 3)
    assert p.ids == ["e0", "e1", "e2"]


def test_doctests_of_the_bench_scripts() -> None:
    for name in ("bench_loadgen", "bench_report"):
        result = doctest.testmod(load_script(name))
        assert result.attempted and not result.failed, name
