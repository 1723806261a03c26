"""The ``bridge`` media app, driven end to end through a browser stream participant: what the
backend receives (Twilio's wire format or L16, as the session or the server's settings choose),
one connection per participant, what it sends back (audio, marks, clear), and what happens when it
goes away (event, bounded reconnection, fallback: hang up, echo, continue)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from sipua.service.bridge import L16_16K, MULAW_8K, BridgeApp, configure_bridge
from sipua.service.config import load_settings
from sipua.service.media_backend import app_for_session
from tests.service.streams.audio import (
    dominant_frequency,
    from_pcm16le,
    pcm16le,
    tone,
    ulaw_decode,
    ulaw_encode,
)
from tests.service.streams.backend import Backend, Connection, backend
from tests.service.streams.harness import WAIT, StreamServer, closed_with, recv_json, serving


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[StreamServer]:
    async with serving(tmp_path / "data") as srv:
        yield srv


@pytest.fixture
def bridge_context(server: StreamServer) -> Iterator[None]:
    """What ``sipua serve`` does at start: bridges publish to the server's event log."""
    settings = load_settings(
        None,
        data_dir=server.settings.data_dir,
        bridge={"reconnect_attempts": 1, "reconnect_backoff": 0.05, "connect_timeout": 2},
    )
    configure_bridge(events=server.app.state.events, settings=settings)
    yield
    configure_bridge(events=None, settings=load_settings(None, data_dir=server.settings.data_dir))


async def open_browser(server: StreamServer, session: Any) -> tuple[Any, str]:
    ws = await websockets.connect(
        server.url(session.id, f"token={session.stream_token}"), open_timeout=WAIT
    )
    ready = await recv_json(ws)
    assert ready["type"] == "ready"
    return ws, ready["participant_id"]


async def send_tone(ws: Any, freq: float, ms: int, paced: bool = False) -> None:
    samples = tone(freq, ms, 16000)
    for i in range(0, len(samples), 320):
        await ws.send(pcm16le(samples[i : i + 320]))
        if paced:
            await asyncio.sleep(0.02)  # a microphone produces audio in real time


async def collect_audio(ws: Any, octets: int, timeout: float = WAIT) -> bytes:
    got = bytearray()
    async with asyncio.timeout(timeout):
        while len(got) < octets:
            message = await ws.recv()
            if isinstance(message, bytes):
                got += message
    return bytes(got)


