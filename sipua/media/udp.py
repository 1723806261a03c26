"""UDP I/O for media sockets: what a stream needs is ``sendto`` and a receive callback.

Two ways to get there, picked per event loop (measured with bench/media.py,
400 SRTP echo calls):

- :class:`ReaderEndpoint`: ``loop.add_reader`` plus our own non-blocking
  ``recvfrom`` loop that drains every queued datagram per wake-up. On the
  standard library's selector loop this is what keeps up: its datagram
  transports cost more per packet and fell behind (50 % loss) where the reader
  lost nothing.
- :class:`TransportEndpoint`: an asyncio datagram transport. uvloop implements
  these in C and they were ~15 % cheaper than the reader there; also the only
  option on loops without ``add_reader`` (the Windows proactor loop).

Media is loss-tolerant: the reader drops (and counts) a datagram the kernel
will not take right now (``EAGAIN``) rather than queue it behind later audio.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

Handler = Callable[[bytes, Any], None]

MAX_DATAGRAM = 2048
_DRAIN_LIMIT = 64  # datagrams per wake-up, so one busy socket cannot starve the loop


class TransportEndpoint(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, on_error: Callable[[], None]) -> None:
        self._handler = handler
        self._on_error = on_error
        self._transport: asyncio.DatagramTransport | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, sock: socket.socket, handler: Handler, on_error: Callable[[], None]
    ) -> TransportEndpoint:
        endpoint = cls(handler, on_error)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, reported for an earlier sendto.
        self._on_error()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    def sendto(self, data: bytes, addr: Any) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.sendto(data, addr)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            await asyncio.wait_for(asyncio.shield(self._closed), 1.0)


class ReaderEndpoint:
    def __init__(self, sock: socket.socket, handler: Handler, on_error: Callable[[], None]) -> None:
        self._sock = sock
        self._handler = handler
        self._on_error = on_error
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(self._fd, self._read_ready)

    @classmethod
    async def open(
        cls, sock: socket.socket, handler: Handler, on_error: Callable[[], None]
    ) -> ReaderEndpoint:
        return cls(sock, handler, on_error)

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        handler = self._handler
        for _ in range(_DRAIN_LIMIT):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Linux reports an earlier ICMP error on the next receive.
                self._on_error()
                if self._closed:
                    return
                continue
            handler(data, addr)

    def sendto(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError:  # EAGAIN: drop, do not queue media; or an ICMP error
            self._on_error()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            self._sock.close()


def prefers_reader(loop: asyncio.AbstractEventLoop) -> bool:
    """True for the standard library's selector loops (not uvloop, not the proactor)."""
    return isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)


async def open_endpoint(
    sock: socket.socket,
    handler: Handler,
    on_error: Callable[[], None],
    *,
    mode: str = "auto",
) -> TransportEndpoint | ReaderEndpoint:
    """Start receiving on ``sock``; ``mode`` is "auto", "reader" or "transport".

    "auto" takes the reader on the standard library's selector loop and the
    transport elsewhere (uvloop's C transports; the Windows proactor loop).
    """
    if mode == "auto":
        mode = "reader" if prefers_reader(asyncio.get_running_loop()) else "transport"
    if mode == "reader":
        return await ReaderEndpoint.open(sock, handler, on_error)
    if mode == "transport":
        return await TransportEndpoint.open(sock, handler, on_error)
    raise ValueError(f"unknown UDP mode {mode!r}")
