"""What the storefront sees: every output topic of a run, compared with a clean run (issue 15).

Like Kafka Streams' EOS verifier, the fault suite judges a disturbed run by what consumers
receive, not only by internal state. :func:`compare_outputs` asserts, against a clean run of
the same input:

* recommendations: the same set of ``trigger_event_id``s, and for each one the same
  message (items and scores); a trigger published more than once is a *duplicate* — allowed
  (docs/reliability.md: outputs are at least once) and counted;
* DLQ: the same source offsets with the same reasons (duplicates counted);
* churn alerts, segment changes, anomalies, alert outcomes (each message whole): these come
  from the online models; whoever reads a partition after a crash (the same worker, or
  another after a move without hand-over) goes back to its stored models and learns every
  event once (the undo hashes, docs/reliability.md), so they are compared exactly when
  ``models_exact`` (every fault test); without it the differences are counted and reported,
  and what must hold anyway is checked: no alert_id published twice beyond the documented
  duplicates, every alert marked sent in Redis is on the topic, bot flags (decided by
  per-user state in the envelopes) equal.

The chaos runs use one partition and full batches (``batch_within_ms`` long, the input
produced before the worker starts), so both runs cut the same batches: the last trigger of
each user per batch (which gets the recommendation) is then the same in both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.settings import Settings

CUT_OFF_WITHIN_MS = 5_000  # a batch's send-to-marker time, with a loaded machine's slack


@dataclass
class Outputs:
    recs: dict[str, list[bytes]]  # trigger_event_id -> every message published for it
    alerts: list[str]  # alert ids, in order
    segments: list[tuple[Any, ...]]  # (user, segment, previous, ts, rfm, cluster)
    anomalies: list[str]  # anomaly ids
    bot_flags: list[str]  # anomaly ids of kind "bot"
    dlq: list[tuple[int, int, str]]  # (partition, source offset, reason)
    outcomes: list[bytes]  # each alert outcome message (alert_id and every figure)
    alert_ms: list[int] = field(default_factory=list)  # each alert's record (create) time

    def cut_off(self, instants_ms: Sequence[int], within_ms: int = CUT_OFF_WITHIN_MS) -> int:
        """Alert ids published exactly twice, once created at most ``within_ms`` before one
        of ``instants_ms`` (a kill -9, or a SIGSTOP whose partition then moved) and once
        after it: the batch the worker was in, its alerts delivered and the worker stopped
        before their marker, derived again by whoever read the partition next — the
        documented window (docs/reliability.md, "What a consumer may see twice"). Anything
        else (three copies, a copy from long before, no interruption) is not counted here.

        >>> out = Outputs({}, ["a", "b", "a", "c", "c", "d", "d"], [], [], [], [], [],
        ...               [5, 6, 20, 7, 8, 1, 30])
        >>> out.cut_off([10], within_ms=6), out.cut_off([]), out.cut_off([10], within_ms=1)
        (1, 0, 0)
        """
        times = self.alert_times()
        return sum(
            1 for ts in times.values()
            if len(ts) == 2 and any(at - within_ms <= min(ts) < at <= max(ts) for at in instants_ms)
        )  # fmt: skip

    def alert_times(self) -> dict[str, list[int]]:
        """Each alert id with the create times of its copies, in order."""
        times: dict[str, list[int]] = {}
        for alert, ms in zip(self.alerts, self.alert_ms, strict=True):
            times.setdefault(alert, []).append(ms)
        return times

    def duplicate_times(self) -> str:
        """Each repeated alert id with its copies' create times (for failure messages)."""
        times = self.alert_times()
        return ", ".join(f"{a}: {ts}" for a, ts in times.items() if len(ts) > 1)[:1500]

    def counts(self) -> str:
        return (
            f"{len(self.recs)} trigger_event_ids, {len(self.alerts)} alerts, "
            f"{len(self.segments)} segment changes, {len(self.anomalies)} anomalies "
            f"({len(self.bot_flags)} bot flags), {len(self.dlq)} dead letters, "
            f"{len(self.outcomes)} alert outcomes"
        )


async def read_outputs(settings: Settings) -> Outputs:
    from tests.support.chaos import read_all  # the Kafka reader of the fault suite

    async def values(topic: str) -> list[Any]:
        return await read_all(settings.kafka_bootstrap, topic, settings.partitions)

    recs: dict[str, list[bytes]] = {}
    for r in await values(settings.topic_recommendations):
        recs.setdefault(orjson.loads(r.value)["trigger_event_id"], []).append(r.value)
    alert_records = await values(settings.topic_churn_alerts)
    alerts = [orjson.loads(r.value)["alert_id"] for r in alert_records]
    segments = []
    for r in await values(settings.topic_segments):
        s = orjson.loads(r.value)
        segments.append((s["user_id"], s["segment"], s["previous"], s["ts"],
                         tuple(s["rfm"].values()), s["cluster"]))  # fmt: skip
    anomalies, bots = [], []
    for r in await values(settings.topic_anomalies):
        a = orjson.loads(r.value)
        anomalies.append(a["anomaly_id"])
        if a["kind"] == "bot":
            bots.append(a["anomaly_id"])
    dlq = []
    for r in await values(settings.topic_dlq):
        h = {k: v.decode() for k, v in r.headers}
        dlq.append((int(h["source_partition"]), int(h["source_offset"]), h["reason"]))
    outcomes = [r.value for r in await values(settings.topic_alert_outcomes)]
    alert_ms = [r.timestamp for r in alert_records]
    return Outputs(recs, alerts, segments, anomalies, bots, dlq, outcomes, alert_ms)


def _extra(items: list[Any]) -> int:
    return sum(c - 1 for c in Counter(items).values())