async def test_twilio_wire_format_both_ways_with_marks_dtmf_and_stop(
    server: StreamServer, bridge_context: None
) -> None:
    async def reply(conn: Connection) -> None:
        # A TTS-like burst: one second of 700 Hz in a single media message, then a mark.
        await conn.send_media(ulaw_encode(tone(700, 1000, 8000)))
        await conn.send_mark("reply-done")
        conn.sent_at = time.monotonic()  # type: ignore[attr-defined]

    async with backend() as agent:
        agent.script = reply
        session = server.create(mode="ai_agent", media={"bridge_url": agent.url})
        ws, participant = await open_browser(server, session)
        conn = await agent.connection()
        await conn.wait_for(lambda c: bool(c.of("start")))
        assert conn.messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = conn.start
        assert start["streamSid"].startswith("MZ") and len(start["streamSid"]) == 34
        assert start["start"]["streamSid"] == start["streamSid"]
        assert start["start"]["callSid"] == participant
        assert start["start"]["mediaFormat"] == {
            "encoding": "audio/x-mulaw",
            "sampleRate": 8000,
            "channels": 1,
        }
        params = start["start"]["customParameters"]
        assert params["session_id"] == session.id
        assert params["participant_id"] == participant
        assert params["provider"] == "browser"
        assert params["mode"] == "ai_agent"

        # The participant's audio reaches the backend as μ-law 8 kHz, 20 ms per message.
        await send_tone(ws, 1000, 1000)
        await conn.wait_for(lambda c: len(c.of("media")) >= 45)
        media = conn.of("media")
        assert [int(m["media"]["chunk"]) for m in media] == list(range(1, len(media) + 1))
        assert all(m["streamSid"] == conn.stream_sid for m in media)
        assert all(m["media"]["track"] == "inbound" for m in media)
        sequence = [int(m["sequenceNumber"]) for m in conn.messages if "sequenceNumber" in m]
        assert sequence == list(range(1, len(sequence) + 1))
        heard = ulaw_decode(conn.audio())
        assert len(conn.audio()) % 160 == 0
        assert abs(dominant_frequency(heard[800:], 8000) - 1000) < 20

        # The backend's audio reaches the participant, played in real time, then the mark.
        played = from_pcm16le(await collect_audio(ws, 45 * 640))
        assert abs(dominant_frequency(played[1600:], 16000) - 700) < 20
        await conn.wait_for(lambda c: bool(c.of("mark")))
        assert conn.of("mark")[0]["mark"] == {"name": "reply-done"}
        assert conn.of("mark")[0]["streamSid"] == conn.stream_sid
        assert time.monotonic() - conn.sent_at > 0.8  # type: ignore[attr-defined]

        await ws.send('{"type": "dtmf", "digit": "9"}')
        await conn.wait_for(lambda c: bool(c.of("dtmf")))
        assert conn.of("dtmf")[0]["dtmf"] == {"track": "inbound_track", "digit": "9"}

        await ws.send('{"type": "hangup"}')
        await closed_with(ws)
        await conn.wait_for(lambda c: c.closed.is_set())
        assert conn.of("stop")[0]["stop"]["callSid"] == participant
        connected = server.of_type("session.bridge.connected")
        assert len(connected) == 1
        # Credentials in the URL's query never reach the event log.
        assert connected[0].data["url"] == agent.url.split("?")[0]
        assert server.of_type("session.bridge.disconnected") == []


async def test_clear_from_the_backend_interrupts_playback(
    server: StreamServer, bridge_context: None
) -> None:
    async def long_prompt(conn: Connection) -> None:
        await conn.send_media(ulaw_encode(tone(700, 5000, 8000)))
        await conn.send_mark("prompt-done")
        await conn.wait_for(lambda c: len(c.of("media")) >= 10)
        await conn.send_clear()  # the caller started talking

    async with backend() as agent:
        agent.script = long_prompt
        session = server.create(media={"bridge_url": agent.url})
        ws, _ = await open_browser(server, session)
        conn = await agent.connection()
        await conn.wait_for(lambda c: bool(c.of("start")))
        started = time.monotonic()
        await send_tone(ws, 1000, 400, paced=True)
        cleared = False
        async with asyncio.timeout(WAIT):
            while not cleared:
                message = await ws.recv()
                cleared = message == '{"type":"clear"}'
        await conn.wait_for(lambda c: bool(c.of("mark")))
        assert conn.of("mark")[0]["mark"]["name"] == "prompt-done"
        assert time.monotonic() - started < 3.0  # well before the 5 s prompt would end
        await ws.send('{"type": "hangup"}')
        await closed_with(ws)


