"""Errors of the models library (it imports nothing from the application).

>>> issubclass(InvalidConfig, ValueError)
True
"""

from __future__ import annotations


class ModelError(Exception):
    """Root of the models library's errors."""


class InvalidConfig(ModelError, ValueError):
    """A model parameter that cannot work (the message names it)."""


class CheckpointRejected(ModelError):
    """Stored model state is unsigned, tampered with, unreadable or incompatible: the caller
    starts fresh (or keeps its own copy) instead."""


class CheckpointKeyMissing(ModelError):
    """No signing key is configured, so model state cannot be signed."""
