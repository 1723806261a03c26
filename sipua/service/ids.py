"""Session ids and secret tokens.

A session id is ``sess_`` followed by a ULID: a 48-bit millisecond Unix timestamp and 80 random
bits, written as 26 Crockford base32 characters. The alphabet is in ASCII order, so ids sort as
strings in creation order; within one millisecond this process increments the random part
instead of drawing a new one, which keeps that order strict (the ULID "monotonic" variant).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable

from sipua.sip.ids import random_bytes

__all__ = [
    "SESSION_ID_PREFIX",
    "UlidGenerator",
    "is_session_id",
    "new_session_id",
    "new_token",
    "ulid_timestamp_ms",
]

SESSION_ID_PREFIX = "sess_"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_DECODE = {ch: i for i, ch in enumerate(_ALPHABET)}
_ULID_LEN = 26
_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_MAX_TIME_MS = (1 << 48) - 1
# 26 chars carry 130 bits; a 128-bit value leaves the top char in 0..7.
_SESSION_ID_RE = re.compile(r"sess_[0-7][0-9A-HJKMNP-TV-Z]{25}")


# Two characters (10 bits) per lookup: 13 lookups make the 26 characters.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def _random_bits(k: int) -> int:
    return int.from_bytes(random_bytes((k + 7) // 8), "big") >> (-k % 8)


class UlidGenerator:
    """Thread-safe monotonic ULID source; ``clock_ms`` and ``random_bits`` are injectable."""

    def __init__(
        self,
        clock_ms: Callable[[], int] | None = None,
        random_bits: Callable[[int], int] = _random_bits,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._random_bits = random_bits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self) -> str:
        with self._lock:
            now_ms = self._clock_ms()
            if now_ms <= self._last_ms:
                # Same millisecond, or the wall clock stepped back: stay on the last timestamp
                # and count up, so ids keep increasing.
                ms, rand = self._last_ms, self._last_random + 1
                if rand > _RANDOM_MASK:  # 2**80 ids in one ms: borrow the next millisecond
                    ms, rand = ms + 1, self._random_bits(_RANDOM_BITS)
            else:
                ms, rand = now_ms, self._random_bits(_RANDOM_BITS)
            if not 0 <= ms <= _MAX_TIME_MS:
                raise OverflowError("timestamp does not fit in 48 bits")
            self._last_ms, self._last_random = ms, rand
        return _encode((ms << _RANDOM_BITS) | rand)


_default = UlidGenerator()


def new_session_id() -> str:
    """A new ``sess_<ULID>`` id, greater than every id this process made before."""
    return SESSION_ID_PREFIX + _default.new()


def is_session_id(value: str) -> bool:
    """True when ``value`` has the exact shape of a session id (case-sensitive)."""
    return _SESSION_ID_RE.fullmatch(value) is not None


def ulid_timestamp_ms(value: str) -> int:
    """The millisecond timestamp inside a ULID or session id."""
    ulid = value.removeprefix(SESSION_ID_PREFIX)
    if len(ulid) != _ULID_LEN:
        raise ValueError(f"not a ULID: {value!r}")
    number = 0
    for ch in ulid:
        try:
            number = (number << 5) | _DECODE[ch]
        except KeyError:
            raise ValueError(f"not a ULID: {value!r}") from None
    if number >> 128:
        raise ValueError(f"not a ULID: {value!r}")
    return number >> _RANDOM_BITS


def new_token() -> str:
    """A URL-safe secret of 256 random bits (43 characters)."""
    return secrets.token_urlsafe(32)
