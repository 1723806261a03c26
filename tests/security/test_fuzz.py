"""Mutated SIP messages (hypothesis) against the parser, the stream framer and a whole UA.

The UA runs in the test's event loop with the security gate in front (authentication
required, one user) and takes the mutated octets exactly where its transports hand
them over: ``_on_datagram`` for UDP, and the framer's events for a stream. Nothing
may escape as an exception, no handler may fail (``handler_errors``), and the UA
answers a valid request afterwards. ``test_fuzz_live.py`` does the same over real
sockets to a ``sipua serve`` process.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration.sipclient import AsyncUdpClient, build_request, new_branch

from sipua.service.credentials_store import CredentialDirectory, MemoryCredentialStore
from sipua.sip.errors import ParseError
from sipua.sip.framer import NEED_DATA, MalformedMessage, MessageFramed, StreamFramer
from sipua.sip.message import Request, parse_message
from sipua.transport.manager import ListenConfig
from sipua.transport.peer import Peer
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.media import HeldPortsBackend
from sipua.ua.security import SecurityGate, SecurityPolicy

from .conftest import FakeSession
from .mutations import SEEDS, messages

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_seeds_are_mostly_valid():
    parsed = 0
    for seed in SEEDS:
        try:
            parse_message(seed)
            parsed += 1
        except ParseError:
            pass
    assert parsed >= 20  # the mutations start from messages the parser takes


@FUZZ
@given(messages)
def test_parser_raises_only_parse_errors(data):
    try:
        message = parse_message(data, max_size=65535)
    except ParseError as e:
        assert 100 <= e.status < 700
        return
    try:
        if isinstance(message, Request):
            message.validate()
            str(message.uri)
        message.to_bytes()
    except ParseError:
        pass


@FUZZ
@given(st.lists(messages, min_size=1, max_size=4), st.lists(st.integers(1, 400), max_size=8))
def test_stream_framer_raises_only_parse_errors(chunks, cuts):
    stream = b"".join(chunks)
    framer = StreamFramer(max_header_size=16384, max_body_size=65535)
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(stream[start : start + cut])
        start += cut
    pieces.append(stream[start:])
    events = 0
    try:
        for piece in pieces:
            framer.receive_data(piece)
            while (event := framer.next_event()) is not NEED_DATA:
                events += 1
                assert isinstance(event, (MessageFramed, MalformedMessage)) or event is not None
                assert events < 10_000
    except ParseError:
        pass  # the stream is closed


class FakeConnection:
    """Takes what the UA writes back on a "stream" connection."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.remote = ("127.0.0.1", 9)
        self.is_open = True

    def write(self, data: bytes) -> bool:
        self.written.append(data)
        return True

    def close(self) -> None:
        self.is_open = False


@pytest.fixture
async def guarded_ua():
    directory = CredentialDirectory(MemoryCredentialStore(), default_realm="sipua")
    directory.create("trunk", "correct horse")
    gate = SecurityGate(
        SecurityPolicy(
            auth_required=True,
            max_auth_failures=0,
            scan_requests_per_second=0,
            unauthenticated_methods=frozenset({"OPTIONS"}),
        ),
        directory,
        secret=b"f" * 32,
    )

    class Sessions:
        def resolve_sip_user(self, user):
            return FakeSession("x") if user == "session_x" else None

    ua = UserAgent(
        UaConfig(),
        ListenConfig(host="127.0.0.1", udp_port=0, tcp_port=None, tls_port=None),
        Sessions(),
        HeldPortsBackend("127.0.0.1", "127.0.0.1", 30000, 39999),
        gate=gate,
    )
    listening = await ua.start()
    gate.bind(dialogs=ua.uas.dialogs.find, transactions=lambda: len(ua.layer))
    try:
        yield ua, listening.udp[0][1], gate
    finally:
        await ua.stop()
        gate.close()


async def test_ua_behind_the_gate_survives_mutated_messages(guarded_ua, caplog):
    ua, port, gate = guarded_ua
    caplog.set_level(logging.WARNING)
    udp_peer = Peer("udp", ("127.0.0.1", 9))
    conn = FakeConnection()
    stream_peer = Peer("tcp", ("127.0.0.1", 9), conn)  # type: ignore[arg-type]
    seen = {"udp": 0, "stream": 0}

    @settings(
        max_examples=500,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(messages, st.booleans())
    def feed(data: bytes, as_stream: bool) -> None:
        if not as_stream:
            ua._on_datagram(data, udp_peer)
            ua._drain()  # what the UDP listener does after each burst
            seen["udp"] += 1
            return
        framer = StreamFramer(max_header_size=16384, max_body_size=65535)
        try:
            framer.receive_data(data)
            while (event := framer.next_event()) is not NEED_DATA:
                if isinstance(event, MessageFramed):
                    ua._on_message(event.message, stream_peer)
                elif isinstance(event, MalformedMessage):
                    ua._on_malformed(event.data, stream_peer, event)
        except ParseError:
            pass  # the transport would close the connection
        seen["stream"] += 1

    feed()
    await asyncio.sleep(0)
    assert seen["udp"] > 100 and seen["stream"] > 100
    assert ua.counters["handler_errors"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert ua.counters["parse_errors"] > 0 and gate.counters["auth_challenges"] > 0
    # Still answering: a valid OPTIONS over the real socket. Feeding hypothesis examples
    # synchronously held the loop for a while, so the gate may first say 503 (overload)
    # until the loop keeps time again: it must recover by itself.
    client = AsyncUdpClient(("127.0.0.1", port))
    statuses = []
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            call = client.new_call(f"sip:127.0.0.1:{port}")
            answer = await client.request(
                build_request(
                    "OPTIONS",
                    call.uri,
                    via=call.via(new_branch()),
                    from_=call.from_,
                    to=f"<{call.uri}>",
                    call_id=call.call_id,
                    cseq=1,
                )
            )
            statuses.append(answer.status)
            if answer.status != 503:
                break
            await asyncio.sleep(0.2)
    finally:
        client.close()
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}
