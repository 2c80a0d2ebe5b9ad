"""The access guard in front of every HTTP route: Host allowlist, CORS, tokens.

One aiohttp middleware (:func:`middleware`) decides, before any view runs:

1. **Host** — a request whose ``Host`` names a host this worker does not answer to is
   refused (400): a web page cannot reach a loopback worker through DNS rebinding, which
   sends the attacker's host name. IP literals are not names an attacker controls, so they
   pass (Kubernetes probes and Prometheus address pods by IP).
2. **Route** — unknown paths are 404 before anything else (Faust's built-in pages are off).
3. **CORS** — a preflight ``OPTIONS`` is answered (204 for an allowed origin, 403 otherwise);
   a request from another origin that is not allowed is refused (403); allowed ones get
   ``Access-Control-Allow-Origin``. ``*`` in ``SHOPSTREAM_CORS_ORIGINS`` allows any origin on
   open and public routes; admin routes need the origin listed.
4. **Token** — each route's scope (:data:`streams.web.openapi.ROUTES`) says which token it
   needs: ``Authorization: Bearer <token>`` (or HTTP Basic with the token as password, what a
   browser sends for the dashboard), compared in constant time. The admin token also opens
   public routes. A scope whose token is not configured is open (the worker then serves
   loopback only: :func:`streams.core.access.check_access`). On public routes the public key
   may also come as ``?key=`` (what the browser tracker sends).

>>> p = Policy.from_settings(Settings(admin_token="a" * 16 + "b" * 16, cors_origins="*"))
>>> p.host_allowed("localhost:6066"), p.host_allowed("10.1.2.3"), p.host_allowed("evil.test")
(True, True, False)
>>> p.grants("admin", "Bearer " + "a" * 16 + "b" * 16), p.grants("admin", "Bearer x")
(True, False)
>>> p.grants("public", None), p.origin_allowed("https://shop.test", "admin")
(True, False)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from yarl import URL

from streams.core.access import LOOPBACK_NAMES
from streams.core.settings import Settings
from streams.web.openapi import Scope, scope_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOW_HEADERS: Final = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_S: Final = 600


def _names(text: str) -> frozenset[str]:
    return frozenset(n.strip().lower().rstrip(".") for n in text.split(",") if n.strip())


def split_host(host: str) -> tuple[str, int | None]:
    """Name (lower case) and port of a ``Host`` header.

    >>> split_host("Shop.Example:8080"), split_host("[::1]:6066"), split_host("127.0.0.1")
    (('shop.example', 8080), ('::1', 6066), ('127.0.0.1', None))
    """
    host = host.strip().lower()
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    elif host.count(":") == 1:
        name, port = host.split(":")
    return name.rstrip("."), int(port) if port.isdigit() else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin(value: str) -> str:
    return value.strip().lower().rstrip("/")


@dataclass(frozen=True, slots=True)
class Policy:
    """What the guard allows, from the settings (tokens as bytes, names lower case)."""

    public_key: bytes
    admin_token: bytes
    hosts: frozenset[str]
    origins: frozenset[str]

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        hosts = set(LOOPBACK_NAMES) | _names(s.web_allowed_hosts)
        hosts |= _names(s.web_advertise_host) | _names(s.web_host)
        origins = frozenset(_origin(o) for o in s.cors_origins.split(",") if o.strip())
        return cls(s.public_key.encode(), s.admin_token.encode(), frozenset(hosts), origins)

    def host_allowed(self, host: str | None) -> bool:
        if not host or "*" in self.hosts:
            return True
        name = split_host(host)[0]
        if _is_ip(name) or name in self.hosts:
            return True
        return any(h.startswith(".") and name.endswith(h) for h in self.hosts)

    def origin_allowed(self, origin: str, scope: Scope) -> bool:
        if _origin(origin) in self.origins:
            return True
        return "*" in self.origins and scope != "admin"

    def grants(self, scope: Scope, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header opens a route of ``scope``."""
        if scope == "open":
            return True
        needed = [self.admin_token] if scope == "admin" else [self.public_key, self.admin_token]
        if not needed[0]:
            return True  # this scope's token is not configured: served on loopback only
        token = presented(authorization)
        if token is None:
            return False
        # every configured token is compared, in constant time each
        matches = [hmac.compare_digest(token, t) for t in needed if t]
        return any(matches)


