"""Which media backend ``sipua serve`` gives call control."""

from __future__ import annotations

from sipua.ua.events import EventBus
from sipua.ua.media import HeldPortsBackend, MediaBackend

from .config import Settings


def build_media_backend(settings: Settings, bus: EventBus) -> MediaBackend:
    media = settings.media
    host = settings.sip.host
    return HeldPortsBackend(
        host, settings.resolved_public_host(), media.rtp_port_min, media.rtp_port_max
    )
