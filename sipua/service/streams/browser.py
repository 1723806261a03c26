"""The browser stream protocol: raw PCM over a WebSocket, JSON for control.

``ws(s)://host/v1/streams/<session_id>?token=<stream token>``. After the token is checked the
server sends ``{"type": "ready", …}``; from then on:

- binary frames, both ways: 16-bit little-endian mono PCM at 16 kHz, normally 20 ms (640 octets)
  per frame; other sizes up to 64 KiB are accepted (audio is re-cut into 20 ms frames);
- text frames are JSON control messages. From the browser: ``{"type": "dtmf", "digit": "5"}``,
  ``{"type": "mark", "name": "…"}`` (answered with the same mark once the audio queued before
  it has been sent), ``{"type": "hangup"}``. From the server: ``ready``, ``clear`` (drop what
  you have not played yet: barge-in), ``mark``, ``dtmf`` (the application sent a digit),
  ``error`` and, before the server closes, ``{"type": "ended", "reason": …}``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from .protocol import StreamControl, StreamProtocol
from .wire import WireFormat

__all__ = ["BROWSER_FORMAT", "BrowserStream"]

BROWSER_FORMAT = WireFormat("L16", 16000, "little")
DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: A binary frame longer than this (2 s of audio) is dropped: a microphone sends 20 ms.
MAX_AUDIO_FRAME = 64 * 1024


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class BrowserStream(StreamProtocol):
    provider = "browser"

    def __init__(self, session_id: str, query: Mapping[str, str]) -> None:
        self.session_id = session_id
        self.token = query.get("token")
        self.connection_id = "conn_" + secrets.token_hex(8)
        self.provider_ids = {"connection_id": self.connection_id}
        self.participant_id = self.connection_id
        self.inbound_format = BROWSER_FORMAT
        self.outbound_format = BROWSER_FORMAT
        self.bad_messages = 0

    def event_data(self) -> dict[str, Any]:
        return {"codec": "L16", "sample_rate": BROWSER_FORMAT.sample_rate}

    def opening_messages(self) -> list[str | bytes]:
        return [
            _dumps(
                {
                    "type": "ready",
                    "session_id": self.session_id,
                    "participant_id": self.connection_id,
                    "encoding": "pcm_s16le",
                    "sample_rate": BROWSER_FORMAT.sample_rate,
                    "channels": 1,
                    "frame_ms": 20,
                }
            )
        ]

    def media_message(self, payload: bytes) -> bytes:
        return payload

    def clear_message(self) -> str:
        return _dumps({"type": "clear"})

    def mark_message(self, name: str) -> str:
        return _dumps({"type": "mark", "name": name})

    def dtmf_message(self, digit: str, duration_ms: int) -> str:
        return _dumps({"type": "dtmf", "digit": digit, "duration_ms": duration_ms})

    def closing_messages(self, reason: str) -> list[str | bytes]:
        return [_dumps({"type": "ended", "reason": reason})]

    def on_bytes(self, data: bytes, participant: Any, control: StreamControl) -> None:
        if len(data) > MAX_AUDIO_FRAME:
            self.bad_messages += 1
            control.warn("audio-frame-too-long", len(data))
            return
        participant.receive_payload(data)

    def on_text(self, message: Mapping[str, Any], participant: Any, control: StreamControl) -> None:
        kind = message.get("type")
        if kind == "dtmf":
            digit = str(message.get("digit", "")).upper()
            if len(digit) != 1 or digit not in DTMF_DIGITS:
                self.bad_messages += 1
                control.warn("bad-dtmf", message.get("digit"))
                return
            duration = message.get("duration_ms", 100)
            control.dtmf(digit, duration if isinstance(duration, int) else 100)
        elif kind == "mark":
            name = message.get("name")
            if isinstance(name, str):
                participant.add_mark(name)
        elif kind == "hangup":
            control.end("remote-hangup")
        else:
            self.bad_messages += 1
            control.warn("unknown-message", kind)

    def stats(self) -> dict[str, Any]:
        return {"bad_messages": self.bad_messages}
