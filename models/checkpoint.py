"""Signed, versioned, atomic model checkpoints: a JSON header line and a JSON payload.

File layout (format version 2)::

    {"format": "shopstream-checkpoint", "version": 2, "meta": {...}, "payload_len": N,
     "hmac": "<hex HMAC-SHA256>"}\\n<N bytes of JSON: the models' state>

The HMAC (SHA-256, keyed with ``SHOPSTREAM_CHECKPOINT_KEY``) covers the canonical header
without its ``hmac`` field *and* the payload. :func:`verify` checks format and signature
first and only then parses the payload -- with orjson, as plain data: nothing in a checkpoint
can run code, and nothing unverified is deserialised at all. The caller rebuilds its models
from that data (``from_dict`` methods with its own configs). Every failure is a
:class:`~models.errors.CheckpointRejected` saying why, so a checkpoint written by another
version -- including version 1, which held a pickle and is never unpickled -- is refused
cleanly, never a crash at start. ``meta`` (stream time, offsets, ...) is plain JSON too.
Writes go to a temporary file, are fsynced and then ``os.replace``d.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> p = save_checkpoint(d / "a.ckpt", {"w": 1}, {"offsets": {}, "stream_time": 5}, b"k")
>>> load_checkpoint(p, b"k")
({'w': 1}, {'offsets': {}, 'stream_time': 5})
>>> load_checkpoint(p, b"other key")
Traceback (most recent call last):
...
models.errors.CheckpointRejected: ... bad signature (tampered, or signed with another key)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from models.errors import CheckpointKeyMissing, CheckpointRejected

log = logging.getLogger(__name__)

FORMAT: Final = "shopstream-checkpoint"
VERSION: Final = 2
#: Version 1 held a pickle: refused (never unpickled), the models start fresh.
PICKLE_VERSION: Final = 1
SUFFIX: Final = ".ckpt"
MAX_HEADER: Final = 16 * 1024 * 1024


def _signature(key: bytes, header: dict[str, Any], payload: bytes) -> str:
    canonical = orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(key, canonical + b"\n" + payload, hashlib.sha256)
    return mac.hexdigest()


def checkpoint_path(directory: Path, sequence: int, prefix: str = "churn") -> Path:
    """The file of checkpoint number ``sequence`` (:func:`next_sequence`): names sort in
    the order the checkpoints were written (newest last).

    Ordered by write sequence, not by stream time: a stream time pushed ahead (one event
    from the future) would otherwise pin the restored checkpoint for as long as it stays
    ahead. Files of older versions, named by stream time, sort before the next one written.
    """
    return directory / f"{prefix}-{sequence:015d}{SUFFIX}"


def sequence_of(path: Path) -> int:
    """The number in a checkpoint's name (-1 if it has none).

    >>> sequence_of(Path("churn-000000000000042.ckpt")), sequence_of(Path("churn-x.ckpt"))
    (42, -1)
    """
    number = path.name.removesuffix(SUFFIX).rpartition("-")[2]
    return int(number) if number.isdigit() and len(number) <= 18 else -1


def checkpoints(directory: Path, prefix: str = "churn") -> list[Path]:
    """The checkpoint files in ``directory``, oldest first (by their sequence number)."""
    if not Path(directory).is_dir():
        return []
    return sorted(Path(directory).glob(f"{prefix}-*{SUFFIX}"), key=lambda p: (sequence_of(p), p))


def next_sequence(directory: Path, prefix: str = "churn") -> int:
    """One more than the newest checkpoint's number in ``directory`` (1 when none)."""
    found = checkpoints(directory, prefix)
    return max(sequence_of(found[-1]), 0) + 1 if found else 1


def sign(state: dict[str, Any], state_meta: dict[str, Any], key: bytes) -> bytes:
    """JSON-safe ``state`` (a model's ``to_dict()``) and ``state_meta`` as signed checkpoint
    bytes (header + JSON payload)."""
    if not key:
        raise CheckpointKeyMissing("no checkpoint key configured (SHOPSTREAM_CHECKPOINT_KEY)")
    payload = orjson.dumps(state)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "meta": state_meta,
        "payload_len": len(payload),
    }
    header["hmac"] = _signature(key, header, payload)
    return orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n" + payload


def verify(data: bytes, key: bytes, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, state_meta)`` from :func:`sign`'s bytes, or CheckpointRejected saying why
    not (``source`` names where the bytes came from). Parses the payload only after the HMAC
    checks, and only as JSON."""
    if not key:
        raise CheckpointRejected(f"{source}: no checkpoint key configured, cannot verify")
    line, sep, payload = data[:MAX_HEADER].partition(b"\n")
    if sep:
        payload = data[len(line) + 1 :]
    try:
        header = orjson.loads(line) if sep else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointRejected(f"{source}: not a shopstream checkpoint (no valid header)")
    mac = header.pop("hmac", None)
    if not isinstance(mac, str) or not mac:
        raise CheckpointRejected(f"{source}: unsigned checkpoint refused")
    if not hmac.compare_digest(mac, _signature(key, header, payload)):
        raise CheckpointRejected(
            f"{source}: bad signature (tampered, or signed with another key)"
        )
    if header.get("version") == PICKLE_VERSION:
        raise CheckpointRejected(
            f"{source}: format version 1 (a pickle) is no longer read: refused, never "
            "unpickled; the models start fresh"
        )
    if header.get("version") != VERSION:
        raise CheckpointRejected(
            f"{source}: incompatible checkpoint version {header.get('version')!r} "
            f"(this build reads version {VERSION})"
        )
    if header.get("payload_len") != len(payload):
        raise CheckpointRejected(f"{source}: payload length mismatch")
    try:  # signed by the operator's key, and still only data
        state = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CheckpointRejected(f"{source}: payload is not JSON ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointRejected(f"{source}: payload is not a JSON object")
    meta = header.get("meta")
    return state, meta if isinstance(meta, dict) else {}


def save_checkpoint(
    path: Path, state: dict[str, Any], state_meta: dict[str, Any], key: bytes
) -> Path:
    """Write JSON-safe ``state`` and ``state_meta`` atomically and signed; return ``path``."""
    data = sign(state, state_meta, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: Path, key: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load ``(state, state_meta)``; raise CheckpointRejected saying why not."""
    if not key:
        raise CheckpointRejected(f"{path}: no checkpoint key configured, cannot verify")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointRejected(f"{path}: unreadable ({exc})") from exc
    return verify(data, key, str(path))


def latest_valid(
    directory: Path, key: bytes, prefix: str = "churn", *,
    decode: Callable[[dict[str, Any]], Any] = lambda state: state,
    rejected: list[str] | None = None,
) -> tuple[Any, dict[str, Any], Path] | None:
    """The newest checkpoint (the last written) that verifies and that ``decode`` (state ->
    model, raising CheckpointRejected) accepts, as ``(model, meta, path)``; rejected ones are
    logged (one line each), appended to ``rejected`` and skipped."""
    for path in reversed(checkpoints(directory, prefix)):
        try:
            state, meta = load_checkpoint(path, key)
            model = decode(state)
        except CheckpointRejected as exc:
            log.warning("checkpoint rejected, skipping: %s", exc)
            if rejected is not None:
                rejected.append(str(exc))
            continue
        log.info("restored checkpoint %s", path)
        return model, meta, path
    return None


def prune(directory: Path, keep: int = 3, prefix: str = "churn") -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints; return the deleted paths."""
    paths = list(reversed(checkpoints(directory, prefix)))
    for old in paths[keep:]:
        old.unlink(missing_ok=True)
    return paths[keep:]
