"""RFC 4733 telephone-events (DTMF) received and sent.

Receiving: every packet of one key press carries the same RTP timestamp (the
event's start, RFC 4733 §2.5.1.2) and a growing duration; the last carries the
E bit and is sent three times (§2.5.1.4). Many carriers never set the marker
bit, so we key events on the timestamp alone and report each key press once:
when its E bit arrives, when a packet with a new timestamp shows that it is
over (its end packets were lost), or after ``timeout`` seconds without news.

Sending: see :class:`DtmfSender`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

# RFC 4733 §3.2: event codes 0-9, *, #, A-D, flash.
EVENT_CODES = "0123456789*#ABCD"
FLASH = 16
_PAYLOAD = struct.Struct("!BBH")
END_RETRANSMISSIONS = 3


def digit_of(event: int) -> str | None:
    if event < len(EVENT_CODES):
        return EVENT_CODES[event]
    if event == FLASH:
        return "flash"
    return None


def event_of(digit: str) -> int:
    if digit.lower() == "flash":
        return FLASH
    index = EVENT_CODES.find(digit.upper())
    if index < 0 or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


def parse_event(payload: bytes) -> tuple[int, bool, int, int]:
    """Return ``(event, end, volume, duration)`` of an RFC 4733 §2.3 payload."""
    if len(payload) < 4:
        raise ValueError("telephone-event payload shorter than 4 octets")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


def build_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    return _PAYLOAD.pack(event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


@dataclass(frozen=True, slots=True)
class KeyPress:
    digit: str
    duration_ms: int
    timestamp: int  # the RTP timestamp that identified it
    ended_by: str  # "end-bit", "new-event", "timeout"


class DtmfReceiver:
    """Turns telephone-event packets into one :class:`KeyPress` per key press."""

    def __init__(self, clock_rate: int = 8000, *, timeout: float = 0.5) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._timestamp: int | None = None  # the key press in progress
        self._event = 0
        self._duration = 0
        self._last_seen = 0.0
        self._finished: deque[int] = deque(maxlen=8)  # timestamps already reported
        self.ignored_events = 0

    def feed(self, timestamp: int, payload: bytes, now: float) -> list[KeyPress]:
        """Process one packet; return the key presses it completes (0, 1 or 2)."""
        event, end, _volume, duration = parse_event(payload)
        if timestamp in self._finished:
            return []  # an end retransmission, a duplicate, or a straggler
        done: list[KeyPress] = []
        if self._timestamp is not None and timestamp != self._timestamp:
            done += self._finish("new-event")
        if digit_of(event) is None:
            self.ignored_events += 1  # a tone or line event (RFC 4734), not a key
            self._finished.append(timestamp)
            return done
        if self._timestamp is None:
            self._timestamp = timestamp
            self._event = event
            self._duration = 0
        self._duration = max(self._duration, duration)
        self._last_seen = now
        if end:
            done += self._finish("end-bit")
        return done

    def poll(self, now: float) -> list[KeyPress]:
        """End a key press whose packets stopped coming (all its end packets lost)."""
        if self._timestamp is not None and now - self._last_seen >= self.timeout:
            return self._finish("timeout")
        return []

    @property
    def in_progress(self) -> bool:
        return self._timestamp is not None

    def reset(self) -> None:
        self._timestamp = None
        self._finished.clear()

    def _finish(self, ended_by: str) -> list[KeyPress]:
        assert self._timestamp is not None
        timestamp, self._timestamp = self._timestamp, None
        self._finished.append(timestamp)
        digit = digit_of(self._event)
        assert digit is not None
        return [
            KeyPress(
                digit=digit,
                duration_ms=round(1000 * self._duration / self.clock_rate),
                timestamp=timestamp,
                ended_by=ended_by,
            )
        ]


@dataclass(slots=True)
class _Tone:
    event: int
    ticks: int  # packets carrying a growing duration, the last of them with E
    gap_ticks: int  # audio ticks after the event, before the next one


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    payload: bytes
    marker: int
    timestamp: int
    last_of_event: bool  # the third copy of the end packet
    last_of_queue: bool  # nothing more queued after this event


class DtmfSender:
    """RFC 4733 §2.5.1 sender, one packet per ``tick_ms`` tick.

    A key press of ``duration_ms`` becomes ``n = ceil(duration_ms / tick_ms)``
    packets, all stamped with the RTP timestamp of the event's first tick; the
    first has the marker bit (§2.5.1.1), the k-th says ``duration = k * tick``
    and the n-th also has the E bit and goes out three times (§2.5.1.4), each
    with its own sequence number (RFC 3550 §5.1; with SRTP a repeated sequence
    number would be dropped as a replay). Audio stays paused until the third
    end packet is out; ``gap_ms`` of audio separates consecutive digits.
    """

    def __init__(self, clock_rate: int = 8000, *, tick_ms: int = 20, volume: int = 10) -> None:
        self.clock_rate = clock_rate
        self.tick_ms = tick_ms
        self.volume = volume
        self._queue: deque[_Tone] = deque()
        self._timestamp = 0
        self._step = 0  # packets sent for the current event
        self._gap = 0  # audio ticks still to wait before the next event
        self.events_sent = 0

    def queue(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        events = [event_of(d) for d in digits]  # validates them all before queueing any
        ticks = max(1, -(-duration_ms // self.tick_ms))
        gap = max(1, -(-gap_ms // self.tick_ms))
        for event in events:
            self._queue.append(_Tone(event, ticks, gap))

    @property
    def pending(self) -> int:
        """Events queued, including the one being sent."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while events are queued or being sent."""
        return bool(self._queue) or self._gap > 0

    def clear(self) -> None:
        self._queue.clear()
        self._step = 0
        self._gap = 0

    def next_packet(self, timestamp_now: int) -> DtmfPacket | None:
        """The packet to send at this tick, or None if this tick carries audio.

        ``timestamp_now`` is the RTP timestamp of this tick; it becomes the event
        timestamp when an event starts.
        """
        if not self._queue:
            if self._gap:
                self._gap -= 1
            return None
        if self._step == 0 and self._gap:
            self._gap -= 1
            return None
        tone = self._queue[0]
        if self._step == 0:
            self._timestamp = timestamp_now
        self._step += 1
        samples_per_tick = self.clock_rate * self.tick_ms // 1000
        duration = min(self._step, tone.ticks) * samples_per_tick
        end = self._step >= tone.ticks
        last = self._step == tone.ticks + END_RETRANSMISSIONS - 1
        packet = DtmfPacket(
            payload=build_event(tone.event, end, self.volume, min(duration, 0xFFFF)),
            marker=1 if self._step == 1 else 0,
            timestamp=self._timestamp,
            last_of_event=last,
            last_of_queue=last and len(self._queue) == 1,
        )
        if last:
            self._queue.popleft()
            self._step = 0
            self._gap = tone.gap_ticks
            self.events_sent += 1
        return packet
