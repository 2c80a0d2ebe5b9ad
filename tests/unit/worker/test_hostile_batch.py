"""Issue 13: hostile records through the real BatchProcessor (in-memory I/O only).

Each numbered case of the issue has a test here that fails on the code before the fix:
(1) a purchase of price 1e308 broke every later batch of its user, (2) a 4300-digit ``ts``
and (3) a deeply nested field made ``split()`` raise, (4) a view dated 2099 dragged the
partition's churn clock, (5) NUL and control characters in ids were accepted, (6) the rate
limit trusted the client's ``ts``. Then: one user's failure stays that user's.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from streams.core.settings import Settings
from tests.support.hostile import (
    HOSTILE,
    NOW_MS,
    good_traffic,
    log_text,
    obj,
    raw_with,
    run_batches,
)

SETTINGS = Settings(churn_min_labels=0)
GOOD = good_traffic()
USERS = {orjson.loads(v)["user_id"] for v in GOOD}
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202e]")


def batches_of(records: list[tuple[int, bytes | None, bytes | None]], size: int) -> list[Any]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def good_records() -> list[tuple[int, bytes | None, bytes | None]]:
    return [(0, orjson.loads(v)["user_id"].encode(), v) for v in GOOD]


def with_hostile(
    hostile: list[bytes], every: int = 37
) -> tuple[list[Any], list[Any]]:
    """Batches with the hostile records spread through the good ones, and the same batches
    without them (same boundaries)."""
    mixed: list[tuple[int, bytes | None, bytes | None]] = []
    todo = list(hostile)
    for i, rec in enumerate(good_records()):
        if i % every == 5 and todo:
            mixed.append((0, b"h-user", todo.pop()))
        mixed.append(rec)
    mixed += [(0, b"h-user", v) for v in todo]
    with_h = batches_of(mixed, 100)
    without = [[r for r in b if r[1] != b"h-user"] for b in with_h]
    return with_h, without


async def test_every_hostile_class_is_dead_lettered_and_costs_no_good_record() -> None:
    hostile = [raw for _, raw, _ in HOSTILE]
    mixed, clean = with_hostile(hostile)
    dirty_run = await run_batches(SETTINGS, mixed)
    clean_run = await run_batches(SETTINGS, clean)
    dlq = dirty_run.dlq()
    assert len(dlq) == len(hostile), dlq
    by_value = {raw: reasons for _, raw, reasons in HOSTILE}
    sent = {(p, o): v for p, o, v in _offsets(mixed)}
    for partition, offset, reason, detail in dlq:
        name = next(n for n, raw, _ in HOSTILE if raw == sent[(partition, offset)])
        assert reason in by_value[sent[(partition, offset)]], (name, reason, detail)
        assert detail and not CONTROL.search(detail), (name, detail)
    assert dirty_run.for_users(USERS) == clean_run.for_users(USERS)
    assert clean_run.for_users(USERS)["recommendations"], "the good traffic produced nothing"
    for record in dirty_run.logs:
        assert not CONTROL.search(log_text(record)), log_text(record)


def _offsets(batches: list[Any]) -> list[tuple[int, int, bytes | None]]:
    offsets: dict[int, int] = {}
    out = []
    for batch in batches:
        for partition, _, value in batch:
            out.append((partition, offsets.get(partition, 0), value))
            offsets[partition] = offsets.get(partition, 0) + 1
    return out


# --- the six cases of the issue, one test each ------------------------------------------
async def test_case1_a_huge_price_never_breaks_the_users_later_batches() -> None:
    # the hostile user on its own partition: its valid view may teach that partition's models
    first = [(1, b"h-user", obj(price=1e308, quantity=2)), *good_records()[:200]]
    later = [(1, b"h-user", obj(event_id="h-1", type="view")), *good_records()[200:400]]
    run = await run_batches(SETTINGS, [first, later])
    reasons = [reason for _, _, reason, _ in run.dlq()]
    assert reasons == ["bad_number"]
    profile = orjson.loads(run.table["h-user"])["p"]
    assert profile["monetary"] == 0.0 and profile["n_events"] == 1
    clean = await run_batches(SETTINGS, [good_records()[:200], good_records()[200:400]])
    assert run.for_users(USERS) == clean.for_users(USERS)


@pytest.mark.parametrize("digits", [309, 400, 4300, 5000])
async def test_case2_a_huge_integer_ts_is_a_dead_letter(digits: int) -> None:
    run = await run_batches(SETTINGS, [[(0, b"h-user", raw_with("ts", b"8" * digits)),
                                        *good_records()[:50]]])  # fmt: skip
    assert [r for _, _, r, _ in run.dlq()] in (["bad_number"], ["bad_ts"])


async def test_case3_deep_nesting_is_a_dead_letter() -> None:
    deep = raw_with("extra", b'{"a":' * 1000 + b"1" + b"}" * 1000)
    assert len(deep) < 8192  # a small record
    run = await run_batches(SETTINGS, [[(0, b"h-user", deep), *good_records()[:50]]])
    assert [r for _, _, r, _ in run.dlq()] == ["too_deep"]


async def test_case4_a_view_from_the_future_moves_no_clock() -> None:
    from streams.core.events import MAX_TS_MS

    future = obj(type="view", ts=MAX_TS_MS - 86_400_000)  # 2099-12-31
    run = await run_batches(SETTINGS, [good_records()[:300], [(0, b"h-user", future)],
                                       good_records()[300:]])  # fmt: skip
    assert [r for _, _, r, _ in run.dlq()] == ["future_ts"]
    clean = await run_batches(SETTINGS, [good_records()[:300], good_records()[300:]])
    assert run.for_users(USERS) == clean.for_users(USERS)
    assert "h-user" not in run.table


async def test_case4_an_event_within_the_allowed_skew_is_accepted() -> None:
    near = obj(type="view", ts=NOW_MS + 60_000)  # a minute ahead of its record
    run = await run_batches(SETTINGS, [[(0, b"h-user", near)]])
    assert run.dlq() == [] and "h-user" in run.table


@pytest.mark.parametrize("field", ["user_id", "session_id", "item_id", "event_id", "category"])
@pytest.mark.parametrize("bad", ["\x00", "\n", "\x1b[2J", "\u202e", "\x7f", "\x85"])
async def test_case5_separators_and_control_characters_in_ids_are_refused(
    field: str, bad: str
) -> None:
    run = await run_batches(SETTINGS, [[(0, b"h-user", obj(**{field: f"a{bad}b"}))]])
    (dead,) = run.dlq()
    assert dead[2] == "bad_chars"
    for record in run.logs:
        assert not CONTROL.search(log_text(record)), log_text(record)


async def test_case6_the_rate_limit_counts_record_time_not_the_clients_ts() -> None:
    """700 events of one user within a minute of record time, each dated a minute later
    than the previous one (so every event-time minute holds one event)."""
    flood = [(0, b"h-user", obj(event_id=f"f{i}", type="view", ts=1_709_283_600_000 + i * 60_000))
             for i in range(700)]  # fmt: skip
    run = await run_batches(Settings(max_events_per_min=600), batches_of(flood, 100))
    reasons = [r for _, _, r, _ in run.dlq()]
    assert reasons == ["rate_limited"] * 100


async def test_case6_a_client_ts_from_the_future_locks_no_user_out() -> None:
    """One event dated 50 minutes ahead (accepted: within the skew), then 400 events in each
    of the next two minutes, under a limit of 600 a minute: none is over the limit."""
    minute = 60_000
    ahead = [(0, b"h-user", obj(event_id="f0", type="view", ts=NOW_MS + 50 * minute))]
    later = [
        [(0, b"h-user", obj(event_id=f"n{m}-{i}", type="view", ts=NOW_MS + m * minute + i))
         for i in range(400)]
        for m in (1, 2)
    ]  # fmt: skip
    run = await run_batches(Settings(max_events_per_min=600), [ahead, *later],
                            record_ms=[NOW_MS, NOW_MS + minute, NOW_MS + 2 * minute])  # fmt: skip
    assert run.dlq() == []


# --- one user's failure is that user's --------------------------------------------------
VICTIM = sorted(USERS)[2]


def _about_victim(arg: Any) -> bool:
    """An argument that is the victim's id, event, profile or envelope."""
    for value in (arg, getattr(arg, "profile", None)):
        if value == VICTIM or getattr(value, "user_id", None) == VICTIM:
            return True
    return False


