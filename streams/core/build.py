"""What this build is: the package version and the versions of the stack it runs on.

``shopstream --version`` prints :func:`version_line`; the worker exports
:func:`build_labels` as ``shopstream_build_info`` (a gauge that is always 1, the Prometheus
habit), so a dashboard can tell which version each worker runs.

>>> set(build_labels()) == {"version", "python", "faust", "river", "aiokafka"}
True
>>> version_line().startswith("shopstream ")
True
"""

from __future__ import annotations

import platform
from importlib import metadata

#: Version when the package metadata is missing (running from a source tree never installed).
UNKNOWN = "0+unknown"


def package_version(name: str = "shopstream") -> str:
    """The installed version of ``name`` (``0+unknown`` if it is not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def build_labels() -> dict[str, str]:
    """Labels of ``shopstream_build_info``: our version and those of the stack under it."""
    return {
        "version": package_version(),
        "python": platform.python_version(),
        "faust": package_version("faust-streaming"),
        "river": package_version("river"),
        "aiokafka": package_version("aiokafka"),
    }


def version_line() -> str:
    """One line: ``shopstream X (Python Y, faust-streaming Z, river R, aiokafka A)``."""
    b = build_labels()
    return (
        f"shopstream {b['version']} (Python {b['python']}, faust-streaming {b['faust']}, "
        f"river {b['river']}, aiokafka {b['aiokafka']})"
    )
