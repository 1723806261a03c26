"""The handle a media application holds on one stream (see ``apps.Participant``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sipua.sip.rtp_params import RtpParameters

from .frame import SAMPLE_WIDTH

if TYPE_CHECKING:
    from .stream import MediaStream


class StreamParticipant:
    """The application's handle on a stream (see :class:`sipua.media.apps.Participant`)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: MediaStream) -> None:
        self._stream = stream

    @property
    def id(self) -> str:
        return self._stream.stream_id

    @property
    def sample_rate(self) -> int:
        return self._stream.sample_rate

    @property
    def queued_ms(self) -> float:
        return 1000.0 * len(self._stream._pcm_out) / (SAMPLE_WIDTH * self._stream.sample_rate)

    @property
    def params(self) -> RtpParameters | None:
        return self._stream.params

    def send_audio(self, pcm: bytes) -> None:
        self._stream._queue_audio(pcm)

    def clear(self) -> None:
        self._stream._pcm_out.clear()

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> asyncio.Future[None]:
        return self._stream.send_dtmf(digits, duration_ms)

    def stats(self) -> dict[str, Any]:
        return self._stream.stats()
