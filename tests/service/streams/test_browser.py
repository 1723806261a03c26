"""The browser protocol: ``?token=``, binary 16 kHz PCM both ways, JSON control messages."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import websockets

from sipua.media.apps import MediaApp

from .audio import dominant_frequency, from_pcm16le, pcm16le, tone
from .harness import WAIT, StreamServer, closed_with, recv_json


async def open_browser(server: StreamServer, session: Any, token: str | None = None) -> Any:
    token = session.stream_token if token is None else token
    return await websockets.connect(server.url(session.id, f"token={token}"), open_timeout=WAIT)


async def collect_audio(ws: Any, octets: int) -> bytes:
    got = bytearray()
    async with asyncio.timeout(WAIT):
        while len(got) < octets:
            message = await ws.recv()
            if isinstance(message, bytes):
                got += message
    return bytes(got)


async def test_ready_then_pcm_echoed_and_events(server: StreamServer) -> None:
    session = server.create()
    ws = await open_browser(server, session)
    ready = await recv_json(ws)
    assert ready["type"] == "ready"
    assert ready["session_id"] == session.id
    assert ready["sample_rate"] == 16000 and ready["encoding"] == "pcm_s16le"
    participant = ready["participant_id"]
    samples = tone(1000, 1000, 16000)
    # 20 ms frames, then odd sizes (10 ms, 30 ms): all re-cut into 20 ms for the app.
    sizes = [320] * 25 + [160, 480] * 10 + [320] * 5
    offset = 0
    for size in sizes:
        await ws.send(pcm16le(samples[offset : offset + size]))
        offset += size
    assert offset == len(samples)
    echoed = from_pcm16le(await collect_audio(ws, 45 * 640))
    assert abs(dominant_frequency(echoed[640:], 16000) - 1000) < 20
    assert np.max(np.abs(echoed)) > 6000

    await ws.send('{"type": "dtmf", "digit": "5"}')
    dtmf = await server.wait_event(lambda e: e.type == "session.dtmf")
    assert dtmf.data["digit"] == "5" and dtmf.data["source"] == "browser"
    assert dtmf.provider == {"type": "browser", "connection_id": participant, "status": "connected"}

    await ws.send('{"type": "hangup"}')
    ended = await recv_json(ws)
    assert ended == {"type": "ended", "reason": "remote-hangup"}
    assert await closed_with(ws) == (1000, "remote-hangup")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["participant_id"] == participant
    assert gone.data["stream"]["frames_in"] == 50
    assert gone.data["stream"]["frames_out"] >= 45


async def test_mark_and_bad_messages(server: StreamServer) -> None:
    session = server.create()
    async with await open_browser(server, session) as ws:
        await recv_json(ws)  # ready
        await ws.send('{"type": "dtmf", "digit": "X"}')  # not a key: ignored
        await ws.send('{"type": "what"}')
        await ws.send("[1, 2]")
        await ws.send('{"type": "mark", "name": "m"}')
        assert await recv_json(ws) == {"type": "mark", "name": "m"}
        assert server.of_type("session.dtmf") == []
        await ws.send('{"type": "hangup"}')
        await closed_with(ws)


async def test_wrong_token_is_refused_and_ending_the_session_says_why(
    server: StreamServer,
) -> None:
    session = server.create()
    async with await open_browser(server, session, token="nope") as ws:
        assert await closed_with(ws) == (4401, "invalid-token")
    ws = await open_browser(server, session)
    await recv_json(ws)
    await server.sessions.end(session.id)
    assert await recv_json(ws) == {"type": "ended", "reason": "session-ended"}
    assert await closed_with(ws) == (1000, "session-ended")
    async with await open_browser(server, session) as ws:
        assert await closed_with(ws) == (4403, "session-ended")


class Dialer(MediaApp):
    """Sends DTMF to the participant when it starts, and clears on its first key."""

    name = "dialer"
    needs_audio = False

    def on_start(self, participant: Any) -> None:
        participant.send_dtmf("12")
        participant.send_audio(pcm16le(tone(440, 2000, participant.sample_rate)))

    def on_dtmf(self, participant: Any, event: Any) -> None:
        participant.clear()


async def test_application_dtmf_and_clear_reach_the_browser(server: StreamServer) -> None:
    server.hub.app_factory = lambda settings, session, pid: Dialer()
    session = server.create()
    async with await open_browser(server, session) as ws:
        assert (await recv_json(ws))["type"] == "ready"
        assert await recv_json(ws) == {"type": "dtmf", "digit": "1", "duration_ms": 100}
        assert await recv_json(ws) == {"type": "dtmf", "digit": "2", "duration_ms": 100}
        audio = await collect_audio(ws, 10 * 640)
        assert abs(dominant_frequency(from_pcm16le(audio), 16000) - 440) < 20
        await ws.send('{"type": "dtmf", "digit": "#"}')
        assert await recv_json(ws) == {"type": "clear"}
        await ws.send('{"type": "hangup"}')
        await closed_with(ws)


async def test_an_oversized_audio_frame_is_dropped_not_played(server: StreamServer) -> None:
    session = server.create()
    async with await open_browser(server, session) as ws:
        await recv_json(ws)  # ready
        await ws.send(bytes(70 * 1024))  # over 2 s in one frame
        await ws.send(pcm16le(tone(1000, 100, 16000)))
        await ws.send('{"type": "hangup"}')
        await closed_with(ws)
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["stream"]["frames_in"] == 5
    assert gone.data["stream"]["bad_messages"] == 1
