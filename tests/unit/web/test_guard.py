"""The access guard as an aiohttp middleware in front of stand-in views of every documented
route: Host allowlist, CORS, tokens by route scope (streams/web/guard.py).

The real worker is checked end to end in tests/integration/test_http_api.py; here every
route and case is cheap to enumerate.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.core.settings import Settings
from streams.web.guard import Policy, middleware
from streams.web.openapi import ROUTES

PUBLIC = "pk-" + "7f3a9c1e5b" * 4
ADMIN = "at-" + "c41d8e2f06" * 4
SHOP = "https://shop.example"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "path": request.path})


async def client_for(settings: Settings) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[middleware(Policy.from_settings(settings))])
    for route in ROUTES:
        app.router.add_route(route.method, route.path, ok)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def guarded() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await client_for(Settings(public_key=PUBLIC, admin_token=ADMIN, cors_origins=SHOP,
                                       web_allowed_hosts="api.shop.example,.svc.local"))
    yield client
    await client.close()


def concrete(path: str) -> str:
    return path.replace("{user_id}", "bob%23x").replace("{item_id}", "sku%2F1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_every_route_needs_its_token(
    guarded: TestClient[web.Request, web.Application], route: object
) -> None:
    method, path, scope = route.method, concrete(route.path), route.scope  # type: ignore[attr-defined]
    allowed = {"public": [PUBLIC, ADMIN], "admin": [ADMIN]}.get(scope)
    for token in (None, "wrong", PUBLIC, ADMIN, ADMIN[:-1], ADMIN + "x"):
        headers = bearer(token) if token else {}
        resp = await guarded.request(method, path, headers=headers)
        expected = 200 if allowed is None or token in allowed else 401
        assert resp.status == expected, (method, path, token, await resp.text())
        if expected == 401:
            assert (await resp.json())["error"].startswith("this endpoint needs")
            assert "WWW-Authenticate" in resp.headers


async def test_basic_auth_carries_the_admin_token_for_the_browser(
    guarded: TestClient[web.Request, web.Application],
) -> None:
    resp = await guarded.get("/dashboard")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic ")
    for user, password, status in (("owner", ADMIN, 200), ("", ADMIN, 200), ("owner", PUBLIC, 401)):
        creds = base64.b64encode(f"{user}:{password}".encode()).decode()
        resp = await guarded.get("/api/dashboard", headers={"Authorization": f"Basic {creds}"})
        assert resp.status == status


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1:6066", 200), ("localhost", 200), ("[::1]:6066", 200), ("10.2.3.4:6066", 200),
     ("api.shop.example", 200), ("API.Shop.Example.:443", 200), ("w-1.svc.local", 200),
     ("evil.example", 400), ("localhost.evil.example", 400), ("svc.local.evil", 400),
     ("127.0.0.1.nip.io", 400)],
)  # fmt: skip
async def test_host_names_outside_the_allowlist_are_refused(
    guarded: TestClient[web.Request, web.Application], host: str, status: int
) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends
    ``Host: evil.example``; IP literals are no name an attacker owns."""
    resp = await guarded.get("/healthz", headers={"Host": host})
    assert resp.status == status, host


Client = TestClient[web.Request, web.Application]


async def test_cors_preflight_and_origins(guarded: Client) -> None:
    pre = {"Origin": SHOP, "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    resp = await guarded.options("/recommendations/u1", headers=pre)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    evil = "https://evil.test"
    resp = await guarded.options("/recommendations/u1", headers={**pre, "Origin": evil})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    patch = {**pre, "Access-Control-Request-Method": "PATCH"}
    resp = await guarded.options("/users/u1", headers=patch)
    assert resp.status == 405
    # the real request from the listed origin gets the header; another origin is refused
    resp = await guarded.get("/recommendations/u1", headers={"Origin": SHOP, **bearer(PUBLIC)})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == SHOP
    resp = await guarded.delete("/users/u1", headers={"Origin": evil, **bearer(ADMIN)})
    assert resp.status == 403
    # the dashboard's own calls (same origin) need no CORS entry
    host = f"127.0.0.1:{guarded.port}"
    resp = await guarded.get("/api/dashboard", headers={"Origin": f"http://{host}", "Host": host,
                                                        **bearer(ADMIN)})  # fmt: skip
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_a_wildcard_origin_opens_public_routes_only() -> None:
    client = await client_for(Settings(public_key=PUBLIC, admin_token=ADMIN, cors_origins="*"))
    try:
        origin = {"Origin": "https://any.example"}
        resp = await client.get("/items/i1/similar", headers={**origin, **bearer(PUBLIC)})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == origin["Origin"]
        resp = await client.get("/users/u1", headers={**origin, **bearer(ADMIN)})
        assert resp.status == 403
    finally:
        await client.close()


async def test_unknown_paths_are_404_before_any_token() -> None:
    client = await client_for(Settings(public_key=PUBLIC, admin_token=ADMIN))
    try:
        for path in ("/table/profiles", "/router/", "/", "/graph", "/performance/"):
            resp = await client.get(path)
            assert resp.status == 404, path
    finally:
        await client.close()


async def test_without_tokens_everything_is_open_on_loopback() -> None:
    client = await client_for(Settings())
    try:
        for route in ROUTES:
            resp = await client.request(route.method, concrete(route.path))
            assert resp.status == 200, route
        assert (await client.get("/healthz", headers={"Host": "evil.example"})).status == 400
    finally:
        await client.close()
