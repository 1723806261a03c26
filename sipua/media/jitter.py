"""Timed audio playout on top of aiortc's JitterBuffer.

aiortc's ``JitterBuffer.add`` puts packets in sequence order (handling wrap,
late and far-jumping sequence numbers) and hands back a frame once the packet
after it has arrived. That is event-driven; our applications want one frame per
20 ms tick, so this module adds the pull side:

- frames the buffer completes are queued in arrival order (and the buffer is
  drained, since ``add`` returns at most one frame even when a late packet
  completes several);
- at a tick with nothing queued, the packet at the head of the buffer is played
  anyway (for audio one packet is one frame: it need not wait for a successor);
- a hole at the head is waited for during one tick, then declared lost and
  skipped, so one lost packet never stalls the stream;
- when a burst queues more than ``max_frames``, the oldest are discarded down
  to ``target_frames`` so latency stays bounded.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket


class Playout(Enum):
    FRAME = "frame"  # a frame to decode
    LOST = "lost"  # a packet is missing here: conceal
    WAIT = "wait"  # the next packet is late: conceal and keep waiting
    EMPTY = "empty"  # nothing buffered (peer silent, DTX, on hold)


class _AudioJitterBuffer(JitterBuffer):
    """aiortc's buffer plus head-of-line operations for timed playout."""

    def drain(self, into: deque[JitterFrame]) -> None:
        while True:
            frame = self._remove_frame(0)  # its argument is unused
            if frame is None:
                return
            into.append(frame)

    def head(self) -> RtpPacket | None:
        if self._origin is None:
            return None
        return self._packets[self._origin % self._capacity]

    def holds_packets(self) -> bool:
        return self._origin is not None and any(p is not None for p in self._packets)

    def pop_head(self) -> JitterFrame | None:
        """Remove the head slot; return its packet as a frame, or None for a hole."""
        packet = self.head()
        self.remove(1)
        if packet is None:
            return None
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


class PlayoutBuffer:
    def __init__(self, capacity: int = 32, *, max_frames: int = 6, target_frames: int = 2) -> None:
        self.capacity = capacity
        self.max_frames = max_frames
        self.target_frames = target_frames
        self.payload_type: int | None = None
        self._jb = _AudioJitterBuffer(capacity)
        self._ready: deque[JitterFrame] = deque()
        self._waited = False
        self.discarded = 0  # frames dropped to bound latency
        self.lost = 0  # holes skipped at playout

    def reset(self) -> None:
        """Forget everything (new SSRC, codec change)."""
        self._jb = _AudioJitterBuffer(self.capacity)
        self._ready.clear()
        self._waited = False
        self.payload_type = None

    def __len__(self) -> int:
        return len(self._ready)

    def put(self, payload_type: int, seq: int, timestamp: int, payload: bytes) -> None:
        if payload_type != self.payload_type:
            if self.payload_type is not None:
                self.reset()  # frames of the old codec would go to the wrong decoder
            self.payload_type = payload_type
        packet = RtpPacket(
            payload_type=payload_type, sequence_number=seq, timestamp=timestamp, payload=payload
        )
        packet._data = payload  # type: ignore[attr-defined]  # what JitterBuffer joins into frames
        _, frame = self._jb.add(packet)
        if frame is not None:
            self._ready.append(frame)
        self._jb.drain(self._ready)
        if len(self._ready) > self.max_frames:
            while len(self._ready) > self.target_frames:
                self._ready.popleft()
                self.discarded += 1

    def pop(self) -> tuple[Playout, JitterFrame | None]:
        """What to play at this tick."""
        if self._ready:
            self._waited = False
            return Playout.FRAME, self._ready.popleft()
        if not self._jb.holds_packets():
            self._waited = False
            return Playout.EMPTY, None
        if self._jb.head() is not None:
            self._waited = False
            frame = self._jb.pop_head()
            self._jb.drain(self._ready)
            return Playout.FRAME, frame
        # A hole at the head with packets behind it: late or lost.
        if not self._waited:
            self._waited = True
            return Playout.WAIT, None
        self._jb.pop_head()
        self.lost += 1
        # Stay in the "waited" state: a burst of holes is lost one per tick, not two.
        self._jb.drain(self._ready)
        return Playout.LOST, None
