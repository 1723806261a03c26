"""Media streams over WebSockets: Twilio and Telnyx media streams and browsers join a session
as participants of its media application (see docs/STREAMS.md).

``install_streams(app, settings, sessions)`` mounts ``/v1/streams/{session_id}`` and the
``/demo`` page on the HTTP API and returns the :class:`StreamHub` (also ``app.state.streams``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .demo import demo_router
from .endpoint import StreamConnection, streams_router
from .hub import StreamHub
from .participant import WebSocketParticipant
from .protocol import StreamRefused

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sipua.service.config import Settings
    from sipua.service.sessions import SessionService

__all__ = [
    "StreamConnection",
    "StreamHub",
    "StreamRefused",
    "WebSocketParticipant",
    "demo_router",
    "install_streams",
    "streams_router",
]


def install_streams(app: FastAPI, settings: Settings, sessions: SessionService) -> StreamHub:
    """Mount the stream endpoint (and the demo page) and close streams when sessions end."""
    hub = StreamHub(settings, sessions)
    app.state.streams = hub
    sessions.on_ended.append(hub.on_session_ended)
    app.include_router(streams_router())
    if settings.streams.demo:
        app.include_router(demo_router())
    return hub
