"""A small reordering window for media chunks that may arrive out of order (Telnyx says its
media frames are not guaranteed to be in order; each carries a ``chunk`` number).

Chunks come out in number order. A missing chunk is waited for while fewer than ``size``
later chunks are held; then it is given up on and reported as a :class:`Gap`, so the latency a
loss adds is bounded by ``size`` chunks. Late chunks (older than what was already released)
and duplicates are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Gap", "ReorderWindow"]

T = TypeVar("T")

#: Beyond this many missing chunks a jump is a renumbering, not a loss to fill.
MAX_GAP = 25


@dataclass(frozen=True, slots=True)
class Gap:
    """``count`` chunks that never arrived, in place of which silence is due."""

    count: int


class ReorderWindow(Generic[T]):
    def __init__(self, size: int = 4, first: int | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.expected = first
        self._held: dict[int, T] = {}
        self.out_of_order = 0
        self.late = 0
        self.duplicates = 0
        self.lost = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, key: int, item: T) -> list[T | Gap]:
        """Add chunk ``key``; return what can now be released, in order."""
        if self.expected is None:
            self.expected = key
        if key < self.expected:
            self.late += 1
            return []
        if key in self._held:
            self.duplicates += 1
            return []
        if key != self.expected:
            self.out_of_order += 1
        self._held[key] = item
        out: list[T | Gap] = []
        self._drain(out)
        if len(self._held) >= self.size:
            self._skip(out)
            self._drain(out)
        return out

    def flush(self) -> list[T | Gap]:
        """Release everything held (the stream ends), gaps included."""
        out: list[T | Gap] = []
        while self._held:
            self._skip(out)
            self._drain(out)
        return out

    def _drain(self, out: list[T | Gap]) -> None:
        assert self.expected is not None
        while self.expected in self._held:
            out.append(self._held.pop(self.expected))
            self.expected += 1

    def _skip(self, out: list[T | Gap]) -> None:
        assert self.expected is not None
        first = min(self._held)
        missing = first - self.expected
        if missing > 0:
            self.lost += missing
            if missing <= MAX_GAP:
                out.append(Gap(missing))
        self.expected = first
