"""The ``record`` application: one 16-bit mono WAV file per participant."""

from __future__ import annotations

import re
import wave
from pathlib import Path

from .apps import DEFAULT_SAMPLE_RATE, MediaApp, Participant
from .frame import AudioFrame

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RecordApp(MediaApp):
    """Writes ``<directory>/<prefix><participant id>.wav`` for every participant."""

    name = "record"

    def __init__(
        self,
        directory: str | Path,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        prefix: str = "",
    ) -> None:
        self.directory = Path(directory)
        self.sample_rate = sample_rate
        self.prefix = prefix
        self.files: dict[str, Path] = {}
        self._writers: dict[str, wave.Wave_write] = {}

    def path_for(self, participant: Participant) -> Path:
        name = _UNSAFE.sub("_", f"{self.prefix}{participant.id}").strip("._") or "participant"
        return self.directory / f"{name}.wav"

    def on_start(self, participant: Participant) -> None:
        if participant.id in self._writers:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(participant)
        writer = wave.open(str(path), "wb")  # noqa: SIM115  closed in on_hangup
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(participant.sample_rate)
        self._writers[participant.id] = writer
        self.files[participant.id] = path

    def on_audio(self, participant: Participant, frame: AudioFrame) -> None:
        writer = self._writers.get(participant.id)
        if writer is not None:
            # writeframesraw: the header is patched once, on close, not per frame.
            writer.writeframesraw(frame.pcm)

    def on_hangup(self, participant: Participant) -> None:
        writer = self._writers.pop(participant.id, None)
        if writer is not None:
            writer.close()
