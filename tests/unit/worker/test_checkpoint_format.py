"""Checkpoints and hand-over bundles cannot run code: JSON only, never unpickled (issue 16).

Restores run under :func:`tests.support.nopickle.no_unpickling` (every unpickler raises and
every attempt is recorded): on the format-1 code (signed pickles read by a restricted
unpickler) they restore nothing and record the attempts. The bundles' trip through the real
Redis is in tests/integration/test_handover.py.
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import checkpoint as ck
from models.bundle import Models, ModelSet
from models.errors import CheckpointRejected
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.profile import features, update_profile
from streams.worker.checkpoints import Checkpointer
from streams.worker.configs import anomaly_config, model_factory, segment_config
from streams.worker.handover import Handover
from tests.support.nopickle import no_unpickling

ROOT = Path(__file__).resolve().parents[3]
KEY = "format-test-key"
FRESH = model_factory(Settings())
CONFIGS = segment_config(Settings()), anomaly_config(Settings())
DAY, T0 = 86_400_000, 1_704_067_200_000


def learned(partition: int, n: int) -> Models:
    """A bundle whose three models all learned something."""
    m = FRESH()
    for i in range(n):
        p = update_profile(None, Event(f"e{i}", "purchase", f"u{i % 17}", "s", T0 + i * 60_000,
                                       item_id=f"i{i % 9}", price=5.0 + i % 11))  # fmt: skip
        m.churn.observe(p.user_id, T0, T0 + i * 60_000, 1 + i % 3)
        m.churn.learn(features(p, T0 + (i % 40) * DAY), None, i % 3 == 0, T0 + i * DAY)
        m.segments.update(p, T0 + i * DAY)
        m.anomalies.observe(Event(f"v{i}", "view", p.user_id, "s", T0 + i * 900, item_id="i"))
        m.seen("shop.events", partition, i, T0 + i * 60_000)
    return m


def model_set() -> ModelSet:
    return ModelSet(parts={0: learned(0, 120), 3: learned(3, 40)})


async def no_flush() -> None:
    return None


def signed(payload: bytes, version: int = ck.VERSION, **meta: Any) -> bytes:
    """Checkpoint bytes around an exact ``payload``, signed with KEY (as ``sign`` does)."""
    header: dict[str, Any] = {"format": ck.FORMAT, "version": version, "meta": meta,
                              "payload_len": len(payload)}  # fmt: skip
    header["hmac"] = ck._signature(KEY.encode(), header, payload)
    return orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n" + payload


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['SHOPSTREAM_TEST_PWNED'] = '1'",))


# --- the guarantee -------------------------------------------------------------------------


async def test_a_checkpoint_is_restored_from_disk_without_unpickling_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key=KEY)
    ms = model_set()
    await Checkpointer(s).save(ms, no_flush)
    with no_unpickling(monkeypatch) as attempts:
        back = Checkpointer(s).restore()
    assert attempts == []
    assert sorted(back.parts) == [0, 3] and back.labels_learned == ms.labels_learned > 0
    assert back.to_dict() == ms.to_dict()


def test_no_module_of_the_application_imports_a_code_running_deserialiser() -> None:
    banned = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle",
              "joblib"}  # fmt: skip
    found = []
    for path in [*(ROOT / "models").rglob("*.py"), *(ROOT / "streams").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in banned]
    assert found == []


async def test_a_version_1_pickle_checkpoint_is_refused_cleanly_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Format 1 files (a signed pickle), even correctly signed and holding a real model set,
    are refused with one log line each and counted; the models start fresh, and the next
    checkpoint (format 2) restores."""
    s = Settings(data_dir=str(tmp_path), checkpoint_key=KEY)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    ck.checkpoint_path(folder, 1).write_bytes(signed(pickle.dumps(model_set()), version=1))
    ck.checkpoint_path(folder, 2).write_bytes(signed(pickle.dumps(Exploit()), version=1))
    reported: list[str] = []
    with no_unpickling(monkeypatch) as attempts, caplog.at_level(logging.INFO):
        checkpointer = Checkpointer(s, on_refused=reported.append)
        back = checkpointer.restore()
    assert attempts == [] and "SHOPSTREAM_TEST_PWNED" not in os.environ
    assert back.parts == {} and checkpointer.refused == 2 and reported == ["checkpoint"] * 2
    refusals = [r for r in caplog.records if "version 1 (a pickle) is no longer read" in r.message]
    assert len(refusals) == 2 and all(r.exc_info is None for r in refusals)
    assert "Traceback" not in caplog.text
    ms = model_set()
    await checkpointer.save(ms, no_flush)
    assert Checkpointer(s).restore().to_dict() == ms.to_dict()


