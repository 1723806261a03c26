"""The event log: every product event with its webhook delivery status and attempts.

The log is the source of truth: events are kept whether or not a webhook URL is configured, and
``GET /v1/sessions/{id}/events`` reads them from here. The tables (``events``,
``webhook_attempts``) are created by the session store's migrations
(:mod:`sipua.service.store`), in the same SQLite file; this module opens its own connection to
it (WAL lets the two connections work side by side).

Writes are small and synchronous (WAL, ``synchronous=NORMAL``: no fsync per commit); the webhook
dispatcher batches event inserts so a burst of calls costs one transaction per burst.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from sipua.service.events import SessionEvent
from sipua.service.events import _iso as _event_iso
from sipua.service.sqlite import Database
from sipua.service.store import DB_FILENAME, StoreError

__all__ = [
    "DeliveryAttempt",
    "DeliveryStatus",
    "EventPage",
    "EventRecord",
    "EventStore",
    "MemoryEventStore",
    "SqliteEventStore",
    "open_event_store",
]

log = logging.getLogger(__name__)

DeliveryStatus = Literal["pending", "delivered", "failed", "skipped"]
AttemptOutcome = Literal["delivered", "retry", "failed"]
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of an event to a webhook URL."""

    event_id: str
    attempt: int  # 1-based
    url: str
    started_at: datetime
    duration_ms: float
    status_code: int | None  # None: no HTTP response (timeout, connection refused …)
    error: str | None
    outcome: AttemptOutcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "url": self.url,
            "started_at": _iso(self.started_at),
            "duration_ms": round(self.duration_ms, 1),
            "status_code": self.status_code,
            "error": self.error,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the log holds it."""

    event: SessionEvent
    body: bytes  # the exact JSON that is (or would be) delivered
    delivery_status: DeliveryStatus
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None
    attempt_log: tuple[DeliveryAttempt, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class EventPage:
    items: Sequence[EventRecord]
    next_after: str | None


@runtime_checkable
class EventStore(Protocol):
    def append(self, records: Sequence[tuple[SessionEvent, DeliveryStatus, str | None]]) -> None:
        """Insert events with their initial delivery status (and error, for skipped/failed)."""

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        """Store one attempt and bump the event's attempt count."""

    def set_status(
        self,
        event_id: str,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        """Set an event's delivery status."""

    def list(self, session_id: str, limit: int, after: str | None = None) -> EventPage:
        """A page of a session's events in creation order, with their attempts."""

    def get(self, event_id: str) -> EventRecord | None:
        """One event with its attempts."""

    def pending(self, limit: int = 10000) -> Sequence[EventRecord]:
        """Events not yet delivered nor given up on, oldest first (redelivered after a restart)."""

    def close(self) -> None:
        """Release resources; idempotent."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _event_iso(moment)


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:MAX_ERROR_LENGTH]


def _event_from_body(body: bytes | str) -> SessionEvent:
    data = json.loads(body)
    created = _parse_time(data["created_at"])
    assert created is not None
    return SessionEvent(
        id=data["id"],
        type=data["type"],
        created_at=created,
        session_id=data["session_id"],
        provider=data.get("provider"),
        data=data.get("data") or {},
    )


# ---------------------------------------------------------------------------------------------
# SQLite


_INSERT_EVENTS = (
    "INSERT INTO events (id, session_id, type, created_at, body, delivery_status, last_error) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?)"
)


class SqliteEventStore:
    """:class:`EventStore` on the sessions database file (tables made by its migrations)."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._db = Database(self.path, "event log", busy_timeout=busy_timeout)
        self._lock = self._db.lock
        self._execute = self._db.execute
        self._transaction = self._db.transaction

    def append(self, records: Sequence[tuple[SessionEvent, DeliveryStatus, str | None]]) -> None:
        if not records:
            return
        rows = [
            (
                e.id,
                e.session_id,
                e.type,
                _iso(e.created_at),
                e.body().decode(),
                status,
                _clip(error),
            )
            for e, status, error in records
        ]

        # One statement for the whole batch, its rows passed as one JSON array: one step of
        # SQLite (atomic on its own), so a writer thread gives up and retakes the GIL once per
        # batch rather than once per row. executemany() retook it per row, and each retake
        # waited out the busy event loop's switch interval (5 ms): 500 rows took seconds.
        with self._lock:
            self._execute(_INSERT_EVENTS, (json.dumps(rows),))

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        def work() -> None:
            self._execute(
                "INSERT OR REPLACE INTO webhook_attempts (event_id, attempt, url, started_at, "
                "duration_ms, status_code, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    attempt.event_id,
                    attempt.attempt,
                    attempt.url,
                    _iso(attempt.started_at),
                    attempt.duration_ms,
                    attempt.status_code,
                    _clip(attempt.error),
                    attempt.outcome,
                ),
            )
            self._execute(
                "UPDATE events SET attempts = MAX(attempts, ?), last_error = ? WHERE id = ?",
                (attempt.attempt, _clip(attempt.error), attempt.event_id),
            )

        self._transaction(work)

    def set_status(
        self,
        event_id: str,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        with self._lock:
            self._execute(
                "UPDATE events SET delivery_status = ?, last_error = COALESCE(?, last_error), "
                "delivered_at = ? WHERE id = ?",
                (status, _clip(error), _iso(delivered_at), event_id),
            )

    _SELECT = "SELECT id, body, delivery_status, attempts, last_error, delivered_at FROM events"

    def _records(self, rows: list[tuple[Any, ...]]) -> list[EventRecord]:
        if not rows:
            return []
        ids = [row[0] for row in rows]
        attempts: dict[str, list[DeliveryAttempt]] = {i: [] for i in ids}
        placeholders = ", ".join("?" for _ in ids)
        with self._lock:
            arows = self._execute(
                "SELECT event_id, attempt, url, started_at, duration_ms, status_code, error, "
                f"outcome FROM webhook_attempts WHERE event_id IN ({placeholders}) "
                "ORDER BY event_id, attempt",
                ids,
            ).fetchall()
        for a in arows:
            started = _parse_time(a[3])
            assert started is not None
            attempts[a[0]].append(
                DeliveryAttempt(a[0], a[1], a[2], started, a[4], a[5], a[6], a[7])
            )
        out = []
        for row in rows:
            try:
                event = _event_from_body(row[1])
            except (ValueError, KeyError) as exc:
                raise StoreError(f"stored event {row[0]!r} is unreadable: {exc}") from exc
            out.append(
                EventRecord(
                    event=event,
                    body=row[1].encode(),
                    delivery_status=row[2],
                    attempts=row[3],
                    last_error=row[4],
                    delivered_at=_parse_time(row[5]),
                    attempt_log=tuple(attempts[row[0]]),
                )
            )
        return out

    def list(self, session_id: str, limit: int, after: str | None = None) -> EventPage:
        limit = max(1, limit)
        params: list[Any] = [session_id]
        where = "session_id = ?"
        if after is not None:
            where += " AND id > ?"
            params.append(after)
        with self._lock:
            rows = self._execute(
                f"{self._SELECT} WHERE {where} ORDER BY id LIMIT ?", (*params, limit + 1)
            ).fetchall()
        more = len(rows) > limit
        records = self._records(rows[:limit])
        return EventPage(records, records[-1].event.id if more and records else None)

    def get(self, event_id: str) -> EventRecord | None:
        with self._lock:
            row = self._execute(f"{self._SELECT} WHERE id = ?", (event_id,)).fetchone()
        records = self._records([row]) if row is not None else []
        return records[0] if records else None

    def pending(self, limit: int = 10000) -> Sequence[EventRecord]:
        with self._lock:
            rows = self._execute(
                f"{self._SELECT} WHERE delivery_status = 'pending' ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return self._records(rows)

    def close(self) -> None:
        self._db.close()


def open_event_store(data_dir: Path) -> SqliteEventStore:
    """The default event log: in ``<data_dir>/sipua.db`` beside the sessions."""
    return SqliteEventStore(Path(data_dir).expanduser() / DB_FILENAME)


# ---------------------------------------------------------------------------------------------
# In memory


class MemoryEventStore:
    """:class:`EventStore` in dicts (tests, ephemeral deployments)."""

    def __init__(self) -> None:
        self._records: dict[str, EventRecord] = {}
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreError("event log is closed")

    def append(self, records: Sequence[tuple[SessionEvent, DeliveryStatus, str | None]]) -> None:
        self._check()
        for event, status, error in records:
            if event.id in self._records:
                raise StoreError(f"event {event.id} already exists")
            self._records[event.id] = EventRecord(event, event.body(), status, last_error=error)

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        self._check()
        record = self._records.get(attempt.event_id)
        if record is None:
            return
        log_ = [a for a in record.attempt_log if a.attempt != attempt.attempt]
        log_.append(attempt)
        self._records[attempt.event_id] = replace(
            record,
            attempts=max(record.attempts, attempt.attempt),
            last_error=attempt.error,
            attempt_log=tuple(sorted(log_, key=lambda a: a.attempt)),
        )

    def set_status(
        self,
        event_id: str,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        self._check()
        record = self._records.get(event_id)
        if record is not None:
            self._records[event_id] = replace(
                record,
                delivery_status=status,
                last_error=error if error is not None else record.last_error,
                delivered_at=delivered_at,
            )

    def list(self, session_id: str, limit: int, after: str | None = None) -> EventPage:
        self._check()
        limit = max(1, limit)
        ids = sorted(
            i
            for i, r in self._records.items()
            if r.event.session_id == session_id and (after is None or i > after)
        )
        items = [self._records[i] for i in ids[:limit]]
        return EventPage(items, items[-1].event.id if len(ids) > limit else None)

    def get(self, event_id: str) -> EventRecord | None:
        self._check()
        return self._records.get(event_id)

    def pending(self, limit: int = 10000) -> Sequence[EventRecord]:
        self._check()
        ids = sorted(i for i, r in self._records.items() if r.delivery_status == "pending")
        return [self._records[i] for i in ids[:limit]]

    def close(self) -> None:
        self._closed = True
