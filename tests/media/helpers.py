"""Shared helpers for the media tests."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from sipua.media.frame import AudioFrame
from sipua.media.play import PlayApp
from sipua.sip.rtp_params import Codec, CryptoParams, RtpParameters

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "media"
PCAPS = REPO / "pcaps"

PCMU = Codec("PCMU", 0, 8000)
PCMA = Codec("PCMA", 8, 8000)
G722 = Codec("G722", 9, 8000)
OPUS = Codec("opus", 111, 48000, 2, (("useinbandfec", "1"),))
TELEPHONE_EVENT = Codec("telephone-event", 101, 8000, 1, (("0-16", ""),))


def port_range(size: int = 200) -> tuple[int, int]:
    """A random even-aligned range in the upper ports (tests run beside other suites)."""
    start = random.randrange(40000, 60000 - size) & ~1
    return start, start + size - 1


def crypto(suite: str, tag: int = 1) -> CryptoParams:
    length = {"AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44}.get(suite, 30)
    return CryptoParams(tag=tag, suite=suite, key_salt=os.urandom(length))


def params(
    codec: Codec,
    remote_port: int,
    *,
    dtmf: Codec | None = None,
    direction: str = "sendrecv",
    local: CryptoParams | None = None,
    remote: CryptoParams | None = None,
    ptime: int = 20,
    host: str = "127.0.0.1",
    extra_codecs: tuple[Codec, ...] = (),
) -> RtpParameters:
    if dtmf is None and codec.clock_rate == 8000:
        dtmf = TELEPHONE_EVENT
    elif dtmf is None:
        dtmf = Codec("telephone-event", 101, codec.clock_rate)
    return RtpParameters(
        codec=codec,
        codecs=(codec, *extra_codecs),
        dtmf=dtmf,
        remote_rtp=(host, remote_port),
        remote_rtcp=(host, remote_port + 1),
        direction=direction,
        ptime=ptime,
        srtp_local=local,
        srtp_remote=remote,
    )


def dominant_frequency(pcm: bytes, sample_rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * sample_rate / samples.size


def tone(freq: float, seconds: float, sample_rate: int, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (32767 * level * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class ToneProbe(PlayApp):
    """The test peer's application: plays a tone and keeps what comes back."""

    needs_audio = True

    def __init__(self, freq: float = 1000.0, **options) -> None:
        super().__init__(f"tone:{int(freq)}", **options)
        self.received = bytearray()
        self.frames = 0
        self.dtmf: list = []
        self.holds: list[bool] = []
        self.hangups = 0
        self.started = 0

    def on_start(self, participant) -> None:
        self.started += 1
        super().on_start(participant)

    def on_audio(self, participant, frame: AudioFrame) -> None:
        self.received += frame.pcm
        self.frames += 1

    def on_dtmf(self, participant, event) -> None:
        self.dtmf.append(event)

    def on_hold(self, participant, held: bool) -> None:
        self.holds.append(held)

    def on_hangup(self, participant) -> None:
        self.hangups += 1


async def until(clock, predicate, timeout: float = 5.0) -> None:
    """Wait (bounded) until ``predicate()`` holds, checking at every media tick."""
    import asyncio

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    key = object()

    def check(tick: int, now: float) -> None:
        if not done.done() and predicate():
            done.set_result(None)

    clock.subscribe(key, check)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        clock.unsubscribe(key)


class RawPeer:
    """A bare UDP endpoint on loopback that records what it receives."""

    def __init__(self) -> None:
        import asyncio

        self.queue: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue()
        self.transport = None

    async def open(self, port: int = 0) -> RawPeer:
        import asyncio

        loop = asyncio.get_running_loop()
        peer = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                peer.queue.put_nowait((data, addr))

        self.transport, _ = await loop.create_datagram_endpoint(
            Protocol, local_addr=("127.0.0.1", port)
        )
        return self

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))

    async def receive(self, timeout: float = 3.0) -> bytes:
        import asyncio

        data, _ = await asyncio.wait_for(self.queue.get(), timeout)
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
