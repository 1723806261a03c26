"""What to play when there is no packet: loss concealment and comfort noise.

Loss: repeat the last good frame, fading it out (a linear ramp inside each
frame, so no step becomes a click), reaching silence after a few frames.
Comfort noise (RFC 3389): white noise at the level the peer's CN packet gives
in -dBov; levels below -90 dBov are plain silence.
"""

from __future__ import annotations

import random
from array import array

FADE_FRAMES = 4  # concealed frames before silence (80 ms at 20 ms)
_NOISE_TABLE_SAMPLES = 8192
_noise_table: array | None = None


def _noise() -> array:
    global _noise_table
    if _noise_table is None:
        rng = random.Random(3389)
        # Uniform in [-1, 1] has RMS 1/sqrt(3); scale to unit RMS.
        _noise_table = array(
            "d", (rng.uniform(-1.0, 1.0) * 3**0.5 for _ in range(_NOISE_TABLE_SAMPLES))
        )
    return _noise_table


class Concealer:
    """Produces stand-in frames of ``frame_samples`` 16-bit samples."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._silence = bytes(2 * frame_samples)
        self._last: array | None = None
        self._run = 0  # consecutive concealed frames
        self._noise_pos = 0

    def good(self, pcm: bytes) -> None:
        """Remember the last frame that really arrived."""
        if len(pcm) == 2 * self.frame_samples:
            self._last = array("h", pcm)
        self._run = 0

    def conceal(self) -> bytes:
        """A stand-in for one lost frame: the last one, fading out over FADE_FRAMES."""
        self._run += 1
        last = self._last
        if last is None or self._run > FADE_FRAMES:
            return self._silence
        start = 1.0 - (self._run - 1) / FADE_FRAMES
        step = -1.0 / (FADE_FRAMES * self.frame_samples)
        out = array("h", bytes(2 * self.frame_samples))
        gain = start
        for i in range(self.frame_samples):
            out[i] = int(last[i] * gain)
            gain += step
        return out.tobytes()

    def comfort_noise(self, level_dbov: int) -> bytes:
        """One frame of noise at ``-level_dbov`` dBov (RFC 3389 §3.1)."""
        self._run = 0
        if level_dbov >= 90:
            return self._silence
        rms = 32767.0 * 10 ** (-level_dbov / 20)
        table = _noise()
        pos = self._noise_pos
        out = array("h", bytes(2 * self.frame_samples))
        for i in range(self.frame_samples):
            out[i] = max(-32768, min(32767, int(table[(pos + i) % _NOISE_TABLE_SAMPLES] * rms)))
        self._noise_pos = (pos + self.frame_samples) % _NOISE_TABLE_SAMPLES
        return out.tobytes()

    @property
    def silence(self) -> bytes:
        return self._silence
