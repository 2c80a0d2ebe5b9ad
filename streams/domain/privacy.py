"""Pseudonymisation of user ids (HMAC-SHA256 with a configured secret).

When ``SHOPSTREAM_PSEUDONYMISE_KEY`` is set, every event's ``user_id`` is replaced by its
pseudonym right after validation, so profiles, Redis keys, recommendations and alerts never
hold the raw id. The storefront computes the same pseudonym to look a customer up.

>>> pseudonymise("alice", b"k")
'p_ec631a55bb81f5b9dc96aa930a45628d'
>>> pseudonymise("alice", b"k") == pseudonymise("alice", b"k") != pseudonymise("alice", b"x")
True
"""

from __future__ import annotations

import hashlib
import hmac

from msgspec.structs import replace

from streams.core.events import Event


def pseudonymise(user_id: str, key: bytes) -> str:
    """A stable, keyed, non-reversible pseudonym (128 bits of HMAC-SHA256, hex)."""
    return "p_" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymise_event(event: Event, key: bytes) -> Event:
    return replace(event, user_id=pseudonymise(event.user_id, key))
