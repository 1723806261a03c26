import struct

import pytest
from aiortc.rtp import RtpPacket

from sipua.media.rtp import RtpSender, build_rtp, parse_rtp


def test_build_and_parse_agree_with_aiortc():
    data = build_rtp(96, 1, 65535, 0xFFFFFFF0, 0xCAFEBABE, b"payload")
    assert parse_rtp(data) == (96, 1, 65535, 0xFFFFFFF0, 0xCAFEBABE, 12, len(data))
    reference = RtpPacket.parse(data)
    assert (reference.payload_type, reference.marker, reference.sequence_number) == (96, 1, 65535)
    assert (reference.timestamp, reference.ssrc, reference.payload) == (
        0xFFFFFFF0,
        0xCAFEBABE,
        b"payload",
    )
    packet = RtpPacket(
        payload_type=8, marker=0, sequence_number=7, timestamp=99, ssrc=5, payload=b"x"
    )
    assert parse_rtp(packet.serialize())[:5] == (8, 0, 7, 99, 5)


def test_csrc_extension_and_padding_are_skipped():
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 2, 3)
    csrcs = struct.pack("!II", 10, 11)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    payload = b"audio"
    padding = b"\x00\x00\x03"
    data = header + csrcs + extension + payload + padding
    pt, marker, seq, ts, ssrc, start, end = parse_rtp(data)
    assert data[start:end] == payload
    assert RtpPacket.parse(data).payload == payload


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        bytes(12),  # version 0
        b"\x40" + bytes(11),  # version 1
        b"\x83" + bytes(11) + bytes(8),  # 3 CSRCs announced, 2 present
        b"\x90" + bytes(11) + b"\xbe\xde",  # extension header cut
        b"\x90" + bytes(11) + b"\xbe\xde\x00\x05" + bytes(4),  # extension longer than packet
        b"\xa0" + bytes(11) + b"ab\x00",  # padding length 0
        b"\xa0" + bytes(11) + b"ab\x09",  # padding longer than payload
    ],
)
def test_malformed_headers_raise_value_error(data):
    with pytest.raises(ValueError):
        parse_rtp(data)


def test_sender_sequence_wraps_and_counts():
    sender = RtpSender(8000, ssrc=0x1234)
    sender.seq = 0xFFFE
    seqs = []
    for _ in range(4):
        packet = sender.packet(0, 0, 1000, b"\xff" * 160)
        seqs.append(parse_rtp(packet)[2])
        assert parse_rtp(packet)[4] == 0x1234
    assert seqs == [0xFFFE, 0xFFFF, 0, 1]
    assert sender.packets == 4 and sender.octets == 640


def test_sender_initial_values_are_random():
    a, b = RtpSender(8000), RtpSender(8000)
    assert (a.ssrc, a.seq, a.timestamp_at(0)) != (b.ssrc, b.seq, b.timestamp_at(0))
    assert a.ssrc != 0


def test_timestamps_follow_ticks_and_survive_a_clock_change():
    sender = RtpSender(8000)
    sender.start(100)
    t0 = sender.timestamp_at(100)
    assert (sender.timestamp_at(101) - t0) & 0xFFFFFFFF == 160
    assert (sender.timestamp_at(150) - t0) & 0xFFFFFFFF == 160 * 50
    assert (sender.timestamp_at(100.5) - t0) & 0xFFFFFFFF == 80
    before = sender.timestamp_at(200)
    sender.set_clock_rate(48000, 200)  # e.g. PCMU -> Opus on re-INVITE
    assert sender.timestamp_at(200) == before
    assert (sender.timestamp_at(201) - before) & 0xFFFFFFFF == 960
