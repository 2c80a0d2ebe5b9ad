"""Hostile records and the harness that runs them through the real BatchProcessor.

The records are the class of problem of issue 13 (each named by the rule it breaks), used by
the unit property tests (in-memory I/O, ``tests/support/fakes.py``) and by the integration
test through Kafka. :func:`run_batches` replays batches with and without the hostile records
at the same batch boundaries, so the good users' results can be compared exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.events import MAX_TS_MS
from streams.core.settings import Settings
from streams.tools.generate import generate
from tests.support.fakes import fake_shop, message, new_processor, topic_of

NOW_MS = int(time.time() * 1000)
GOOD = {"event_id": "h-0", "type": "purchase", "user_id": "h-user", "session_id": "h-s",
        "item_id": "h-item", "price": 9.5, "quantity": 1, "ts": 1_709_283_600_000}  # fmt: skip


def obj(**changes: Any) -> bytes:
    return orjson.dumps({k: v for k, v in {**GOOD, **changes}.items() if v is not ...})


def raw_with(field: str, literal: bytes) -> bytes:
    """A good record with ``field`` set to a raw JSON literal (what orjson cannot write)."""
    head = orjson.dumps({k: v for k, v in GOOD.items() if k != field})[:-1]
    return head + b',"' + field.encode() + b'":' + literal + b"}"


#: (name, record value, the DLQ reasons it may get) — one per hostile class.
HOSTILE: list[tuple[str, bytes, set[str]]] = [
    ("price 1e308, quantity 2 (issue case 1)", obj(price=1e308, quantity=2), {"bad_number"}),
    ("price x quantity above the limit", obj(price=999_999.0, quantity=9_999), {"bad_number"}),
    ("quantity 2^60", obj(quantity=2**60), {"bad_number"}),
    ("price 1e400 (no double holds it)", raw_with("price", b"1e400"), {"bad_number"}),
    ("ts of 400 digits (case 2)", raw_with("ts", b"9" * 400), {"bad_number", "bad_ts"}),
    ("ts of 4300 digits (case 2)", raw_with("ts", b"7" * 4300), {"bad_number", "bad_ts"}),
    ("quantity of 5000 digits", raw_with("quantity", b"3" * 5000), {"bad_number"}),
    ("an unknown field nested 1000 deep (case 3)",
     raw_with("x", b'{"a":' * 1000 + b"1" + b"}" * 1000), {"too_deep"}),
    ("arrays nested 3000 deep", raw_with("x", b"[" * 3000 + b"]" * 3000), {"too_deep"}),
    ("a view dated 2099 (case 4)", obj(type="view", ts=MAX_TS_MS - 86_400_000), {"future_ts"}),
    ("ts as a 10 MB-style ISO string", obj(ts="2024-03-01T10:00:00" + "0" * 500 + "+00:00"),
     {"bad_ts"}),
    ("NUL inside the item id (case 5)", obj(item_id="i1\u0000i2"), {"bad_chars"}),
    ("newline + ANSI escape in the user id (case 5)",
     obj(user_id="u1\nERROR forged \u001b[31m"), {"bad_chars"}),
    ("bidi override in the session id", obj(session_id="s\u202e1"), {"bad_chars"}),
    ("lone surrogate in the event id", raw_with("event_id", b'"\\ud800"'),
     {"bad_chars", "not_json"}),
    ("control character in the query", obj(type="search", query="red\u0007shoes"),
     {"bad_chars"}),
    ("NaN literal", raw_with("price", b"NaN"), {"not_json"}),
    ("negative zero quantity as float", obj(quantity=-0.5), {"bad_number", "wrong_type"}),
    ("boolean ts", obj(ts=True), {"bad_ts"}),
    ("ts before 2000", obj(ts=0), {"absurd_ts"}),
    ("an id of 100k characters", obj(user_id="u" * 100_000), {"too_long", "oversize"}),
    ("bytes of a zip bomb header", b"PK\x03\x04" + b"\x00" * 64, {"bad_utf8", "not_json"}),
    ("empty object", b"{}", {"missing_field"}),
    ("a JSON string", b'"\\u0000"', {"not_object"}),
]


def good_traffic(users: int = 8, seed: int = 5, days: int = 60) -> list[bytes]:
    events, _ = generate(users=users, seed=seed, days=days)
    return [orjson.dumps(e) for e in events]


@dataclass
class Run:
    """What one run produced, per topic (key, value, headers), and the table."""

    table: dict[str, bytes]
    out: dict[str, list[tuple[Any, Any, Any]]]
    logs: list[logging.LogRecord] = field(default_factory=list)
    learned: list[tuple[str, int, str]] = field(default_factory=list)  # what Redis learned

    def for_users(self, users: set[str]) -> dict[str, Any]:
        """Everything of ``users``: their envelopes (but the source offsets, which records of
        others shift) and every output about them, in order."""
        outs = {
            name: [v for k, v, _ in sent if k is not None and k.decode() in users]
            for name, sent in self.out.items() if name != "dlq"
        }  # fmt: skip
        table = {
            u: {k: x for k, x in orjson.loads(v).items() if k not in ("o", "f")}
            for u, v in self.table.items() if u in users
        }  # fmt: skip
        return {"table": table, **outs}

    def dlq(self) -> list[tuple[int, int, str, str]]:
        """(partition, offset, reason, detail) of every dead letter."""
        out = []
        for _, _, headers in self.out["dlq"]:
            h = {k: v.decode() for k, v in headers}
            out.append((int(h["source_partition"]), int(h["source_offset"]), h["reason"],
                        h["detail"]))  # fmt: skip
        return out


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def run_batches(
    settings: Settings, batches: Sequence[Sequence[tuple[int, bytes | None, bytes | None]]],
    *, record_ms: int | Sequence[int] = NOW_MS, restart_after: int = 0,
) -> Run:  # fmt: skip
    """Process ``batches`` of (partition, key, value) with a fresh in-memory worker; offsets
    are assigned per partition in order; ``record_ms``: the Kafka record time (one for all
    batches, or one per batch). ``restart_after``: after that many batches the worker is
    replaced by a new one with the same table and Redis but fresh models, as after a crash
    with no checkpoint."""
    times = [record_ms] * len(batches) if isinstance(record_ms, int) else list(record_ms)
    shop = fake_shop(settings)
    proc = new_processor(shop)
    offsets: dict[int, int] = {}
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        for n, (batch, at_ms) in enumerate(zip(batches, times, strict=True)):
            if restart_after and n == restart_after:
                proc = new_processor(shop)
            msgs = []
            for partition, key, value in batch:
                offset = offsets.get(partition, 0)
                offsets[partition] = offset + 1
                msgs.append(message("events", partition, offset, key, value, at_ms / 1000))
            await proc.process(msgs)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    names = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies")
    run = Run(
        dict(shop.profiles.data),  # type: ignore[attr-defined]
        {n: list(topic_of(shop, n).sent) for n in names},
        capture.records,
    )
    run.learned = list(shop.runtime.store.learned)  # type: ignore[attr-defined]
    return run


def log_text(record: logging.LogRecord) -> str:
    """A log record as a formatter writes it (message, then any traceback)."""
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text
