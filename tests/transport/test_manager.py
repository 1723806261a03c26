"""The transport manager (``sipua/transport/manager.py``): its listeners' sockets."""

from __future__ import annotations

import socket
from pathlib import Path

from integration.sipclient import insecure_tls_context

from sipua.socket_buffers import RECEIVE_BUFFER
from sipua.transport.tls import ensure_certificate, server_context

from .conftest import MakeManager, StreamPeer
from .test_stream import options


def _rmem_max() -> int | None:
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return None


def _receive_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


async def test_sip_sockets_get_the_large_receive_buffer(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    # DESIGN.md §4: 4 MiB, as far as the kernel allows (net.core.rmem_max, unless
    # SO_RCVBUFFORCE was allowed). Linux reports double what it granted, so anything below
    # the capped request means the option was never set: the defaults, net.core.rmem_default
    # for UDP and net.ipv4.tcp_rmem[1] for TCP, are far below.
    wanted = min(RECEIVE_BUFFER, _rmem_max() or RECEIVE_BUFFER)
    cert, key = ensure_certificate(tmp_path)
    manager, rec = await make_manager(tls_port=0, tls_context=server_context(cert, key))

    (udp,) = manager.udp
    udp_sock = udp.sock if hasattr(udp, "sock") else udp.transport.get_extra_info("socket")
    assert _receive_buffer(udp_sock) >= wanted
    assert udp.receive_buffer >= wanted

    assert len(manager.servers) == 2  # TCP and TLS
    listeners = {s.getsockname()[1]: s for server in manager.servers for s in server.sockets}
    for name in ("tcp", "tls"):
        assert _receive_buffer(listeners[manager.local_port(name)]) >= wanted, name

    # Connections accepted on them have it too (Linux copies it from the listener).
    peers = [
        await StreamPeer.connect(manager.local_port("tcp")),
        await StreamPeer.connect(manager.local_port("tls"), insecure_tls_context()),
    ]
    try:
        for i, peer in enumerate(peers):
            await peer.send(options(f"buffer-{i}"))
        await rec.wait_for(lambda: len(rec.messages) == 2)
        for message, source in rec.messages:
            sock = source.connection.transport.get_extra_info("socket")
            assert _receive_buffer(sock) >= wanted, (source.transport, message.call_id)
    finally:
        for peer in peers:
            await peer.close()
