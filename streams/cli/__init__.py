"""The ``shopstream`` command line, one module per kind of command: :mod:`.base` (the Typer
apps, global options, settings, one-line failures), :mod:`.operations` (worker, topics,
sources, repartition, reset, forget, settings), :mod:`.data` (replay, import, tail, generate)
and :mod:`.evaluations` (evaluate churn, forecast, uplift, recs)."""

from __future__ import annotations

import logging

from streams.cli import data, evaluations, operations  # noqa: F401  (register the commands)
from streams.cli.base import _fail_line, _State, cli
from streams.cli.data import generate, replay
from streams.cli.evaluations import (
    evaluate_churn,
    evaluate_forecast,
    evaluate_recs,
    evaluate_uplift,
)
from streams.tools.failures import explain

__all__ = [
    "cli", "evaluate_churn", "evaluate_forecast", "evaluate_recs", "evaluate_uplift", "generate",
    "main", "replay",
]  # fmt: skip


def main() -> None:
    """The ``shopstream`` entry point: a failure the operator can fix is one line."""
    # aiokafka logs every failed connection attempt; a command reports the failure once
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        cli()
    except Exception as exc:
        loaded = _State.loaded
        explained = explain(exc, loaded.settings if loaded else None)
        if explained is None:
            raise
        message, code = explained
        _fail_line(message)
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        _fail_line("interrupted")
        raise SystemExit(130) from None
