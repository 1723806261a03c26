"""SIP digest credentials: storage (SQLite, schema migration 3) and the in-memory directory.

A credential is a username, a realm and its HA1 values, H(username:realm:password)
for MD5, SHA-256 and SHA-512-256 (RFC 7616 §3.4.2, RFC 8760): the password itself
is hashed once, when the credential is made, and never stored. Each credential
may be limited to source networks and scoped to one session or organization.

:class:`CredentialDirectory` is what the SIP security gate asks (``find``) on every
authenticated request. It keeps every credential in memory, write-through to the
store, so a lookup never touches the disk: a user that does not exist costs the
same time as one that does, and the answer time tells nothing about which
usernames exist. Credentials from the configuration file sit beside the stored
ones and are read-only.

:func:`ensure_digest_secret` keeps the key of the stateless digest nonces in
``<data_dir>/digest_secret`` (mode 0600), so nonces issued before a restart
still verify after it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sipua.service.ids import UlidGenerator
from sipua.service.sqlite import Database
from sipua.service.store import DB_FILENAME, StoreError
from sipua.sip.credentials import ALGORITHMS, get_algorithm, ha1
from sipua.ua.authgate import CredentialRecord
from sipua.ua.netlist import AddressList

__all__ = [
    "DIGEST_SECRET_FILENAME",
    "HA1_COLUMNS",
    "CredentialConflict",
    "CredentialDirectory",
    "CredentialStore",
    "MemoryCredentialStore",
    "SqliteCredentialStore",
    "StoredCredential",
    "ensure_digest_secret",
    "hash_password",
    "new_credential_id",
    "open_credential_store",
]

log = logging.getLogger(__name__)

DIGEST_SECRET_FILENAME = "digest_secret"
CREDENTIAL_ID_PREFIX = "cred_"
# Base algorithm name -> column; an algorithm hashlib lacks simply has no HA1.
HA1_COLUMNS: Mapping[str, str] = {
    "MD5": "ha1_md5",
    "SHA-256": "ha1_sha256",
    "SHA-512-256": "ha1_sha512_256",
}
_ids = UlidGenerator()


def new_credential_id() -> str:
    return CREDENTIAL_ID_PREFIX + _ids.new()


class CredentialConflict(StoreError):
    """A credential with this username already exists in this realm."""


def hash_password(username: str, realm: str, password: str) -> dict[str, str]:
    """HA1 for every supported base algorithm; the password goes no further."""
    out: dict[str, str] = {}
    for name in HA1_COLUMNS:
        algorithm = get_algorithm(name)
        if algorithm is not None and name.upper() in ALGORITHMS:
            out[name] = ha1(username, realm, password, algorithm)
    return out


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A credential as stored and listed: everything but a password (there is none)."""

    id: str
    username: str
    realm: str
    ha1: Mapping[str, str]
    allowed_ips: tuple[str, ...] = ()
    session_id: str | None = None
    organization: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = "api"  # "api" (stored, deletable) or "config" (from the settings)

    def record(self) -> CredentialRecord:
        return CredentialRecord(
            username=self.username,
            realm=self.realm,
            ha1=dict(self.ha1),
            allowed=AddressList(self.allowed_ips),
            session_id=self.session_id,
            organization=self.organization,
            id=self.id,
            source=self.source,
        )


