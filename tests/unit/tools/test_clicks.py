"""The SessionId/ItemId/Time click reader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from streams.tools.clicks import MalformedLine, read_clicks, read_file


def test_reads_rows_and_skips_header(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text("SessionId\tItemId\tTime\n1\t10\t1396437466.94\n1\t11\t1396437467\n\n")
    assert read_file(p) == [("1", "10", 1396437466940), ("1", "11", 1396437467000)]


def test_file_without_header() -> None:
    assert list(read_clicks(io.StringIO("s\ti\t2.5\n"))) == [("s", "i", 2500)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SessionId\tItemId\tTime\n1\t2\t3\n1\t2\n", "line 3: expected 3"),
        ("1\t2\tsoon\n", "line 1: time 'soon' is not a number"),
        ("1\t2\t3\n\t2\t3\n", "line 2: empty session"),
        ("1\t2\t-5\n", "line 1: time '-5' is not a valid epoch"),
        ("1\t2\tnan\n", "line 1: time 'nan' is not a valid epoch"),
    ],
)
def test_malformed_lines_name_their_line(text: str, message: str) -> None:
    with pytest.raises(MalformedLine, match=message):
        list(read_clicks(io.StringIO(text)))