def _user(item: Any) -> str | None:
    """The user an output element is about: a segment change's first field, an alert
    outcome's ``user_id`` (alert and anomaly ids are hashes: none)."""
    if isinstance(item, tuple):
        return str(item[0])
    if isinstance(item, bytes):
        try:
            return str(orjson.loads(item).get("user_id"))
        except (orjson.JSONDecodeError, AttributeError):
            return None
    return None


def differences(name: str, clean: list[Any], chaos: list[Any], shown: int = 3) -> str:
    """What an exact comparison of ``name`` found: the counts, up to ``shown`` elements not
    in the clean run and missing from it, each with the other run's elements of the same
    user (in publication order), so that a failure explains itself.

    >>> seg = lambda seg, prev, ts: ("u1", seg, prev, ts, (5, 1, 2), 0)
    >>> clean, killed = [seg("a", None, 1), seg("b", "a", 2)], [seg("a", None, 1), seg("c", "a", 3)]
    >>> print(differences("segment changes", clean, killed))  # doctest: +ELLIPSIS
    segment changes: 1 missing, 1 not in the clean run
      not in the clean run: ('u1', 'c', 'a', 3, (5, 1, 2), 0)
        the clean run's for u1: [('u1', 'a', None, 1, (5, 1, 2), 0), ('u1', 'b', 'a', 2, ...)]
      missing: ('u1', 'b', 'a', 2, (5, 1, 2), 0)
        the killed run's for u1: [('u1', 'a', None, 1, (5, 1, 2), 0), ('u1', 'c', 'a', 3, ...)]
    """
    a, b = set(clean), set(chaos)
    lines = [f"{name}: {len(a - b)} missing, {len(b - a)} not in the clean run"]
    for label, items, other, whose in (
        ("not in the clean run", [x for x in dict.fromkeys(chaos) if x not in a], clean, "clean"),
        ("missing", [x for x in dict.fromkeys(clean) if x not in b], chaos, "killed"),
    ):  # fmt: skip
        for item in items[:shown]:
            lines.append(f"  {label}: {item!r}"[:600])
            uid = _user(item)
            if uid is not None:
                same = [x for x in dict.fromkeys(other) if _user(x) == uid]
                lines.append(f"    the {whose} run's for {uid}: {same[:8]!r}"[:1500])
    return "\n".join(lines)


def compare_outputs(
    clean: Outputs, chaos: Outputs, marked: set[str], *, models_exact: bool,
    replayed: bool = False, interrupted_ms: Sequence[int] = (),
) -> str:  # fmt: skip
    """Assert what must hold (see the module docstring); return the verified counts.
    ``interrupted_ms``: when a worker was killed, or frozen (SIGSTOP) until its partition
    moved: alert ids it sent just before and the next reader sent again after are the
    documented duplicates (:meth:`Outputs.cut_off`), counted apart."""
    missing = sorted(set(clean.recs) - set(chaos.recs))
    extra = sorted(set(chaos.recs) - set(clean.recs))
    assert not missing and not extra, (
        f"recommendations: {len(missing)} trigger_event_ids missing (e.g. {missing[:3]}), "
        f"{len(extra)} not in the clean run (e.g. {extra[:3]})"
    )
    differ = [t for t, vs in chaos.recs.items() if set(vs) != {clean.recs[t][0]}]
    assert not differ, f"{len(differ)} recommendations differ, e.g. {differ[:3]}"
    rec_dups = sum(len(vs) - 1 for vs in chaos.recs.values())
    assert {(p, o, r) for p, o, r in chaos.dlq} == set(clean.dlq), "dead letters differ"
    cut = chaos.cut_off(interrupted_ms)
    alert_dups = _extra(chaos.alerts) - cut
    lost = marked - set(chaos.alerts)
    assert not lost, f"{len(lost)} alerts marked sent in Redis are not on the topic"
    assert sorted(set(chaos.bot_flags)) == sorted(set(clean.bot_flags)), "bot flags differ"
    line = (
        f"outputs: {len(chaos.recs)} trigger_event_ids equal (each message equal; "
        f"{rec_dups} duplicates), dead letters equal ({len(chaos.dlq)}, "
        f"{_extra(chaos.dlq)} duplicates), {len(set(chaos.bot_flags))} bot flags equal, "
        f"alerts marked sent but missing: 0"
    )
    model_lists = (
        ("alert_ids", clean.alerts, chaos.alerts),
        ("segment changes", clean.segments, chaos.segments),
        ("anomaly_ids", clean.anomalies, chaos.anomalies),
        ("alert outcomes", clean.outcomes, chaos.outcomes),
    )
    model_sets = [(name, set(a), set(b)) for name, a, b in model_lists]
    if models_exact:
        for name, a, b in model_lists:
            assert set(a) == set(b), differences(name, a, b)
        assert replayed or alert_dups == 0, (
            f"{alert_dups} duplicate alert_ids beyond the {cut} cut off by an interruption "
            f"at {list(interrupted_ms)} ms: {chaos.duplicate_times()}"
        )
        return (
            f"{line}, {len(clean.alerts)} alert_ids, {len(clean.segments)} segment changes, "
            f"{len(clean.anomalies)} anomaly_ids and {len(set(clean.outcomes))} alert outcomes "
            f"equal, alert duplicates: {alert_dups}"
            + (f" (+{cut} sent just before a kill or freeze and again after it)" if cut else "")
        )
    diffs = ", ".join(f"{name} {len(b & a)}/{len(a)} as clean (+{len(b - a)} other)"
                      for name, a, b in model_sets)  # fmt: skip
    return f"{line}; model-derived (at most once across a crash): {diffs}, alert duplicates: " \
           f"{alert_dups}"  # fmt: skip
