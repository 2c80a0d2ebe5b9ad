"""Intake: splitting raw records into events and dead letters, grouping by partition."""

from __future__ import annotations

from streams.core.events import Event, Record
from streams.worker.intake import Clock, by_partition, dlq_headers, split

CLOCK = Clock(now_ms=1_709_283_600_000, max_future_ms=3_600_000)


def ev(offset: int, user: str = "u1", ts: int = 1_709_283_600_000, etype: str = "view") -> Event:
    return Event(f"e{offset}", etype, user, "s1", ts, item_id=f"i{offset}")  # type: ignore[arg-type]


def test_split_keeps_valid_and_explains_rejects() -> None:
    good = Record("t", 1, 10, b"u1", ev(10).to_json())
    bad = Record("t", 1, 11, b"u1", b"\x00garbage")
    valid, rejected = split([good, bad], CLOCK)
    assert [r.offset for r, _ in valid] == [10]
    assert [(r.offset, reason) for r, reason, _ in rejected] == [(11, "not_json")]
    headers = dict(dlq_headers(bad, "not_json", "detail"))
    assert headers == {
        "reason": b"not_json",
        "detail": b"detail",
        "source_topic": b"t",
        "source_partition": b"1",
        "source_offset": b"11",
    }


def test_by_partition_orders_by_offset() -> None:
    a, b, c = (Record("t", p, o, None, None) for p, o in [(0, 5), (1, 2), (0, 3)])
    groups = by_partition([(a, ev(5)), (b, ev(2)), (c, ev(3))])
    assert [o for o, _ in groups[("t", 0)]] == [3, 5]
    assert [o for o, _ in groups[("t", 1)]] == [2]


def test_pseudonymisation_replaces_the_user_id_before_anything_else() -> None:
    rec = Record("t", 0, 1, b"u1", ev(1).to_json())
    (_, plain), = split([rec], CLOCK)[0]
    (_, hidden), = split([rec], CLOCK, pseudonymise_key=b"secret")[0]
    assert plain.user_id == "u1"
    assert hidden.user_id.startswith("p_") and "u1" not in hidden.user_id
    assert hidden.session_id == plain.session_id and hidden.item_id == plain.item_id
