"""SIP over TCP and TLS (RFC 3261 §18.3): connections, framing, limits, idle timeout."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from sipua.sip.errors import ParseError
from sipua.sip.framer import (
    NEED_DATA,
    KeepAliveReceived,
    MalformedMessage,
    MessageFramed,
    StreamFramer,
)
from sipua.sip.message import Request, Response
from sipua.socket_buffers import enlarge_receive_buffer

from .peer import Peer

log = logging.getLogger(__name__)

# Addresses whose TLS server name is remembered; outbound calls add one per DNS target.
MAX_SERVER_NAMES = 4096

MessageHandler = Callable[[Request | Response, Peer], None]
MalformedHandler = Callable[[MalformedMessage, Peer], None]


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection carrying SIP messages both ways."""

    def __init__(self, pool: ConnectionPool, transport_name: str, outbound: bool = False) -> None:
        self.pool = pool
        self.transport_name = transport_name
        self.outbound = outbound
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.framer = StreamFramer(
            max_header_size=pool.max_header_size,
            max_body_size=pool.max_message_size,
        )
        self.peer: Peer | None = None
        self.last_activity = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.remote = transport.get_extra_info("peername")[:2]
        self.local = transport.get_extra_info("sockname")[:2]
        self.peer = Peer(self.transport_name, self.remote, self, local=self.local)
        if not self.pool.admit(self):
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Accepted connections inherit the listener's buffer on Linux; outbound ones
            # (and other kernels) are asked here.
            enlarge_receive_buffer(sock)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        framer = self.framer
        try:
            framer.receive_data(data)
            while True:
                event = framer.next_event()
                if event is NEED_DATA:
                    return
                if isinstance(event, MessageFramed):
                    self.pool.on_message(event.message, self.peer)  # type: ignore[arg-type]
                elif isinstance(event, MalformedMessage):
                    self.pool.on_malformed(event, self.peer)  # type: ignore[arg-type]
                elif isinstance(event, KeepAliveReceived):
                    # RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                    self.write(b"\r\n")
        except ParseError as e:
            # RFC 3261 §18.3: the framing is lost; nothing more on this connection can be trusted.
            self.pool.counters["framing_errors"] += 1
            log.info(
                "closing %s connection from %s: %s", self.transport_name, self.remote, e.detail
            )
            self.close()

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        self.last_activity = time.monotonic()
        return True

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        if not self.closed.done():
            self.closed.set_result(None)


class ConnectionPool:
    """Every TCP/TLS connection, inbound and outbound, found by (transport, remote address)."""

    def __init__(
        self,
        on_message: MessageHandler,
        on_malformed: MalformedHandler,
        *,
        max_message_size: int = 65535,
        max_header_size: int = 16384,
        max_connections_per_peer: int = 64,
        max_connections: int = 10000,
        idle_timeout: float = 300.0,
        client_ssl: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        admit_address: Callable[[str], bool] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_malformed = on_malformed
        self.max_message_size = max_message_size
        self.max_header_size = max_header_size
        self.max_connections_per_peer = max_connections_per_peer
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.client_ssl = client_ssl
        self.connect_timeout = connect_timeout
        self.admit_address = admit_address
        #: ``(transport, addr)`` of a connection that could not be opened; set by the user agent.
        self.on_connect_failed: Callable[[str, tuple[str, int]], None] | None = None
        self.connections: dict[tuple[str, tuple[str, int]], StreamConnection] = {}
        # The DNS name each address was reached under, for TLS (see name_server).
        self.server_names: dict[tuple[str, int], str] = {}
        self._per_ip: dict[str, int] = {}
        self._connecting: dict[tuple[str, tuple[str, int]], list[bytes]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.counters = {
            "connections_accepted": 0,
            "connections_refused": 0,
            "connections_opened": 0,
            "connect_failures": 0,
            "framing_errors": 0,
            "idle_closed": 0,
        }

    def admit(self, conn: StreamConnection) -> bool:
        ip = conn.remote[0]
        if self.admit_address is not None and not self.admit_address(ip):
            self.counters["connections_refused"] += 1
            return False
        if (
            self._per_ip.get(ip, 0) >= self.max_connections_per_peer
            or len(self.connections) >= self.max_connections
        ):
            self.counters["connections_refused"] += 1
            log.warning(
                "refusing %s connection from %s: too many connections", conn.transport_name, ip
            )
            return False
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.connections[(conn.transport_name, conn.remote)] = conn
        if conn.outbound:
            self.counters["connections_opened"] += 1
        else:
            self.counters["connections_accepted"] += 1
        self._arm_sweeper()
        return True

    def forget(self, conn: StreamConnection) -> None:
        key = (conn.transport_name, conn.remote)
        if self.connections.get(key) is conn:
            del self.connections[key]
            ip = conn.remote[0]
            n = self._per_ip.get(ip, 1) - 1
            if n <= 0:
                self._per_ip.pop(ip, None)
            else:
                self._per_ip[ip] = n

    def name_server(self, addr: tuple[str, int], name: str) -> None:
        """Connect to ``addr`` over TLS as ``name``: sent as SNI and matched against the
        server's certificate, as RFC 5922 §4 asks for a server located by its domain (an
        address alone can match no certificate a SIP provider holds)."""
        self.server_names.pop(addr, None)
        self.server_names[addr] = name
        while len(self.server_names) > MAX_SERVER_NAMES:
            del self.server_names[next(iter(self.server_names))]  # the oldest goes

    def find(self, transport: str, addr: tuple[str, int]) -> StreamConnection | None:
        conn = self.connections.get((transport, addr))
        return conn if conn is not None and conn.is_open else None

    def send(
        self,
        transport: str,
        addr: tuple[str, int],
        data: bytes,
        connection: StreamConnection | None = None,
    ) -> bool:
        """Send on ``connection`` if open, else on any open one to ``addr``, else connect first."""
        if connection is not None and connection.write(data):
            return True
        conn = self.find(transport, addr)
        if conn is not None:
            return conn.write(data)
        key = (transport, addr)
        queue = self._connecting.get(key)
        if queue is not None:
            queue.append(data)
            return True
        self._connecting[key] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(transport, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _connect(self, transport: str, addr: tuple[str, int]) -> None:
        key = (transport, addr)
        loop = asyncio.get_running_loop()
        try:
            ssl_ctx = None
            server_hostname = None
            if transport == "tls":
                ssl_ctx = self.client_ssl or ssl.create_default_context()
                server_hostname = self.server_names.get(addr, addr[0])
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: StreamConnection(self, transport, outbound=True),
                    addr[0],
                    addr[1],
                    ssl=ssl_ctx,
                    server_hostname=server_hostname,
                ),
                self.connect_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError) as e:
            self.counters["connect_failures"] += 1
            log.warning("could not connect %s to %s:%s: %s", transport, addr[0], addr[1], e)
            self._connecting.pop(key, None)
            if self.on_connect_failed is not None:
                # RFC 3261 §17.1.4, §18.4: the transaction layer hears of the failure at once,
                # rather than waiting for Timer B or F.
                self.on_connect_failed(transport, addr)
            return
        for data in self._connecting.pop(key, []):
            conn.write(data)

    def _arm_sweeper(self) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(min(self.idle_timeout / 4, 30.0), self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        limit = time.monotonic() - self.idle_timeout
        for conn in list(self.connections.values()):
            if conn.last_activity < limit:
                self.counters["idle_closed"] += 1
                conn.close()
        if self.connections:
            self._arm_sweeper()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        conns = list(self.connections.values())
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=2.0)
