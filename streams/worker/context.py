"""What one running worker holds: the Faust app, its topics, the profile table, the clients.

Built once by :func:`streams.app.create_app`; every field is set at construction. The
Protocols below say what the worker needs from Faust's topics and table, so this layer
depends on that, not on the concrete app.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import faust

from streams.core.settings import Settings
from streams.telemetry import Telemetry
from streams.worker.runtime import Runtime


class Topic(Protocol):
    """A Faust topic the worker produces to (raw bytes)."""

    async def send(
        self, *, key: bytes | None = ..., value: bytes | None = ...,
        headers: list[tuple[str, bytes]] | None = ...,
    ) -> Any: ...  # fmt: skip

    def get_topic_name(self) -> str: ...


class ProfileTable(Protocol):
    """The Faust table of profile envelopes: ``user_id`` -> envelope bytes."""

    @property
    def data(self) -> MutableMapping[str, bytes]: ...
    def get(self, key: str) -> bytes | None: ...
    def send_changelog(
        self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any
    ) -> Any: ...
    async def send_changelog_batch(self, records: Sequence[tuple[int, str, bytes]]) -> None: ...


@dataclass(frozen=True, slots=True)
class ShopApp:
    """The Faust app and the handles the worker, the agent and the views use."""

    settings: Settings
    app: faust.App
    events: Any  # the input topic (the agent subscribes to it)
    dlq: Topic
    recommendations: Topic
    churn_alerts: Topic
    segments: Topic
    anomalies: Topic
    kpis: Topic
    alert_outcomes: Topic
    profiles: ProfileTable
    runtime: Runtime
    telemetry: Telemetry
