"""Per-source throttles: failed-authentication bans, token-bucket rate limits, window counts.

Every table is keyed by source address and bounded: when an attacker cycles
through more addresses than a table holds, the least recently seen entries go
first. Losing an entry only forgets a partial count, never a ban in force
(bans have their own, larger bound). Time is passed in as ``now`` (seconds on
any monotonic clock), so the tables are tested without sleeping.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["Ban", "BanList", "FailureTracker", "RateLimiter", "WindowCounter"]


@dataclass(frozen=True, slots=True)
class Ban:
    """A source refused until ``until`` (same clock as ``now``) for ``reason``."""

    address: str
    since: float
    until: float
    reason: str


class BanList:
    """Banned sources. A ban ends by itself at its ``until``; :meth:`lift` ends it early."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._bans: OrderedDict[str, Ban] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bans)

    def ban(self, address: str, now: float, duration: float, reason: str) -> Ban:
        """Ban ``address`` for ``duration`` seconds from ``now`` (extends a shorter ban)."""
        current = self._bans.get(address)
        until = now + duration
        if current is not None and current.until >= until:
            return current
        entry = Ban(address, current.since if current is not None else now, until, reason)
        self._bans[address] = entry
        self._bans.move_to_end(address)
        while len(self._bans) > self.max_entries:
            # Full of bans: drop the one that ends first rather than the newest.
            oldest = min(self._bans.values(), key=lambda b: b.until)
            del self._bans[oldest.address]
        return entry

    def get(self, address: str, now: float) -> Ban | None:
        """The ban in force on ``address`` at ``now``, if any."""
        entry = self._bans.get(address)
        if entry is None:
            return None
        if now >= entry.until:
            del self._bans[address]
            return None
        return entry

    def lift(self, address: str) -> bool:
        return self._bans.pop(address, None) is not None

    def active(self, now: float) -> list[Ban]:
        expired = [a for a, b in self._bans.items() if now >= b.until]
        for address in expired:
            del self._bans[address]
        return list(self._bans.values())


class FailureTracker:
    """Counts failures per source in a sliding window; says when a source reaches the limit.

    ``record(address, now)`` returns True on the failure that makes
    ``max_failures`` within ``window`` seconds: the caller bans the source and
    :meth:`reset` starts its count again for after the ban.
    """

    def __init__(self, max_failures: int, window: float, *, max_sources: int = 50_000) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.max_failures = max_failures
        self.window = float(window)
        self.max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def record(self, address: str, now: float) -> bool:
        times = self._failures.get(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(now)
        # The deque holds the last max_failures times: full and all within the window.
        return len(times) == self.max_failures and now - times[0] <= self.window

    def count(self, address: str, now: float) -> int:
        times = self._failures.get(address)
        if times is None:
            return 0
        return sum(1 for t in times if now - t <= self.window)

    def reset(self, address: str) -> None:
        self._failures.pop(address, None)


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 50_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last]

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
            while len(self._buckets) > self.max_keys:
                # Forgetting a key gives it a full bucket again: evict the least recent.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return True
        return False


class WindowCounter:
    """Events per key over the last ``window`` seconds, in ``buckets`` slices.

    Used to bound the transactions a source can have alive: a server transaction
    lives at most 64*T1 (RFC 3261 Timers H and J), so the requests a source started
    in that window bound the transactions it holds.
    """

    def __init__(self, window: float, buckets: int = 8, *, max_keys: int = 50_000) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("window must be positive and buckets at least 1")
        self.window = float(window)
        self.slice = self.window / buckets
        self.buckets = buckets
        self.max_keys = max_keys
        self._counts: OrderedDict[str, dict[int, int]] = OrderedDict()

    def add(self, key: str, now: float) -> int:
        """Count one event for ``key`` at ``now``; returns the count in the window."""
        index = int(now // self.slice)
        slices = self._counts.get(key)
        if slices is None:
            slices = self._counts[key] = {}
            while len(self._counts) > self.max_keys:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(key)
        oldest = index - self.buckets + 1
        for old in [i for i in slices if i < oldest]:
            del slices[old]
        slices[index] = slices.get(index, 0) + 1
        return sum(slices.values())

    def count(self, key: str, now: float) -> int:
        slices = self._counts.get(key)
        if not slices:
            return 0
        oldest = int(now // self.slice) - self.buckets + 1
        return sum(n for i, n in slices.items() if i >= oldest)
