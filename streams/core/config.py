"""Where settings come from: defaults < a TOML file < ``.env`` < the environment.

:func:`load` builds the one :class:`~streams.core.settings.Settings` object and remembers
the source of each value, for ``shopstream settings``:

* **file** — ``--config PATH`` or ``SHOPSTREAM_CONFIG``: TOML whose keys are the setting
  names in lower case (``kafka_bootstrap = "..."``), at the top level or in a table that
  names their first word (``[kafka]`` ``bootstrap = "..."``). An unknown key is an error.
* **.env** — ``KEY=VALUE`` lines in the working directory (``export``, quotes, comments).
* **env** — ``SHOPSTREAM_*`` variables; ``SHOPSTREAM_X_FILE=/path`` reads the value of
  ``SHOPSTREAM_X`` from a file (Docker/Kubernetes secrets), trailing newline stripped.

Unknown ``SHOPSTREAM_*`` names are warned about with the closest valid name (a misspelled
variable must not be silently ignored).

>>> loaded = load({"SHOPSTREAM_PARTITONS": "8", "SHOPSTREAM_REC_K": "5"}, dotenv=None)
>>> loaded.settings.rec_k, loaded.sources["rec_k"], loaded.sources["partitions"]
(5, 'env', 'default')
>>> loaded.warnings
['unknown variable SHOPSTREAM_PARTITONS (did you mean SHOPSTREAM_PARTITIONS?)']
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from streams.core.errors import ConfigError
from streams.core.settings import PREFIX, SECRETS, Settings

#: ``SHOPSTREAM_*`` variables that are not settings: the config file, the local stack's
#: (scripts/stack.sh) and the test suites'.
OTHER_VARIABLES = frozenset(
    PREFIX + n
    for n in (
        "CONFIG", "STACK_DIR", "CACHE", "KAFKA_VERSION", "KAFKA_PORT", "KAFKA_SASL_PORT",
        "KAFKA_CONTROLLER_PORT", "KAFKA_HEAP", "KAFKA_SASL_TEST_PASSWORD", "REDIS_PORT",
        "REDIS_PASSWORD", "CHAOS_SEED",
    )
)  # fmt: skip
OTHER_PREFIXES = (PREFIX + "TEST_",)
NAMES = tuple(f.name for f in fields(Settings))


@dataclass(slots=True)
class Loaded:
    """The settings, where each value came from, and what deserves a warning."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    config_path: Path | None = None

    def rows(self) -> list[tuple[str, str, str]]:
        """``(variable, value, source)`` for every setting; secrets masked."""
        out = []
        for name in NAMES:
            value = getattr(self.settings, name)
            shown = mask(name, value)
            out.append((PREFIX + name.upper(), shown, self.sources.get(name, "default")))
        return out


def mask(name: str, value: Any) -> str:
    """A value fit to print: secrets as ``***`` (or the URL with its password hidden).

    >>> mask("checkpoint_key", "k"), mask("checkpoint_key", ""), mask("rec_k", 10)
    ('***', '', '10')
    >>> mask("redis_url", "redis://:pw@cache:6379/0")
    'redis://:***@cache:6379/0'
    """
    text = str(value)
    if name == "redis_url" and "@" in text:
        scheme, rest = text.split("://", 1) if "://" in text else ("", text)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0] if ":" in creds else ""
        return f"{scheme}://{user}:***@{host}" if scheme else f"{user}:***@{host}"
    if name in SECRETS and text:
        return "***"
    return text


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, ``export`` and matching quotes are understood.

    >>> parse_dotenv('# c\\nexport A="x y"\\nB=1 # n\\nC=\\'#\\'\\n')
    {'A': 'x y', 'B': '1', 'C': '#'}
    """
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """The settings of a TOML file, flattened to setting names (unknown keys rejected)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    data = data.get("shopstream", data)  # a [shopstream] table is also accepted
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in NAMES:
            for sub, v in value.items():
                flat[f"{key}_{sub}"] = v
        else:
            flat[key] = value
    for key in flat:
        if key not in NAMES:
            hint = difflib.get_close_matches(key, NAMES, n=1)
            raise ConfigError(
                f"unknown setting {key!r} in {path}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    return flat


def _from_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{PREFIX}{name.upper()}_FILE={path!r} cannot be read: {exc.strerror or exc}"
        ) from None


def unknown_variables(names: Mapping[str, str]) -> list[str]:
    """A warning for every ``SHOPSTREAM_*`` name that is not a setting, with a suggestion."""
    valid = [PREFIX + n.upper() for n in NAMES]
    known = set(valid) | {v + "_FILE" for v in valid} | OTHER_VARIABLES
    out = []
    for var in sorted(names):
        if not var.startswith(PREFIX) or var in known or var.startswith(OTHER_PREFIXES):
            continue
        hint = difflib.get_close_matches(var, [*valid, *OTHER_VARIABLES], n=1)
        out.append(f"unknown variable {var}" + (f" (did you mean {hint[0]}?)" if hint else ""))
    return out


def load(
    env: Mapping[str, str] | None = None,
    *,
    config: str | Path | None = None,
    dotenv: str | Path | None = ".env",
) -> Loaded:
    """Settings from defaults, the TOML file, ``.env`` and the environment, in that order
    (later wins). ``config`` overrides ``SHOPSTREAM_CONFIG``; ``dotenv=None`` skips ``.env``."""
    env = dict(os.environ if env is None else env)
    dot: dict[str, str] = {}
    if dotenv is not None and Path(dotenv).is_file():
        dot = {k: v for k, v in parse_dotenv(Path(dotenv).read_text("utf-8")).items()
               if k.startswith(PREFIX)}  # fmt: skip
    path_text = str(config) if config else env.get(PREFIX + "CONFIG") or dot.get(PREFIX + "CONFIG")
    path = Path(path_text) if path_text else None
    values: dict[str, Any] = {}
    sources = dict.fromkeys(NAMES, "default")
    if path is not None:
        for key, value in read_toml(path).items():
            values[key], sources[key] = value, f"file {path}"
    for layer, label in ((dot, ".env"), (env, "env")):
        for name in NAMES:
            var = PREFIX + name.upper()
            if var in layer and var + "_FILE" in layer:
                raise ConfigError(f"both {var} and {var}_FILE are set ({label}); keep one")
            if var in layer:
                values[name], sources[name] = layer[var], label
            elif var + "_FILE" in layer:
                values[name] = _from_file(name, layer[var + "_FILE"])
                sources[name] = f"{label} ({var}_FILE)"
    settings = Settings.from_values(values)
    warnings = unknown_variables({**dot, **env})
    return Loaded(settings, sources, warnings, path)
