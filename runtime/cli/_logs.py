"""Log lines of ``corps`` commands: with timestamps, as text or one JSON object per line.

``--log-format json`` gives ``{"ts", "level", "logger", "message", "correlation_id"}`` (the id of
the message being handled when the line was logged, else null) plus ``exc`` with a traceback.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Final

from corps.core._context import current_correlation_id

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class _Correlation(logging.Filter):
    """Stamps each record with the correlation id of the task that logs it (a contextvar)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = current_correlation_id()
        return True


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level``, as ``fmt`` ("text" or "json"); replaces earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Correlation())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
