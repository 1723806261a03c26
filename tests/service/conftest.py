"""Shared fixtures: an environment without SIPUA_* variables and settings on a temp data dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipua.service.config import Settings, load_settings
from sipua.service.sessions import SessionService
from sipua.service.store import SqliteSessionRepository, open_repository


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests must not see the developer's SIPUA_* variables or write to the real home."""
    for name in list(os.environ):
        if name.upper().startswith("SIPUA_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return load_settings(None, data_dir=data_dir, public_host="sip.example.test")


@pytest.fixture
def repo(data_dir: Path) -> Iterator[SqliteSessionRepository]:
    repository = open_repository(data_dir)
    yield repository
    repository.close()


@pytest.fixture
def service(repo: SqliteSessionRepository, settings: Settings) -> SessionService:
    return SessionService(repo, settings)
