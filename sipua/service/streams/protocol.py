"""What the stream endpoint asks of each provider's protocol, and how a stream is refused.

A provider protocol (Twilio, Telnyx, browser) turns the peer's messages into calls on the
participant (audio, DTMF, marks, the end of the stream) and the participant's output into the
provider's messages. The endpoint (``endpoint.py``) owns the socket, the session, events and
metrics; protocols never touch the socket.

WebSocket close codes (RFC 6455 §7.4.2 leaves 4000-4999 to applications); the numbers echo the
HTTP statuses they mean:

========  ==========================================================================
1000      normal end (the peer stopped, the session ended, the application hung up)
1011      internal error
4400      protocol error: no usable ``start``, bad JSON, unsupported audio format
4401      missing or invalid stream token (or an invalid ``X-Twilio-Signature``)
4403      the session has ended or does not accept calls (the token has expired)
4408      no ``start`` message within ``streams.start_timeout``
4409      the stream was already used: its stream id connected before, or its call has a
          live stream
4429      the session already has ``sip.max_calls_per_session`` live participants
========  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .wire import WireFormat

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_ENDED",
    "CLOSE_INTERNAL",
    "CLOSE_INVALID_TOKEN",
    "CLOSE_IN_USE",
    "CLOSE_NORMAL",
    "CLOSE_TIMEOUT",
    "CLOSE_TOO_MANY",
    "StreamControl",
    "StreamProtocol",
    "StreamRefused",
]

CLOSE_NORMAL = 1000
CLOSE_INTERNAL = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_INVALID_TOKEN = 4401
CLOSE_ENDED = 4403
CLOSE_TIMEOUT = 4408
CLOSE_IN_USE = 4409
CLOSE_TOO_MANY = 4429


class StreamRefused(Exception):
    """A stream is refused: close the WebSocket with ``code`` and ``reason``.

    ``reason`` is a short machine-readable word (``invalid-token``, ``session-ended`` …) used in
    the close frame, the log and, once the token has been verified, a
    ``session.provider.failed`` event.
    """

    def __init__(self, code: int, reason: str, detail: str = "", *, session: Any = None) -> None:
        super().__init__(f"{code} {reason}" + (f": {detail}" if detail else ""))
        self.code = code
        self.reason = reason
        self.detail = detail
        #: The session, when the refusal came after its token was verified (else None).
        self.session = session


class StreamControl:
    """What a protocol may do to its stream besides feeding the participant.

    Implemented by the endpoint's connection.
    """

    def end(self, reason: str, code: int = CLOSE_NORMAL) -> None:
        """Close the stream (after the messages already queued)."""
        raise NotImplementedError

    def dtmf(self, digit: str, duration_ms: int = 0) -> None:
        """The peer pressed a key: tell the application and publish ``session.dtmf``."""
        raise NotImplementedError

    def warn(self, what: str, detail: Any = None) -> None:
        """Something the peer reported or did wrong that does not end the stream."""
        raise NotImplementedError


class StreamProtocol:
    """One provider's side of a stream connection. Subclasses fill in the identity fields
    from the peer's first messages, then translate messages both ways."""

    provider: ClassVar[str] = "stream"

    #: The session's stream token as the peer presented it (None: not presented).
    token: str | None = None
    #: The provider's ids of this participant, for events (``call_sid``, ``stream_sid`` …).
    provider_ids: dict[str, str]
    #: The participant's id in events and for the application.
    participant_id: str = ""
    #: A key that may have only one live stream at a time (the provider's call id).
    live_key: str | None = None
    #: A key that may connect only once (the provider's stream id).
    once_key: str | None = None
    inbound_format: WireFormat
    outbound_format: WireFormat
    #: A refusal found while reading the peer's first messages (an unsupported audio format),
    #: raised only after the token is checked, so the token's holder gets an event about it.
    refusal: StreamRefused | None = None

    def event_data(self) -> dict[str, Any]:
        """Extra ``data`` for this participant's events (codec, tracks …)."""
        return {"codec": self.outbound_format.name}

    # -- to the peer ----------------------------------------------------------------------------

    def opening_messages(self) -> list[str | bytes]:
        """Sent once the stream is admitted (the browser's ``ready``)."""
        return []

    def media_message(self, payload: bytes) -> str | bytes:
        raise NotImplementedError

    def clear_message(self) -> str | bytes | None:
        return None

    def mark_message(self, name: str) -> str | bytes | None:
        return None

    def dtmf_message(self, digit: str, duration_ms: int) -> str | bytes | None:
        """None: the provider cannot take DTMF from us."""
        return None

    def closing_messages(self, reason: str) -> list[str | bytes]:
        """Sent before we close the socket (the browser's ``ended``)."""
        return []

    # -- from the peer --------------------------------------------------------------------------

    def on_text(self, message: Mapping[str, Any], participant: Any, control: StreamControl) -> None:
        """One JSON message from the peer."""

    def on_bytes(self, data: bytes, participant: Any, control: StreamControl) -> None:
        """One binary message from the peer (browsers send audio this way)."""

    def on_close(self, participant: Any) -> None:
        """The stream is ending: deliver whatever is still held (reordering windows)."""

    def stats(self) -> dict[str, Any]:
        """Protocol counters merged into the participant's stats."""
        return {}