async def test_backend_that_closes_is_retried_then_reported_and_hangs_up(
    server: StreamServer, bridge_context: None
) -> None:
    async def close_at_once(conn: Connection) -> None:
        await conn.ws.close(1011, "agent crashed")

    async with backend() as agent:
        agent.script = close_at_once
        session = server.create(media={"bridge_url": agent.url})
        ws, participant = await open_browser(server, session)
        assert await recv_json(ws) == {"type": "ended", "reason": "bridge-closed"}
        assert await closed_with(ws) == (1000, "bridge-closed")
        assert len(agent.connections) == 2  # the first and one reconnection
        assert agent.connections[0].stream_sid != agent.connections[1].stream_sid
    lost = await server.wait_event(lambda e: e.type == "session.bridge.disconnected")
    assert lost.session_id == session.id
    assert lost.data["participant_id"] == participant
    assert lost.data["reason"] == "backend-closed"
    assert lost.data["detail"] == "agent crashed"
    assert lost.data["close_code"] == 1011
    assert lost.data["reconnections"] == 1
    assert lost.data["fallback"] == "hangup"
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["reason"] == "bridge-closed"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_backend_falls_back_to_echo(server: StreamServer) -> None:
    url = f"ws://127.0.0.1:{_closed_port()}/agent"
    events = server.app.state.events
    server.hub.app_factory = lambda settings, session, pid: BridgeApp(
        url=url,
        session=session,
        fallback="echo",
        events=events,
        reconnect_attempts=0,
        connect_timeout=1,
    )
    session = server.create(media={"bridge_url": url})
    ws, _ = await open_browser(server, session)
    lost = await server.wait_event(lambda e: e.type == "session.bridge.disconnected")
    assert lost.data["reason"] == "connect-failed"
    assert lost.data["fallback"] == "echo"
    assert lost.data["reconnections"] == 0
    await send_tone(ws, 1000, 600)
    echoed = from_pcm16le(await collect_audio(ws, 25 * 640))
    assert abs(dominant_frequency(echoed[640:], 16000) - 1000) < 20
    await ws.send('{"type": "hangup"}')
    await closed_with(ws)


async def test_l16_format_is_16k_little_endian(server: StreamServer) -> None:
    async def reply(conn: Connection) -> None:
        await conn.send_media(pcm16le(tone(500, 600, 16000)))

    async with backend() as agent:
        agent.script = reply
        server.hub.app_factory = lambda settings, session, pid: BridgeApp(
            url=agent.url, session=session, format="l16"
        )
        session = server.create(media={"bridge_url": agent.url})
        ws, _ = await open_browser(server, session)
        conn = await agent.connection()
        await conn.wait_for(lambda c: bool(c.of("start")))
        assert conn.start["start"]["mediaFormat"] == {
            "encoding": "audio/x-l16",
            "sampleRate": 16000,
            "channels": 1,
        }
        await send_tone(ws, 1000, 600)
        await conn.wait_for(lambda c: len(c.of("media")) >= 25)
        assert {len(m["media"]["payload"]) for m in conn.of("media")} == {len("A" * 856)}
        heard = from_pcm16le(conn.audio())
        assert abs(dominant_frequency(heard, 16000) - 1000) < 20
        played = from_pcm16le(await collect_audio(ws, 25 * 640))
        assert abs(dominant_frequency(played, 16000) - 500) < 20
        await ws.send('{"type": "hangup"}')
        await closed_with(ws)


def test_bridge_app_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="bridge_url"):
        BridgeApp(url=None)
    with pytest.raises(ValueError, match="ws://"):
        BridgeApp(url="http://backend.example/")
    with pytest.raises(ValueError, match="format"):
        BridgeApp(url="ws://backend.example/", format="opus")
    with pytest.raises(ValueError, match="fallback"):
        BridgeApp(url="ws://backend.example/", fallback="pray")
    assert BridgeApp(url="ws://b.example/").sample_rate == 8000
    assert BridgeApp(url="ws://b.example/", format="l16").sample_rate == 16000
    assert isinstance(np.zeros(1), np.ndarray)


async def test_backend_helper_sees_nothing_without_a_bridge() -> None:
    # The helper itself: a connection it did not get is reported as a timeout, not a pass.
    async with backend() as agent:
        assert isinstance(agent, Backend)
        with pytest.raises(TimeoutError):
            await agent.connection(timeout=0.2)


# -- the wire format, as a session and the server's settings choose it --------------------------


@contextmanager
def bridge_settings(server: StreamServer, **bridge: Any) -> Iterator[Any]:
    """``sipua serve`` with these ``[bridge]`` settings: configure_bridge() with them, and the
    same settings for app_for_session(); the defaults again afterwards."""
    settings = load_settings(None, data_dir=server.settings.data_dir, bridge=bridge)
    configure_bridge(events=server.app.state.events, settings=settings)
    try:
        yield settings
    finally:
        configure_bridge(
            events=None, settings=load_settings(None, data_dir=server.settings.data_dir)
        )


