"""The media backend ``sipua serve`` gives call control: the media engine, with each session's app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sipua.media import MediaEngine, get_app
from sipua.media.apps import MediaApp
from sipua.sip.rtp_params import RtpParameters
from sipua.ua.events import EventBus
from sipua.ua.media import HeldPortsBackend, MediaBackend

from . import bridge as _bridge  # noqa: F401  (registers the "bridge" media app)
from .config import Settings

log = logging.getLogger(__name__)


class MediaAppUnavailable(OSError):
    """The session's media application cannot start (its ``play_file`` is missing, say).

    It says what the call should be told (DESIGN §3): a configuration fault is not a lack of
    ports, so the INVITE gets 500 rather than 503 with a Retry-After the caller would obey.
    """

    sip_status = 500
    failure_reason = "media-app-unavailable"


def app_for_session(settings: Settings, session: Any, leg_id: str) -> MediaApp:
    """A new instance of the media application ``session`` asks for, for one participant.

    Used for SIP legs here and for WebSocket stream participants (``sipua.service.streams``).
    """
    media = getattr(session, "media", None)
    name = getattr(media, "app", None) or settings.media.default_app
    name = getattr(name, "value", name)
    data_dir = Path(settings.data_dir)
    if name == "record":
        return get_app("record", directory=data_dir / "recordings" / session.id)
    if name == "play":
        play_file = getattr(media, "play_file", None)
        play_tone = getattr(media, "play_tone", None)
        if play_file:
            source = str(data_dir / "media" / play_file)
        else:
            source = f"tone:{play_tone or 440}"
        return get_app("play", source=source)
    if name == "conference":
        # One app per participant, all bound to the session's mixer by its id.
        return get_app("conference", session_id=session.id)
    if name == "bridge":
        return get_app(
            "bridge", url=getattr(media, "bridge_url", None), session=session, leg_id=leg_id
        )
    return get_app(name)


class EngineLeg:
    """One participant's :class:`~sipua.media.MediaStream`, as call control sees it."""

    def __init__(self, stream: Any, advertised_host: str, backend: EngineBackend) -> None:
        self.stream = stream
        self.local_host = advertised_host
        self.local_port = stream.local_rtp_port
        self._backend = backend

    def start(self, params: RtpParameters) -> None:
        self.stream.start(params)

    def update(self, params: RtpParameters) -> None:
        self.stream.update(params)

    def stats(self) -> dict[str, Any]:
        return self.stream.stats()

    def dtmf(self, digit: str, duration_ms: int, source: str) -> None:
        self.stream.signalled_dtmf(digit, duration_ms, source)

    def close(self) -> None:
        self._backend._close_later(self.stream)


class EngineBackend:
    """Opens a media stream per call leg, with the application its session asks for."""

    def __init__(self, settings: Settings, engine: MediaEngine, advertised_host: str) -> None:
        self.settings = settings
        self.engine = engine
        self.advertised_host = advertised_host
        self._closing: set[asyncio.Task] = set()

    def app_for(self, session: Any, leg_id: str) -> MediaApp:
        return app_for_session(self.settings, session, leg_id)

    async def open_leg(self, session: Any, leg_id: str, on_event: Any = None) -> EngineLeg:
        try:
            app = self.app_for(session, leg_id)
        except (OSError, ValueError, KeyError) as e:
            raise MediaAppUnavailable(f"media app of session {session.id}: {e}") from e
        stream = await self.engine.create_stream(
            app=app,
            on_event=on_event,
            stream_id=leg_id,
            symmetric_rtp=self.settings.media.symmetric_rtp,
        )
        return EngineLeg(stream, self.advertised_host, self)

    def _close_later(self, stream: Any) -> None:
        task = asyncio.get_running_loop().create_task(stream.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=2.0)
        await self.engine.close()


def build_media_backend(settings: Settings, bus: EventBus) -> MediaBackend:
    media = settings.media
    host = settings.sip.host
    advertised = settings.resolved_public_host()
    if not media.enabled:
        return HeldPortsBackend(host, advertised, media.rtp_port_min, media.rtp_port_max)
    engine = MediaEngine(host, media.rtp_port_min, media.rtp_port_max)
    return EngineBackend(settings, engine, advertised)
