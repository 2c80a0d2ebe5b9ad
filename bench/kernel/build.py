"""Build the kernel prototype (issue 20, step 4) into ``bench/kernel/build/`` - nothing else moves.

Two builds, both opt-in (the worker and the tests never load them unless
:func:`kernel.load.enable` is called):

* ``typed``: ``bench/kernel/hst.pyx``, a typed Cython kernel for the Half-Space Trees' walk, learn
  and score (``shopstream_kernel_hst``);
* ``asis``: the per-event modules of the batch (:data:`ASIS`) compiled by Cython exactly as
  they are (``annotation_typing=False``: every variable stays a Python object, so a dict
  subclass keeps its ``__setitem__``, and classes stay Python classes, so dataclasses and
  orjson behave as in CPython), as extension modules of their own dotted names.

Needs Cython, setuptools and gcc in a separate venv (the project's ``.venv`` is not touched)::

    python3.11 -m venv .kvenv && .kvenv/bin/pip install cython setuptools
    .kvenv/bin/python bench/kernel/build.py            # both builds, ~1-2 min on 1 core
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "kernel" / "build"

#: The batch's per-event modules (``docs/kernel-decision.md``: the drain profile's hot paths).
ASIS = (
    "models.hst", "models.anomaly", "models.sketch", "models.segments", "models.guarded",
    "streams.domain.churn", "streams.domain.churn_state", "streams.domain.envelope",
    "streams.domain.kpis", "streams.domain.screening", "streams.domain.profile",
    "streams.domain.recommendations", "streams.worker.kpi_store", "streams.worker.users",
    "streams.worker.intake", "streams.core.wire",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", default=["typed", "asis"])
    args = parser.parse_args()
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    exts = []
    if "typed" in args.which:
        exts += cythonize(
            [Extension("shopstream_kernel_hst", [str(ROOT / "bench" / "kernel" / "hst.pyx")])],
            build_dir=str(OUT / "c"), quiet=True,
        )  # fmt: skip
    if "asis" in args.which:
        sources = [Extension(m, [str(ROOT / (m.replace(".", "/") + ".py"))]) for m in ASIS]
        exts += cythonize(
            sources, build_dir=str(OUT / "c"), quiet=True,
            compiler_directives={"language_level": 3, "annotation_typing": False,
                                 "binding": True},
        )  # fmt: skip
    shutil.rmtree(OUT / "tmp", ignore_errors=True)
    dist = Distribution({"ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(OUT / "lib"), str(OUT / "tmp")  # type: ignore[attr-defined]
    cmd.ensure_finalized()
    cmd.run()
    print(f"built {len(exts)} extension(s) into {OUT / 'lib'}", file=sys.stderr)


if __name__ == "__main__":
    main()
