"""The conference app and its mixer, with fake participants ticked the way the engine ticks them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from sipua.media import conference
from sipua.media.apps import get_app, overrides_on_tick
from sipua.media.conference import (
    LIMIT,
    PREBUFFER_FRAMES,
    QUEUE_FRAMES,
    RELEASE_PER_FRAME,
    ConferenceApp,
    conference_ids,
    mixer_for,
)
from sipua.media.events import DtmfReceived
from sipua.media.frame import AudioFrame, frame_bytes

from .helpers import dominant_frequency, tone

RATE = 16000
FRAME = frame_bytes(RATE)  # octets in 20 ms
SAMPLES = FRAME // 2


class FakeParticipant:
    """A stream as the app sees it: each tick takes one queued 20 ms frame out, as the engine does."""

    def __init__(self, pid: str, sample_rate: int = RATE) -> None:
        self.id = pid
        self.sample_rate = sample_rate
        self.queue = bytearray()
        self.heard: list[bytes] = []  # one entry per tick: what went out (b"" if nothing did)
        self.taking = True  # False: a participant whose queue never drains

    @property
    def queued_ms(self) -> float:
        return 1000 * len(self.queue) / (2 * self.sample_rate)

    def send_audio(self, pcm: bytes) -> None:
        self.queue += pcm

    def clear(self) -> None:
        self.queue.clear()

    def send_dtmf(self, digits, duration_ms=100):
        return asyncio.get_event_loop().create_future()

    def stats(self):
        return {}

    def take(self) -> None:
        frame_len = frame_bytes(self.sample_rate)
        if not self.taking:
            return
        self.heard.append(bytes(self.queue[:frame_len]))
        del self.queue[:frame_len]

    def samples(self, since: int = 0) -> np.ndarray:
        return np.frombuffer(b"".join(self.heard[since:]), "<i2")


def dc(value: int) -> bytes:
    return np.full(SAMPLES, value, dtype="<i2").tobytes()


class Room:
    """One session's apps and participants; :meth:`tick` is one 20 ms tick of the media clock."""

    def __init__(self, session_id: str = "sess_test") -> None:
        self.session_id = session_id
        self.apps: dict[str, ConferenceApp] = {}
        self.people: dict[str, FakeParticipant] = {}
        self.ticks = 0

    def join(self, pid: str, sample_rate: int = RATE) -> FakeParticipant:
        app = get_app("conference", session_id=self.session_id)
        assert isinstance(app, ConferenceApp)
        participant = FakeParticipant(pid, app.sample_rate if sample_rate == RATE else sample_rate)
        self.apps[pid], self.people[pid] = app, participant
        app.on_start(participant)
        return participant

    def leave(self, pid: str) -> None:
        self.apps.pop(pid).on_hangup(self.people.pop(pid))

    def tick(self, said: dict[str, bytes | list[bytes] | None]) -> None:
        """Per participant, as MediaStream._on_tick: inbound audio first, then on_tick, then send."""
        self.ticks += 1
        for pid, participant in self.people.items():
            app = self.apps[pid]
            frames = said.get(pid)
            for pcm in [frames] if isinstance(frames, bytes) else frames or []:
                app.on_audio(participant, AudioFrame(pcm, RATE, 0))
            app.on_tick(participant)
            participant.take()

    def run(self, ticks: int, said: dict[str, bytes]) -> None:
        for _ in range(ticks):
            self.tick(said)


@pytest.fixture(autouse=True)
def no_leftover_conferences() -> Iterator[None]:
    yield
    leftovers = conference_ids()
    conference._mixers.clear()
    assert not leftovers, f"conferences left behind: {leftovers}"


def levels(participant: FakeParticipant) -> list[int]:
    """The (constant) value of every frame a participant heard; None for a frame not sent."""
    out = []
    for frame in participant.heard:
        values = set(np.frombuffer(frame, "<i2").tolist())
        assert len(values) <= 1, "a DC input must come out DC"
        out.append(values.pop() if values else None)
    return out


def test_everyone_hears_the_others_and_not_themselves() -> None:
    room = Room()
    a, b, c = room.join("a"), room.join("b"), room.join("c")
    room.run(10, {"a": dc(1000), "b": dc(2000), "c": dc(4000)})
    assert levels(a)[-5:] == [6000] * 5
    assert levels(b)[-5:] == [5000] * 5
    assert levels(c)[-5:] == [3000] * 5
    for pid in "abc":
        room.leave(pid)


