"""Telnyx media streaming against the stream endpoint: the encoding read from ``media_format``
(PCMU, PCMA, G722, L16), out-of-order chunks reordered (by ``chunk``, else by
``sequence_number``), DTMF, errors, marks, clear, and the token in its several places."""

from __future__ import annotations

import asyncio
import base64
import fractions
import json
import time
from typing import Any

import av
import numpy as np
import pytest
import websockets

from sipua.media.apps import MediaApp

from .audio import (
    alaw_decode,
    alaw_encode,
    dominant_frequency,
    from_pcm16be,
    purity,
    rms,
    tone,
    ulaw_decode,
    ulaw_encode,
)
from .harness import WAIT, StreamServer, closed_with, recv_json
from .peers import TelnyxPeer


async def connect(server: StreamServer, session: Any, peer: TelnyxPeer, query: str = "") -> Any:
    ws = await websockets.connect(server.url(session.id, query), open_timeout=WAIT)
    await ws.send(peer.connected())
    await ws.send(peer.start())
    return ws


async def collect_media(ws: Any, count: int) -> list[bytes]:
    out = []
    while len(out) < count:
        message = await recv_json(ws)
        assert set(message) == {"event", "media"}, message  # Telnyx's shape: no stream id
        assert message["event"] == "media"
        assert set(message["media"]) == {"payload"}
        out.append(base64.b64decode(message["media"]["payload"]))
    return out


ENCODERS = {"PCMU": (ulaw_encode, ulaw_decode), "PCMA": (alaw_encode, alaw_decode)}


@pytest.mark.parametrize(
    ("inbound", "back"), [("PCMU", None), ("PCMA", None), ("PCMA", "PCMA"), ("PCMU", "PCMA")]
)
async def test_g711_in_the_announced_encoding_back_in_the_bidirectional_codec(
    server: StreamServer, inbound: str, back: str | None
) -> None:
    encode = ENCODERS[inbound][0]
    # Back in bidirectional_codec when the TeXML/Call Control parameters say so, else in
    # Telnyx's default bidirectional codec, PCMU.
    decode, other = (alaw_decode, ulaw_decode) if back == "PCMA" else (ulaw_decode, alaw_decode)
    custom = {"bidirectional_codec": back} if back else {}
    session = server.create()
    peer = TelnyxPeer(session.stream_token, encoding=inbound, custom=custom)
    ws = await connect(server, session, peer)
    samples = tone(1000, 800, 8000)
    for chunk in range(40):
        await ws.send(peer.media(encode(samples[chunk * 160 : (chunk + 1) * 160]), chunk + 1))
    payloads = await collect_media(ws, 35)
    assert {len(p) for p in payloads} == {160}
    echoed = decode(b"".join(payloads[2:]))
    assert abs(dominant_frequency(echoed, 8000) - 1000) < 20
    # A clean tone in that law; decoded with the other law the same bytes are distorted.
    assert purity(echoed, 8000, 1000) > 0.98
    assert purity(other(b"".join(payloads[2:])), 8000, 1000) < 0.95
    await ws.send(peer.stop())
    assert await closed_with(ws) == (1000, "stream-stopped")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.provider["type"] == "telnyx"
    assert gone.provider["call_control_id"] == peer.call_control_id
    assert gone.provider["stream_id"] == peer.stream_id
    assert gone.data["quality"]["codec"] == (back or "PCMU")
    assert gone.data["stream"]["inbound_codec"] == inbound


