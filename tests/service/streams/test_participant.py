"""The stream participant on a hand-driven clock: pacing, marks, clear, DTMF, inbound framing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sipua.media.apps import EchoApp, MediaApp
from sipua.service.streams.participant import WebSocketParticipant
from sipua.service.streams.wire import WireDecoder, WireEncoder, WireFormat

L16 = WireFormat("L16", 16000, "little")
FRAME = 640  # 20 ms at 16 kHz


class ManualClock:
    def __init__(self) -> None:
        self.subscribers: dict[object, Any] = {}
        self.tick_number = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_event_loop()

    def subscribe(self, key: object, callback: Any) -> None:
        self.subscribers[key] = callback

    def unsubscribe(self, key: object) -> None:
        self.subscribers.pop(key, None)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            for callback in list(self.subscribers.values()):
                callback(self.tick_number, 0.0)
            self.tick_number += 1


class Sink:
    def __init__(self, dtmf: bool = False) -> None:
        self.sent: list[Any] = []
        self.dtmf = dtmf
        self.hung_up: str | None = None

    def send_media(self, payload: bytes) -> None:
        self.sent.append(("media", payload))

    def send_clear(self) -> None:
        self.sent.append(("clear", None))

    def send_mark(self, name: str) -> None:
        self.sent.append(("mark", name))

    def send_dtmf(self, digit: str, duration_ms: int) -> bool:
        if self.dtmf:
            self.sent.append(("dtmf", digit))
        return self.dtmf

    def hangup(self, reason: str) -> None:
        self.hung_up = reason

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]


class Recorder(MediaApp):
    name = "recorder"

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.calls: list[str] = []

    def on_start(self, participant: Any) -> None:
        self.calls.append("start")

    def on_audio(self, participant: Any, frame: Any) -> None:
        self.frames.append(frame)

    def on_dtmf(self, participant: Any, event: Any) -> None:
        self.calls.append(f"dtmf {event.digit} {event.source}")

    def on_hangup(self, participant: Any) -> None:
        self.calls.append("hangup")


def make(
    app: MediaApp | None = None, sink: Sink | None = None, ahead: int = 60
) -> tuple[WebSocketParticipant, ManualClock, Sink]:
    clock, sink = ManualClock(), sink or Sink()
    app = app or Recorder()
    participant = WebSocketParticipant(
        "p1",
        app,
        clock,  # type: ignore[arg-type]
        sink,
        encoder=WireEncoder(L16, 16000),
        decoder=WireDecoder(L16, 16000),
        send_ahead_ms=ahead,
        provider="test",
    )
    participant.start()
    return participant, clock, sink


def test_never_faster_than_real_time_after_a_bounded_lead() -> None:
    participant, clock, sink = make(ahead=60)
    participant.send_audio(bytes(FRAME * 50))
    assert participant.queued_ms == 1000
    clock.tick()
    assert sink.kinds().count("media") == 3  # 60 ms ahead at once
    clock.tick(10)
    assert sink.kinds().count("media") == 13  # then one frame per 20 ms tick
    assert participant.queued_ms == pytest.approx(1000 - 13 * 20)
    # Idle ticks refill the lead (to at most 60 ms), never more.
    participant.clear()
    clock.tick(20)
    participant.send_audio(bytes(FRAME * 10))
    before = sink.kinds().count("media")
    clock.tick()
    assert sink.kinds().count("media") - before == 3


def test_marks_follow_the_audio_queued_before_them() -> None:
    participant, clock, sink = make(ahead=20)
    participant.add_mark("nothing-queued")
    assert sink.sent == [("mark", "nothing-queued")]
    participant.send_audio(bytes(FRAME * 3))
    participant.add_mark("after-3")
    participant.send_audio(bytes(FRAME * 2))
    clock.tick(3)
    assert sink.kinds()[-2:] == ["media", "mark"]
    assert sink.sent[-1] == ("mark", "after-3")
    clock.tick(5)
    assert sink.kinds().count("media") == 5
    assert participant.counters["marks_answered"] == 2


def test_clear_drops_the_queue_answers_marks_and_flushes_the_provider() -> None:
    participant, clock, sink = make(ahead=20)
    participant.send_audio(bytes(FRAME * 100))
    participant.add_mark("end")
    clock.tick(2)
    participant.clear()
    assert sink.kinds()[-2:] == ["clear", "mark"]
    assert participant.queued_ms == 0
    clock.tick(5)
    assert sink.kinds().count("media") == 2


def test_a_partial_frame_waits_one_tick_then_is_padded() -> None:
    participant, clock, sink = make(ahead=20)
    participant.send_audio(bytes(100))
    clock.tick()
    assert sink.sent == []
    clock.tick()
    assert sink.sent == [("media", bytes(FRAME))]


def test_inbound_audio_is_cut_into_20ms_frames_with_timestamps() -> None:
    app = Recorder()
    participant, clock, sink = make(app)
    participant.receive_payload(bytes(FRAME + 200))
    participant.receive_payload(bytes(FRAME - 200))
    assert [f.timestamp for f in app.frames] == [0, 320]
    assert all(len(f.pcm) == FRAME and f.sample_rate == 16000 for f in app.frames)
    participant.receive_gap(40)
    assert len(app.frames) == 4 and participant.counters["gap_frames"] == 2
    participant.receive_dtmf("7")
    assert app.calls == ["start", "dtmf 7 test"]
    participant.close()
    assert app.calls[-1] == "hangup"
    participant.receive_payload(bytes(FRAME))  # after close: ignored
    assert len(app.frames) == 4


def test_relaying_apps_get_their_audio_sent_back() -> None:
    participant, clock, sink = make(EchoApp())
    participant.receive_payload(b"\x01\x00" * 320)
    clock.tick()
    assert sink.sent == [("media", b"\x01\x00" * 320)]


async def test_dtmf_to_the_peer_when_the_provider_can() -> None:
    participant, clock, sink = make(sink=Sink(dtmf=True))
    await participant.send_dtmf("12#")
    assert sink.sent == [("dtmf", "1"), ("dtmf", "2"), ("dtmf", "#")]
    cannot, _, _ = make(sink=Sink(dtmf=False))
    with pytest.raises(RuntimeError, match="cannot send DTMF"):
        cannot.send_dtmf("1")
    participant.hangup("test")
    assert sink.hung_up == "test"


def test_stats_and_queue_limit() -> None:
    participant, clock, sink = make()
    participant.send_audio(bytes(FRAME * 50 * 61))  # 61 s: over the 60 s limit
    assert participant.counters["queue_overflows"] == 1
    assert participant.queued_ms == 60_000
    stats = participant.stats()
    assert stats["codec"] == "L16" and stats["provider"] == "test"
    assert stats["packets_sent"] == 0 and stats["state"] == "started"