class CredentialStore(Protocol):
    def add(self, credential: StoredCredential) -> None:
        """Insert; raises :class:`CredentialConflict` if (username, realm) or the id exists."""

    def list(self) -> Sequence[StoredCredential]:
        """Every stored credential, oldest first."""

    def delete(self, credential_id: str) -> bool:
        """Remove one; False when there was none with this id."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# SQLite

_COLUMNS = (
    "id",
    "username",
    "realm",
    *HA1_COLUMNS.values(),
    "allowed_ips",
    "session_id",
    "organization",
    "created_at",
)


def _to_row(credential: StoredCredential) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "id": credential.id,
        "username": credential.username,
        "realm": credential.realm,
        "allowed_ips": json.dumps(list(credential.allowed_ips)),
        "session_id": credential.session_id,
        "organization": credential.organization,
        "created_at": credential.created_at.astimezone(UTC).isoformat(),
    }
    for name, column in HA1_COLUMNS.items():
        values[column] = credential.ha1.get(name)
    return tuple(values[c] for c in _COLUMNS)


def _from_row(row: Sequence[Any]) -> StoredCredential:
    data = dict(zip(_COLUMNS, row, strict=True))
    try:
        allowed = json.loads(data["allowed_ips"])
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise ValueError("allowed_ips is not a list of strings")
        return StoredCredential(
            id=data["id"],
            username=data["username"],
            realm=data["realm"],
            ha1={name: data[col] for name, col in HA1_COLUMNS.items() if data[col]},
            allowed_ips=tuple(allowed),
            session_id=data["session_id"],
            organization=data["organization"],
            created_at=datetime.fromisoformat(data["created_at"]),
            source="api",
        )
    except (ValueError, TypeError) as exc:
        raise StoreError(f"stored credential {data.get('id')!r} is unreadable: {exc}") from exc


class SqliteCredentialStore:
    """:class:`CredentialStore` in the ``sip_credentials`` table of the sessions database."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._db = Database(
            self.path, "credential store", busy_timeout=busy_timeout, conflict=CredentialConflict
        )
        self._lock = self._db.lock
        self._execute = self._db.execute

    def add(self, credential: StoredCredential) -> None:
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            self._execute(
                f"INSERT INTO sip_credentials ({', '.join(_COLUMNS)}) VALUES ({marks})",
                _to_row(credential),
            )

    def list(self) -> Sequence[StoredCredential]:
        with self._lock:
            rows = self._execute(
                f"SELECT {', '.join(_COLUMNS)} FROM sip_credentials ORDER BY id"
            ).fetchall()
        return [_from_row(r) for r in rows]

    def delete(self, credential_id: str) -> bool:
        with self._lock:
            cursor = self._execute("DELETE FROM sip_credentials WHERE id = ?", (credential_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        self._db.close()


def open_credential_store(data_dir: Path) -> SqliteCredentialStore:
    """The default store: the ``sip_credentials`` table in ``<data_dir>/sipua.db``."""
    return SqliteCredentialStore(Path(data_dir).expanduser() / DB_FILENAME)


class MemoryCredentialStore:
    """:class:`CredentialStore` in a dict (tests)."""

    def __init__(self) -> None:
        self._items: dict[str, StoredCredential] = {}

    def add(self, credential: StoredCredential) -> None:
        for existing in self._items.values():
            if (existing.username, existing.realm) == (credential.username, credential.realm):
                raise CredentialConflict("credential exists")
        if credential.id in self._items:
            raise CredentialConflict("credential id exists")
        self._items[credential.id] = credential

    def list(self) -> Sequence[StoredCredential]:
        return sorted(self._items.values(), key=lambda c: c.id)

    def delete(self, credential_id: str) -> bool:
        return self._items.pop(credential_id, None) is not None

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# The directory the gate asks


class CredentialDirectory:
    """Every credential in memory (config ones first), write-through to ``store``.

    Implements :class:`sipua.ua.authgate.CredentialLookup`. Call from the event
    loop's thread only.
    """

    def __init__(
        self,
        store: CredentialStore | None,
        *,
        default_realm: str,
        configured: Iterable[StoredCredential] = (),
    ) -> None:
        self.store = store
        self.default_realm = default_realm
        self._by_key: dict[tuple[str, str], StoredCredential] = {}
        self._by_id: dict[str, StoredCredential] = {}
        # Records are built once, at indexing: find() costs the same for every username.
        self._records: dict[tuple[str, str], CredentialRecord] = {}
        for credential in configured:
            self._index(replace(credential, source="config"))
        if store is not None:
            for credential in store.list():
                key = (credential.username, credential.realm)
                if key in self._by_key:
                    log.warning(
                        "stored SIP credential %s is shadowed by the configured user %r",
                        credential.id,
                        credential.username,
                    )
                    continue
                self._index(credential)

    def _index(self, credential: StoredCredential) -> None:
        self._by_key[(credential.username, credential.realm)] = credential
        self._by_id[credential.id] = credential
        self._records[(credential.username, credential.realm)] = credential.record()

    def __len__(self) -> int:
        return len(self._by_id)

    # -- the gate's view ---------------------------------------------------------------

    def find(self, username: str, realm: str) -> CredentialRecord | None:
        return self._records.get((username, realm))

    # -- the API's view ----------------------------------------------------------------

    def list(self) -> list[StoredCredential]:
        return sorted(self._by_id.values(), key=lambda c: (c.source != "config", c.id))

    def get(self, credential_id: str) -> StoredCredential | None:
        return self._by_id.get(credential_id)

    def create(
        self,
        username: str,
        password: str,
        *,
        realm: str | None = None,
        allowed_ips: Sequence[str] = (),
        session_id: str | None = None,
        organization: str | None = None,
    ) -> StoredCredential:
        """Hash ``password`` into HA1 values, store and index the credential."""
        if self.store is None:
            raise StoreError("no credential store")
        realm = realm or self.default_realm
        if (username, realm) in self._by_key:
            raise CredentialConflict(f"a credential for {username!r} in realm {realm!r} exists")
        allowed = AddressList(allowed_ips)  # raises ValueError on a bad network
        credential = StoredCredential(
            id=new_credential_id(),
            username=username,
            realm=realm,
            ha1=hash_password(username, realm, password),
            allowed_ips=tuple(allowed.as_strings()),
            session_id=session_id,
            organization=organization,
            created_at=datetime.now(UTC),
            source="api",
        )
        self.store.add(credential)
        self._index(credential)
        log.info("SIP credential %s created for user %r", credential.id, username)
        return credential

    def delete(self, credential_id: str) -> bool:
        """Delete a stored credential; raises ValueError for one from the configuration."""
        credential = self._by_id.get(credential_id)
        if credential is None:
            return False
        if credential.source == "config":
            raise ValueError("credentials from the configuration file cannot be deleted here")
        if self.store is not None:
            self.store.delete(credential_id)
        del self._by_id[credential_id]
        key = (credential.username, credential.realm)
        self._by_key.pop(key, None)
        self._records.pop(key, None)
        log.info("SIP credential %s deleted", credential_id)
        return True


# ---------------------------------------------------------------------------------------------
# The nonce secret


def ensure_digest_secret(data_dir: Path) -> bytes:
    """The digest nonce key in ``<data_dir>/digest_secret``, made (mode 0600) on first use.

    32 random octets, stored as hex. Every node behind one SIP load balancer
    needs the same file for nonces issued by one to verify on another.
    """
    data_dir = Path(data_dir).expanduser()
    path = data_dir / DIGEST_SECRET_FILENAME
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = data_dir / f".{DIGEST_SECRET_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if a concurrent starter made it first: theirs wins
            except FileExistsError:
                pass
            except OSError:
                if not path.exists():
                    os.rename(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"cannot read the digest secret {path}: {exc}") from exc
    if len(secret) < 16:
        raise StoreError(f"the digest secret in {path} is shorter than 16 octets")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("digest secret %s was readable by other users; made it 0600", path)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
    return secret