async def test_l16_at_16k_in_network_byte_order(server: StreamServer) -> None:
    session = server.create()
    peer = TelnyxPeer(
        session.stream_token,
        encoding="L16",
        sample_rate=16000,
        custom={"bidirectional_codec": "L16", "bidirectional_sampling_rate": "16000"},
    )
    ws = await connect(server, session, peer)
    samples = tone(1000, 800, 16000)
    for chunk in range(40):
        frame = samples[chunk * 320 : (chunk + 1) * 320].astype(">i2").tobytes()
        await ws.send(peer.media(frame, chunk + 1))
    payloads = await collect_media(ws, 35)
    assert {len(p) for p in payloads} == {640}  # 20 ms of 16-bit PCM at 16 kHz
    echoed = from_pcm16be(b"".join(payloads))
    assert abs(dominant_frequency(echoed, 16000) - 1000) < 20
    # Read as little-endian the same bytes are not a 1 kHz tone.
    swapped = echoed.byteswap()
    assert abs(dominant_frequency(swapped, 16000) - 1000) > 50
    await ws.send(peer.stop())
    await closed_with(ws)


async def test_out_of_order_chunks_are_put_back_in_order(server: StreamServer) -> None:
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    ws = await connect(server, session, peer)
    # Each chunk's loudness says its number; swap neighbours in every pair after the first.
    levels = {n: 1000.0 * n for n in range(1, 21)}
    order = [1] + [n for pair in zip(range(3, 20, 2), range(2, 19, 2), strict=True) for n in pair]
    order.append(20)
    assert sorted(order) == list(range(1, 21)) and order[1:3] == [3, 2]
    for n in order:
        frame = ulaw_encode(tone(1000, 20, 8000, amplitude=levels[n], phase=(n - 1) * 160))
        await ws.send(peer.media(frame, n))
    payloads = await collect_media(ws, 17)
    loudness = [rms(ulaw_decode(p)) for p in payloads]
    # Echoed in chunk order: loudness rises frame after frame (a swapped pair would dip).
    rises = [b - a for a, b in zip(loudness[1:], loudness[2:], strict=False)]
    assert min(rises) > 0, loudness
    await ws.send(peer.stop())
    await closed_with(ws)
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["quality"]["packets_received"] == 20
    assert gone.data["stream"]["out_of_order"] == 9  # 3, 5, 7 … 19 came early


async def test_a_lost_chunk_is_given_up_on_within_the_window(server: StreamServer) -> None:
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    ws = await connect(server, session, peer)
    frames = tone(1000, 400, 8000)
    for n in range(1, 21):
        if n == 5:
            continue  # lost
        await ws.send(peer.media(ulaw_encode(frames[(n - 1) * 160 : n * 160]), n))
    # 19 chunks in, one lost: the window releases the rest (with 20 ms of silence for the gap)
    # without waiting for the end of the stream.
    payloads = await collect_media(ws, 17)
    assert len(payloads) == 17
    await ws.send(peer.stop())
    await closed_with(ws)


async def test_dtmf_error_and_token_in_query_or_auth_field(server: StreamServer) -> None:
    session = server.create()
    # Token in the query string (Telnyx allows one), with the provider named.
    peer = TelnyxPeer(None)
    ws = await connect(server, session, peer, f"provider=telnyx&token={session.stream_token}")
    await ws.send(peer.error())  # reported by Telnyx: logged, the stream goes on
    await ws.send(peer.dtmf("7"))
    event = await server.wait_event(lambda e: e.type == "session.dtmf")
    assert event.data["digit"] == "7"
    assert event.data["source"] == "telnyx"
    assert event.provider["call_control_id"] == peer.call_control_id
    await ws.send(peer.stop())
    assert await closed_with(ws) == (1000, "stream-stopped")
    # Token as the streaming auth token Telnyx repeats in its connected frame.
    peer = TelnyxPeer(None, auth_token=session.stream_token)
    async with await connect(server, session, peer) as ws:
        await ws.send(peer.stop())
        assert await closed_with(ws) == (1000, "stream-stopped")
    peer = TelnyxPeer("wrong")
    async with await connect(server, session, peer) as ws:
        assert await closed_with(ws) == (4401, "invalid-token")


async def test_unsupported_encoding_is_refused(server: StreamServer) -> None:
    session = server.create()
    peer = TelnyxPeer(session.stream_token, encoding="AMR-WB", sample_rate=16000)
    async with await connect(server, session, peer) as ws:
        assert await closed_with(ws) == (4400, "unsupported-format")
    failed = await server.wait_event(lambda e: e.type == "session.provider.failed")
    assert failed.provider["type"] == "telnyx"
    assert failed.data["reason"] == "unsupported-format"


