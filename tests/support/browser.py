"""Driving Debian's chromium with Playwright (the dashboard and demo shop tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = ROOT / "test-artifacts"
CHROMIUM: Final = "/usr/bin/chromium"
HAVE_CHROMIUM: Final = Path(CHROMIUM).exists()
CHROMIUM_ARGS: Final = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
