"""The wheel a user installs: built from this checkout, installed into a clean virtualenv
(no source tree on its path), it runs ``shopstream --version`` and finds its package data:
the similarity Lua script and the dashboard page."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from streams.core.build import package_version

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_with_its_lua_and_dashboard(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = dist.glob("shopstream-*.whl")
    env_dir = tmp_path / "clean"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # --no-compile: byte-compiling numpy, scipy and river is most of the time and not the point
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
                   check=True, timeout=600)  # fmt: skip
    out = subprocess.run(
        [str(env_dir / "bin" / "shopstream"), "--version"], cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.startswith(f"shopstream {package_version()} (Python ")
    probe = (
        "import streams, models.similarity.store as s, streams.web.dashboard as d\n"
        "assert 'site-packages' in streams.__file__, streams.__file__\n"
        "assert 'COMMANDS' in s.load_lua()\n"
        "assert '<html' in d.page().lower()\n"
    )
    subprocess.run([str(py), "-c", probe], cwd=tmp_path, check=True, timeout=120)
    license_files = subprocess.run(
        [str(py), "-c", "from importlib import metadata as m; "
         "print([f.name for f in m.files('shopstream') if 'LICENSE' in f.name])"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert "LICENSE" in license_files
