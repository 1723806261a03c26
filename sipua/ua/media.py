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

    def __init__(self, pair: Any, host: str, backend: HeldPortsBackend | None = None) -> None:
        self.pair = pair
        self.local_host = host
        self.local_port = pair.rtp_port
        self.params: RtpParameters | None = None
        self._backend = backend

    def start(self, params: RtpParameters) -> None:
        self.params = params

    def update(self, params: RtpParameters) -> None:
        self.params = params

    def close(self) -> None:
        pair, self.pair = self.pair, None
        if pair is None:
            return
        if self._backend is not None:
            self._backend.release(pair)
        else:
            pair.close()

    def stats(self) -> dict[str, Any]:
        return {}


class HeldPortsBackend:
    """Binds an RTP/RTCP port pair per leg and ignores what arrives (signalling-only runs).

    Nothing ever reads these sockets, so a pair given back at hang-up is kept bound (up to
    ``keep`` of them) and handed to the next call instead of being closed and bound anew:
    two socket(), bind() and close() calls fewer per call at high call rates.
    """

    def __init__(
        self,
        host: str,
        advertised_host: str,
        min_port: int = 10000,
        max_port: int = 20000,
        *,
        keep: int = 256,
    ) -> None:
        from sipua.media.ports import PortAllocator

        # Nothing reads these sockets: large receive buffers would only hold what is dropped.
        self.allocator = PortAllocator(host, min_port, max_port, receive_buffer=None)
        self.advertised_host = advertised_host
        self.keep = keep
        self._free: list[Any] = []

    def open_leg(self, session: Any, leg_id: str, on_event: Any = None) -> HeldPortsLeg:
        pair = self._free.pop() if self._free else self.allocator.allocate()
        return HeldPortsLeg(pair, self.advertised_host, self)

    def release(self, pair: Any) -> None:
        if len(self._free) < self.keep and not pair.closed:
            self._free.append(pair)
        else:
            pair.close()

    async def close(self) -> None:
        free, self._free = self._free, []
        for pair in free:
            pair.close()
