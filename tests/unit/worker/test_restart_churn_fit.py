"""A worker restarted from a partition's stored models and envelopes (what the undo hashes
give back after kill -9) goes on exactly as one that never stopped.

The churn state is rebuilt from the tracks then; its timer heap holds only the timers that
act, the heap of a worker that never stopped also superseded ones. The analytic churn fit
used to be ticked at every timer popped and before every event past the heap's head: after
a restart it refitted at another instant, an idle alert fired at a later check (same
alert_id) and its segment change carried another ``ts`` (the chaos test
``test_kill9_once_equals_a_clean_run``: "segment changes: 0 missing, 1 not in the clean
run"). In-memory I/O, the real BatchProcessor.

A customer's probe timer, too, stayed where it was armed when they came back from a silence
of two probes or more: a worker that never stopped probed them late (at the old timer, not 7
days after the return), a rebuilt one on time. The restarted worker's tracks then held
other snapshots and, a horizon later, its learned churn model, the guard's tally and the
annual-return layer had learned other labels (all of the model bundle is compared below, at
every batch end after restarts at several batch ends)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from models.bundle import ModelSet
from streams.core.settings import Settings
from streams.tools.generate import generate
from streams.worker.configs import anomaly_config, segment_config
from tests.support.fakes import fake_shop, message, new_processor, topic_of

SETTINGS = Settings(partitions=1, batch_size=500, max_events_per_min=0, idle_advance_s=0.0,
                    churn_alert_max_age_days=0.0)  # fmt: skip
#: the batch after which the worker restarts (the first one found to diverge before the fix)
RESTART_AFTER = 7


def batches() -> list[list[Any]]:
    events, _ = generate(users=115, seed=61, days=120, bots=3)  # the chaos test's workload
    now = time.time()
    msgs = [message("events", 0, i, e["user_id"].encode(), orjson.dumps(e), now)
            for i, e in enumerate(events[:13_000])]  # fmt: skip
    return [msgs[i : i + 500] for i in range(0, len(msgs), 500)]


def segments(shop: Any) -> list[Any]:
    return [orjson.loads(v) for _, v, _ in topic_of(shop, "segments").sent]


async def test_a_restart_from_the_stored_models_changes_no_segment_change_nor_model() -> None:
    todo = batches()
    shop = fake_shop(SETTINGS)
    proc = new_processor(shop)
    stored: tuple[bytes, dict[str, bytes]] | None = None
    after: list[Any] = []
    for i, batch in enumerate(todo):
        if i == RESTART_AFTER + 1:
            after = segments(shop)
        await proc.process(batch)
        if i == RESTART_AFTER:  # what a checkpoint stores and the undo hashes put back
            stored = orjson.dumps(proc.parts.models.to_dict()), dict(shop.profiles.data)
    assert stored is not None
    clean = segments(shop)[len(after) :]

    again = fake_shop(SETTINGS)
    again.profiles.data.update(stored[1])
    restarted = new_processor(again)
    restarted.parts.models = ModelSet.from_dict(
        orjson.loads(stored[0]), segment_config(SETTINGS), anomaly_config(SETTINGS)
    )
    for batch in todo[RESTART_AFTER + 1 :]:
        await restarted.process(batch)

    assert segments(again) == clean
    assert len(clean) > 100
    fits = [m.parts.models.parts[0].churn.alive.to_dict() for m in (restarted, proc)]
    assert fits[0] == fits[1]  # the analytic fit: refitted at the same instants
    assert again.profiles.data == shop.profiles.data


#: restarts from what was stored at the end of these batches (0-based; 26 batches): the
#: tracks diverged from batch 4 on, the learned model, guard and annual-return layer from 21
RESTARTS = range(1, 25, 3)


async def test_a_restart_at_any_batch_end_leaves_the_same_model_bundle_and_table() -> None:
    todo = batches()
    shop = fake_shop(SETTINGS)
    proc = new_processor(shop)
    clean: list[tuple[bytes, dict[str, bytes]]] = []  # (model bundle, table) at each batch end
    for batch in todo:
        await proc.process(batch)
        clean.append((orjson.dumps(proc.parts.models.to_dict()), dict(shop.profiles.data)))
    assert clean[-1][0] != clean[RESTARTS[-1]][0]  # the models do learn after the last restart

    wrong: list[tuple[int, int, str]] = []  # (restarted after batch, at the end of batch, what)
    for end in RESTARTS:
        again = fake_shop(SETTINGS)
        again.profiles.data.update(clean[end][1])
        restarted = new_processor(again)
        restarted.parts.models = ModelSet.from_dict(
            orjson.loads(clean[end][0]), segment_config(SETTINGS), anomaly_config(SETTINGS)
        )
        for i in range(end + 1, len(todo)):
            await restarted.process(todo[i])
            if again.profiles.data != clean[i][1]:
                wrong.append((end, i, "table"))
            if orjson.dumps(restarted.parts.models.to_dict()) != clean[i][0]:
                wrong.append((end, i, "model bundle"))
    assert wrong == []
