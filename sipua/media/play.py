"""The ``play`` application: plays a WAV file or a tone to every participant.

``source`` is a path to a WAV file (any rate, 8/16/32-bit, mono or stereo;
converted to the participant's rate with PyAV) or ``tone:<Hz>[+<Hz>...]``
(e.g. ``tone:440`` or ``tone:350+440``), which plays until hang-up.
"""

from __future__ import annotations

import math
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

import av

from .apps import DEFAULT_SAMPLE_RATE, MediaApp, Participant
from .codecs import pcm_of

_QUEUE_MS = 60  # keep this much audio queued ahead of the tick
_FORMATS = {1: "u8", 2: "s16", 4: "s32"}


def tone_frequencies(source: str) -> list[float] | None:
    if not source.startswith("tone:"):
        return None
    try:
        freqs = [float(f) for f in source[5:].split("+")]
    except ValueError as exc:
        raise ValueError(f"bad tone spec {source!r}") from exc
    if not freqs or any(not 0 < f < 24000 for f in freqs):
        raise ValueError(f"bad tone spec {source!r}")
    return freqs


def read_wav(path: str | Path, sample_rate: int) -> bytes:
    """The whole file as 16-bit mono PCM at ``sample_rate``."""
    with wave.open(str(path), "rb") as reader:
        channels = reader.getnchannels()
        width = reader.getsampwidth()
        rate = reader.getframerate()
        data = reader.readframes(reader.getnframes())
    if width not in _FORMATS:
        raise ValueError(f"{path}: unsupported sample width {width}")
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError(f"{path}: unsupported channel count {channels}")
    samples = len(data) // (width * channels)
    frame = av.AudioFrame(format=_FORMATS[width], layout=layout, samples=samples)
    frame.planes[0].update(data[: samples * width * channels])
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    out = [bytes(pcm_of(f)) for f in resampler.resample(frame)]
    out += [bytes(pcm_of(f)) for f in resampler.resample(None)]
    return b"".join(out)


@dataclass
class _Cursor:
    position: int = 0  # samples (tone) or octets (file) played so far
    pcm: bytes = b""
    done: bool = False


class PlayApp(MediaApp):
    name = "play"
    needs_audio = False

    def __init__(
        self,
        source: str,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        loop: bool = False,
        level: float = 0.3,
    ) -> None:
        self.source = source
        self.sample_rate = sample_rate
        self.loop = loop
        self.level = level
        self._freqs = tone_frequencies(source)
        if self._freqs is None and not Path(source).is_file():
            raise FileNotFoundError(source)
        self._cursors: dict[str, _Cursor] = {}
        self._file_pcm: dict[int, bytes] = {}
        self._tables: dict[int, bytes] = {}

    def on_start(self, participant: Participant) -> None:
        cursor = _Cursor()
        if self._freqs is None:
            rate = participant.sample_rate
            if rate not in self._file_pcm:
                self._file_pcm[rate] = read_wav(self.source, rate)
            cursor.pcm = self._file_pcm[rate]
        self._cursors[participant.id] = cursor
        self.on_tick(participant)

    def on_hangup(self, participant: Participant) -> None:
        self._cursors.pop(participant.id, None)

    def finished(self, participant: Participant) -> bool:
        cursor = self._cursors.get(participant.id)
        return cursor is None or cursor.done

    def on_tick(self, participant: Participant) -> None:
        cursor = self._cursors.get(participant.id)
        if cursor is None or cursor.done:
            return
        rate = participant.sample_rate
        chunk = rate // 50  # 20 ms
        while participant.queued_ms < _QUEUE_MS and not cursor.done:
            if self._freqs is not None:
                participant.send_audio(self._tone(cursor, chunk, rate))
            else:
                participant.send_audio(self._file_chunk(cursor, 2 * chunk))

    def _tone_table(self, rate: int) -> bytes:
        """One second of the tone: it repeats seamlessly for whole-Hz frequencies."""
        table = self._tables.get(rate)
        if table is None:
            assert self._freqs is not None
            amplitude = 32767 * self.level / len(self._freqs)
            steps = [2 * math.pi * f / rate for f in self._freqs]
            samples = array("h", bytes(2 * rate))
            for n in range(rate):
                samples[n] = int(amplitude * sum(math.sin(step * n) for step in steps))
            table = self._tables[rate] = samples.tobytes()
        return table

    def _tone(self, cursor: _Cursor, samples: int, rate: int) -> bytes:
        table = self._tone_table(rate)
        start = 2 * (cursor.position % rate)
        end = start + 2 * samples
        cursor.position += samples
        if end <= len(table):
            return table[start:end]
        return table[start:] + table[: end - len(table)]

    def _file_chunk(self, cursor: _Cursor, octets: int) -> bytes:
        chunk = cursor.pcm[cursor.position : cursor.position + octets]
        cursor.position += len(chunk)
        if cursor.position >= len(cursor.pcm):
            if self.loop and cursor.pcm:
                cursor.position = 0
            else:
                cursor.done = True
        return chunk
