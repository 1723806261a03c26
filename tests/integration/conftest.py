"""Fixtures that run real ``sipua serve`` processes on ephemeral loopback ports.

Every service a test starts is stopped by the fixture that started it, and its
stderr is checked: a traceback or an ERROR line fails the test, since a bad
message must become a response, never a crash in a handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .service import (  # noqa: F401 - re-exported for the tests of this folder
    Service,
    StartService,
    assert_clean_stderr,
    isolate_home,
    serving,
    start_service,
)


@pytest.fixture(autouse=True)
def _isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_home(monkeypatch, tmp_path)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartService]:
    """``serve(*flags, env={...}, data_dir=..., api_key=None)`` starts a service (``api_key=None``:
    without SIPUA_API_KEY); all are stopped afterwards."""
    yield from serving(tmp_path)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service with default settings, shared by the tests of a module."""
    svc = start_service(tmp_path_factory.mktemp("serve") / "data")
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)
