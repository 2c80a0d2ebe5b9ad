"""The OpenAPI document is valid and lists exactly the routes the worker's web server has
(and the guard reads each route's scope from the same table)."""

from __future__ import annotations

from typing import Any, cast

from faust.web.drivers import aiohttp as aiohttp_driver
from openapi_spec_validator import validate

from streams.app import create_app
from streams.core.settings import Settings
from streams.web.openapi import ROUTES, document


def served_routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path template) of every route of a worker built from ``settings``; HEAD and
    OPTIONS are implied by GET and by the guard."""
    shop = create_app(settings)
    web = cast(aiohttp_driver.Web, shop.app.web)
    web.init_server()  # applies the blueprints, as the worker does at start
    return {
        (r.method, r.resource.canonical)
        for r in web.web_app.router.routes()
        if r.method not in ("HEAD", "OPTIONS") and r.resource is not None
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    doc: Any = document("1.2.3")
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"


def test_every_served_route_is_documented_and_every_documented_route_is_served() -> None:
    documented = {(r.method, r.path) for r in ROUTES}
    served = served_routes(Settings().namespaced("topenapi"))
    assert served == documented, {"undocumented": served - documented,
                                  "not served": documented - served}  # fmt: skip


def test_faust_builtin_pages_are_not_served() -> None:
    served = {path for _, path in served_routes(Settings().namespaced("tpages"))}
    builtin = ("/table", "/router", "/graph", "/performance", "/stats", "/assignment")
    assert not any(p == "/" or p.startswith(builtin) for p in served)


def test_path_parameters_and_security_are_declared() -> None:
    doc = document("1")
    for path, ops in doc["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert "security" in op, (method, path)
            if op["security"]:
                assert "401" in op["responses"], (method, path)
