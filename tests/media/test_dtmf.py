import json

import pytest
from scapy.all import UDP, rdpcap

from sipua.media.dtmf import (
    DtmfReceiver,
    DtmfSender,
    build_event,
    digit_of,
    event_of,
    parse_event,
)
from sipua.media.rtp import parse_rtp

from .helpers import DATA, PCAPS

SIPP = json.loads((DATA / "rfc4733-telephone-event-from-sipp-pcaps.json").read_text())["files"]


def _packets_of(entry: dict) -> list[tuple[int, int, int, bytes]]:
    """(marker, seq, timestamp, payload) of every RTP packet in the pcap."""
    out = []
    for frame in rdpcap(str(PCAPS / "sipp-dtmf" / entry["file"].split("/")[-1])):
        data = bytes(frame[UDP].payload)
        pt, marker, seq, ts, _ssrc, start, end = parse_rtp(data)
        assert pt == 101
        out.append((marker, seq, ts, data[start:end]))
    return out


@pytest.mark.parametrize("entry", SIPP, ids=lambda e: e["digit"])
def test_sipp_pcaps_give_one_key_press_each(entry):
    packets = _packets_of(entry)
    # The pcap is what the table describes.
    assert [p[1] for p in packets] == [p["seq"] for p in entry["packets"]]
    last = entry["packets"][-1]
    receiver = DtmfReceiver(8000)
    presses = []
    for i, (_marker, _seq, ts, payload) in enumerate(packets):
        presses += receiver.feed(ts, payload, now=i * 0.02)
    presses += receiver.poll(now=100.0)
    expected_digit = {"star": "*", "pound": "#"}.get(entry["digit"], entry["digit"])
    assert [p.digit for p in presses] == [expected_digit]
    assert presses[0].duration_ms == round(last["duration"] / 8)
    assert presses[0].ended_by == "end-bit"
    assert event_of(expected_digit) == entry["event_code"]


def test_the_marker_bit_is_not_needed():
    entry = SIPP[3]
    receiver = DtmfReceiver(8000)
    presses = []
    for i, (_m, _seq, ts, payload) in enumerate(_packets_of(entry)):
        presses += receiver.feed(ts, payload, now=i * 0.02)  # marker ignored entirely
    assert len(presses) == 1


def _press(ts: int, event: int, steps: int, *, end_copies: int = 3) -> list[tuple[int, bytes]]:
    packets = [(ts, build_event(event, False, 10, 160 * k)) for k in range(1, steps)]
    packets += [(ts, build_event(event, True, 10, 160 * steps))] * end_copies
    return packets


def test_consecutive_presses_of_the_same_digit_are_two_events():
    receiver = DtmfReceiver(8000)
    presses = []
    for i, (ts, payload) in enumerate(_press(1000, 5, 5) + _press(3000, 5, 5)):
        presses += receiver.feed(ts, payload, now=i * 0.02)
    assert [(p.digit, p.duration_ms) for p in presses] == [("5", 100), ("5", 100)]


def test_a_press_whose_end_packets_were_all_lost_ends_on_the_next_press():
    receiver = DtmfReceiver(8000)
    presses = []
    for i, (ts, payload) in enumerate(_press(1000, 1, 6, end_copies=0) + _press(5000, 2, 4)):
        presses += receiver.feed(ts, payload, now=i * 0.02)
    assert [(p.digit, p.ended_by) for p in presses] == [("1", "new-event"), ("2", "end-bit")]
    assert presses[0].duration_ms == 100  # the last duration seen (5 * 160 samples)


