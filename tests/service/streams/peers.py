"""Test peers playing the providers' documented message sequences (written here from the
providers' documentation, independently of sipua's own message builders)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class TwilioPeer:
    """What Twilio sends on a ``<Connect><Stream>``: connected, start, media, dtmf, mark, stop."""

    def __init__(self, token: str | None, *, custom: dict[str, str] | None = None) -> None:
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.call_sid = "CA" + secrets.token_hex(16)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.sequence = 0
        self.chunk = 0
        params = dict(custom or {})
        if token is not None:
            params["token"] = token
        self.custom = params

    def _seq(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, **media_format: Any) -> str:
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **media_format}
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": fmt,
                    "customParameters": self.custom,
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes, track: str = "inbound") -> str:
        self.chunk += 1
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._seq(),
                "media": {
                    "track": track,
                    "chunk": str(self.chunk),
                    "timestamp": str((self.chunk - 1) * 20),
                    "payload": b64(payload),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return json.dumps(
            {
                "event": "mark",
                "sequenceNumber": self._seq(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._seq(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )


class TelnyxPeer:
    """What Telnyx sends: connected, start (media_format), media (chunk), dtmf, error, stop."""

    def __init__(
        self,
        token: str | None,
        *,
        encoding: str = "PCMU",
        sample_rate: int = 8000,
        custom: dict[str, str] | None = None,
        auth_token: str | None = None,
    ) -> None:
        self.stream_id = secrets.token_hex(16)
        self.call_control_id = "v3:" + secrets.token_urlsafe(24)
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.sequence = 0
        self.auth_token = auth_token
        params = dict(custom or {})
        if token is not None:
            params["token"] = token
        self.custom = params

    def _seq(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    def connected(self) -> str:
        message: dict[str, Any] = {"event": "connected", "version": "1.0.0"}
        if self.auth_token is not None:
            message["x-telnyx-streaming-auth-token"] = self.auth_token
        return json.dumps(message)

    def start(self) -> str:
        return json.dumps(
            {
                "event": "start",
                "sequence_number": self._seq(),
                "start": {
                    "user_id": secrets.token_hex(8),
                    "call_control_id": self.call_control_id,
                    "call_session_id": secrets.token_hex(8),
                    "from": "+13122010094",
                    "to": "+13122123456",
                    "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
                    "custom_parameters": self.custom,
                    "media_format": {
                        "encoding": self.encoding,
                        "sample_rate": self.sample_rate,
                        "channels": 1,
                    },
                },
                "stream_id": self.stream_id,
            }
        )

    def media(self, payload: bytes, chunk: int, *, track: str = "inbound") -> str:
        return json.dumps(
            {
                "event": "media",
                "sequence_number": self._seq(),
                "media": {
                    "track": track,
                    "chunk": str(chunk),
                    "timestamp": str((chunk - 1) * 20),
                    "payload": b64(payload),
                },
                "stream_id": self.stream_id,
            }
        )

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {
                "event": "dtmf",
                "stream_id": self.stream_id,
                "occurred_at": "2024-01-01T00:00:00.000000Z",
                "sequence_number": self._seq(),
                "dtmf": {"digit": digit},
            }
        )

    def error(self) -> str:
        return json.dumps(
            {
                "event": "error",
                "sequence_number": self._seq(),
                "payload": {"code": 100002, "title": "unknown_error", "detail": "test"},
                "stream_id": self.stream_id,
            }
        )

    def stop(self) -> str:
        return json.dumps(
            {
                "event": "stop",
                "sequence_number": self._seq(),
                "stop": {"user_id": "u", "call_control_id": self.call_control_id},
                "stream_id": self.stream_id,
            }
        )
