"""An in-process HTTP API with the stream endpoint, served by uvicorn on an ephemeral loopback port
in the test's event loop, with an event recorder and metrics (as ``sipua serve`` wires them).

Test modules get the ``server`` fixture through ``conftest.py`` (or by importing it)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from sipua.service.api import create_app
from sipua.service.config import Settings, load_settings
from sipua.service.events import EventPublisher, SessionEvent
from sipua.service.metrics import Metrics
from sipua.service.models import SessionCreate
from sipua.service.sessions import PublicEndpoints, SessionService
from sipua.service.store import open_repository

API_KEY = "stream-tests-key-0123456789"
WAIT = 5.0  # seconds any single expected thing may take on loopback


@dataclass
class StreamServer:
    settings: Settings
    sessions: SessionService
    app: Any
    port: int
    events: list[SessionEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def hub(self) -> Any:
        return self.app.state.streams

    def url(self, session_id: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/v1/streams/{session_id}" + (
            f"?{query}" if query else ""
        )

    def create(self, **body: Any) -> Any:
        body.setdefault("mode", "echo")
        return self.sessions.create(SessionCreate(**body))

    def record(self, event: SessionEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of_type(self, type_: str, session_id: str | None = None) -> list[SessionEvent]:
        return [
            e
            for e in self.events
            if e.type == type_ and (session_id is None or e.session_id == session_id)
        ]

    async def wait_event(
        self, predicate: Callable[[SessionEvent], bool], timeout: float = WAIT
    ) -> SessionEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=WAIT,
        )


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(None, data_dir=data_dir, public_host="127.0.0.1", **overrides)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override (e.g. ``@pytest.mark.parametrize("settings_overrides", [...])``) to change the
    server's settings."""
    return {}


@pytest.fixture
async def server(tmp_path: Path, settings_overrides: dict[str, Any]) -> AsyncIterator[StreamServer]:
    async with serving(tmp_path / "data", **settings_overrides) as srv:
        yield srv


@asynccontextmanager
async def serving(data_dir: Path, **settings_overrides: Any) -> AsyncIterator[StreamServer]:
    """The API with streams on 127.0.0.1 (ephemeral port) until the block ends."""
    settings = make_settings(data_dir, **settings_overrides)
    repo = open_repository(settings.data_dir)
    sessions = SessionService(repo, settings)
    app = create_app(settings, sessions, api_key=API_KEY)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    sessions.endpoints = PublicEndpoints.from_settings(settings, http_port=port)
    srv = StreamServer(settings, sessions, app, port)
    metrics = Metrics()
    publisher = EventPublisher([srv.record, metrics.observe_event])
    sessions.on_ended.append(publisher.on_session_ended)
    app.state.events = publisher
    app.state.metrics = metrics
    uv = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=2)
    )
    uv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(uv.serve(sockets=[sock]))
    async with asyncio.timeout(WAIT):
        while not uv.started:
            await asyncio.sleep(0.01)
    try:
        yield srv
    finally:
        await app.state.streams.close_all("test-end")
        uv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        sessions.close()


# -- client helpers ---------------------------------------------------------------------------------


async def recv_json(ws: Any, timeout: float = WAIT) -> dict[str, Any]:
    """The next text message, as JSON (binary messages are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                return json.loads(message)


async def closed_with(ws: Any, timeout: float = WAIT) -> tuple[int, str]:
    """Read until the server closes; returns its close code and reason."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None, "the connection dropped without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")
