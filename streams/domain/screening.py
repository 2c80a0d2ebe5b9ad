"""Which events of a batch may teach the models: every event but a flagged bot's, decided
event by event.

A user is a bot *after* an event if the anomaly detector, having seen the user's events up
to and including it, flags them (:meth:`models.anomaly.AnomalyDetector.is_bot`). The event
that trips the flag and every later one while the flag lasts stay out of learning; the
events before it teach. Deciding per event (not once per batch, from the flag at the batch's
end) makes the answer independent of where batches are cut: a short batch after a restart,
another ``SHOPSTREAM_BATCH_SIZE`` or a batch cut by time learn exactly the same events
(issue 15: a restart that shifted the batch cuts made two bots' first events vanish from the
similarity store, because the flag at the end of their batch was applied to all of them).

>>> from models.anomaly import AnomalyConfig, AnomalyDetector
>>> from streams.core.events import Event, Record
>>> d = AnomalyDetector(AnomalyConfig(burst_per_min=3, cooldown_ms=10**9, bot_ttl_ms=10**9))
>>> batch = [(Record("t", 0, t, b"b", b""), Event(f"e{t}", "view", "b", "s", t, item_id="i"))
...          for t in range(6)]
>>> out = screen(batch, {id(e) for _, e in batch}, lambda rec: d, exclude_bots=True)
>>> finish(out)
>>> [e.ts_ms for _, e in out.learnable], [(e.ts_ms, f.kind) for e, f in out.flags]
([0, 1, 2], [(3, 'bot')])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from models.anomaly import AnomalyDetector, Flag, Observed
from streams.core.events import Event, Record

Pair = tuple[Record, Event]


@dataclass(slots=True)
class Screened:
    """What :func:`screen` found: the events that may teach, the flags raised (with the event
    that raised each; once :func:`finish` ran), and the users whose check raised (user -> the
    exception); ``pending``: the model halves :func:`finish` runs, ``model_failed``: users
    one of whose model halves raised (user -> the exception; the rest of their batch stands)."""

    learnable: list[Pair] = field(default_factory=list)
    flags: list[tuple[Event, Flag]] = field(default_factory=list)
    failed: dict[str, Exception] = field(default_factory=dict)
    pending: list[tuple[Event, AnomalyDetector, Observed]] = field(default_factory=list)
    model_failed: dict[str, Exception] = field(default_factory=dict)


def screen(
    valid: Sequence[Pair],
    fresh: set[int],
    detector_of: Callable[[Record], AnomalyDetector],
    *,
    exclude_bots: bool,
) -> Screened:
    """Observe the ``fresh`` events (``id()`` of each event) in order and decide for every
    event, fresh or not, whether it may teach: not if its user is flagged as a bot once it was
    seen (``exclude_bots``). An event applied before (not fresh) is not observed again; its
    user's current flag decides (the similarity store's own fence skips it anyway, unless the
    store was rolled back together with the user's state). A user whose check raises teaches
    nothing of the batch; the exception is in ``failed``.

    Only the rules decide who is a bot (:meth:`AnomalyDetector.observe_rules`); the
    Half-Space Trees' half of each event (:meth:`AnomalyDetector.observe_model`: scores,
    learning, the flags) is left in ``pending`` for :func:`finish`, which the worker runs
    while Redis learns the ``learnable`` events."""
    out = Screened()
    for rec, event in valid:
        uid = event.user_id
        if uid in out.failed:
            continue
        detector = detector_of(rec)
        if id(event) in fresh:
            try:
                observed = detector.observe_rules(event)
            except Exception as exc:  # noqa: BLE001 - confined to this user
                out.failed[uid] = exc
                continue
            out.pending.append((event, detector, observed))
        if not (exclude_bots and detector.is_bot(uid)):
            out.learnable.append((rec, event))
    if out.failed:
        out.learnable = [(r, e) for r, e in out.learnable if e.user_id not in out.failed]
    return out


def finish(out: Screened) -> None:
    """The model halves of :func:`screen`'s events, in their order: their flags join
    ``out.flags``. The model half comes after the decision of what may teach (Redis may be
    learning those events already), and it changes no user state but the flags' cooldowns
    (after the trees): an event whose model half raises keeps its other effects, gets no
    model score or flag, and is counted in ``model_failed`` (user -> the first exception)."""
    pending, out.pending = out.pending, []
    for event, detector, observed in pending:
        try:
            found = detector.observe_model(observed)
        except Exception as exc:  # noqa: BLE001 - the event's anomaly score only
            out.model_failed.setdefault(event.user_id, exc)
            continue
        out.flags += [(event, flag) for flag in found]
