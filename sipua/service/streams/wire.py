"""Audio encodings of the media stream WebSockets: what travels base64'd in a JSON message, or
raw in a binary frame, converted to and from the application's 16-bit PCM.

Telephony providers send RTP payloads without RTP headers: G.711 (PCMU/PCMA), G.722, Opus, or L16
(16-bit linear PCM in network byte order, RFC 3551 §4.5.11 / RFC 2586). Browsers and the bridge's
wideband format use 16-bit little-endian PCM. G.711/G.722/Opus go through the media layer's
aiortc-based codecs (which resample); linear PCM only needs resampling and a byte order.
"""

from __future__ import annotations

import fractions
from array import array
from dataclasses import dataclass

import av

from sipua.media.codecs import AudioDecoder, AudioEncoder, pcm_of
from sipua.media.frame import SAMPLE_WIDTH
from sipua.sip.rtp_params import Codec

__all__ = [
    "PcmResampler",
    "UnsupportedFormat",
    "WireDecoder",
    "WireEncoder",
    "WireFormat",
    "wire_format",
]


class UnsupportedFormat(ValueError):
    """The peer announced an audio format this endpoint cannot decode or encode."""


# name -> (RTP codec name, RTP clock rate, channels in SDP)
_RTP_CODECS = {
    "PCMU": ("PCMU", 8000, 1),
    "PCMA": ("PCMA", 8000, 1),
    "G722": ("G722", 8000, 1),
    "OPUS": ("opus", 48000, 2),
}
_ALIASES = {
    "audio/x-mulaw": "PCMU",
    "mulaw": "PCMU",
    "ulaw": "PCMU",
    "pcmu": "PCMU",
    "audio/pcmu": "PCMU",
    "audio/x-alaw": "PCMA",
    "alaw": "PCMA",
    "pcma": "PCMA",
    "audio/pcma": "PCMA",
    "g722": "G722",
    "audio/g722": "G722",
    "opus": "OPUS",
    "audio/opus": "OPUS",
    "l16": "L16",
    "audio/l16": "L16",
    "audio/x-l16": "L16",
    "linear16": "L16",
}
# Sampling rates of the fixed-rate codecs (G.722 samples at 16 kHz, RFC 3551 §4.5.2).
_FIXED_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}


@dataclass(frozen=True, slots=True)
class WireFormat:
    """An encoding as it travels on a stream: ``name`` is PCMU, PCMA, G722, OPUS or L16.

    ``sample_rate`` is the audio's sampling rate (16000 for G.722, whatever the RTP clock says);
    ``byteorder`` matters only for L16: ``big`` for RTP payloads, ``little`` for browsers.
    """

    name: str
    sample_rate: int
    byteorder: str = "big"

    @property
    def linear(self) -> bool:
        return self.name == "L16"

    def duration_ms(self, payload_len: int) -> float:
        """Milliseconds of audio in a payload of this many octets (0 for Opus: variable)."""
        if self.name in ("PCMU", "PCMA"):
            return payload_len / 8.0
        if self.name == "G722":
            return payload_len / 8.0  # 64 kbit/s
        if self.name == "L16":
            return 1000.0 * payload_len / (SAMPLE_WIDTH * self.sample_rate)
        return 0.0

    def frame_octets(self, ms: int = 20) -> int | None:
        """Octets of ``ms`` of audio, for the constant-rate encodings."""
        if self.name in ("PCMU", "PCMA", "G722"):
            return 8 * ms
        if self.name == "L16":
            return self.sample_rate * ms // 1000 * SAMPLE_WIDTH
        return None


