"""`shopstream evaluate recs` end to end on small generated click files and a real Redis."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest
import redis
from typer.testing import CliRunner

from streams.cli import cli
from streams.core.settings import Settings
from streams.tools.evaluate_recs import evaluate, load_split
from streams.worker.configs import rec_config

pytestmark = pytest.mark.integration


def write_clicks(path: Path, sessions: int, start_ts: float, seed: int) -> None:
    """Sessions walk short item chains (i -> i+1 -> ...) with repeat clicks; some noise."""
    rng = random.Random(seed)
    lines = ["SessionId\tItemId\tTime"]
    for s in range(sessions):
        item, ts = rng.randrange(50) * 10, start_ts + s * 7
        for _ in range(rng.randrange(2, 7)):
            lines.append(f"{seed}{s}\t{item}\t{ts:.3f}")
            ts += rng.uniform(1, 60)
            roll = rng.random()
            item = item if roll < 0.3 else (item + 1 if roll < 0.85 else rng.randrange(500))
    path.write_text("\n".join(lines) + "\n")


def test_evaluate_beats_popularity_and_cleans_up(tmp_path: Path) -> None:
    url = os.environ.get("SHOPSTREAM_TEST_REDIS_URL")
    if not url:
        pytest.fail("SHOPSTREAM_TEST_REDIS_URL is not set; start Redis with `make up`")
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    write_clicks(train, 600, 1_600_000_000, 1)
    write_clicks(test, 150, 1_600_010_000, 2)
    tr, te, _ = load_split(train, test)
    result = evaluate(tr, te, k=10, baselines=["pop", "vstan-mrr"], redis_url=url,
                      config=rec_config(Settings()))
    assert result["n"] > 300
    pop, vstan = result["baselines"]
    assert result["hr"] > pop["hr"] + 0.2 and vstan["hr"] > pop["hr"] + 0.2
    assert pop["n"] == vstan["n"] == result["n"]
    low, high = pop["store_gain"]["hr"][1:]
    assert 0 < low <= result["hr"] - pop["hr"] <= high
    assert result["redis_cpu_us_per_test_click"] > 0
    assert 0 < result["mrr"] <= result["hr"] <= 1
    assert 0 < result["coverage"] <= 1
    assert result["clicks_per_s"] > 0
    client = redis.Redis.from_url(url)
    assert list(client.scan_iter(match="{eval-*", count=2000)) == []
    client.close()


def test_command_prints_one_json_object(tmp_path: Path) -> None:
    url = os.environ["SHOPSTREAM_TEST_REDIS_URL"]
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    write_clicks(train, 100, 1_600_000_000, 3)
    write_clicks(test, 30, 1_600_010_000, 4)
    out = CliRunner().invoke(cli, ["evaluate", "recs", "--train", str(train), "--test",
                                   str(test), "--k", "5", "--baseline", "ar,vsknn", "--baseline",
                                   "pop", "--redis-url", url, "--json"])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.stdout)
    assert {"hr", "mrr", "n", "coverage", "clicks_per_s", "split"} <= set(data)
    assert [b["name"] for b in data["baselines"]] == ["ar", "vsknn", "pop"]
    assert all({"hr", "mrr", "n", "store_gain"} <= set(b) for b in data["baselines"])


def test_command_evaluates_the_diginetica_split(tmp_path: Path) -> None:
    url = os.environ["SHOPSTREAM_TEST_REDIS_URL"]
    rng = random.Random(9)
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(200):  # sessions walk item chains over 20 days
        item = rng.randrange(40)
        for j in range(rng.randrange(2, 6)):
            lines.append(f"{s};NA;{item};{j * 30_000};2016-03-{1 + s // 10:02d}")
            item = (item + 1) % 40
    views = tmp_path / "views.csv"
    views.write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(cli, ["evaluate", "recs", "--diginetica", str(views), "--baseline",
                                   "none", "--redis-url", url, "--json"])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.stdout)
    assert data["split"] == "diginetica views.csv, support >= 5, last 20%"
    assert data["n"] > 50 and data["hr"] > 0.5
    bad = CliRunner().invoke(cli, ["evaluate", "recs", "--baseline", "stan", "--train",
                                   str(views), "--test", str(views)])
    assert bad.exit_code == 2 and "unknown baseline" in bad.output
