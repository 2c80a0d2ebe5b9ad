"""Reader of the ``SessionId<TAB>ItemId<TAB>Time`` click files (YOOCHOOSE/RecSys format).

``Time`` is epoch seconds (fractions allowed); it is returned as UTC epoch milliseconds.

>>> import io
>>> list(read_clicks(io.StringIO("SessionId\\tItemId\\tTime\\n3\\t21\\t1396437466.94\\n")))
[('3', '21', 1396437466940)]
>>> list(read_clicks(io.StringIO("SessionId\\tItemId\\tTime\\n3\\t21\\n")))
Traceback (most recent call last):
...
streams.tools.clicks.MalformedLine: line 2: expected 3 tab-separated fields, got 2
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from streams.core.errors import InputError

Click = tuple[str, str, int]


class MalformedLine(InputError):
    """A line of a click file cannot be parsed; the message names the line number."""


def read_clicks(source: TextIO) -> Iterator[Click]:
    """Yield (session_id, item_id, ts_ms) per line; the header line is skipped."""
    for lineno, line in enumerate(source, 1):
        line = line.rstrip("\r\n")
        if not line or (lineno == 1 and line.startswith("SessionId")):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise MalformedLine(f"line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
        session, item, raw_ts = parts
        if not session or not item:
            raise MalformedLine(f"line {lineno}: empty session or item id")
        try:
            ts = float(raw_ts)
        except ValueError:
            raise MalformedLine(f"line {lineno}: time {raw_ts[:40]!r} is not a number") from None
        if ts != ts or ts in (float("inf"), float("-inf")) or ts < 0:
            raise MalformedLine(f"line {lineno}: time {raw_ts[:40]!r} is not a valid epoch")
        yield session, item, round(ts * 1000)


def read_file(path: Path) -> list[Click]:
    """All clicks of a file, in file order."""
    with path.open(encoding="utf-8") as f:
        try:
            return list(read_clicks(f))
        except MalformedLine as exc:
            raise MalformedLine(f"{path}: {exc} (expected SessionId<TAB>ItemId<TAB>Time)") from None
