"""Logging set-up of coord-server: text (the default) or one JSON object per line.

``--log-format json`` makes every line a JSON object a log pipeline can index without
parsing prose: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
``message``, ``node`` (member name), ``term`` (the Raft term when the line was logged,
once the node exists), and inside a gRPC call ``method`` and ``request_id``
(``<coord-client-id>/<coord-seq>`` when the client sent them; see request_context.py);
``exception`` holds a traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from coord_server.request_context import request_fields

_term_source: Callable[[], int] | None = None


def set_term_source(source: Callable[[], int] | None) -> None:
    """Where JSON lines read the current term from (the server sets it once the node exists)."""
    global _term_source
    _term_source = source


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "node": self.node,
        }
        if _term_source is not None:
            try:
                line["term"] = _term_source()
            except Exception:  # noqa: BLE001 - a log line must never fail
                pass
        line.update(request_fields())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def _utc_iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(level: str, log_format: str, node: str) -> None:
    """Install the root handler (stderr) for ``log_format``: "text" or "json"."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{node}] %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