# -- G.722 -------------------------------------------------------------------------------------------
#
# G.722 by PyAV's own codec context (not through sipua's wire/codec layers): 16 kHz audio, 8 kHz RTP
# clock, 160 octets per 20 ms.


def g722_encode(samples: np.ndarray) -> list[bytes]:
    """16 kHz int16 samples -> 20 ms G.722 payloads."""
    encoder = av.CodecContext.create("g722", "w")
    encoder.sample_rate = 16000
    encoder.format = "s16"
    encoder.layout = "mono"
    out: list[bytes] = []
    for start in range(0, len(samples) - len(samples) % 320, 320):
        frame = av.AudioFrame(format="s16", layout="mono", samples=320)
        frame.planes[0].update(samples[start : start + 320].astype("<i2").tobytes())
        frame.sample_rate = 16000
        frame.pts = start
        frame.time_base = fractions.Fraction(1, 16000)
        out.extend(bytes(packet) for packet in encoder.encode(frame))
    return out


def g722_decode(payloads: list[bytes]) -> np.ndarray:
    """G.722 payloads -> 16 kHz int16 samples."""
    decoder = av.CodecContext.create("g722", "r")
    decoder.sample_rate = 16000
    decoder.layout = "mono"
    pcm = bytearray()
    for payload in payloads:
        for frame in decoder.decode(av.Packet(payload)):
            assert frame.sample_rate == 16000 and frame.format.name == "s16"
            pcm += bytes(frame.planes[0])[: frame.samples * 2]
    return np.frombuffer(bytes(pcm), dtype="<i2").astype(np.int16)


def test_g722_helpers_are_what_they_claim() -> None:
    # A broken helper would let a broken endpoint pass: 5 kHz survives G.722 (wideband), and the
    # payloads are 160 octets per 20 ms.
    payloads = g722_encode(tone(5000, 400, 16000))
    assert len(payloads) == 20 and {len(p) for p in payloads} == {160}
    decoded = g722_decode(payloads)
    assert len(decoded) == 20 * 320
    assert abs(dominant_frequency(decoded[320:], 16000) - 5000) < 20
    assert purity(decoded[320:], 16000, 5000) > 0.98


@pytest.mark.parametrize(
    ("back", "freq"),
    [("G722", 1000), ("G722", 5000), (None, 1000)],
    ids=["g722-back-1k", "g722-back-5k-wideband", "pcmu-back-by-default"],
)
async def test_g722_in_and_back_in_the_bidirectional_codec(
    server: StreamServer, back: str | None, freq: int
) -> None:
    custom = {"bidirectional_codec": back} if back else {}
    session = server.create()
    peer = TelnyxPeer(session.stream_token, encoding="G722", sample_rate=16000, custom=custom)
    ws = await connect(server, session, peer)
    frames = g722_encode(tone(freq, 800, 16000))
    assert len(frames) == 40
    for chunk, frame in enumerate(frames, start=1):
        await ws.send(peer.media(frame, chunk))
    payloads = await collect_media(ws, 35)
    # G.722 and PCMU both take 160 octets per 20 ms: the content tells them apart.
    assert {len(p) for p in payloads} == {160}
    if back == "G722":
        echoed = g722_decode(payloads)[640:]
        # At 16 kHz (a rate mix-up would move the tone an octave), and wideband: 5 kHz is above
        # what 8 kHz audio can carry.
        assert abs(dominant_frequency(echoed, 16000) - freq) < 20
        assert purity(echoed, 16000, freq) > 0.9
        # The same bytes read as μ-law are no tone at all.
        garbled = ulaw_decode(b"".join(payloads[2:]))
        assert purity(garbled, 8000, dominant_frequency(garbled, 8000)) < 0.5
    else:
        echoed = ulaw_decode(b"".join(payloads[2:]))
        assert abs(dominant_frequency(echoed, 8000) - freq) < 20
        assert purity(echoed, 8000, freq) > 0.98
        # Not G.722 (the inbound encoding) sent back: read as G.722 the bytes are not the tone.
        assert purity(g722_decode(payloads[2:]), 16000, freq) < 0.5
    await ws.send(peer.stop())
    assert await closed_with(ws) == (1000, "stream-stopped")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["stream"]["inbound_codec"] == "G722"
    assert gone.data["quality"]["codec"] == (back or "PCMU")
    assert gone.data["quality"]["packets_received"] == 40
    assert gone.data["stream"]["decode_errors"] == 0


