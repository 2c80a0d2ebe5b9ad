"""The undo store's pure parts (streams.worker.undo): signed entries and which writes are
kept. The Redis scripts and the roll-back itself run against a real Redis in
tests/integration/test_undo.py, and with real Kafka in the chaos suite."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.undo import UndoStore, new_epoch, offset_of


def store(key: bytes = b"key") -> UndoStore:
    return UndoStore(key, "p:undo:t:", "p:owners")


@given(offset=st.integers(-1, 2**62), uid=st.text(max_size=40),
       before=st.none() | st.binary(max_size=200))  # fmt: skip
def test_an_entry_reads_back_as_written(offset: int, uid: str, before: bytes | None) -> None:
    s, epoch = store(), new_epoch(offset)
    assert offset_of(epoch) == offset
    assert s.parse(2, epoch, uid, s.entry(2, epoch, uid, before)) == before


def test_an_entry_is_bound_to_its_partition_epoch_user_topic_and_key() -> None:
    s, raw = store(), store().entry(0, "7:aa", "u1", b'{"p":1}')
    assert s.parse(0, "7:aa", "u1", raw) == b'{"p":1}'
    assert s.parse(1, "7:aa", "u1", raw) is Ellipsis  # copied to another partition's hash
    assert s.parse(0, "7:bb", "u1", raw) is Ellipsis  # an old epoch at the same offset
    assert s.parse(0, "7:aa", "u2", raw) is Ellipsis  # moved to another user
    assert UndoStore(b"key", "p:undo:other:", "p:owners").parse(0, "7:aa", "u1", raw) is Ellipsis
    assert store(b"other").parse(0, "7:aa", "u1", raw) is Ellipsis


@settings(max_examples=300)
@given(raw=st.binary(max_size=300), cut=st.integers(0, 120))
def test_any_damage_to_an_entry_is_refused_never_raises(raw: bytes, cut: int) -> None:
    """Whatever Redis holds (torn, overwritten, non-UTF-8, non-ASCII where the MAC goes),
    reading an entry never raises and returns only what was signed."""
    s = store()
    good = s.entry(0, "3:aa", "a", b'{"x":1}')
    damaged = good[:cut] + raw
    got = s.parse(0, "3:aa", "a", damaged)
    assert got is Ellipsis or s.entry(0, "3:aa", "a", got) == damaged  # only what was signed


def test_only_the_first_write_of_a_user_in_an_epoch_is_kept() -> None:
    s = store()
    assert not s.wants(0, "a"), "no epoch known for the partition: nothing is kept"
    s.begin(0, "41:aa", ["b"])
    assert s.wants(0, "a") and not s.wants(0, "b") and not s.wants(1, "a")
    s.drop([0])
    assert not s.wants(0, "a")


def test_without_a_key_the_store_is_off() -> None:
    assert not store(b"").enabled and store().enabled


# --- review (branch undo-redis) -------------------------------------------------------------
class _Pipe:
    def __init__(self, hashes: dict[str, dict[bytes, bytes]]) -> None:
        self.hashes, self.calls = hashes, []

    def hgetall(self, key: str) -> None:
        self.calls.append(("hgetall", key))

    def hget(self, key: str, field: str) -> None:
        self.calls.append(("hget", key, field))

    def hlen(self, key: str) -> None:
        self.calls.append(("hlen", key))

    async def execute(self) -> list[object]:
        out: list[object] = []
        for call in self.calls:
            h = self.hashes.get(call[1], {})
            if call[0] == "hgetall":
                out.append(dict(h))
            elif call[0] == "hget":
                out.append(h.get(call[2].encode()))
            else:
                out.append(len(h))
        return out


class _Redis:
    def __init__(self, hashes: dict[str, dict[bytes, bytes]]) -> None:
        self.hashes = hashes

    def pipeline(self, transaction: bool = False) -> _Pipe:
        return _Pipe(self.hashes)

    async def aclose(self) -> None:
        return None


def test_an_entry_copied_to_another_partitions_hash_does_not_verify() -> None:
    """Entries are signed over the hash's key, the epoch, the user and the bytes: partition
    3's entries, copied with their ``@epoch`` into partition 5's hash, must not verify
    there (before, ``UndoStore._mac`` signed the key without the partition: e.g. at epoch
    -1, no stored models needed, a user of partition 3 who was erased or expired was put
    back into partition 5's table and changelog by ``Partitions.roll_back``)."""
    import asyncio

    s = store()
    raw = s.entry(3, "-1:aa", "u-of-p3", b'{"p":3}')
    redis = _Redis({s.hash_key(5): {b"@epoch": b"-1:aa", b"u-of-p3": raw}})
    undo = asyncio.run(s.read(redis, [5]))[5]
    assert undo.entries is None, "an entry of partition 3's hash is accepted in partition 5's"


def test_a_malformed_epoch_is_refused_not_a_crash_at_every_assignment() -> None:
    """``@epoch`` is not signed. ``Partitions.plan_replays`` runs ``int(epoch)`` outside its
    try (partitions.py:248) inside Faust's on_partitions_assigned, where an exception
    crashes the app (faust App._on_partitions_assigned -> crash): one bad field is a crash
    loop for every worker given the partition; ``UndoStore.read`` raises too (settle then
    takes its except path). Refused like a tampered entry is what the docstring promises."""
    import asyncio

    s = store()
    redis = _Redis({s.hash_key(0): {b"@epoch": b"x", b"u": s.entry(0, "x", "u", None)}})
    undo = asyncio.run(s.read(redis, [0]))[0]  # raises ValueError on the reviewed code
    assert undo.entries is None or undo.epoch is None


def test_a_field_that_is_not_utf8_is_refused_not_an_error_of_the_whole_settle() -> None:
    """``UndoStore.read`` decodes every field name (undo.py: ``k.decode()``): one non-UTF-8
    field raises, ``Partitions.settle`` takes its except path for *every* assigned partition
    (no roll-back anywhere, ``replay_until`` not read so delivered outputs are sent again,
    no ``undo.begin`` so nothing is recorded until the next checkpoint, ``replay_from``
    left set for any later ``perform_seek``)."""
    import asyncio

    s = store()
    redis = _Redis({s.hash_key(0): {b"@epoch": b"1:aa", b"\xff": s.entry(0, "1:aa", "u", None)}})
    undo = asyncio.run(s.read(redis, [0]))[0]  # raises UnicodeDecodeError on the reviewed code
    assert undo.entries is None


@settings(max_examples=300)
@given(fields=st.dictionaries(st.binary(max_size=20), st.binary(max_size=120), max_size=6),
       epoch=st.none() | st.binary(max_size=20))  # fmt: skip
def test_any_hash_parses_to_an_untrusted_or_verified_partition_never_raises(
    fields: dict[bytes, bytes], epoch: bytes | None
) -> None:
    """Whatever Redis holds in a partition's undo hash (any field names, values, epoch),
    reading it never raises: either no epoch, or nothing trusted, or only signed entries."""
    s = store()
    raw = dict(fields)
    if epoch is not None:
        raw[b"@epoch"] = epoch
    undo = s.parse_hash(0, raw)
    if undo.entries:
        assert undo.epoch is not None
        for uid, before in undo.entries.items():
            assert s.entry(0, undo.epoch, uid, before) == raw[uid.encode()]
