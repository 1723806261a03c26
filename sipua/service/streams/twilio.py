"""Twilio Media Streams: the JSON wire format, and the endpoint side of a ``<Connect><Stream>``.

Twilio opens the WebSocket, sends ``connected`` then ``start`` (``streamSid``, ``callSid``,
``tracks``, ``mediaFormat`` — μ-law 8 kHz mono — and the TwiML ``<Parameter>`` values in
``customParameters``), then ``media`` every 20 ms (base64 payload, ``track``, ``chunk``,
``timestamp``), ``dtmf`` when the caller presses a key, ``mark`` when audio we sent before a
mark has played, and ``stop``. On a bidirectional stream we send ``media`` (base64 μ-law 8 kHz),
``mark`` and ``clear`` (flush Twilio's playout buffer: barge-in) back, each with the
``streamSid``.

The same message builders serve the bridge app, which plays Twilio towards a customer backend
(so backends written for Twilio work unchanged).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .protocol import CLOSE_BAD_REQUEST, StreamControl, StreamProtocol, StreamRefused
from .wire import UnsupportedFormat, WireFormat, wire_format

__all__ = [
    "MULAW_8K",
    "TwilioStream",
    "clear_message",
    "connected_message",
    "dtmf_message",
    "mark_message",
    "media_message",
    "outbound_media_message",
    "start_message",
    "stop_message",
]

MULAW_8K = WireFormat("PCMU", 8000)
PROTOCOL_VERSION = "1.0.0"


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


# -- what Twilio sends (the bridge sends these to a backend) -------------------------------------


def connected_message() -> str:
    return _dumps({"event": "connected", "protocol": "Call", "version": PROTOCOL_VERSION})


def start_message(
    stream_sid: str,
    call_sid: str,
    *,
    account_sid: str = "",
    tracks: tuple[str, ...] = ("inbound",),
    custom_parameters: Mapping[str, str] | None = None,
    media_format: Mapping[str, Any] | None = None,
    sequence: int = 1,
) -> str:
    media_format = media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    return _dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": dict(custom_parameters or {}),
                "mediaFormat": dict(media_format),
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    stream_sid: str,
    payload: bytes,
    *,
    chunk: int,
    timestamp_ms: int,
    sequence: int,
    track: str = "inbound",
) -> str:
    return _dumps(
        {
            "event": "media",
            "sequenceNumber": str(sequence),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": _b64(payload),
            },
            "streamSid": stream_sid,
        }
    )


def dtmf_message(stream_sid: str, digit: str, *, sequence: int) -> str:
    return _dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def stop_message(stream_sid: str, call_sid: str, *, account_sid: str = "", sequence: int) -> str:
    return _dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )


# -- what Twilio accepts (and what the bridge accepts from a backend) -----------------------------


def outbound_media_message(stream_sid: str, payload: bytes) -> str:
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": _b64(payload)}})


def mark_message(stream_sid: str, name: str, *, sequence: int | None = None) -> str:
    message: dict[str, Any] = {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}
    if sequence is not None:
        message["sequenceNumber"] = str(sequence)
    return _dumps(message)


def clear_message(stream_sid: str) -> str:
    return _dumps({"event": "clear", "streamSid": stream_sid})


def decode_payload(media: Any) -> bytes | None:
    """The audio of a ``media`` object (``{"payload": base64}``), or None if it is not one."""
    if not isinstance(media, Mapping):
        return None
    payload = media.get("payload")
    if not isinstance(payload, str):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- the endpoint side --------------------------------------------------------------------------


class TwilioStream(StreamProtocol):
    """A Twilio ``<Connect><Stream>`` connected to a session.

    Twilio cannot take DTMF from a stream, so the participant's ``send_dtmf`` raises.
    """

    provider = "twilio"

    def __init__(self, start: Mapping[str, Any]) -> None:
        body = start.get("start")
        if not isinstance(body, Mapping):
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-start", "start message without 'start'")
        self.stream_sid = _text(body.get("streamSid")) or _text(start.get("streamSid"))
        self.call_sid = _text(body.get("callSid"))
        self.account_sid = _text(body.get("accountSid"))
        if not self.stream_sid:
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-start", "start without streamSid")
        params = body.get("customParameters")
        self.custom_parameters = (
            {str(k): str(v) for k, v in params.items()} if isinstance(params, Mapping) else {}
        )
        tracks = body.get("tracks")
        self.tracks = [str(t) for t in tracks] if isinstance(tracks, list) else ["inbound"]
        fmt = body.get("mediaFormat")
        fmt = fmt if isinstance(fmt, Mapping) else {}
        # Twilio plays back only μ-law 8 kHz.
        self.inbound_format = self.outbound_format = MULAW_8K
        try:
            self.inbound_format = wire_format(
                fmt.get("encoding", "audio/x-mulaw"), fmt.get("sampleRate", 8000)
            )
        except UnsupportedFormat as exc:
            self.refusal = StreamRefused(CLOSE_BAD_REQUEST, "unsupported-format", str(exc))
        self.token = self.custom_parameters.get("token")
        self.provider_ids = {
            "call_sid": self.call_sid or self.stream_sid,
            "stream_sid": self.stream_sid,
        }
        self.participant_id = self.stream_sid
        self.live_key = self.call_sid or None
        self.once_key = self.stream_sid
        self.ignored_tracks = 0
        self.bad_payloads = 0

    def event_data(self) -> dict[str, Any]:
        return {"codec": "PCMU", "tracks": self.tracks}

    def media_message(self, payload: bytes) -> str:
        return outbound_media_message(self.stream_sid, payload)

    def clear_message(self) -> str:
        return clear_message(self.stream_sid)

    def mark_message(self, name: str) -> str:
        return mark_message(self.stream_sid, name)

    def on_text(self, message: Mapping[str, Any], participant: Any, control: StreamControl) -> None:
        event = message.get("event")
        if event == "media":
            media = message.get("media")
            track = media.get("track", "inbound") if isinstance(media, Mapping) else None
            if track not in ("inbound", "inbound_track", None):
                self.ignored_tracks += 1  # <Start><Stream track="both_tracks">: not for the app
                return
            payload = decode_payload(media)
            if payload is None:
                self.bad_payloads += 1
                return
            participant.receive_payload(payload)
        elif event == "dtmf":
            dtmf = message.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, Mapping) else None
            if isinstance(digit, str) and digit:
                control.dtmf(digit, 0)
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, Mapping) else None
            if isinstance(name, str):
                participant.add_mark(name)
        elif event == "stop":
            control.end("stream-stopped")
        # "connected", a repeated "start" and unknown events are ignored.

    def stats(self) -> dict[str, Any]:
        return {"ignored_tracks": self.ignored_tracks, "bad_payloads": self.bad_payloads}
