"""SIP over UDP (RFC 3261 §18): one datagram, one message."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable

from sipua.socket_buffers import RECEIVE_BUFFER, enlarge_receive_buffer

from .peer import Peer

log = logging.getLogger(__name__)


def enlarge_buffers(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Ask for ``size`` octets of receive and send buffer; return the receive buffer granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        pass
    return enlarge_receive_buffer(sock, size)


class UdpListener(asyncio.DatagramProtocol):
    """A bound UDP socket; hands each datagram to ``on_datagram(data, peer)``."""

    def __init__(
        self,
        on_datagram: Callable[[bytes, Peer], None],
        max_size: int = 65535,
        on_batch_end: Callable[[], None] | None = None,
    ) -> None:
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
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
        try:
            self.on_datagram(data, Peer("udp", addr[:2], local=self.local))
        finally:
            if self.on_batch_end is not None:
                self.on_batch_end()  # a batch of one: asyncio hands datagrams over singly

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


class UdpReader:
    """The same listener on the standard library's selector loop, read with ``add_reader``.

    One wake-up drains every queued datagram (up to a bound) with plain
    ``recvfrom`` and then calls ``on_batch_end`` once, so the user can do its
    per-input bookkeeping (sending, timer re-arming) once per burst instead of
    once per datagram. asyncio's datagram transports read one datagram per
    wake-up and cost more per packet; uvloop's C transports are kept there.
    """

    DRAIN_LIMIT = 256

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, Peer], None],
        max_size: int,
        on_batch_end: Callable[[], None] | None,
        on_queue_delay: Callable[[float], None] | None = None,
    ) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        # How long the first datagram of each burst (the oldest queued) waited in the kernel
        # before it was read, from its receive timestamp (Linux SO_TIMESTAMPNS): the sign
        # of overload that the event loop's own lag does not show (see sipua.ua.overload).
        self.on_queue_delay = on_queue_delay if _enable_timestamps(sock) else None
        self.max_size = max_size
        self.local = sock.getsockname()[:2]
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.counters = {
            "datagrams_received": 0,
            "datagrams_sent": 0,
            "oversized": 0,
            "send_errors": 0,
        }
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._backlog: list[tuple[bytes, tuple[str, int]]] = []
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        limit = self.max_size + 1
        local = self.local
        on_datagram = self.on_datagram
        n = 0
        stamped = self.on_queue_delay is not None  # the burst's first read takes its timestamp
        try:
            for _ in range(self.DRAIN_LIMIT):
                try:
                    if stamped:
                        stamped = False
                        data, ancillary, _, addr = self.sock.recvmsg(limit, _CMSG_SPACE)
                        self._report_delay(ancillary)
                    else:
                        data, addr = recvfrom(limit)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # an ICMP error of an earlier send, reported here
                    log.debug("udp error on %s: %s", local, e)
                    continue
                n += 1
                if len(data) > self.max_size:
                    self.counters["oversized"] += 1
                    continue
                on_datagram(data, Peer("udp", addr[:2], local=local))
        finally:
            self.counters["datagrams_received"] += n
            if n and self.on_batch_end is not None:
                self.on_batch_end()

    def _report_delay(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        """Report how long the datagram read with ``ancillary`` waited, from its timestamp."""
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                if len(payload) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                    delay = time.time() - (seconds + nanoseconds * 1e-9)
                    assert self.on_queue_delay is not None
                    self.on_queue_delay(max(0.0, delay))
                return

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        if self._closed:
            return False
        if self._backlog:
            self._backlog.append((data, addr))
            return True
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full: keep order, send when the socket is writable.
            self._backlog.append((data, addr))
            self._loop.add_writer(self.sock.fileno(), self._write_ready)
            return True
        except OSError as e:
            self.counters["send_errors"] += 1
            log.warning("udp send to %s failed: %s", addr, e)
            return False
        self.counters["datagrams_sent"] += 1
        return True

    def _write_ready(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.counters["send_errors"] += 1
                log.warning("udp send to %s failed: %s", addr, e)
            else:
                self.counters["datagrams_sent"] += 1
            backlog.pop(0)
        self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.sock.fileno())
            if self._backlog:
                self._loop.remove_writer(self.sock.fileno())
            self.sock.close()


# Linux socket(7): SO_TIMESTAMPNS (SCM_TIMESTAMPNS on receipt) carries a struct timespec.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def _enable_timestamps(sock: socket.socket) -> bool:
    if not sys.platform.startswith("linux") or not _CMSG_SPACE:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _reader_capable(loop: asyncio.AbstractEventLoop) -> bool:
    """add_reader works on the selector loops and uvloop; not on the Windows proactor loop."""
    if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return True
    return type(loop).__module__.startswith("uvloop")


async def open_udp(
    host: str,
    port: int,
    on_datagram: Callable[[bytes, Peer], None],
    max_size: int = 65535,
    on_batch_end: Callable[[], None] | None = None,
    on_queue_delay: Callable[[float], None] | None = None,
) -> UdpListener | UdpReader:
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
    if _reader_capable(loop):
        return UdpReader(sock, on_datagram, max_size, on_batch_end, on_queue_delay)
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpListener(on_datagram, max_size, on_batch_end), sock=sock
    )
    return protocol
