from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sipua.service.ids import new_session_id, new_token
from sipua.service.models import (
    MediaOptions,
    Session,
    SessionMode,
    SessionStatus,
    SipProvider,
    SrtpOptions,
)
from sipua.service.store import (
    DB_FILENAME,
    SCHEMA_VERSION,
    MemorySessionRepository,
    SessionRepository,
    SqliteSessionRepository,
    StoreError,
    open_repository,
)

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def make_session(**changes: Any) -> Session:
    data: dict[str, Any] = {
        "id": new_session_id(),
        "status": SessionStatus.ACTIVE,
        "mode": SessionMode.BIDIRECTIONAL_TRANSLATION,
        "source_language": "en-US",
        "target_language": "de",
        "provider": SipProvider(
            transport="udp",
            codecs=["PCMU", "opus"],
            srtp=SrtpOptions(enabled="required", crypto_suites=["AEAD_AES_128_GCM"]),
            sip_uri="sip:bob@pbx.example.test",
            username="bob",
            password="hunter2-but-longer",
        ),
        "media": MediaOptions(app="bridge", bridge_url="wss://ai.example.test/stream"),
        "metadata": {"ref": "A-1", "nested": {"list": [1, 2.5, None, True]}, "ü": "ß"},
        "webhook_url": "https://hooks.example.test/sipua",
        "stream_token": new_token(),
        "created_at": T0,
    }
    data.update(changes)
    return Session(**data)


@pytest.fixture(params=["sqlite", "memory"])
def any_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionRepository]:
    repository: SessionRepository
    if request.param == "sqlite":
        repository = SqliteSessionRepository(tmp_path / "x.db")
    else:
        repository = MemorySessionRepository()
    yield repository
    repository.close()


# -- contract (both implementations) ----------------------------------------------------------


def test_implements_protocol(any_repo: SessionRepository) -> None:
    assert isinstance(any_repo, SessionRepository)


def test_create_then_get_round_trips_every_field(any_repo: SessionRepository) -> None:
    session = make_session()
    any_repo.create(session)
    loaded = any_repo.get(session.id)
    assert loaded == session
    assert loaded is not None and isinstance(loaded.provider, SipProvider)
    assert loaded.provider.password is not None
    assert loaded.provider.password.get_secret_value() == "hunter2-but-longer"
    assert loaded.created_at == T0 and loaded.created_at.tzinfo is not None


def test_minimal_session_round_trips(any_repo: SessionRepository) -> None:
    session = make_session(
        provider=None, target_language=None, metadata={}, webhook_url=None, media=MediaOptions()
    )
    any_repo.create(session)
    assert any_repo.get(session.id) == session


def test_get_unknown(any_repo: SessionRepository) -> None:
    assert any_repo.get(new_session_id()) is None


def test_duplicate_id_is_an_error(any_repo: SessionRepository) -> None:
    session = make_session()
    any_repo.create(session)
    with pytest.raises(StoreError):
        any_repo.create(session)


def test_list_is_keyset_paged_in_id_order(any_repo: SessionRepository) -> None:
    created = [make_session() for _ in range(7)]
    for session in reversed(created):  # insertion order must not matter
        any_repo.create(session)
    ids = [s.id for s in created]
    assert [s.id for s in any_repo.list(3)] == ids[:3]
    assert [s.id for s in any_repo.list(3, after=ids[2])] == ids[3:6]
    assert [s.id for s in any_repo.list(3, after=ids[5])] == ids[6:]
    assert list(any_repo.list(3, after=ids[6])) == []
    assert list(any_repo.list(0)) == []


def test_list_filters_by_status(any_repo: SessionRepository) -> None:
    sessions = [make_session() for _ in range(4)]
    for s in sessions:
        any_repo.create(s)
    any_repo.set_status(sessions[1].id, SessionStatus.ENDED, T0)
    any_repo.set_status(sessions[3].id, SessionStatus.ENDED, T0)
    active = [s.id for s in any_repo.list(10, status=SessionStatus.ACTIVE)]
    ended = [s.id for s in any_repo.list(10, status=SessionStatus.ENDED)]
    assert active == [sessions[0].id, sessions[2].id]
    assert ended == [sessions[1].id, sessions[3].id]
    assert [s.id for s in any_repo.list(10, after=sessions[0].id, status=SessionStatus.ACTIVE)] == [
        sessions[2].id
    ]


def test_set_status(any_repo: SessionRepository) -> None:
    session = make_session()
    any_repo.create(session)
    ended_at = T0 + timedelta(minutes=5)
    updated = any_repo.set_status(session.id, SessionStatus.ENDED, ended_at)
    assert updated is not None
    assert (updated.status, updated.ended_at) == (SessionStatus.ENDED, ended_at)
    assert not updated.accepting_calls
    assert any_repo.get(session.id) == updated
    assert any_repo.set_status(new_session_id(), SessionStatus.ENDED, ended_at) is None


def test_update_replaces_the_row(any_repo: SessionRepository) -> None:
    session = make_session()
    any_repo.create(session)
    changed = session.model_copy(update={"metadata": {"x": 2}, "webhook_url": None})
    any_repo.update(changed)
    assert any_repo.get(session.id) == changed
    with pytest.raises(StoreError):
        any_repo.update(make_session())


def test_closed_store_raises(any_repo: SessionRepository) -> None:
    any_repo.close()
    any_repo.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        any_repo.get(new_session_id())


# -- SQLite specifics -------------------------------------------------------------------------


def test_survives_restart(data_dir: Path) -> None:
    session = make_session()
    first = open_repository(data_dir)
    first.create(session)
    first.set_status(session.id, SessionStatus.ENDED, T0)
    first.close()
    second = open_repository(data_dir)
    try:
        loaded = second.get(session.id)
        assert loaded is not None
        assert loaded.status is SessionStatus.ENDED
        assert loaded.metadata == session.metadata
        assert loaded.stream_token == session.stream_token
    finally:
        second.close()


def test_file_layout_and_pragmas(data_dir: Path) -> None:
    repo = open_repository(data_dir)
    repo.create(make_session())
    repo.close()
    db = data_dir / DB_FILENAME
    assert db.is_file()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        # JSON columns hold JSON text, and the password is stored (the API masks it).
        provider, metadata = conn.execute("SELECT provider, metadata FROM sessions").fetchone()
        assert '"password":"hunter2-but-longer"' in provider
        assert metadata.startswith("{")
    finally:
        conn.close()


def test_synchronous_normal(tmp_path: Path) -> None:
    repo = SqliteSessionRepository(tmp_path / "x.db")
    try:
        conn = repo._conn  # the pragma is per connection
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        repo.close()


def test_reopen_does_not_rerun_migrations(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    for _ in range(3):
        SqliteSessionRepository(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    SqliteSessionRepository(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this sipua supports"):
        SqliteSessionRepository(path)


def test_unreadable_row_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    repo = SqliteSessionRepository(path)
    session = make_session()
    repo.create(session)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET media = 'not json' WHERE id = ?", (session.id,))
    conn.commit()
    conn.close()
    try:
        with pytest.raises(StoreError, match="unreadable"):
            repo.get(session.id)
    finally:
        repo.close()


def test_unopenable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        open_repository(blocker / "sub")
