import numpy as np
import pytest

from sipua.media.concealment import FADE_FRAMES, Concealer

from .helpers import rms, tone


def test_concealment_fades_the_last_frame_to_silence():
    concealer = Concealer(320)
    frame = tone(1000, 0.02, 16000, level=0.5)
    concealer.good(frame)
    levels = [rms(concealer.conceal()) for _ in range(FADE_FRAMES + 3)]
    assert 0 < levels[0] < rms(frame)
    assert all(
        b < a for a, b in zip(levels[: FADE_FRAMES - 1], levels[1:FADE_FRAMES], strict=False)
    )
    assert levels[FADE_FRAMES:] == [0.0] * 3
    # The fade is continuous across frame boundaries: no step at the joins.
    concealer.good(frame)
    first, second = concealer.conceal(), concealer.conceal()
    a = np.frombuffer(first, "<i2").astype(float)
    b = np.frombuffer(second, "<i2").astype(float)
    src = np.frombuffer(frame, "<i2").astype(float)
    gains_a = a[np.abs(src) > 1000] / src[np.abs(src) > 1000]
    gains_b = b[np.abs(src) > 1000] / src[np.abs(src) > 1000]
    assert gains_a.min() == pytest.approx(gains_b.max(), abs=0.02)


def test_concealment_without_history_is_silence():
    concealer = Concealer(160)
    assert concealer.conceal() == bytes(320)


def test_good_frame_restarts_the_fade():
    concealer = Concealer(320)
    frame = tone(500, 0.02, 16000)
    concealer.good(frame)
    for _ in range(10):
        concealer.conceal()
    concealer.good(frame)
    assert rms(concealer.conceal()) > 0.5 * rms(frame)


@pytest.mark.parametrize("level", [30, 50, 70])
def test_comfort_noise_has_the_requested_level(level):
    concealer = Concealer(320)
    noise = b"".join(concealer.comfort_noise(level) for _ in range(20))
    expected = 32767 * 10 ** (-level / 20)
    assert rms(noise) == pytest.approx(expected, rel=0.2)
    assert concealer.comfort_noise(level) != concealer.comfort_noise(
        level
    )  # not a loop of one frame


def test_very_low_comfort_noise_is_silence():
    assert Concealer(160).comfort_noise(127) == bytes(320)
