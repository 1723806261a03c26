"""Transports on 127.0.0.1 with recording callbacks, and a small asyncio stream peer."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from integration.sipclient import SipMessage, frame, parse

from sipua.sip.framer import MalformedMessage
from sipua.sip.message import Request, Response
from sipua.transport.manager import ListenConfig, TransportManager
from sipua.transport.peer import Peer


@dataclass
class Recorder:
    """What a :class:`TransportManager` handed up, with a way to await the next one."""

    messages: list[tuple[Request | Response, Peer]] = field(default_factory=list)
    malformed: list[tuple[bytes, Peer, MalformedMessage | None]] = field(default_factory=list)
    datagrams: list[tuple[bytes, Peer]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, message: Request | Response, peer: Peer) -> None:
        self.messages.append((message, peer))
        self._changed.set()

    def on_malformed(self, data: bytes, peer: Peer, event: MalformedMessage | None) -> None:
        self.malformed.append((data, peer, event))
        self._changed.set()

    def on_datagram(self, data: bytes, peer: Peer) -> None:
        self.datagrams.append((data, peer))
        self._changed.set()

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 3.0) -> Any:
        async def until() -> Any:
            while True:
                result = condition()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), timeout)


MakeManager = Callable[..., Awaitable[tuple[TransportManager, Recorder]]]


@pytest.fixture
async def make_manager() -> AsyncIterator[MakeManager]:
    """``await make_manager(**ListenConfig fields)``: a started manager on 127.0.0.1, closed after."""
    started: list[TransportManager] = []

    async def make(**config: Any) -> tuple[TransportManager, Recorder]:
        config.setdefault("udp_port", 0)
        config.setdefault("tcp_port", 0)
        config.setdefault("tls_port", None)
        rec = Recorder()
        manager = TransportManager(
            ListenConfig(host="127.0.0.1", **config),
            rec.on_datagram,
            rec.on_message,
            rec.on_malformed,
        )
        await manager.start()
        started.append(manager)
        return manager, rec

    yield make
    for manager in started:
        await manager.close()


class StreamPeer:
    """A TCP/TLS client speaking SIP to a listener through asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.local: tuple[str, int] = writer.get_extra_info("sockname")[:2]

    @classmethod
    async def connect(cls, port: int, ssl_context: ssl.SSLContext | None = None) -> StreamPeer:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ssl_context), 5.0
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_some(self, timeout: float = 3.0) -> bytes:
        """The next bytes the server sends; b"" when it closed the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionResetError:
            return b""

    async def recv(self, timeout: float = 3.0) -> SipMessage:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = frame(self.buffer)
            if data is not None:
                return parse(data)
            chunk = await self.read_some(max(0.0, deadline - loop.time()))
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        """Whether the server closes the connection within ``timeout`` (data is discarded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                chunk = await self.read_some(deadline - loop.time())
            except TimeoutError:
                return False
            if not chunk:
                return True
        return False

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
