"""RTCP reports: compound packets, report interval, round-trip time (RFC 3550 §6).

Packet classes are aiortc's (``RtcpSrPacket``, ``RtcpRrPacket``,
``RtcpSdesPacket``, ``RtcpByePacket``); this module decides what goes in them.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

MIN_INTERVAL = 5.0  # RFC 3550 §6.2: the recommended minimum
SDES_CNAME = 1


def report_interval(
    rng: random.Random, *, initial: bool = False, minimum: float = MIN_INTERVAL
) -> float:
    """Seconds until our next report.

    RFC 3550 §6.2/§6.3.1: for a two-party audio call the bandwidth-derived
    interval is far below the 5 s minimum, so the minimum rules; it is halved
    for the first report, and randomised over [0.5, 1.5] times itself so that
    participants do not synchronise.
    """
    base = minimum / 2 if initial else minimum
    return base * rng.uniform(0.5, 1.5)


def build_compound(
    ssrc: int,
    cname: bytes,
    *,
    sender_info: RtcpSenderInfo | None,
    reports: list[RtcpReceiverInfo],
    bye: bool = False,
) -> bytes:
    """An SR (if we sent RTP since the last report) or an RR, then SDES CNAME (§6.1)."""
    if sender_info is not None:
        head: RtcpSrPacket | RtcpRrPacket = RtcpSrPacket(
            ssrc=ssrc, sender_info=sender_info, reports=reports
        )
    else:
        head = RtcpRrPacket(ssrc=ssrc, reports=reports)
    data = bytes(head) + bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc, [(SDES_CNAME, cname)])]))
    if bye:
        data += bytes(RtcpByePacket(sources=[ssrc]))
    return data


def parse_compound(data: bytes) -> list[AnyRtcpPacket]:
    """Parse a (compound) RTCP packet; ValueError for anything malformed."""
    try:
        packets = RtcpPacket.parse(data)
    except (ValueError, struct.error, IndexError) as exc:
        raise ValueError(f"malformed RTCP: {exc}") from exc
    if not data:
        raise ValueError("empty RTCP packet")
    return packets


def round_trip_time(report: RtcpReceiverInfo, arrival_ntp_middle: int) -> float | None:
    """RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in seconds; None if not measurable."""
    if report.lsr == 0:
        return None
    rtt = (arrival_ntp_middle - report.lsr - report.dlsr) & 0xFFFFFFFF
    if rtt & 0x80000000:
        return None  # negative: clocks or a bogus report
    return rtt / 65536.0


class RtcpSession:
    """Report scheduling and what the peer's reports told us, for one stream."""

    def __init__(
        self, rng: random.Random | None = None, *, minimum_interval: float = MIN_INTERVAL
    ) -> None:
        self.rng = rng or random.Random()
        self.minimum_interval = minimum_interval
        self.next_report = 0.0
        self.reports_sent = 0
        self.packets_received = 0
        self.bye_received = False
        self.rtt: float | None = None  # seconds
        self.remote_report: RtcpReceiverInfo | None = None  # the peer's view of our stream
        self.remote_sender: RtcpSenderInfo | None = None
        self._last_sr_middle = 0  # LSR: middle 32 bits of the peer's last SR
        self._last_sr_arrival: float | None = None  # when it arrived (monotonic seconds)
        self._packets_at_last_report = 0

    def schedule(self, now: float, *, initial: bool = False) -> None:
        self.next_report = now + report_interval(
            self.rng, initial=initial, minimum=self.minimum_interval
        )

    def report(
        self,
        now: float,
        *,
        ssrc: int,
        cname: bytes,
        packets_sent: int,
        octets_sent: int,
        rtp_timestamp: int,
        ntp_timestamp: int,
        receiver: ReceptionReport | None,
        bye: bool = False,
    ) -> bytes:
        """Our next compound report; an SR if we sent RTP since the last one (§6.4)."""
        sender_info = None
        if packets_sent != self._packets_at_last_report:
            sender_info = RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp,
                rtp_timestamp=rtp_timestamp,
                packet_count=packets_sent & 0xFFFFFFFF,
                octet_count=octets_sent & 0xFFFFFFFF,
            )
        self._packets_at_last_report = packets_sent
        reports = []
        if receiver is not None:
            lsr = dlsr = 0
            if self._last_sr_arrival is not None:
                lsr = self._last_sr_middle
                dlsr = min(0xFFFFFFFF, int((now - self._last_sr_arrival) * 65536))
            reports.append(
                RtcpReceiverInfo(
                    ssrc=receiver.ssrc,
                    fraction_lost=receiver.fraction_lost,
                    packets_lost=receiver.packets_lost,
                    highest_sequence=receiver.highest_sequence & 0xFFFFFFFF,
                    jitter=min(0xFFFFFFFF, int(receiver.jitter)),
                    lsr=lsr,
                    dlsr=dlsr,
                )
            )
        self.reports_sent += 1
        return build_compound(ssrc, cname, sender_info=sender_info, reports=reports, bye=bye)

    def received(
        self,
        packets: list[AnyRtcpPacket],
        *,
        now: float,
        arrival_ntp_middle: int,
        our_ssrc: int,
        remote_ssrc: int | None,
    ) -> None:
        self.packets_received += 1
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and remote_ssrc in (None, packet.ssrc):
                self._last_sr_middle = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                self._last_sr_arrival = now
                self.remote_sender = packet.sender_info
            if isinstance(packet, (RtcpSrPacket, RtcpRrPacket)):
                for block in packet.reports:
                    if block.ssrc != our_ssrc:
                        continue
                    self.remote_report = block
                    rtt = round_trip_time(block, arrival_ntp_middle)
                    if rtt is not None:
                        self.rtt = rtt
            elif isinstance(packet, RtcpByePacket) and (
                remote_ssrc is None or remote_ssrc in packet.sources
            ):
                self.bye_received = True

    def forget_sender(self) -> None:
        """The peer's SSRC changed: its old SR no longer describes what we receive."""
        self._last_sr_arrival = None
        self._last_sr_middle = 0
        self.remote_sender = None


@dataclass(frozen=True, slots=True)
class ReceptionReport:
    """Our reception figures for the source we hear (fills an RTCP report block)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: float
