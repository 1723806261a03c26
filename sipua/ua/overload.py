"""Overload detection: event-loop lag, so new work can be refused with 503 before collapse.

:class:`LoopLagMonitor` wakes every ``interval`` seconds and measures how late
it woke. A loop that runs late is saturated: callbacks (datagrams, timers,
HTTP) queue up behind each other, retransmission timers fire late and peers
retransmit more, which is how a SIP server collapses. Refusing new requests
with 503 and Retry-After (RFC 3261 §21.5.4) sheds that load; the monitor
clears by itself once the loop keeps time again.

The monitor is also asked *while* the loop is late: when its own wake-up is
overdue by more than the threshold, the requests read in that same loop
iteration (the backlog that built up during a stall) are already refused.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("sipua.security")

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    def __init__(self, threshold: float = 0.5, *, interval: float = 0.05, hold: float = 1.0):
        if threshold <= 0 or interval <= 0 or hold < 0:
            raise ValueError("threshold and interval must be positive, hold not negative")
        self.threshold = threshold
        self.interval = interval
        self.hold = hold  # stay overloaded this long after the last late wake-up
        self.max_lag = 0.0
        self.last_lag = 0.0
        self.episodes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected: float | None = None
        self._overloaded_until = float("-inf")
        self._reported = False

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
        self.observe(now - self._expected, now)
        self._schedule(now)

    def observe(self, lag: float, now: float) -> None:
        """Record one measured lag (also used by tests to simulate a late loop)."""
        self.last_lag = lag
        self.max_lag = max(self.max_lag, lag)
        if lag > self.threshold:
            if now >= self._overloaded_until:
                self.episodes += 1
            self._overloaded_until = now + self.hold
            if not self._reported:
                self._reported = True
                log.warning("event loop %.0f ms late: refusing new requests with 503", lag * 1000)
        elif self._reported and now >= self._overloaded_until:
            self._reported = False
            log.warning("event loop keeps time again: accepting new requests")

    def lag(self, now: float) -> float:
        """The lag as seen now: the last measurement, or how overdue the next wake-up is."""
        overdue = now - self._expected if self._expected is not None else 0.0
        return max(self.last_lag, overdue)

    def overloaded(self, now: float) -> bool:
        if now < self._overloaded_until:
            return True
        return self._expected is not None and now - self._expected > self.threshold
