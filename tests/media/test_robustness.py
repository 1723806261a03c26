"""Random, truncated and corrupted datagrams never break a stream (hypothesis)."""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipua.media import EchoApp, MediaClock
from sipua.media.ports import PortAllocator
from sipua.media.rtp import build_rtp
from sipua.media.srtp import SrtpTransform
from sipua.media.stream import MediaStream

from .helpers import PCMU, crypto, params, port_range

PEER = ("127.0.0.1", 9)
SUITE = "AES_CM_128_HMAC_SHA1_80"


def _valid(seq: int) -> bytes:
    return build_rtp(0, 0, seq, 160 * seq, 0x5151, b"\xff" * 160)


def _drops(stats: dict) -> int:
    return sum(
        stats[k]
        for k in (
            "malformed_packets",
            "unknown_payload_type",
            "srtp_auth_failures",
            "srtp_replays",
            "foreign_source_drops",
            "sequence_jumps",
        )
    )


async def _stream(secure: bool):
    low, high = port_range()
    pair = PortAllocator("127.0.0.1", low, high).allocate()
    stream = MediaStream(pair, clock=MediaClock(), app=EchoApp(fast_path=False))
    await stream.open()
    key = crypto(SUITE) if secure else None
    stream.start(params(PCMU, PEER[1], remote=key))
    return stream, SrtpTransform(local=key, remote=None)


datagrams = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda n, d: _valid(n)[:d], st.integers(0, 65535), st.integers(0, 171)),
    st.builds(
        lambda n, i, b: bytes(x ^ b if k == i else x for k, x in enumerate(_valid(n))),
        st.integers(0, 65535),
        st.integers(0, 171),
        st.integers(1, 255),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(datagrams, min_size=1, max_size=30), st.booleans())
def test_garbage_is_dropped_counted_and_the_stream_keeps_working(packets, secure):
    async def run():
        stream, peer_srtp = await _stream(secure)
        try:
            before = stream.stats()
            for data in packets:
                if secure:
                    # Junk protected with the right key exercises the parser
                    # behind SRTP; unprotected junk must fail authentication.
                    protected = peer_srtp.protect_rtp(data) if len(data) >= 12 else None
                    stream.receive_rtp(protected or data, PEER)
                    stream.receive_rtp(data, PEER)
                else:
                    stream.receive_rtp(data, PEER)
                stream.receive_rtcp(data, PEER)
            after = stream.stats()
            fed = len(packets) * (3 if secure else 2)  # RTP (x2 when secure) + RTCP
            accepted = after["packets_received"] - before["packets_received"]
            accepted += after["rtcp_received"] - before["rtcp_received"]
            # Every datagram is either accepted or counted as a drop (a short
            # telephone-event payload is both received and counted as malformed).
            assert accepted + _drops(after) - _drops(before) >= fed
            assert accepted + _drops(after) - _drops(before) <= 2 * fed
            # Still alive: a genuine packet from the peer is accepted.
            genuine = build_rtp(0, 0, 1, 160, 0x7777, b"\xff" * 160)
            received = stream.stats()["packets_received"]
            stream.receive_rtp(peer_srtp.protect_rtp(genuine) if secure else genuine, PEER)
            assert stream.stats()["packets_received"] == received + 1
            assert stream.stats()["remote_ssrc"] == 0x7777
            stream._on_tick(stream.clock.tick, stream.clock.loop.time())
        finally:
            await stream.close()

    asyncio.run(run())


def test_every_kind_of_drop_is_counted():
    async def run():
        stream, peer_srtp = await _stream(True)
        try:
            stream.receive_rtp(b"\x80", PEER)  # not even a header
            stream.receive_rtp(_valid(1), PEER)  # plain RTP into an SRTP stream
            protected = peer_srtp.protect_rtp(_valid(2))
            stream.receive_rtp(protected, PEER)
            stream.receive_rtp(protected, PEER)  # replay
            stream.receive_rtp(peer_srtp.protect_rtp(build_rtp(99, 0, 3, 480, 0x5151, b"x")), PEER)
            stream.receive_rtp(peer_srtp.protect_rtp(b"\x40" + bytes(20)), PEER)
            stream.receive_rtcp(b"\x81\xc9\x00\x07", PEER)
            stats = stream.stats()
            assert stats["packets_received"] == 1
            assert stats["srtp_replays"] == 1
            assert stats["unknown_payload_type"] == 1
            assert stats["srtp_auth_failures"] >= 1
            assert stats["malformed_packets"] + stats["srtp_auth_failures"] >= 4
        finally:
            await stream.close()

    asyncio.run(run())
