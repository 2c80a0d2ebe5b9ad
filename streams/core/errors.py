"""The error hierarchy. Every error says whether retrying could help (aiokafka's habit).

:func:`streams.worker.retry.is_retriable` reads ``retriable``: a retriable error leaves the
batch unacknowledged and is tried again with backoff; any other error is the record's fault
(dead-letter it) or a bug (fail loudly).

>>> StateUnavailable("redis down").retriable, ConfigError("bad").retriable
(True, False)
"""

from __future__ import annotations


class ShopstreamError(Exception):
    """Root of all shopstream errors."""

    retriable: bool = False


class ConfigError(ShopstreamError):
    """A setting has a value that cannot work; the message names the environment variable."""


class StateUnavailable(ShopstreamError):
    """Redis (or another state store) could not be reached; retry with backoff."""

    retriable = True


class StateDiverged(ShopstreamError):
    """Stored state and the log disagree in a way that processing on would hide (a topic
    recreated, a broker that lost records, a Redis that lost its data): the worker stops
    with this message instead of skipping or double-applying records silently."""


class Fenced(ShopstreamError):
    """This worker no longer owns the partition it is writing for (a zombie after a pause
    or a network partition): the batch is abandoned unacknowledged, its new owner does it."""


class BrokerUnavailable(ShopstreamError):
    """The Kafka broker could not be reached or has no leader for a topic; retry later."""

    retriable = True


class InputError(ShopstreamError):
    """An input file (events to replay, clicks, transactions) is not in the expected format."""
