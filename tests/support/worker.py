"""Helpers for integration tests: run the real worker as a process, produce, consume."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.core.settings import PREFIX, Settings
from streams.kafka import committed_offsets

ROOT = Path(__file__).resolve().parents[2]


def secret(name: str) -> str:
    """A test secret strong enough for the worker (>= 32 bytes, not a documented value)."""
    return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:40]}"


#: Tokens of tests that run the worker with authentication.
PUBLIC_KEY = secret("test-public-key")
ADMIN_TOKEN = secret("test-admin-token")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment, with ``settings`` as the only ``SHOPSTREAM_*`` variables
    and a fixed string hash seed: River's k-means sums distances over a *set* of feature
    names, so the cluster in segment changes depends on it, and runs are compared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return env | settings.to_env() | {"PYTHONHASHSEED": "0"}


def http_call(
    url: str, method: str = "GET", *, token: str | None = None, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One HTTP request; returns (status, headers, body) whatever the status."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, data=body, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class WorkerProcess:
    """``shopstream worker`` in a child process; stopped (by its pid) on exit.

    ``crash_after_changelog=N`` starts it with the crash-point hook of
    :mod:`tests.support.crashpoint` (it exits after its N-th changelog write, before the
    next output); ``preload`` imports another test hook module first (e.g.
    :mod:`tests.support.droppoint`); ``env`` adds variables.
    """

    def __init__(
        self, settings: Settings, log_path: Path, *, crash_after_changelog: int = 0,
        env: dict[str, str] | None = None, preload: str = "",
    ) -> None:  # fmt: skip
        self.settings = settings
        self.log_path = log_path
        self.crash_after = crash_after_changelog
        self.env = env or {}
        self.preload = preload  # a test hook module imported before the worker runs
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", "streams", "worker"]
        env = settings_env(self.settings) | self.env
        preload = self.preload or ("tests.support.crashpoint" if self.crash_after else "")
        if preload:
            hook = f"import {preload}, runpy; runpy.run_module('streams', " \
                   "run_name='__main__', alter_sys=True)"  # fmt: skip
            command = [sys.executable, "-c", hook, "worker"]
        if self.crash_after:
            env["SHOPSTREAM_TEST_CRASH_AFTER_CHANGELOG"] = str(self.crash_after)
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}{path}"

    def get_json(self, path: str, timeout: float = 5.0, *, token: str | None = None) -> Any:
        """GET ``path`` as JSON, with the admin token when the worker has one (or ``token``);
        an HTTP error raises (``urllib.error.HTTPError``, an ``OSError``)."""
        token = self.settings.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url(path), headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return orjson.loads(resp.read())

    def poll_json(
        self, path: str, ok: Any, what: str, timeout: float = 120.0, *, absent_ok: bool = False
    ) -> Any:
        """GET ``path`` every 0.5 s until ``ok(answer)``; the last answer. Fails if the
        worker dies or ``what`` is not reached within ``timeout`` seconds. ``absent_ok``: a 404
        means "not yet" (a batch publishes its outputs before it writes the profiles, so a
        profile can be missing for a moment after its recommendation arrived)."""
        deadline, snap = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            assert self.alive(), self.logs()
            try:
                snap = self.get_json(path)
            except urllib.error.HTTPError as exc:
                if not (absent_ok and exc.code == 404):
                    raise
                snap = None
            if snap is not None and ok(snap):
                return snap
            time.sleep(0.5)
        raise AssertionError(f"{what} not reached in {timeout}s; last: {snap}")

    def call(
        self, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
        headers: dict[str, str] | None = None, timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """Any request (``token``: a Bearer token, or none); returns status, headers, body."""
        return http_call(self.url(path), method, token=token, body=body, headers=headers,
                         timeout=timeout)  # fmt: skip

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get_json("/healthz", timeout=1.0)["status"] == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy after {timeout}s:\n{self.logs()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        """The end of the log (for assertion messages)."""
        return self.full_log()[-6000:]

    def full_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stuck_report(self, wait_s: float = 2.0) -> str:
        """For a worker that stopped making progress: the stack of every asyncio task (mode's
        worker logs them on SIGUSR1) and the log before it."""
        if not self.alive():
            return self.logs()
        assert self.proc is not None
        before = len(self.full_log())
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait_s)
        log = self.full_log()
        tasks = log[before:][:30000]
        return f"{log[max(0, before - 4000) : before]}\n--- tasks on SIGUSR1 ---\n{tasks}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def produce(settings: Settings, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Publish (key, value) pairs to the events topic exactly as a storefront would."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.topic_events, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(
    topic: str, settings: Settings, *, until: int | None = None,
    done: Callable[[list[Any]], bool] | None = None, wait_s: float = 60.0,
) -> list[Any]:  # fmt: skip
    """Read ``topic`` from the start until ``until`` records arrived (or ``done(records)``
    holds), or ``wait_s`` passed."""
    if done is None:
        assert until is not None, "say when to stop: until or done"
        done = lambda out: len(out) >= until  # noqa: E731
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + wait_s
    try:
        while not done(out) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await asyncio.shield(consumer.stop())
    return out


async def committed(settings: Settings) -> int:
    """Sum of the offsets the worker's consumer group committed on the events topic
    (:func:`streams.kafka.committed_offsets`: partitions without a commit count 0)."""
    return sum((await committed_offsets(settings)).values())
