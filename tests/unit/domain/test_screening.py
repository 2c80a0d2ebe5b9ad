"""Bot screening decides event by event: the same events teach whatever the batch cuts."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from models.anomaly import AnomalyConfig, AnomalyDetector
from streams.core.events import Event, Record
from streams.domain.screening import Pair, finish, screen

CONFIG = AnomalyConfig(burst_per_min=5, cooldown_ms=60_000, bot_ttl_ms=120_000)


def stream(gaps: list[tuple[int, int]]) -> list[Pair]:
    """Events of users u0..u2 at the given (user, gap in seconds) steps, one partition."""
    out, t = [], 1_700_000_000_000
    for offset, (user, gap) in enumerate(gaps):
        t += gap * 1000
        ev = Event(f"e{offset}", "view", f"u{user}", f"s{user}", t, item_id=f"i{offset % 7}")
        out.append((Record("t", 0, offset, f"u{user}".encode(), b""), ev))
    return out


def run(events: list[Pair], cuts: list[int]) -> tuple[list[str], list[tuple[str, str]]]:
    """What a worker learns and flags when the events arrive in batches cut at ``cuts``: each
    batch starts from the users' stored windows (export/import), as the worker does."""
    stored: dict[str, object] = {}
    learnt, flags = [], []
    bounds = [0, *sorted(set(cuts)), len(events)]
    for lo, hi in pairwise(bounds):
        batch = events[lo:hi]
        detector = AnomalyDetector(CONFIG)
        users = {e.user_id for _, e in batch}
        for uid in users:
            detector.import_user(uid, stored.get(uid))  # type: ignore[arg-type]
        out = screen(batch, {id(e) for _, e in batch}, lambda rec, d=detector: d, exclude_bots=True)
        finish(out)
        for uid in users:
            stored[uid] = detector.export_user(uid)
        learnt += [e.event_id for _, e in out.learnable]
        flags += [(e.event_id, f.kind) for e, f in out.flags]
    return learnt, flags


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 90)), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=6),
)
def test_the_same_events_teach_whatever_the_batch_cuts(
    gaps: list[tuple[int, int]], cuts: list[int]
) -> None:
    events = stream(gaps)
    assert run(events, [c for c in cuts if c < len(events)]) == run(events, [])


def test_a_bot_teaches_until_it_is_flagged_and_not_while_flagged() -> None:
    events = stream([(0, 1)] * 12)  # 12 events of u0 a second apart: flagged at the 6th
    learnt, flags = run(events, [3])
    assert learnt == [f"e{i}" for i in range(5)]
    assert flags == [("e5", "bot")]


def test_a_user_whose_check_fails_teaches_nothing_of_the_batch() -> None:
    class Broken(AnomalyDetector):
        def observe_rules(self, event):  # type: ignore[no-untyped-def]
            if event.event_id == "e2":
                raise ValueError("boom")
            return super().observe_rules(event)

    events = stream([(0, 30), (1, 30), (0, 30), (1, 30)])
    detector = Broken(CONFIG)
    out = screen(events, {id(e) for _, e in events}, lambda rec: detector, exclude_bots=True)
    assert [e.event_id for _, e in out.learnable] == ["e1", "e3"]
    assert list(out.failed) == ["u0"]


def test_the_model_half_after_the_decision_leaves_what_teaches_and_a_failure_costs_one_score(
) -> None:
    """:func:`finish` (the Half-Space Trees' half, run while Redis learns) leaves what may
    teach as :func:`screen` decided it; an event whose model half raises is counted in
    ``model_failed`` and the user's other events go on being observed."""
    events = stream([(0, 30), (1, 30), (0, 30), (1, 30)])
    seen: list[int] = []

    class Broken(AnomalyDetector):
        def observe_model(self, o):  # type: ignore[no-untyped-def]
            seen.append(o.ts_ms)
            if len(seen) == 1:
                raise ValueError("boom")
            return super().observe_model(o)

    detector = Broken(CONFIG)
    out = screen(events, {id(e) for _, e in events}, lambda rec: detector, exclude_bots=True)
    assert not seen and len(out.pending) == 4
    finish(out)
    assert [e.event_id for _, e in out.learnable] == ["e0", "e1", "e2", "e3"]
    assert list(out.model_failed) == ["u0"] and not out.failed and not out.pending
    assert len(seen) == 4


def test_events_applied_before_are_not_observed_again() -> None:
    events = stream([(0, 1)] * 8)
    detector = AnomalyDetector(CONFIG)
    out = screen(events, {id(e) for _, e in events[:4]}, lambda rec: detector, exclude_bots=True)
    assert not out.flags and detector.export_user("u0")[6] == 4  # type: ignore[index]
    assert len(out.learnable) == 8