def test_tones_a_participant_hears_are_the_others_only() -> None:
    room = Room()
    a, b, _ = room.join("a"), room.join("b"), room.join("c")
    voices = {"a": tone(400, 1.0, RATE, 0.2), "b": tone(1000, 1.0, RATE, 0.2)}
    voices["c"] = tone(1600, 1.0, RATE, 0.2)
    for i in range(50):
        room.tick({pid: pcm[i * FRAME : (i + 1) * FRAME] for pid, pcm in voices.items()})
    heard = a.samples(since=PREBUFFER_FRAMES + 1).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(heard.size))) ** 2
    freqs = np.fft.rfftfreq(heard.size, 1 / RATE)

    def share(hz: float) -> float:
        return float(spectrum[np.abs(freqs - hz) <= 30].sum() / spectrum.sum())

    assert share(1000) > 0.45 and share(1600) > 0.45
    assert share(400) < 0.001  # not itself
    assert dominant_frequency(b.samples(since=3).tobytes(), RATE) in (
        pytest.approx(400, abs=5),
        pytest.approx(1600, abs=5),
    )
    for pid in "abc":
        room.leave(pid)


def test_loud_talkers_are_limited_not_clipped_or_wrapped() -> None:
    room = Room()
    a, b, c = room.join("a"), room.join("b"), room.join("c")
    room.run(6, {"b": dc(30000), "c": dc(30000)})
    # 60,000 does not fit in int16: the limiter brings a's mix to its ceiling at once.
    assert levels(a)[-1] == LIMIT and max(v for v in levels(a) if v is not None) <= LIMIT
    assert levels(b)[-1] == 30000 and levels(c)[-1] == 30000  # one other: nothing to limit
    room.run(6, {"b": dc(-30000), "c": dc(-30000)})
    assert levels(a)[-1] == -LIMIT
    for pid in "abc":
        room.leave(pid)


def test_the_limiter_gives_the_gain_back_gradually() -> None:
    room = Room()
    a = room.join("a")
    room.join("b")
    room.join("c")
    room.run(6, {"b": dc(30000), "c": dc(30000)})  # limited: gain 32000/60000
    heard_before = len(a.heard)
    room.run(20, {"b": dc(5000), "c": dc(5000)})  # quiet again: the plain sum is 10,000
    out = np.concatenate([np.frombuffer(f, "<i2") for f in a.heard[heard_before:]]).astype(float)
    quiet = int(np.argmax(out != LIMIT))  # the loud frames still queued come out first
    assert quiet > 0 and (out[:quiet] == LIMIT).all()
    gain = out[quiet:] / 10000
    # The gain goes on from where the limiter left it, rises sample by sample (a ramp inside
    # each frame, so no step), never faster than RELEASE_PER_FRAME a frame, and is back to 1.
    assert gain[0] == pytest.approx(LIMIT / 60000, abs=1e-3)
    steps = np.diff(gain)
    assert steps.min() >= -1e-4 and steps.max() <= RELEASE_PER_FRAME / SAMPLES + 2e-4
    assert gain[-1] == 1.0
    for pid in "abc":
        room.leave(pid)


def test_join_and_leave_change_what_the_others_hear() -> None:
    room = Room()
    a, b = room.join("a"), room.join("b")
    said = {"a": dc(100), "b": dc(200), "c": dc(400)}
    room.run(6, said)
    assert levels(a)[-1] == 200 and levels(b)[-1] == 100

    c = room.join("c")
    room.tick(said)
    assert levels(c)[-1] == 300  # a newcomer hears the room at once
    assert levels(a)[-1] == 200  # and is heard once its own queue is primed
    room.run(PREBUFFER_FRAMES + 1, said)
    assert (levels(a)[-1], levels(b)[-1], levels(c)[-1]) == (600, 500, 300)

    room.leave("b")
    room.run(2, said)
    assert (levels(a)[-1], levels(c)[-1]) == (400, 100)
    assert len(mixer_for(room.session_id)) == 2
    room.leave("a")
    room.leave("c")


def test_one_late_frame_is_not_a_gap() -> None:
    room = Room()
    a, _ = room.join("a"), room.join("b")
    room.run(5, {"b": dc(1000)})
    start = len(a.heard)
    # b's frames come in bursts, as a WebSocket stream's do: one tick nothing, then two
    for _ in range(10):
        room.tick({})
        room.tick({"b": [dc(1000), dc(1000)]})
    assert levels(a)[start:] == [1000] * 20
    mixer = mixer_for(room.session_id)
    assert mixer is not None
    assert mixer.stats()["members"]["b"]["underruns"] == 0

    # when b stops, a hears what was queued (at most QUEUE_FRAMES), then silence, not old audio
    room.run(QUEUE_FRAMES, {})
    assert levels(a)[-1] == 0
    room.run(3, {})
    assert levels(a)[-3:] == [0, 0, 0]
    room.leave("a")
    room.leave("b")


