"""What call control needs from the media layer, and a backend that only holds ports.

Call control opens a :class:`MediaLeg` per participant before it answers (its
address goes in the SDP), starts it with the negotiated
:class:`~sipua.sip.rtp_params.RtpParameters` when the call is confirmed,
updates it on re-INVITE and closes it at hang-up.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from sipua.sip.rtp_params import RtpParameters


class MediaLeg(Protocol):
    local_host: str
    local_port: int

    def start(self, params: RtpParameters) -> None: ...

    def update(self, params: RtpParameters) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    # Optional: ``dtmf(digit, duration_ms, source)`` hands a key press that came in signalling
    # (SIP INFO) to the leg's media application.


class MediaBackend(Protocol):
    def open_leg(
        self, session: Any, leg_id: str, on_event: Any = None
    ) -> MediaLeg | Awaitable[MediaLeg]:
        """Reserve ports for a leg (at once, or as an awaitable when sockets open asynchronously).

        Raise (or have the awaitable raise) OSError when no ports are free: the UAS answers 503.
        ``on_event`` receives the leg's media events (DTMF …).
        """
        ...

    async def close(self) -> None: ...


class HeldPortsLeg:
    """A leg whose ports are bound (so the SDP is truthful) but whose media is not processed."""

    def __init__(self, pair: Any, host: str) -> None:
        self.pair = pair
        self.local_host = host
        self.local_port = pair.rtp_port
        self.params: RtpParameters | None = None

    def start(self, params: RtpParameters) -> None:
        self.params = params

    def update(self, params: RtpParameters) -> None:
        self.params = params

    def close(self) -> None:
        self.pair.close()

    def stats(self) -> dict[str, Any]:
        return {}


class HeldPortsBackend:
    """Binds an RTP/RTCP port pair per leg and ignores what arrives (signalling-only runs)."""

    def __init__(
        self, host: str, advertised_host: str, min_port: int = 10000, max_port: int = 20000
    ) -> None:
        from sipua.media.ports import PortAllocator

        # Nothing reads these sockets: large receive buffers would only hold what is dropped.
        self.allocator = PortAllocator(host, min_port, max_port, receive_buffer=None)
        self.advertised_host = advertised_host

    def open_leg(self, session: Any, leg_id: str, on_event: Any = None) -> HeldPortsLeg:
        return HeldPortsLeg(self.allocator.allocate(), self.advertised_host)

    async def close(self) -> None:
        return None
