"""Fixtures that run real ``sipua serve`` processes on ephemeral loopback ports.

Every service a test starts is stopped by the fixture that started it, and its
stderr is checked: a traceback or an ERROR line fails the test, since a bad
message must become a response, never a crash in a handler.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .service import Service, start_service

_FAULT = re.compile(r"Traceback \(most recent call last\)|^\S+ \S+ (ERROR|CRITICAL) ", re.M)


@pytest.fixture(autouse=True)
def _isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer SIPUA_* settings and no writes to the real home."""
    for name in list(os.environ):
        if name.upper().startswith("SIPUA_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))


def assert_clean_stderr(service: Service) -> None:
    text = service.stderr()
    match = _FAULT.search(text)
    assert match is None, f"sipua serve logged a fault:\n{text[max(0, match.start() - 2000) :]}"


StartService = Callable[..., Service]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartService]:
    """``serve(*flags, env={...}, data_dir=...)`` starts a service; all are stopped afterwards."""
    started: list[Service] = []

    def start(*flags: str, env: dict | None = None, data_dir: Path | None = None) -> Service:
        svc = start_service(data_dir or tmp_path / f"data{len(started)}", *flags, env=env)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()
    for svc in started:
        assert_clean_stderr(svc)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service with default settings, shared by the tests of a module."""
    svc = start_service(tmp_path_factory.mktemp("serve") / "data")
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)
