"""Credential storage: SQLite table (migration 3), the in-memory directory, the nonce secret file."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from sipua.service.config import load_settings
from sipua.service.credentials_store import (
    CredentialConflict,
    CredentialDirectory,
    MemoryCredentialStore,
    SqliteCredentialStore,
    ensure_digest_secret,
    hash_password,
    open_credential_store,
)
from sipua.service.security_setup import build_security, configured_credentials
from sipua.service.store import SCHEMA_VERSION, StoreError
from sipua.sip.credentials import ha1


def test_password_becomes_ha1_per_algorithm_and_is_not_stored(tmp_path):
    store = open_credential_store(tmp_path)
    directory = CredentialDirectory(store, default_realm="sipua")
    cred = directory.create("pbx", "s3cret-pass", allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    assert cred.ha1["MD5"] == ha1("pbx", "sipua", "s3cret-pass", "MD5")
    assert cred.ha1["SHA-256"] == ha1("pbx", "sipua", "s3cret-pass", "SHA-256")
    store.close()
    raw = (tmp_path / "sipua.db").read_bytes()
    wal = tmp_path / "sipua.db-wal"
    if wal.exists():
        raw += wal.read_bytes()
    assert b"s3cret-pass" not in raw
    assert cred.ha1["MD5"].encode() in raw


def test_credentials_survive_a_reopen_and_can_be_deleted(tmp_path):
    store = open_credential_store(tmp_path)
    directory = CredentialDirectory(store, default_realm="sipua")
    cred = directory.create("pbx", "pw-123456", allowed_ips=["192.0.2.1"], organization="acme")
    store.close()

    store = open_credential_store(tmp_path)
    reopened = CredentialDirectory(store, default_realm="sipua")
    record = reopened.find("pbx", "sipua")
    assert record is not None and record.organization == "acme"
    assert record.allows_address("192.0.2.1") and not record.allows_address("192.0.2.2")
    assert reopened.get(cred.id).allowed_ips == ("192.0.2.1/32",)
    assert reopened.delete(cred.id) is True
    assert reopened.find("pbx", "sipua") is None and reopened.delete(cred.id) is False
    store.close()
    store = open_credential_store(tmp_path)
    assert store.list() == []
    store.close()


def test_schema_has_the_credentials_table(tmp_path):
    open_credential_store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "sipua.db")
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sip_credentials)")}
    finally:
        conn.close()
    assert {"username", "realm", "ha1_md5", "ha1_sha256", "allowed_ips"} <= columns
    assert not any("password" in c for c in columns)


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_username_is_unique_per_realm(tmp_path, store_kind):
    store = (
        MemoryCredentialStore()
        if store_kind == "memory"
        else SqliteCredentialStore(tmp_path / "db")
    )
    directory = CredentialDirectory(store, default_realm="sipua")
    directory.create("pbx", "password-1")
    with pytest.raises(CredentialConflict):
        directory.create("pbx", "password-2")
    directory.create("pbx", "password-3", realm="other")  # another realm is another user
    assert len(directory) == 2
    store.close()


def test_bad_network_is_refused():
    directory = CredentialDirectory(MemoryCredentialStore(), default_realm="sipua")
    with pytest.raises(ValueError):
        directory.create("pbx", "password-1", allowed_ips=["10.0.0.300/8"])
    assert len(directory) == 0


def test_configured_users_are_read_only_and_take_ha1_or_password():
    settings = load_settings(
        security={
            "realm": "edge",
            "users": [
                {"username": "a", "password": "pa55word"},
                {"username": "b", "ha1_md5": "0" * 32, "allowed_ips": ["10.0.0.0/8"]},
            ],
        }
    )
    configured = configured_credentials(settings.security)
    assert configured[0].ha1["SHA-256"] == ha1("a", "edge", "pa55word", "SHA-256")
    assert configured[1].ha1 == {"MD5": "0" * 32}
    directory = CredentialDirectory(
        MemoryCredentialStore(), default_realm="edge", configured=configured
    )
    assert directory.find("b", "edge").allows_address("10.1.2.3")
    with pytest.raises(ValueError):
        directory.delete(configured[0].id)
    with pytest.raises(CredentialConflict):
        directory.create("a", "another-password")


def test_digest_secret_is_private_and_stable(tmp_path):
    first = ensure_digest_secret(tmp_path)
    path = tmp_path / "digest_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert ensure_digest_secret(tmp_path) == first
    os.chmod(path, 0o644)
    assert ensure_digest_secret(tmp_path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened again
    path.write_text("abcd\n")
    with pytest.raises(StoreError):
        ensure_digest_secret(tmp_path)


def test_nonces_survive_a_restart(tmp_path):
    """A challenge issued before a restart is answered after it (same secret on disk)."""
    from sipua.sip.auth import DigestServer

    settings = load_settings(data_dir=tmp_path, security={"auth": "required"})
    before = build_security(settings)
    nonce_issued = before.gate.digest.challenge("sipua", 1_800_000_000.0)[0]
    before.close()
    after = build_security(settings)
    after_server: DigestServer = after.gate.digest
    nonce = nonce_issued.split('nonce="')[1].split('"')[0]
    assert after_server._check_nonce(nonce, "sipua", False) is not None
    after.close()
    other = build_security(load_settings(data_dir=tmp_path / "elsewhere"))
    assert other.gate.digest._check_nonce(nonce, "sipua", False) is None
    other.close()


def test_hash_password_covers_every_supported_algorithm():
    hashed = hash_password("u", "r", "p")
    assert set(hashed) >= {"MD5", "SHA-256"}
    assert all(len(v) in (32, 64) for v in hashed.values())
