"""The call in the capture: its first INVITE, the caller's SDP offer and RTP."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..pcapread import Capture, CapturedPacket, read_capture_with_media
from ..sip.errors import ParseError
from ..sip.framer import NEED_DATA, MalformedMessage, MessageFramed, StreamFramer
from ..sip.message import Request, Response, parse_message
from ..sip.sdp import (
    MediaDescription,
    SdpError,
    SessionDescription,
    parse_sdp,
)
from .common import (
    _RTCP_TYPES,
    ReplayUsageError,
)

# -- the call in the capture -----------------------------------------------------------------


@dataclass(frozen=True)
class CapturedCall:
    """What a replay takes from the capture: the caller's INVITE, its offer and its RTP."""

    path: str
    frame: int
    transport: str  # "udp" or "tcp", as captured
    caller: str  # ip:port the INVITE came from
    callee: str
    invite: Request
    offer: SessionDescription
    media_source: tuple[str, int] | None  # the caller's RTP address in its offer
    rtp: tuple[CapturedPacket, ...]  # the caller's RTP, in capture order
    captured_answer: SessionDescription | None  # the 2xx answer of the captured call

    @property
    def audio(self) -> MediaDescription | None:
        return _first_audio(self.offer)

    @property
    def srtp(self) -> str | None:
        """How the captured media is protected, when it is: replayed, it stays ciphertext."""
        audio = self.audio
        if audio is None:
            return None
        proto = audio.proto.upper()
        if "TLS" in proto or audio.has_attribute("fingerprint"):
            return "DTLS-SRTP"
        if audio.is_secure_proto or audio.crypto_lines:
            return "SRTP (SDES)"
        return None


def _first_audio(sdp: SessionDescription) -> MediaDescription | None:
    return next((m for m in sdp.media if m.media == "audio"), None)


def is_rtp(data: bytes) -> bool:
    """An RTP packet (version 2, a full header) and not RTCP sharing the port."""
    return len(data) >= 12 and data[0] >> 6 == 2 and data[1] not in _RTCP_TYPES


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 8 and data[0] >> 6 == 2 and data[1] in _RTCP_TYPES


def _messages(capture: Capture) -> list[tuple[int, str, str, str, Request | Response]]:
    """Every SIP message of the capture that parses, in frame order, with where it went."""
    found: list[tuple[int, str, str, str, Request | Response]] = []
    for d in capture.datagrams:
        try:
            found.append((d.frame, "udp", d.src, d.dst, parse_message(d.data)))
        except ParseError:
            continue
    for s in capture.streams:
        framer = StreamFramer()
        framer.receive_data(s.data)
        for _ in range(len(s.data) + 1):  # at most one event per octet
            start = len(s.data) - framer.buffered
            try:
                event = framer.next_event()
            except ParseError:
                break  # the framing is lost: nothing after it can be trusted
            if event is NEED_DATA:
                break
            if isinstance(event, MessageFramed):
                offset = start + len(s.data[start:]) - len(s.data[start:].lstrip(b"\r\n"))
                found.append((s.frame_at(offset), "tcp", s.src, s.dst, event.message))
            elif isinstance(event, MalformedMessage):
                continue
    found.sort(key=lambda m: m[0])
    return found


def load_capture(path: str) -> CapturedCall:
    """The first INVITE of a capture, the caller's offer in it and the caller's RTP."""
    try:
        capture = read_capture_with_media(path)
    except FileNotFoundError:
        raise ReplayUsageError(f"no such file: {path}") from None
    except Exception as e:  # noqa: BLE001 - scapy's errors for a damaged capture vary
        raise ReplayUsageError(f"cannot read capture {path}: {e}") from None
    messages = _messages(capture)
    first = next(
        (m for m in messages if isinstance(m[4], Request) and m[4].method == "INVITE"), None
    )
    if first is None:
        raise ReplayUsageError(f"{path}: no INVITE in the capture")
    frame, transport, caller, callee, invite = first
    assert isinstance(invite, Request)
    where = f"{path}: the INVITE in frame {frame}"
    try:
        invite.validate()
    except ParseError as e:
        raise ReplayUsageError(f"{where} is malformed: {e.detail}") from None
    content_type = invite.content_type
    if not invite.body or content_type is None or content_type.mime != "application/sdp":
        # A late offer would need our answer in the ACK to an offer we cannot foresee.
        raise ReplayUsageError(f"{where} carries no SDP offer (late offer is not replayed)")
    try:
        offer = parse_sdp(invite.body)
    except SdpError as e:
        raise ReplayUsageError(f"{where} has a malformed SDP offer: {e.detail}") from None
    audio = _first_audio(offer)
    if audio is None:
        raise ReplayUsageError(f"{where} offers no audio stream")
    conn = offer.effective_connection(audio)
    source = (conn.address, audio.port) if conn is not None and audio.port else None
    rtp: tuple[CapturedPacket, ...] = ()
    if source is not None:
        want = f"{source[0]}:{source[1]}"
        rtp = tuple(
            sorted(
                (p for p in capture.other_udp if p.src == want and is_rtp(p.data)),
                key=lambda p: p.time,
            )
        )
    return CapturedCall(
        path=path,
        frame=frame,
        transport=transport,
        caller=caller,
        callee=callee,
        invite=invite,
        offer=offer,
        media_source=source,
        rtp=rtp,
        captured_answer=_captured_answer(messages, invite),
    )


def _captured_answer(messages: Iterable[tuple], invite: Request) -> SessionDescription | None:
    """The SDP of the captured 2xx to an INVITE of the same call (after a 401 too)."""
    for *_, message in messages:
        if (
            isinstance(message, Response)
            and 200 <= message.status < 300
            and message.body
            and message.get("call-id") == invite.call_id
        ):
            try:
                if message.cseq.method != "INVITE":
                    continue
                return parse_sdp(message.body)
            except (ParseError, SdpError):
                continue
    return None
