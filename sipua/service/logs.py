"""Logging for ``sipua serve``: readable text, or JSON lines with call context."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

# Attributes a log call may pass in ``extra=`` that JSON lines carry as fields.
CONTEXT_FIELDS = (
    "session_id",
    "call_id",
    "leg_id",
    "transport",
    "peer",
    "provider",
    "event_id",
)


class ContextAdapter(logging.LoggerAdapter):
    """A logger that adds fixed context (``session_id``, ``call_id`` …) to every line.

    ``extra=`` given on a call is merged over the adapter's own (the stdlib adapter would
    replace it)::

        call_log = ContextAdapter(log, {"session_id": sid, "call_id": call_id})
        call_log.info("answered", extra={"transport": "udp"})
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def context_logger(logger: logging.Logger | str, **context: Any) -> ContextAdapter:
    """``ContextAdapter`` over ``logger`` (or the logger of that name); ``None`` values dropped."""
    base = logging.getLogger(logger) if isinstance(logger, str) else logger
    return ContextAdapter(base, {k: v for k, v in context.items() if v is not None})


class TextFormatter(logging.Formatter):
    """Readable lines, with the context fields a record carries appended as ``[key=value …]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        if not context:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the context
        return f"{head} [{' '.join(context)}]{sep}{tail}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
