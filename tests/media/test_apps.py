import asyncio
import wave

import numpy as np
import pytest

from sipua.media.apps import EchoApp, MediaApp, app_names, get_app, overrides_on_tick, register_app
from sipua.media.frame import AudioFrame, frame_bytes
from sipua.media.play import PlayApp, read_wav, tone_frequencies

from .helpers import dominant_frequency, rms, tone


class FakeParticipant:
    """Stands in for a stream: collects what the app sends."""

    def __init__(self, pid: str = "leg-1", sample_rate: int = 16000) -> None:
        self.id = pid
        self.sample_rate = sample_rate
        self.sent = bytearray()
        self.consumed = 0

    @property
    def queued_ms(self) -> float:
        return 1000 * (len(self.sent) - self.consumed) / (2 * self.sample_rate)

    def send_audio(self, pcm: bytes) -> None:
        self.sent += pcm

    def clear(self) -> None:
        self.consumed = len(self.sent)

    def send_dtmf(self, digits, duration_ms=100):
        return asyncio.get_event_loop().create_future()

    def stats(self):
        return {}

    def tick(self) -> None:
        """What the engine's tick does: take 20 ms."""
        self.consumed = min(len(self.sent), self.consumed + frame_bytes(self.sample_rate))


def test_registry():
    assert {"echo", "record", "play"} <= set(app_names())
    assert isinstance(get_app("echo"), EchoApp)
    assert get_app("echo", fast_path=False).needs_audio
    with pytest.raises(KeyError):
        get_app("nope")

    class Custom(MediaApp):
        name = "custom"

    register_app("custom", Custom)
    assert isinstance(get_app("custom"), Custom)


def test_echo_flags_and_decoded_echo():
    fast = EchoApp()
    assert fast.relay_rtp and not fast.needs_audio
    slow = EchoApp(fast_path=False, sample_rate=8000)
    assert not slow.relay_rtp and slow.needs_audio and slow.sample_rate == 8000
    participant = FakeParticipant()
    frame = AudioFrame(tone(300, 0.02, 16000), 16000, 0)
    slow.on_audio(participant, frame)
    assert bytes(participant.sent) == frame.pcm
    assert not overrides_on_tick(slow)


def test_record_writes_one_wav_per_participant(tmp_path):
    app = get_app("record", directory=tmp_path / "rec", prefix="call-")
    alice, bob = FakeParticipant("a/1"), FakeParticipant("b:2")
    audio = {"a/1": tone(500, 0.4, 16000), "b:2": tone(900, 0.2, 16000)}
    for p in (alice, bob):
        app.on_start(p)
        pcm = audio[p.id]
        for i in range(0, len(pcm), 640):
            app.on_audio(p, AudioFrame(pcm[i : i + 640], 16000, i // 2))
        app.on_hangup(p)
    app.on_hangup(alice)  # twice is harmless
    assert sorted(f.name for f in (tmp_path / "rec").iterdir()) == ["call-a_1.wav", "call-b_2.wav"]
    for p, freq in ((alice, 500), (bob, 900)):
        with wave.open(str(app.files[p.id])) as reader:
            assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (
                1,
                2,
                16000,
            )
            data = reader.readframes(reader.getnframes())
        assert data == audio[p.id]
        assert dominant_frequency(data, 16000) == pytest.approx(freq, abs=5)


def test_play_tone_keeps_the_queue_filled_and_is_continuous():
    app = get_app("play", source="tone:1000")
    assert overrides_on_tick(app) and not app.needs_audio
    participant = FakeParticipant()
    app.on_start(participant)
    for _ in range(100):
        assert participant.queued_ms >= 40
        participant.tick()
        app.on_tick(participant)
    pcm = bytes(participant.sent)
    assert dominant_frequency(pcm, 16000) == pytest.approx(1000, abs=5)
    samples = np.frombuffer(pcm, "<i2").astype(float)
    # No discontinuity at chunk boundaries (a 1 kHz sine moves < 0.4 of full scale per sample).
    assert np.max(np.abs(np.diff(samples))) < 0.4 * 32767 * 0.3 * 1.01 * 2
    assert tone_frequencies("tone:350+440") == [350.0, 440.0]
    with pytest.raises(ValueError):
        tone_frequencies("tone:abc")


def test_play_wav_is_converted_to_the_participant_rate(tmp_path):
    path = tmp_path / "prompt.wav"
    stereo = np.repeat(np.frombuffer(tone(600, 0.5, 8000), "<i2"), 2).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(stereo)
    pcm = read_wav(path, 16000)
    assert abs(len(pcm) - 16000) <= 64  # 0.5 s at 16 kHz, 2 octets per sample
    app = PlayApp(str(path), sample_rate=16000)
    participant = FakeParticipant()
    app.on_start(participant)
    for _ in range(60):
        participant.tick()
        app.on_tick(participant)
    assert app.finished(participant)
    played = bytes(participant.sent)
    assert len(played) == len(pcm)
    assert dominant_frequency(played, 16000) == pytest.approx(600, abs=5)
    assert rms(played) > 1000
    with pytest.raises(FileNotFoundError):
        PlayApp(str(tmp_path / "missing.wav"))


def test_play_loop(tmp_path):
    path = tmp_path / "beep.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(tone(800, 0.1, 16000))
    app = PlayApp(str(path), loop=True)
    participant = FakeParticipant()
    app.on_start(participant)
    for _ in range(30):
        participant.tick()
        app.on_tick(participant)
    assert not app.finished(participant)
    assert len(participant.sent) > 3200 * 2
