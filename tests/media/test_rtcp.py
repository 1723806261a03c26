import random

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
)

from sipua.media.rtcp import (
    ReceptionReport,
    RtcpSession,
    build_compound,
    parse_compound,
    report_interval,
    round_trip_time,
)
from sipua.media.stats import ntp_middle


def test_interval_is_randomised_around_five_seconds():
    rng = random.Random(7)
    values = [report_interval(rng) for _ in range(2000)]
    assert 2.5 <= min(values) < 2.7 and 7.3 < max(values) <= 7.5
    assert sum(values) / len(values) == pytest.approx(5.0, abs=0.1)
    first = [report_interval(rng, initial=True) for _ in range(500)]
    assert min(first) >= 1.25 and max(first) <= 3.75


def _session_report(session, *, packets_sent, receiver=None, now=10.0, bye=False):
    return session.report(
        now,
        ssrc=0x11111111,
        cname=b"leg-1",
        packets_sent=packets_sent,
        octets_sent=packets_sent * 160,
        rtp_timestamp=12345,
        ntp_timestamp=0xE0000000_80000000,
        receiver=receiver,
        bye=bye,
    )


def test_sr_when_we_sent_rr_otherwise_always_with_cname():
    session = RtcpSession(random.Random(1))
    receiver = ReceptionReport(
        ssrc=0x2222, fraction_lost=12, packets_lost=3, highest_sequence=70000, jitter=41.7
    )
    sr = parse_compound(_session_report(session, packets_sent=50, receiver=receiver))
    assert isinstance(sr[0], RtcpSrPacket) and isinstance(sr[1], RtcpSdesPacket)
    assert sr[0].sender_info.packet_count == 50 and sr[0].sender_info.octet_count == 8000
    assert sr[0].sender_info.rtp_timestamp == 12345
    block = sr[0].reports[0]
    assert (
        block.ssrc,
        block.fraction_lost,
        block.packets_lost,
        block.highest_sequence,
        block.jitter,
    ) == (
        0x2222,
        12,
        3,
        70000,
        41,
    )
    assert sr[1].chunks[0].items == [(1, b"leg-1")]
    # Nothing sent since: an RR.
    rr = parse_compound(_session_report(session, packets_sent=50))
    assert isinstance(rr[0], RtcpRrPacket) and rr[0].reports == []
    bye = parse_compound(_session_report(session, packets_sent=50, bye=True))
    assert isinstance(bye[-1], RtcpByePacket) and bye[-1].sources == [0x11111111]


def test_round_trip_time_from_lsr_and_dlsr():
    # RFC 3550 §6.4.1 example shape: our SR left at LSR, the peer held it DLSR,
    # its report arrives at A; RTT = A - LSR - DLSR (units of 1/65536 s).
    report = RtcpReceiverInfo(
        ssrc=1,
        fraction_lost=0,
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=0x10000,
        dlsr=0x8000,
    )
    assert round_trip_time(report, 0x10000 + 0xC000) == pytest.approx(0.25)
    report.lsr = 0
    assert round_trip_time(report, 0x20000) is None  # no SR received yet
    report.lsr = 0x30000
    assert round_trip_time(report, 0x20000) is None  # negative


def test_two_sessions_measure_rtt_and_pass_lsr():
    """Ours sends an SR, the peer answers with an RR carrying LSR/DLSR."""
    ours, theirs = RtcpSession(), RtcpSession()
    our_ntp = 0xE000_0000_4000_0000
    sr = ours.report(
        1.0,
        ssrc=1,
        cname=b"a",
        packets_sent=10,
        octets_sent=1600,
        rtp_timestamp=0,
        ntp_timestamp=our_ntp,
        receiver=None,
    )
    theirs.received(parse_compound(sr), now=100.0, arrival_ntp_middle=0, our_ssrc=2, remote_ssrc=1)
    rr = theirs.report(
        100.2,
        ssrc=2,
        cname=b"b",
        packets_sent=0,
        octets_sent=0,
        rtp_timestamp=0,
        ntp_timestamp=0,
        receiver=ReceptionReport(1, 0, 0, 10, 0.0),
    )
    block = parse_compound(rr)[0].reports[0]
    assert block.lsr == ntp_middle(our_ntp)
    assert block.dlsr == pytest.approx(0.2 * 65536, abs=2)
    # The RR reaches us 0.2 s (held) + 0.06 s (network) after our SR left.
    arrival = (ntp_middle(our_ntp) + int(0.26 * 65536)) & 0xFFFFFFFF
    ours.received(
        parse_compound(rr), now=1.26, arrival_ntp_middle=arrival, our_ssrc=1, remote_ssrc=2
    )
    assert ours.rtt == pytest.approx(0.06, abs=0.001)
    assert ours.remote_report.ssrc == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81",
        b"\x81\xc9\x00\x07" + bytes(8),
        b"\x41\xc9\x00\x01abcd",
        b"\x81\xc8\x00\x01abcd",
    ],
)
def test_malformed_rtcp_raises_value_error(data):
    with pytest.raises(ValueError):
        parse_compound(data)


def test_build_compound_roundtrip_through_aiortc():
    data = build_compound(5, b"x", sender_info=None, reports=[])
    packets = RtcpPacket.parse(data)
    assert [type(p) for p in packets] == [RtcpRrPacket, RtcpSdesPacket]
