"""Log lines with call context: JSON fields, text brackets, and the context adapter."""

from __future__ import annotations

import json
import logging

from sipua.service.logs import JsonFormatter, TextFormatter, context_logger


def record_of(logger_name: str, emit) -> logging.LogRecord:  # type: ignore[no-untyped-def]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(logger_name)
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    (record,) = records
    return record


def test_adapter_merges_its_context_with_extra() -> None:
    def emit(logger: logging.Logger) -> None:
        call_log = context_logger(logger, session_id="sess_1", call_id="c@x", leg_id=None)
        call_log.info("answered %s", "now", extra={"transport": "udp"})

    record = record_of("test.logs.adapter", emit)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "answered now"
    assert (line["session_id"], line["call_id"], line["transport"]) == ("sess_1", "c@x", "udp")
    assert "leg_id" not in line
    text = TextFormatter().format(record)
    assert text.endswith("answered now [session_id=sess_1 call_id=c@x transport=udp]")


def test_text_without_context_is_unchanged() -> None:
    record = record_of("test.logs.plain", lambda logger: logger.info("plain"))
    assert TextFormatter().format(record).endswith("test.logs.plain: plain")
