"""The envelopes as they were at the last model checkpoint, so that a crash costs no learning.

The profiles table is written after every batch; the models are checkpointed only every
``SHOPSTREAM_CHECKPOINT_INTERVAL_S``. After a crash the models come back as they were at the
checkpoint (offset ``C`` of each partition) while the table holds every batch up to the crash
(``F``): the events in between were applied to the profiles but would never teach the models,
and every alert, segment change and anomaly derived from the models afterwards would differ
from a run without the crash.

The undo log closes that gap. Before a user's envelope is first written after checkpoint
``n``, its bytes as they were at the checkpoint (``None``: the user did not exist) are appended
to ``undo-<n>.log`` next to the checkpoint and flushed to the operating system (a killed
process loses nothing it wrote; a lost machine loses its checkpoints anyway). After a
restart on checkpoint ``n``, every envelope in ``undo-<n>.log`` is put back as it was — in the
table and its changelog — and the partition is read again from ``C + 1``: profiles, churn
tracks and models all learn those events again, in order, exactly as the first time, while
the Redis stores (fenced by source offset) skip what they applied and the outputs the batches
delivered before the crash are not sent again (``streams.worker.partitions``). A new
checkpoint starts a new log and deletes the older ones.

Each line is ``<hex HMAC-SHA256 of the rest>␠<JSON [user, partition, envelope or null]>``,
signed with ``SHOPSTREAM_CHECKPOINT_KEY`` like the checkpoints; a line that does not verify
(torn by the crash, tampered) ends the log: what follows it is not trusted.

>>> import tempfile, pathlib
>>> log = UndoLog(pathlib.Path(tempfile.mkdtemp()), b"k")
>>> log.begin(3)
{}
>>> log.stash([("u1", 0, b'{"p": 1}'), ("u2", 1, None)])
>>> log.stash([("u1", 0, b'{"p": 2}')])  # the state at the checkpoint is kept, not this one
>>> log.begin(3)  # after a restart on checkpoint 3
{'u1': (0, b'{"p":1}'), 'u2': (1, None)}
>>> log.forget("u1"); log.begin(3)  # an erased user is "did not exist"
{'u1': (0, None), 'u2': (1, None)}
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import orjson

log = logging.getLogger(__name__)

#: what a log holds: user -> (source partition, envelope bytes at the checkpoint or None)
Entries = dict[str, tuple[int, bytes | None]]


class UndoLog:
    """The pre-images of the envelopes changed since checkpoint :attr:`sequence`."""

    def __init__(self, directory: Path, key: bytes) -> None:
        self.dir, self.key = directory, key
        self.sequence = -1
        self.stashed: set[str] = set()
        self.file: IO[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.key)

    def path(self, sequence: int) -> Path:
        return self.dir / f"undo-{sequence:012d}.log"

    def begin(self, sequence: int) -> Entries:
        """Log the changes after checkpoint ``sequence`` (0: the models as they start, with no
        checkpoint); return what an earlier run already logged for it (empty for a new one)
        and delete the logs of older checkpoints."""
        if not self.enabled:
            return {}
        self.close()
        self.dir.mkdir(parents=True, exist_ok=True)
        entries = self.read(sequence)
        self.sequence, self.stashed = sequence, set(entries)
        self._rewrite(entries)  # without a torn last line, after which nothing would be read
        for old in self.dir.glob("undo-*.log"):
            if old != self.path(sequence):
                old.unlink(missing_ok=True)
        return entries

    def wants(self, uid: str) -> bool:
        """Whether ``uid``'s bytes before its next write must be logged (its first write
        since the checkpoint): callers read the table only for those."""
        return self.file is not None and uid not in self.stashed

    def stash(self, changes: Iterable[tuple[str, int, bytes | None]]) -> None:
        """``(user, partition, bytes before this write)`` of envelopes about to be written:
        the first of each user since the checkpoint is appended (and flushed)."""
        if self.file is None:
            return
        lines = []
        for uid, partition, before in changes:
            if uid in self.stashed:
                continue
            self.stashed.add(uid)
            lines.append(self._line(uid, partition, before))
        if lines:
            self.file.write(b"".join(lines))
            self.file.flush()

    def forget(self, uid: str) -> None:
        """An erased user must never come back from the log: their entry becomes "did not
        exist" (the log is rewritten, atomically)."""
        if self.file is None or uid not in self.stashed:
            return  # not changed since the checkpoint: nothing of theirs to put back
        entries = self.read(self.sequence)
        entries[uid] = (entries[uid][0], None) if uid in entries else (0, None)
        self.close()
        self._rewrite(entries)

    def _rewrite(self, entries: Entries) -> None:
        """The log of :attr:`sequence` holding ``entries`` (atomically), open to append."""
        path = self.path(self.sequence)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.write(b"".join(self._line(u, p, raw) for u, (p, raw) in entries.items()))
        tmp.replace(path)
        self.file = path.open("ab")

    def read(self, sequence: int) -> Entries:
        """The verified entries of ``undo-<sequence>.log`` (up to the first bad line)."""
        path = self.path(sequence)
        if not path.exists():
            return {}
        entries: Entries = {}
        for n, line in enumerate(path.read_bytes().split(b"\n")):
            if not line:
                continue
            mac, _, body = line.partition(b" ")
            if not hmac.compare_digest(mac, self._mac(body).encode()):  # bytes: any byte
                log.warning("%s: line %d does not verify (torn or tampered): ignoring it and "
                            "the rest", path.name, n + 1)  # fmt: skip
                break
            uid, partition, before = orjson.loads(body)
            entries.setdefault(uid, (partition, orjson.dumps(before) if before else None))
        return entries

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _line(self, uid: str, partition: int, before: bytes | None) -> bytes:
        body = orjson.dumps([uid, partition, orjson.Fragment(before) if before else None])
        return self._mac(body).encode() + b" " + body + b"\n"

    def _mac(self, body: bytes) -> str:
        return hmac.new(self.key, body, hashlib.sha256).hexdigest()
