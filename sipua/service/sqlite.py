"""One SQLite connection to the sessions database, shared by the stores built on it.

The session repository (``store.py``) creates the file and runs every schema migration; the
event log and the credential store open their own connection to the same file through
:class:`Database`: autocommit with explicit transactions, ``synchronous=NORMAL``, a busy timeout
for other processes' writers, one lock so any thread may use it, and every SQLite error turned
into a :class:`~sipua.service.store.StoreError` naming the store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .store import SqliteSessionRepository, StoreError

T = TypeVar("T")


class Database:
    def __init__(
        self,
        path: Path | str,
        what: str,
        *,
        busy_timeout: float = 5.0,
        conflict: type[Exception] = StoreError,
    ) -> None:
        self.path = Path(path)
        self.what = what  # "event log", "credential store": for error messages
        self.conflict = conflict  # raised for constraint violations
        # Opening the session repository creates the file and runs (or checks) the migrations.
        SqliteSessionRepository(self.path, busy_timeout=busy_timeout).close()
        self.lock = threading.Lock()
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {what} {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.what} is closed")
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement; call with :attr:`lock` held."""
        try:
            return self._connection().execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise self.conflict(f"{self.what} constraint failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{self.what} error: {exc}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        try:
            return self._connection().executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise self.conflict(f"{self.what} constraint failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{self.what} error: {exc}") from exc

    def transaction(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one write transaction (taking the lock), rolled back if it raises."""
        with self.lock:
            self.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self.execute("COMMIT")
                return result
            except BaseException:
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
