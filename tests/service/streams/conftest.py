"""Fixtures of the stream endpoint tests (see harness.py)."""

from .harness import server, settings_overrides  # noqa: F401
