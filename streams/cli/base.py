"""The ``shopstream`` command line (Typer): worker, replay, generate, evaluate, tail, topics.

Every command and all terminal output live here; the tools behind them
(:mod:`streams.tools`) return data and report progress through a callback. When Kafka,
Redis or the worker cannot be reached, or an input is malformed, a command prints one line
(what failed, what to check; :mod:`streams.tools.failures`) and exits non-zero: 2 for a
setting or an input, 3 for a service that cannot be reached, 1 for other failures.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streams import logs
from streams.core import config
from streams.core.build import version_line
from streams.core.settings import Settings

cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)
evaluate = typer.Typer(no_args_is_help=True, help="Offline evaluations on recorded data.")
cli.add_typer(evaluate, name="evaluate")
imports = typer.Typer(no_args_is_help=True, help="Import a shop's history as contract events.")
cli.add_typer(imports, name="import")
err = Console(stderr=True, soft_wrap=True)


class _State:
    """What the global options chose, and the settings once loaded (for error messages)."""

    config_path: Path | None = None
    loaded: config.Loaded | None = None


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit


@cli.callback()
def _options(
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file [default: $SHOPSTREAM_CONFIG]."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Real-time behaviour engine for online shops (``shopstream COMMAND --help``)."""
    _State.config_path = config_file


def _load() -> config.Loaded:
    if _State.loaded is None:
        _State.loaded = config.load(config=_State.config_path)
        for warning in _State.loaded.warnings:
            if _State.loaded.settings.log_format == "json":  # one JSON object per line
                record = logging.LogRecord(
                    "streams.core.config", logging.WARNING, __file__, 0, warning, (), None
                )
                sys.stderr.write(logs.JsonFormatter().format(record) + "\n")
            else:
                _fail_line(f"warning: {warning}")
    return _State.loaded


def _settings() -> Settings:
    return _load().settings


def _fail_line(text: str) -> None:
    """One plain line on stderr (no wrapping, no markup)."""
    sys.stderr.write(f"shopstream: {text}\n")


@contextmanager
def _progress(label: str, *, show: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only on a terminal): yields ``update(done, total)``."""
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, disable=not show or not err.is_terminal, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _logging(level: str, settings: Settings | None = None) -> None:
    logs.setup(level, settings.log_format if settings else "text")
