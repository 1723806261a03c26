"""RTP/RTCP UDP port pairs.

RFC 3550 §11: RTP uses an even port and RTCP the next (odd) one. The allocator
binds both sockets before handing the pair out, so the port in our SDP answer
is already ours. Ports are handed out round-robin from a cursor, so a port just
released is not reused at once (late packets of the previous call would land
in the next one).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
from dataclasses import dataclass, field

from sipua.socket_buffers import RECEIVE_BUFFER, enlarge_receive_buffer

logger = logging.getLogger(__name__)


class PortsExhausted(OSError):
    """No free even/odd port pair in the configured range."""


def _family_of(host: str) -> socket.AddressFamily:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as exc:
        raise ValueError(f"media host must be an IP literal, not {host!r}") from exc
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


@dataclass(eq=False)
class PortPair:
    """Two bound, non-blocking UDP sockets: ``rtp_port`` (even) and ``rtp_port + 1``."""

    host: str
    rtp_port: int
    rtp_socket: socket.socket
    rtcp_socket: socket.socket
    receive_buffer: int
    _allocator: PortAllocator | None = field(default=None, repr=False)
    closed: bool = False

    @property
    def rtcp_port(self) -> int:
        return self.rtp_port + 1

    @property
    def family(self) -> socket.AddressFamily:
        return self.rtp_socket.family

    def close(self) -> None:
        """Close both sockets (if still open) and give the ports back. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.rtp_socket.close()
        self.rtcp_socket.close()
        if self._allocator is not None:
            self._allocator._release(self.rtp_port)


class PortAllocator:
    """Hands out RTP/RTCP port pairs in ``[min_port, max_port]`` on ``host``."""

    def __init__(
        self,
        host: str,
        min_port: int = 10000,
        max_port: int = 20000,
        *,
        receive_buffer: int | None = RECEIVE_BUFFER,
    ) -> None:
        if min_port % 2:
            min_port += 1
        if not 0 < min_port < max_port <= 65535:
            raise ValueError(f"bad RTP port range {min_port}-{max_port}")
        self.host = host
        self.family = _family_of(host)
        self.min_port = min_port
        self.max_port = max_port
        self.receive_buffer = receive_buffer
        self._pairs = (max_port - min_port + 1) // 2  # even ports p with p + 1 <= max_port
        if self._pairs < 1:
            raise ValueError(f"RTP port range {min_port}-{max_port} holds no even/odd pair")
        self._cursor = random.randrange(self._pairs)
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def capacity(self) -> int:
        return self._pairs

    def allocate(self) -> PortPair:
        """Bind and return the next free pair; raise :class:`PortsExhausted` if none.

        The search is bounded by the size of the range: each even port is tried
        at most once per call.
        """
        for _ in range(self._pairs):
            port = self.min_port + 2 * self._cursor
            self._cursor = (self._cursor + 1) % self._pairs
            if port in self._in_use:
                continue
            pair = self._try_bind(port)
            if pair is not None:
                self._in_use.add(port)
                return pair
        raise PortsExhausted(
            errno.EADDRINUSE, f"no free RTP port pair in {self.min_port}-{self.max_port}"
        )

    def _try_bind(self, port: int) -> PortPair | None:
        sockets: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(self.family, socket.SOCK_DGRAM)
                sockets.append(sock)
                if self.family == socket.AF_INET6:
                    # Accept IPv4 peers too when bound to "::".
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind((self.host, p))
                sock.setblocking(False)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        if self.receive_buffer is None:
            granted = 0  # the kernel's default, not asked for (ports held, never read)
        else:
            granted = enlarge_receive_buffer(sockets[0], self.receive_buffer)
            enlarge_receive_buffer(sockets[1], 256 * 1024)
        return PortPair(
            host=self.host,
            rtp_port=port,
            rtp_socket=sockets[0],
            rtcp_socket=sockets[1],
            receive_buffer=granted,
            _allocator=self,
        )

    def _release(self, port: int) -> None:
        self._in_use.discard(port)