def test_session_bridge_format_and_server_default_select_the_wire_format(
    server: StreamServer,
) -> None:
    url = "ws://backend.example/agent"
    plain = server.create(media={"bridge_url": url})
    l16 = server.create(media={"bridge_url": url, "bridge_format": "l16"})
    twilio = server.create(media={"bridge_url": url, "bridge_format": "twilio"})
    with bridge_settings(server) as settings:
        assert settings.bridge.format == "twilio"  # the default
        app = app_for_session(settings, plain, "leg-1")
        assert isinstance(app, BridgeApp)
        assert (app.format, app.wire, app.sample_rate) == ("twilio", MULAW_8K, 8000)
        app = app_for_session(settings, l16, "leg-1")
        assert isinstance(app, BridgeApp)
        assert (app.format, app.wire, app.sample_rate) == ("l16", L16_16K, 16000)
        assert app.media_format() == {
            "encoding": "audio/x-l16",
            "sampleRate": 16000,
            "channels": 1,
        }
        assert app.leg_id == "leg-1" and app.session_id == l16.id
    with bridge_settings(server, format="l16") as settings:
        app = app_for_session(settings, plain, "leg-2")
        assert isinstance(app, BridgeApp)
        assert (app.format, app.wire, app.sample_rate) == ("l16", L16_16K, 16000)
        # The session's own choice wins over the server's default.
        app = app_for_session(settings, twilio, "leg-2")
        assert isinstance(app, BridgeApp)
        assert (app.format, app.wire, app.sample_rate) == ("twilio", MULAW_8K, 8000)


@pytest.mark.parametrize("chosen_by", ["session", "server"])
async def test_l16_chosen_by_the_session_or_the_server_is_what_the_backend_gets(
    server: StreamServer, chosen_by: str
) -> None:
    # No app factory: the stream hub builds the session's own app (app_for_session).
    async def reply(conn: Connection) -> None:
        await conn.send_media(pcm16le(tone(500, 600, 16000)))

    server_format = "l16" if chosen_by == "server" else "twilio"
    async with backend() as agent:
        agent.script = reply
        media: dict[str, Any] = {"bridge_url": agent.url}
        if chosen_by == "session":
            media["bridge_format"] = "l16"
        with bridge_settings(server, format=server_format):
            session = server.create(media=media)
            ws, _ = await open_browser(server, session)
            conn = await agent.connection()
            await conn.wait_for(lambda c: bool(c.of("start")))
            assert conn.start["start"]["mediaFormat"] == {
                "encoding": "audio/x-l16",
                "sampleRate": 16000,
                "channels": 1,
            }
            await send_tone(ws, 1000, 600)
            await conn.wait_for(lambda c: len(c.of("media")) >= 25)
            # 20 ms of 16-bit PCM at 16 kHz per message (μ-law 8 kHz would be 160 octets).
            assert {len(base64.b64decode(m["media"]["payload"])) for m in conn.of("media")} == {640}
            heard = from_pcm16le(conn.audio())
            assert abs(dominant_frequency(heard, 16000) - 1000) < 20
            played = from_pcm16le(await collect_audio(ws, 25 * 640))
            assert abs(dominant_frequency(played, 16000) - 500) < 20
            await ws.send('{"type": "hangup"}')
            await closed_with(ws)
            connected = await server.wait_event(lambda e: e.type == "session.bridge.connected")
            assert connected.data["format"] == "l16"


# -- several participants -------------------------------------------------------------------------


