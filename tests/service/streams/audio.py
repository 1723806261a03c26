"""Test audio: tones, an independent G.711 codec (ITU-T G.711 tables by formula, not sipua's), and
frequency measurement with numpy's FFT."""

from __future__ import annotations

import numpy as np


def tone(
    freq: float, ms: float, rate: int, amplitude: float = 8000.0, phase: int = 0
) -> np.ndarray:
    """``ms`` of a sine at ``freq`` as int16 samples, starting at sample ``phase``."""
    n = int(rate * ms / 1000)
    t = (np.arange(n) + phase) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def pcm16le(samples: np.ndarray) -> bytes:
    return samples.astype("<i2").tobytes()


def from_pcm16le(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)


def from_pcm16be(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype=">i2").astype(np.int16)


# -- G.711 (segment/quantization formulas of ITU-T G.711) ------------------------------------------

_BIAS = 0x84


def ulaw_encode(samples: np.ndarray) -> bytes:
    out = bytearray()
    for s in samples.tolist():
        v = s >> 2  # 14-bit
        mask = 0xFF
        if v < 0:
            v, mask = -v, 0x7F
        v = min(v, 8159) + 0x21
        segment = max(0, v.bit_length() - 6)
        if segment > 7:
            out.append(0x7F ^ mask)
            continue
        out.append(((segment << 4) | ((v >> (segment + 1)) & 0x0F)) ^ mask)
    return bytes(out)


def ulaw_decode(data: bytes) -> np.ndarray:
    out = np.empty(len(data), dtype=np.int16)
    for i, byte in enumerate(data):
        u = ~byte & 0xFF
        sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
        mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
        out[i] = -mag if sign else mag
    return out


def alaw_encode(samples: np.ndarray) -> bytes:
    out = bytearray()
    for s in samples.tolist():
        sign = 0x80 if s >= 0 else 0
        mag = (-s - 1 if s < 0 else s) >> 3  # 13-bit magnitude, one's complement
        if mag < 32:
            code = mag >> 1
        else:
            exponent = mag.bit_length() - 5
            code = (exponent << 4) | ((mag >> exponent) & 0x0F)
        out.append((sign | code) ^ 0x55)
    return bytes(out)


def alaw_decode(data: bytes) -> np.ndarray:
    out = np.empty(len(data), dtype=np.int16)
    for i, byte in enumerate(data):
        a = byte ^ 0x55
        sign, exponent, mantissa = a & 0x80, (a >> 4) & 0x07, a & 0x0F
        if exponent == 0:
            mag = (mantissa << 4) + 8
        else:
            mag = ((mantissa << 4) + 0x108) << (exponent - 1)
        out[i] = mag if sign else -mag
    return out


# -- analysis -------------------------------------------------------------------------------------


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency (Hz) of ``samples`` (Hann window, DC ignored)."""
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(x))


def rms(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def purity(samples: np.ndarray, rate: int, freq: float) -> float:
    """Share of the signal's energy within a few bins of ``freq`` (1.0: a pure tone)."""
    x = samples.astype(np.float64)
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)))) ** 2
    k = int(round(freq * len(x) / rate))
    return float(power[max(1, k - 3) : k + 4].sum() / power[1:].sum())
