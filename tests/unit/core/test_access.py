"""Who may reach the HTTP API: refused exposures and weak secrets (streams/core/access.py).

Before issue 16 the worker served everything to anyone who reached its port, bound any
address without a token, and accepted any checkpoint key ("change-me" was in compose).
"""

from __future__ import annotations

import pytest

from streams.core.access import DOCUMENTATION_VALUES, check_access, secret_problem
from streams.core.errors import ConfigError
from streams.core.settings import Settings

GOOD_PUBLIC = "pk-" + "7f3a9c1e5b" * 4
GOOD_ADMIN = "at-" + "c41d8e2f06" * 4


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "shop.internal"])
def test_a_non_loopback_bind_without_both_tokens_is_refused(host: str) -> None:
    for tokens in ({}, {"public_key": GOOD_PUBLIC}, {"admin_token": GOOD_ADMIN}):
        with pytest.raises(ConfigError, match="is not a loopback address: set SHOPSTREAM_PUB"):
            check_access(Settings(web_host=host, **tokens))
    assert check_access(Settings(web_host=host, public_key=GOOD_PUBLIC, admin_token=GOOD_ADMIN)) \
        == []  # fmt: skip


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_without_tokens_is_served_and_said(host: str) -> None:
    (note,) = check_access(Settings(web_host=host))
    assert f"serves {host} only, without authentication" in note
    (note,) = check_access(Settings(web_host=host, admin_token=GOOD_ADMIN))
    assert "no SHOPSTREAM_PUBLIC_KEY: recommendations and similar items are served without" in note


@pytest.mark.parametrize("name", ["public_key", "admin_token", "checkpoint_key"])
@pytest.mark.parametrize(
    "value", ["change-me", "x" * 31, "é" * 15, *sorted(DOCUMENTATION_VALUES), "ab" * 20]
)
def test_weak_or_documented_secrets_are_refused(name: str, value: str) -> None:
    assert secret_problem(value)
    with pytest.raises(ConfigError, match=f"SHOPSTREAM_{name.upper()} (is shorter|is a value)"):
        check_access(Settings(**{name: value}))


def test_strong_secrets_pass_and_the_public_key_must_differ_from_the_admin_token() -> None:
    assert secret_problem(GOOD_ADMIN) is None and secret_problem("éàüö" * 4) is None  # 32 bytes
    check_access(Settings(checkpoint_key=GOOD_ADMIN, public_key=GOOD_PUBLIC))
    with pytest.raises(ConfigError, match="PUBLIC_KEY equals SHOPSTREAM_ADMIN_TOKEN"):
        check_access(Settings(public_key=GOOD_ADMIN, admin_token=GOOD_ADMIN))


def test_a_weak_pseudonymise_key_is_only_warned_about() -> None:
    """Refusing it would make every existing profile unreachable (the pseudonyms change)."""
    notes = check_access(Settings(pseudonymise_key="shop-secret"))
    assert any("PSEUDONYMISE_KEY is shorter than 32 bytes" in n for n in notes)