async def test_each_participant_has_its_own_backend_connection_tagged_with_its_id(
    server: StreamServer, bridge_context: None
) -> None:
    # Each connection answers with its own tone: 500 Hz on the first, 900 Hz on the second.
    replies = (500, 900)

    async def reply(conn: Connection) -> None:
        freq = replies[agent.connections.index(conn)]
        await conn.send_media(ulaw_encode(tone(freq, 1000, 8000)))

    async with backend() as agent:
        agent.script = reply
        session = server.create(mode="ai_agent", media={"bridge_url": agent.url})
        ws_a, id_a = await open_browser(server, session)
        ws_b, id_b = await open_browser(server, session)
        assert id_a != id_b
        first, second = await agent.connection(0), await agent.connection(1)
        for conn in (first, second):
            await conn.wait_for(lambda c: bool(c.of("start")))
        by_participant = {
            conn.start["start"]["customParameters"]["participant_id"]: conn
            for conn in (first, second)
        }
        assert set(by_participant) == {id_a, id_b}
        for pid, conn in by_participant.items():
            start = conn.start["start"]
            assert start["callSid"] == pid
            assert start["customParameters"]["session_id"] == session.id
        assert first.stream_sid != second.stream_sid

        # Each participant's audio goes over its own connection only.
        await asyncio.gather(send_tone(ws_a, 700, 1000), send_tone(ws_b, 1300, 1000))
        for pid, freq in ((id_a, 700), (id_b, 1300)):
            conn = by_participant[pid]
            await conn.wait_for(lambda c: len(c.of("media")) >= 45)
            heard = ulaw_decode(conn.audio())
            assert abs(dominant_frequency(heard[800:], 8000) - freq) < 20
            assert {m["streamSid"] for m in conn.of("media")} == {conn.stream_sid}
        # And each hears its own connection's reply.
        for ws, pid in ((ws_a, id_a), (ws_b, id_b)):
            index = agent.connections.index(by_participant[pid])
            played = from_pcm16le(await collect_audio(ws, 40 * 640))
            assert abs(dominant_frequency(played[1600:], 16000) - replies[index]) < 20

        # One participant leaving stops its connection, not the other's.
        await ws_a.send('{"type": "hangup"}')
        await closed_with(ws_a)
        await by_participant[id_a].wait_for(lambda c: c.closed.is_set())
        assert by_participant[id_a].of("stop")[0]["stop"]["callSid"] == id_a
        assert not by_participant[id_b].closed.is_set()
        assert by_participant[id_b].of("stop") == []
        await ws_b.send('{"type": "hangup"}')
        await closed_with(ws_b)
        await by_participant[id_b].wait_for(lambda c: c.closed.is_set())
        assert len(agent.connections) == 2
        connected = server.of_type("session.bridge.connected", session.id)
        assert sorted(e.data["participant_id"] for e in connected) == sorted([id_a, id_b])


# -- the "continue" fallback ------------------------------------------------------------------------


async def test_continue_fallback_keeps_the_participant_in_silence(server: StreamServer) -> None:
    async def close_at_once(conn: Connection) -> None:
        await conn.ws.close(1011, "agent crashed")

    async with backend() as agent:
        agent.script = close_at_once
        with bridge_settings(
            server, fallback="continue", reconnect_attempts=0, connect_timeout=2
        ) as settings:
            assert settings.bridge.fallback == "continue"
            session = server.create(media={"bridge_url": agent.url})
            ws, participant = await open_browser(server, session)
            lost = await server.wait_event(lambda e: e.type == "session.bridge.disconnected")
            assert lost.data["participant_id"] == participant
            assert lost.data["reason"] == "backend-closed"
            assert lost.data["close_code"] == 1011
            assert lost.data["reconnections"] == 0
            assert lost.data["fallback"] == "continue"
            assert len(agent.connections) == 1
            # Not hung up, not echoed: the caller's audio goes nowhere and nothing comes back.
            await send_tone(ws, 1000, 400)
            with pytest.raises(TimeoutError):
                await collect_audio(ws, 640, timeout=0.5)
            # The stream is alive with nothing queued: a mark comes straight back.
            await ws.send('{"type": "mark", "name": "still-here"}')
            assert await recv_json(ws) == {"type": "mark", "name": "still-here"}
            assert server.of_type("session.provider.disconnected") == []
            await ws.send('{"type": "hangup"}')
            assert await closed_with(ws) == (1000, "remote-hangup")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["reason"] == "remote-hangup"
    assert gone.data["quality"]["packets_received"] == 20
    assert gone.data["quality"]["packets_sent"] == 0
    assert len(agent.connections) == 1  # no reconnection after giving up