def _fail_for_victim(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    original = getattr(target, name)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if any(map(_about_victim, (*args, *kwargs.values()))):
            raise ValueError(f"injected failure for {VICTIM}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize("stage", ["profile", "churn", "segment", "track", "write", "anomaly"])
async def test_a_failure_in_one_users_update_costs_only_that_users_events(
    monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    from models.anomaly import AnomalyDetector
    from models.segments import SegmentModel
    from streams.domain import churn
    from streams.domain.churn_state import TrackedUsers
    from streams.domain.envelope import Envelope

    targets = {
        "profile": (churn, "update_profile"), "churn": (churn, "step"),
        "segment": (SegmentModel, "update"), "track": (TrackedUsers, "peek"),
        "write": (Envelope, "to_bytes"), "anomaly": (AnomalyDetector, "observe_rules"),
    }  # fmt: skip
    target, name = targets[stage]
    records = good_records()
    clean = await run_batches(SETTINGS, batches_of(records, 100))
    _fail_for_victim(monkeypatch, target, name)
    run = await run_batches(SETTINGS, batches_of(records, 100))
    others = USERS - {VICTIM}
    victim_offsets = {i for i, (_, k, _) in enumerate(records) if k == VICTIM.encode()}
    dead = run.dlq()
    assert {o for _, o, _, _ in dead} <= victim_offsets and dead, stage
    assert {r for _, _, r, _ in dead} == {"processing_error"}
    for user in others:  # profiles and recommendations of the others: as in a clean run
        assert orjson.loads(run.table[user])["p"] == orjson.loads(clean.table[user])["p"]
    assert run.for_users(others)["recommendations"] == clean.for_users(others)["recommendations"]
    assert not any(k == VICTIM.encode() for k, _, _ in run.out["recommendations"])


async def test_a_failure_of_the_anomaly_model_costs_only_that_events_score(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model half of the anomaly check runs after Redis was asked to learn the batch:
    an exception there (the Half-Space Trees on one user's events) breaks nobody: no event
    goes to the DLQ, every profile and recommendation is as in a clean run, and only the
    victim's model-based flags are missing."""
    from models.anomaly import AnomalyDetector

    records = good_records()
    clean = await run_batches(SETTINGS, batches_of(records, 100))
    _fail_for_victim(monkeypatch, AnomalyDetector, "observe_model")
    run = await run_batches(SETTINGS, batches_of(records, 100))
    assert not run.dlq()
    for user in USERS:
        assert orjson.loads(run.table[user])["p"] == orjson.loads(clean.table[user])["p"]
    assert run.out["recommendations"] == clean.out["recommendations"]
    others = USERS - {VICTIM}
    assert run.for_users(others)["anomalies"] == clean.for_users(others)["anomalies"]


# --- issue 15, hole 6: bots after a crash ------------------------------------------------
async def test_bot_flags_survive_a_crash_so_redis_learns_the_same() -> None:
    """A worker restarted without its models (a crash after the last checkpoint) flagged
    no bot it had flagged before, so a bot's events after the restart taught the similarity
    store: its state differed from a run without the crash. The flags now live in the
    users' envelopes."""
    from streams.tools.generate import generate

    events, _ = generate(users=6, seed=9, days=45)
    t0 = events[len(events) // 3]["ts"]
    for b in range(2):  # two scrapers: 70 views of distinct items, half a second apart
        events += [{"event_id": f"bot{b}-{n}", "type": "view", "user_id": f"bot{b}",
                    "session_id": f"bs{b}", "item_id": f"i{n:03d}", "ts": t0 + b * 9_000 + n * 500}
                   for n in range(70)]  # fmt: skip
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    records = [(0, e["user_id"].encode(), orjson.dumps(e)) for e in events]
    # restart in the middle of bot0's burst, after it was flagged (41 views in a minute)
    mid = [i for i, (_, key, _) in enumerate(records) if key == b"bot0"][60]
    batches = batches_of(records[:mid], 100) + batches_of(records[mid:], 100)
    cut = len(batches_of(records[:mid], 100))
    clean = await run_batches(SETTINGS, batches)
    crashed = await run_batches(SETTINGS, batches, restart_after=cut)
    assert [e for _, _, e in crashed.learned] == [e for _, _, e in clean.learned]
    bot_flags = [v for k, v, _ in clean.out["anomalies"] if b'"kind":"bot"' in v]
    assert bot_flags and [v for k, v, _ in crashed.out["anomalies"] if b'"kind":"bot"' in v] \
        == bot_flags


# --- issue 15, hole 1: fences that know where they came from -----------------------------
async def test_an_event_on_another_partition_is_never_taken_for_a_redelivery() -> None:
    """The user's envelope is fenced at partition 0 offset 5000; their next purchase arrives
    on partition 1 at offset 7 (partitions were added): it used to be skipped silently."""
    from tests.support.fakes import fake_shop, message, new_processor

    shop = fake_shop(SETTINGS)
    proc = new_processor(shop)
    first = obj(event_id="p0", type="view", ts=1_709_283_600_000)
    later = obj(event_id="p1", type="purchase", ts=1_709_283_700_000)
    await proc.process([message("events", 0, 5000, b"h-user", first)])
    await proc.process([message("events", 1, 7, b"h-user", later)])
    profile = orjson.loads(shop.profiles.data["h-user"])["p"]
    assert (profile["n_events"], profile["n_purchases"]) == (2, 1)


async def test_a_record_whose_key_is_not_its_user_is_a_dead_letter() -> None:
    run = await run_batches(SETTINGS, [[(0, b"someone-else", obj()), (0, None, obj(event_id="2"))]])
    assert [r for _, _, r, _ in run.dlq()] == ["key_mismatch", "key_mismatch"]
    assert run.table == {}


async def test_a_failing_checkpoint_never_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15, hole 3: a checkpoint that cannot be written (a full disk) failed the batch,
    which was then dead-lettered although its effects were done."""
    from tests.support.fakes import fake_shop, message, new_processor

    shop = fake_shop(Settings(checkpoint_key="k", checkpoint_interval_s=0.0))
    proc = new_processor(shop)

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("streams.worker.checkpoints.save_checkpoint", disk_full)
    await proc.process([message("events", 0, 0, b"h-user", obj())])
    assert "h-user" in shop.profiles.data
    assert shop.dlq.sent == []  # type: ignore[attr-defined]


async def test_a_worker_that_lost_its_partition_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15, hole 4: a worker paused while its partition moved (a zombie) sent the
    outputs of the batch it was in (a dead letter, a recommendation) before it checked its
    owner token; now the outbox only sends once the partition is known to be still ours."""
    from streams.core.errors import Fenced
    from tests.support.fakes import fake_shop, message, new_processor, topic_of

    shop = fake_shop(SETTINGS)
    proc = new_processor(shop)

    async def moved(partitions: set[int]) -> None:
        raise Fenced(f"partitions {sorted(partitions)} moved")

    monkeypatch.setattr(proc, "still_ours", moved)
    batch = [message("events", 0, 0, b"h-user", obj()), message("events", 0, 1, None, obj())]
    with pytest.raises(Fenced):
        await proc.process(batch)
    names = ("dlq", "recommendations", "segments", "churn_alerts", "anomalies")
    assert {n: topic_of(shop, n).sent for n in names} == {n: [] for n in names}
    assert shop.profiles.changelog == []  # type: ignore[attr-defined]


async def test_a_refused_learning_call_stops_the_batch_before_the_business_figures() -> None:
    """The business figures are written while Redis learns the batch; a learning call
    refused at once (the partition moved: Fenced) stops the batch before that write, and
    nothing is published."""
    import asyncio

    from streams.core.errors import Fenced
    from tests.support.fakes import fake_shop, message, new_processor, topic_of

    shop = fake_shop(SETTINGS)
    proc = new_processor(shop)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise Fenced("partitions [0] moved")

    shop.runtime.store.learn_and_recommend = refused  # type: ignore[attr-defined]
    applied: list[Any] = []

    async def apply(*args: Any, **kwargs: Any) -> Any:
        applied.append(args)
        await asyncio.sleep(0)
        return 0, []

    shop.runtime.kpis.apply = apply  # type: ignore[attr-defined]
    with pytest.raises(Fenced):
        await proc.process([message("events", 0, 0, b"h-user", obj())])
    assert applied == []
    names = ("dlq", "recommendations", "segments", "churn_alerts", "anomalies")
    assert {n: topic_of(shop, n).sent for n in names} == {n: [] for n in names}
    assert shop.profiles.changelog == []  # type: ignore[attr-defined]


async def test_a_failure_while_redis_learns_waits_for_the_learning_call() -> None:
    """A write that fails while the learning call is in flight fails the batch with its
    own error, after the learning call ended (never left running unobserved); a batch
    cancelled there cancels the learning call too."""
    import asyncio

    from tests.support.fakes import fake_shop, message, new_processor

    for cancel in (False, True):
        shop = fake_shop(SETTINGS)
        proc = new_processor(shop)
        learning_ended = asyncio.Event()
        completed: list[bool] = []
        learn = shop.runtime.store.learn_and_recommend  # type: ignore[attr-defined]

        async def slow_learning(*args: Any, _learn: Any = learn, _ended: Any = learning_ended,
                                _done: Any = completed, **kwargs: Any) -> Any:  # fmt: skip
            try:
                await asyncio.sleep(0.05)
                out = await _learn(*args, **kwargs)
                _done.append(True)
                return out
            finally:
                _ended.set()

        shop.runtime.store.learn_and_recommend = slow_learning  # type: ignore[attr-defined]
        reached = asyncio.Event()

        async def kpis_down(*args: Any, _reached: Any = reached, _cancel: bool = cancel,
                            **kwargs: Any) -> Any:  # fmt: skip
            _reached.set()
            if _cancel:
                await asyncio.sleep(10)
            raise ValueError("KPI store refused")  # not retried: a bug-like error

        shop.runtime.kpis.apply = kpis_down  # type: ignore[attr-defined]
        task = asyncio.ensure_future(proc.process([message("events", 0, 0, b"h-user", obj())]))
        await reached.wait()
        if cancel:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(ValueError, match="KPI store refused"):
                await task
        assert learning_ended.is_set()
        assert completed == ([] if cancel else [True])  # a cancelled batch cancels it