# -- marks and clear -----------------------------------------------------------------------------


def telnyx_mark(peer: TelnyxPeer, name: str) -> str:
    """A ``mark`` frame as Telnyx sends it (its ``mark`` callback)."""
    return json.dumps(
        {
            "event": "mark",
            "sequence_number": peer._seq(),
            "stream_id": peer.stream_id,
            "mark": {"name": name},
        }
    )


async def test_mark_is_answered_after_the_audio_before_it(server: StreamServer) -> None:
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    async with await connect(server, session, peer) as ws:
        # Nothing queued: the mark comes straight back, in Telnyx's shape (no stream id).
        await ws.send(telnyx_mark(peer, "empty"))
        assert await recv_json(ws) == {"event": "mark", "mark": {"name": "empty"}}
        samples = tone(1000, 400, 8000)
        for chunk in range(1, 21):
            frame = ulaw_encode(samples[(chunk - 1) * 160 : chunk * 160])
            await ws.send(peer.media(frame, chunk))
        await ws.send(telnyx_mark(peer, "after-audio"))
        started = time.monotonic()
        media_before = 0
        async with asyncio.timeout(WAIT):
            while True:
                message = await recv_json(ws)
                if message["event"] == "mark":
                    break
                assert message["event"] == "media"
                media_before += 1
        assert message == {"event": "mark", "mark": {"name": "after-audio"}}
        # The echo of the 20 chunks (less the resamplers' frame delays) came first, paced.
        assert media_before >= 17
        assert time.monotonic() - started >= (media_before - 3) * 0.020
        await ws.send(peer.stop())
        assert await closed_with(ws) == (1000, "stream-stopped")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["stream"]["marks_answered"] == 2


class PromptThenBargeIn(MediaApp):
    """Queues a 3 s prompt on start; a key press interrupts it (clear) and tries to send DTMF."""

    name = "telnyx-barge-in"
    needs_audio = False

    def __init__(self) -> None:
        self.dtmf_error: Exception | None = None

    def on_start(self, participant: Any) -> None:
        participant.send_audio(tone(1000, 3000, participant.sample_rate).astype("<i2").tobytes())

    def on_dtmf(self, participant: Any, event: Any) -> None:
        participant.clear()
        try:
            participant.send_dtmf("1")
        except RuntimeError as exc:
            self.dtmf_error = exc


async def test_clear_flushes_queued_audio_and_answers_pending_marks(server: StreamServer) -> None:
    apps: list[PromptThenBargeIn] = []

    def factory(settings: Any, session: Any, pid: str) -> PromptThenBargeIn:
        apps.append(PromptThenBargeIn())
        return apps[-1]

    server.hub.app_factory = factory
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    async with await connect(server, session, peer) as ws:
        for _ in range(5):
            assert (await recv_json(ws))["event"] == "media"
        await ws.send(telnyx_mark(peer, "end-of-prompt"))  # after the 3 s prompt
        await ws.send(peer.dtmf("#"))
        started = time.monotonic()
        after: list[str] = []
        async with asyncio.timeout(WAIT):
            while True:
                message = await recv_json(ws)
                after.append(message["event"])
                if message["event"] == "clear":
                    break
        assert message == {"event": "clear"}
        assert after.count("media") <= 25  # only what was in flight, not the 3 s prompt
        assert await recv_json(ws) == {"event": "mark", "mark": {"name": "end-of-prompt"}}
        assert time.monotonic() - started < 2.0
        # The rest of the prompt is gone.
        with pytest.raises(TimeoutError):
            await recv_json(ws, timeout=0.3)
        # Telnyx cannot take DTMF from a stream.
        assert isinstance(apps[0].dtmf_error, RuntimeError)
        await ws.send(peer.stop())
        assert await closed_with(ws) == (1000, "stream-stopped")
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["stream"]["clears"] == 1
    assert gone.data["stream"]["packets_sent"] < 3000 / 20 / 2


