"""A tripwire for unpickling: while armed, any unpickling in this process raises.

:func:`no_unpickling` replaces ``pickle.loads``/``load``/``Unpickler`` (and ``_pickle``'s) by
functions that raise, and arms a :func:`sys.addaudithook` hook on the ``pickle.find_class``
audit event, which every unpickler raises when it resolves a class -- also an
``Unpickler`` subclass defined before the patch (the checkpoint format 1 had one). Every
attempt is recorded in the returned list, so a test asserts both that its restore worked
and that nothing tried to unpickle.
"""

from __future__ import annotations

import _pickle
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_ARMED: list[list[str]] = []  # the attempts list of the armed tripwire (at most one)


class Unpickled(RuntimeError):
    """Raised by the tripwire: something tried to unpickle."""


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _ARMED and event == "pickle.find_class":
        _ARMED[-1].append(f"find_class {args[0]}.{args[1]}")
        raise Unpickled(f"unpickling {args[0]}.{args[1]}")


sys.addaudithook(_hook)  # hooks cannot be removed: this one acts only while armed


@contextmanager
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Within the block, unpickling anything raises :class:`Unpickled`; yields the list of
    attempts (empty if nothing tried)."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def boom(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise Unpickled(f"{name} called")

        return boom

    with monkeypatch.context() as m:
        for module in (pickle, _pickle):
            for name in ("loads", "load", "Unpickler"):
                m.setattr(module, name, refuse(f"{module.__name__}.{name}"))
        _ARMED.append(attempts)
        try:
            yield attempts
        finally:
            _ARMED.remove(attempts)
