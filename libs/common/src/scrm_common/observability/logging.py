"""Structured JSON logs: one JSON object per line on stderr — our own lines, uvicorn's, the access log,
warnings and uncaught exceptions alike — carrying the service name and, where known, tenant, event and
correlation ids.

The access log (logger `scrm.access`, one line per HTTP request with method, path, status and duration)
is set by `SCRM_ACCESS_LOG`: `errors` (default: requests answered 4xx or 5xx), `all` (every request —
ingest alone may answer thousands a second, so mind the volume) or `off`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType

# The correlation id of the HTTP request being served (set by `scrm_common.http.RequestContext`): every
# line logged while serving it carries it, so an error answer can be found in the log by its id.
CORRELATION_ID: ContextVar[str | None] = ContextVar("correlation_id", default=None)

ACCESS_LOGGER = "scrm.access"
ACCESS_LOG_LEVELS: dict[str, int] = {"all": logging.INFO, "errors": logging.WARNING, "off": logging.CRITICAL + 1}
DEFAULT_ACCESS_LOG = "errors"

_EXTRA = ("tenant", "event_id", "correlation_id", "idempotency_key", "account_id", "field", "type", "reason",
          "error_codes", "detail", "phone_number_id", "waba_id", "method", "path", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is the `exc` field of its line (newlines escaped), never
    lines of its own."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _EXTRA:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if "correlation_id" not in doc and (correlation_id := CORRELATION_ID.get()) is not None:
            doc["correlation_id"] = correlation_id
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str)


def access_log_level(setting: str | None) -> int:
    """The level of the `scrm.access` logger for an `SCRM_ACCESS_LOG` value (`all`, `errors`, `off`);
    raises ValueError for anything else."""
    value = (setting or DEFAULT_ACCESS_LOG).strip().lower()
    if value not in ACCESS_LOG_LEVELS:
        raise ValueError(f"SCRM_ACCESS_LOG must be one of {', '.join(ACCESS_LOG_LEVELS)}, not {setting!r}")
    return ACCESS_LOG_LEVELS[value]


def setup_logging(service: str, level: str = "INFO", *, access_log: str | None = None) -> None:
    """Route all logging to stderr as JSON lines, uncaught exceptions and warnings included.

    `access_log` is `all`, `errors` or `off` (default: `SCRM_ACCESS_LOG`, else `errors`). uvicorn must run
    with `log_config=None` (as `scrm_common.runtime.serve` does) so its loggers reach this handler.
    """
    access_level = access_log_level(access_log if access_log is not None else os.environ.get("SCRM_ACCESS_LOG"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        # Whatever configured them before (uvicorn's own dictConfig), they log through the JSON handler now.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger(ACCESS_LOGGER).setLevel(access_level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """`sys.excepthook`: a crash's traceback as one JSON line, not as lines of text."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("uncaught").critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """`threading.excepthook`: as `_log_uncaught`, naming the thread."""
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("uncaught").critical(
        "uncaught %s in thread %s: %s", args.exc_type.__name__, getattr(args.thread, "name", "?"), args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
