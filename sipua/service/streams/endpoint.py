"""The media stream WebSocket endpoint, ``/v1/streams/{session_id}``.

One URL for every kind of stream; the kind is decided as follows:

1. a ``provider`` query parameter (``twilio``, ``telnyx``, ``browser``) when present;
2. else a ``token`` query parameter means a browser (Twilio forbids query strings, and the
   TeXML helper passes the token as a parameter; a Telnyx URL with ``?token=`` must also say
   ``&provider=telnyx``);
3. else the peer is a telephony provider, which speaks first: its ``start`` message says which
   (a ``provider`` custom parameter, as the TwiML/TeXML helpers add, or the message's shape:
   ``streamSid`` is Twilio, ``stream_id`` is Telnyx).

Then the token is checked (:meth:`StreamHub.admit`), the session's media application is started
with a :class:`~.participant.WebSocketParticipant`, and messages flow until the peer stops, the
socket closes, the application hangs up or the session ends. The participant is reported like a
SIP call: ``session.provider.connecting``/``connected``/``disconnected`` (with stats) or
``failed``, ``session.dtmf``, and ``sipua_stream_connections_*`` metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from sipua.service.store import StoreError

from .browser import BrowserStream
from .hub import StreamHub
from .participant import WebSocketParticipant
from .protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_INTERNAL,
    CLOSE_INVALID_TOKEN,
    CLOSE_NORMAL,
    CLOSE_TIMEOUT,
    StreamControl,
    StreamProtocol,
    StreamRefused,
)
from .signature import valid_twilio_signature
from .telnyx import AUTH_TOKEN_FIELD, TelnyxStream
from .twilio import TwilioStream
from .wire import WireDecoder, WireEncoder

__all__ = ["StreamConnection", "streams_router"]

log = logging.getLogger("sipua.streams")

PROVIDERS = ("twilio", "telnyx", "browser")
#: Messages a provider may send before ``start`` (``connected``, early media …).
MAX_BEFORE_START = 50
#: Outgoing messages held for a slow peer before audio is dropped (~10 s of 20 ms frames).
MAX_OUTBOX = 500
#: How long a peer has to answer our close frame before we stop reading.
CLOSE_WAIT = 2.0
_CLOSE = object()


def streams_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/streams/{session_id}")
    async def media_stream(websocket: WebSocket, session_id: str) -> None:
        await serve_stream(websocket, session_id)

    return router


def _context(session_id: str, provider: str, websocket: WebSocket, **more: Any) -> dict[str, Any]:
    client = websocket.client
    peer = f"{client.host}:{client.port}" if client else None
    return {
        "session_id": session_id,
        "provider": provider,
        "transport": "websocket",
        "peer": peer,
        **more,
    }


async def serve_stream(websocket: WebSocket, session_id: str) -> None:
    """Run one stream connection to its end (the route's body)."""
    hub: StreamHub = websocket.app.state.streams
    await websocket.accept()
    query = dict(websocket.query_params)
    provider_hint = query.get("provider", "").lower() or ("browser" if "token" in query else "")
    protocol: StreamProtocol | None = None
    try:
        protocol = await _negotiate(websocket, session_id, query, provider_hint, hub)
        if protocol is None:
            return  # the peer went away before saying anything useful
        _check_signature(websocket, session_id, protocol, hub)
        session = hub.admit(session_id, protocol)
        if protocol.refusal is not None:
            protocol.refusal.session = session
            raise protocol.refusal
    except StreamRefused as refusal:
        provider = protocol.provider if protocol is not None else (provider_hint or "unknown")
        log.warning(
            "stream refused: %s %s%s",
            refusal.code,
            refusal.reason,
            f" ({refusal.detail})" if refusal.detail else "",
            extra=_context(session_id, provider, websocket),
        )
        if refusal.session is not None and protocol is not None:
            # Only for the token's holder: strangers must not fill a customer's event log.
            _publish_failed(websocket, session_id, protocol, refusal.reason)
        await _close(websocket, refusal.code, refusal.reason)
        return
    except StoreError:
        log.error("session store failed", extra={"session_id": session_id})
        await _close(websocket, CLOSE_INTERNAL, "store-unavailable")
        return
    connection = StreamConnection(websocket, hub, session, protocol)
    await connection.run()


async def _negotiate(
    websocket: WebSocket,
    session_id: str,
    query: Mapping[str, str],
    provider: str,
    hub: StreamHub,
) -> StreamProtocol | None:
    if provider and provider not in PROVIDERS:
        raise StreamRefused(CLOSE_BAD_REQUEST, "unknown-provider", provider)
    if provider == "browser":
        return BrowserStream(session_id, query)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hub.settings.streams.start_timeout
    connected: Mapping[str, Any] | None = None
    for _ in range(MAX_BEFORE_START):
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                message = await websocket.receive()
        except TimeoutError:
            raise StreamRefused(CLOSE_TIMEOUT, "no-start") from None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-message", "binary message before start")
        try:
            data = json.loads(text)
        except ValueError:
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-message", "not JSON") from None
        if not isinstance(data, dict):
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-message", "not a JSON object")
        event = data.get("event")
        if event == "connected":
            connected = data
        elif event == "start":
            kind = provider or _provider_of(data)
            if kind == "twilio":
                return TwilioStream(data)
            if kind == "telnyx":
                return TelnyxStream(
                    data,
                    query=query,
                    connected=connected,
                    auth_header=websocket.headers.get(AUTH_TOKEN_FIELD),
                )
            raise StreamRefused(CLOSE_BAD_REQUEST, "unknown-provider", str(kind or "?"))
        # Anything else before start (early media, unknown events) is not for us yet.
    raise StreamRefused(CLOSE_BAD_REQUEST, "no-start", "too many messages before start")


def _provider_of(start: Mapping[str, Any]) -> str | None:
    body = start.get("start")
    body = body if isinstance(body, Mapping) else {}
    for key in ("customParameters", "custom_parameters"):
        params = body.get(key)
        if isinstance(params, Mapping):
            named = str(params.get("provider", "")).lower()
            if named in ("twilio", "telnyx"):
                return named
    if "streamSid" in start or "streamSid" in body:
        return "twilio"
    if "stream_id" in start or "call_control_id" in body:
        return "telnyx"
    return None


def _check_signature(
    websocket: WebSocket, session_id: str, protocol: StreamProtocol, hub: StreamHub
) -> None:
    auth_token = hub.settings.twilio.auth_token
    if protocol.provider != "twilio" or not auth_token:
        return
    signature = websocket.headers.get("x-twilio-signature", "")
    query = websocket.url.query
    public = hub.sessions.endpoints.stream_url(session_id) + (f"?{query}" if query else "")
    if not valid_twilio_signature(auth_token, signature, [public, str(websocket.url)]):
        raise StreamRefused(CLOSE_INVALID_TOKEN, "invalid-signature")


def _publish_failed(
    websocket: WebSocket, session_id: str, protocol: StreamProtocol, reason: str
) -> None:
    events = getattr(websocket.app.state, "events", None)
    if events is None:
        return
    try:
        events.publish_provider_event(
            session_id,
            protocol.provider,
            protocol.provider_ids,
            "failed",
            {"transport": "websocket", "remote": _remote(websocket), "reason": reason},
            participant_id=protocol.participant_id,
        )
    except Exception:
        log.exception("could not publish a stream event", extra={"session_id": session_id})


def _remote(websocket: WebSocket) -> str | None:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else None


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(code, reason)


class StreamConnection(StreamControl):
    """One admitted stream: its participant, its outgoing messages, its events."""

    def __init__(
        self, websocket: WebSocket, hub: StreamHub, session: Any, protocol: StreamProtocol
    ) -> None:
        self.websocket = websocket
        self.hub = hub
        self.session = session
        self.session_id: str = session.id
        self.protocol = protocol
        state = websocket.app.state
        self.events = getattr(state, "events", None)
        self.metrics = getattr(state, "metrics", None)
        self.participant: WebSocketParticipant | None = None
        self.end_reason: str | None = None
        self.close_code = CLOSE_NORMAL
        self.send_drops = 0
        self.warnings = 0
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._close_queued = False
        self._metered = False  # stream_connected() was counted
        self._reader_task: asyncio.Task | None = None
        self._closed = asyncio.Event()
        self._connected_at: float | None = None
        self._remote = _remote(websocket)
        self._log_extra = _context(
            self.session_id,
            protocol.provider,
            websocket,
            call_id=protocol.provider_ids.get(
                "call_sid", protocol.provider_ids.get("call_control_id")
            ),
            leg_id=protocol.participant_id,
        )

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        protocol = self.protocol
        self.hub.register(self)
        writer = asyncio.get_running_loop().create_task(self._write_loop())
        connected = False
        try:
            self._publish("connecting", {"transport": "websocket", "remote": self._remote})
            app = self.hub.app_for(self.session, protocol.participant_id)
            participant = self.participant = WebSocketParticipant(
                protocol.participant_id,
                app,
                self.hub.clock,
                self,
                encoder=WireEncoder(protocol.outbound_format, app.sample_rate),
                decoder=WireDecoder(protocol.inbound_format, app.sample_rate),
                send_ahead_ms=self.hub.settings.streams.send_ahead_ms,
                provider=protocol.provider,
            )
            if self.metrics is not None:
                self.metrics.stream_connected(protocol.provider)
                self._metered = True
            for message in protocol.opening_messages():
                self._enqueue(message)
            participant.start()
            connected = True
            self._connected_at = time.monotonic()
            self._publish(
                "connected",
                {"transport": "websocket", "remote": self._remote, **protocol.event_data()},
            )
            log.info("stream connected", extra=self._log_extra)
            reader = self._reader_task = asyncio.get_running_loop().create_task(
                self._read_loop(participant)
            )
            try:
                await asyncio.wait([reader])
            finally:
                if not reader.done():
                    reader.cancel()  # we are being cancelled (shutdown)
            if not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
        except asyncio.CancelledError:
            self.end_reason = self.end_reason or "shutdown"
            raise
        except Exception:
            log.exception("stream failed", extra=self._log_extra)
            self.end_reason = self.end_reason or "error"
            self.close_code = CLOSE_INTERNAL
        finally:
            await self._finish(writer, connected)

    async def _read_loop(self, participant: WebSocketParticipant) -> None:
        protocol = self.protocol
        receive = self.websocket.receive
        while self.end_reason is None:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.end_reason = self.end_reason or "remote-closed"
                return
            text = message.get("text")
            if text is not None:
                try:
                    data = json.loads(text)
                except ValueError:
                    self.warn("bad-json")
                    continue
                if isinstance(data, dict):
                    protocol.on_text(data, participant, self)
                else:
                    self.warn("bad-message")
                continue
            data = message.get("bytes")
            if data is not None:
                protocol.on_bytes(data, participant, self)

    async def _finish(self, writer: asyncio.Task, connected: bool) -> None:
        reason = self.end_reason or "remote-closed"
        participant = self.participant
        try:
            if participant is not None:
                with contextlib.suppress(Exception):
                    self.protocol.on_close(participant)
                participant.close()
            if not writer.done():
                self._queue_close(reason)
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_WAIT)
            if not writer.done():
                writer.cancel()
        finally:
            self.hub.unregister(self)
            if connected:
                stats = participant.stats() if participant is not None else {}
                stats.update(self.protocol.stats())
                stats["send_drops"] = self.send_drops
                duration = (
                    time.monotonic() - self._connected_at if self._connected_at is not None else 0
                )
                self._publish(
                    "disconnected",
                    {
                        "transport": "websocket",
                        "remote": self._remote,
                        "reason": reason,
                        "duration_s": round(duration, 3),
                        "stats": stats,  # -> "quality" (the figures every participant has)
                        "stream": stats,  # everything: frames in/out, marks, reordering …
                    },
                )
                log.info("stream disconnected: %s", reason, extra=self._log_extra)
            else:
                self._publish(
                    "failed", {"transport": "websocket", "remote": self._remote, "reason": reason}
                )
            if self._metered and self.metrics is not None:
                self.metrics.stream_disconnected(self.protocol.provider)
            self._closed.set()

    async def _write_loop(self) -> None:
        websocket = self.websocket
        try:
            while True:
                message = await self._outbox.get()
                if message is _CLOSE:
                    break
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The peer is gone; the reader will see it (or already has).
            self.end_reason = self.end_reason or "remote-closed"
            return
        await _close(websocket, self.close_code, self.end_reason or "")

    def _enqueue(self, message: Any, *, media: bool = False) -> None:
        if media and self._outbox.qsize() >= MAX_OUTBOX:
            self.send_drops += 1
            return
        self._outbox.put_nowait(message)

    # -- StreamControl (for protocols) ------------------------------------------------------------

    def end(self, reason: str, code: int = CLOSE_NORMAL) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.close_code = code
        # Unblock the reader: we close now; the peer's close (or our timeout) ends the read.
        task = self._reader_task
        if task is not None and task is not asyncio.current_task():
            asyncio.get_running_loop().call_later(CLOSE_WAIT, _cancel_if_running, task)
        self._queue_close(reason)

    def _queue_close(self, reason: str) -> None:
        if self._close_queued:
            return
        self._close_queued = True
        for message in self.protocol.closing_messages(reason):
            self._enqueue(message)
        self._outbox.put_nowait(_CLOSE)

    def dtmf(self, digit: str, duration_ms: int = 0) -> None:
        if self.participant is None:
            return
        self.participant.receive_dtmf(digit, duration_ms)
        if self.events is not None:
            try:
                self.events.publish_dtmf(
                    self.session_id,
                    digit,
                    duration_ms,
                    self.protocol.provider,
                    provider_type=self.protocol.provider,
                    provider_ids=self.protocol.provider_ids,
                    participant_id=self.protocol.participant_id,
                )
            except Exception:
                log.exception("could not publish DTMF", extra=self._log_extra)

    def warn(self, what: str, detail: Any = None) -> None:
        self.warnings += 1
        log.warning("stream: %s %s", what, "" if detail is None else detail, extra=self._log_extra)

    # -- StreamSink (for the participant) ---------------------------------------------------------

    def send_media(self, payload: bytes) -> None:
        self._enqueue(self.protocol.media_message(payload), media=True)

    def send_clear(self) -> None:
        message = self.protocol.clear_message()
        if message is not None:
            self._enqueue(message)

    def send_mark(self, name: str) -> None:
        message = self.protocol.mark_message(name)
        if message is not None:
            self._enqueue(message)

    def send_dtmf(self, digit: str, duration_ms: int) -> bool:
        message = self.protocol.dtmf_message(digit, duration_ms)
        if message is None:
            return False
        self._enqueue(message)
        return True

    def hangup(self, reason: str) -> None:
        self.end(reason)

    # -- for the hub --------------------------------------------------------------------------------

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _publish(self, status: str, data: dict[str, Any]) -> None:
        if self.events is None:
            return
        try:
            self.events.publish_provider_event(
                self.session_id,
                self.protocol.provider,
                self.protocol.provider_ids,
                status,
                data,
                participant_id=self.protocol.participant_id,
            )
        except Exception:
            log.exception("could not publish a stream event", extra=self._log_extra)


def _cancel_if_running(task: asyncio.Task) -> None:
    if not task.done():
        task.cancel()
