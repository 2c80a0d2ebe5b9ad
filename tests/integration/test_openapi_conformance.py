"""Property tests of a running worker against its OpenAPI document (schemathesis).

For every documented operation, schemathesis generates requests from the document (valid
ones, and invalid ones where the document constrains them: ``k`` out of range, a wrong
body, ...) and checks the worker's answers: no server error, only documented status codes
and content types, bodies that fit the response schemas, invalid data rejected, and the
token actually enforced (``ignored_auth``: the same request without it must fail).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from streams.core.build import package_version
from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.web.openapi import document
from tests.integration.test_http_api import shop
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, free_port, produce

schema = schemathesis.openapi.from_dict(document(package_version()))


@pytest.fixture(scope="module")
def worker(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp: Path = tmp_path_factory.mktemp("conformance")
    s = Settings(
        kafka_bootstrap=os.environ["SHOPSTREAM_TEST_KAFKA"],
        redis_url=os.environ["SHOPSTREAM_TEST_REDIS_URL"],
        web_port=free_port(), data_dir=str(tmp / "worker"), partitions=2,
        public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN,
    ).namespaced(f"t{uuid.uuid4().hex[:10]}")  # fmt: skip
    asyncio.run(ensure_topics(s))
    with WorkerProcess(s, tmp / "worker.log") as w:
        w.wait_healthy()
        asyncio.run(produce(s, shop()))
        yield w


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(
    case: schemathesis.Case, worker: WorkerProcess
) -> None:
    token = ADMIN_TOKEN if case.operation.path != "/recommendations/{user_id}" else PUBLIC_KEY
    case.call_and_validate(
        base_url=f"http://127.0.0.1:{worker.settings.web_port}",
        headers={"Authorization": f"Bearer {token}"},
    )
