"""All SIP transports of one process: listeners, sending, and our own addresses."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from sipua.sip.framer import MalformedMessage
from sipua.sip.message import Request, Response
from sipua.socket_buffers import enlarge_receive_buffer

from .peer import Peer
from .stream import ConnectionPool, StreamConnection
from .udp import UdpListener, UdpReader, open_udp

log = logging.getLogger(__name__)

# RFC 3261 §18.1.1: requests within 200 octets of the path MTU, or larger than
# 1300 octets when the MTU is unknown, go over a congestion-controlled transport.
UDP_REQUEST_LIMIT = 1300


@dataclass
class ListenConfig:
    host: str = "0.0.0.0"
    udp_port: int | None = 5060
    tcp_port: int | None = 5060
    tls_port: int | None = 5061
    also_ipv6: bool = False
    tls_context: ssl.SSLContext | None = None
    client_tls_context: ssl.SSLContext | None = None
    max_message_size: int = 65535
    max_connections_per_peer: int = 64
    idle_timeout: float = 300.0
    admit_address: Callable[[str], bool] | None = None
    advertised_host: str | None = None  # what goes in Via/Contact; defaults to the bound address


@dataclass
class Listening:
    """The addresses actually bound (ports may have been ephemeral)."""

    udp: list[tuple[str, int]] = field(default_factory=list)
    tcp: list[tuple[str, int]] = field(default_factory=list)
    tls: list[tuple[str, int]] = field(default_factory=list)


class TransportManager:
    """Receives from every listener into one callback and sends by :class:`Peer`."""

    def __init__(
        self,
        config: ListenConfig,
        on_datagram: Callable[[bytes, Peer], None],
        on_message: Callable[[Request | Response, Peer], None],
        on_malformed: Callable[[bytes, Peer, MalformedMessage | None], None],
        on_batch_end: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        # How long each UDP burst's first datagram waited to be read (set before start()).
        self.on_queue_delay: Callable[[float], None] | None = None
        self.on_message = on_message
        self.on_malformed = on_malformed
        self.udp: list[UdpListener | UdpReader] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.listening = Listening()
        self.pool = ConnectionPool(
            on_message,
            lambda ev, peer: on_malformed(ev.data, peer, ev),
            max_message_size=config.max_message_size,
            max_connections_per_peer=config.max_connections_per_peer,
            idle_timeout=config.idle_timeout,
            client_ssl=config.client_tls_context,
            admit_address=config.admit_address,
        )
        self._udp_by_family: dict[int, UdpListener | UdpReader] = {}
        self.advertised_host = config.advertised_host

    async def start(self) -> Listening:
        cfg = self.config
        hosts = [cfg.host]
        if cfg.also_ipv6 and ":" not in cfg.host:
            # The IPv6 twin of the IPv4 address: loopback stays loopback, any address stays any.
            hosts.append("::1" if cfg.host.startswith("127.") else "::")
        loop = asyncio.get_running_loop()
        try:
            for host in hosts:
                if cfg.udp_port is not None:
                    listener = await open_udp(
                        host,
                        cfg.udp_port,
                        self.on_datagram,
                        cfg.max_message_size,
                        self.on_batch_end,
                        self.on_queue_delay,
                    )
                    self.udp.append(listener)
                    self.listening.udp.append(listener.local)
                    family = socket.AF_INET6 if ":" in host else socket.AF_INET
                    self._udp_by_family.setdefault(family, listener)
                if cfg.tcp_port is not None:
                    port = cfg.tcp_port
                    if port == 0 and cfg.udp_port == 0 and self.listening.udp:
                        # Same port number as UDP when both are ephemeral, as SIP peers expect.
                        port = self.listening.udp[-1][1]
                    server = await self._serve(loop, host, port, "tcp", None)
                    self.listening.tcp.append(server.sockets[0].getsockname()[:2])
                if cfg.tls_port is not None and cfg.tls_context is not None:
                    server = await self._serve(loop, host, cfg.tls_port, "tls", cfg.tls_context)
                    self.listening.tls.append(server.sockets[0].getsockname()[:2])
        except BaseException:
            await self.close()
            raise
        if self.advertised_host is None:
            bound = (self.listening.udp or self.listening.tcp or self.listening.tls)[0][0]
            self.advertised_host = bound if bound not in ("0.0.0.0", "::") else _primary_address()
        return self.listening

    async def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        name: str,
        ctx: ssl.SSLContext | None,
    ) -> asyncio.AbstractServer:
        try:
            server = await loop.create_server(
                lambda: StreamConnection(self.pool, name),
                host,
                port,
                ssl=ctx,
                reuse_address=True,
                backlog=1024,
                ssl_handshake_timeout=10.0 if ctx else None,
                start_serving=False,
            )
        except OSError as e:
            if port != 0 and name == "tcp":
                # The UDP port may have been ephemeral-picked and be taken for TCP.
                raise OSError(
                    e.errno, f"cannot listen on {name} {host}:{port}: {e.strerror}"
                ) from e
            raise
        self.servers.append(server)
        # DESIGN.md §4: the same large receive buffer as UDP. Set before listen() (which
        # start_serving() does), so the window offered in every SYN-ACK may use it;
        # accepted connections inherit it.
        for sock in server.sockets:
            enlarge_receive_buffer(sock)
        await server.start_serving()
        return server

    # -- our addresses ----------------------------------------------------------

    def local_port(self, transport: str) -> int:
        addrs = getattr(self.listening, transport)
        if not addrs:
            raise LookupError(f"not listening on {transport}")
        return addrs[0][1]

    def sent_by(self, transport: str) -> str:
        host = self.advertised_host or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.local_port(transport)}"

    def via(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.sent_by(transport)};branch={branch};rport"

    def contact_uri(self, transport: str, user: str | None = None, *, sips: bool = True) -> str:
        """Our Contact URI on ``transport``.

        Over TLS it is a SIPS URI unless ``sips`` is false: RFC 3261 §8.1.1.8 and §12.1.1
        ask for a SIPS Contact only when the request used SIPS URIs; a ``sip:`` request
        that merely arrived over TLS is answered with ``sip:…;transport=tls``, which peers
        that cannot route to SIPS URIs (libre/baresip) can still send their ACK and BYE to.
        """
        userpart = f"{user}@" if user else ""
        if transport == "tls":
            if sips:
                return f"sips:{userpart}{self.sent_by('tls')}"
            return f"sip:{userpart}{self.sent_by('tls')};transport=tls"
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{userpart}{self.sent_by(transport)}{suffix}"

    # -- sending ----------------------------------------------------------------

    def send(self, data: bytes, peer: Peer) -> bool:
        if peer.transport == "udp":
            listener = self._udp_by_family.get(
                socket.AF_INET6 if ":" in peer.addr[0] else socket.AF_INET
            )
            if listener is None:
                log.warning("no UDP listener for %s", peer.addr)
                return False
            return listener.send(data, peer.addr)
        return self.pool.send(peer.transport, peer.addr, data, peer.connection)

    def has_transport(self, transport: str) -> bool:
        return bool(getattr(self.listening, transport, None))

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = dict(self.pool.counters)
        for listener in self.udp:
            for k, v in listener.counters.items():
                out[f"udp_{k}"] = out.get(f"udp_{k}", 0) + v
        out["connections_open"] = len(self.pool.connections)
        return out

    async def close(self) -> None:
        for listener in self.udp:
            listener.close()
        for server in self.servers:
            server.close()
        await self.pool.close()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except (TimeoutError, Exception):  # noqa: BLE001 - closing anyway
                pass
        self.udp.clear()
        self.servers.clear()


def _primary_address() -> str:
    """The address of the interface a default route would use; no packet is sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP sends nothing
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()
