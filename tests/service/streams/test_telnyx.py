"""Telnyx media streaming against the stream endpoint: the encoding read from ``media_format``
(PCMU, PCMA, L16), out-of-order chunks reordered, DTMF, errors, clear, and the token in its
several places."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import websockets

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
