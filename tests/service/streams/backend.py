"""A customer backend for bridge tests: a ``websockets`` server on 127.0.0.1 that speaks Twilio
Media Streams as the server side (what a Pipecat or Vocode app does), records what it receives
and runs a per-test script on each connection."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

WAIT = 10.0


@dataclass
class Connection:
    """One WebSocket the bridge opened, and what came over it."""

    ws: ServerConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stream_sid(self) -> str:
        return self.start["streamSid"]

    @property
    def start(self) -> dict[str, Any]:
        return next(m for m in self.messages if m.get("event") == "start")

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == event]

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(m["media"]["payload"]) for m in self.of("media"))

    async def wait_for(
        self, predicate: Callable[[Connection], bool], timeout: float = WAIT
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def send_media(self, payload: bytes) -> None:
        await self.send(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {"payload": base64.b64encode(payload).decode("ascii")},
            }
        )

    async def send_mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def send_clear(self) -> None:
        await self.send({"event": "clear", "streamSid": self.stream_sid})


Script = Callable[[Connection], Awaitable[None]]


@dataclass
class Backend:
    url: str
    connections: list[Connection] = field(default_factory=list)
    script: Script | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def connection(self, index: int = 0, timeout: float = WAIT) -> Connection:
        async with asyncio.timeout(timeout):
            while len(self.connections) <= index:
                self.arrived.clear()
                await self.arrived.wait()
        return self.connections[index]


@asynccontextmanager
async def backend(path: str = "/agent?key=secret-in-query") -> AsyncIterator[Backend]:
    state = Backend(url="")

    async def handler(ws: ServerConnection) -> None:
        conn = Connection(ws)
        state.connections.append(conn)
        state.arrived.set()
        script_task = None
        try:
            async for raw in ws:
                conn.messages.append(json.loads(raw))
                conn.changed.set()
                if script_task is None and state.script is not None and conn.of("start"):
                    script_task = asyncio.ensure_future(state.script(conn))
        except Exception:  # noqa: BLE001 - the bridge may drop the line: that is a test case
            pass
        finally:
            conn.closed.set()
            conn.changed.set()
            if script_task is not None and not script_task.done():
                script_task.cancel()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}{path}"
        yield state
