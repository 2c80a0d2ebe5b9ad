"""Fault-injection fixtures (the shared ones are in tests/conftest.py).

Each test gets its own topics, consumer group, Redis prefix, web port and data dir (the
``settings`` fixture); the disturbed services of the outage tests are private instances
(``tests.support.chaos.PrivateStack``), never the shared stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from streams.core.settings import Settings
from tests.support.chaos_run import PrivateStack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos" in str(item.fspath):
            item.add_marker(pytest.mark.integration)  # needs the real services


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    """A private stack directory and ports; whatever the test started there is stopped."""
    ps = PrivateStack(tmp_path / "stack")
    try:
        yield ps
    finally:
        ps.stop_all()


@pytest.fixture(autouse=True)
async def drop_test_keys(settings: Settings) -> AsyncIterator[None]:
    """Afterwards, delete the keys of this test's prefixes (its own and its clean sibling's)
    from the shared redis-server."""
    yield
    client = aioredis.from_url(settings.redis_url)
    try:
        pattern = "{" + settings.redis_prefix + "*"
        keys = [k async for k in client.scan_iter(match=pattern, count=2000)]
        for i in range(0, len(keys), 1000):
            await client.unlink(*keys[i : i + 1000])
    finally:
        await client.aclose()
