"""Setting values from their text (environment, ``.env``) or TOML form: booleans, numbers and
the coupon tiers, with errors that name the variable (used by :mod:`streams.core.settings`)."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from streams.core.errors import ConfigError

PREFIX = "SHOPSTREAM_"


def coerce(raw: Any, kind: type) -> Any:
    """A raw value (environment text or a TOML value) as the field's type."""
    if isinstance(raw, str):
        return _parse_bool(raw) if kind is bool else kind(raw)
    if kind is bool and isinstance(raw, bool):
        return raw
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise TypeError(raw)


def tiers_text(rows: list[Any]) -> str:
    """TOML's ``[[coupon_tiers]]`` tables as the setting's text form."""
    try:
        return ",".join(f"{r['name']}:{r['min_value']}:{r['discount_pct']}" for r in rows)
    except (KeyError, TypeError):
        raise ConfigError(
            "each [[coupon_tiers]] needs name, min_value and discount_pct"
        ) from None


def coupon_tiers(text: str) -> tuple[tuple[str, float, float], ...]:
    """``(name, min_value, discount_pct)`` per tier, highest first; the last must start at 0.

    >>> coupon_tiers("gold:500:20,silver:100:15,bronze:0:10")[1]
    ('silver', 100.0, 15.0)
    >>> coupon_tiers("gold:500:20")
    Traceback (most recent call last):
    ...
    streams.core.errors.ConfigError: SHOPSTREAM_COUPON_TIERS: the last tier must start at 0
    """
    var = PREFIX + "COUPON_TIERS"
    tiers = []
    for part in text.split(","):
        try:
            name, low, pct = part.strip().split(":")
            tiers.append((name.strip(), float(low), float(pct)))
        except ValueError:
            raise ConfigError(f"{var}: {part!r} is not name:min_value:discount_pct") from None
    if not tiers or any(not n or not 0 <= p <= 100 for n, _, p in tiers):
        raise ConfigError(f"{var}: every tier needs a name and a discount in [0, 100]")
    if any(a[1] <= b[1] for a, b in itertools.pairwise(tiers)):
        raise ConfigError(f"{var}: tiers must be highest first (decreasing min_value)")
    if tiers[-1][1] != 0:
        raise ConfigError(f"{var}: the last tier must start at 0")
    return tuple(tiers)


def rec_overrides(text: str) -> dict[str, float]:
    """The recommendation arm B's setting (``SHOPSTREAM_REC_ARM_B``): a JSON object of
    scoring parameters and their numbers ('' = no overrides).

    >>> rec_overrides('{"two_hop": 0, "recency_decay": 1.5}'), rec_overrides("")
    ({'two_hop': 0.0, 'recency_decay': 1.5}, {})
    >>> rec_overrides('{"two_hop": "x"}')
    Traceback (most recent call last):
    ...
    streams.core.errors.ConfigError: SHOPSTREAM_REC_ARM_B must be a JSON object of numbers
    """
    if not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in obj.values()
    ):
        raise ConfigError(f"{PREFIX}REC_ARM_B must be a JSON object of numbers")
    return {str(k): float(v) for k, v in obj.items()}


def _parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)
