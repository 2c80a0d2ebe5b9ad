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

from streams.core.contract import event_schema

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
    #: schema (in ``components``) of the 200 answer; None = any
    ok: str | None = None
    #: other answers: status -> description (their body is ``Error``, except ``Health``'s)
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
    Route("GET", "/healthz", "open", "Health: Redis and Kafka reachable", ok="Health",
          responses={"503": "Degraded (the body says what is down)"}),
    Route("GET", "/metrics", "open", "Prometheus metrics (text exposition format)",
          content="text/plain"),
    Route("GET", "/openapi.json", "open", "This document"),
    Route("GET", "/recommendations/{user_id}", "public",
          "Recommendations for the user's current session (the owner of the user answers)",
          params=(_USER, "k", "category", "exclude"), ok="Recommendations", responses=_ROUTED),
    Route("GET", "/items/{item_id}/similar", "public", "The item's nearest neighbours",
          params=(_ITEM, "k", "category", "exclude"), ok="Similar"),
    Route("PUT", "/items/{item_id}", "admin",
          "Hide an item from every recommendation and similar-items list, or show it again",
          params=(_ITEM,), body="ItemUpdate", ok="ItemState"),
    Route("GET", "/users/{user_id}", "admin",
          "Live profile, segment, churn probability and recommendations", params=(_USER,),
          ok="User", responses={"404": "No profile for this user", **_ROUTED}),
    Route("DELETE", "/users/{user_id}", "admin",
          "Forget the user: profile (changelog tombstone), churn track, model memories, "
          "Redis keys; idempotent (an unknown user costs nothing)",
          params=(_USER,), ok="Forgotten", responses=_ROUTED),
    Route("GET", "/models", "admin", "The online models: versions, labels learned, quality",
          ok="Models"),
    Route("GET", "/dashboard", "admin", "The shop owner's live page (HTML)",
          content="text/html"),
    Route("GET", "/api/dashboard", "admin", "The dashboard's data",
          params=("from", "to"), responses={"400": "A malformed date range"}),
    Route("GET", "/kpis", "admin", "Business figures per event-time day (revenue, orders, "
          "AOV, funnel, cart abandonment, categories) of a date range, with its totals",
          params=("from", "to"), ok="Kpis", responses={"400": "A malformed date range"}),
    Route("GET", "/campaigns", "admin", "The churn coupons' uplift: return rate and revenue "
          "of treatment against holdout alerts, with intervals, overall and per tier",
          ok="Campaigns"),
    Route("GET", "/experiments", "admin", "The live A/B test of two recommendation settings: "
          "per arm impressions, CTR and conversion (Wilson intervals), attributed revenue; "
          "A - B with Newcombe's interval, over a date range",
          params=("from", "to"), ok="Experiment", responses={"400": "A malformed date range"}),
    Route("GET", "/tracker.js", "open", "The browser tracker (docs/storefront.md)",
          content="application/javascript"),
    Route("GET", "/demo/shop", "open", "The demo storefront (HTML), when SHOPSTREAM_DEMO_SHOP "
          "is on", content="text/html", responses={"404": "The demo shop is off"}),
    Route("POST", "/v1/events", "public",
          "The collector: a JSON array of contract events (and identify calls), each "
          "validated, produced to the events topic (or dead-lettered) and answered",
          body="EventBatch", ok="Collected",
          responses={"413": "Body or event count over the limits (nothing produced)",
                     "429": "Rate limit of this client (Retry-After)",
                     "503": "Kafka or Redis unavailable, or some events not produced: retry"}),
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
    "from": {"in": "query", "description": "First day (YYYY-MM-DD, event time, UTC); "
             "default: 29 days before to", "schema": {"type": "string", "format": "date"}},
    "to": {"in": "query", "description": "Last day (YYYY-MM-DD), included; default: the "
           "latest day the shop has seen", "schema": {"type": "string", "format": "date"}},
    "category": {"in": "query", "description": "Only items of this category (empty: any)",
                 "schema": {"type": "string"}},
    "exclude": {"in": "query", "description": "Items never to return (repeat the parameter "
                f"for several, at most {MAX_EXCLUDE})", "style": "form", "explode": True,
                "schema": {"type": "array", "items": {"type": "string"},
                           "maxItems": MAX_EXCLUDE}},
}  # fmt: skip

