"""Payloads of ``shop.segments`` and ``shop.anomalies`` from what the models found.

>>> from models.anomaly import Flag
>>> from streams.core.events import Event
>>> ev = Event("e1", "view", "u1", "s1", 5, item_id="i1")
>>> a = anomaly_message(ev, Flag("bot", 0.5, "41 events within 60 s (limit 40)"))
>>> a["anomaly_id"] == anomaly_id("u1", "bot", "e1"), a["ts"]
(True, 5)
"""

from __future__ import annotations

import hashlib

from models.anomaly import Flag
from models.segments import SegmentUpdate
from streams.core.events import Event
from streams.core.payloads import Anomaly, SegmentChange


def anomaly_id(user_id: str, kind: str, event_id: str) -> str:
    """Deterministic id of a flag: a replay yields the same ids."""
    return hashlib.sha256(f"{user_id}\x1f{kind}\x1f{event_id}".encode()).hexdigest()[:24]


def anomaly_message(event: Event, flag: Flag) -> Anomaly:
    """The ``shop.anomalies`` record of one flag raised by ``event``."""
    return {
        "anomaly_id": anomaly_id(event.user_id, flag.kind, event.event_id),
        "user_id": event.user_id,
        "kind": flag.kind,
        "score": flag.score,
        "reason": flag.reason,
        "event_id": event.event_id,
        "ts": event.ts_ms,
    }


def segment_change(user_id: str, upd: SegmentUpdate, ts_ms: int) -> SegmentChange:
    """The ``shop.segments`` record of a change."""
    r, f, m = upd.rfm
    return {
        "user_id": user_id,
        "segment": upd.segment,
        "previous": upd.previous,
        "rfm": {"r": r, "f": f, "m": m},
        "cluster": upd.cluster,
        "ts": ts_ms,
    }
