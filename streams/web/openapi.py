"""The HTTP API as data: every route with its access scope, and the OpenAPI document built
from that one table (served at ``GET /openapi.json``).

The access guard (:mod:`streams.web.guard`) reads each route's scope from :data:`ROUTES`,
and tests/unit/web/test_openapi.py checks that the routes the worker serves are exactly the
routes of this table, so the document cannot drift from the code.

>>> scope_of("GET", "/users/{user_id}"), scope_of("HEAD", "/healthz"), scope_of("GET", "/x")
('admin', 'open', 'admin')
>>> doc = document("1.0")
>>> sorted(doc["paths"]["/users/{user_id}"])
['delete', 'get']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Scope = Literal["open", "public", "admin"]
MAX_EXCLUDE: Final = 100


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: method, path template (aiohttp/OpenAPI syntax), who may call it."""

    method: str
    path: str
    scope: Scope
    summary: str
    params: tuple[str, ...] = ()
    responses: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content: str = "application/json"


_USER = "user_id"
_ITEM = "item_id"
#: Answers of a request for one user: served by the owner of the user's partition.
_ROUTED = {"409": "The user's partition is not served here right now and the request could "
                  "not be forwarded to its owner (rebalance in progress, owner unreachable); "
                  "retry."}  # fmt: skip

ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/healthz", "open", "Health: Redis and Kafka reachable",
          responses={"200": "Healthy", "503": "Degraded (the body says what is down)"}),
    Route("GET", "/metrics", "open", "Prometheus metrics (text exposition format)",
          content="text/plain"),
    Route("GET", "/openapi.json", "open", "This document"),
    Route("GET", "/recommendations/{user_id}", "public",
          "Recommendations for the user's current session (the owner of the user answers)",
          params=(_USER, "k", "category", "exclude"), responses=_ROUTED),
    Route("GET", "/items/{item_id}/similar", "public", "The item's nearest neighbours",
          params=(_ITEM, "k", "category", "exclude")),
    Route("PUT", "/items/{item_id}", "admin",
          "Hide an item from every recommendation and similar-items list, or show it again",
          params=(_ITEM,), body="ItemUpdate"),
    Route("GET", "/users/{user_id}", "admin",
          "Live profile, segment, churn probability and recommendations",
          params=(_USER,), responses={"404": "No profile for this user", **_ROUTED}),
    Route("DELETE", "/users/{user_id}", "admin",
          "Forget the user: profile (changelog tombstone), churn track, model memories, "
          "Redis keys; idempotent (an unknown user costs nothing)",
          params=(_USER,), responses=_ROUTED),
    Route("GET", "/models", "admin", "The online models: versions, labels learned, quality"),
    Route("GET", "/dashboard", "admin", "The shop owner's live page (HTML)",
          content="text/html"),
    Route("GET", "/api/dashboard", "admin", "The dashboard's data"),
)  # fmt: skip

_SCOPES: Final = {(r.method, r.path): r.scope for r in ROUTES}


def scope_of(method: str, path: str) -> Scope:
    """Who may call ``method path`` (HEAD as GET); a route not in the table is admin only."""
    method = "GET" if method == "HEAD" else method
    return _SCOPES.get((method, path), "admin")


_PARAMS: Final[dict[str, dict[str, Any]]] = {
    _USER: {"in": "path", "description": "The storefront's user id (percent-encoded; with "
            "pseudonymisation on, the id before pseudonymisation)",
            "schema": {"type": "string", "minLength": 1}},
    _ITEM: {"in": "path", "description": "Item id (percent-encoded)",
            "schema": {"type": "string", "minLength": 1}},
    "k": {"in": "query", "description": "How many items",
          "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    "category": {"in": "query", "description": "Only items of this category",
                 "schema": {"type": "string", "minLength": 1}},
    "exclude": {"in": "query", "description": "Items never to return (repeat the parameter "
                f"for several, at most {MAX_EXCLUDE})", "style": "form", "explode": True,
                "schema": {"type": "array", "items": {"type": "string"},
                           "maxItems": MAX_EXCLUDE}},
}  # fmt: skip

_ITEMS = {"type": "array", "items": {"$ref": "#/components/schemas/ScoredItem"}}
_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "ScoredItem": {"type": "object", "required": ["item_id", "score"],
                   "properties": {"item_id": {"type": "string"}, "score": {"type": "number"}}},
    "ItemUpdate": {"type": "object", "required": ["hidden"], "additionalProperties": False,
                   "properties": {"hidden": {"type": "boolean"}}},
    "Recommendations": {"type": "object", "required": ["user_id", "session_id", "items"],
                        "properties": {"user_id": {"type": "string"},
                                       "session_id": {"type": "string"}, "items": _ITEMS}},
    "Similar": {"type": "object", "required": ["item_id", "items"],
                "properties": {"item_id": {"type": "string"}, "items": _ITEMS}},
}  # fmt: skip
_ANSWERS: Final = {
    ("GET", "/recommendations/{user_id}"): "Recommendations",
    ("GET", "/items/{item_id}/similar"): "Similar",
    ("PUT", "/items/{item_id}"): "ItemUpdate",
}
_SCHEMES: Final = {
    "publicKey": {"type": "http", "scheme": "bearer",
                  "description": "SHOPSTREAM_PUBLIC_KEY (fit for browser code)"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "SHOPSTREAM_ADMIN_TOKEN"},
    "adminBasic": {"type": "http", "scheme": "basic",
                   "description": "Any user name, SHOPSTREAM_ADMIN_TOKEN as the password (what "
                   "a browser asks for at /dashboard)"},
}  # fmt: skip
_SECURITY: Final[dict[Scope, list[dict[str, list[str]]]]] = {
    "open": [],
    "public": [{"publicKey": []}, {"adminToken": []}],
    "admin": [{"adminToken": []}, {"adminBasic": []}],
}


def _operation(route: Route) -> dict[str, Any]:
    schema = _ANSWERS.get((route.method, route.path))
    ok: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{schema}"}} if schema else {}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {route.content: ok}}}
    for code, text in route.responses.items():
        responses[code] = {"description": text, "content": error}
    if "k" in route.params or route.body:
        responses["400"] = {"description": "Invalid parameter or body", "content": error}
    if route.scope != "open":
        responses["401"] = {"description": "Missing or wrong token", "content": error}
    op: dict[str, Any] = {
        "operationId": re.sub(r"[^a-z0-9]+", "_", f"{route.method} {route.path}".lower())
        .strip("_"),
        "summary": route.summary,
        "security": _SECURITY[route.scope],
        "responses": responses,
    }
    if route.params:
        op["parameters"] = [
            {"name": p, "required": _PARAMS[p]["in"] == "path", **_PARAMS[p]}
            for p in route.params
        ]
    if route.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{route.body}"}}}}  # fmt: skip
    return op


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shopstream worker HTTP API",
            "version": version,
            "description": "Served by every worker; a request for one user is answered by "
            "the worker that owns the user's partition. Tokens: docs/security.md.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": _SCHEMES,
        },
    }