_ITEMS = {"type": "array", "items": {"$ref": "#/components/schemas/ScoredItem"}}
_STR, _BOOL, _OBJ = {"type": "string"}, {"type": "boolean"}, {"type": "object"}
_INT = {"type": "integer", "minimum": 0}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": required | optional}


_SCHEMAS: Final[dict[str, Any]] = {
    "Error": _object({"error": _STR}),
    "Health": _object({"status": {"enum": ["ok", "degraded"]}, "redis": _BOOL, "kafka": _BOOL}),
    "ScoredItem": _object({"item_id": _STR, "score": {"type": "number"}}),
    "ItemUpdate": {**_object({"hidden": _BOOL}), "additionalProperties": False},
    "ItemState": _object({"item_id": _STR, "hidden": _BOOL, "changed": _BOOL}),
    "Recommendations": _object({"user_id": _STR, "session_id": _STR, "items": _ITEMS},
                               arm={"enum": ["A", "B"]}, model=_STR),
    "Similar": _object({"item_id": _STR, "items": _ITEMS}),
    "User": _object({"user_id": _STR, "session_id": _STR, "segment": _OBJ,
                     "churn_probability": {"type": ["number", "null"]}, "as_of": _STR,
                     "profile": _OBJ, "recommendations": _ITEMS}),
    "Forgotten": _object({"user_id": _STR, "removed": {
        "type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}),
    "Models": _object({"churn": _OBJ, "partitions": _OBJ, "segments": _OBJ}),
    "Kpis": _object({"from": _STR, "to": _STR, "today": _STR,
                     "days": {"type": "array", "items": _OBJ}, "totals": _OBJ}),
    "Campaigns": _object({"treatment": _OBJ, "holdout": _OBJ,
                          "uplift": {"type": ["number", "null"]}, "tiers": _OBJ}),
    "Experiment": _object({"from": _STR, "to": _STR, "b_share": {"type": "number"},
                           "arms": _OBJ, "difference": _OBJ}),
    "ShopEvent": {k: v for k, v in event_schema().items() if k != "$schema"},
    # any array is taken (up to the limits): each element is answered on its own, so an
    # element that fits none of these is "rejected" with its reason, not a 4xx
    "EventBatch": {"type": "array", "items": {"description": "A contract event (ShopEvent), "
                   "an identify call (Identify) or a Segment/RudderStack call (SegmentCall)"}},
    "Identify": _object({"type": {"const": "identify"}, "anonymous_id": _STR, "user_id": _STR}),
    "SegmentCall": {**_object({"type": {"enum": ["track", "identify", "page", "screen", "group",
                                                  "alias"]}}),
                    "description": "A Segment/RudderStack call (docs/storefront.md)"},
    "Collected": _object({
        "accepted": _INT, "rejected": _INT, "failed": _INT, "identified": _INT, "ignored": _INT,
        "results": {"type": "array", "items": _object(
            {"index": _INT, "status": {"enum": ["accepted", "rejected", "identify", "ignored",
                                                "failed"]}},
            event_id=_STR, event_ids={"type": "array", "items": _STR}, reason=_STR,
            detail=_STR, anonymous_id=_STR, user_id=_STR)}}),
}  # fmt: skip
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
    def ref(name: str) -> dict[str, Any]:
        return {"schema": {"$ref": f"#/components/schemas/{name}"}}

    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {route.content: ref(route.ok) if route.ok else {}}}
    }
    for code, text in route.responses.items():
        body = route.ok if route.ok == "Health" else "Error"
        responses[code] = {"description": text, "content": {"application/json": ref(body)}}
    error = {"application/json": ref("Error")}
    invalid = "an invalid parameter or body (JSON), or " if "k" in route.params or route.body \
        else ""  # fmt: skip
    responses["400"] = {
        "description": f"Bad request: {invalid}a request the HTTP server cannot parse (in "
        "text: e.g. a request line or a header over 8190 bytes)",
        "content": {**error, "text/plain": {}},
    }
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