# -- ordering by sequence_number --------------------------------------------------------------------


def media_without_chunk(peer: TelnyxPeer, payload: bytes, sequence: int) -> str:
    """A media frame carrying only the message's ``sequence_number`` to order it by."""
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(sequence),
            "media": {"track": "inbound", "payload": base64.b64encode(payload).decode("ascii")},
            "stream_id": peer.stream_id,
        }
    )


def numbered_frames(count: int) -> dict[int, bytes]:
    """Frame ``n`` (1-based) of a continuous 1 kHz tone whose loudness says its number."""
    return {
        n: ulaw_encode(tone(1000, 20, 8000, amplitude=1000.0 * n, phase=(n - 1) * 160))
        for n in range(1, count + 1)
    }


async def test_without_chunk_frames_are_put_in_sequence_number_order(
    server: StreamServer,
) -> None:
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    ws = await connect(server, session, peer)  # start is sequence_number 1
    frames = numbered_frames(20)
    order = [1] + [n for pair in zip(range(3, 20, 2), range(2, 19, 2), strict=True) for n in pair]
    order.append(20)
    assert sorted(order) == list(range(1, 21)) and order[1:3] == [3, 2]
    for n in order:
        await ws.send(media_without_chunk(peer, frames[n], n + 1))
    payloads = await collect_media(ws, 17)
    loudness = [rms(ulaw_decode(p)) for p in payloads]
    rises = [b - a for a, b in zip(loudness[1:], loudness[2:], strict=False)]
    assert min(rises) > 0, loudness
    await ws.send(peer.stop())
    await closed_with(ws)
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    assert gone.data["quality"]["packets_received"] == 20
    assert gone.data["stream"]["out_of_order"] == 9
    assert gone.data["stream"]["chunks_lost"] == 0


async def test_sequence_numbers_of_other_messages_are_not_lost_audio(
    server: StreamServer,
) -> None:
    # sequence_number counts every message Telnyx sends: a DTMF (or a frame of another track)
    # between media frames takes a number that no audio will ever fill.
    session = server.create()
    peer = TelnyxPeer(session.stream_token)
    ws = await connect(server, session, peer)
    frames = numbered_frames(20)
    sequence = 1
    for n in range(1, 21):
        if n == 8:
            sequence += 1
            await ws.send(
                json.dumps(
                    {
                        "event": "dtmf",
                        "stream_id": peer.stream_id,
                        "sequence_number": str(sequence),
                        "dtmf": {"digit": "4"},
                    }
                )
            )
        if n == 14:
            sequence += 1
            other_track = media_without_chunk(peer, frames[1], sequence)
            await ws.send(other_track.replace('"inbound"', '"outbound"'))
        sequence += 1
        await ws.send(media_without_chunk(peer, frames[n], sequence))
    payloads = await collect_media(ws, 17)
    loudness = [rms(ulaw_decode(p)) for p in payloads]
    # No 20 ms of silence where the DTMF and the outbound frame were: loudness only rises.
    rises = [b - a for a, b in zip(loudness[1:], loudness[2:], strict=False)]
    assert min(rises) > 0, loudness
    await ws.send(peer.stop())
    await closed_with(ws)
    gone = await server.wait_event(lambda e: e.type == "session.provider.disconnected")
    stream = gone.data["stream"]
    assert stream["packets_received"] == 20
    assert stream["ignored_tracks"] == 1
    assert stream["dtmf_received"] == 1
    assert stream["chunks_lost"] == 0
    assert stream["gap_frames"] == 0
