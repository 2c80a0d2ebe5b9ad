"""Log lines as text or as JSON (``SHOPSTREAM_LOG_FORMAT=json``: one object per line).

The JSON form is for log collectors (Loki, Elasticsearch, CloudWatch): every line parses
alone, with the time in UTC, the level, the logger, the message (arguments applied) and,
when there is one, the traceback as a single string.

>>> import logging
>>> rec = logging.LogRecord("streams.x", logging.WARNING, "f.py", 1, "lag %d", (5,), None)
>>> rec.created = 0.0
>>> JsonFormatter().format(rec)
'{"ts":"1970-01-01T00:00:00.000Z","level":"warning","logger":"streams.x","message":"lag 5"}'
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (a traceback goes into ``exc``, never onto more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        ms = int(record.created * 1000) % 1000
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the worker (mode/Faust take it as is)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def setup(level: str, fmt: str) -> None:
    """Configure the root logger of a command (the worker passes the config to Faust)."""
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
