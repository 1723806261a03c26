"""The media engine the call layer holds: ports, the shared tick, live streams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .apps import MediaApp
from .clock import MediaClock
from .events import MediaEvent
from .ports import PortAllocator
from .stream import MediaStream


class MediaEngine:
    """Creates :class:`MediaStream` objects on ports from one range, all on one clock.

    ``host`` is the address RTP sockets bind to (``0.0.0.0``/``::`` for all);
    what goes in SDP ``c=`` is the call layer's choice.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        min_port: int = 10000,
        max_port: int = 20000,
        *,
        clock: MediaClock | None = None,
        **stream_defaults: Any,
    ) -> None:
        self.ports = PortAllocator(host, min_port, max_port)
        self.clock = clock or MediaClock()
        self.stream_defaults = stream_defaults
        self.streams: dict[str, MediaStream] = {}

    async def create_stream(
        self,
        *,
        app: MediaApp | None = None,
        on_event: Callable[[MediaEvent], None] | None = None,
        stream_id: str | None = None,
        **options: Any,
    ) -> MediaStream:
        """Allocate a port pair and listen on it; ``start()`` the result with the answer."""
        pair = self.ports.allocate()
        settings = {**self.stream_defaults, **options}
        stream = MediaStream(
            pair,
            clock=self.clock,
            app=app,
            on_event=on_event,
            stream_id=stream_id,
            on_closed=self._forget,
            **settings,
        )
        try:
            await stream.open()
        except BaseException:
            pair.close()
            raise
        self.streams[stream.stream_id] = stream
        return stream

    def _forget(self, stream: MediaStream) -> None:
        self.streams.pop(stream.stream_id, None)

    async def close(self) -> None:
        for stream in list(self.streams.values()):
            await stream.close()
        self.clock.stop()
