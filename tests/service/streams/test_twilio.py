"""Twilio Media Streams against the stream endpoint: Twilio's documented message sequence in,
audio/marks/clear out, events, metrics, and refusals with their close codes."""

from __future__ import annotations

import base64
import json
import time
import wave
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import websockets

from sipua.media.apps import MediaApp
from sipua.service.streams.signature import twilio_signature

from .audio import dominant_frequency, tone, ulaw_decode, ulaw_encode
from .harness import WAIT, StreamServer, closed_with, recv_json
from .peers import TwilioPeer


async def open_twilio(server: StreamServer, session: Any, peer: TwilioPeer, **headers: str) -> Any:
    ws = await websockets.connect(
        server.url(session.id), additional_headers=headers or None, open_timeout=WAIT
    )
    await ws.send(peer.connected())
    await ws.send(peer.start())
    return ws


def tone_frames(freq: float, count: int) -> list[bytes]:
    samples = tone(freq, 20 * count, 8000)
    return [ulaw_encode(samples[i * 160 : (i + 1) * 160]) for i in range(count)]


async def test_tone_is_echoed_paced_in_real_time_and_reported(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    ws = await open_twilio(server, session, peer)
    for frame in tone_frames(1000, 50):  # one second, sent as fast as possible
        await ws.send(peer.media(frame))
    arrivals: list[tuple[float, dict[str, Any]]] = []
    while len(arrivals) < 45:
        message = await recv_json(ws)
        arrivals.append((time.monotonic(), message))
    assert {m["event"] for _, m in arrivals} == {"media"}
    assert {m["streamSid"] for _, m in arrivals} == {peer.stream_sid}
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in arrivals]
    assert {len(p) for p in payloads} == {160}  # 20 ms of μ-law 8 kHz each
    echoed = ulaw_decode(b"".join(payloads[2:]))
    assert abs(dominant_frequency(echoed, 8000) - 1000) < 20
    # Paced: 45 frames of 20 ms take at least ~0.9 s minus the 60 ms allowed ahead.
    span = arrivals[-1][0] - arrivals[0][0]
    assert span >= 44 * 0.020 - 0.060 - 0.030, span

    await ws.send(peer.stop())
    assert await closed_with(ws) == (1000, "stream-stopped")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.session_id == session.id
    assert gone.provider == {
        "type": "twilio",
        "call_sid": peer.call_sid,
        "stream_sid": peer.stream_sid,
        "status": "disconnected",
    }
    assert gone.data["participant_id"] == peer.stream_sid
    assert gone.data["reason"] == "stream-stopped"
    assert gone.data["duration_s"] > 0.5
    assert gone.data["quality"]["packets_received"] == 50
    assert gone.data["quality"]["packets_sent"] >= 45
    types = [e.type for e in server.events if e.session_id == session.id]
    assert types == [
        "session.provider.connecting",
        "session.provider.connected",
        "session.provider.disconnected",
    ]
    connected = server.of_type("session.provider.connected")[0]
    assert connected.data["codec"] == "PCMU"
    metrics = server.app.state.metrics.render().decode()
    assert 'sipua_stream_connections_total{provider="twilio"} 1.0' in metrics
    assert 'sipua_stream_connections_active{provider="twilio"} 0.0' in metrics


async def test_dtmf_becomes_a_session_event(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, peer) as ws:
        await ws.send(peer.dtmf("5"))
        event = await server.wait_event(lambda e: e.type == "session.dtmf")
        assert event.session_id == session.id
        assert event.data["digit"] == "5"
        assert event.data["source"] == "twilio"
        assert event.data["participant_id"] == peer.stream_sid
        assert event.provider["call_sid"] == peer.call_sid
        await ws.send(peer.stop())
        await closed_with(ws)


async def test_mark_is_answered_after_the_audio_before_it(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, peer) as ws:
        # Nothing queued yet: a mark comes straight back.
        await ws.send(peer.mark("empty"))
        assert await recv_json(ws) == {
            "event": "mark",
            "streamSid": peer.stream_sid,
            "mark": {"name": "empty"},
        }
        for frame in tone_frames(1000, 20):
            await ws.send(peer.media(frame))
        await ws.send(peer.mark("after-audio"))
        started = time.monotonic()
        media_before = 0
        while True:
            message = await recv_json(ws)
            if message["event"] == "mark":
                break
            media_before += 1
        assert message["mark"] == {"name": "after-audio"}
        # Every echoed frame of the 20 (less the resamplers' one-frame delays) came first,
        # and it took about their duration.
        assert media_before >= 17
        assert time.monotonic() - started >= (media_before - 3) * 0.020
        await ws.send(peer.stop())
        await closed_with(ws)


