"""`shopstream worker` refuses an unsafe exposure before it connects to anything: one line,
exit code 2 (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.test_failures import one_line, run

STRONG = "at-" + "c41d8e2f06" * 4


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"SHOPSTREAM_WEB_HOST": "0.0.0.0"},
         "SHOPSTREAM_WEB_HOST=0.0.0.0 is not a loopback address: set SHOPSTREAM_PUBLIC_KEY and "
         "SHOPSTREAM_ADMIN_TOKEN"),
        ({"SHOPSTREAM_WEB_HOST": "0.0.0.0", "SHOPSTREAM_ADMIN_TOKEN": STRONG},
         "is not a loopback address"),
        ({"SHOPSTREAM_CHECKPOINT_KEY": "change-me"},
         "SHOPSTREAM_CHECKPOINT_KEY is shorter than 32 bytes"),
        ({"SHOPSTREAM_ADMIN_TOKEN": "0123456789abcdef0123456789abcdef"},
         "SHOPSTREAM_ADMIN_TOKEN is a value from the documentation"),
        ({"SHOPSTREAM_ADMIN_TOKEN": STRONG, "SHOPSTREAM_PUBLIC_KEY": STRONG},
         "SHOPSTREAM_PUBLIC_KEY equals SHOPSTREAM_ADMIN_TOKEN"),
    ],
)  # fmt: skip
def test_an_unsafe_exposure_is_refused_in_one_line(
    tmp_path: Path, extra: dict[str, str], expected: str
) -> None:
    proc = run(["worker"], tmp_path, **extra)
    line = one_line(proc)
    assert proc.returncode == 2
    assert expected in line, line
    assert STRONG not in proc.stderr  # a secret is never printed
