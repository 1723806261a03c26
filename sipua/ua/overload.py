"""Overload detection: event-loop lag, so new work can be refused with 503 before collapse.

:class:`LoopLagMonitor` wakes every ``interval`` seconds and measures how late
it woke. A loop that keeps running late is saturated: callbacks (datagrams,
timers, HTTP) queue up behind each other, retransmission timers fire late and
peers retransmit more, which is how a SIP server collapses. Refusing new
requests with 503 and Retry-After (RFC 3261 §21.5.4) sheds that load.

The measurements are smoothed (an exponential average), so a single stall (an
import, a garbage collection, a slow disk write) does not turn callers away;
lag that persists does. The state has hysteresis: overloaded above the
threshold, accepting again below half of it, by itself.

The monitor is also asked *while* the loop is late: when its own wake-up is
overdue by more than the threshold and the smoothed lag is already raised, the
requests read in that same loop iteration (the backlog built up during the
stall) are refused too.

Loop lag alone misses the commonest overload of a UDP server: the loop keeps time (it
reads a bounded burst of datagrams per turn) while datagrams wait in the kernel's receive
buffer for longer and longer, until every answer comes after the clients' T1 and they
retransmit everything (RFC 6357 §3). So the UDP reader also reports how long the first
datagram of each burst, the oldest queued, waited before it was read
(:meth:`LoopLagMonitor.observe_queue`, from its kernel receive timestamp). Smoothed the
same way, it has its own threshold (``queue_threshold``, below T1) and the same hysteresis;
either measurement raised is overload. With no datagram for an interval, nothing waits:
the queue measurement falls back to zero.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sipua.security")

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    def __init__(
        self,
        threshold: float = 0.5,
        *,
        interval: float = 0.05,
        smoothing: float = 0.5,
        queue_threshold: float = 0.2,
    ):
        if threshold <= 0 or interval <= 0 or not 0 < smoothing <= 1:
            raise ValueError("threshold and interval must be positive, smoothing in (0, 1]")
        if queue_threshold < 0:
            raise ValueError("queue_threshold cannot be negative (0 turns it off)")
        self.threshold = threshold
        self.queue_threshold = queue_threshold
        self.queue_smoothed = 0.0
        self.max_queue_delay = 0.0
        self._queue_seen: float | None = None
        self._queue_overloaded = False
        self.interval = interval
        self.smoothing = smoothing  # weight of the newest measurement
        self.smoothed = 0.0
        self.max_lag = 0.0
        self.last_lag = 0.0
        self.episodes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected: float | None = None
        self._overloaded = False

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._handle is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._expected = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._expected = now + self.interval
        self._handle = self._loop.call_at(self._expected, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None and self._expected is not None
        now = self._loop.time()
        if self._queue_seen is not None and now - self._queue_seen > self.interval:
            # No datagram came for an interval: none waits. Counted as a zero each interval
            # until the refusal ends, as prompt datagrams would end it.
            self.observe_queue(0.0, now)
            if not self._queue_overloaded:
                self._queue_seen = None
        self.observe(max(0.0, now - self._expected), now)
        self._schedule(now)

    def observe(self, lag: float, now: float) -> None:
        """Record one measured lag (also used by tests to simulate a late loop)."""
        self.last_lag = lag
        self.max_lag = max(self.max_lag, lag)
        self.smoothed += self.smoothing * (lag - self.smoothed)
        if not self._overloaded and self.smoothed > self.threshold:
            self._overloaded = True
            self.episodes += 1
            log.warning(
                "event loop %.0f ms late: refusing new requests with 503", self.smoothed * 1000
            )
        elif self._overloaded and self.smoothed < self.threshold / 2:
            self._overloaded = False
            log.warning("event loop keeps time again: accepting new requests")

    def observe_queue(self, delay: float, now: float) -> None:
        """Record how long a received datagram waited before it was read (seconds)."""
        self._queue_seen = now
        self.max_queue_delay = max(self.max_queue_delay, delay)
        if self.queue_threshold <= 0:
            return
        self.queue_smoothed += self.smoothing * (delay - self.queue_smoothed)
        if not self._queue_overloaded and self.queue_smoothed > self.queue_threshold:
            self._queue_overloaded = True
            self.episodes += 1
            log.warning(
                "SIP datagrams wait %.0f ms to be read: refusing new requests with 503",
                self.queue_smoothed * 1000,
            )
        elif self._queue_overloaded and self.queue_smoothed < self.queue_threshold / 2:
            self._queue_overloaded = False
            log.warning("SIP datagrams are read promptly again: accepting new requests")

    def lag(self, now: float) -> float:
        """The lag as seen now: the smoothed measurement, or how overdue the next wake-up is."""
        overdue = now - self._expected if self._expected is not None else 0.0
        return max(self.smoothed, overdue)

    def overloaded(self, now: float) -> bool:
        if self._overloaded or self._queue_overloaded:
            return True
        if self._expected is None or self.smoothed <= self.threshold / 2:
            return False
        return now - self._expected > self.threshold  # a stall on top of raised lag
