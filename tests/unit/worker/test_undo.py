"""The undo store's pure parts (streams.worker.undo): signed entries and which writes are
kept. The Redis scripts and the roll-back itself run against a real Redis in
tests/integration/test_undo.py, and with real Kafka in the chaos suite."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.undo import UndoStore


def store(key: bytes = b"key") -> UndoStore:
    return UndoStore(key, "p:undo:t:", "p:owners")


@given(epoch=st.integers(-1, 2**62), uid=st.text(max_size=40),
       before=st.none() | st.binary(max_size=200))  # fmt: skip
def test_an_entry_reads_back_as_written(epoch: int, uid: str, before: bytes | None) -> None:
    s = store()
    assert s.parse(epoch, uid, s.entry(epoch, uid, before)) == before


def test_an_entry_is_bound_to_its_epoch_user_hash_and_key() -> None:
    s, raw = store(), store().entry(7, "u1", b'{"p":1}')
    assert s.parse(8, "u1", raw) is Ellipsis  # another epoch: an old entry replayed
    assert s.parse(7, "u2", raw) is Ellipsis  # moved to another user
    assert UndoStore(b"key", "p:undo:other:", "p:owners").parse(7, "u1", raw) is Ellipsis
    assert store(b"other").parse(7, "u1", raw) is Ellipsis


@settings(max_examples=300)
@given(raw=st.binary(max_size=300), cut=st.integers(0, 120))
def test_any_damage_to_an_entry_is_refused_never_raises(raw: bytes, cut: int) -> None:
    """Whatever Redis holds (torn, overwritten, non-UTF-8, non-ASCII where the MAC goes),
    reading an entry never raises and returns only what was signed."""
    s = store()
    good = s.entry(3, "a", b'{"x":1}')
    damaged = good[:cut] + raw
    got = s.parse(3, "a", damaged)
    assert got is Ellipsis or s.entry(3, "a", got) == damaged  # only what was signed


def test_only_the_first_write_of_a_user_in_an_epoch_is_kept() -> None:
    s = store()
    assert not s.wants(0, "a"), "no epoch known for the partition: nothing is kept"
    s.begin(0, 41, ["b"])
    assert s.wants(0, "a") and not s.wants(0, "b") and not s.wants(1, "a")
    s.drop([0])
    assert not s.wants(0, "a")


def test_without_a_key_the_store_is_off() -> None:
    assert not store(b"").enabled and store().enabled
