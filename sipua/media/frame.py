"""The audio frame media applications exchange with the engine."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_WIDTH = 2  # 16-bit signed little-endian PCM


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """``pcm`` is 16-bit signed little-endian mono audio at ``sample_rate``.

    ``timestamp`` counts samples (at ``sample_rate``) since the participant's
    audio started, so an application can place frames on a timeline; it keeps
    advancing across concealed and silent frames.
    """

    pcm: bytes
    sample_rate: int
    timestamp: int

    @property
    def samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.samples / self.sample_rate


def frame_bytes(sample_rate: int, ms: int = 20) -> int:
    """Octets of ``ms`` milliseconds of 16-bit mono audio at ``sample_rate``."""
    return sample_rate * ms // 1000 * SAMPLE_WIDTH
