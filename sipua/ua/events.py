"""What happens to calls, for whoever listens (webhooks, metrics, logs, media apps)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallEvent:
    session_id: str
    call_id: str  # the SIP Call-ID
    leg_id: str  # our id for this participant
    transport: str
    remote: str  # host:port the call came from


@dataclass(frozen=True, slots=True)
class CallConnecting(CallEvent):
    """An INVITE for the session was accepted for processing (ringing)."""


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """The 2xx was ACKed: media flows."""

    codec: str | None = None
    secure: bool = False


@dataclass(frozen=True, slots=True)
class CallDisconnected(CallEvent):
    """A connected call ended (``reason``: remote-bye, local-bye, ack-timeout, session-ended …)."""

    reason: str = ""
    duration: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallFailed(CallEvent):
    """A call attempt ended before it was connected."""

    status: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DtmfReceived(CallEvent):
    digit: str = ""
    duration_ms: int = 0
    source: str = "rfc4733"  # or "sip-info"


class EventBus:
    """Synchronous fan-out; subscribers must not block (queue slow work themselves)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[CallEvent], None]] = []

    def subscribe(self, callback: Callable[[CallEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: CallEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not break calls
                log.exception("event subscriber failed on %s", type(event).__name__)
