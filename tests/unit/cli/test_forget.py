"""`shopstream forget`: the id travels percent-encoded with the admin token, and a refusal
is reported in one line (a stand-in worker records what it receives).

Before issue 16 the id went into the URL as is: `bob#x` asked to erase `bob`, `carol?k=1`
`carol`, `100%25` `100%`; ids with `/` or spaces failed with a wrong message; and no token
was sent. The real erasure of exactly these ids is tests/integration/test_http_api.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cli.test_failures import run

TOKEN = "at-" + "c41d8e2f06" * 4


class Stub:
    """A worker stand-in: answers DELETE with ``status``/``body``, records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.status, self.body = 200, {"user_id": "x", "removed": {"profile": 1}}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_DELETE(self) -> None:
                stub.requests.append(("DELETE", self.path, self.headers.get("Authorization")))
                data = json.dumps(stub.body).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    thread = threading.Thread(target=s.server.serve_forever, daemon=True)
    thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.mark.parametrize(
    ("user_id", "path"),
    [("bob#x", "/users/bob%23x"), ("carol?k=1", "/users/carol%3Fk%3D1"),
     ("100%25", "/users/100%2525"), ("100%", "/users/100%25"), ("a/b", "/users/a%2Fb"),
     ("a b", "/users/a%20b"), ("../models", "/users/..%2Fmodels"), ("é", "/users/%C3%A9")],
)  # fmt: skip
def test_the_id_is_percent_encoded_and_the_admin_token_sent(
    stub: Stub, tmp_path: Path, user_id: str, path: str
) -> None:
    stub.body = {"user_id": user_id, "removed": {"profile": 1, "redis_keys": 2}}
    proc = run(["forget", user_id, "--url", stub.url], tmp_path,
               SHOPSTREAM_ADMIN_TOKEN=TOKEN)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stub.requests == [("DELETE", path, f"Bearer {TOKEN}")]
    assert proc.stdout == f"forgot {user_id}: profile 1, redis_keys 2\n"


def test_an_unknown_user_is_said_to_have_nothing_stored(stub: Stub, tmp_path: Path) -> None:
    stub.body = {"user_id": "ghost", "removed": {"profile": 0, "redis_keys": 0}}
    proc = run(["forget", "ghost", "--url", stub.url], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("nothing was stored for ghost")
    assert stub.requests == [("DELETE", "/users/ghost", None)]  # no token configured


def test_a_worker_that_cannot_reach_the_owner_is_reported(stub: Stub, tmp_path: Path) -> None:
    stub.status = 409
    stub.body = {"error": "the user's partition 3 is not served here and it moved"}
    proc = run(["forget", "bob#x", "--url", stub.url], tmp_path)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 3
    assert line == (f"shopstream: the worker at {stub.url} answered 409 Conflict to forget "
                    "'bob#x': the user's partition 3 is not served here and it moved; "
                    "run it again (forgetting twice is harmless)")  # fmt: skip


def test_a_missing_token_is_named(stub: Stub, tmp_path: Path) -> None:
    stub.status, stub.body = 401, {"error": "this endpoint needs the admin token"}
    proc = run(["forget", "bob", "--url", stub.url], tmp_path)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "set SHOPSTREAM_ADMIN_TOKEN" in line
