"""SDP offer/answer branches and the record/play media apps, end to end through ``sipua serve``.

The caller is the test's own SIP client (``sipclient.py``) with an RTP endpoint of its own
(:class:`RtpPeer`: a PCMU or PCMA tone out every 20 ms, every packet that comes back kept, and
RTCP answered on request), or baresip. G.711 μ-law and A-law are coded here with numpy
(ITU-T G.711), independently of sipua's codecs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import socket
import struct
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import websockets

from sipua.media.concealment import FADE_FRAMES
from sipua.media.stats import estimate_mos
from tests.service.streams.peers import TwilioPeer

from .baresip import (
    Baresip,
    BaresipConfig,
    active,
    dominant_frequency,
    media_env,
    read_wav,
    rms,
    session_events,
    tone_share,
    wait_events,
)
from .conftest import StartService, assert_clean_stderr
from .service import Service, start_service
from .sipclient import SipClient, SipMessage, UacCall, build_response

pytestmark = pytest.mark.peer

PCMU, PCMA, OPUS = 0, 8, 111  # static PTs; the PT the tests offer Opus on


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("apps") / "data", env=media_env())
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)


# -- G.711 μ-law (ITU-T G.711, the segment/bias form) ------------------------------------------

_BIAS, _CLIP = 0x84, 32635


def ulaw_encode(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    magnitude = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + _BIAS << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float64)


# -- G.711 A-law (ITU-T G.711: 13-bit magnitude, segment/mantissa, even bits inverted) -------

_ALAW_SEGMENT_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def alaw_encode(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32) >> 3  # 13 bits
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    x = np.where(negative, -x - 1, x)
    segment = np.searchsorted(_ALAW_SEGMENT_END, x)
    mantissa = np.where(segment < 2, x >> 1, x >> np.maximum(segment, 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    segment = (a >> 4) & 0x07
    t = (a & 0x0F) << 4
    t = np.where(segment == 0, t + 8, (t + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.float64)


DECODERS = {PCMU: ulaw_decode, PCMA: alaw_decode}


def sine(hz: float, seconds: float, rate: int = 8000, level: float = 0.3) -> np.ndarray:
    n = np.arange(int(seconds * rate))
    return (32767 * level * np.sin(2 * np.pi * hz * n / rate)).astype(np.int16)


# -- RTP --------------------------------------------------------------------------------------


@dataclass
class Received:
    arrival: float
    pt: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970 (RFC 3550 §4)
RTCP_SR, RTCP_SDES = 200, 202
PROBE = bytes(range(160))  # an audio payload no tone packet carries: its echo marks a point


def ntp_middle_now() -> int:
    """The middle 32 bits of the current NTP time, what LSR carries (RFC 3550 §6.4.1)."""
    ntp = time.time() + NTP_EPOCH_OFFSET
    seconds = int(ntp)
    return ((seconds & 0xFFFF) << 16) | int((ntp - seconds) * 65536)


@dataclass
class SenderReport:
    """An RTCP SR that came in: when, from which SSRC, and its NTP time as LSR."""

    arrival: float
    ssrc: int
    lsr: int


class RtpPeer:
    """The caller's RTP: a tone every 20 ms to ``remote`` (when sending) in ``pt`` (PCMU or PCMA,
    switchable mid-call), and a log of every RTP packet that arrives. A thread does both, until
    :meth:`close`.

    With :meth:`answer_rtcp` (for rtcp-mux: RTCP on the RTP port), every SR that arrives is
    answered ``hold`` seconds later with an SR of ours whose report block carries that SR's LSR
    and a DLSR of ``hold - hidden``: the far end must measure ``hidden`` plus the real round trip
    as its RTT (RFC 3550 §6.4.1). The audio packet after each answer carries :data:`PROBE`, so
    the echo of that payload shows that the far end has read the answer (same socket, in order).
    """

    REPORTED_LOST, REPORTED_JITTER = 3, 80  # what our report block says of sipua's stream

    def __init__(self, tone_hz: float = 440.0) -> None:
        self.ssrc = random.getrandbits(32)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.remote: tuple[str, int] | None = None
        self.sending = True
        self.pt = PCMU  # the payload type (and so the coding) of the tone
        self.received: list[Received] = []
        self.sent = 0
        one_second = sine(tone_hz, 1.0)  # repeats seamlessly
        self._tones = {PCMU: ulaw_encode(one_second), PCMA: alaw_encode(one_second)}
        self._queue: list[bytes] = []  # packets to send instead of the tone (DTMF)
        self._lock = threading.Lock()
        # RTCP (off unless answer_rtcp)
        self._rtcp_hold: float | None = None
        self._rtcp_hidden = 0.0
        self._pending_sr: SenderReport | None = None
        self._probe_next = False
        self.sender_reports: list[SenderReport] = []
        self.reports_sent = 0
        self.answered = threading.Event()  # an SR of sipua's was answered
        self.probe_echoed = threading.Event()  # a PROBE came back
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def answer_rtcp(self, hold: float, hidden: float) -> None:
        assert 0 <= hidden <= hold
        self._rtcp_hidden = hidden
        self._rtcp_hold = hold

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> RtpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_packets(self, packets: list[bytes]) -> None:
        """Send these (whole RTP packets) on the next ticks, one per 20 ms, before more tone."""
        with self._lock:
            self._queue += packets

    def _on_rtcp(self, data: bytes, arrival: float) -> None:
        """Note the SRs of a (compound) RTCP packet; the next one to answer is the latest."""
        offset = 0
        while offset + 8 <= len(data):
            packet_type, length = data[offset + 1], struct.unpack_from("!H", data, offset + 2)[0]
            if packet_type == RTCP_SR and offset + 16 <= len(data):
                ssrc, seconds, fraction = struct.unpack_from("!III", data, offset + 4)
                report = SenderReport(arrival, ssrc, ((seconds & 0xFFFF) << 16) | fraction >> 16)
                self.sender_reports.append(report)
                if self._rtcp_hold is not None:
                    self._pending_sr = report
            offset += 4 * (length + 1)

    def _report(self, sr: SenderReport, timestamp: int, now: float) -> bytes:
        """Our SR with one report block on ``sr``'s source, then SDES CNAME (a compound)."""
        ntp = time.time() + NTP_EPOCH_OFFSET
        seconds = int(ntp)
        sender_info = struct.pack(
            "!IIIII",
            seconds & 0xFFFFFFFF,
            int((ntp - seconds) * (1 << 32)),
            timestamp,
            self.sent,
            self.sent * 160,
        )
        heard = [r.seq for r in list(self.received) if r.ssrc == sr.ssrc]
        dlsr = int((now - sr.arrival - self._rtcp_hidden) * 65536)
        block = struct.pack(
            "!IIIIII",
            sr.ssrc,
            self.REPORTED_LOST,  # fraction lost 0, cumulative lost in the low 24 bits
            heard[-1] if heard else 0,
            self.REPORTED_JITTER,
            sr.lsr,
            max(0, dlsr),
        )
        head = struct.pack("!BBHI", 0x81, RTCP_SR, 12, self.ssrc) + sender_info + block
        cname = b"tester"
        chunk = struct.pack("!IBB", self.ssrc, 1, len(cname)) + cname + b"\0"
        chunk += bytes(-len(chunk) % 4)
        sdes = struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
        return head + sdes

    def _run(self) -> None:
        seq, timestamp, ssrc = random.getrandbits(15), random.getrandbits(31), self.ssrc
        next_send = time.monotonic()
        while not self._stop.is_set():
            self.sock.settimeout(max(0.0, next_send - time.monotonic()) or 0.001)
            try:
                data, _ = self.sock.recvfrom(2048)
                if len(data) >= 8 and data[0] >> 6 == 2 and 72 <= data[1] & 0x7F <= 76:
                    self._on_rtcp(data, time.monotonic())
                elif len(data) >= 12 and data[0] >> 6 == 2:
                    seq_in, ts_in, ssrc_in = struct.unpack_from("!HII", data, 2)
                    header = 12 + 4 * (data[0] & 0x0F)
                    payload = data[header:]
                    self.received.append(
                        Received(time.monotonic(), data[1] & 0x7F, seq_in, ts_in, ssrc_in, payload)
                    )
                    if payload == PROBE:
                        self.probe_echoed.set()
            except TimeoutError:
                pass
            if time.monotonic() < next_send:
                continue
            next_send += 0.02
            pending = self._pending_sr
            if pending is not None and self.remote is not None and self._rtcp_hold is not None:
                now = time.monotonic()
                if now >= pending.arrival + self._rtcp_hold:
                    self._pending_sr = None
                    self.sock.sendto(self._report(pending, timestamp, now), self.remote)
                    self.reports_sent += 1
                    self._probe_next = True
                    self.answered.set()
            with self._lock:
                queued = self._queue.pop(0) if self._queue else None
            if queued is not None and self.remote is not None:
                self.sock.sendto(queued, self.remote)
                continue
            if not self.sending or self.remote is None:
                continue
            pt = self.pt
            start = (self.sent * 160) % 8000
            payload = self._tones[pt][start : start + 160]
            if self._probe_next:
                payload, self._probe_next = PROBE, False
            marker = 0x80 if self.sent == 0 else 0
            header = struct.pack("!BBHII", 0x80, marker | pt, seq & 0xFFFF, timestamp, ssrc)
            self.sock.sendto(header + payload, self.remote)
            self.sent += 1
            seq += 1
            timestamp = (timestamp + 160) & 0xFFFFFFFF

    def count(self, since: float, pt: int | None = None) -> int:
        return sum(1 for r in list(self.received) if r.arrival >= since and pt in (None, r.pt))

    def wait_for(
        self, packets: int, since: float, timeout: float = 5.0, pt: int | None = None
    ) -> None:
        """Until ``packets`` RTP packets (of ``pt``, if given) arrived after ``since`` (monotonic
        seconds)."""
        deadline = time.monotonic() + timeout
        while self.count(since, pt) < packets:
            assert time.monotonic() < deadline, f"{self.count(since, pt)} of {packets} packets came"
            time.sleep(0.02)  # the receiving thread fills the list; nothing to await

    def audio_since(self, since: float, pt: int = PCMU) -> np.ndarray:
        payload = b"".join(
            r.payload for r in list(self.received) if r.arrival >= since and r.pt == pt
        )
        return DECODERS.get(pt, ulaw_decode)(payload)