def wire_format(
    encoding: str, sample_rate: int | None = None, *, byteorder: str = "big"
) -> WireFormat:
    """The :class:`WireFormat` a provider names (``audio/x-mulaw``, ``PCMU``, ``L16`` …).

    Raises :class:`UnsupportedFormat` for an unknown encoding or an impossible rate.
    """
    key = str(encoding).strip()
    name = _ALIASES.get(key.lower()) or (key.upper() if key.upper() in _RTP_CODECS else None)
    if name is None:
        raise UnsupportedFormat(f"unsupported audio encoding {encoding!r}")
    if name in _FIXED_RATES:
        rate = _FIXED_RATES[name]
    elif name == "OPUS":
        rate = 48000
    else:
        try:
            rate = int(sample_rate or 8000)
        except (TypeError, ValueError):
            raise UnsupportedFormat(f"bad sample rate {sample_rate!r}") from None
        if rate not in (8000, 16000, 24000, 32000, 44100, 48000):
            raise UnsupportedFormat(f"unsupported L16 sample rate {rate}")
    return WireFormat(name, rate, byteorder)


def _swap(pcm: bytes) -> bytes:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH])
    samples.byteswap()
    return samples.tobytes()


class PcmResampler:
    """Streaming 16-bit mono resampling (PyAV/libswresample); a no-op at equal rates."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.source_rate = source_rate
        self.target_rate = target_rate
        self._resampler = (
            None
            if source_rate == target_rate
            else av.AudioResampler(format="s16", layout="mono", rate=target_rate)
        )
        self._pts = 0
        self._time_base = fractions.Fraction(1, source_rate)

    def resample(self, pcm: bytes) -> bytes:
        if self._resampler is None or not pcm:
            return pcm
        samples = len(pcm) // SAMPLE_WIDTH
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm[: samples * SAMPLE_WIDTH])
        frame.sample_rate = self.source_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples
        return b"".join(bytes(pcm_of(out)) for out in self._resampler.resample(frame))


class WireDecoder:
    """Payloads in ``fmt`` -> 16-bit little-endian mono PCM at ``sample_rate``."""

    def __init__(self, fmt: WireFormat, sample_rate: int) -> None:
        self.format = fmt
        self.sample_rate = sample_rate
        self.errors = 0
        self._timestamp = 0
        self._codec: AudioDecoder | None = None
        self._resampler: PcmResampler | None = None
        if fmt.linear:
            self._resampler = PcmResampler(fmt.sample_rate, sample_rate)
        else:
            name, clock, channels = _RTP_CODECS[fmt.name]
            self._codec = AudioDecoder(Codec(name, 96, clock, channels), sample_rate)

    def decode(self, payload: bytes) -> bytes:
        if self._codec is not None:
            pcm = self._codec.decode(payload, self._timestamp)
            self._timestamp = (self._timestamp + 160) & 0xFFFFFFFF
            self.errors = self._codec.errors
            return pcm
        if len(payload) % SAMPLE_WIDTH:
            self.errors += 1
            payload = payload[:-1]
        if self.format.byteorder == "big":
            payload = _swap(payload)  # our PCM is little-endian whatever the host
        assert self._resampler is not None
        return self._resampler.resample(payload)


class WireEncoder:
    """20 ms frames of 16-bit mono PCM at ``sample_rate`` -> payloads in ``fmt``.

    Returns a list: codecs with a resampler may hold the first frame back (one frame of delay).
    """

    def __init__(self, fmt: WireFormat, sample_rate: int) -> None:
        self.format = fmt
        self.sample_rate = sample_rate
        self._codec: AudioEncoder | None = None
        self._resampler: PcmResampler | None = None
        if fmt.linear:
            self._resampler = PcmResampler(sample_rate, fmt.sample_rate)
        else:
            name, clock, channels = _RTP_CODECS[fmt.name]
            self._codec = AudioEncoder(Codec(name, 96, clock, channels), sample_rate)

    def encode(self, pcm: bytes) -> list[bytes]:
        if self._codec is not None:
            return self._codec.encode(pcm)
        assert self._resampler is not None
        out = self._resampler.resample(pcm)
        if not out:
            return []
        if self.format.byteorder == "big":
            out = _swap(out)
        return [out]
