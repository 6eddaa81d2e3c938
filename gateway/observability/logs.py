"""Structured logs (structlog), with ID numbers and phone numbers masked before anything is written.

Logs go to stderr (the deployment's journald or log shipper keeps and rotates them), or, with
`YIWANG_LOG_FILE`, to that file, rotated at midnight UTC and kept `YIWANG_LOG_RETENTION_DAYS` files.
Every line carries what `structlog.contextvars` holds: the correlation id and, where known, the case
number, sector, operation and outbox id (gateway/observability/correlation.py).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

# The one masking rule (adapters/masking.py), named here too for the gateway's modules that mask what they show.
from adapters import mask_text as mask_text
from adapters import mask_value as mask_value


def _loggable(value: Any) -> Any:
    """A log value masked wherever it nests. What is not JSON by nature (an exception, a path) is masked as
    the text the renderer would write; a number stays a number unless its digits are a phone or ID number."""
    if isinstance(value, dict):
        return {key: _loggable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_loggable(item) for item in value]
    if value is None or isinstance(value, bool | float):
        return value
    text = mask_text(value if isinstance(value, str) else str(value))
    return value if isinstance(value, int) and text == str(value) else text


def _mask(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every value of the event, nested ones and the formatted traceback (`exception`) included."""
    for key, value in event.items():
        event[key] = _loggable(value)
    return event


class _StderrLogger:
    """Writes to whatever `sys.stderr` is at the time of writing, not when logging was configured: a
    stream swapped and closed since (a test runner's capture) must not turn later log calls into errors."""

    def msg(self, message: str) -> None:
        # One write per record: print() writes the text and the newline apart, so two threads logging at once
        # could put two records on one line (seen in workers' JSON logs under load).
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


class _FileLogger:
    """Writes each rendered line to a file rotated at midnight UTC; `keep` rotated files stay, older ones
    are deleted by the handler as it rotates (the logs' retention)."""

    def __init__(self, path: Path, keep: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=keep,
                                                                 encoding="utf-8", utc=True)
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def msg(self, message: str) -> None:
        self.handler.handle(logging.LogRecord("yiwang", logging.INFO, "", 0, message, None, None))

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(level: str = "info", fmt: str = "console", log_file: Path | None = None,
                      keep_days: int = 30) -> None:
    """`log_file`: write there (rotated daily, `keep_days` files kept) instead of stderr."""
    to_file = _FileLogger(log_file, keep_days) if log_file is not None else None
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json" else (
        structlog.dev.ConsoleRenderer(colors=to_file is None and sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=_stderr_logger if to_file is None else (lambda *_: to_file),
        cache_logger_on_first_use=False,
    )
