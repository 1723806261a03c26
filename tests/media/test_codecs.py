import pytest

from sipua.media.codecs import (
    AudioDecoder,
    AudioEncoder,
    codec_info,
    effective_ptime,
    is_supported,
    rtc_parameters,
)
from sipua.sip.rtp_params import Codec

from .helpers import G722, OPUS, PCMA, PCMU, dominant_frequency, rms, tone

CODECS = [PCMU, PCMA, G722, OPUS]


def _round_trip(codec: Codec, rate: int, pcm: bytes, ptime: int = 20) -> tuple[list[bytes], bytes]:
    encoder = AudioEncoder(codec, rate, ptime)
    decoder = AudioDecoder(codec, rate)
    frame = rate // 50 * 2
    payloads: list[bytes] = []
    out = bytearray()
    timestamp = 0
    for i in range(len(pcm) // frame):
        for payload in encoder.encode(pcm[i * frame : (i + 1) * frame]):
            payloads.append(payload)
            out += decoder.decode(payload, timestamp)
            timestamp += encoder.timestamp_increment
    return payloads, bytes(out)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_tone_survives_encode_decode(codec, rate):
    pcm = tone(1000, 1.0, rate)
    payloads, out = _round_trip(codec, rate, pcm)
    assert len(payloads) >= 48  # one per 20 ms, minus encoder start-up
    # Decoded audio comes back at the application's rate, about as long as sent.
    assert abs(len(out) - len(pcm)) <= 3 * rate // 50 * 2
    assert dominant_frequency(out[len(out) // 4 :], rate) == pytest.approx(1000, abs=15)
    assert rms(out[len(out) // 4 :]) > 0.5 * rms(pcm)


def test_payload_sizes_and_rtp_clock():
    assert {len(p) for p in _round_trip(PCMU, 16000, tone(440, 0.5, 16000))[0]} == {160}
    assert {len(p) for p in _round_trip(PCMA, 8000, tone(440, 0.5, 8000))[0]} == {160}
    # G.722: 64 kbit/s, 16 kHz audio, but an 8 kHz RTP clock (RFC 3551 §4.5.2).
    assert {len(p) for p in _round_trip(G722, 16000, tone(440, 0.5, 16000))[0]} == {160}
    assert AudioEncoder(G722, 16000).timestamp_increment == 160
    assert codec_info(G722).audio_rate == 16000 and codec_info(G722).clock_rate == 8000
    assert AudioEncoder(OPUS, 16000).timestamp_increment == 960


def test_ptime_groups_frames_for_sample_based_codecs_only():
    payloads, out = _round_trip(PCMU, 16000, tone(1000, 1.0, 16000), ptime=40)
    assert {len(p) for p in payloads} == {320}
    assert AudioEncoder(PCMU, 16000, 40).timestamp_increment == 320
    assert dominant_frequency(out, 16000) == pytest.approx(1000, abs=15)
    assert effective_ptime(PCMA, 30) == 20
    assert effective_ptime(PCMA, 60) == 60
    assert effective_ptime(PCMA, 1000) == 200
    assert effective_ptime(OPUS, 60) == 20


def test_opus_fmtp_is_honoured():
    mono = AudioEncoder(Codec("opus", 111, 48000, 2, (("stereo", "0"),)), 16000)
    assert mono._encoder.codec.layout.name == "mono"
    stereo = AudioEncoder(Codec("opus", 111, 48000, 2, (("stereo", "1"),)), 16000)
    assert stereo._encoder.codec.layout.name == "stereo"
    fec = AudioEncoder(OPUS, 16000)
    assert fec._encoder.codec.options.get("fec") == "1"
    assert "fec" not in mono._encoder.codec.options

    def mean_size(codec: Codec) -> float:
        payloads, _ = _round_trip(codec, 16000, tone(1000, 1.0, 16000))
        return sum(map(len, payloads)) / len(payloads)

    low = mean_size(Codec("opus", 111, 48000, 2, (("maxaveragebitrate", "12000"),)))
    high = mean_size(Codec("opus", 111, 48000, 2, (("maxaveragebitrate", "64000"),)))
    assert low < 0.6 * high
    assert low <= 12000 / 8 / 50 * 1.5


def test_g711_silence_is_the_codec_constant():
    assert AudioEncoder(PCMU, 16000).encode_silence() == [b"\xff" * 160]
    assert AudioEncoder(PCMA, 16000).encode_silence() == [b"\xd5" * 160]
    # Stateful codecs encode real zeros.
    encoder = AudioEncoder(G722, 16000)
    produced = [p for _ in range(3) for p in encoder.encode_silence()]
    assert produced and all(len(p) == 160 for p in produced)


def test_corrupt_payloads_do_not_raise():
    decoder = AudioDecoder(OPUS, 16000)
    for garbage in (b"", b"\xff" * 3, bytes(range(256)) * 4):
        assert isinstance(decoder.decode(garbage, 0), bytes)
    assert decoder.errors >= 1
    # G.711 decodes anything.
    assert len(AudioDecoder(PCMU, 8000).decode(bytes(range(160)), 0)) == 320


def test_codec_support_and_parameters():
    for codec in CODECS:
        assert is_supported(codec)
    assert is_supported(Codec("pcmu", 0, 8000))
    assert not is_supported(Codec("telephone-event", 101, 8000))
    assert not is_supported(Codec("G729", 18, 8000))
    with pytest.raises(ValueError):
        AudioEncoder(Codec("G729", 18, 8000), 16000)
    params = rtc_parameters(OPUS)
    assert params.mimeType == "audio/opus" and params.clockRate == 48000
    assert params.parameters == {"useinbandfec": "1"}


@pytest.mark.parametrize("name,pt", [("PCMU", 0), ("PCMA", 8)])
def test_g711_tables_reproduce_pyav_exactly(name, pt):
    import fractions

    import av
    import numpy as np
    from aiortc.codecs import get_decoder, get_encoder
    from aiortc.jitterbuffer import JitterFrame

    from sipua.media.codecs import AudioDecoder, AudioEncoder, G711Table, rtc_parameters

    codec = Codec(name, pt, 8000)
    table = G711Table.of(codec)
    rng = np.random.default_rng(7)
    pcm = rng.normal(0, 9000, 8000).clip(-32768, 32767).astype("<i2").tobytes()
    reference = get_encoder(rtc_parameters(codec))
    expected = b""
    for i in range(0, len(pcm), 320):
        frame = av.AudioFrame(format="s16", layout="mono", samples=160)
        frame.planes[0].update(pcm[i : i + 320])
        frame.sample_rate, frame.pts = 8000, i // 2
        frame.time_base = fractions.Fraction(1, 8000)
        expected += b"".join(reference.encode(frame)[0])
    encoder = AudioEncoder(codec, 8000)  # the 8 kHz application path uses the table
    got = b"".join(b"".join(encoder.encode(pcm[i : i + 320])) for i in range(0, len(pcm), 320))
    assert got == expected
    every_code = bytes(range(256))
    frames = get_decoder(rtc_parameters(codec)).decode(JitterFrame(data=every_code, timestamp=0))
    decoded = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
    assert AudioDecoder(codec, 8000).decode(every_code, 0) == decoded == table.decode(every_code)
