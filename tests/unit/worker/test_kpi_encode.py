"""The business figures' batch encoding (``streams.worker.kpi_store.encode``) gives the same
bytes as the plain formulation it replaced (every record's source computed and sorted on,
the arm hashed per event), on arbitrary batches: several topics, incarnations, partitions,
offsets out of order and repeated, every event type."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.events import Event, Record
from streams.domain.kpis import kpi_record
from streams.domain.recommendations import rec_arm
from streams.worker.kpi_store import encode

TYPES = ["view", "add_to_cart", "purchase", "search", "session_start"]


def reference(
    valid: Sequence[tuple[Record, Event]],
    arm_of: Callable[[str], str] = lambda _: "",
    shown: Collection[str] = (),
) -> bytes:
    """The encoding as first written (before it was made cheaper per event)."""
    groups: dict[str, list[list[Any]]] = {}
    for rec, ev in sorted(valid, key=lambda re: (re[0].source, re[0].partition, re[0].offset)):
        row = kpi_record(rec.offset, ev, arm_of(ev.user_id), shown=ev.event_id in shown)
        if row is not None:
            groups.setdefault(f"{rec.source}:{rec.partition}", []).append(
                [*row, ev.user_id, ev.ts_ms]
            )
    return orjson.dumps(list(groups.items()))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[tuple[Record, Event]], set[str]]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        rec = Record(
            draw(st.sampled_from(["shop.events", "other", "shop.events@x"])),
            draw(st.integers(0, 3)),
            draw(st.integers(0, 30)),
            None,
            None,
            incarnation=draw(st.sampled_from(["", "f689bbe2", "00aa"])),
        )
        ev = Event(
            event_id=f"e{i}",
            type=draw(st.sampled_from(TYPES)),
            user_id=draw(st.sampled_from(["u1", "u2", "u3", "ü"])),
            session_id=draw(st.sampled_from(["s1", "s2"])),
            ts_ms=draw(st.integers(-(10**12), 10**13)),
            category=draw(st.sampled_from([None, "shoes", ""])),
            price=draw(st.sampled_from([None, 0.0, 19.99, 1e6])),
            quantity=draw(st.sampled_from([None, 1, 3])),
            rec_id=draw(st.sampled_from([None, "r1"])),
        )
        out.append((rec, ev))
    shown = {ev.event_id for _, ev in out if draw(st.booleans())}
    return out, shown


@settings(max_examples=300, deadline=None)
@given(batches(), st.sampled_from([0.0, 0.5, 1.0]))
def test_encode_gives_the_bytes_of_the_plain_formulation(
    batch: tuple[list[tuple[Record, Event]], set[str]], share: float
) -> None:
    valid, shown = batch
    arm_of = (lambda _: "") if share == 0.0 else (lambda uid: rec_arm(uid, share))
    assert encode(valid, arm_of, shown) == reference(valid, arm_of, shown)
