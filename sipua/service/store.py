"""Session persistence: the :class:`SessionRepository` interface and its SQLite implementation.

The repository is deliberately small so a shared store (e.g. PostgreSQL, for several nodes
behind a SIP load balancer) can replace SQLite. It is synchronous: SQLite in WAL mode with
``synchronous=NORMAL`` commits without an fsync, so a write costs microseconds and runs inline
on the event loop. Callers that need O(1) reads on a hot path (the SIP stack on every INVITE)
go through :class:`sipua.service.sessions.SessionService`, which caches sessions in memory.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from sipua.service.models import Session, SessionStatus

__all__ = [
    "DB_FILENAME",
    "MemorySessionRepository",
    "SCHEMA_VERSION",
    "SessionRepository",
    "SqliteSessionRepository",
    "StoreError",
    "open_repository",
]

log = logging.getLogger(__name__)

DB_FILENAME = "sipua.db"


class StoreError(RuntimeError):
    """The store failed (I/O error, corrupt row, schema from a newer sipua, closed store)."""


@runtime_checkable
class SessionRepository(Protocol):
    """Where sessions live. Ids sort in creation order, which keyset paging relies on."""

    def create(self, session: Session) -> None:
        """Insert a new session; raises :class:`StoreError` if the id exists."""

    def get(self, session_id: str) -> Session | None:
        """The session with this exact id, or ``None``."""

    def list(
        self, limit: int, after: str | None = None, status: SessionStatus | None = None
    ) -> Sequence[Session]:
        """Up to ``limit`` sessions with ``id > after``, in id (= creation) order."""

    def update(self, session: Session) -> None:
        """Replace the stored session with the same id; raises :class:`StoreError` if absent."""

    def set_status(
        self, session_id: str, status: SessionStatus, ended_at: datetime | None
    ) -> Session | None:
        """Set status and end time; returns the updated session, ``None`` if the id is unknown."""

    def close(self) -> None:
        """Release resources; idempotent."""


# ---------------------------------------------------------------------------------------------
# Row <-> Session

_COLUMNS = (
    "id",
    "status",
    "mode",
    "source_language",
    "target_language",
    "provider",
    "media",
    "metadata",
    "webhook_url",
    "stream_token",
    "created_at",
    "ended_at",
    "webhook_secret",
)
_JSON_COLUMNS = frozenset({"provider", "media", "metadata"})
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM sessions"


def _to_row(session: Session) -> tuple[Any, ...]:
    # reveal_secrets: the store keeps the provider password; the API masks it.
    data = session.model_dump(mode="json", context={"reveal_secrets": True})
    for col in _JSON_COLUMNS:
        if data[col] is not None:
            data[col] = json.dumps(data[col], ensure_ascii=False, separators=(",", ":"))
    data["created_at"] = _iso(session.created_at)
    data["ended_at"] = _iso(session.ended_at)
    return tuple(data[col] for col in _COLUMNS)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_row(row: Sequence[Any]) -> Session:
    data = dict(zip(_COLUMNS, row, strict=True))
    try:
        for col in _JSON_COLUMNS:
            if data[col] is not None:
                data[col] = json.loads(data[col])
        return Session.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise StoreError(f"stored session {data.get('id')!r} is unreadable: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# SQLite

# Each entry migrates the schema from version i to i+1. Append; never edit a released entry.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sessions (
            id              TEXT PRIMARY KEY,
            status          TEXT NOT NULL CHECK (status IN ('active', 'ended')),
            mode            TEXT NOT NULL,
            source_language TEXT NOT NULL,
            target_language TEXT,
            provider        TEXT,           -- JSON object or NULL
            media           TEXT NOT NULL,  -- JSON object
            metadata        TEXT NOT NULL,  -- JSON object
            webhook_url     TEXT,
            stream_token    TEXT NOT NULL,
            created_at      TEXT NOT NULL,  -- ISO 8601, UTC
            ended_at        TEXT
        ) WITHOUT ROWID
        """,
        "CREATE INDEX sessions_status_id ON sessions (status, id)",
    ),
    # 2: webhook signing secrets and the event log (sipua.service.events_store).
    (
        "ALTER TABLE sessions ADD COLUMN webhook_secret TEXT",
        """
        CREATE TABLE events (
            id              TEXT PRIMARY KEY,   -- evt_<ULID>: sorts in creation order
            session_id      TEXT NOT NULL,
            type            TEXT NOT NULL,
            created_at      TEXT NOT NULL,      -- ISO 8601, UTC
            body            TEXT NOT NULL,      -- the JSON delivered, byte for byte
            delivery_status TEXT NOT NULL
                CHECK (delivery_status IN ('pending', 'delivered', 'failed', 'skipped')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            last_error      TEXT,
            delivered_at    TEXT
        ) WITHOUT ROWID
        """,
        "CREATE INDEX events_session_id ON events (session_id, id)",
        "CREATE INDEX events_pending ON events (delivery_status, id) "
        "WHERE delivery_status = 'pending'",
        """
        CREATE TABLE webhook_attempts (
            event_id    TEXT NOT NULL,
            attempt     INTEGER NOT NULL,
            url         TEXT NOT NULL,
            started_at  TEXT NOT NULL,
            duration_ms REAL NOT NULL,
            status_code INTEGER,
            error       TEXT,
            outcome     TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
            PRIMARY KEY (event_id, attempt)
        ) WITHOUT ROWID
        """,
    ),
    # 3: SIP digest credentials, HA1 per algorithm, never a password
    # (sipua.service.credentials_store).
    (
        """
        CREATE TABLE sip_credentials (
            id              TEXT PRIMARY KEY,   -- cred_<ULID>
            username        TEXT NOT NULL,
            realm           TEXT NOT NULL,
            ha1_md5         TEXT,               -- H(username:realm:password), hex
            ha1_sha256      TEXT,
            ha1_sha512_256  TEXT,
            allowed_ips     TEXT NOT NULL,      -- JSON list of CIDR networks; [] = any
            session_id      TEXT,               -- scope: only this session
            organization    TEXT,               -- scope: sessions with this metadata.organization
            created_at      TEXT NOT NULL,      -- ISO 8601, UTC
            UNIQUE (username, realm)
        ) WITHOUT ROWID
        """,
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqliteSessionRepository:
    """:class:`SessionRepository` on a SQLite file (WAL, ``synchronous=NORMAL``).

    One connection guarded by a lock, so it may be used from any thread. Other processes (e.g.
    a CLI reading sessions) may open the same file concurrently; writers wait up to
    ``busy_timeout`` seconds for each other.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                _create_private_file(self.path)
            conn = sqlite3.connect(
                str(self.path),
                isolation_level=None,  # autocommit; transactions are explicit below
                check_same_thread=False,
                timeout=busy_timeout,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open session store {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal" and str(path) != ":memory:":
                log.warning("SQLite WAL unavailable for %s (journal_mode=%s)", self.path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StoreError(f"cannot open session store {self.path}: {exc}") from exc
        except StoreError:
            conn.close()
            self._conn = None
            raise

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening a fresh file do
        # not both run the migrations.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"session store schema version {current} is newer than this sipua "
                    f"supports ({SCHEMA_VERSION}); upgrade sipua"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
                log.info("session store migrated to schema version %d", version + 1)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._conn is None:
            raise StoreError("session store is closed")
        try:
            return self._conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"session store constraint failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"session store error: {exc}") from exc

    def create(self, session: Session) -> None:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            self._execute(
                f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                _to_row(session),
            )

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            row = self._execute(f"{_SELECT} WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else _from_row(row)

    def list(
        self, limit: int, after: str | None = None, status: SessionStatus | None = None
    ) -> Sequence[Session]:
        if limit < 1:
            return []
        clauses, params = [], []
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._execute(
                f"{_SELECT}{where} ORDER BY id LIMIT ?", (*params, limit)
            ).fetchall()
        return [_from_row(row) for row in rows]

    def update(self, session: Session) -> None:
        row = _to_row(session)
        assignments = ", ".join(f"{col} = ?" for col in _COLUMNS[1:])
        with self._lock:
            cursor = self._execute(
                f"UPDATE sessions SET {assignments} WHERE id = ?", (*row[1:], row[0])
            )
        if cursor.rowcount == 0:
            raise StoreError(f"session {session.id} does not exist")

    def set_status(
        self, session_id: str, status: SessionStatus, ended_at: datetime | None
    ) -> Session | None:
        with self._lock:
            self._execute("BEGIN IMMEDIATE")
            try:
                cursor = self._execute(
                    "UPDATE sessions SET status = ?, ended_at = ? WHERE id = ?",
                    (status.value, _iso(ended_at), session_id),
                )
                row = (
                    self._execute(f"{_SELECT} WHERE id = ?", (session_id,)).fetchone()
                    if cursor.rowcount
                    else None
                )
                self._execute("COMMIT")
            except BaseException:
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        return None if row is None else _from_row(row)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _create_private_file(path: Path) -> None:
    """Create the database file owner-only (it holds stream tokens and SIP passwords)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_repository(data_dir: Path) -> SqliteSessionRepository:
    """The default store: ``<data_dir>/sipua.db``, created (owner-only) if missing."""
    return SqliteSessionRepository(Path(data_dir).expanduser() / DB_FILENAME)


# ---------------------------------------------------------------------------------------------
# In memory (tests, ephemeral deployments)


class MemorySessionRepository:
    """:class:`SessionRepository` in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreError("session store is closed")

    def create(self, session: Session) -> None:
        self._check()
        if session.id in self._sessions:
            raise StoreError(f"session {session.id} already exists")
        self._sessions[session.id] = session

    def get(self, session_id: str) -> Session | None:
        self._check()
        return self._sessions.get(session_id)

    def list(
        self, limit: int, after: str | None = None, status: SessionStatus | None = None
    ) -> Sequence[Session]:
        self._check()
        ids = sorted(
            sid
            for sid, s in self._sessions.items()
            if (after is None or sid > after) and (status is None or s.status is status)
        )
        return [self._sessions[sid] for sid in ids[: max(limit, 0)]]

    def update(self, session: Session) -> None:
        self._check()
        if session.id not in self._sessions:
            raise StoreError(f"session {session.id} does not exist")
        self._sessions[session.id] = session

    def set_status(
        self, session_id: str, status: SessionStatus, ended_at: datetime | None
    ) -> Session | None:
        self._check()
        session = self._sessions.get(session_id)
        if session is None:
            return None
        updated = session.model_copy(update={"status": status, "ended_at": ended_at})
        self._sessions[session_id] = updated
        return updated

    def close(self) -> None:
        self._closed = True
