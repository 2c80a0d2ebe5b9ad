"""Through Kafka: a live session's recommendations follow the session as it goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, consume, produce

T0 = 1_709_283_600_000


def view(user: str, session: str, item: str, n: int) -> tuple[bytes, bytes]:
    value = {"event_id": f"{user}-{n}", "type": "view", "user_id": user, "session_id": session,
             "item_id": item, "ts": T0 + n * 1000}  # fmt: skip
    return user.encode(), orjson.dumps(value)


async def test_recommendations_change_as_the_session_goes_on(
    settings: Settings, tmp_path: Path
) -> None:
    history = []
    for u in range(20):  # two browsing paths: shoes a -> b -> c and books x -> y -> z
        for n, item in enumerate(["a", "b", "c"] if u % 2 else ["x", "y", "z"]):
            history.append(view(f"h{u}", f"hs{u}", item, n))
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, history)
        assert await consume(settings.topic_recommendations, settings, until=20), worker.logs()

        async def live(n: int, item: str) -> list[str]:
            await produce(settings, [view("eve", "es1", item, 100 + n)])
            trigger = f"eve-{100 + n}"

            def eves(records: list[Any]) -> list[Any]:
                return [orjson.loads(r.value) for r in records if r.key == b"eve"]

            records = await consume(
                settings.topic_recommendations, settings, wait_s=30,
                done=lambda out: any(m["trigger_event_id"] == trigger for m in eves(out)),
            )  # fmt: skip
            mine = eves(records)
            assert mine and mine[-1]["trigger_event_id"] == trigger, (
                f"no recommendation for {trigger}:\n{worker.logs()}"
            )
            return [i["item_id"] for i in mine[-1]["items"]]

        after_a = await live(0, "a")
        after_y = await live(1, "y")
        assert after_a[0] == "b", after_a  # what follows a
        assert after_y[0] == "z", after_y  # the session moved on: what follows y
        assert after_a != after_y
        print(f"verified: after a -> {after_a[:3]}, after a,y -> {after_y[:3]}")
