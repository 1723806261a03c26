"""Branches, tags and Call-IDs with enough randomness (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).

Uniqueness across space and time comes from 96 or more random bits per value;
``secrets`` is used because predictable tags and branches make spoofing easy.
"""

from __future__ import annotations

import secrets

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


def new_branch() -> str:
    """A Via branch beginning with the magic cookie, 96 random bits after it."""
    return MAGIC_COOKIE + secrets.token_hex(12)


def new_tag() -> str:
    """A From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str | None = None) -> str:
    """A Call-ID: 128 random bits, with ``@host`` when given."""
    value = secrets.token_hex(16)
    return f"{value}@{host}" if host else value
