"""Audio codecs: PCMU, PCMA, G.722 and Opus through aiortc's PyAV wrappers.

We keep aiortc's codec shape (``Encoder.encode(frame) -> (payloads, ts)``,
``Decoder.decode(JitterFrame) -> frames``) and add what a SIP edge needs around
it: applications speak 16-bit mono PCM at their own sample rate (default
16 kHz), so decoded audio is resampled to that rate and application audio is fed
to the encoder as 20 ms frames; negotiated ``ptime`` and Opus ``fmtp`` are
honoured.

RTP clock rates are not sample rates: G.722 samples at 16 kHz but its RTP clock
runs at 8 kHz (RFC 3551 §4.5.2); Opus is always ``opus/48000/2`` in SDP whatever
it carries (RFC 7587 §7).
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
from aiortc.codecs import get_decoder, get_encoder
from aiortc.codecs.base import Decoder, Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sipua.sip.rtp_params import Codec

from .frame import SAMPLE_WIDTH

FRAME_MS = 20  # what aiortc's encoders produce, and our tick


@dataclass(frozen=True, slots=True)
class CodecInfo:
    name: str  # canonical spelling
    clock_rate: int  # RTP timestamp clock
    audio_rate: int  # rate the codec samples at
    sample_based: bool  # RFC 3551 §4.3: payloads of consecutive frames may be concatenated


_CODECS: dict[str, CodecInfo] = {
    "pcmu": CodecInfo("PCMU", 8000, 8000, True),
    "pcma": CodecInfo("PCMA", 8000, 8000, True),
    "g722": CodecInfo("G722", 8000, 16000, True),
    "opus": CodecInfo("opus", 48000, 48000, False),
}

# Payload types that carry no audio to decode.
TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "cn"
CN_STATIC_PAYLOAD_TYPE = 13  # RFC 3551 §6, RFC 3389


def codec_info(codec: Codec) -> CodecInfo | None:
    return _CODECS.get(codec.name.lower())


def is_supported(codec: Codec) -> bool:
    """True if we can encode and decode ``codec`` (for the SDP layer's offer/answer)."""
    return codec.name.lower() in _CODECS


def is_comfort_noise(codec: Codec) -> bool:
    return codec.name.lower() == COMFORT_NOISE


def is_telephone_event(codec: Codec) -> bool:
    return codec.name.lower() == TELEPHONE_EVENT


def rtc_parameters(codec: Codec) -> RTCRtpCodecParameters:
    """The aiortc description of ``codec`` that ``get_encoder``/``get_decoder`` take."""
    info = codec_info(codec)
    if info is None:
        raise ValueError(f"unsupported audio codec {codec.name}/{codec.clock_rate}")
    return RTCRtpCodecParameters(
        mimeType=f"audio/{info.name}",
        clockRate=codec.clock_rate,
        channels=codec.channels,
        payloadType=codec.payload_type,
        parameters=dict(codec.fmtp),
    )


def effective_ptime(codec: Codec, ptime: int) -> int:
    """The packet duration we actually send, in ms: a multiple of our 20 ms tick.

    Sample-based codecs concatenate 20 ms frames (RFC 3551 §4.2) up to 200 ms.
    Opus packets stay at 20 ms (a longer Opus packet needs multi-frame framing,
    RFC 6716 §3.2, which the encoder does not give us; ptime is only a wish).
    """
    info = codec_info(codec)
    if info is None or not info.sample_based:
        return FRAME_MS
    ptime = max(FRAME_MS, min(200, ptime))
    return ptime - ptime % FRAME_MS


def pcm_of(frame: av.AudioFrame) -> memoryview:
    """The packed 16-bit samples of a mono s16 frame, without plane padding."""
    return memoryview(frame.planes[0])[: frame.samples * SAMPLE_WIDTH * len(frame.layout.channels)]


def _configure_opus(encoder: Encoder, fmtp: dict[str, str]) -> None:
    """Apply the receiver's RFC 7587 §6.1 format parameters to aiortc's encoder.

    aiortc opens the libopus context lazily, so its settings can still change.
    """
    context = encoder.codec  # type: ignore[attr-defined]
    stereo = fmtp.get("stereo") == "1"  # default 0: the receiver prefers mono
    layout = "stereo" if stereo else "mono"
    context.layout = layout
    encoder.resampler = av.AudioResampler(  # type: ignore[attr-defined]
        format="s16", layout=layout, rate=48000, frame_size=960
    )
    bitrate = 64000 if stereo else 32000
    if "maxaveragebitrate" in fmtp:
        try:
            bitrate = int(fmtp["maxaveragebitrate"])
        except ValueError:
            pass
    context.bit_rate = max(6000, min(510000, bitrate))
    options = {"application": "voip"}
    if fmtp.get("useinbandfec") == "1":
        # The decoder can use in-band FEC: spend bits on it, assuming some loss.
        options["fec"] = "1"
        options["packet_loss"] = "10"
    if fmtp.get("cbr") == "1":
        options["vbr"] = "off"
    context.options = options


class G711Table:
    """PyAV's G.711 codec, memoised: its whole input -> output mapping as lookup tables.

    G.711 is memoryless (each sample is coded on its own, ITU-T G.711), so the 256
    decoded values and the 65,536 encoded codes *are* the codec; they are taken once
    from PyAV's own encoder and decoder and then applied with numpy, which costs a
    few microseconds per packet instead of a PyAV round trip. Only for 8 kHz audio:
    other application rates go through PyAV's resampler as before.
    """

    _tables: dict[str, G711Table] = {}

    def __init__(self, name: str) -> None:
        codec = Codec(name, 0 if name == "PCMU" else 8, 8000)
        decoder = get_decoder(rtc_parameters(codec))
        frames = decoder.decode(JitterFrame(data=bytes(range(256)), timestamp=0))
        decoded = b"".join(bytes(pcm_of(f)) for f in frames)
        self.decode_table = np.frombuffer(decoded, dtype="<i2").copy()
        encoder = get_encoder(rtc_parameters(codec))
        # Every 16-bit value in order, then silence so the last partial frame and anything the
        # encoder holds back come out too; the first 65,536 codes are the table.
        pad = (-65536 % 160 + 160 * 4) * SAMPLE_WIDTH
        samples = np.arange(-32768, 32768, dtype="<i2").tobytes() + bytes(pad)
        codes = bytearray()
        step = 160 * SAMPLE_WIDTH
        for pts, start in enumerate(range(0, len(samples), step)):
            frame = av.AudioFrame(format="s16", layout="mono", samples=160)
            frame.planes[0].update(samples[start : start + step])
            frame.sample_rate = 8000
            frame.pts = pts * 160
            frame.time_base = fractions.Fraction(1, 8000)
            for payload in encoder.encode(frame)[0]:
                codes += payload
        if len(codes) < 65536 or len(self.decode_table) != 256:
            raise RuntimeError(f"PyAV's {name} did not map every value one to one")
        # Indexed by the sample's bit pattern read as unsigned: -32768 .. 32767 -> 32768 .. 32767.
        by_value = np.frombuffer(bytes(codes[:65536]), dtype=np.uint8)
        self.encode_table = np.concatenate((by_value[32768:], by_value[:32768]))

    @classmethod
    def of(cls, codec: Codec) -> G711Table | None:
        info = codec_info(codec)
        if info is None or info.name not in ("PCMU", "PCMA"):
            return None
        table = cls._tables.get(info.name)
        if table is None:
            table = cls._tables[info.name] = cls(info.name)
        return table

    def decode(self, payload: bytes) -> bytes:
        return self.decode_table[np.frombuffer(payload, dtype=np.uint8)].tobytes()

    def encode(self, pcm: bytes) -> bytes:
        return self.encode_table[np.frombuffer(pcm, dtype="<u2")].tobytes()


class AudioEncoder:
    """Application PCM (20 ms mono frames at ``sample_rate``) -> RTP payloads."""

    def __init__(self, codec: Codec, sample_rate: int, ptime: int = FRAME_MS) -> None:
        info = codec_info(codec)
        if info is None:
            raise ValueError(f"unsupported audio codec {codec.name}")
        self.codec = codec
        self.info = info
        self.sample_rate = sample_rate
        self.ptime = effective_ptime(codec, ptime)
        self.frames_per_packet = self.ptime // FRAME_MS
        self.timestamp_increment = codec.clock_rate * self.ptime // 1000
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self._time_base = fractions.Fraction(1, sample_rate)
        self._encoder = get_encoder(rtc_parameters(codec))
        if info.name == "opus":
            _configure_opus(self._encoder, codec.fmtp_dict())
        self._pts = 0
        self._pending: list[bytes] = []
        self._silence: bytes | None = None
        self._table = G711Table.of(codec) if sample_rate == 8000 else None
        if info.name in ("PCMU", "PCMA"):
            self._silence = self._stateless_silence(codec)

    @staticmethod
    def _stateless_silence(codec: Codec) -> bytes:
        """G.711 is memoryless, so 20 ms of encoded silence is a constant worth caching."""
        encoder = get_encoder(rtc_parameters(codec))
        silence = bytes(2 * 160)
        for pts in range(0, 160 * 4, 160):
            frame = av.AudioFrame(format="s16", layout="mono", samples=160)
            frame.planes[0].update(silence)
            frame.sample_rate = 8000
            frame.pts = pts
            frame.time_base = fractions.Fraction(1, 8000)
            payloads, _ = encoder.encode(frame)
            if payloads:
                return payloads[-1]
        raise RuntimeError("G.711 encoder produced nothing")  # pragma: no cover

    def encode(self, pcm: bytes) -> list[bytes]:
        """Encode one 20 ms frame; return the payloads of completed packets (0, 1, rarely 2)."""
        if self._table is not None and not len(pcm) % SAMPLE_WIDTH:
            return self._packetise([self._table.encode(pcm)])
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // SAMPLE_WIDTH)
        frame.planes[0].update(pcm)
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += frame.samples
        payloads, _ = self._encoder.encode(frame)
        return self._packetise(payloads)

    def encode_silence(self) -> list[bytes]:
        """Encode 20 ms of silence (cheaply for G.711)."""
        if self._silence is not None:
            return self._packetise([self._silence])
        return self.encode(bytes(self.frame_samples * SAMPLE_WIDTH))

    def _packetise(self, payloads: list[bytes]) -> list[bytes]:
        if self.frames_per_packet == 1:
            return payloads
        out = []
        for payload in payloads:
            self._pending.append(payload)
            if len(self._pending) == self.frames_per_packet:
                out.append(b"".join(self._pending))
                self._pending.clear()
        return out

    def reset_packet(self) -> None:
        """Drop a partly filled multi-frame packet (e.g. before a DTMF event)."""
        self._pending.clear()


class AudioDecoder:
    """RTP payloads -> 16-bit mono PCM at ``sample_rate`` (length varies per call)."""

    def __init__(self, codec: Codec, sample_rate: int) -> None:
        info = codec_info(codec)
        if info is None:
            raise ValueError(f"unsupported audio codec {codec.name}")
        self.codec = codec
        self.info = info
        self.sample_rate = sample_rate
        self._decoder: Decoder = get_decoder(rtc_parameters(codec))
        self._resampler: av.AudioResampler | None = None
        self._table = G711Table.of(codec) if sample_rate == 8000 else None
        self.errors = 0

    def decode(self, payload: bytes, timestamp: int) -> bytes:
        """Decode one packet's payload; corrupt payloads count in ``errors`` and give b""."""
        if self._table is not None:
            return self._table.decode(payload)
        try:
            frames = self._decoder.decode(JitterFrame(data=payload, timestamp=timestamp))
        except (av.FFmpegError, ValueError):
            self.errors += 1
            return b""
        chunks: list[memoryview] = []
        for frame in frames:
            assert isinstance(frame, av.AudioFrame)
            if (
                frame.sample_rate == self.sample_rate
                and frame.format.name == "s16"
                and frame.layout.name == "mono"
            ):
                chunks.append(pcm_of(frame))
                continue
            if self._resampler is None:
                self._resampler = av.AudioResampler(
                    format="s16", layout="mono", rate=self.sample_rate
                )
            for out in self._resampler.resample(frame):
                chunks.append(pcm_of(out))
        if len(chunks) == 1:
            return bytes(chunks[0])
        return b"".join(chunks)
