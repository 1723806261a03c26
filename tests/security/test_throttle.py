"""Address lists, per-source throttles and the loop-lag monitor, on simulated and real clocks."""

from __future__ import annotations

import asyncio
import time

import pytest

from sipua.ua.netlist import AddressList, parse_address, parse_network
from sipua.ua.overload import LoopLagMonitor
from sipua.ua.throttle import BanList, FailureTracker, RateLimiter, WindowCounter

# -- address lists -------------------------------------------------------------------------------


def test_address_list_ipv4_ipv6_and_mapped():
    allow = AddressList(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "[2001:db8:ffff::1]"])
    assert "10.255.0.1" in allow and "192.0.2.7" in allow and "192.0.2.8" not in allow
    assert "2001:db8:1::1" in allow and "2001:db9::1" not in allow
    assert "::ffff:10.1.2.3" in allow  # IPv4 seen through an IPv6 socket
    assert "fe80::1%eth0" not in allow and "not an ip" not in allow and "" not in allow
    assert AddressList(["::ffff:192.0.2.0/120"]).networks == (parse_network("192.0.2.0/24"),)
    assert "192.0.2.99" in AddressList(["::ffff:192.0.2.0/120"])
    assert not AddressList() and "10.0.0.1" not in AddressList()
    assert parse_network("10.1.2.3/8").exploded == "10.0.0.0/8"  # host bits allowed
    assert str(parse_address("[::1]")) == "::1"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "300.1.1.1", "example.com", "2001:db8::/129", ""])
def test_address_list_refuses_bad_entries(bad):
    with pytest.raises(ValueError):
        AddressList([bad])


def test_address_list_cache_is_bounded():
    allow = AddressList(["10.0.0.0/8"])
    for i in range(10_000):
        assert (f"10.{i // 256 % 256}.{i % 256}.1" in allow) is True
    assert len(allow._cache) <= AddressList._CACHE_SIZE


# -- bans, failures, rates -------------------------------------------------------------------------


def test_failure_tracker_sliding_window():
    tracker = FailureTracker(3, 10.0)
    assert [tracker.record("a", t) for t in (0, 1)] == [False, False]
    assert tracker.record("a", 2) is True
    tracker.reset("a")
    assert [tracker.record("a", t) for t in (20, 25, 31, 36)] == [False, False, False, False]
    assert tracker.count("a", 36) == 2


def test_tables_are_bounded():
    tracker = FailureTracker(3, 10.0, max_sources=100)
    limiter = RateLimiter(1, 1, max_keys=100)
    counter = WindowCounter(10, max_keys=100)
    for i in range(1000):
        tracker.record(f"s{i}", 0)
        limiter.allow(f"s{i}", 0)
        counter.add(f"s{i}", 0)
    assert len(tracker) == 100 and len(limiter) == 100 and len(counter._counts) == 100
    bans = BanList(max_entries=50)
    for i in range(200):
        bans.ban(f"b{i}", 0, 100 + i, "x")
    assert len(bans) == 50
    assert bans.get("b199", 1) is not None  # the longest bans are kept


def test_ban_list_expiry_extension_and_lift():
    bans = BanList()
    bans.ban("a", 0, 10, "first")
    assert bans.get("a", 9.99) is not None and bans.get("a", 10) is None
    bans.ban("a", 20, 10, "again")
    longer = bans.ban("a", 21, 100, "worse")
    assert longer.until == 121 and longer.since == 20
    assert bans.ban("a", 22, 1, "shorter").until == 121  # never shortened
    assert [b.address for b in bans.active(50)] == ["a"]
    assert bans.lift("a") and not bans.lift("a") and bans.active(50) == []


def test_rate_limiter_token_bucket():
    limiter = RateLimiter(rate=5, burst=10)
    assert sum(limiter.allow("k", 0) for _ in range(20)) == 10
    assert sum(limiter.allow("k", 1.0) for _ in range(20)) == 5
    assert sum(limiter.allow("k", 100.0) for _ in range(20)) == 10  # capped at burst


