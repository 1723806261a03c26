import asyncio

import pytest

from sipua.media.clock import MediaClock


class FakeHandle:
    def __init__(self, when, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class FakeLoop:
    """Just enough of an event loop: a settable clock and call_at."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback):
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    @property
    def pending(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled and not getattr(h, "ran", False)]

    def run_next(self, late: float = 0.0) -> None:
        (handle,) = self.pending  # exactly one timer, whatever the number of subscribers
        self.now = handle.when + late
        handle.ran = True
        handle.callback()


def test_ticks_follow_a_fixed_grid_without_drift():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop)
    seen = []
    clock.subscribe("a", lambda tick, now: seen.append((tick, now)))
    origin = loop.handles[0].when
    for i in range(50):
        loop.run_next(late=0.007 if i % 2 else 0.001)  # always a bit late
    assert [t for t, _ in seen] == list(range(50))
    # Each timer was armed on the grid, not "now + 20 ms".
    for n, handle in enumerate(loop.handles):
        assert handle.when == pytest.approx(origin + 0.02 * n, abs=1e-9)


def test_one_timer_serves_every_subscriber():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop)
    counts = {k: 0 for k in range(100)}

    def make(k):
        def cb(tick, now):
            counts[k] += 1

        return cb

    for k in counts:
        clock.subscribe(k, make(k))
    for _ in range(10):
        loop.run_next()
    assert len(loop.handles) == 11  # one per tick, not per subscriber
    assert set(counts.values()) == {10}


def test_missed_ticks_catch_up_in_order():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop, max_catch_up=5)
    seen = []
    clock.subscribe("a", lambda tick, now: seen.append(tick))
    loop.run_next()  # tick 0
    loop.run_next(late=0.065)  # the loop was blocked: ticks 1..4 are due now
    assert seen == [0, 1, 2, 3, 4]
    assert loop.pending[0].when == pytest.approx(loop.handles[0].when + 0.1)
    assert clock.ticks_skipped == 0


def test_long_stalls_skip_ahead_and_count():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop, max_catch_up=3)
    seen = []
    clock.subscribe("a", lambda tick, now: seen.append(tick))
    loop.run_next()  # tick 0
    loop.run_next(late=0.2)  # ticks 1..11 due; only the last 3 run
    assert seen == [0, 9, 10, 11]
    assert clock.ticks_skipped == 8
    loop.run_next()
    assert seen[-1] == 12


def test_early_wakeup_still_runs_the_armed_tick():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop)
    seen = []
    clock.subscribe("a", lambda tick, now: seen.append(tick))
    loop.run_next(late=-0.0005)  # selector woke a little early
    assert seen == [0]
    assert loop.pending[0].when > loop.now


def test_a_failing_subscriber_does_not_stop_the_others():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop)
    seen = []

    def broken(tick, now):
        raise RuntimeError("boom")

    clock.subscribe("broken", broken)
    clock.subscribe("ok", lambda tick, now: seen.append(tick))
    loop.run_next()
    loop.run_next()
    assert seen == [0, 1]
    assert clock.callback_errors == 2


def test_timer_stops_with_the_last_subscriber_and_resumes_on_the_grid():
    loop = FakeLoop()
    clock = MediaClock(0.02, loop=loop)
    clock.subscribe("a", lambda tick, now: None)
    origin = loop.handles[0].when
    loop.run_next()
    clock.unsubscribe("a")
    assert not clock.running
    assert all(h.cancelled or getattr(h, "ran", False) for h in loop.handles)
    loop.now += 0.333
    clock.subscribe("b", lambda tick, now: None)
    when = loop.pending[0].when
    assert when > loop.now
    assert ((when - origin) / 0.02) == pytest.approx(round((when - origin) / 0.02), abs=1e-6)


async def test_real_loop_ticks_every_20ms():
    loop = asyncio.get_running_loop()
    clock = MediaClock()
    times: list[float] = []
    done = loop.create_future()

    def on_tick(tick, now):
        times.append(loop.time())
        if len(times) == 15 and not done.done():
            done.set_result(None)

    clock.subscribe("t", on_tick)
    try:
        await asyncio.wait_for(done, timeout=5)
    finally:
        clock.unsubscribe("t")
    for n, t in enumerate(times):
        assert t >= clock.time_of(n) - 0.002  # never (much) early
    span = times[-1] - times[0]
    assert span == pytest.approx(14 * 0.02, abs=0.015)
