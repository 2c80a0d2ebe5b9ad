"""Issue 15: a crash after the last model checkpoint costs the models nothing.

The models are checkpointed every ``SHOPSTREAM_CHECKPOINT_INTERVAL_S``, the envelopes after
every batch. After a crash, the models came back as they were at the checkpoint while the
envelopes were as of the crash: the events in between never taught the models, and every
alert and segment change derived from them afterwards differed from a run without the crash.
Now the undo log (streams/worker/undo.py) puts those envelopes back as they were at the
checkpoint and the partition is read again from there (here: the batches are handed to the
restarted worker again, as the consumer does after its seek).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.settings import Settings
from streams.tools.generate import generate
from streams.worker.undo import UndoLog
from tests.support.fakes import fake_shop, message, new_processor, topic_of

OUTPUTS = ("recommendations", "churn_alerts", "segments", "anomalies", "dlq")


def workload() -> list[list[Any]]:
    events, _ = generate(users=60, seed=5, days=120, bots=1)
    topic = Settings().topic_events  # the models note offsets of the events topic
    msgs = [message(topic, 0, n, e["user_id"].encode(), orjson.dumps(e))
            for n, e in enumerate(events)]  # fmt: skip
    return [msgs[i : i + 500] for i in range(0, len(msgs), 500)]


async def run(settings: Settings, batches: list[list[Any]], crash: tuple[int, int] | None) -> Any:
    """All batches through one worker; with ``crash = (c, k)``: a checkpoint after batch
    ``c``, a crash after batch ``k``, and a restarted worker that is handed the batches from
    ``c + 1`` again (the partition is read again from the checkpoint)."""
    shop = fake_shop(settings)
    proc = new_processor(shop)
    n = 0
    while n < len(batches):
        await proc.process(batches[n])
        if crash and n == crash[0]:
            await proc.checkpoint()
        if crash and n == crash[1]:
            proc.undo.close()
            proc = new_processor(shop)  # the models of the checkpoint, the table as it is
            proc.parts.keep_replays_in({0: 0})  # the log start, asked at assignment
            proc.parts.roll_back({0}, set())  # what settling the assignment does
            assert proc.parts.replay_from == {0: batches[crash[0]][-1].message.offset + 1}
            n, crash = crash[0], None
        n += 1
    return shop


def sent(shop: Any, name: str) -> list[bytes]:
    return list(topic_of(shop, name).sent)


async def test_a_crash_after_the_checkpoint_ends_as_a_run_without_it(tmp_path: Path) -> None:
    batches = workload()
    base = Settings(churn_min_labels=0, max_events_per_min=0, churn_alert_max_age_days=0.0,
                    idle_advance_s=0.0, checkpoint_key="k",
                    checkpoint_interval_s=1e9)
    clean = await run(base.with_(data_dir=str(tmp_path / "clean")), batches, None)
    crash = (2, len(batches) - 4)  # most of the stream between the checkpoint and the crash
    crashed = await run(base.with_(data_dir=str(tmp_path / "crashed")), batches, crash)
    assert dict(crashed.profiles.data) == dict(clean.profiles.data)
    for name in OUTPUTS:
        assert sent(crashed, name) == sent(clean, name), f"{name} differ"
    assert sent(clean, "churn_alerts") and sent(clean, "segments"), "the workload must alert"


def test_a_torn_or_tampered_line_ends_the_log(tmp_path: Path) -> None:
    log = UndoLog(tmp_path, b"key")
    log.begin(1)
    log.stash([("a", 0, b'{"x":1}'), ("b", 0, None)])
    log.close()
    path = log.path(1)
    raw = path.read_bytes()
    path.write_bytes(raw + raw.splitlines()[0][:-5])  # a line cut short by the crash
    assert UndoLog(tmp_path, b"key").begin(1) == {"a": (0, b'{"x":1}'), "b": (0, None)}
    lines = raw.splitlines()
    path.write_bytes(lines[0].replace(b'"x":1', b'"x":2') + b"\n" + lines[1] + b"\n")
    assert UndoLog(tmp_path, b"key").begin(1) == {}  # the first line is forged: nothing trusted
    assert UndoLog(tmp_path, b"other").begin(1) == {}


def test_a_new_checkpoint_starts_a_new_log_and_deletes_the_old(tmp_path: Path) -> None:
    log = UndoLog(tmp_path, b"key")
    log.begin(1)
    log.stash([("a", 0, None)])
    assert log.begin(2) == {} and not log.path(1).exists()
    log.stash([("a", 0, b'{"x":1}')])  # the first write after checkpoint 2 is kept
    assert log.begin(2) == {"a": (0, b'{"x":1}')}


def test_without_a_key_nothing_is_logged(tmp_path: Path) -> None:
    log = UndoLog(tmp_path, b"")
    assert log.begin(1) == {}
    log.stash([("a", 0, None)])
    assert not list(tmp_path.iterdir())


async def test_no_roll_back_when_the_log_lost_the_records_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    """A checkpoint restored from an old backup, or retention past it: reading the partition
    again cannot bring back the deleted records, so putting envelopes back would lose their
    events for good. The envelopes stay; only the models miss those events."""
    batches = workload()
    settings = Settings(max_events_per_min=0, checkpoint_key="k", checkpoint_interval_s=1e9,
                        data_dir=str(tmp_path))  # fmt: skip
    shop = fake_shop(settings)
    proc = new_processor(shop)
    for n, batch in enumerate(batches[:5]):
        await proc.process(batch)
        if n == 1:
            await proc.checkpoint()
    proc.undo.close()
    before = dict(shop.profiles.data)
    again = new_processor(shop)
    again.parts.keep_replays_in({0: batches[3][0].message.offset})  # the log starts later
    assert again.parts.replay_from == {}
    assert again.parts.roll_back({0}, set()) == set()
    assert dict(shop.profiles.data) == before


def test_forgetting_a_user_not_changed_since_the_checkpoint_logs_nothing(tmp_path: Path) -> None:
    log = UndoLog(tmp_path, b"key")
    log.begin(1)
    log.stash([("a", 3, b'{"x":1}')])
    log.forget("b")  # not in the log: their envelope is as at the checkpoint already
    log.forget("a")
    assert log.begin(1) == {"a": (3, None)}


def test_entries_after_a_torn_line_are_read_after_the_next_restart(tmp_path: Path) -> None:
    log = UndoLog(tmp_path, b"key")
    log.begin(1)
    log.stash([("a", 0, None)])
    log.close()
    with log.path(1).open("ab") as f:
        f.write(b"0123 [\"torn")  # the crash cut this line short
    again = UndoLog(tmp_path, b"key")
    assert again.begin(1) == {"a": (0, None)}
    again.stash([("b", 0, None)])
    again.close()
    assert UndoLog(tmp_path, b"key").begin(1) == {"a": (0, None), "b": (0, None)}


@settings(max_examples=200)
@given(garbage=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=400))
def test_any_damage_to_the_log_is_read_as_its_verified_prefix(garbage: bytes, cut: int) -> None:
    """Whatever the disk holds (torn, overwritten, non-UTF-8, non-ASCII where the MAC goes),
    reading the log never raises and returns only entries that verify, in order. (Non-ASCII
    bytes in the MAC field made ``hmac.compare_digest`` raise at start, before this.)"""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        log = UndoLog(Path(tmp), b"key")
        log.begin(1)
        log.stash([("a", 0, b'{"x":1}'), ("b", 1, None)])
        log.close()
        good = log.path(1).read_bytes()
        log.path(1).write_bytes(good[:cut] + garbage)
        entries = UndoLog(Path(tmp), b"key").begin(1)
        assert entries in ({}, {"a": (0, b'{"x":1}')}, {"a": (0, b'{"x":1}'), "b": (1, None)})
