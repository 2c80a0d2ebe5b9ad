"""Opt in to the kernel prototype's builds (``bench/kernel/build.py``) - call before importing.

``enable("typed")``: the typed Half-Space Trees kernel replaces three methods of
:class:`models.hst.HalfSpaceTrees`; ``enable("asis")``: the modules of
:data:`kernel.build.ASIS` load from their Cython-compiled extensions instead of their ``.py``
(a meta-path finder, so it must run before anything imports them). Nothing calls this but
the benchmark (``bench/kernel/bench.py``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "bench" / "kernel" / "build" / "lib"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


class _Compiled(importlib.abc.MetaPathFinder):
    """Finds the compiled extension of each of ``names`` in :data:`LIB`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.paths = {n: LIB / (n.replace(".", "/") + SUFFIX) for n in names}
        missing = [str(p) for p in self.paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"not built (run bench/kernel/build.py): {missing}")

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        p = self.paths.get(fullname)
        return None if p is None else importlib.util.spec_from_file_location(fullname, p)


def enable(*what: str) -> list[str]:
    """Load the builds named in ``what`` ('typed', 'asis'); returns what was enabled."""
    if "asis" in what:
        sys.path.insert(0, str(ROOT / "bench" / "kernel"))
        from build import ASIS  # bench/kernel/build.py: the module list

        sys.path.pop(0)
        early = [m for m in ASIS if m in sys.modules]
        if early:
            raise RuntimeError(f"already imported as Python: {early}")
        sys.meta_path.insert(0, _Compiled(ASIS))
    if "typed" in what:
        sys.path.insert(0, str(LIB))
        import shopstream_kernel_hst

        shopstream_kernel_hst.install()
    return list(what)
