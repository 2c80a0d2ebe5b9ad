"""Every command, with what it needs unreachable or its input malformed, prints ONE line
(what failed, what to check) and exits non-zero — never a traceback.

Kafka is "down" by pointing at a port nobody listens on (bound, then closed); so is Redis
and the worker's HTTP address. No services are needed. (Before issue 21, `topics`, `tail`
and `replay` printed a 76-line traceback here, and a file in the wrong format replayed
with exit code 0.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.core.settings import PREFIX
from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[3]


def run(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    closed = free_port()  # nothing listens there once the probe socket is closed
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env |= {
        PREFIX + "KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}",
        PREFIX + "REDIS_URL": f"redis://:secret-pw@127.0.0.1:{closed}/0",
        PREFIX + "WEB_PORT": str(closed),
        PREFIX + "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),  # this checkout's code, whatever the venv has installed
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "secret-pw" not in proc.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "events.jsonl"
    good.write_text('{"event_id":"e1","type":"view","user_id":"u1","session_id":"s1",'
                    '"item_id":"i1","ts":1709283600000}\n')  # fmt: skip
    clicks = tmp_path / "clicks.tsv"
    clicks.write_text("SessionId\tItemId\tTime\n1\ta\t1396413533\n1\tb\t1396413534\n")
    csv = tmp_path / "wrong.csv"
    csv.write_text("user_id,timestamp,amount\nu1,2011-01-01,5\nu2,2011-01-02,7\n")
    return {"good": good, "clicks": clicks, "csv": csv}


KAFKA_COMMANDS = [
    ["worker"],
    ["topics"],
    ["tail", "shop.events", "--timeout", "1"],
    ["replay", "{good}"],
]


@pytest.mark.parametrize("args", KAFKA_COMMANDS, ids=lambda a: a[0])
def test_kafka_down_is_one_line_and_exit_3(
    args: list[str], tmp_path: Path, files: dict[str, Path]
) -> None:
    proc = run([a.format(**files) for a in args], tmp_path)
    line = one_line(proc)
    assert proc.returncode == 3
    assert "cannot reach Kafka at 127.0.0.1:" in line and "SHOPSTREAM_KAFKA_BOOTSTRAP" in line


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        # commands that need no Kafka fail on what they do need
        (["forget", "u1"], 3, "cannot reach the worker"),
        (["evaluate", "recs", "--train", "{clicks}", "--test", "{clicks}"], 3,
         "cannot reach Redis at 127.0.0.1:"),
        # malformed or missing inputs
        (["replay", "{csv}"], 2, "none of the first 3 records is readable"),
        (["replay", "{clicks}.missing"], 2, "cannot use the file"),
        (["evaluate", "recs", "--train", "{csv}", "--test", "{clicks}"], 2,
         "expected SessionId<TAB>ItemId<TAB>Time"),
        (["evaluate", "churn", "--transactions", "{clicks}", "--cutoff", "2014-01-01"], 2,
         "header lacks column(s)"),
        (["evaluate", "churn", "--transactions", "{csv}", "--cutoff", "tomorrow"], 2,
         "is not a YYYY-MM-DD date"),
        (["generate", "--users", "5", "--days", "3", "--out", "{csv}/x.jsonl"], 2,
         "cannot use the file"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_other_failures_are_one_line(
    args: list[str], code: int, expected: str, tmp_path: Path, files: dict[str, Path]
) -> None:
    proc = run([a.format(**files) for a in args], tmp_path)
    line = one_line(proc)
    assert proc.returncode == code and expected in line, line


@pytest.mark.parametrize("args", [["worker"], ["topics"], ["settings"], ["tail", "t"]])
def test_bad_setting_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    proc = run(args, tmp_path, SHOPSTREAM_PARTITIONS="many")
    assert one_line(proc) == (
        "shopstream: configuration error: SHOPSTREAM_PARTITIONS='many' is not a valid int"
    )
    assert proc.returncode == 2


def test_replay_skipping_bad_lines_exits_non_zero(tmp_path: Path, files: dict[str, Path]) -> None:
    """Some lines unreadable: the good ones are sent, the command says so and fails."""
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(files["good"].read_text() + "not json\n")
    proc = run(["replay", str(mixed)], tmp_path)
    assert proc.returncode == 3  # Kafka is down here; the format check passed first