def test_a_press_whose_end_packets_were_all_lost_ends_by_timeout():
    receiver = DtmfReceiver(8000, timeout=0.3)
    presses = []
    for i, (ts, payload) in enumerate(_press(1000, 9, 6, end_copies=0)):
        presses += receiver.feed(ts, payload, now=i * 0.02)
    assert presses == []
    last_seen = 4 * 0.02
    assert receiver.poll(now=last_seen + 0.29) == []
    ended = receiver.poll(now=last_seen + 0.31)
    assert [(p.digit, p.ended_by) for p in ended] == [("9", "timeout")]
    assert receiver.poll(now=5.0) == []
    # A straggler of the timed-out press does not start a new one.
    assert receiver.feed(1000, build_event(9, True, 10, 960), now=5.1) == []
    assert receiver.poll(now=9.0) == []


def test_duplicates_and_reordering_collapse_by_timestamp():
    receiver = DtmfReceiver(8000)
    packets = _press(1000, 11, 4)
    shuffled = [packets[1], packets[0], packets[1], packets[3], packets[2], packets[4], packets[5]]
    presses = []
    for i, (ts, payload) in enumerate(shuffled):
        presses += receiver.feed(ts, payload, now=i * 0.02)
    assert [(p.digit, p.duration_ms) for p in presses] == [("#", 80)]


def test_non_key_events_are_ignored_and_short_payloads_rejected():
    receiver = DtmfReceiver(8000)
    assert receiver.feed(100, build_event(70, True, 10, 800), now=0) == []  # a tone event
    assert receiver.ignored_events == 1
    with pytest.raises(ValueError):
        receiver.feed(200, b"\x01\x8a", now=0)
    assert digit_of(16) == "flash" and digit_of(17) is None
    with pytest.raises(ValueError):
        event_of("x")
    assert parse_event(build_event(15, True, 63, 0x1FFFF)) == (15, True, 63, 0xFFFF)


def test_sender_packet_train():
    sender = DtmfSender(8000, tick_ms=20)
    sender.queue("7", duration_ms=100, gap_ms=40)
    train = []
    tick = 0
    while sender.busy:
        packet = sender.next_packet(timestamp_now=5000 + 160 * tick)
        train.append((tick, packet))
        tick += 1
        assert tick < 50
    events = [(t, p) for t, p in train if p is not None]
    assert len(events) == 5 + 2  # 100 ms at 20 ms, the last sent three times
    assert [p.marker for _, p in events] == [1, 0, 0, 0, 0, 0, 0]
    assert {p.timestamp for _, p in events} == {5000}
    decoded = [parse_event(p.payload) for _, p in events]
    assert [d[3] for d in decoded] == [160, 320, 480, 640, 800, 800, 800]
    assert [d[1] for d in decoded] == [False] * 4 + [True] * 3
    assert all(d[0] == 7 and d[2] == 10 for d in decoded)
    assert [p.last_of_event for _, p in events] == [False] * 6 + [True]
    # Consecutive ticks, then a gap of audio ticks before the sender is idle.
    assert [t for t, _ in events] == list(range(7))
    assert [p for _, p in train[7:]] == [None, None]
    assert sender.events_sent == 1


def test_sender_digits_get_distinct_timestamps_and_feed_a_receiver():
    sender = DtmfSender(8000)
    sender.queue("1*9#", duration_ms=60, gap_ms=60)
    receiver = DtmfReceiver(8000)
    presses = []
    stamps = []
    for tick in range(200):
        if not sender.busy:
            break
        packet = sender.next_packet(timestamp_now=160 * tick)
        if packet is not None:
            stamps.append(packet.timestamp)
            presses += receiver.feed(packet.timestamp, packet.payload, now=tick * 0.02)
    assert "".join(p.digit for p in presses) == "1*9#"
    assert [p.duration_ms for p in presses] == [60] * 4
    starts = sorted(set(stamps))
    assert len(starts) == 4
    # Next event starts after the previous event's end plus the gap.
    assert all(b - a >= 160 * (3 + 2 + 3) for a, b in zip(starts, starts[1:], strict=False))


def test_sender_rejects_bad_digits_atomically():
    sender = DtmfSender()
    with pytest.raises(ValueError):
        sender.queue("12x")
    assert not sender.busy
