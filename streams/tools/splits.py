"""Time-ordered train/test splits of click data for ``evaluate recs``.

* :func:`read_diginetica` reads the CIKM Cup 2016 (Diginetica) item views,
  ``session_id;user_id;item_id;timeframe;eventdate``: a click's time is ``eventdate`` at 00:00
  UTC plus ``timeframe`` milliseconds.
* :func:`diginetica_split` is the documented Diginetica split: the literature's filters (as
  session-rec's ``preprocess_diginetica``: drop sessions with < 2 clicks, then items with
  < ``min_support`` clicks, then sessions with < 2 clicks), then :func:`session_split`.
* :func:`session_split`: sessions sorted by start time (first click; ties by id), the last
  ``test_fraction`` of them test, the rest train; test clicks on items unseen in train are
  dropped, then test sessions left with < 2 clicks.

Both halves come back sorted by time (stable), ready for the evaluation.

>>> clicks = [("1", "a", 0), ("1", "b", 1), ("2", "a", 2), ("2", "c", 3), ("3", "a", 4),
...           ("3", "b", 5)]
>>> train, test = session_split(clicks, 1 / 3)
>>> [c[0] for c in train], test
(['1', '1', '2', '2'], [('3', 'a', 4), ('3', 'b', 5)])
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from streams.core.errors import InputError
from streams.tools.clicks import Click


class SplitError(InputError):
    """The click data cannot be split (unreadable rows, nothing left to test)."""


def by_time(clicks: Sequence[Click]) -> list[Click]:
    """Stable sort by event time (input order breaks ties)."""
    return sorted(clicks, key=lambda c: c[2])


def read_diginetica(path: Path) -> list[Click]:
    """Diginetica item views -> clicks, each session's clicks in time order."""
    out: list[Click] = []
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter=";")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:5]] != [
            "session_id", "user_id", "item_id", "timeframe", "eventdate",
        ]:  # fmt: skip
            raise SplitError(f"{path}: expected the header session_id;user_id;item_id;"
                             "timeframe;eventdate")
        for lineno, row in enumerate(rows, 2):
            try:
                session, _user, item, timeframe, date = row[:5]
                day = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC)
                out.append((session, item, int(day.timestamp()) * 1000 + int(timeframe)))
            except ValueError as exc:
                raise SplitError(f"{path}: line {lineno}: {exc}") from None
    out.sort(key=lambda c: (len(c[0]), c[0], c[2]))  # by session (numeric ids in numeric order)
    return out


def _at_least(clicks: list[Click], field: int, n: int) -> list[Click]:
    counts = Counter(c[field] for c in clicks)
    return [c for c in clicks if counts[c[field]] >= n]


def session_split(clicks: Sequence[Click], test_fraction: float) -> tuple[list[Click], list[Click]]:
    """(train, test) by session start time; see the module docstring."""
    start: dict[str, int] = {}
    for session, _, ts in clicks:
        if session not in start or ts < start[session]:
            start[session] = ts
    order = sorted(start, key=lambda s: (start[s], s))
    test_sessions = set(order[round(len(order) * (1 - test_fraction)) :])
    train = [c for c in clicks if c[0] not in test_sessions]
    known = {c[1] for c in train}
    test = _at_least([c for c in clicks if c[0] in test_sessions and c[1] in known], 0, 2)
    if not train or not test:
        raise SplitError("the split leaves no train or no test session with 2 known clicks")
    return by_time(train), by_time(test)


def diginetica_split(
    clicks: Sequence[Click], *, min_support: int = 5, test_fraction: float = 0.2
) -> tuple[list[Click], list[Click]]:
    """The documented Diginetica split (module docstring)."""
    kept = _at_least(_at_least(_at_least(list(clicks), 0, 2), 1, min_support), 0, 2)
    return session_split(kept, test_fraction)
