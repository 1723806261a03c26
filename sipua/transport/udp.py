"""SIP over UDP (RFC 3261 §18): one datagram, one message."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from .peer import Peer

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 4 * 1024 * 1024


def enlarge_buffers(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Ask for ``size`` octets of receive and send buffer; return what the kernel granted."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass
        if hasattr(socket, "SO_RCVBUFFORCE") and opt == socket.SO_RCVBUF:
            # Root may exceed net.core.rmem_max.
            try:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUFFORCE, size)
            except OSError:
                pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class UdpListener(asyncio.DatagramProtocol):
    """A bound UDP socket; hands each datagram to ``on_datagram(data, peer)``."""

    def __init__(self, on_datagram: Callable[[bytes, Peer], None], max_size: int = 65535) -> None:
        self.on_datagram = on_datagram
        self.max_size = max_size
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("0.0.0.0", 0)
        self.receive_buffer = 0
        self.counters = {
            "datagrams_received": 0,
            "datagrams_sent": 0,
            "oversized": 0,
            "send_errors": 0,
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.local = sock.getsockname()[:2]
        self.receive_buffer = enlarge_buffers(sock)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.counters["datagrams_received"] += 1
        if len(data) > self.max_size:
            self.counters["oversized"] += 1
            return
        self.on_datagram(data, Peer("udp", addr[:2], local=self.local))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable …) from earlier sends; the transaction will time out.
        log.debug("udp error on %s: %s", self.local, exc)

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        try:
            transport.sendto(data, addr)
        except OSError as e:
            self.counters["send_errors"] += 1
            log.warning("udp send to %s failed: %s", addr, e)
            return False
        self.counters["datagrams_sent"] += 1
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp(
    host: str, port: int, on_datagram: Callable[[bytes, Peer], None], max_size: int = 65535
) -> UdpListener:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        enlarge_buffers(sock)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpListener(on_datagram, max_size), sock=sock
    )
    return protocol
