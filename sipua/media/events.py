"""Events the media engine reports to the call layer.

Small frozen dataclasses named in the past tense (DESIGN.md §3). The call layer
passes an ``on_event`` callable to :class:`~sipua.media.stream.MediaStream` and
forwards what it gets (webhooks, logs, metrics). ``stream_id`` says which call
leg the event belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class MediaEvent:
    """Base class of every media event (for ``isinstance`` checks and typing)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class DtmfReceived(MediaEvent):
    """One key press, reported once when it ends."""

    digit: str  # "0"-"9", "*", "#", "A"-"D", or "flash"
    duration_ms: int
    source: str = "rfc4733"
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class StreamStatsUpdated(MediaEvent):
    """Periodic statistics, emitted each time we send an RTCP report (~5 s)."""

    stats: dict[str, Any] = field(compare=False)
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class MediaTimedOut(MediaEvent):
    """No RTP nor RTCP arrived for ``idle_seconds`` while the peer should be sending."""

    idle_seconds: float
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class RemoteAddressLatched(MediaEvent):
    """Symmetric RTP: we now send to where the peer's RTP (or RTCP) comes from."""

    address: tuple[str, int]
    rtcp: bool = False
    stream_id: str = ""
