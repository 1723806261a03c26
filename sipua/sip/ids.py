"""Branches, tags and Call-IDs with enough randomness (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).

Uniqueness across space and time comes from 64 or more random bits per value, drawn
from the operating system's CSPRNG (``os.urandom``), because predictable tags and
branches make spoofing easy. The octets are read 4 KiB at a time: one system call
per value costed more than the rest of building an id, at thousands of calls per
second. A forked child starts with a fresh pool, never its parent's octets.
"""

from __future__ import annotations

import os

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

_POOL_SIZE = 4096


class _RandomPool:
    __slots__ = ("_buffer", "_pos")

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        pos = self._pos
        if pos + n > len(self._buffer):
            if n > _POOL_SIZE:
                return os.urandom(n)
            self._buffer = os.urandom(_POOL_SIZE)
            pos = 0
        self._pos = pos + n
        return self._buffer[pos : pos + n]

    def reset(self) -> None:
        self._buffer = b""
        self._pos = 0


_pool = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.reset)


def random_bytes(n: int) -> bytes:
    """``n`` octets from the operating system's CSPRNG (through the pool)."""
    return _pool.take(n)


def random_hex(n: int) -> str:
    """``n`` random octets as ``2n`` hexadecimal digits."""
    return _pool.take(n).hex()


def new_branch() -> str:
    """A Via branch beginning with the magic cookie, 96 random bits after it."""
    return MAGIC_COOKIE + _pool.take(12).hex()


def new_tag() -> str:
    """A From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return _pool.take(8).hex()


def new_call_id(host: str | None = None) -> str:
    """A Call-ID: 128 random bits, with ``@host`` when given."""
    value = _pool.take(16).hex()
    return f"{value}@{host}" if host else value
