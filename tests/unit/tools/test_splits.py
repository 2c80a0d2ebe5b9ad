"""The documented Diginetica split (streams/tools/splits.py) on a small generated file."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.tools.splits import SplitError, diginetica_split, read_diginetica


def write_views(path: Path, rows: list[tuple[int, str, int, str]]) -> None:
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    lines += [f"{s};NA;{i};{tf};{day}" for s, i, tf, day in rows]
    path.write_text("\n".join(lines) + "\n")


def test_time_is_the_day_plus_the_timeframe_and_sessions_are_ordered(tmp_path: Path) -> None:
    f = tmp_path / "v.csv"
    write_views(f, [(10, "x", 500, "2016-01-02"), (9, "y", 7, "2016-01-01"),
                    (10, "z", 100, "2016-01-02")])  # fmt: skip
    day2 = 1_451_692_800_000  # 2016-01-02T00:00Z
    assert read_diginetica(f) == [("9", "y", day2 - 86_400_000 + 7), ("10", "z", day2 + 100),
                                  ("10", "x", day2 + 500)]  # fmt: skip


def test_filters_then_the_last_sessions_are_the_test(tmp_path: Path) -> None:
    rows = []
    for s in range(10):  # sessions 0..9 start on consecutive days; item "rare" clicked twice
        day = f"2016-01-{s + 1:02d}"
        rows += [(s, "a", 0, day), (s, "b", 1, day)]
    rows += [(3, "rare", 2, "2016-01-04"), (4, "rare", 2, "2016-01-05"), (11, "a", 0, "2016-02-01")]
    f = tmp_path / "v.csv"
    write_views(f, rows)
    train, test = diginetica_split(read_diginetica(f), min_support=3)
    assert all(c[1] != "rare" for c in train + test)       # items below the support go
    assert "11" not in {c[0] for c in train + test}        # a one-click session goes
    assert {c[0] for c in test} == {"8", "9"}              # last 20 % of 10 sessions
    assert [c[2] for c in train] == sorted(c[2] for c in train)
    train2, _ = diginetica_split(read_diginetica(f), min_support=2)
    assert any(c[1] == "rare" for c in train2)


def test_a_file_that_is_not_diginetica_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "v.csv"
    f.write_text("SessionId\tItemId\tTime\n1\t2\t3\n")
    with pytest.raises(SplitError, match="header"):
        read_diginetica(f)
    write_views(f, [(1, "a", 0, "yesterday")])
    with pytest.raises(SplitError, match="line 2"):
        read_diginetica(f)
