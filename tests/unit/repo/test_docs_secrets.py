"""A secret printed in the documentation is known to everyone: every literal value of a
token or key in the docs, compose, manifests and scripts is one the worker refuses."""

from __future__ import annotations

import re
from pathlib import Path

from streams.core.access import STRONG_SECRETS, secret_problem

ROOT = Path(__file__).resolve().parents[3]
NAMES = "|".join(n.upper() for n in STRONG_SECRETS)
ASSIGNED = re.compile(rf"SHOPSTREAM_(?:{NAMES})\s*[=:]\s*[\"']?([^\s\"'`$)(|]+)")


def documents() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "docker-compose.yml", *ROOT.glob("docs/**/*.md"),
             *ROOT.glob("deploy/**/*.y*ml"), *ROOT.glob("scripts/*.sh"), *ROOT.glob("*.toml"),
             *ROOT.glob("examples/**/*")]  # fmt: skip
    return [p for p in found if p.is_file()]


def test_every_literal_secret_in_the_docs_is_refused() -> None:
    literals = {
        (path.relative_to(ROOT).as_posix(), value)
        for path in documents()
        for value in ASSIGNED.findall(path.read_text(errors="replace"))
        if not value.startswith(("...", "<"))
    }
    usable = {(path, value) for path, value in literals if secret_problem(value) is None}
    assert not usable, f"add these to streams/core/access.py DOCUMENTATION_VALUES: {usable}"


def test_the_pattern_finds_literals() -> None:
    text = "export SHOPSTREAM_ADMIN_TOKEN=abc\nSHOPSTREAM_PUBLIC_KEY: 'x'\n"
    assert ASSIGNED.findall(text) == ["abc", "x"]
    assert ASSIGNED.findall('SHOPSTREAM_ADMIN_TOKEN="$(openssl rand -hex 32)"') == []
