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


@dataclass(frozen=True, slots=True)
class TransferAccepted(CallEvent):
    """The peer accepted our REFER (a 2xx, or a first NOTIFY): it is calling ``target``."""

    target: str = ""


@dataclass(frozen=True, slots=True)
class TransferCompleted(CallEvent):
    """The peer reached ``target`` (a final 2xx in its NOTIFY); sipua hangs up its own leg."""

    target: str = ""
    status: int = 200


@dataclass(frozen=True, slots=True)
class TransferFailed(CallEvent):
    """The transfer to ``target`` did not happen; the call goes on unless it is what ended.

    ``status`` is the SIP status that decided it (the REFER's answer, the sipfrag's final
    status, 408 for a timeout, 503 when the REFER could not be sent, 0 when none);
    ``reason`` one of ``rejected``, ``target-failed``, ``timeout``,
    ``subscription-terminated``, ``bad-notify``, ``transport-error``, ``call-ended``;
    ``detail`` the reason phrase or an explanation.
    """

    target: str = ""
    status: int = 0
    reason: str = ""
    detail: str = ""


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
