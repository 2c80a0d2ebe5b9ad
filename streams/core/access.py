"""Who may reach the worker's HTTP API, decided once at start (docs/security.md).

:func:`check_access` refuses settings that would expose the worker: secrets shorter than
:data:`MIN_SECRET_BYTES` or equal to a value printed in documentation, the public key equal
to the admin token, and a non-loopback bind address without both tokens. It returns what
the worker says at start about the exposure it chose.

>>> check_access(Settings())
['no SHOPSTREAM_PUBLIC_KEY and no SHOPSTREAM_ADMIN_TOKEN: the HTTP API serves 127.0.0.1 only, \
without authentication']
>>> check_access(Settings(web_host="0.0.0.0"))
Traceback (most recent call last):
...
streams.core.errors.ConfigError: SHOPSTREAM_WEB_HOST=0.0.0.0 is not a loopback address: set \
SHOPSTREAM_PUBLIC_KEY and SHOPSTREAM_ADMIN_TOKEN (32 bytes or more each, e.g. `openssl rand \
-hex 32`) or bind 127.0.0.1
>>> secret_problem("change-me")
'is shorter than 32 bytes'
>>> secret_problem("0123456789abcdef0123456789abcdef") is not None
True
"""

from __future__ import annotations

import ipaddress
from typing import Final

from streams.core.errors import ConfigError
from streams.core.settings import PREFIX, Settings

MIN_SECRET_BYTES: Final = 32
#: Values that appear in documentation and examples: known to everyone, never a secret.
#: (tests/unit/repo/test_docs_secrets.py checks every literal secret in the docs is refused.)
DOCUMENTATION_VALUES: Final = frozenset({
    "0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "00000000000000000000000000000000",
    "change-me-change-me-change-me-change-me",
    "replace-with-a-long-random-secret-value",
    "your-admin-token-of-at-least-32-bytes",
    "your-public-key-of-at-least-32-bytes",
})  # fmt: skip
#: Settings whose values must be strong secrets when set.
STRONG_SECRETS: Final = ("public_key", "admin_token", "checkpoint_key")
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not a usable secret, or ``None``."""
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    if value in DOCUMENTATION_VALUES or len(set(value)) < 4:
        return "is a value from the documentation or an example, known to everyone"
    return None


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name reaches this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", "shop")]
    [True, True, True, False, False, False]
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(settings: Settings) -> list[str]:
    """Refuse an exposure that is not safe (:class:`ConfigError`); else return the lines the
    worker logs at start about its HTTP exposure."""
    for name in STRONG_SECRETS:
        value = getattr(settings, name)
        problem = value and secret_problem(value)
        if problem:
            raise ConfigError(
                f"{PREFIX}{name.upper()} {problem}: use a random value of at least "
                f"{MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            )
    public, admin = settings.public_key, settings.admin_token
    if public and public == admin:
        raise ConfigError(
            f"{PREFIX}PUBLIC_KEY equals {PREFIX}ADMIN_TOKEN: the public key is visible in "
            "browser code, so the admin token must be a different secret"
        )
    loopback = is_loopback(settings.web_host)
    if not loopback and not (public and admin):
        raise ConfigError(
            f"{PREFIX}WEB_HOST={settings.web_host or '(empty)'} is not a loopback address: set "
            f"{PREFIX}PUBLIC_KEY and {PREFIX}ADMIN_TOKEN ({MIN_SECRET_BYTES} bytes or more "
            "each, e.g. `openssl rand -hex 32`) or bind 127.0.0.1"
        )
    notes = []
    if not public and not admin:
        notes.append(
            f"no {PREFIX}PUBLIC_KEY and no {PREFIX}ADMIN_TOKEN: the HTTP API serves "
            f"{settings.web_host} only, without authentication"
        )
    elif not public or not admin:
        missing = "PUBLIC_KEY" if not public else "ADMIN_TOKEN"
        scope = "recommendations and similar items" if not public else "users, models, dashboard"
        notes.append(
            f"no {PREFIX}{missing}: {scope} are served without a token "
            f"(on {settings.web_host} only)"
        )
    if settings.pseudonymise_key and secret_problem(settings.pseudonymise_key):
        notes.append(
            f"{PREFIX}PSEUDONYMISE_KEY {secret_problem(settings.pseudonymise_key)}: pseudonyms "
            "of a weak key can be reversed by trying ids (changing it makes profiles unreachable)"
        )
    return notes
