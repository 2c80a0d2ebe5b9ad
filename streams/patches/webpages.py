"""No built-in Faust pages: the worker serves only its own routes (streams/web/openapi.py).

faust-streaming 0.15 has a setting per built-in blueprint (``/table``: table data, ``/router``:
the cluster's worker URLs, ``/graph``, statistics, ``/performance``), which
:func:`streams.app.create_app` turns off, but always mounts one more at ``/``: the
"production index" (``{"status": "OK"}``, whether or not the worker is healthy). This drops
every ``faust.web.apps.*`` blueprint from the web server's list before the server starts.
"""

from __future__ import annotations

from typing import Any

BUILTIN = "faust.web.apps."


def without_builtin_pages(app: Any) -> None:
    """Remove Faust's own blueprints (call before the web server starts)."""
    manager = app.web.blueprints
    if manager.applied:
        raise RuntimeError("the web server already serves its blueprints")
    manager._enabled = [
        (prefix, bp) for prefix, bp in manager._enabled
        if not (isinstance(bp, str) and bp.startswith(BUILTIN))
    ]  # fmt: skip
