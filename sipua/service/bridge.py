"""The ``bridge`` media application: each participant's audio to the customer's backend over a
WebSocket (``media.bridge_url``), and the backend's audio back into the call.

One WebSocket per participant (a conference session has one per participant, each tagged with
its ``participant_id``). By default sipua plays Twilio towards the backend, so a backend written
for Twilio Media Streams (Pipecat, Vocode, …) works unchanged:

- sipua sends ``connected``, ``start`` (a fresh ``streamSid``; ``callSid`` = the participant id;
  ``customParameters`` with ``session_id``, ``participant_id``, ``mode``, languages, metadata;
  ``mediaFormat`` μ-law 8 kHz mono), then ``media`` every 20 ms, ``dtmf`` when the participant
  presses a key, ``mark`` when audio the backend sent before a mark has been played, and
  ``stop`` when the participant leaves;
- the backend sends ``media`` (base64 μ-law, any length: it is queued and played in real time),
  ``mark`` (answered once the audio before it has been played) and ``clear`` (drop the queued
  audio: barge-in; pending marks are answered at once, as Twilio does).

``format = "l16"`` (``bridge.format`` in the config, or a session's ``media.bridge_format`` when
the model has it) sends and expects 16-bit little-endian PCM at 16 kHz instead, with
``mediaFormat`` ``{"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}``.

A backend that cannot be reached, or that closes, is reconnected at most
``bridge.reconnect_attempts`` times (each reconnection is a new ``connected``/``start`` with a new
``streamSid``). Then nothing ends silently: ``session.bridge.disconnected`` is published with the
reason, and the fallback applies: ``hangup`` the participant, ``continue`` (silence) or
``echo``. Each successful connection publishes ``session.bridge.connected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sipua.media.apps import MediaApp, Participant, register_app
from sipua.media.events import DtmfReceived
from sipua.media.frame import AudioFrame

from .streams import twilio as wire_twilio
from .streams.wire import WireDecoder, WireEncoder, WireFormat

__all__ = ["BridgeApp", "BridgeLink", "configure_bridge"]

log = logging.getLogger("sipua.bridge")

FORMATS = ("twilio", "l16")
FALLBACKS = ("hangup", "continue", "echo")
MULAW_8K = wire_twilio.MULAW_8K
L16_16K = WireFormat("L16", 16000, "little")
#: Messages held for the backend while it is slow or (re)connecting (oldest audio dropped).
MAX_PENDING = 250  # 5 s of 20 ms frames
MAX_PENDING_CONNECTING = 50  # 1 s: what a backend gets of the audio before it answered
MAX_MESSAGE = 4 * 1024 * 1024
STOP_WAIT = 2.0

HangupLeg = Callable[[str, str, str], bool]


@dataclass
class BridgeContext:
    """What ``sipua serve`` gives every bridge (set with :func:`configure_bridge`)."""

    events: Any = None  # sipua.service.events.EventPublisher
    hangup_leg: HangupLeg | None = None  # (session_id, leg_id, reason) -> found
    format: str = "twilio"
    fallback: str = "hangup"
    connect_timeout: float = 5.0
    reconnect_attempts: int = 2
    reconnect_backoff: float = 0.5
    tasks: set[asyncio.Task] = field(default_factory=set)


_context = BridgeContext()


def configure_bridge(
    *, events: Any = None, hangup_leg: HangupLeg | None = None, settings: Any = None
) -> None:
    """Give bridges the event publisher, a way to hang up SIP legs, and ``[bridge]`` settings."""
    _context.events = events
    _context.hangup_leg = hangup_leg
    bridge = getattr(settings, "bridge", None)
    if bridge is not None:
        _context.format = bridge.format
        _context.fallback = bridge.fallback
        _context.connect_timeout = bridge.connect_timeout
        _context.reconnect_attempts = bridge.reconnect_attempts
        _context.reconnect_backoff = bridge.reconnect_backoff


def _scrub(url: str) -> str:
    """The URL without credentials, query or fragment (they may carry secrets): for events."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BridgeApp(MediaApp):
    """Streams each participant to ``url`` (see the module docstring)."""

    name = "bridge"
    needs_audio = True

    def __init__(
        self,
        *,
        url: str | None = None,
        session: Any = None,
        leg_id: str | None = None,
        format: str | None = None,
        fallback: str | None = None,
        events: Any = None,
        hangup_leg: HangupLeg | None = None,
        connect_timeout: float | None = None,
        reconnect_attempts: int | None = None,
        reconnect_backoff: float | None = None,
    ) -> None:
        if not url:
            raise ValueError("the bridge app needs a bridge_url")
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError("bridge_url must be a ws:// or wss:// URL")
        ctx = _context
        self.url = url
        self.session = session
        self.session_id = str(getattr(session, "id", "") or "")
        self.leg_id = leg_id
        media = getattr(session, "media", None)
        fmt = format or getattr(media, "bridge_format", None) or ctx.format
        fmt = str(getattr(fmt, "value", fmt)).lower()
        if fmt not in FORMATS:
            raise ValueError(f"unknown bridge format {fmt!r}; known: {', '.join(FORMATS)}")
        self.format = fmt
        self.wire = MULAW_8K if fmt == "twilio" else L16_16K
        self.sample_rate = self.wire.sample_rate
        self.fallback = fallback or ctx.fallback
        if self.fallback not in FALLBACKS:
            raise ValueError(f"unknown bridge fallback {self.fallback!r}")
        self.events = events if events is not None else ctx.events
        self.hangup_leg = hangup_leg if hangup_leg is not None else ctx.hangup_leg
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else ctx.connect_timeout
        )
        self.reconnect_attempts = (
            reconnect_attempts if reconnect_attempts is not None else ctx.reconnect_attempts
        )
        self.reconnect_backoff = (
            reconnect_backoff if reconnect_backoff is not None else ctx.reconnect_backoff
        )
        self.links: dict[str, BridgeLink] = {}

    def media_format(self) -> dict[str, Any]:
        if self.format == "twilio":
            return {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        return {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}

    def custom_parameters(self, participant: Participant) -> dict[str, str]:
        session = self.session
        params = {"session_id": self.session_id, "participant_id": participant.id}
        for name in ("mode", "source_language", "target_language"):
            value = getattr(session, name, None)
            if value is not None:
                params[name] = str(getattr(value, "value", value))
        provider = getattr(participant, "provider", None)
        params["provider"] = str(provider) if provider else "sip"
        metadata = getattr(session, "metadata", None)
        if metadata:
            params["metadata"] = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
        return params

    # -- hooks --------------------------------------------------------------------------------

    def on_start(self, participant: Participant) -> None:
        link = self.links.get(participant.id)
        if link is None:
            link = self.links[participant.id] = BridgeLink(self, participant)
            link.start()

    def on_audio(self, participant: Participant, frame: AudioFrame) -> None:
        link = self.links.get(participant.id)
        if link is not None:
            link.audio(frame.pcm)

    def on_dtmf(self, participant: Participant, event: DtmfReceived) -> None:
        link = self.links.get(participant.id)
        if link is not None:
            link.dtmf(event.digit)

    def on_tick(self, participant: Participant) -> None:
        link = self.links.get(participant.id)
        if link is not None:
            link.tick()

    def on_hangup(self, participant: Participant) -> None:
        link = self.links.pop(participant.id, None)
        if link is not None:
            link.stop()


class BridgeLink:
    """One participant's WebSocket to the backend, across reconnections."""

    def __init__(self, app: BridgeApp, participant: Participant) -> None:
        self.app = app
        self.participant = participant
        self.state = "created"  # connecting -> open -> (reconnecting -> open)* -> closed | failed
        self.stream_sid = ""
        self.connections = 0
        self.fallback_active: str | None = None
        self.counters: dict[str, int] = {
            "frames_sent": 0,
            "frames_dropped": 0,
            "media_received": 0,
            "bad_messages": 0,
            "marks_answered": 0,
            "clears": 0,
            "dtmf_sent": 0,
        }
        self._encoder = WireEncoder(app.wire, app.sample_rate)
        self._decoder = WireDecoder(app.wire, app.sample_rate)
        self._pending: deque[tuple[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._queued_samples = 0  # backend audio handed to the participant, ever
        self._marks: deque[tuple[int, str]] = deque()
        self._connected_at: float | None = None
        self._log = {
            "session_id": app.session_id,
            "leg_id": participant.id,
            "peer": _scrub(app.url),
        }

    # -- from the app hooks ---------------------------------------------------------------------

    def start(self) -> None:
        self.state = "connecting"
        self._task = asyncio.get_running_loop().create_task(self._run())
        _context.tasks.add(self._task)
        self._task.add_done_callback(_context.tasks.discard)

    def audio(self, pcm: bytes) -> None:
        if self.fallback_active == "echo":
            self.participant.send_audio(pcm)
            return
        if self.state in ("closed", "failed"):
            return
        for payload in self._encoder.encode(pcm):
            self._push(("media", payload))

    def dtmf(self, digit: str) -> None:
        if self.state in ("closed", "failed"):
            return
        self._push(("dtmf", digit))

    def tick(self) -> None:
        if not self._marks:
            return
        rate = self.app.sample_rate
        played = self._queued_samples - int(self.participant.queued_ms * rate / 1000)
        while self._marks and self._marks[0][0] <= played:
            _, name = self._marks.popleft()
            self.counters["marks_answered"] += 1
            self._push(("mark", name))

    def stop(self) -> None:
        """The participant left: send ``stop`` and close (bounded), or just stop trying."""
        self._stopping = True
        if self.state in ("closed", "failed"):
            return
        self._push(("stop", None))

    def _push(self, item: tuple[str, Any]) -> None:
        limit = MAX_PENDING if self.state == "open" else MAX_PENDING_CONNECTING
        if item[0] == "media":
            while len(self._pending) >= limit:
                dropped = self._drop_oldest_media()
                if not dropped:
                    break
            if len(self._pending) >= limit:
                self.counters["frames_dropped"] += 1
                return
        self._pending.append(item)
        self._wake.set()

    def _drop_oldest_media(self) -> bool:
        for index, (kind, _) in enumerate(self._pending):
            if kind == "media":
                del self._pending[index]
                self.counters["frames_dropped"] += 1
                return True
        return False

    # -- the connection task ----------------------------------------------------------------------

    async def _run(self) -> None:
        app = self.app
        failures = 0
        reason, detail, code = "connect-failed", "", None
        while not self._stopping:
            try:
                websocket = await connect(
                    app.url,
                    open_timeout=app.connect_timeout,
                    max_size=MAX_MESSAGE,
                    compression=None,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                reason, detail, code = "connect-failed", str(exc) or type(exc).__name__, None
            else:
                self.connections += 1
                reason, detail, code = await self._session(websocket)
                if self._stopping:
                    break
            if failures >= app.reconnect_attempts:
                break
            failures += 1
            self.state = "reconnecting"
            log.warning(
                "bridge %s (%s); reconnecting (%d of %d)",
                reason,
                detail,
                failures,
                app.reconnect_attempts,
                extra=self._log,
            )
            await asyncio.sleep(app.reconnect_backoff * 2 ** (failures - 1))
        if self._stopping:
            self.state = "closed"
            return
        self._give_up(reason, detail, code, failures)

    async def _session(self, websocket: ClientConnection) -> tuple[str, str, int | None]:
        """Talk to one connection until it closes; returns why it ended."""
        app = self.app
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.state = "open"
        self._connected_at = time.monotonic()
        self._publish(
            "session.bridge.connected",
            {"stream_sid": self.stream_sid, "format": app.format, "connection": self.connections},
        )
        log.info("bridge connected", extra=self._log)
        reader = asyncio.get_running_loop().create_task(self._read(websocket))
        try:
            await self._write(websocket, reader)
        except ConnectionClosed:
            pass
        finally:
            if not reader.done():
                # We stopped (participant left): give the backend a moment to close properly.
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(websocket.close(), STOP_WAIT)
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        code = websocket.close_code
        if code is not None and code != 1006:  # a close frame came: the backend closed
            return "backend-closed", websocket.close_reason or "", code
        error = reader.exception() if reader.done() and not reader.cancelled() else None
        return "backend-error", str(error or "connection lost"), code

    async def _write(self, websocket: ClientConnection, reader: asyncio.Task) -> None:
        app = self.app
        participant = self.participant
        call_sid = participant.id
        sequence = 1
        chunk = 0
        await websocket.send(wire_twilio.connected_message())
        await websocket.send(
            wire_twilio.start_message(
                self.stream_sid,
                call_sid,
                account_sid="sipua",
                custom_parameters=app.custom_parameters(participant),
                media_format=app.media_format(),
                sequence=sequence,
            )
        )
        while True:
            while not self._pending:
                if reader.done():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            kind, value = self._pending.popleft()
            sequence += 1
            if kind == "media":
                chunk += 1
                message = wire_twilio.media_message(
                    self.stream_sid,
                    value,
                    chunk=chunk,
                    timestamp_ms=(chunk - 1) * 20,
                    sequence=sequence,
                )
                self.counters["frames_sent"] += 1
            elif kind == "dtmf":
                message = wire_twilio.dtmf_message(self.stream_sid, value, sequence=sequence)
                self.counters["dtmf_sent"] += 1
            elif kind == "mark":
                message = wire_twilio.mark_message(self.stream_sid, value, sequence=sequence)
            else:  # stop
                await websocket.send(
                    wire_twilio.stop_message(
                        self.stream_sid, call_sid, account_sid="sipua", sequence=sequence
                    )
                )
                return
            await websocket.send(message)

    async def _read(self, websocket: ClientConnection) -> None:
        async for raw in websocket:
            if isinstance(raw, bytes):
                self.counters["bad_messages"] += 1
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                self.counters["bad_messages"] += 1
                continue
            if isinstance(message, dict):
                self._backend_message(message)
            else:
                self.counters["bad_messages"] += 1

    def _backend_message(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        participant = self.participant
        if event == "media":
            payload = wire_twilio.decode_payload(message.get("media"))
            if payload is None:
                self.counters["bad_messages"] += 1
                return
            pcm = self._decoder.decode(payload)
            self.counters["media_received"] += 1
            if pcm and self.fallback_active is None:
                participant.send_audio(pcm)
                self._queued_samples += len(pcm) // 2
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if isinstance(name, str):
                self._marks.append((self._queued_samples, name))
                self.tick()
        elif event == "clear":
            self.counters["clears"] += 1
            participant.clear()
            # Twilio answers the marks of cleared audio at once.
            while self._marks:
                _, name = self._marks.popleft()
                self.counters["marks_answered"] += 1
                self._push(("mark", name))

    # -- giving up ---------------------------------------------------------------------------------

    def _give_up(self, reason: str, detail: str, code: int | None, reconnections: int) -> None:
        app = self.app
        self.state = "failed"
        self._pending.clear()
        self._marks.clear()
        connected_s = (
            round(time.monotonic() - self._connected_at, 3) if self._connected_at else None
        )
        log.warning(
            "bridge given up: %s (%s) after %d reconnection(s); fallback %s",
            reason,
            detail,
            reconnections,
            app.fallback,
            extra=self._log,
        )
        self._publish(
            "session.bridge.disconnected",
            {
                "reason": reason,
                "detail": detail[:200],
                "close_code": code,
                "reconnections": reconnections,
                "fallback": app.fallback,
                "connected_s": connected_s,
                **{
                    k: v for k, v in self.counters.items() if k in ("frames_sent", "media_received")
                },
            },
        )
        self.fallback_active = app.fallback
        if app.fallback == "hangup":
            self._hang_up("bridge-" + ("unreachable" if reason == "connect-failed" else "closed"))

    def _hang_up(self, reason: str) -> None:
        participant = self.participant
        hangup = getattr(participant, "hangup", None)
        if callable(hangup):
            hangup(reason)
            return
        if self.app.hangup_leg is not None and self.app.hangup_leg(
            self.app.session_id, participant.id, reason
        ):
            return
        log.warning("bridge fallback: cannot hang up this participant", extra=self._log)

    def _publish(self, type_: str, data: dict[str, Any]) -> None:
        events = self.app.events
        if events is None or not self.app.session_id:
            return
        payload = {"participant_id": self.participant.id, "url": _scrub(self.app.url), **data}
        try:
            events.publish(events.make_event(type_, self.app.session_id, None, payload))
        except Exception:
            log.exception("could not publish %s", type_, extra=self._log)


register_app("bridge", BridgeApp)
