"""Media engine: RTP/RTCP, SRTP, codecs, jitter buffer, DTMF, statistics, media apps.

See ``stream.py`` for the life of a stream and ``apps.py`` for applications.
"""

from .apps import EchoApp, MediaApp, Participant, get_app, register_app
from .clock import MediaClock
from .engine import MediaEngine
from .events import (
    DtmfReceived,
    MediaEvent,
    MediaTimedOut,
    RemoteAddressLatched,
    StreamStatsUpdated,
)
from .frame import AudioFrame
from .ports import PortAllocator, PortPair, PortsExhausted
from .stream import MediaStream

__all__ = [
    "AudioFrame",
    "DtmfReceived",
    "EchoApp",
    "MediaApp",
    "MediaClock",
    "MediaEngine",
    "MediaEvent",
    "MediaStream",
    "MediaTimedOut",
    "Participant",
    "PortAllocator",
    "PortPair",
    "PortsExhausted",
    "RemoteAddressLatched",
    "StreamStatsUpdated",
    "get_app",
    "register_app",
]
