"""The replay's SIP transports (UDP and TCP) and address parsing."""

from __future__ import annotations

import socket
import sys

from ..sip.framer import NEED_DATA, MessageFramed, StreamFramer
from ..sip.message import Request, Response
from .common import (
    _IP_RECVERR,
    ReplayUsageError,
)
from .invite import (
    hostport,
)

# -- transports ----------------------------------------------------------------------------

Address = tuple[str, int]


class _UdpLink:
    """One UDP socket for all SIP; ICMP errors surface (IP_RECVERR) so a dead port fails fast."""

    reliable = False

    def __init__(self, local_ip: str, family: int) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        if family == socket.AF_INET and sys.platform == "linux":
            self.sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        self.sock.setblocking(False)

    def local(self, destination: Address) -> Address:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def sockets(self) -> list[socket.socket]:
        return [self.sock]

    def send(self, data: bytes, destination: Address) -> None:
        self.sock.sendto(data, destination)

    def receive(self, sock: socket.socket) -> list[tuple[bytes, Address]]:
        out = []
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                break
            out.append((data, (addr[0], addr[1])))
        return out

    def close(self) -> None:
        self.sock.close()


class _TcpLink:
    """TCP connections by peer address, each with its framer (RFC 3261 §18.3)."""

    reliable = True

    def __init__(self, local_ip: str, family: int, connect_timeout: float) -> None:
        self.local_ip = local_ip
        self.family = family
        self.connect_timeout = connect_timeout
        self.connections: dict[Address, tuple[socket.socket, StreamFramer]] = {}

    def _connection(self, destination: Address) -> socket.socket:
        found = self.connections.get(destination)
        if found is not None:
            return found[0]
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.bind((self.local_ip, 0))
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(destination)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.connections[destination] = (sock, StreamFramer())
        return sock

    def local(self, destination: Address) -> Address:
        host, port = self._connection(destination).getsockname()[:2]
        return host, port

    def sockets(self) -> list[socket.socket]:
        return [c[0] for c in self.connections.values()]

    def send(self, data: bytes, destination: Address) -> None:
        sock = self._connection(destination)
        sock.setblocking(True)
        sock.settimeout(self.connect_timeout)
        try:
            sock.sendall(data)
        finally:
            sock.setblocking(False)

    def receive(self, sock: socket.socket) -> list[tuple[bytes | Request | Response, Address]]:
        peer = next(a for a, c in self.connections.items() if c[0] is sock)
        framer = self.connections[peer][1]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return []
        if not data:
            del self.connections[peer]
            sock.close()
            raise ConnectionResetError(f"the UAS closed the TCP connection from {hostport(*peer)}")
        framer.receive_data(data)
        out: list[tuple[bytes | Request | Response, Address]] = []
        while True:
            event = framer.next_event()  # ParseError: the stream is lost, the caller says so
            if event is NEED_DATA:
                return out
            if isinstance(event, MessageFramed):
                out.append((event.message, peer))

    def close(self) -> None:
        for sock, _ in self.connections.values():
            sock.close()
        self.connections.clear()


def resolve(host: str, port: int, family: int = 0) -> Address:
    """One address for ``host:port``; :class:`OSError` when the name does not resolve."""
    info = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    addr = info[0][4]
    return addr[0], addr[1]


def parse_target(text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT``; the port defaults to 5060) resolved to an address."""
    host, port_text = text, "5060"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ReplayUsageError(f"bad --to {text!r}: expected HOST:PORT")
    try:
        # IPv4 first: "localhost" must reach a UAS listening on 127.0.0.1 only.
        return resolve(host, int(port_text), socket.AF_INET)
    except OSError:
        pass
    try:
        return resolve(host, int(port_text))
    except OSError as e:
        raise ReplayUsageError(f"cannot resolve --to {text!r}: {e}") from None


def local_ip_for(target: Address) -> str:
    """The address this host sends from towards ``target`` (what Via and c= must say)."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(target)  # a UDP connect only picks the route; nothing is sent
        return probe.getsockname()[0]
