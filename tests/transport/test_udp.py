"""SIP over UDP (``sipua/transport/udp.py``, sending in ``manager.py``)."""

from __future__ import annotations

import socket

from integration.sipclient import parse

from .conftest import MakeManager
from .test_stream import options


async def test_datagram_in_and_out(make_manager: MakeManager) -> None:
    manager, rec = await make_manager(tcp_port=None)
    port = manager.local_port("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        sock.sendto(options("udp-in"), ("127.0.0.1", port))
        await rec.wait_for(lambda: rec.datagrams)
        ((data, peer),) = rec.datagrams
        assert parse(data).call_id == "udp-in"
        assert (peer.transport, peer.source, peer.reliable) == ("udp", sock.getsockname(), False)
        assert manager.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", peer)
        reply, addr = sock.recvfrom(65535)
        assert addr == ("127.0.0.1", port) and reply.startswith(b"SIP/2.0 200")
    assert manager.sent_by("udp") == f"127.0.0.1:{port}"
    assert manager.via("udp", "z9hG4bKx").endswith(";rport")


async def test_oversized_datagram_is_dropped(make_manager: MakeManager) -> None:
    manager, rec = await make_manager(tcp_port=None, max_message_size=2000)
    port = manager.local_port("udp")
    big = options("too-big").replace(
        b"Content-Length: 0", b"X-Pad: " + b"a" * 3000 + b"\r\nContent-Length: 0"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(big, ("127.0.0.1", port))
        sock.sendto(options("small"), ("127.0.0.1", port))
        await rec.wait_for(lambda: rec.datagrams)
    assert [parse(d).call_id for d, _ in rec.datagrams] == ["small"]
    assert manager.counters()["udp_oversized"] == 1