class BargeInApp(MediaApp):
    """Queues a long prompt on start; a key press interrupts it (clear)."""

    name = "barge-in"
    needs_audio = False
    dtmf_error: Exception | None = None

    def on_start(self, participant: Any) -> None:
        participant.send_audio(tone(1000, 3000, participant.sample_rate).astype("<i2").tobytes())

    def on_dtmf(self, participant: Any, event: Any) -> None:
        participant.clear()
        try:
            participant.send_dtmf("1")
        except RuntimeError as exc:
            BargeInApp.dtmf_error = exc


async def test_clear_flushes_the_provider_and_answers_pending_marks(server: StreamServer) -> None:
    server.hub.app_factory = lambda settings, session, pid: BargeInApp()
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, peer) as ws:
        for _ in range(5):
            assert (await recv_json(ws))["event"] == "media"
        await ws.send(peer.mark("end-of-prompt"))  # after 3 s of prompt
        await ws.send(peer.dtmf("#"))
        started = time.monotonic()
        after: list[str] = []
        while True:
            message = await recv_json(ws)
            after.append(message["event"])
            if message["event"] == "clear":
                break
        assert message == {"event": "clear", "streamSid": peer.stream_sid}
        assert after.count("media") <= 25  # only what was in flight (not the 3 s prompt)
        assert await recv_json(ws) == {
            "event": "mark",
            "streamSid": peer.stream_sid,
            "mark": {"name": "end-of-prompt"},
        }
        assert time.monotonic() - started < 2.0  # not after the 3 s prompt
        # The prompt is gone: no more audio.
        with pytest.raises(TimeoutError):
            await recv_json(ws, timeout=0.3)
        assert isinstance(BargeInApp.dtmf_error, RuntimeError)  # Twilio cannot take DTMF
        await ws.send(peer.stop())
        await closed_with(ws)


async def test_other_tracks_are_not_given_to_the_app(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, peer) as ws:
        for frame in tone_frames(1000, 10):
            await ws.send(peer.media(frame, track="outbound"))
        await ws.send(peer.stop())
        await closed_with(ws)
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["quality"]["packets_received"] == 0


# -- refusals -----------------------------------------------------------------------------------


async def refused(server: StreamServer, url: str, *messages: str) -> tuple[int, str]:
    async with websockets.connect(url, open_timeout=WAIT) as ws:
        for message in messages:
            await ws.send(message)
        return await closed_with(ws)


async def test_wrong_missing_and_foreign_tokens_are_refused_with_4401(
    server: StreamServer,
) -> None:
    session = server.create()
    other = server.create()
    for token in ("not-the-token", None, other.stream_token):
        peer = TwilioPeer(token)
        code = await refused(server, server.url(session.id), peer.connected(), peer.start())
        assert code == (4401, "invalid-token")
    peer = TwilioPeer(session.stream_token)
    unknown = "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"
    assert await refused(server, server.url(unknown), peer.start()) == (4401, "invalid-token")
    # Nothing is published for someone who does not hold the token.
    assert server.events == []
    assert server.hub.refused["invalid-token"] == 4


async def test_an_expired_token_is_refused_with_4401_token_expired(server: StreamServer) -> None:
    ttl = server.settings.streams.token_ttl
    assert ttl == 86400  # the default: a day
    fresh = server.create()
    created = server.sessions._clock
    server.sessions._clock = lambda: created() - timedelta(seconds=ttl + 60)
    try:
        old = server.create()
    finally:
        server.sessions._clock = created
    view = server.sessions.describe(old, 0)
    assert view.stream.expires_at == old.created_at + timedelta(seconds=ttl)
    peer = TwilioPeer(old.stream_token)
    code = await refused(server, server.url(old.id), peer.connected(), peer.start())
    assert code == (4401, "token-expired")
    assert server.hub.refused["token-expired"] == 1
    # A token within its lifetime still admits its stream: it ends with the peer's stop.
    peer = TwilioPeer(fresh.stream_token)
    code = await refused(server, server.url(fresh.id), peer.connected(), peer.start(), peer.stop())
    assert code[0] not in (4401, 4403), code
    assert server.hub.refused == {"token-expired": 1}


async def test_ended_session_refuses_with_4403(server: StreamServer) -> None:
    session = server.create()
    await server.sessions.end(session.id)
    peer = TwilioPeer(session.stream_token)
    code = await refused(server, server.url(session.id), peer.connected(), peer.start())
    assert code == (4403, "session-ended")
    failed = await server.wait_event(lambda e: e.type == "session.provider.failed")
    assert failed.data["reason"] == "session-ended"


