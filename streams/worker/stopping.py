"""Stopping the worker process at once, loudly, when going on would be wrong.

Used when a batch failed in a way no retry can mend, or when stored state and the log
disagree (:class:`~streams.core.errors.StateDiverged`). The process exits without a clean
shutdown on purpose: no offset commit, no model checkpoint, no hand-over of models that
learned from a batch whose effects are not all written. Every effect is fenced, so a
restart redelivers the unacknowledged batch and finishes it — or, for diverged state,
refuses again with the same message until an operator acts (docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

log = logging.getLogger(__name__)

#: Exit status of a worker that stopped itself (EX_SOFTWARE).
EXIT_STOPPED = 70


def stop_now(message: str, exc: BaseException | None = None) -> NoReturn:
    """Log ``message`` (with the exception) as critical, flush the logs, exit the process."""
    log.critical("%s; the worker stops (exit status %d)", message, EXIT_STOPPED,
                 exc_info=exc)  # fmt: skip
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_STOPPED)
