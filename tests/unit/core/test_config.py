"""Settings from a TOML file, .env, the environment and *_FILE secrets; their sources;
unknown names warned with the closest valid one; coupon tiers configurable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.core.config import load
from streams.core.errors import ConfigError
from streams.core.settings import PREFIX, Settings
from streams.domain.alerts import tiers
from streams.domain.churn_state import ChurnConfig

ROOT = Path(__file__).resolve().parents[3]


def test_precedence_default_file_dotenv_env(tmp_path: Path) -> None:
    toml = tmp_path / "shop.toml"
    toml.write_text('rec_k = 7\npartitions = 6\n[kafka]\nbootstrap = "file:9092"\n'
                    '[churn]\nthreshold = 0.7\n')  # fmt: skip
    dotenv = tmp_path / ".env"
    dotenv.write_text("SHOPSTREAM_PARTITIONS=5\nSHOPSTREAM_REDIS_PREFIX='dot'\n")
    env = {"SHOPSTREAM_CONFIG": str(toml), "SHOPSTREAM_REDIS_PREFIX": "env"}
    loaded = load(env, dotenv=dotenv)
    s = loaded.settings
    assert (s.rec_k, s.kafka_bootstrap, s.churn_threshold) == (7, "file:9092", 0.7)
    assert s.partitions == 5 and s.redis_prefix == "env" and s.batch_size == 1000
    src = loaded.sources
    assert src["rec_k"] == f"file {toml}" and src["partitions"] == ".env"
    assert src["redis_prefix"] == "env" and src["batch_size"] == "default"
    # --config beats SHOPSTREAM_CONFIG
    other = tmp_path / "other.toml"
    other.write_text("rec_k = 3\n")
    assert load(env, config=other, dotenv=None).settings.rec_k == 3


def test_file_secrets_and_masking(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret-value\n")
    env = {"SHOPSTREAM_CHECKPOINT_KEY_FILE": str(secret),
           "SHOPSTREAM_REDIS_URL": "redis://:pw123@cache:6379/0"}  # fmt: skip
    loaded = load(env, dotenv=None)
    assert loaded.settings.checkpoint_key == "s3cret-value"
    assert loaded.sources["checkpoint_key"] == "env (SHOPSTREAM_CHECKPOINT_KEY_FILE)"
    shown = dict((v, val) for v, val, _ in loaded.rows())
    assert shown["SHOPSTREAM_CHECKPOINT_KEY"] == "***"
    assert shown["SHOPSTREAM_REDIS_URL"] == "redis://:***@cache:6379/0"
    with pytest.raises(ConfigError, match="both"):
        load({**env, "SHOPSTREAM_CHECKPOINT_KEY": "x"}, dotenv=None)
    with pytest.raises(ConfigError, match="cannot be read"):
        load({"SHOPSTREAM_CHECKPOINT_KEY_FILE": str(tmp_path / "nope")}, dotenv=None)


def test_unknown_names_are_warned_with_the_closest_valid_one(tmp_path: Path) -> None:
    env = {"SHOPSTREAM_BACTH_SIZE": "9", "SHOPSTREAM_STACK_DIR": "x", "SHOPSTREAM_TEST_X": "1"}
    assert load(env, dotenv=None).warnings == [
        "unknown variable SHOPSTREAM_BACTH_SIZE (did you mean SHOPSTREAM_BATCH_SIZE?)"
    ]
    toml = tmp_path / "c.toml"
    toml.write_text("bacth_size = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load({}, config=toml, dotenv=None)
    toml.write_text("rec_k = [1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load({}, config=toml, dotenv=None)


def test_coupon_tiers_are_configurable(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[coupon_tiers]]\nname = "vip"\nmin_value = 1000\ndiscount_pct = 30\n'
                    '[[coupon_tiers]]\nname = "rest"\nmin_value = 0\ndiscount_pct = 5\n')
    s = load({}, config=toml, dotenv=None).settings
    assert s.coupon_tiers == "vip:1000:30,rest:0:5"
    cfg = ChurnConfig.from_settings(s)
    assert [t.name for t in cfg.tiers] == ["vip", "rest"] and cfg.alert_policy.tiers == cfg.tiers
    assert tiers(Settings().coupon_tiers)[0].discount_pct == 20.0
    for bad in ("gold:500", "gold:500:20,silver:600:10,b:0:1", "gold:500:20", "g:0:120"):
        with pytest.raises(ConfigError, match="COUPON_TIERS"):
            Settings(coupon_tiers=bad).checked()


def test_settings_command_shows_values_sources_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHOPSTREAM_REC_K=4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env |= {"PYTHONPATH": str(ROOT), "SHOPSTREAM_PSEUDONYMISE_KEY": "hide-me",
            "SHOPSTREAM_PARTITONS": "3"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "settings", "--json"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = orjson.loads(proc.stdout)
    assert data["SHOPSTREAM_REC_K"] == {"value": "4", "source": ".env"}
    assert data["SHOPSTREAM_PSEUDONYMISE_KEY"] == {"value": "***", "source": "env"}
    assert data["SHOPSTREAM_BATCH_SIZE"]["source"] == "default"
    assert "hide-me" not in proc.stdout
    assert "did you mean SHOPSTREAM_PARTITIONS?" in proc.stderr