async def test_a_stream_connects_once_and_a_call_has_one_live_stream(
    server: StreamServer,
) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    ws = await open_twilio(server, session, peer)
    await ws.send(peer.mark("up"))
    await recv_json(ws)  # admitted
    # Same call, another stream, while the first is live.
    twin = TwilioPeer(session.stream_token)
    twin.call_sid = peer.call_sid
    code = await refused(server, server.url(session.id), twin.connected(), twin.start())
    assert code == (4409, "call-has-stream")
    await ws.send(peer.stop())
    await closed_with(ws)
    # The same stream again (a replayed start), after it ended.
    replay = TwilioPeer(session.stream_token)
    replay.stream_sid, replay.call_sid = peer.stream_sid, peer.call_sid
    code = await refused(server, server.url(session.id), replay.connected(), replay.start())
    assert code == (4409, "stream-reused")
    # A new stream of the same call, once the first has gone, is fine.
    again = TwilioPeer(session.stream_token)
    again.call_sid = peer.call_sid
    async with await open_twilio(server, session, again) as ws2:
        await ws2.send(again.mark("up"))
        assert (await recv_json(ws2))["event"] == "mark"


@pytest.mark.parametrize("settings_overrides", [{"streams": {"start_timeout": 0.3}}])
async def test_no_start_times_out_with_4408(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    assert await refused(server, server.url(session.id), peer.connected()) == (4408, "no-start")


async def test_protocol_errors_close_with_4400(server: StreamServer) -> None:
    session = server.create()
    url = server.url(session.id)
    assert await refused(server, url, "not json") == (4400, "bad-message")
    assert await refused(server, url + "?provider=carrier-pigeon") == (4400, "unknown-provider")
    peer = TwilioPeer(session.stream_token)
    code = await refused(server, url, peer.start(encoding="audio/x-amr"))
    assert code == (4400, "unsupported-format")


@pytest.mark.parametrize("settings_overrides", [{"sip": {"max_calls_per_session": 1}}])
async def test_a_session_has_at_most_max_calls_streams(server: StreamServer) -> None:
    session = server.create()
    first = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, first) as ws:
        await ws.send(first.mark("up"))
        await recv_json(ws)
        second = TwilioPeer(session.stream_token)
        code = await refused(server, server.url(session.id), second.start())
        assert code == (4429, "too-many-streams")


@pytest.mark.parametrize("settings_overrides", [{"twilio": {"auth_token": "twilio-auth-token"}}])
async def test_twilio_signature_is_checked_when_an_auth_token_is_set(
    server: StreamServer,
) -> None:
    session = server.create()
    url = server.url(session.id)
    peer = TwilioPeer(session.stream_token)
    assert await refused(server, url, peer.start()) == (4401, "invalid-signature")
    bad = twilio_signature("another-token", url)
    async with websockets.connect(url, additional_headers={"X-Twilio-Signature": bad}) as ws:
        await ws.send(TwilioPeer(session.stream_token).start())
        assert await closed_with(ws) == (4401, "invalid-signature")
    # Twilio signs the public wss:// URL it was given; behind a proxy that is not ours.
    good = twilio_signature("twilio-auth-token", url.replace("ws://", "wss://"))
    peer = TwilioPeer(session.stream_token)
    async with websockets.connect(url, additional_headers={"X-Twilio-Signature": good}) as ws:
        await ws.send(peer.start())
        await ws.send(peer.mark("up"))
        assert (await recv_json(ws))["mark"]["name"] == "up"


async def test_ending_the_session_closes_its_streams(server: StreamServer) -> None:
    session = server.create()
    peer = TwilioPeer(session.stream_token)
    ws = await open_twilio(server, session, peer)
    await ws.send(peer.mark("up"))
    await recv_json(ws)
    async with server.http() as api:
        response = await api.post(f"/v1/sessions/{session.id}/end")
        assert response.status_code == 200
    assert await closed_with(ws) == (1000, "session-ended")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["reason"] == "session-ended"
    ended = await server.wait_event(lambda e: e.type == "session.ended")
    assert server.events.index(gone) < server.events.index(ended)
    (participant,) = ended.data["participants"]
    assert participant["participant_id"] == peer.stream_sid
    assert participant["provider"]["type"] == "twilio"


def test_tone_frames_are_what_they_claim() -> None:
    # The test's own encoder, checked against its decoder: a broken helper would let a broken
    # endpoint pass.
    decoded = ulaw_decode(b"".join(tone_frames(1000, 10)))
    assert abs(dominant_frequency(decoded, 8000) - 1000) < 10
    assert np.max(np.abs(decoded)) > 6000
    assert json.loads(TwilioPeer("t").start())["start"]["customParameters"] == {"token": "t"}


async def test_the_sessions_own_app_records_the_stream(server: StreamServer) -> None:
    session = server.create(mode="transcription", media={"app": "record"})
    peer = TwilioPeer(session.stream_token)
    async with await open_twilio(server, session, peer) as ws:
        for frame in tone_frames(1000, 25):
            await ws.send(peer.media(frame))
        await ws.send(peer.stop())
        assert await closed_with(ws) == (1000, "stream-stopped")
    await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    path = server.settings.data_dir / "recordings" / session.id / f"{peer.stream_sid}.wav"
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 16000
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(samples) >= 23 * 320  # 25 frames less the resampler's delay
    assert abs(dominant_frequency(samples[640:], 16000) - 1000) < 20
