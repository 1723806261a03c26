"""Audio encodings on the stream wire, checked against the tests' own G.711 and byte orders."""

from __future__ import annotations

import numpy as np
import pytest

from sipua.service.streams.wire import (
    PcmResampler,
    UnsupportedFormat,
    WireDecoder,
    WireEncoder,
    WireFormat,
    wire_format,
)

from .audio import (
    alaw_decode,
    alaw_encode,
    dominant_frequency,
    from_pcm16be,
    from_pcm16le,
    pcm16le,
    tone,
    ulaw_decode,
    ulaw_encode,
)


@pytest.mark.parametrize(
    ("name", "rate", "expected"),
    [
        ("audio/x-mulaw", 8000, WireFormat("PCMU", 8000)),
        ("PCMU", None, WireFormat("PCMU", 8000)),
        ("pcma", 8000, WireFormat("PCMA", 8000)),
        ("G722", 8000, WireFormat("G722", 16000)),  # samples at 16 kHz whatever the clock says
        ("OPUS", 48000, WireFormat("OPUS", 48000)),
        ("L16", 16000, WireFormat("L16", 16000)),
        ("audio/x-l16", "24000", WireFormat("L16", 24000)),
    ],
)
def test_provider_names_map_to_formats(name: str, rate: object, expected: WireFormat) -> None:
    assert wire_format(name, rate) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "rate"), [("AMR-WB", 16000), ("L16", 11025), ("L16", "x")])
def test_unsupported_formats_raise(name: str, rate: object) -> None:
    with pytest.raises(UnsupportedFormat):
        wire_format(name, rate)  # type: ignore[arg-type]


def test_durations_and_frame_sizes() -> None:
    assert wire_format("PCMU").duration_ms(160) == 20
    assert wire_format("G722").duration_ms(160) == 20
    assert wire_format("L16", 16000).duration_ms(640) == 20
    assert wire_format("L16", 8000).frame_octets() == 320
    assert wire_format("OPUS").frame_octets() is None


def test_mulaw_and_alaw_decode_like_the_standard() -> None:
    samples = tone(1000, 40, 8000)
    for name, encode, decode in (
        ("PCMU", ulaw_encode, ulaw_decode),
        ("PCMA", alaw_encode, alaw_decode),
    ):
        decoder = WireDecoder(wire_format(name), 8000)  # no resampling at 8 kHz
        payload = encode(samples)
        assert np.array_equal(from_pcm16le(decoder.decode(payload)), decode(payload))
        encoder = WireEncoder(wire_format(name), 8000)
        out = b"".join(
            p for i in range(2) for p in encoder.encode(pcm16le(samples[i * 160 : (i + 1) * 160]))
        )
        assert out == payload


def test_l16_big_endian_on_the_wire_little_endian_inside() -> None:
    samples = tone(1000, 20, 16000)
    wire = samples.astype(">i2").tobytes()
    decoded = WireDecoder(wire_format("L16", 16000), 16000).decode(wire)
    assert np.array_equal(from_pcm16le(decoded), samples)
    (encoded,) = WireEncoder(wire_format("L16", 16000), 16000).encode(pcm16le(samples))
    assert np.array_equal(from_pcm16be(encoded), samples)
    little = WireFormat("L16", 16000, "little")
    assert WireDecoder(little, 16000).decode(pcm16le(samples)) == pcm16le(samples)
    # An odd octet is dropped and counted, not a crash.
    decoder = WireDecoder(little, 16000)
    assert len(decoder.decode(b"\x01\x02\x03")) == 2 and decoder.errors == 1


def test_resampling_keeps_the_tone() -> None:
    up = PcmResampler(8000, 16000)
    out = b"".join(up.resample(pcm16le(tone(440, 20, 8000, phase=i * 160))) for i in range(25))
    samples = from_pcm16le(out)
    assert 7000 < len(samples) < 8100  # ~0.5 s at 16 kHz, less the filter's delay
    assert abs(dominant_frequency(samples, 16000) - 440) < 10
    same = PcmResampler(16000, 16000)
    assert same.resample(b"\x01\x02") == b"\x01\x02"


@pytest.mark.parametrize("name", ["G722", "OPUS"])
def test_wideband_codecs_round_trip(name: str) -> None:
    fmt = wire_format(name)
    encoder, decoder = WireEncoder(fmt, 16000), WireDecoder(fmt, 16000)
    samples = tone(1000, 600, 16000)
    pcm = b""
    for i in range(30):
        for payload in encoder.encode(pcm16le(samples[i * 320 : (i + 1) * 320])):
            pcm += decoder.decode(payload)
    decoded = from_pcm16le(pcm)
    assert abs(dominant_frequency(decoded[1600:], 16000) - 1000) < 20