def presented(authorization: str | None) -> bytes | None:
    """The token of a ``Bearer`` header, or the password of a ``Basic`` one.

    >>> presented("Bearer abc"), presented("Basic " + base64.b64encode(b"me:pw").decode())
    (b'abc', b'pw')
    >>> presented("Basic %%%") is None and presented(None) is None
    True
    """
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return value.encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2] or None
    return None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``Origin`` is the origin the request was sent to (the dashboard's own calls).

    >>> _same_origin("http://127.0.0.1:6066", "127.0.0.1:6066"), _same_origin("http://a", "a:80")
    (True, True)
    >>> _same_origin("https://evil.test", "127.0.0.1:6066")
    False
    """
    if not host:
        return False
    try:
        url, sent_to = URL(origin), URL(f"{URL(origin).scheme}://{host.strip()}")
    except ValueError:
        return False
    return url.host is not None and (url.host, url.port) == (sent_to.host, sent_to.port)


def _authorization(request: web.Request, scope: Scope) -> str | None:
    """The ``Authorization`` header; on public routes, ``?key=`` stands for a missing one:
    ``navigator.sendBeacon`` and CORS-simple ``fetch`` calls of the tracker cannot send
    headers, and the public key is in the page anyway (docs/security.md)."""
    header = request.headers.get("Authorization")
    if header is None and scope == "public" and request.query.get("key"):
        return f"Bearer {request.query['key']}"
    return header


def _scope(request: web.Request, method: str) -> Scope:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return scope_of(method, resource.canonical if resource is not None else "")


def middleware(policy: Policy) -> Any:
    """The guard as an aiohttp middleware."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not policy.host_allowed(request.headers.get("Host")):
            log.warning("HTTP request for host %r refused (not in the allowed hosts)",
                        request.headers.get("Host"))  # fmt: skip
            return _error(400, "unknown host (SHOPSTREAM_WEB_ALLOWED_HOSTS)")
        missing = request.match_info.http_exception
        if missing is not None and missing.status == 404:
            return _error(404, "no such endpoint (see /openapi.json)")
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return await _preflight(policy, request, origin)
        scope = _scope(request, request.method)
        cross = origin is not None and not _same_origin(origin, request.headers.get("Host"))
        if cross and origin is not None and not policy.origin_allowed(origin, scope):
            return _error(403, f"origin {origin[:100]!r} is not allowed (SHOPSTREAM_CORS_ORIGINS)")
        if not policy.grants(scope, _authorization(request, scope)):
            challenge = 'Basic realm="shopstream"' if request.path == "/dashboard" else \
                'Bearer realm="shopstream"'  # fmt: skip
            token = "the admin token" if scope == "admin" else "the public key or the admin token"
            return _error(401, f"this endpoint needs {token} (Authorization: Bearer ...)",
                          {"WWW-Authenticate": challenge})  # fmt: skip
        response = await handler(request)
        if cross and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return guard


async def _methods(request: web.Request) -> list[str]:
    """The methods served at the request's path (``Allow``)."""
    resolve = request.app.router.resolve
    served = [m for m in ("GET", "PUT", "POST", "DELETE")
              if (await resolve(request.clone(method=m))).http_exception is None]  # fmt: skip
    return served + (["HEAD"] if "GET" in served else []) + ["OPTIONS"]


async def _preflight(policy: Policy, request: web.Request, origin: str | None) -> web.Response:
    """Answer ``OPTIONS``: the methods served, or a CORS preflight for the one it asks about."""
    wanted = request.headers.get("Access-Control-Request-Method", "").upper()
    allow = ", ".join(await _methods(request))
    if origin is None or not wanted:
        return web.Response(status=204, headers={"Allow": allow})
    resolved = await request.app.router.resolve(request.clone(method=wanted))
    if resolved.http_exception is not None:
        return _error(405, f"{wanted} is not served at {request.path}", {"Allow": allow})
    route = resolved.route
    scope = scope_of(wanted, route.resource.canonical if route.resource else "")
    if not policy.origin_allowed(origin, scope):
        return _error(403, f"origin {origin[:100]!r} is not allowed (SHOPSTREAM_CORS_ORIGINS)")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": wanted,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        "Vary": "Origin",
    })  # fmt: skip
