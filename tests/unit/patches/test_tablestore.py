"""The private parts of faust's RocksDB store that streams/patches/tablestore.py uses are
there, and put() writes to the database of the given partition."""

from __future__ import annotations

from faust.stores import rocksdb

from streams.patches.tablestore import put


def test_the_rocksdb_store_has_what_put_relies_on() -> None:
    for name in ("_db_for_partition", "_encode_key", "_encode_value", "_set"):
        assert hasattr(rocksdb.Store, name), name
    assert rocksdb.rocksdict is not None, "rocksdict is not installed (pip install rocksdict)"


def test_put_on_a_plain_mapping_and_on_a_partitioned_store() -> None:
    plain: dict[str, bytes] = {}
    put(plain, 3, "u1", b"v")
    assert plain == {"u1": b"v"}

    class FakeStore(dict[str, bytes]):
        def __init__(self) -> None:
            super().__init__()
            self.dbs: dict[int, dict[bytes, bytes]] = {}
            self._key_index: dict[bytes, int] = {}

        def _db_for_partition(self, p: int) -> dict[bytes, bytes]:
            return self.dbs.setdefault(p, {})

        def _encode_key(self, k: str) -> bytes:
            return f'"{k}"'.encode()

        def _encode_value(self, v: bytes) -> bytes:
            return v

    class DB(dict[bytes, bytes]):
        def put(self, k: bytes, v: bytes) -> None:
            self[k] = v

    store = FakeStore()
    store.dbs[2] = DB()
    put(store, 2, "u1", b"env")
    assert store.dbs[2] == {b'"u1"': b"env"} and store._key_index == {b'"u1"': 2}
