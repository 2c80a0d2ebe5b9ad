"""HTTP views served by the worker (Faust's web server); the routes, their tokens and their
parameters are listed in :mod:`streams.web.openapi` (``GET /openapi.json``).

A request for one user (``GET /recommendations/{user_id}``, ``GET``/``DELETE
/users/{user_id}``) is answered by the owner of the user's partition (:mod:`.owner`). With
pseudonymisation on, ``{user_id}`` is the storefront's own id; the worker looks up its
pseudonym. Every handler answers JSON, with a clear ``error`` on bad input.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import View

from streams.core.build import package_version
from streams.domain.envelope import Envelope
from streams.domain.privacy import pseudonymise
from streams.web.openapi import MAX_EXCLUDE, document
from streams.web.owner import Owners
from streams.web.queries import describe, model_status
from streams.worker.batch import BatchProcessor
from streams.worker.configs import rec_arms
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


def parse_filters(query: Any, default_k: int) -> tuple[int, str | None, list[str]]:
    """``k``, ``category`` (empty = any) and the repeated ``exclude`` of a query string.

    >>> from multidict import MultiDict
    >>> parse_filters(MultiDict([("exclude", "a"), ("exclude", "b"), ("category", "")]), 10)
    (10, None, ['a', 'b'])
    """
    k = parse_k(query.get("k"), default_k)
    exclude = query.getall("exclude", [])
    if len(exclude) > MAX_EXCLUDE:
        raise ValueError(f"at most {MAX_EXCLUDE} exclude parameters")
    return k, query.get("category") or None, exclude


def parse_item_update(body: bytes) -> bool:
    """The ``hidden`` flag of a ``PUT /items/{item_id}`` body.

    >>> parse_item_update(b'{"hidden": true}')
    True
    >>> parse_item_update(b'{"hidden": "yes"}')
    Traceback (most recent call last):
    ...
    ValueError: the body must be {"hidden": true} or {"hidden": false}
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or set(value) != {"hidden"} or not isinstance(
        value["hidden"], bool
    ):
        raise ValueError('the body must be {"hidden": true} or {"hidden": false}')
    return bool(value["hidden"])


def _items(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"item_id": i, "score": round(s, 6)} for i, s in pairs]


def register(shop: ShopApp, processor: BatchProcessor) -> None:
    """Add the API's views."""
    app = shop.app
    key = shop.settings.pseudonymise_key.encode()
    owners = Owners(shop)

    def shop_id(user_id: str) -> str:
        """The id state is kept under: the pseudonym when pseudonymisation is on."""
        return pseudonymise(user_id, key) if key else user_id

    runtime = shop.runtime
    default_k = shop.settings.rec_k
    arms = rec_arms(shop.settings)
    openapi = document(package_version())

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        redis_ok = False
        try:
            redis_ok = bool(await runtime.redis.ping())
        except Exception:  # noqa: BLE001 - health reports, never raises
            redis_ok = False
        kafka_ok = bool(app.consumer is not None and not app.consumer.should_stop)
        # ready: Redis connected *and* its store epoch checked; until then the batch and the
        # collector refuse work (503 "starting"), so the worker is not healthy either
        ok = redis_ok and kafka_ok and runtime.ready
        return web.json(
            {"status": "ok" if ok else "degraded", "redis": redis_ok, "kafka": kafka_ok},
            status=200 if ok else 503,
        )

    @app.page("/openapi.json")
    async def openapi_json(web: Any, request: Any) -> Any:
        return web.json(openapi)

    @app.page("/recommendations/{user_id}")
    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        try:
            k, category, exclude = parse_filters(request.query, default_k)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)

        async def here() -> Any:
            uid = shop_id(user_id)
            raw = shop.profiles.get(uid)
            session_id = Envelope.from_bytes(raw).session_id if raw is not None else ""
            arm = arms.arm(uid)  # the user's experiment arm scores with its setting
            items = await runtime.store.recommend(
                uid, session_id, k, category=category, exclude=exclude,
                config=arms.configs[arm] if arm == "B" else None,
            )  # fmt: skip
            return web.json({"user_id": uid, "session_id": session_id, "items": _items(items),
                             "arm": arm, "model": arms.models[arm]})  # fmt: skip

        return await owners.serve(web, request, user_id, here)

    @app.page("/items/{item_id}/similar")
    async def similar(web: Any, request: Any, item_id: str) -> Any:
        try:
            k, category, exclude = parse_filters(request.query, default_k)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        items = await runtime.store.similar(item_id, k, category=category, exclude=exclude)
        return web.json({"item_id": item_id, "items": _items(items)})

    @app.page("/items/{item_id}")
    class Item(View):
        """PUT {"hidden": true|false}: hide the item from every recommendation, or show it."""

        async def put(self, request: Any, item_id: str) -> Any:
            try:
                hidden = parse_item_update(await self.web.read_request_content(request))
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            changed = await runtime.store.set_hidden(item_id, hidden)
            return self.json({"item_id": item_id, "hidden": hidden, "changed": changed})

    @app.page("/models")
    async def models(web: Any, request: Any) -> Any:
        """The online models: version, labels learned, progressive quality, checkpoint."""
        return web.json(model_status(processor))

    @app.page("/users/{user_id}")
    class User(View):
        """GET: profile, segment, churn probability, recommendations. DELETE: forget."""

        async def get(self, request: Any, user_id: str) -> Any:
            async def here() -> Any:
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

            return await owners.serve(self.web, request, user_id, here)

        async def delete(self, request: Any, user_id: str) -> Any:
            async def here() -> Any:
                uid = shop_id(user_id)
                return self.json({"user_id": uid, "removed": await processor.forget(uid)})

            return await owners.serve(self.web, request, user_id, here)
