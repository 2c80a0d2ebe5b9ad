"""Writing a profile into the table's store for a given partition, whatever the store.

faust-streaming's RocksDB store (``rocksdb://``) keeps one database per partition and takes
the partition of a write from the *current event* (``faust.streams.current_event``); our
batches write many users of several partitions outside any event's context, where its
``_set`` fails an assertion. :func:`put` writes to the partition's database directly (the
envelope knows its source partition, which is also its changelog partition); the memory
store is a plain mapping. Relies on ``_db_for_partition``, ``_encode_key``,
``_encode_value`` and ``_key_index`` of faust-streaming 0.11-0.15's RocksDB store
(tests/unit/patches/test_tablestore.py checks they are there).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def put(data: MutableMapping[str, bytes], partition: int, key: str, value: bytes) -> None:
    """``data[key] = value``, stored with ``partition`` (RocksDB: that partition's DB)."""
    db_for: Any = getattr(data, "_db_for_partition", None)
    if db_for is None:
        data[key] = value
        return
    store: Any = data
    raw_key, raw_value = store._encode_key(key), store._encode_value(value)
    store._key_index[raw_key] = partition
    db_for(partition).put(raw_key, raw_value)
