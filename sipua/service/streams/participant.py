"""A media stream WebSocket as a participant of its session's media application.

:class:`WebSocketParticipant` implements :class:`sipua.media.apps.Participant` for Twilio, Telnyx
and browser streams, the way :class:`sipua.media.stream.StreamParticipant` does for SIP legs:

- inbound payloads are decoded to 16-bit PCM at the application's rate and handed to
  ``app.on_audio`` as 20 ms frames as soon as a frame is complete (the provider already paces
  them; a burst is delivered as a burst);
- ``send_audio`` queues PCM; the shared :class:`~sipua.media.clock.MediaClock` tick takes it out
  20 ms at a time, encodes it to the provider's format and hands it to the connection. A small
  token bucket lets the connection run ``send_ahead_ms`` ahead of real time (the provider's own
  playout buffer absorbs our jitter) but never faster than real time on average;
- marks placed in the outgoing audio are answered when the audio before them has been sent;
  ``clear()`` drops the queue, answers pending marks and tells the provider to flush its buffer.

No task per participant: everything runs on the shared tick and in the connection's reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from sipua.media.apps import MediaApp, overrides_on_tick
from sipua.media.clock import MediaClock
from sipua.media.events import DtmfReceived
from sipua.media.frame import SAMPLE_WIDTH, AudioFrame

from .wire import WireDecoder, WireEncoder

__all__ = ["StreamSink", "WebSocketParticipant"]

log = logging.getLogger(__name__)

FRAME_MS = 20
MAX_QUEUED_SECONDS = 60  # application audio held before the oldest is dropped (as for SIP)


class StreamSink(Protocol):
    """What a participant asks its connection to send (provider-specific messages)."""

    def send_media(self, payload: bytes) -> None: ...

    def send_clear(self) -> None: ...

    def send_mark(self, name: str) -> None: ...

    def send_dtmf(self, digit: str, duration_ms: int) -> bool:
        """Send one digit; False when the provider has no way to inject DTMF."""
        ...

    def hangup(self, reason: str) -> None: ...


class WebSocketParticipant:
    """One stream connection, as a :class:`~sipua.media.apps.Participant`."""

    def __init__(
        self,
        participant_id: str,
        app: MediaApp,
        clock: MediaClock,
        sink: StreamSink,
        *,
        encoder: WireEncoder,
        decoder: WireDecoder,
        send_ahead_ms: int = 60,
        provider: str = "stream",
    ) -> None:
        self._id = participant_id
        self.app = app
        self.clock = clock
        self.sink = sink
        self.encoder = encoder
        self.decoder = decoder
        self.provider = provider
        self._rate = app.sample_rate
        self._frame_bytes = self._rate * FRAME_MS // 1000 * SAMPLE_WIDTH
        self._ahead = max(1, send_ahead_ms // FRAME_MS)
        self._credit = self._ahead
        self._relay = bool(app.relay_rtp)
        self._needs_audio = bool(app.needs_audio)
        self._app_ticks = overrides_on_tick(app)
        self.state = "created"  # -> "started" -> "closed"
        self.started_at: float | None = None
        self.closed_at: float | None = None

        self._pcm_in = bytearray()
        self._rx_samples = 0
        self._pcm_out = bytearray()
        self._partial_waited = False
        self._queued_total = 0  # octets ever queued (positions of marks)
        self._taken_total = 0  # octets ever taken out by the tick
        self._marks: deque[tuple[int, str]] = deque()

        self.counters: dict[str, int] = {
            "payloads_received": 0,
            "bytes_received": 0,
            "frames_in": 0,
            "payloads_sent": 0,
            "bytes_sent": 0,
            "frames_out": 0,
            "dtmf_received": 0,
            "dtmf_sent": 0,
            "marks_answered": 0,
            "clears": 0,
            "gap_frames": 0,
            "queue_overflows": 0,
            "app_errors": 0,
        }

    # -- the Participant protocol -----------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def queued_ms(self) -> float:
        return 1000.0 * len(self._pcm_out) / (SAMPLE_WIDTH * self._rate)

    def send_audio(self, pcm: bytes) -> None:
        if self.state == "closed":
            return
        if len(pcm) % SAMPLE_WIDTH:
            pcm = pcm[: len(pcm) - 1]
        self._pcm_out += pcm
        self._queued_total += len(pcm)
        limit = MAX_QUEUED_SECONDS * self._rate * SAMPLE_WIDTH
        if len(self._pcm_out) > limit:
            self.counters["queue_overflows"] += 1
            dropped = len(self._pcm_out) - limit
            del self._pcm_out[:dropped]
            self._taken_total += dropped

    def clear(self) -> None:
        """Barge-in: drop queued audio, answer pending marks, tell the provider to flush."""
        self._taken_total += len(self._pcm_out)
        self._pcm_out.clear()
        self._partial_waited = False
        self.counters["clears"] += 1
        if self.state == "started":
            self.sink.send_clear()
        self._answer_marks()

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> asyncio.Future[None]:
        if self.state != "started":
            raise RuntimeError(f"cannot send DTMF on a {self.state} stream")
        for digit in digits:
            if not self.sink.send_dtmf(digit, duration_ms):
                raise RuntimeError(f"{self.provider} streams cannot send DTMF")
            self.counters["dtmf_sent"] += 1
        future: asyncio.Future[None] = self.clock.loop.create_future()
        future.set_result(None)
        return future

    def stats(self) -> dict[str, Any]:
        end = self.closed_at if self.closed_at is not None else time.monotonic()
        duration = 0.0 if self.started_at is None else max(0.0, end - self.started_at)
        out: dict[str, Any] = {
            "stream_id": self._id,
            "provider": self.provider,
            "state": self.state,
            "codec": self.encoder.format.name,
            "inbound_codec": self.decoder.format.name,
            "sample_rate": self._rate,
            # The figures events and metrics read for every participant (one packet = one
            # media message here).
            "packets_received": self.counters["payloads_received"],
            "packets_sent": self.counters["payloads_sent"],
            "decode_errors": self.decoder.errors,
            "queued_ms": round(self.queued_ms, 1),
            "duration_s": round(duration, 3),
        }
        out.update(self.counters)
        return out

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.state != "created":
            return
        self.state = "started"
        self.started_at = time.monotonic()
        self.clock.subscribe(self, self._on_tick)
        self._call_app(self.app.on_start, self)

    def close(self) -> None:
        if self.state == "closed":
            return
        started = self.state == "started"
        self.state = "closed"
        self.closed_at = time.monotonic()
        self.clock.unsubscribe(self)
        if started:
            self._call_app(self.app.on_hangup, self)

    def hangup(self, reason: str = "app-hangup") -> None:
        """End this participant's stream from our side (e.g. the bridge's ``hangup`` fallback)."""
        self.sink.hangup(reason)

    # -- inbound --------------------------------------------------------------------------------

    def receive_payload(self, payload: bytes) -> None:
        """One media payload from the peer, in the decoder's wire format."""
        if self.state != "started":
            return
        self.counters["payloads_received"] += 1
        self.counters["bytes_received"] += len(payload)
        self.receive_pcm(self.decoder.decode(payload))

    def receive_pcm(self, pcm: bytes) -> None:
        """Decoded PCM at the application's rate; delivered in 20 ms frames."""
        if self.state != "started" or not pcm:
            return
        self._pcm_in += pcm
        need = self._frame_bytes
        while len(self._pcm_in) >= need:
            frame = bytes(self._pcm_in[:need])
            del self._pcm_in[:need]
            self._deliver(frame)

    def receive_gap(self, ms: float) -> None:
        """Audio known to be missing (a lost chunk): keep the application's timeline whole."""
        frames = int(ms // FRAME_MS)
        for _ in range(min(frames, 50)):
            self.counters["gap_frames"] += 1
            self.receive_pcm(bytes(self._frame_bytes))

    def receive_dtmf(self, digit: str, duration_ms: int = 0, source: str = "") -> None:
        if self.state != "started":
            return
        self.counters["dtmf_received"] += 1
        event = DtmfReceived(
            digit=digit, duration_ms=duration_ms, source=source or self.provider, stream_id=self._id
        )
        self._call_app(self.app.on_dtmf, self, event)

    def add_mark(self, name: str) -> None:
        """The peer placed a mark after the audio queued so far: answer it once that is sent."""
        self._marks.append((self._queued_total, name))
        self._answer_marks()

    def _deliver(self, pcm: bytes) -> None:
        self.counters["frames_in"] += 1
        if self._relay:
            # An application that relays (the echo fast path) gets no decoded audio: the
            # stream sends the caller's audio straight back, as a SIP leg relays RTP.
            self.send_audio(pcm)
            return
        if not self._needs_audio:
            return
        frame = AudioFrame(pcm, self._rate, self._rx_samples)
        self._rx_samples += len(pcm) // SAMPLE_WIDTH
        self._call_app(self.app.on_audio, self, frame)

    # -- the tick -------------------------------------------------------------------------------

    def _on_tick(self, tick: int, now: float) -> None:
        if self.state != "started":
            return
        if self._app_ticks:
            self._call_app(self.app.on_tick, self)
        if self._credit < self._ahead:
            self._credit += 1
        while self._credit > 0:
            pcm = self._take_frame()
            if pcm is None:
                break
            self._credit -= 1
            self.counters["frames_out"] += 1
            for payload in self.encoder.encode(pcm):
                self.counters["payloads_sent"] += 1
                self.counters["bytes_sent"] += len(payload)
                self.sink.send_media(payload)
            self._answer_marks()

    def _take_frame(self) -> bytes | None:
        need = self._frame_bytes
        queue = self._pcm_out
        if not queue:
            return None
        if len(queue) < need:
            # A partial frame: give the application one tick to complete it.
            if not self._partial_waited:
                self._partial_waited = True
                return None
            self._partial_waited = False
            pcm = bytes(queue) + bytes(need - len(queue))
            self._taken_total += len(queue)
            queue.clear()
            return pcm
        self._partial_waited = False
        pcm = bytes(queue[:need])
        del queue[:need]
        self._taken_total += need
        return pcm

    def _answer_marks(self) -> None:
        marks = self._marks
        while marks and marks[0][0] <= self._taken_total:
            _, name = marks.popleft()
            self.counters["marks_answered"] += 1
            if self.state != "closed":
                self.sink.send_mark(name)

    def _call_app(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self.counters["app_errors"] += 1
            log.exception("media app %s failed in %s", type(self.app).__name__, hook.__name__)
