"""RTP headers on the hot path, and the state of the RTP stream we send.

aiortc's ``RtpPacket`` is the full model (and what its ``JitterBuffer`` holds);
every packet of every call also crosses :func:`parse_rtp` and :func:`build_rtp`,
which read and write the fixed RFC 3550 §5.1 header with one precompiled
``struct`` and no intermediate objects.
"""

from __future__ import annotations

import os
import struct

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
HEADER_LENGTH = 12
_EXTENSION_LENGTH = struct.Struct("!H")

# RFC 5761 §4: with rtcp-mux, a second octet of 192-223 (SR 200, RR 201, ...) is RTCP.
RTCP_PACKET_TYPES = range(192, 224)


def random32() -> int:
    return int.from_bytes(os.urandom(4), "big")


def parse_rtp(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """Return ``(payload_type, marker, seq, timestamp, ssrc, payload_start, payload_end)``.

    Raises ValueError for anything that is not a well-formed RTP packet: wrong
    version, CSRC list / header extension / padding running past the end.
    """
    length = len(data)
    if length < HEADER_LENGTH:
        raise ValueError("RTP packet shorter than its fixed header")
    first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise ValueError("not RTP version 2")
    start = HEADER_LENGTH + 4 * (first & 0x0F)
    if first & 0x10:  # RFC 3550 §5.3.1 header extension
        if length < start + 4:
            raise ValueError("RTP header extension truncated")
        start += 4 + 4 * _EXTENSION_LENGTH.unpack_from(data, start + 2)[0]
    end = length
    if first & 0x20:  # RFC 3550 §5.1 padding: the last octet counts itself
        padding = data[-1]
        if padding == 0 or padding > length - start:
            raise ValueError("RTP padding length invalid")
        end -= padding
    if start > end:
        raise ValueError("RTP header runs past the packet")
    return second & 0x7F, second >> 7, seq, timestamp, ssrc, start, end


def build_rtp(
    payload_type: int, marker: int, seq: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    return HEADER.pack(0x80, (marker << 7) | payload_type, seq, timestamp, ssrc) + payload


class RtpSender:
    """SSRC, sequence number and timestamp of the stream we send (RFC 3550 §5.1).

    Timestamps come from the media clock's tick number, so they advance with
    real time across silence, hold and DTMF events: ``timestamp_at(tick)``.
    The initial sequence number and timestamp are random (RFC 3550 §5.1).
    """

    def __init__(self, clock_rate: int, *, tick_ms: int = 20, ssrc: int | None = None) -> None:
        self.ssrc = ssrc if ssrc is not None else (random32() or 1)
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.tick_ms = tick_ms
        self.clock_rate = clock_rate
        self._anchor_tick = 0.0
        self._anchor_timestamp = random32()
        self.packets = 0
        self.octets = 0  # payload octets, as RFC 3550 §6.4.1 counts them
        self.last_timestamp: int | None = None

    def start(self, tick: float) -> None:
        """Map the random initial timestamp to ``tick``, where our timeline begins."""
        self._anchor_tick = tick

    def set_clock_rate(self, clock_rate: int, tick: float) -> None:
        """Switch RTP clock (codec change) without a timestamp jump at ``tick``."""
        if clock_rate == self.clock_rate:
            return
        self._anchor_timestamp = self.timestamp_at(tick)
        self._anchor_tick = tick
        self.clock_rate = clock_rate

    def timestamp_at(self, tick: float) -> int:
        elapsed = (tick - self._anchor_tick) * self.tick_ms * self.clock_rate // 1000
        return (self._anchor_timestamp + int(elapsed)) & 0xFFFFFFFF

    def packet(self, payload_type: int, marker: int, timestamp: int, payload: bytes) -> bytes:
        data = HEADER.pack(0x80, (marker << 7) | payload_type, self.seq, timestamp, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        self.last_timestamp = timestamp
        return data + payload