async def test_a_tampered_json_payload_is_refused_and_an_older_valid_one_restored(
    tmp_path: Path,
) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key=KEY)
    older = model_set()
    path = await Checkpointer(s).save(older, no_flush)
    assert path is not None
    newer = ck.checkpoint_path(path.parent, older.stream_time_ms + 1)
    raw = path.read_bytes()
    header, payload = raw.split(b"\n", 1)
    state = orjson.loads(payload)
    state["parts"]["0"]["anomalies"]["n_learned"] += 1  # valid JSON, a different state
    newer.write_bytes(header + b"\n" + orjson.dumps(state))
    checkpointer = Checkpointer(s)
    back = checkpointer.restore()
    assert checkpointer.refused == 1 and checkpointer.last_path == str(path)
    assert back.to_dict() == older.to_dict()
    with pytest.raises(CheckpointRejected, match="bad signature"):
        ck.load_checkpoint(newer, KEY.encode())


def test_a_bundle_is_rebuilt_only_after_its_signature_key_and_offset_check() -> None:
    s = Settings(checkpoint_key=KEY)
    h = Handover(s)
    m = learned(0, 30)
    raw = ck.sign(m.to_dict(), {"offset": 29, "key": h.key(0)}, KEY.encode())
    assert h.bundle(raw, h.key(0), 29).to_dict() == m.to_dict()
    for data, key, offset, why in (
        (raw, h.key(1), 29, "signed for"), (raw, h.key(0), 30, "signed for offset"),
        (raw.replace(b'"n_learned":', b'"n_learned": '), h.key(0), 29, "bad signature"),
        (signed(pickle.dumps(m), version=1, offset=29, key=h.key(0)), h.key(0), 29,
         "version 1"),
    ):  # fmt: skip
        with pytest.raises(CheckpointRejected, match=why):
            h.bundle(data, key, offset)


# --- hostile input: random bytes and random JSON never raise anything but the rejection ----

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
HANDOVER = Handover(Settings(checkpoint_key=KEY))


@functools.cache
def real_state() -> bytes:
    return orjson.dumps(learned(0, 30).to_dict())


def rebuild(data: bytes) -> None:
    """Everything a worker does with checkpoint or bundle bytes; raises CheckpointRejected
    (or returns) only."""
    state, _ = ck.verify(data, KEY.encode(), "fuzz")
    ModelSet.from_dict(state, *CONFIGS)


def take(data: bytes) -> None:
    HANDOVER.bundle(data, HANDOVER.key(0), 7)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda j: orjson.dumps(j), JSON))
def test_random_bytes_are_only_ever_rejected(data: bytes) -> None:
    for consume in (rebuild, take):
        with pytest.raises(CheckpointRejected):
            consume(data)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_random_json_signed_with_the_right_key_is_only_ever_rejected(value: Any) -> None:
    """Even a payload that passes the signature (the key leaked, or a bug wrote it) is data:
    it is rebuilt into models or refused, never anything else."""
    payload = orjson.dumps(value)
    for data, consume in ((signed(payload), rebuild),
                          (signed(payload, offset=7, key=HANDOVER.key(0)), take)):  # fmt: skip
        try:
            consume(data)
        except CheckpointRejected:
            pass


def paths(d: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (keys and list indexes)."""
    out = [at]
    if isinstance(d, dict):
        for k, v in d.items():
            out += paths(v, (*at, k))
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            out += paths(v, (*at, i))
    return out


PATHS = st.deferred(lambda: st.sampled_from(paths(orjson.loads(real_state()))[1:]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PATHS, JSON)
def test_a_real_bundle_with_one_part_replaced_is_rebuilt_or_rejected(
    at: tuple[Any, ...], value: Any
) -> None:
    state = orjson.loads(real_state())
    node = state
    for k in at[:-1]:
        node = node[k]
    node[at[-1]] = value
    try:
        take(signed(orjson.dumps(state), offset=7, key=HANDOVER.key(0)))
    except CheckpointRejected:
        pass


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda j: signed(orjson.dumps(j)), JSON))
def test_a_worker_starts_whatever_its_checkpoint_folder_holds(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "checkpoints"
        folder.mkdir()
        ck.checkpoint_path(folder, 1).write_bytes(data)
        checkpointer = Checkpointer(Settings(data_dir=d, checkpoint_key=KEY))
        assert isinstance(checkpointer.restore(), ModelSet)