def telephone_event(
    digit_code: int, clock_rate: int, pt: int, seq: int, ssrc: int, timestamp: int
) -> list[bytes]:
    """RFC 4733 packets for one 100 ms key press: start (marker), updates, end sent 3 times."""
    step = clock_rate // 50  # 20 ms of the event's clock
    packets = []
    for i in range(1, 6):
        end = i == 5
        duration = i * step
        flags = (0x80 if end else 0) | 10  # E bit, volume -10 dBm0
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 1 else 0) | pt, (seq + i) & 0xFFFF, timestamp, ssrc
        )
        packet = header + struct.pack("!BBH", digit_code, flags, duration)
        packets += [packet] * (3 if end else 1)
    return packets


# -- SDP ----------------------------------------------------------------------------------------


def offer_sdp(
    port: int,
    *,
    codecs: tuple[tuple[int, str], ...] = ((PCMU, "PCMU/8000"),),
    events: tuple[tuple[int, int], ...] = ((101, 8000),),
    direction: str | None = "sendrecv",
    address: str = "127.0.0.1",
    version: int = 1,
    video_port: int | None = None,
    rtcp_mux: bool = False,
) -> bytes:
    pts = " ".join(str(pt) for pt, _ in codecs) + "".join(f" {pt}" for pt, _ in events)
    lines = [
        "v=0",
        f"o=tester 4242 {version} IN IP4 127.0.0.1",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {pts}",
        *(f"a=rtpmap:{pt} {name}" for pt, name in codecs),
        *(f"a=rtpmap:{pt} telephone-event/{rate}" for pt, rate in events),
        *(f"a=fmtp:{pt} 0-16" for pt, _ in events),
    ]
    if direction:
        lines.append(f"a={direction}")
    if rtcp_mux:
        lines.append("a=rtcp-mux")  # RFC 5761
    if video_port is not None:
        lines += [f"m=video {video_port} RTP/AVP 96", "a=rtpmap:96 VP8/90000", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class MediaLine:
    media: str
    port: int
    proto: str
    formats: list[int]
    rtpmaps: dict[int, str]
    direction: str
    rtcp_mux: bool = False


@dataclass
class Sdp:
    address: str
    media: list[MediaLine]

    @property
    def audio(self) -> MediaLine:
        return next(m for m in self.media if m.media == "audio")


def parse_sdp_text(body: bytes) -> Sdp:
    text = body.decode()
    session_c = re.search(r"^c=IN IP[46] (\S+)", text.split("\nm=")[0], re.M)
    media: list[MediaLine] = []
    address = session_c.group(1) if session_c else ""
    for block in re.split(r"\r?\n(?=m=)", text)[1:]:
        m = re.match(r"m=(\w+) (\d+) (\S+) ?([\d ]*)", block)
        assert m, block
        rtpmaps = {int(pt): name for pt, name in re.findall(r"a=rtpmap:(\d+) (\S+)", block)}
        found = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", block, re.M)
        media_c = re.search(r"^c=IN IP[46] (\S+)", block, re.M)
        if media_c:
            address = media_c.group(1)
        media.append(
            MediaLine(
                m.group(1),
                int(m.group(2)),
                m.group(3),
                [int(pt) for pt in m.group(4).split()],
                rtpmaps,
                found.group(1) if found else "sendrecv",
                bool(re.search(r"^a=rtcp-mux\s*$", block, re.M)),
            )
        )
    return Sdp(address, media)


# -- calls --------------------------------------------------------------------------------------


def uri_of(svc: Service, session: dict) -> str:
    return f"sip:session_{session['id']}@127.0.0.1:{svc.ports['udp']}"


def start_call(client: SipClient, uri: str, offer: bytes) -> tuple[UacCall, Sdp]:
    call = client.new_call(uri)
    client.send(call.invite(body=offer))
    ok = client.final_response()
    assert ok.status == 200, ok.raw
    client.send(call.ack(ok))
    return call, parse_sdp_text(ok.body)


def reinvite(client: SipClient, call: UacCall, offer: bytes) -> SipMessage:
    """A re-INVITE with ``offer``, its 200 ACKed (the ACK's CSeq is the re-INVITE's)."""
    request = call.in_dialog("INVITE", body=offer, content_type="application/sdp")
    call.invite_cseq = call.cseq
    client.send(request)
    ok = client.final_response("INVITE")
    assert ok.status == 200, ok.raw
    client.send(call.ack(ok))
    return ok


def hang_up(client: SipClient, call: UacCall) -> None:
    client.send(call.bye())
    assert client.final_response("BYE").status == 200


def rtp_target(sdp: Sdp) -> tuple[str, int]:
    return sdp.address, sdp.audio.port


def assert_tone(samples: np.ndarray, rate: int, hz: float, seconds: float) -> None:
    tone = active(samples, rate)
    assert len(tone) >= seconds * rate, f"{len(tone) / rate:.2f} s of tone"
    assert dominant_frequency(tone, rate) == pytest.approx(hz, rel=0.01)
    assert tone_share(tone, rate, hz) > 0.9


QUIET = 1.0  # seconds a test watches for packets that must not come


# -- 5. SDP branches ------------------------------------------------------------------------------


def test_hold_resume_and_old_style_hold(media: Service) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer(tone_hz=500) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call, answer = start_call(sip, uri_of(media, session), offer_sdp(rtp.port))
        assert answer.audio.formats[0] == PCMU and answer.audio.direction == "sendrecv"
        rtp.remote = rtp_target(answer)
        start = time.monotonic()
        rtp.wait_for(25, start)  # the echo
        assert_tone(rtp.audio_since(start), 8000, 500, 0.4)

        # hold: we only send; sipua answers recvonly and sends nothing
        ok = reinvite(sip, call, offer_sdp(rtp.port, direction="sendonly", version=2))
        assert parse_sdp_text(ok.body).audio.direction == "recvonly"
        time.sleep(0.1)  # packets already on their way when the 200 left
        held = time.monotonic()
        time.sleep(QUIET)  # a window in which nothing may arrive
        assert rtp.count(held) == 0

        # resume
        ok = reinvite(sip, call, offer_sdp(rtp.port, version=3))
        assert parse_sdp_text(ok.body).audio.direction == "sendrecv"
        resumed = time.monotonic()
        rtp.wait_for(25, resumed)
        assert_tone(rtp.audio_since(resumed), 8000, 500, 0.4)

        # RFC 2543 hold: c=0.0.0.0 means "do not send to me" (RFC 3264 §8.4)
        ok = reinvite(sip, call, offer_sdp(rtp.port, address="0.0.0.0", version=4))
        assert parse_sdp_text(ok.body).audio.direction == "recvonly"
        time.sleep(0.1)
        held = time.monotonic()
        time.sleep(QUIET)
        assert rtp.count(held) == 0

        ok = reinvite(sip, call, offer_sdp(rtp.port, version=5))
        resumed = time.monotonic()
        rtp.wait_for(25, resumed)
        hang_up(sip, call)
    [gone] = wait_events(media, session["id"], "session.provider.disconnected")
    quality = gone["data"]["quality"]
    # sipua kept receiving while it held its own sending back
    assert quality["packets_received"] > quality["packets_sent"] + 2 * QUIET * 50 * 0.8


def test_late_offer_our_offer_in_the_200_their_answer_in_the_ack(media: Service) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer(tone_hz=620) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call = sip.new_call(uri_of(media, session))
        sip.send(call.invite(body=b""))
        ok = sip.final_response()
        assert ok.status == 200 and ok.get("content-type") == "application/sdp", ok.raw
        offer = parse_sdp_text(ok.body).audio
        names = [offer.rtpmaps.get(pt, str(pt)).split("/")[0].upper() for pt in offer.formats]
        # the server's default preference, and telephone-event at both clocks
        assert names[:4] == ["OPUS", "G722", "PCMU", "PCMA"], names
        assert {
            offer.rtpmaps[pt] for pt in offer.formats if "telephone" in offer.rtpmaps.get(pt, "")
        } == {
            "telephone-event/8000",
            "telephone-event/48000",
        }
        ulaw = next(pt for pt in offer.formats if offer.rtpmaps.get(pt, "").upper() == "PCMU/8000")
        event = next(pt for pt in offer.formats if offer.rtpmaps.get(pt) == "telephone-event/8000")
        answer = offer_sdp(rtp.port, codecs=((ulaw, "PCMU/8000"),), events=((event, 8000),))
        sip.send(call.ack(ok, body=answer))
        rtp.remote = (parse_sdp_text(ok.body).address, offer.port)
        start = time.monotonic()
        rtp.wait_for(50, start)
        assert_tone(rtp.audio_since(start, pt=ulaw), 8000, 620, 0.8)
        hang_up(sip, call)
    [connected] = wait_events(media, session["id"], "session.provider.connected")
    assert connected["data"]["codec"] == "PCMU"


def origin_version(body: bytes) -> int:
    found = re.search(rb"^o=\S+ \d+ (\d+) ", body, re.M)
    assert found, body
    return int(found.group(1))


def test_reinvite_without_sdp_moves_media_to_the_address_in_the_ack(media: Service) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with (
        RtpPeer(tone_hz=500) as first,
        RtpPeer(tone_hz=900) as second,
        SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip,
    ):
        call = sip.new_call(uri_of(media, session))
        sip.send(call.invite(body=offer_sdp(first.port)))
        ok = sip.final_response()
        sip.send(call.ack(ok))
        first.remote = rtp_target(parse_sdp_text(ok.body))
        first.wait_for(25, time.monotonic())

        # re-INVITE without SDP: sipua's offer in the 200, our answer in the ACK (RFC 3261 §14.2)
        request = call.in_dialog("INVITE")
        call.invite_cseq = call.cseq
        sip.send(request)
        reoffer = sip.final_response("INVITE")
        assert reoffer.status == 200 and reoffer.get("content-type") == "application/sdp"
        assert origin_version(reoffer.body) == origin_version(ok.body) + 1  # RFC 3264 §8
        offer = parse_sdp_text(reoffer.body).audio
        ulaw = next(pt for pt in offer.formats if offer.rtpmaps.get(pt, "").upper() == "PCMU/8000")
        first.sending = False
        sip.send(call.ack(reoffer, body=offer_sdp(second.port, codecs=((ulaw, "PCMU/8000"),))))
        second.remote = (parse_sdp_text(reoffer.body).address, offer.port)
        moved = time.monotonic()
        second.wait_for(25, moved)  # the echo follows the answer's address
        assert_tone(second.audio_since(moved, pt=ulaw), 8000, 900, 0.4)
        assert first.count(moved + 0.1) == 0

        # the offer was answered: the next re-INVITE is taken (not 500 "pending")
        ok = reinvite(sip, call, offer_sdp(second.port, version=2))
        assert parse_sdp_text(ok.body).audio.direction == "sendrecv"
        hang_up(sip, call)


def test_reinvite_changing_the_codec_switches_the_echo_in_the_same_call(media: Service) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer(tone_hz=700) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call, answer = start_call(sip, uri_of(media, session), offer_sdp(rtp.port))  # PCMU only
        assert [pt for pt in answer.audio.formats if pt != 101] == [PCMU]
        rtp.remote = rtp_target(answer)
        start = time.monotonic()
        rtp.wait_for(25, start, pt=PCMU)
        assert_tone(rtp.audio_since(start, pt=PCMU), 8000, 700, 0.4)

        # the same dialog, the same stream, now PCMA only (RFC 3264 §8.3.2)
        ok = reinvite(sip, call, offer_sdp(rtp.port, codecs=((PCMA, "PCMA/8000"),), version=2))
        reanswer = parse_sdp_text(ok.body)
        assert [pt for pt in reanswer.audio.formats if pt != 101] == [PCMA], ok.body
        assert reanswer.audio.rtpmaps.get(PCMA, "PCMA/8000").upper() == "PCMA/8000"
        assert rtp_target(reanswer) == rtp_target(answer)  # the media stream was kept
        rtp.pt = PCMA  # after the ACK, as RFC 3264 §8.3.2 lets the offerer
        switched = time.monotonic()
        rtp.wait_for(50, switched, pt=PCMA)
        assert_tone(rtp.audio_since(switched, pt=PCMA), 8000, 700, 0.8)  # A-law decoded
        during = session_events(media, session["id"])
        hang_up(sip, call)

    echoes = list(rtp.received)
    first_pcma = next(i for i, r in enumerate(echoes) if r.pt == PCMA)
    # one socket each way, so arrival order is sending order: PCMU up to the switch, then
    # PCMA only (the PCMU still in flight after the re-INVITE is not relayed as PCMA or PCMU)
    assert {r.pt for r in echoes[:first_pcma]} == {PCMU}
    assert {r.pt for r in echoes[first_pcma:]} == {PCMA}
    # the same RTP sender went on: one SSRC, and its sequence continues across the switch
    assert len({r.ssrc for r in echoes}) == 1
    assert (echoes[first_pcma].seq - echoes[first_pcma - 1].seq) & 0xFFFF == 1

    assert not [e for e in during if e["type"] == "session.provider.disconnected"], during
    [gone] = wait_events(media, session["id"], "session.provider.disconnected")
    events = session_events(media, session["id"])
    [connected] = [e for e in events if e["type"] == "session.provider.connected"]
    assert [e for e in events if e["type"] == "session.provider.disconnected"] == [gone]
    assert connected["data"]["participant_id"] == gone["data"]["participant_id"]
    assert connected["data"]["codec"] == "PCMU"
    assert gone["data"]["reason"] == "remote-bye"
    quality = gone["data"]["quality"]
    assert quality["codec"] == "PCMA"  # what the stream sent at the end
    # our sequence numbers run on through the switch: the only gap sipua can count is the PCMU
    # it got between its answer and our switch, refused by then as a payload type not agreed
    assert quality["packets_lost"] <= 25


def test_rtt_from_rtcp_is_in_the_hang_up_quality(media: Service) -> None:
    hidden = 0.300  # seconds of "network" the test's DLSR does not own up to
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer(tone_hz=440) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        rtp.answer_rtcp(hold=hidden + 0.5, hidden=hidden)  # DLSR 0.5 s: far outside the bounds
        offer = offer_sdp(rtp.port, rtcp_mux=True)
        call, answer = start_call(sip, uri_of(media, session), offer)
        assert answer.audio.rtcp_mux  # RTCP comes to, and goes from, the RTP port
        rtp.remote = rtp_target(answer)
        # sipua's first report is due 1.25-3.75 s in (RFC 3550 §6.2, 5 s minimum halved)
        assert rtp.answered.wait(12), f"no SR from sipua to answer: {rtp.sender_reports}"
        assert rtp.probe_echoed.wait(5), "the packet after our report never came back"
        hang_up(sip, call)
    echoed = {r.ssrc for r in rtp.received}
    assert rtp.sender_reports and {sr.ssrc for sr in rtp.sender_reports} == echoed
    [gone] = wait_events(media, session["id"], "session.provider.disconnected")
    quality = gone["data"]["quality"]

    # RTT = A - LSR - DLSR (RFC 3550 §6.4.1): the hidden 300 ms plus the real loopback trips
    rtt = quality.get("rtt_ms")
    assert isinstance(rtt, int | float), quality
    assert 1000 * hidden - 0.1 <= rtt <= 1000 * hidden + 150, quality
    # our report block about sipua's stream was read
    assert quality["remote"] == {
        "fraction_lost": 0.0,
        "packets_lost": RtpPeer.REPORTED_LOST,
        "jitter_ms": 1000 * RtpPeer.REPORTED_JITTER / 8000,
    }
    # the rest of the figures, from what went each way
    assert quality["codec"] == "PCMU"
    assert rtp.sent - 10 <= quality["packets_received"] <= rtp.sent
    assert len(rtp.received) <= quality["packets_sent"] <= quality["packets_received"]  # echo
    assert quality["packets_lost"] == 0 and quality["loss_percent"] == 0
    assert 0 <= quality["jitter_ms"] < 30
    # the MOS is the E-model's for these figures, RTT included, and the RTT cost it something
    jitter_buffer = 20 + 2 * quality["jitter_ms"]
    r, mos = estimate_mos("PCMU", quality["loss_percent"], rtt, jitter_buffer)
    assert quality["r_factor"] == pytest.approx(r, abs=0.05)
    assert quality["mos"] == pytest.approx(mos, abs=0.005)
    _, mos_without_rtt = estimate_mos("PCMU", quality["loss_percent"], None, jitter_buffer)
    assert 1.0 < quality["mos"] < mos_without_rtt - 0.05


def test_reoffer_never_answered_ends_the_call(serve: StartService) -> None:
    svc = serve(env=media_env(SIPUA_SIP__ACK_TIMEOUT="2"))  # Timer L: 2 s instead of 64*T1
    session = svc.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer() as rtp, SipClient("udp", ("127.0.0.1", svc.ports["udp"])) as sip:
        call, _ = start_call(sip, uri_of(svc, session), offer_sdp(rtp.port))
        sip.send(call.in_dialog("INVITE"))  # no SDP, and no ACK for the 200 with sipua's offer
        assert sip.final_response("INVITE").status == 200
        bye = sip.recv_until(lambda m: m.method == "BYE", timeout=10)  # RFC 3261 §13.3.1.4
        sip.send(build_response(bye, 200))
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    assert gone["data"]["reason"] == "ack-timeout"


def test_video_stream_is_refused_with_port_0_and_audio_works(media: Service) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer(tone_hz=830) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        video = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a real port, never used
        video.bind(("127.0.0.1", 0))
        with video:
            offer = offer_sdp(rtp.port, video_port=video.getsockname()[1])
            call, answer = start_call(sip, uri_of(media, session), offer)
        assert [(m.media, m.port == 0) for m in answer.media] == [("audio", False), ("video", True)]
        assert answer.media[1].formats == [96]  # the refused stream keeps its format list
        rtp.remote = rtp_target(answer)
        start = time.monotonic()
        rtp.wait_for(25, start)
        assert_tone(rtp.audio_since(start), 8000, 830, 0.4)
        hang_up(sip, call)


@pytest.mark.parametrize(
    ("codecs", "events", "chosen", "event_rate"),
    [
        (((OPUS, "opus/48000/2"), (PCMU, "PCMU/8000")), ((110, 48000), (101, 8000)), OPUS, 48000),
        (((PCMU, "PCMU/8000"),), ((101, 8000),), PCMU, 8000),
    ],
    ids=["opus-48000", "pcmu-8000"],
)
def test_telephone_event_follows_the_codec_clock(
    media: Service,
    codecs: tuple[tuple[int, str], ...],
    events: tuple[tuple[int, int], ...],
    chosen: int,
    event_rate: int,
) -> None:
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    with RtpPeer() as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        rtp.sending = False  # only the key press goes out
        call, answer = start_call(
            sip, uri_of(media, session), offer_sdp(rtp.port, codecs=codecs, events=events)
        )
        audio = answer.audio
        assert audio.formats[0] == chosen
        telephone = [pt for pt in audio.formats if "telephone-event" in audio.rtpmaps.get(pt, "")]
        assert [audio.rtpmaps[pt] for pt in telephone] == [f"telephone-event/{event_rate}"]
        rtp.remote = rtp_target(answer)
        rtp.send_packets(telephone_event(7, event_rate, telephone[0], 1, 0xD7D7D7D7, 4242))
        [press] = wait_events(media, session["id"], "session.dtmf")
        hang_up(sip, call)
    assert press["data"]["digit"] == "7"
    assert press["data"]["duration_ms"] == 100  # 5 × 20 ms counted in the event's own clock
    assert press["data"]["source"] == "rfc4733"


def test_sip_info_dtmf_becomes_session_events(media: Service) -> None:
    # baresip 1.0.0 receives INFO DTMF but only sends RFC 4733: the test client sends INFO.
    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    bodies = [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
        ("application/dtmf", b"#"),
        ("application/dtmf-relay", b"Signal=*\r\nDuration=250\r\n"),
    ]
    with RtpPeer() as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call, _ = start_call(sip, uri_of(media, session), offer_sdp(rtp.port))
        for content_type, body in bodies:
            sip.send(call.in_dialog("INFO", body=body, content_type=content_type))
            assert sip.final_response("INFO").status == 200
        presses = wait_events(media, session["id"], "session.dtmf", count=len(bodies))
        hang_up(sip, call)
    assert [(p["data"]["digit"], p["data"]["source"]) for p in presses] == [
        ("5", "sip-info"),
        ("#", "sip-info"),
        ("*", "sip-info"),
    ]
    assert [presses[0]["data"]["duration_ms"], presses[2]["data"]["duration_ms"]] == [160, 250]


# -- 6. media apps ------------------------------------------------------------------------------------


def test_record_writes_a_wav_per_participant(media: Service, tmp_path: Path) -> None:
    session = media.create_session(
        provider={"type": "sip", "transport": "udp"}, media={"app": "record"}
    )
    talk = 2.0  # seconds the test client sends its tone
    with (
        Baresip(
            tmp_path / "baresip", BaresipConfig(codec_modules=("g722",), tone_hz=1000)
        ) as phone,
        RtpPeer(tone_hz=440) as rtp,
        SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip,
    ):
        established = phone.dial(uri_of(media, session))
        assert established["type"] == "CALL_ESTABLISHED", phone.control.events
        call, answer = start_call(sip, uri_of(media, session), offer_sdp(rtp.port))
        rtp.remote = rtp_target(answer)
        deadline = time.monotonic() + 10
        while rtp.sent < talk * 50:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # the RTP thread paces itself; wait for its count
        rtp.sending = False
        time.sleep(0.5)  # a tail of silence in the recording
        sent_s = rtp.sent / 50  # the sender may pass the count by a packet or two before it stops
        hang_up(sip, call)
        phone.hangup()
    gone = wait_events(media, session["id"], "session.provider.disconnected", count=2)
    by_leg = {e["data"]["participant_id"]: e for e in gone}
    connected = {
        e["data"]["participant_id"]: e
        for e in session_events(media, session["id"])
        if e["type"] == "session.provider.connected"
    }
    directory = media.data_dir / "recordings" / session["id"]
    files = {p.stem: p for p in directory.glob("*.wav")}
    assert set(files) == set(by_leg), (sorted(files), sorted(by_leg))
    tones = {"G722": 1000, "PCMU": 440}
    for leg, path in files.items():
        samples, rate = read_wav(path)
        duration = len(samples) / rate
        # one frame per 20 ms tick from the start of media to the hang-up
        assert duration == pytest.approx(by_leg[leg]["data"]["duration_s"], abs=0.25)
        hz = tones[connected[leg]["data"]["codec"]]
        tone = active(samples, rate)
        assert dominant_frequency(tone, rate) == pytest.approx(hz, rel=0.01), path
        assert tone_share(tone, rate, hz) > 0.9, path  # its own caller only
        if hz == 440:  # the test client's: exactly what it sent, then the concealment's fade-out
            heard = len(tone) / rate
            fade_s = FADE_FRAMES * 0.02
            assert sent_s - 0.04 <= heard <= sent_s + fade_s + 0.02, (heard, sent_s)


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def test_play_plays_a_wav_into_the_call(media: Service, tmp_path: Path) -> None:
    write_wav(media.data_dir / "media" / "prompts" / "tone-750.wav", sine(750, 4.0, 16000), 16000)
    session = media.create_session(
        provider={"type": "sip", "transport": "udp"},
        media={"app": "play", "play_file": "prompts/tone-750.wav"},
    )
    with RtpPeer(tone_hz=440) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call, answer = start_call(sip, uri_of(media, session), offer_sdp(rtp.port))
        rtp.remote = rtp_target(answer)
        start = time.monotonic()
        rtp.wait_for(75, start)
        hang_up(sip, call)
    assert_tone(rtp.audio_since(start), 8000, 750, 1.2)  # the file, not our own 440 Hz

    # and a real phone with a wideband codec hears it too
    with Baresip(
        tmp_path / "baresip", BaresipConfig(codec_modules=("opus",), tone_hz=440, record=True)
    ) as phone:
        established = phone.dial(uri_of(media, session))
        assert established["type"] == "CALL_ESTABLISHED", phone.control.events
        phone.wait_received_audio(2.0)
        phone.hangup()
    _, heard = phone.recordings()
    samples, rate = read_wav(heard)
    assert_tone(samples, rate, 750, 1.5)


def test_play_with_a_missing_file_refuses_the_call_as_a_fault_not_as_busy_ports(
    media: Service,
) -> None:
    session = media.create_session(
        provider={"type": "sip", "transport": "udp"},
        media={"app": "play", "play_file": "prompts/not-there.wav"},
    )
    with SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        call = sip.new_call(uri_of(media, session))
        sip.send(call.invite(body=offer_sdp(40000)))
        refused = sip.final_response()
        sip.send(call.ack(refused))
    assert refused.status == 500 and "retry-after" not in refused  # retrying cannot help
    [failed] = wait_events(media, session["id"], "session.provider.failed")
    assert failed["data"]["reason"] == "media-app-unavailable"
    assert failed["data"]["status_code"] == 500


def call_in(svc: Service, session: dict, rtp: RtpPeer, sip: SipClient) -> tuple[SipClient, UacCall]:
    """Call ``session`` from ``sip`` with ``rtp``'s PCMU and point the tone at sipua's answer."""
    call, answer = start_call(sip, uri_of(svc, session), offer_sdp(rtp.port))
    assert [pt for pt in answer.audio.formats if pt != 101] == [PCMU]
    rtp.remote = rtp_target(answer)
    return sip, call


def test_conference_callers_hear_each_other_and_not_themselves(media: Service) -> None:
    session = media.create_session(mode="conference", provider={"type": "sip", "transport": "udp"})
    assert session["media"]["app"] == "conference"  # the mode's default app
    sip_port = ("127.0.0.1", media.ports["udp"])
    with (
        RtpPeer(tone_hz=440) as low,
        RtpPeer(tone_hz=1000) as high,
        SipClient("udp", sip_port) as low_sip,
        SipClient("udp", sip_port) as high_sip,
    ):
        first = call_in(media, session, low, low_sip)
        alone = time.monotonic()
        low.wait_for(25, alone)  # alone in the room: it hears nothing of its own tone
        second = call_in(media, session, high, high_sip)
        together = time.monotonic()
        low.wait_for(100, together)
        high.wait_for(100, together)
        for sip, call in (first, second):
            hang_up(sip, call)
    lonely = low.audio_since(alone)[: 25 * 160]
    assert rms(lonely) < 100, "a lone participant heard something (its own echo?)"
    settle = together + 0.3  # the second leg's jitter buffer and the mixer's queue fill
    for peer, other in ((low, 1000), (high, 440)):
        heard = peer.audio_since(settle)
        assert_tone(heard, 8000, other, 1.2)  # the other's tone, continuous
        own = 1000 if other == 440 else 440
        assert tone_share(active(heard, 8000), 8000, own) < 0.01  # and never its own
    gone = wait_events(media, session["id"], "session.provider.disconnected", count=2)
    assert {e["data"]["reason"] for e in gone} == {"remote-bye"}


async def test_conference_joins_a_twilio_stream_and_a_sip_caller(media: Service) -> None:
    session = media.create_session(mode="conference", provider={"type": "sip", "transport": "udp"})
    twilio = TwilioPeer(session["stream"]["token"])
    voice = ulaw_encode(sine(1000, 1.0))  # Twilio's caller: 1 kHz, 160 octets a message
    heard: list[bytes] = []
    loop = asyncio.get_running_loop()
    with RtpPeer(tone_hz=440) as rtp, SipClient("udp", ("127.0.0.1", media.ports["udp"])) as sip:
        caller = await asyncio.to_thread(call_in, media, session, rtp, sip)
        async with websockets.connect(session["stream"]["url"], open_timeout=10) as ws:
            await ws.send(twilio.connected())
            await ws.send(twilio.start())

            async def listen() -> None:
                async for message in ws:
                    event = json.loads(message)
                    if event.get("event") == "media":
                        heard.append(base64.b64decode(event["media"]["payload"]))

            listener = loop.create_task(listen())
            together = time.monotonic()
            start = loop.time()
            for i in range(125):  # 2.5 s, paced as Twilio paces: one message per 20 ms
                await asyncio.sleep(max(0.0, start + 0.02 * i - loop.time()))
                await ws.send(twilio.media(voice[(i % 50) * 160 : (i % 50 + 1) * 160]))
            await ws.send(twilio.stop())
            async with asyncio.timeout(5):
                await listener  # sipua closes the stream after "stop"
        await asyncio.to_thread(hang_up, *caller)
    # the Twilio caller hears the SIP caller, the SIP caller hears the Twilio caller
    from_sip = ulaw_decode(b"".join(heard[15:]))
    assert_tone(from_sip, 8000, 440, 1.5)
    assert tone_share(active(from_sip, 8000), 8000, 1000) < 0.01
    from_twilio = rtp.audio_since(together + 0.3)
    assert_tone(from_twilio, 8000, 1000, 1.5)
    assert tone_share(active(from_twilio, 8000), 8000, 440) < 0.01
