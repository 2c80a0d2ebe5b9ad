"""HTTP views served by the worker (Faust's web server).

``GET /healthz``, ``GET /recommendations/{user_id}?k=``, ``GET /items/{item_id}/similar?k=``,
``GET /users/{user_id}``, ``DELETE /users/{user_id}`` (forget). With pseudonymisation on,
``{user_id}`` is the storefront's own id; the worker looks up its pseudonym. Every handler
answers JSON, with a clear ``error`` on bad input.
"""

from __future__ import annotations

from typing import Any

from faust.web import View

from streams.domain.envelope import Envelope
from streams.domain.privacy import pseudonymise
from streams.web.queries import describe, model_status
from streams.worker.batch import BatchProcessor
from streams.worker.context import ShopApp

MAX_K = 100


def parse_k(raw: str | None, default: int) -> int:
    """``?k=`` as an int in [1, MAX_K].

    >>> parse_k(None, 10), parse_k("3", 10)
    (10, 3)
    >>> parse_k("0", 10)
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer in 1..100
    """
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_K:
        raise ValueError(f"k must be an integer in 1..{MAX_K}")
    return int(raw)


def _items(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": round(s, 6)} for i, s in pairs]


def register(shop: ShopApp, processor: BatchProcessor) -> None:
    """Add the API's views."""
    app = shop.app
    key = shop.settings.pseudonymise_key.encode()

    def shop_id(user_id: str) -> str:
        """The id state is kept under: the pseudonym when pseudonymisation is on."""
        return pseudonymise(user_id, key) if key else user_id

    runtime = shop.runtime
    default_k = shop.settings.rec_k

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        redis_ok = False
        try:
            redis_ok = bool(await runtime.redis.ping())
        except Exception:  # noqa: BLE001 - health reports, never raises
            redis_ok = False
        kafka_ok = bool(app.consumer is not None and not app.consumer.should_stop)
        ok = redis_ok and kafka_ok
        return web.json(
            {"status": "ok" if ok else "degraded", "redis": redis_ok, "kafka": kafka_ok},
            status=200 if ok else 503,
        )

    @app.page("/recommendations/{user_id}")
    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        try:
            k = parse_k(request.query.get("k"), default_k)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        uid = shop_id(user_id)
        raw = shop.profiles.get(uid)
        session_id = Envelope.from_bytes(raw).session_id if raw is not None else ""
        items = await runtime.store.recommend(uid, session_id, k)
        return web.json({"user_id": uid, "session_id": session_id, "items": _items(items)})

    @app.page("/items/{item_id}/similar")
    async def similar(web: Any, request: Any, item_id: str) -> Any:
        try:
            k = parse_k(request.query.get("k"), default_k)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        items = await runtime.store.similar(item_id, k)
        return web.json({"item_id": item_id, "items": _items(items)})

    @app.page("/models")
    async def models(web: Any, request: Any) -> Any:
        """The online models: version, labels learned, progressive quality, checkpoint."""
        return web.json(model_status(processor))

    @app.page("/users/{user_id}")
    class User(View):
        """GET: profile, segment, churn probability, recommendations. DELETE: forget."""

        async def get(self, request: Any, user_id: str) -> Any:
            uid = shop_id(user_id)
            raw = shop.profiles.get(uid)
            if raw is None:
                return self.json({"error": f"unknown user {user_id!r}"}, status=404)
            env = Envelope.from_bytes(raw)
            items = await runtime.store.recommend(uid, env.session_id, default_k)
            return self.json(
                {
                    "user_id": uid,
                    "session_id": env.session_id,
                    **describe(processor, env),
                    "profile": env.profile.to_dict(),
                    "recommendations": _items(items),
                }
            )

        async def delete(self, request: Any, user_id: str) -> Any:
            uid = shop_id(user_id)
            return self.json({"user_id": uid, "removed": await processor.forget(uid)})
