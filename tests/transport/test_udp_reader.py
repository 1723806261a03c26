"""The add_reader UDP listener: bursts drained in one wake-up, and sends kept in order when the
kernel's send buffer is full."""

from __future__ import annotations

import asyncio
import socket
import time

from sipua.transport.peer import Peer
from sipua.transport.udp import UdpReader, open_udp


async def test_a_burst_is_handed_over_in_order_then_batch_end_once() -> None:
    seen: list[bytes] = []
    batch_ends: list[int] = []
    done = asyncio.Event()

    def on_datagram(data: bytes, peer: Peer) -> None:
        seen.append(data)

    def on_batch_end() -> None:
        batch_ends.append(len(seen))
        if len(seen) >= 20:
            done.set()

    reader = await open_udp("127.0.0.1", 0, on_datagram, 65535, on_batch_end)
    assert isinstance(reader, UdpReader)  # the stdlib selector loop gets the reader
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(20):  # queued in the kernel before the loop wakes up
            sender.sendto(b"m%02d" % n, reader.local)
        await asyncio.wait_for(done.wait(), 3)
        assert seen == [b"m%02d" % n for n in range(20)]
        assert len(batch_ends) < 20  # drained in bursts, not one wake-up per datagram
        assert reader.counters["datagrams_received"] == 20
    finally:
        sender.close()
        reader.close()


async def test_the_first_datagram_of_a_burst_reports_how_long_it_waited_to_be_read() -> None:
    seen: list[bytes] = []
    delays: list[float] = []
    burst_read = asyncio.Event()

    def on_batch_end() -> None:
        if len(seen) >= 5:
            burst_read.set()

    reader = await open_udp(
        "127.0.0.1", 0, lambda data, peer: seen.append(data), 65535, on_batch_end, delays.append
    )
    assert isinstance(reader, UdpReader) and reader.on_queue_delay is not None
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(5):
            sender.sendto(b"m%d" % n, reader.local)
        time.sleep(0.3)  # a busy loop: the datagrams wait in the kernel meanwhile
        await asyncio.wait_for(burst_read.wait(), 3)
        assert seen == [b"m%d" % n for n in range(5)]  # the timestamped read loses nothing
        assert reader.counters["datagrams_received"] == 5
        assert len(delays) == 1 and 0.29 <= delays[0] < 3.0  # one measurement per burst
        prompt = asyncio.Event()
        reader.on_batch_end = prompt.set
        sender.sendto(b"late", reader.local)  # read as soon as it comes
        await asyncio.wait_for(prompt.wait(), 3)
        assert seen[-1] == b"late" and len(delays) == 2 and delays[1] < 0.1
    finally:
        sender.close()
        reader.close()


class _FullOnce:
    """A socket whose first sendto finds the send buffer full (EAGAIN)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.refused = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if not self.refused:
            self.refused += 1
            raise BlockingIOError
        return self._sock.sendto(data, addr)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


async def test_sends_wait_in_order_while_the_send_buffer_is_full() -> None:
    reader = await open_udp("127.0.0.1", 0, lambda data, peer: None, 65535, None)
    assert isinstance(reader, UdpReader)
    reader.sock = _FullOnce(reader.sock)  # type: ignore[assignment]
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for n in range(3):
            assert reader.send(b"s%d" % n, sink.getsockname())
        assert (
            reader.sock.refused == 1 and len(reader._backlog) == 3
        )  # nothing lost, nothing reordered
        got = [await asyncio.wait_for(loop.sock_recv(sink, 100), 3) for _ in range(3)]
        assert got == [b"s0", b"s1", b"s2"]
        assert reader.counters["datagrams_sent"] == 3 and not reader._backlog
    finally:
        sink.close()
        reader.close()
