"""docker-compose.yml cannot run here (no Docker engine), so check that it is wired right."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.core.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[3]


def test_compose_wires_kafka_redis_and_the_worker() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "worker"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    worker = services["worker"]
    assert worker["build"] == "."
    assert set(worker["depends_on"]) == {"kafka", "redis"}
    env = worker["environment"]
    # The worker reaches the other services by their compose names ...
    internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{env['SHOPSTREAM_KAFKA_BOOTSTRAP']}" in internal
    assert env["SHOPSTREAM_REDIS_URL"].startswith("redis://redis:")
    # ... and is configured only through real settings.
    known = {PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    assert set(env) <= known
    assert Settings.from_env({k: str(v) for k, v in env.items() if "${" not in str(v)})
    # Redis keeps its data across restarts: the append-only file, on a volume
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_the_local_stack_runs_redis_with_the_append_only_file() -> None:
    text = (ROOT / "scripts/stack.sh").read_text()
    assert '--appendonly "${SHOPSTREAM_REDIS_APPENDONLY:-yes}"' in text
    assert "--appendfsync everysec" in text


def test_dockerfile_runs_the_worker() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["shopstream", "worker"]' in text
    assert "python:3.11" in text
