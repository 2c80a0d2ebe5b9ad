"""Issue 20, step 2: envelopes kept decoded between batches, and unchanged envelopes not
written again, change nothing that is published or stored (in-memory I/O; the real worker
both ways: tests/integration/test_batch_produce.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.core.settings import Settings
from streams.domain import envelope as envelope_module
from streams.domain.envelope import Envelope
from streams.domain.profile import Profile
from streams.worker.users import UserUpdates, serialise, write
from tests.support.fakes import FakeTable, fake_shop, message, new_processor, topic_of
from tests.support.hostile import NOW_MS, good_traffic

TOPICS = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies")


async def run(live: int, decodes: list[int], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The generated traffic on 2 partitions in batches of 120; what it published and
    stored, and how many envelopes were decoded from bytes."""
    shop = fake_shop(Settings(churn_min_labels=0, live_envelopes=live))
    proc = new_processor(shop)
    original = Envelope.from_bytes.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, raw: bytes) -> Envelope:
        decodes[0] += 1
        return original(cls, raw)  # type: ignore[no-any-return]

    monkeypatch.setattr(envelope_module.Envelope, "from_bytes", classmethod(counting))
    msgs, offsets = [], [0, 0]
    for value in good_traffic(users=16, seed=9, days=60):
        uid = orjson.loads(value)["user_id"]
        p = sum(uid.encode()) % 2
        msgs.append(message("events", p, offsets[p], uid.encode(), value, NOW_MS / 1000))
        offsets[p] += 1
    for i in range(0, len(msgs), 120):
        await proc.process(msgs[i : i + 120])
    table = shop.profiles
    assert isinstance(table, FakeTable)
    last = {(p, k): v for p, k, v in table.changelog}
    outputs = {name: topic_of(shop, name).sent for name in TOPICS}
    return outputs, dict(table.data), last, len(table.changelog)


async def test_live_envelopes_and_skipped_writes_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded_before, decoded_live = [0], [0]
    before = await run(0, decoded_before, monkeypatch)
    live = await run(1000, decoded_live, monkeypatch)
    assert live[0] == before[0]  # every output, in order, byte for byte
    assert live[1] == before[1] and live[2] == before[2]  # the table and its changelog
    assert sum(len(v) for v in before[0].values()) > 50
    assert decoded_live[0] < decoded_before[0] / 4, (decoded_live, decoded_before)


def stored(table: FakeTable, uid: str, env: Envelope) -> bytes:
    raw = table.data[uid] = env.to_bytes()
    return raw


def an_envelope() -> Envelope:
    return Envelope(profile=Profile("u", 1, 2), offset=4, partition=1, fences={"x:1": 4})


async def test_an_unchanged_envelope_is_not_written_again_and_stays_live() -> None:
    table = FakeTable()
    raw = stored(table, "u", an_envelope())
    out = UserUpdates(table, live_max=10)
    env = out.load("u")
    assert env is not None
    out.written.add("u")  # e.g. its churn track was read
    serialise(out)
    assert out.serialised == {} and out.written == set()
    assert out.live["u"] == (raw, env) and out.live["u"][0] is raw
    env.segment = "vip"  # a change is written
    out.written.add("u")
    serialise(out)
    assert out.serialised == {"u": (1, env.to_bytes())}
    await write(out)
    assert table.changelog == [(1, "u", env.to_bytes())] and out.live["u"][1] is env


def test_a_live_envelope_is_used_only_while_the_table_holds_its_bytes() -> None:
    table = FakeTable()
    first = an_envelope()
    live = {"u": (stored(table, "u", first), first)}
    assert UserUpdates(table, live=live).load("u") is first
    assert "u" not in live  # taken out: the batch may change it
    live["u"] = (table.data["u"], first)
    stored(table, "u", an_envelope())  # new bytes (erasure, recovery, another writer)
    again = UserUpdates(table, live=live).load("u")
    assert again is not first and again == an_envelope()


def test_a_broken_users_envelope_is_read_from_the_table_again() -> None:
    table = FakeTable()
    env = an_envelope()
    live = {"u": (stored(table, "u", env), env)}
    out = UserUpdates(table, live=live)
    loaded = out.load("u")
    assert loaded is env
    loaded.offset = 99  # changed by the batch, then the user's update fails
    out.fail("u", "testing", RuntimeError("boom"))
    reread = out.load("u")
    assert reread is not env and reread is not None and reread.offset == 4
