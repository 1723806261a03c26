"""Random, truncated and forged RTP/SRTP/RTCP sent to the media ports of live calls.

The whole service (``sipua.service.server.start_service``: SIP, media engine, HTTP) runs
in the test's event loop, so the calls are real (SIP over UDP, RTP over UDP sockets on
loopback) and their media counters can be read. Each call is an echo session: audio
that keeps coming back after the hostile burst shows the call carries on.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import struct

import pytest
from integration.sipclient import AsyncUdpClient, sdp_offer

from sipua.media.rtp import build_rtp
from sipua.media.srtp import SrtpTransform
from sipua.service.config import load_settings
from sipua.service.models import SessionCreate
from sipua.service.server import start_service
from sipua.sip.rtp_params import CryptoParams

SUITE = "AES_CM_128_HMAC_SHA1_80"
SSRC = 0x5EC0_0001


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.queue.put_nowait(data)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))

    def drain(self) -> int:
        n = 0
        while not self.queue.empty():
            self.queue.get_nowait()
            n += 1
        return n

    async def receive(self, timeout: float = 3.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def endpoint() -> Endpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return protocol


def hostile_rtp(rng: random.Random, valid: bytes) -> bytes:
    """One of: random octets, a truncated packet, a broken header, an unknown payload type."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:
        return valid[: rng.randrange(0, 12)]  # shorter than a fixed header
    if kind == 2:
        return bytes([rng.choice((0x00, 0x40, 0xC0))]) + valid[1:]  # version 0, 1 or 3
    if kind == 3:
        return bytes([0x8F]) + valid[1:16]  # 15 CSRCs announced, not there
    if kind == 4:
        # Extension bit with a length running past the end.
        return bytes([0x90]) + valid[1:12] + b"\xbe\xde\xff\xff" + b"\x00" * 4
    if kind == 5:
        return bytes([0xA0]) + valid[1:-1] + b"\xff"  # padding longer than the packet
    if kind == 6:
        return valid[:1] + bytes([rng.choice((99, 127, 72))]) + valid[2:]  # unknown PT / RTCP-ish
    data = bytearray(valid)
    for _ in range(rng.randrange(1, 6)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def hostile_rtcp(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:  # SR header claiming more words than sent
        return struct.pack("!BBH", 0x81, 200, 0xFFFF) + rng.randbytes(rng.randrange(0, 40))
    if kind == 2:  # compound with a bad second packet
        return struct.pack("!BBHI", 0x80, 201, 1, SSRC) + struct.pack("!BBH", 0x3F, 203, 3)
    return struct.pack("!BBH", 0x80, 204, 0)[: rng.randrange(0, 4)]


def answer_port_and_crypto(body: bytes) -> tuple[int, CryptoParams | None]:
    text = body.decode()
    port = int(re.search(r"^m=audio (\d+) ", text, re.M).group(1))
    found = re.search(r"^a=crypto:(\d+) (\S+) inline:([A-Za-z0-9+/=]+)", text, re.M)
    crypto = None
    if found:
        crypto = CryptoParams(int(found.group(1)), found.group(2), base64.b64decode(found.group(3)))
    return port, crypto


def srtp_offer(port: int, key: bytes) -> bytes:
    inline = base64.b64encode(key).decode()
    return (
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        f"a=crypto:1 {SUITE} inline:{inline}\r\na=sendrecv\r\n"
    ).encode()


@pytest.fixture
async def service(tmp_path):
    low = random.randrange(40000, 59000) & ~1
    settings = load_settings(
        data_dir=tmp_path,
        api_key="test-key-0123456789abcdef",
        sip={"host": "127.0.0.1", "udp_port": 0, "tcp_port": 0, "transports": ["udp"]},
        http={"host": "127.0.0.1", "port": 0},
        media={"rtp_port_min": low, "rtp_port_max": low + 99},
    )
    running = await start_service(settings)
    try:
        yield running
    finally:
        await running.stop()


async def open_call(service, body: bytes, rtp_port: int):
    session = service.sessions.create(SessionCreate(mode="echo"))
    sip = AsyncUdpClient(("127.0.0.1", service.ports["udp"]))
    call = sip.new_call(f"sip:session_{session.id}@127.0.0.1:{service.ports['udp']}")
    ok = await sip.request(call.invite(body), timeout=5.0)
    assert ok.status == 200, ok.start
    await sip.send(call.ack(ok))
    (leg_call,) = [c for c in service.ua.uas.all_calls() if c.call_id == call.call_id]
    return sip, call, ok, leg_call


async def expect_echo(peer: Endpoint, send, seq0: int, count: int = 15) -> int:
    """Send ``count`` valid 20 ms packets; return how many packets came back meanwhile."""
    peer.drain()
    for i in range(count):
        send(seq0 + i)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)
    return peer.drain()


async def hang_up(sip: AsyncUdpClient, call) -> None:
    options = await sip.request(call.in_dialog("OPTIONS"))
    assert options.status == 200
    bye = await sip.request(call.bye())
    assert bye.status == 200
    sip.close()


async def test_plain_rtp_call_survives_garbage(service):
    peer = await endpoint()
    stranger = await endpoint()
    sip, call, ok, leg_call = await open_call(
        service, sdp_offer(peer.port, codecs="0 101"), peer.port
    )
    media_port, _ = answer_port_and_crypto(ok.body)
    payload = b"\xff" * 160

    def send(seq: int) -> None:
        peer.send(build_rtp(0, 0, seq, 160 * seq, SSRC, payload), media_port)

    assert await expect_echo(peer, send, 1) > 0  # the echo works before the attack
    rng = random.Random(4242)
    valid = build_rtp(0, 0, 100, 16000, SSRC, payload)
    for i in range(600):
        peer.send(hostile_rtp(rng, valid), media_port)
        peer.send(hostile_rtcp(rng), media_port + 1)
        if i % 10 == 0:
            stranger.send(rng.randbytes(rng.randrange(0, 200)), media_port)
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the loop read
    await asyncio.sleep(0.2)
    stats = leg_call.media.stats()
    assert stats["malformed_packets"] > 50, stats
    assert stats["unknown_payload_type"] > 0, stats
    received_before = stats["packets_received"]
    assert await expect_echo(peer, send, 20_000 // 160 + 200) > 0  # the call goes on
    after = leg_call.media.stats()
    assert after["packets_received"] > received_before
    assert after["app_errors"] == 0
    print(
        f"\nplain RTP call: {stats['malformed_packets']} malformed, "
        f"{stats['unknown_payload_type']} unknown PT, {stats['foreign_source_drops']} foreign "
        f"source, {stats['sequence_jumps']} sequence jumps dropped; echo continued"
    )
    await hang_up(sip, call)
    for p in (peer, stranger):
        p.transport.close()


async def test_srtp_call_survives_forgeries_and_replays(service):
    peer = await endpoint()
    key = os.urandom(30)
    mine = CryptoParams(1, SUITE, key)
    sip, call, ok, leg_call = await open_call(service, srtp_offer(peer.port, key), peer.port)
    media_port, theirs = answer_port_and_crypto(ok.body)
    assert theirs is not None and theirs.suite == SUITE
    protect = SrtpTransform(local=mine, remote=None)
    unprotect = SrtpTransform(local=None, remote=theirs)
    payload = b"\xff" * 160
    sent: list[bytes] = []

    def send(seq: int) -> None:
        packet = protect.protect_rtp(build_rtp(0, 0, seq, 160 * seq, SSRC, payload))
        sent.append(packet)
        peer.send(packet, media_port)

    assert await expect_echo(peer, send, 1) > 0
    echoed = await asyncio.wait_for(_next_echo(peer, send, 16), 3)
    assert unprotect.unprotect_rtp(echoed) is not None  # sipua's answer really is SRTP

    rng = random.Random(99)
    for i in range(400):
        choice = i % 4
        if choice == 0:  # tampered: authentication fails
            forged = bytearray(rng.choice(sent))
            forged[rng.randrange(12, len(forged))] ^= 0x01
            peer.send(bytes(forged), media_port)
        elif choice == 1:  # replayed
            peer.send(rng.choice(sent), media_port)
        elif choice == 2:  # truncated or random
            peer.send(rng.choice(sent)[: rng.randrange(0, 20)], media_port)
        else:
            peer.send(hostile_rtcp(rng), media_port + 1)
        if i % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    stats = leg_call.media.stats()
    assert stats["srtp_auth_failures"] > 20, stats
    assert stats["srtp_replays"] > 20, stats
    assert stats["malformed_packets"] > 0, stats
    before = stats["packets_received"]
    assert await expect_echo(peer, send, 500) > 0
    assert leg_call.media.stats()["packets_received"] > before
    print(
        f"\nSRTP call: {stats['srtp_auth_failures']} forged, {stats['srtp_replays']} replayed, "
        f"{stats['malformed_packets']} malformed dropped; echo continued"
    )
    await hang_up(sip, call)
    peer.transport.close()


async def _next_echo(peer: Endpoint, send, seq: int) -> bytes:
    peer.drain()
    while True:
        send(seq)
        seq += 1
        try:
            return await peer.receive(0.05)
        except TimeoutError:
            continue
