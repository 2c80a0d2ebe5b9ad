"""make demo installs only what running needs; make test brings the test tools, Chromium
and promtool; the package metadata says which Pythons are supported."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def prerequisites(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:([^#\n]*)", text, re.MULTILINE)
    assert match, target
    return match.group(1).split()


def test_demo_needs_only_the_run_install_and_test_the_dev_one() -> None:
    assert prerequisites("demo") == ["install"]
    assert prerequisites("worker")[0] == "install"
    assert "install-dev" in prerequisites("test")
    make = (ROOT / "Makefile").read_text()
    assert "scripts/install.sh $(VENV) run" in make and "scripts/install.sh $(VENV) dev" in make
    script = (ROOT / "scripts/install.sh").read_text().split("set -euo pipefail", 1)[1]
    before, kinds = script.split('case "$KIND" in', 1)
    run_branch = kinds[kinds.index("  run)") : kinds.index(";;")]
    unit_branch = kinds[kinds.index("  unit|dev)") :].split(";;", 1)[0]
    after = kinds.split("esac", 1)[1]
    assert "pip install -q --no-compile -e .\n" in run_branch and "[dev]" not in run_branch
    assert "exit 0" in run_branch and '[ "$KIND" = dev ] || exit 0' in unit_branch
    assert 'pip install -q --no-compile -e ".[dev]"' in unit_branch
    assert "apt" not in before + run_branch + unit_branch  # only `dev` reaches the apt part
    assert "apt_install chromium" in after and "apt_install prometheus" in after
    versions = (ROOT / "scripts/test_versions.sh").read_text()
    assert 'scripts/install.sh "$venv" unit' in versions  # the unit suite: no Chromium


def test_python_versions_supported_and_tested() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11,<3.14"
    assert meta["license"] == "Apache-2.0" and (ROOT / "LICENSE").read_text().count("Apache") > 2
    test_sh = (ROOT / "scripts/test.sh").read_text()
    assert "scripts/test_versions.sh ${SHOPSTREAM_TEST_VERSIONS:-3.13}" in test_sh
    assert "test_versions.sh 3.12 3.13" in (ROOT / "Makefile").read_text()


def test_version_option() -> None:
    out = subprocess.run([sys.executable, "-m", "streams", "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert re.match(r"shopstream \S+ \(Python 3\.\d+\.\d+, faust-streaming ", out.stdout)
