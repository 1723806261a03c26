"""What to play when there is no packet: loss concealment and comfort noise.

Loss: repeat the last good frame, fading it out (a linear ramp inside each
frame, so no step becomes a click), reaching silence after a few frames.
Comfort noise (RFC 3389): white noise at the level the peer's CN packet gives
in -dBov; levels below -90 dBov are plain silence.
"""

from __future__ import annotations

import random

import numpy as np

FADE_FRAMES = 4  # concealed frames before silence (80 ms at 20 ms)
_NOISE_TABLE_SAMPLES = 8192
_noise_table: np.ndarray | None = None


def _noise() -> np.ndarray:
    global _noise_table
    if _noise_table is None:
        rng = random.Random(3389)
        # Uniform in [-1, 1] has RMS 1/sqrt(3); scale to unit RMS. Stored twice over, so a
        # frame starting anywhere in the first copy is one contiguous slice.
        table = np.array([rng.uniform(-1.0, 1.0) * 3**0.5 for _ in range(_NOISE_TABLE_SAMPLES)])
        _noise_table = np.concatenate((table, table))
    return _noise_table


class Concealer:
    """Produces stand-in frames of ``frame_samples`` 16-bit samples."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._silence = bytes(2 * frame_samples)
        self._last: bytes | None = None
        self._run = 0  # consecutive concealed frames
        self._noise_pos = 0
        # The fade of every concealed frame: frame k (from 1) runs from 1 - (k-1)/FADE_FRAMES
        # down by 1/(FADE_FRAMES * frame_samples) per sample.
        step = 1.0 / (FADE_FRAMES * frame_samples)
        self._ramp = np.arange(frame_samples) * -step

    def good(self, pcm: bytes) -> None:
        """Remember the last frame that really arrived."""
        if len(pcm) == 2 * self.frame_samples:
            self._last = pcm
        self._run = 0

    def conceal(self) -> bytes:
        """A stand-in for one lost frame: the last one, fading out over FADE_FRAMES."""
        self._run += 1
        last = self._last
        if last is None or self._run > FADE_FRAMES:
            return self._silence
        start = 1.0 - (self._run - 1) / FADE_FRAMES
        samples = np.frombuffer(last, dtype="<i2")
        # Truncated toward zero, as int() does; |gain| <= 1 keeps it inside int16.
        return (samples * (self._ramp + start)).astype("<i2").tobytes()

    def comfort_noise(self, level_dbov: int) -> bytes:
        """One frame of noise at ``-level_dbov`` dBov (RFC 3389 §3.1)."""
        self._run = 0
        if level_dbov >= 90:
            return self._silence
        rms = 32767.0 * 10 ** (-level_dbov / 20)
        pos = self._noise_pos
        n = self.frame_samples
        if n <= _NOISE_TABLE_SAMPLES:
            noise = _noise()[pos : pos + n]
        else:
            noise = np.resize(np.roll(_noise()[:_NOISE_TABLE_SAMPLES], -pos), n)
        out = np.clip(noise * rms, -32768, 32767).astype("<i2")
        self._noise_pos = (pos + n) % _NOISE_TABLE_SAMPLES
        return out.tobytes()

    @property
    def silence(self) -> bytes:
        return self._silence
