"""SIP over TCP (``sipua/transport/stream.py``): framing, keep-alives, limits, idle timeout and
where responses go (RFC 3261 §18.2.2, §18.3; RFC 5626 §3.5.1), over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from integration.sipclient import build_request, new_branch, new_token, parse, sdp_offer

from sipua.sip.message import Request
from sipua.sip.transaction import TimerConfig
from sipua.transport.manager import ListenConfig
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.media import HeldPortsBackend

from .conftest import MakeManager, StreamPeer


def options(call_id: str | None = None, *, port: int = 5060, via_port: int = 9) -> bytes:
    return build_request(
        "OPTIONS",
        f"sip:ping@127.0.0.1:{port}",
        via=f"SIP/2.0/TCP 127.0.0.1:{via_port};branch={new_branch()}",
        from_=f"<sip:tester@127.0.0.1>;tag={new_token()}",
        to=f"<sip:ping@127.0.0.1:{port}>",
        call_id=call_id or new_token(),
        cseq=1,
    )


def call_ids(rec) -> list[str]:
    return [m.call_id for m, _ in rec.messages]


# -- framing -----------------------------------------------------------------------------------


async def test_two_messages_in_one_segment(make_manager: MakeManager) -> None:
    manager, rec = await make_manager()
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        await peer.send(options("first") + options("second"))
        await rec.wait_for(lambda: len(rec.messages) == 2)
        assert call_ids(rec) == ["first", "second"]
        (_, via_a), (_, via_b) = rec.messages
        assert via_a.transport == "tcp" and via_a.connection is via_b.connection
        assert via_a.source == peer.local
    finally:
        await peer.close()


async def test_one_message_split_over_segments(make_manager: MakeManager) -> None:
    manager, rec = await make_manager()
    invite = build_request(
        "INVITE",
        "sip:session_x@127.0.0.1",
        via=f"SIP/2.0/TCP 127.0.0.1:9;branch={new_branch()}",
        from_=f"<sip:tester@127.0.0.1>;tag={new_token()}",
        to="<sip:session_x@127.0.0.1>",
        call_id="split",
        cseq=1,
        body=sdp_offer(),
        content_type="application/sdp",
    )
    head_end = invite.index(b"\r\n\r\n")
    pieces = [invite[:25], invite[25 : head_end + 2], invite[head_end + 2 : head_end + 30]]
    pieces.append(invite[head_end + 30 :])
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        for piece in pieces[:-1]:
            await peer.send(piece)
            with pytest.raises(TimeoutError):  # an incomplete message is never handed up
                await rec.wait_for(lambda: rec.messages or rec.malformed, timeout=0.15)
        await peer.send(pieces[-1])
        await rec.wait_for(lambda: rec.messages)
        ((message, _),) = rec.messages
        assert isinstance(message, Request)
        assert message.call_id == "split"
        assert message.body == sdp_offer()
    finally:
        await peer.close()


async def test_crlf_keepalive_ping_gets_a_pong(make_manager: MakeManager) -> None:
    manager, rec = await make_manager()
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        await peer.send(b"\r\n\r\n")
        assert await peer.read_some() == b"\r\n"  # RFC 5626 §3.5.1: one CRLF per CRLFCRLF
        await peer.send(b"\r\n\r\n" + options("after-ping"))
        assert await peer.read_some() == b"\r\n"
        await rec.wait_for(lambda: rec.messages)
        assert call_ids(rec) == ["after-ping"]
    finally:
        await peer.close()


async def test_missing_content_length_is_malformed_and_the_stream_goes_on(
    make_manager: MakeManager,
) -> None:
    manager, rec = await make_manager()
    no_length = options("no-length").replace(b"Content-Length: 0\r\n", b"")
    assert b"Content-Length" not in no_length
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        await peer.send(no_length + options("next"))
        await rec.wait_for(lambda: rec.malformed and rec.messages)
        ((_, _, event),) = rec.malformed
        assert event is not None and event.message is not None
        assert event.message.call_id == "no-length"
        assert "content-length" in event.error.detail.lower()
        assert call_ids(rec) == ["next"]
    finally:
        await peer.close()


@pytest.mark.parametrize("length", ["abc", "-5", "10, 20", "99999999"])
async def test_bad_content_length_closes_the_connection(
    make_manager: MakeManager, length: str
) -> None:
    manager, rec = await make_manager()
    bad = options("bad").replace(b"Content-Length: 0", f"Content-Length: {length}".encode())
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        await peer.send(bad)
        assert await peer.closed_by_server()  # RFC 3261 §18.3: the framing is lost
        assert manager.pool.counters["framing_errors"] == 1
        assert rec.messages == []
    finally:
        await peer.close()


# -- limits -----------------------------------------------------------------------------------------


async def test_connection_limit_per_peer(make_manager: MakeManager) -> None:
    manager, rec = await make_manager(max_connections_per_peer=2)
    port = manager.local_port("tcp")
    first, second = await StreamPeer.connect(port), await StreamPeer.connect(port)
    third = await StreamPeer.connect(port)  # accepted by the kernel, then dropped
    try:
        assert await third.closed_by_server()
        assert manager.pool.counters["connections_refused"] == 1
        for n, peer in enumerate((first, second)):
            await peer.send(options(f"kept-{n}"))
        await rec.wait_for(lambda: len(rec.messages) == 2)
        await first.close()
        await rec.wait_for(lambda: len(manager.pool.connections) == 1 or None)
        fourth = await StreamPeer.connect(port)  # room again
        await fourth.send(options("fourth"))
        await rec.wait_for(lambda: "fourth" in call_ids(rec))
        await fourth.close()
    finally:
        for peer in (first, second, third):
            await peer.close()


async def test_idle_connection_is_closed(make_manager: MakeManager) -> None:
    manager, rec = await make_manager(idle_timeout=0.2)
    peer = await StreamPeer.connect(manager.local_port("tcp"))
    try:
        await peer.send(options("then-silence"))
        await rec.wait_for(lambda: rec.messages)
        assert await peer.closed_by_server(timeout=3.0)
        assert manager.pool.counters["idle_closed"] == 1
        await rec.wait_for(lambda: not manager.pool.connections or None)
    finally:
        await peer.close()


# -- where responses go: through the user agent --------------------------------------------------------


@pytest.fixture
async def tcp_ua() -> AsyncIterator[SimpleNamespace]:
    session = SimpleNamespace(id="s1", status="active", accepting_calls=True, provider=None)

    class Sessions:
        def resolve_sip_user(self, user: str):
            return session if user.removeprefix("session_") == "s1" else None

    ua = UserAgent(
        UaConfig(timers=TimerConfig(), answer_delay=0.3),
        ListenConfig(host="127.0.0.1", udp_port=None, tcp_port=0, tls_port=None),
        Sessions(),
        HeldPortsBackend("127.0.0.1", "127.0.0.1", 40000, 44999),
    )
    listening = await ua.start()
    try:
        yield SimpleNamespace(ua=ua, port=listening.tcp[0][1])
    finally:
        await ua.stop()


async def test_response_goes_back_on_the_same_connection(tcp_ua: SimpleNamespace) -> None:
    peer = await StreamPeer.connect(tcp_ua.port)
    try:
        await peer.send(options("same", port=tcp_ua.port, via_port=9))  # Via port is a dead end
        response = await peer.recv()
        assert response.status == 200 and response.call_id == "same"
        no_length = options("400", port=tcp_ua.port).replace(b"Content-Length: 0\r\n", b"")
        await peer.send(no_length)
        response = await peer.recv()  # the framer's verdict, answered on the same connection
        assert response.status == 400 and response.call_id == "400"
        assert response.get("warning") is not None
        await peer.send(options("still-open", port=tcp_ua.port))
        assert (await peer.recv()).status == 200
    finally:
        await peer.close()


@pytest.mark.parametrize("rport", [False, True])
async def test_response_reopens_a_connection_to_the_via_sent_by(
    tcp_ua: SimpleNamespace, rport: bool
) -> None:
    # RFC 3261 §18.2.2: when the request's connection has closed, open one to the received
    # address and the sent-by port (rport is for unreliable transports only, RFC 3581 §4).
    arrived: asyncio.Queue[bytes] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        buffer = b""
        while not reader.at_eof():
            chunk = await reader.read(65536)
            buffer += chunk
            if b"\r\n\r\n" in buffer:
                await arrived.put(buffer)
                buffer = b""

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    back_port = listener.sockets[0].getsockname()[1]
    uri = f"sip:session_s1@127.0.0.1:{tcp_ua.port}"
    invite = build_request(
        "INVITE",
        uri,
        via=f"SIP/2.0/TCP 127.0.0.1:{back_port};branch={new_branch()}"
        + (";rport" if rport else ""),
        from_=f"<sip:tester@127.0.0.1>;tag={new_token()}",
        to=f"<{uri}>",
        call_id="reopen",
        cseq=1,
        contact=f"<sip:tester@127.0.0.1:{back_port};transport=tcp>",
        body=sdp_offer(),
        content_type="application/sdp",
    )
    peer = await StreamPeer.connect(tcp_ua.port)
    try:
        await peer.send(invite)
        first = await peer.recv()
        # The ports are bound at once here, so 180 goes out in the same turn and makes a 100
        # needless (RFC 3261 §17.2.1); a 100 first is fine too.
        if first.status == 100:
            first = await peer.recv()
        assert first.status == 180
        await peer.close()  # before the 200 (answer_delay 0.3 s)
        data = await asyncio.wait_for(arrived.get(), 5.0)
        response = parse(data)
        assert response.status == 200 and response.call_id == "reopen"
        assert writers, "no connection was opened to the Via's sent-by"
    finally:
        for writer in writers:
            writer.close()
        listener.close()
        await listener.wait_closed()
