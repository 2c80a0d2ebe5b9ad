"""The error hierarchy. Every error says whether retrying could help (aiokafka's habit)."""

from __future__ import annotations


class ShopstreamError(Exception):
    """Root of all shopstream errors."""

    retriable: bool = False


class ConfigError(ShopstreamError):
    """A setting has a value that cannot work; the message names the environment variable."""


class StateUnavailable(ShopstreamError):
    """Redis (or another state store) could not be reached; retry with backoff."""

    retriable = True


class CheckpointRejected(ShopstreamError):
    """A model checkpoint is unsigned, tampered with or incompatible; start fresh instead."""
