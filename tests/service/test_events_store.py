"""The event log: both implementations honour one contract; the SQLite one survives reopening."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sipua.service.events import SessionEvent, new_event_id
from sipua.service.events_store import (
    DeliveryAttempt,
    EventStore,
    MemoryEventStore,
    SqliteEventStore,
    open_event_store,
)
from sipua.service.ids import new_session_id
from sipua.service.store import (
    SCHEMA_VERSION,
    SqliteSessionRepository,
    StoreError,
    open_repository,
)

T0 = datetime(2025, 1, 7, 10, 0, 0, 123000, tzinfo=UTC)


def make_event(session_id: str, n: int = 0) -> SessionEvent:
    return SessionEvent(
        id=new_event_id(),
        type="session.dtmf",
        created_at=T0 + timedelta(seconds=n),
        session_id=session_id,
        provider={"type": "sip", "sip_call_id": "c@x", "status": "connected"},
        data={"digit": str(n % 10), "n": n, "ü": "ß"},
    )


@pytest.fixture(params=["sqlite", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    store: EventStore
    store = SqliteEventStore(tmp_path / "x.db") if request.param == "sqlite" else MemoryEventStore()
    yield store
    store.close()


def test_implements_protocol(any_store: EventStore) -> None:
    assert isinstance(any_store, EventStore)


def test_append_get_round_trip(any_store: EventStore) -> None:
    e = make_event(new_session_id())
    any_store.append([(e, "pending", None)])
    record = any_store.get(e.id)
    assert record is not None
    assert record.event == e and record.body == e.body()
    assert (record.delivery_status, record.attempts, record.attempt_log) == ("pending", 0, ())
    assert any_store.get(new_event_id()) is None
    with pytest.raises(StoreError):
        any_store.append([(e, "pending", None)])


def test_attempts_and_status(any_store: EventStore) -> None:
    e = make_event(new_session_id())
    any_store.append([(e, "pending", None)])
    url = "https://hooks.example.test/x"
    any_store.record_attempt(DeliveryAttempt(e.id, 1, url, T0, 12.5, 500, "HTTP 500", "retry"))
    any_store.record_attempt(DeliveryAttempt(e.id, 2, url, T0, 8.0, 200, None, "delivered"))
    any_store.set_status(e.id, "delivered", delivered_at=T0 + timedelta(seconds=1))
    record = any_store.get(e.id)
    assert record is not None
    assert record.delivery_status == "delivered" and record.attempts == 2
    assert record.delivered_at == T0 + timedelta(seconds=1)
    assert [(a.attempt, a.status_code, a.outcome) for a in record.attempt_log] == [
        (1, 500, "retry"),
        (2, 200, "delivered"),
    ]
    assert record.attempt_log[0].to_dict()["started_at"] == "2025-01-07T10:00:00.123Z"
    assert any_store.pending() == []


def test_list_is_paged_per_session_in_order(any_store: EventStore) -> None:
    mine, other = new_session_id(), new_session_id()
    events = [make_event(mine, n) for n in range(5)]
    noise = [make_event(other, n) for n in range(3)]
    any_store.append([(e, "skipped", "no webhook URL") for e in events[:2] + noise])
    any_store.append([(e, "pending", None) for e in events[2:]])
    first = any_store.list(mine, 2)
    assert [r.event.id for r in first.items] == [e.id for e in events[:2]]
    assert first.next_after == events[1].id
    second = any_store.list(mine, 2, first.next_after)
    assert [r.event.id for r in second.items] == [e.id for e in events[2:4]]
    last = any_store.list(mine, 2, second.next_after)
    assert [r.event.id for r in last.items] == [events[4].id] and last.next_after is None
    assert any_store.list(new_session_id(), 10).items == []
    assert first.items[0].last_error == "no webhook URL"
    assert [r.event.id for r in any_store.pending()] == [e.id for e in events[2:]]


def test_sqlite_log_survives_reopening_and_lives_beside_sessions(data_dir: Path) -> None:
    sessions = open_repository(data_dir)
    store = open_event_store(data_dir)
    e = make_event(new_session_id())
    store.append([(e, "pending", None)])
    store.close()
    sessions.close()
    again = open_event_store(data_dir)
    try:
        record = again.get(e.id)
        assert record is not None and record.event == e
    finally:
        again.close()
    conn = sqlite3.connect(data_dir / "sipua.db")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"sessions", "events", "webhook_attempts"} <= tables
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
        assert "webhook_secret" in columns
    finally:
        conn.close()


def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    """A database made before the event log gains its tables and keeps its sessions."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY, status TEXT NOT NULL, mode TEXT NOT NULL,
            source_language TEXT NOT NULL, target_language TEXT, provider TEXT,
            media TEXT NOT NULL, metadata TEXT NOT NULL, webhook_url TEXT,
            stream_token TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT
        ) WITHOUT ROWID;
        """
    )
    sid = new_session_id()
    conn.execute(
        "INSERT INTO sessions VALUES (?, 'active', 'echo', 'en', NULL, NULL, '{}', '{}', "
        "'https://h.example.test/', 'tok', '2025-01-01T00:00:00+00:00', NULL)",
        (sid,),
    )
    conn.commit()
    conn.close()
    store = SqliteEventStore(path)
    try:
        e = make_event(sid)
        store.append([(e, "pending", None)])
        assert store.get(e.id) is not None
    finally:
        store.close()
    sessions = SqliteSessionRepository(path)
    try:
        old = sessions.get(sid)
        assert old is not None and old.webhook_secret is None  # made before secrets existed
    finally:
        sessions.close()


def test_closed_store_raises(any_store: EventStore) -> None:
    any_store.close()
    any_store.close()
    with pytest.raises(StoreError):
        any_store.get(new_event_id())
