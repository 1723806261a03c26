"""The live media stream connections of this node, and who may open one.

:class:`StreamHub` checks a stream's token against its session, refuses reused streams,
knows every live connection per session (to close them when the session ends), and gives
connections the shared media clock and their session's media application.

Token semantics (docs/STREAMS.md): the stream token belongs to the session and admits any number
of participants while the session is active (up to ``sip.max_calls_per_session`` live ones, as
for SIP calls); it expires when the session ends. A provider stream connects once: a second
connection with a stream id already seen (Twilio ``streamSid``, Telnyx ``stream_id``) is refused,
and so is a second live stream for one provider call (``callSid``, ``call_control_id``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sipua.media.apps import MediaApp
from sipua.media.clock import MediaClock
from sipua.service.models import stream_token_expiry

from .protocol import (
    CLOSE_ENDED,
    CLOSE_IN_USE,
    CLOSE_INVALID_TOKEN,
    CLOSE_TOO_MANY,
    StreamProtocol,
    StreamRefused,
)

if TYPE_CHECKING:
    from sipua.service.config import Settings
    from sipua.service.sessions import SessionService

__all__ = ["LiveStream", "StreamHub"]

log = logging.getLogger(__name__)

#: Stream ids remembered to refuse replays (oldest forgotten first).
USED_STREAMS_REMEMBERED = 100_000
#: How long ending a session waits for its streams to close.
END_WAIT = 5.0


class LiveStream(Protocol):
    """What the hub needs of a live connection (``endpoint.StreamConnection``)."""

    session_id: str
    protocol: StreamProtocol

    def end(self, reason: str, code: int = 1000) -> None: ...

    async def wait_closed(self) -> None: ...


AppFactory = Callable[[Any, Any, str], MediaApp]


class StreamHub:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionService,
        *,
        clock: MediaClock | None = None,
        app_factory: AppFactory | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._clock = clock
        #: ``(settings, session, participant_id) -> MediaApp``; None: the session's own app.
        self.app_factory = app_factory
        self._live: dict[str, set[LiveStream]] = {}
        self._live_keys: dict[tuple[str, str], LiveStream] = {}
        self._used: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.refused: dict[str, int] = {}

    # -- shared resources ---------------------------------------------------------------------

    @property
    def clock(self) -> MediaClock:
        """The media clock the participants tick on: the SIP engine's when set, else our own."""
        if self._clock is None:
            self._clock = MediaClock()
        return self._clock

    def participants(self, session_id: str) -> list[dict[str, Any]]:
        """The session's live streams, for ``GET /v1/sessions/{id}``."""
        out: list[dict[str, Any]] = []
        for conn in list(self._live.get(session_id, ())):
            participant = getattr(conn, "participant", None)
            if participant is None:
                continue
            stats = participant.stats()
            out.append(
                {
                    "participant_id": participant.id,
                    "provider": stats.get("provider") or str(conn.protocol),
                    "state": str(stats.get("state", "")),
                    "transport": "websocket",
                    "remote": getattr(conn, "_remote", None),
                    "codec": stats.get("codec"),
                    "duration_s": stats.get("duration_s"),
                    "stats": stats,
                }
            )
        return out

    def use_clock(self, clock: MediaClock) -> None:
        self._clock = clock

    def app_for(self, session: Any, participant_id: str) -> MediaApp:
        """A new instance of the session's media application for one participant."""
        if self.app_factory is not None:
            return self.app_factory(self.settings, session, participant_id)
        from sipua.service.media_backend import app_for_session  # late: it imports the bridge

        return app_for_session(self.settings, session, participant_id)

    # -- admission ------------------------------------------------------------------------------

    def admit(self, session_id: str, protocol: StreamProtocol) -> Any:
        """The session ``protocol`` may join; raises :class:`StreamRefused` otherwise.

        The token is checked first, so only its holder learns whether a session exists or has
        ended.
        """
        session = self.sessions.get(session_id)
        token = protocol.token or ""
        if (
            session is None
            or not token
            or not hmac.compare_digest(token.encode(), str(session.stream_token).encode())
        ):
            raise self._refuse(CLOSE_INVALID_TOKEN, "invalid-token")
        if not session.accepting_calls:
            raise self._refuse(CLOSE_ENDED, "session-ended", session)
        expires = stream_token_expiry(
            getattr(session, "created_at", None), self.settings.streams.token_ttl
        )
        if expires is not None and datetime.now(UTC) >= expires:
            raise self._refuse(CLOSE_INVALID_TOKEN, "token-expired", session)
        provider = protocol.provider
        if protocol.once_key and (provider, protocol.once_key) in self._used:
            raise self._refuse(CLOSE_IN_USE, "stream-reused", session)
        if protocol.live_key and (provider, protocol.live_key) in self._live_keys:
            raise self._refuse(CLOSE_IN_USE, "call-has-stream", session)
        limit = self.settings.sip.max_calls_per_session
        if len(self._live.get(session_id, ())) >= limit:
            raise self._refuse(CLOSE_TOO_MANY, "too-many-streams", session)
        return session

    def _refuse(self, code: int, reason: str, session: Any = None) -> StreamRefused:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return StreamRefused(code, reason, session=session)

    def register(self, stream: LiveStream) -> None:
        protocol = stream.protocol
        self._live.setdefault(stream.session_id, set()).add(stream)
        if protocol.live_key:
            self._live_keys[(protocol.provider, protocol.live_key)] = stream
        if protocol.once_key:
            self._used[(protocol.provider, protocol.once_key)] = None
            while len(self._used) > USED_STREAMS_REMEMBERED:
                self._used.popitem(last=False)

    def unregister(self, stream: LiveStream) -> None:
        streams = self._live.get(stream.session_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._live[stream.session_id]
        protocol = stream.protocol
        key = (protocol.provider, protocol.live_key or "")
        if protocol.live_key and self._live_keys.get(key) is stream:
            del self._live_keys[key]

    def streams_of(self, session_id: str) -> list[LiveStream]:
        return list(self._live.get(session_id, ()))

    def count(self, provider: str | None = None) -> int:
        return sum(
            1
            for streams in self._live.values()
            for s in streams
            if provider is None or s.protocol.provider == provider
        )

    # -- ending -----------------------------------------------------------------------------------

    async def on_session_ended(self, session: Any) -> None:
        """A :attr:`SessionService.on_ended` observer: close the session's streams."""
        await self.end_streams(session.id, "session-ended")

    async def end_streams(self, session_id: str, reason: str) -> int:
        streams = self.streams_of(session_id)
        for stream in streams:
            stream.end(reason)
        if streams:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in streams], timeout=END_WAIT
            )
        return len(streams)

    async def close_all(self, reason: str = "shutdown") -> None:
        """Close every live stream (``sipua serve`` shutting down)."""
        streams = [s for group in self._live.values() for s in group]
        for stream in streams:
            stream.end(reason)
        if streams:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in streams], timeout=END_WAIT
            )
