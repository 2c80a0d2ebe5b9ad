"""pytest plugin: run the tests on the kernel prototype's builds (opt-in, never by default).

    SHOPSTREAM_KERNEL=typed,asis PYTHONPATH=. .venv/bin/python -m pytest -p kernel.pytest_kernel \
        tests/unit/models
"""

from __future__ import annotations

import os

from kernel.load import enable

enabled = enable(*filter(None, os.environ.get("SHOPSTREAM_KERNEL", "").split(",")))


def pytest_report_header() -> str:
    return f"shopstream kernel prototype: {enabled or 'off'}"