def test_window_counter():
    counter = WindowCounter(8, buckets=8)
    assert [counter.add("k", t) for t in (0, 0.5, 1, 7.9)] == [1, 2, 3, 4]
    assert counter.count("k", 8.5) == 2  # the events of second 0 left the window
    assert counter.count("k", 100) == 0


# -- loop lag --------------------------------------------------------------------------------------


def test_lag_monitor_smooths_spikes_has_hysteresis_and_recovers():
    monitor = LoopLagMonitor(threshold=0.1, smoothing=0.5)
    assert not monitor.overloaded(0)
    monitor.observe(0.15, 1.0)  # one spike: smoothed 0.075
    assert not monitor.overloaded(1.0)
    monitor.observe(0.3, 1.1)  # lag persists: 0.1875
    assert monitor.overloaded(1.1) and monitor.episodes == 1
    monitor.observe(0.0, 1.2)  # 0.094: above half the threshold, still refusing
    assert monitor.overloaded(1.2)
    monitor.observe(0.0, 1.3)  # 0.047: accepting again
    assert not monitor.overloaded(1.3)
    assert monitor.max_lag == pytest.approx(0.3)


def test_queue_delay_sheds_while_datagrams_wait_even_when_the_loop_keeps_time():
    monitor = LoopLagMonitor(threshold=0.5, smoothing=0.5, queue_threshold=0.2)
    monitor.observe(0.01, 1.0)  # the loop itself is on time
    monitor.observe_queue(0.3, 1.0)  # but datagrams waited 300 ms: smoothed 0.15
    assert not monitor.overloaded(1.0)
    monitor.observe_queue(0.4, 1.01)  # 0.275: refusing
    assert monitor.overloaded(1.01) and monitor.episodes == 1
    monitor.observe(0.01, 1.05)  # loop lag does not end it
    monitor.observe_queue(0.05, 1.1)  # 0.1625, above half the threshold
    assert monitor.overloaded(1.1)
    monitor.observe_queue(0.01, 1.2)  # 0.086: accepting again
    assert not monitor.overloaded(1.2)
    assert monitor.max_queue_delay == pytest.approx(0.4) and monitor.episodes == 1
    off = LoopLagMonitor(threshold=0.5, queue_threshold=0)  # 0: the measurement is not used
    for t in range(5):
        off.observe_queue(5.0, float(t))
    assert not off.overloaded(5.0)


async def test_queue_overload_ends_by_itself_when_no_datagram_comes():
    loop = asyncio.get_running_loop()
    monitor = LoopLagMonitor(threshold=5.0, interval=0.02, queue_threshold=0.2)
    monitor.start(loop)
    try:
        monitor.observe_queue(1.0, loop.time())  # the last burst waited 1 s: refusing
        assert monitor.overloaded(loop.time())
        deadline = loop.time() + 3
        while monitor.overloaded(loop.time()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert not monitor.overloaded(loop.time())  # nothing queued: accepting again
        assert monitor.queue_smoothed < 0.1
    finally:
        monitor.stop()


async def test_lag_monitor_tolerates_one_stall_and_sheds_the_backlog_of_repeated_ones():
    loop = asyncio.get_running_loop()
    monitor = LoopLagMonitor(threshold=0.2, interval=0.02)
    monitor.start(loop)
    try:
        await asyncio.sleep(0.1)
        assert not monitor.overloaded(loop.time())
        seen: list[bool] = []

        def stall_then_check() -> None:
            time.sleep(0.3)  # the loop is blocked: nothing else runs
            seen.append(monitor.overloaded(loop.time()))  # work queued behind the stall

        loop.call_soon(stall_then_check)
        await asyncio.sleep(0.05)
        assert seen == [False]  # a single stall (an import, a GC) turns nobody away
        loop.call_soon(stall_then_check)
        await asyncio.sleep(0.05)
        assert seen == [False, True]  # a second one, with lag still raised: backlog refused
        assert monitor.overloaded(loop.time()) and monitor.episodes == 1
        deadline = loop.time() + 3
        while monitor.overloaded(loop.time()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert not monitor.overloaded(loop.time())  # recovered by itself
        assert monitor.episodes == 1
    finally:
        monitor.stop()
    assert not monitor.running
