"""The one 20 ms tick that clocks out media for every stream (DESIGN.md §4).

A single ``loop.call_at`` timer is re-armed on a fixed monotonic grid
``origin + n * interval``: tick ``n`` is due at that instant whatever happened
before, so lateness never accumulates into drift. When the loop was blocked for
several intervals, the missed ticks run back to back (up to ``max_catch_up``)
so RTP timestamps derived from the tick number stay continuous; beyond that the
clock skips ahead and counts the skipped ticks.

Subscribers are plain callables ``(tick, now)``; there are no per-call tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

TICK_INTERVAL = 0.020

TickCallback = Callable[[int, float], None]


class MediaClock:
    def __init__(
        self,
        interval: float = TICK_INTERVAL,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        max_catch_up: int = 5,
    ) -> None:
        self.interval = interval
        self.max_catch_up = max_catch_up
        self._loop = loop
        self._subscribers: dict[object, TickCallback] = {}
        self._snapshot: tuple[TickCallback, ...] = ()
        self._handle: asyncio.TimerHandle | None = None
        self._origin = 0.0
        self._next_tick = 0
        self.ticks_run = 0
        self.ticks_skipped = 0
        self.callback_errors = 0
        self.max_lateness = 0.0  # worst delay of a timer wake-up (event loop lag), seconds
        self.late_wakeups = 0  # wake-ups later than one interval

    # -- time ---------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def running(self) -> bool:
        return self._handle is not None

    @property
    def tick(self) -> int:
        """The number of the next tick to run."""
        return self._next_tick

    def time_of(self, tick: int) -> float:
        """Loop time at which ``tick`` is due."""
        return self._origin + tick * self.interval

    def current_tick(self, now: float | None = None) -> float:
        """Fractional tick number at ``now`` (loop time), for timestamping between ticks."""
        if now is None:
            now = self.loop.time()
        return (now - self._origin) / self.interval

    # -- subscribers --------------------------------------------------------

    def subscribe(self, key: object, callback: TickCallback) -> None:
        """Call ``callback(tick, now)`` every tick until :meth:`unsubscribe` with ``key``."""
        self._subscribers[key] = callback
        self._snapshot = tuple(self._subscribers.values())
        if self._handle is None:
            self._start()

    def unsubscribe(self, key: object) -> None:
        if self._subscribers.pop(key, None) is None:
            return
        self._snapshot = tuple(self._subscribers.values())
        if not self._subscribers:
            self.stop()

    def __len__(self) -> int:
        return len(self._subscribers)

    # -- timer --------------------------------------------------------------

    def _start(self) -> None:
        loop = self.loop
        if self._origin == 0.0:
            self._origin = loop.time()
            self._next_tick = 0
        else:
            # Restarting after idling: keep the grid, resume at the next slot.
            self._next_tick = max(self._next_tick, int(self.current_tick()) + 1)
        self._handle = loop.call_at(self.time_of(self._next_tick), self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        loop = self.loop
        now = loop.time()
        first = self._next_tick
        lateness = now - self.time_of(first)
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        if lateness > self.interval:
            self.late_wakeups += 1
        # The last tick whose time has come; the loop may fire a handle up to its
        # clock resolution early, so the tick we were armed for counts as due.
        due = max(int((now - self._origin) / self.interval + 1e-6), first)
        if due - first >= self.max_catch_up:
            skipped = due - first - self.max_catch_up + 1
            self.ticks_skipped += skipped
            first += skipped
        for tick in range(first, due + 1):
            self._run(tick, now)
        self._next_tick = due + 1
        if self._subscribers:
            self._handle = loop.call_at(self.time_of(self._next_tick), self._fire)
        else:
            self._handle = None

    def _run(self, tick: int, now: float) -> None:
        self.ticks_run += 1
        for callback in self._snapshot:
            try:
                callback(tick, now)
            except Exception:
                # A broken stream must not stop the clock for every other call.
                self.callback_errors += 1
                logger.exception("media tick subscriber failed")
