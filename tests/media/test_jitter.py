from sipua.media.jitter import Playout, PlayoutBuffer


def _put(buffer: PlayoutBuffer, seq: int, pt: int = 0) -> None:
    buffer.put(pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, seq.to_bytes(4, "big", signed=True))


def _drain(buffer: PlayoutBuffer, ticks: int) -> list:
    out = []
    for _ in range(ticks):
        status, frame = buffer.pop()
        out.append(int.from_bytes(frame.data, "big", signed=True) if frame else status.value)
    return out


def test_in_order_packets_play_in_order_without_waiting_for_a_successor():
    buffer = PlayoutBuffer()
    for seq in range(5):
        _put(buffer, seq)
        assert _drain(buffer, 1) == [seq]  # each frame plays at the next tick
    assert _drain(buffer, 1) == ["empty"]


def test_reordered_packets_come_out_sorted():
    buffer = PlayoutBuffer()
    for seq in (0, 2, 1, 4, 3, 5):
        _put(buffer, seq)
    assert _drain(buffer, 7) == [0, 1, 2, 3, 4, 5, "empty"]


def test_a_lost_packet_is_waited_for_once_then_skipped():
    buffer = PlayoutBuffer()
    for seq in (0, 1, 3, 4):
        _put(buffer, seq)
    assert _drain(buffer, 6) == [0, 1, "wait", "lost", 3, 4]
    assert buffer.lost == 1


def test_a_late_packet_still_plays_if_it_arrives_during_the_wait():
    buffer = PlayoutBuffer()
    for seq in (0, 2):
        _put(buffer, seq)
    assert _drain(buffer, 2) == [0, "wait"]
    _put(buffer, 1)
    assert _drain(buffer, 2) == [1, 2]
    assert buffer.lost == 0


def test_a_burst_of_losses_costs_one_tick_each():
    buffer = PlayoutBuffer()
    for seq in (0, 4, 5):
        _put(buffer, seq)
    assert _drain(buffer, 7) == [0, "wait", "lost", "lost", "lost", 4, 5]


def test_packets_behind_the_playout_point_are_dropped():
    buffer = PlayoutBuffer()
    for seq in (0, 2):
        _put(buffer, seq)
    assert _drain(buffer, 3) == [0, "wait", "lost"]
    _put(buffer, 1)  # too late
    assert _drain(buffer, 2) == [2, "empty"]


def test_latency_is_bounded_after_a_burst():
    buffer = PlayoutBuffer(max_frames=6, target_frames=2)
    for seq in range(12):  # a 240 ms burst after a network stall
        _put(buffer, seq)
    assert len(buffer) <= 6
    assert buffer.discarded == 5
    # The oldest frames went; what is left plays out in order.
    assert _drain(buffer, 8) == [5, 6, 7, 8, 9, 10, 11, "empty"]


def test_sequence_wrap():
    buffer = PlayoutBuffer()
    for seq in (65534, 65535, 65536, 65537):
        _put(buffer, seq)
    assert _drain(buffer, 4) == [65534, 65535, 65536, 65537]


def test_codec_switch_resets():
    buffer = PlayoutBuffer()
    _put(buffer, 0, pt=0)
    _put(buffer, 1, pt=8)
    assert buffer.payload_type == 8
    assert _drain(buffer, 2) == [1, "empty"]


def test_empty_buffer_reports_empty():
    assert PlayoutBuffer().pop() == (Playout.EMPTY, None)