def test_a_burst_is_bounded_by_the_queue() -> None:
    room = Room()
    a, _ = room.join("a"), room.join("b")
    room.run(3, {"b": dc(1)})
    room.tick({"b": [dc(v) for v in range(10, 20)]})  # ten frames at once
    mixer = mixer_for(room.session_id)
    assert mixer is not None
    member = mixer.stats()["members"]["b"]
    assert member["queued_frames"] <= QUEUE_FRAMES
    assert member["overflows"] >= 10 - QUEUE_FRAMES
    room.run(QUEUE_FRAMES + 2, {})
    # the newest frames were kept (latency stays bounded), then silence
    assert levels(a)[-(QUEUE_FRAMES + 2) :] == [17, 18, 19, 0, 0]
    room.leave("a")
    room.leave("b")


def test_a_participant_that_takes_no_audio_does_not_grow_its_queue() -> None:
    room = Room()
    a, _ = room.join("a"), room.join("b")
    a.taking = False
    room.run(200, {"b": dc(5)})
    assert a.queued_ms <= conference.MAX_BACKLOG_MS + 20
    room.leave("a")
    room.leave("b")


def test_hold_contributes_silence_and_hears_nothing() -> None:
    room = Room()
    a, b = room.join("a"), room.join("b")
    room.run(5, {"a": dc(10), "b": dc(20)})
    assert levels(a)[-1] == 20
    room.apps["b"].on_hold(b, True)  # music on hold must not reach the room
    heard_by_b = len(b.heard)
    room.run(5, {"a": dc(10), "b": dc(20)})
    assert levels(a)[-5:] == [0] * 5
    assert levels(b)[heard_by_b:] == [None] * 5  # nothing queued toward a held leg
    assert b.queued_ms == 0
    room.apps["b"].on_hold(b, False)
    room.run(5, {"a": dc(10), "b": dc(20)})
    assert levels(a)[-1] == 20 and levels(b)[-1] == 10
    room.leave("a")
    room.leave("b")


def test_dtmf_is_not_mixed() -> None:
    room = Room()
    a, b = room.join("a"), room.join("b")
    room.run(4, {})
    room.apps["b"].on_dtmf(b, DtmfReceived(digit="5", duration_ms=100, source="rfc4733"))
    room.run(4, {})
    assert set(levels(a)) == {0}
    room.leave("a")
    room.leave("b")


def test_mixer_exists_from_the_first_start_to_the_last_hang_up() -> None:
    app = get_app("conference", session_id="sess_x")
    assert overrides_on_tick(app) and app.needs_audio and not app.relay_rtp
    assert mixer_for("sess_x") is None  # an app whose stream never starts leaves nothing
    room = Room("sess_x")
    room.join("a")
    first = mixer_for("sess_x")
    assert first is not None and conference_ids() == ["sess_x"]
    room.join("b")
    room.leave("a")
    assert mixer_for("sess_x") is first
    room.apps["b"].on_hangup(room.people["b"])
    room.apps["b"].on_hangup(room.people["b"])  # twice is harmless
    assert mixer_for("sess_x") is None and conference_ids() == []
    del room.apps["b"], room.people["b"]
    room.join("c")  # a new conference, not the old mixer
    assert mixer_for("sess_x") is not first
    room.leave("c")


def test_sessions_do_not_hear_each_other() -> None:
    one, two = Room("sess_1"), Room("sess_2")
    a, b = one.join("a"), one.join("b")
    x, y = two.join("x"), two.join("y")
    for _ in range(6):
        one.tick({"a": dc(1), "b": dc(2)})
        two.tick({"x": dc(100), "y": dc(200)})
    assert (levels(a)[-1], levels(b)[-1], levels(x)[-1], levels(y)[-1]) == (2, 1, 200, 100)
    assert conference_ids() == ["sess_1", "sess_2"]
    for room, pids in ((one, "ab"), (two, "xy")):
        for pid in pids:
            room.leave(pid)


def test_one_rate_per_conference() -> None:
    room = Room()
    room.join("a")  # the room mixes at 16 kHz
    later = ConferenceApp(room.session_id, sample_rate=8000)
    assert later.sample_rate == RATE  # takes the room's rate, so its stream decodes to it
    odd = FakeParticipant("odd", sample_rate=8000)
    with pytest.raises(ValueError, match="8000 Hz"):
        later.on_start(odd)
    assert len(mixer_for(room.session_id)) == 1
    room.leave("a")
    assert ConferenceApp("sess_new", sample_rate=8000).sample_rate == 8000
