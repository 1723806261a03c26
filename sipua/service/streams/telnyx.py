"""Telnyx media streaming: the endpoint side of a TeXML ``<Stream>`` or a Call Control
``streaming_start`` towards a session.

Telnyx sends ``connected`` (with ``x-telnyx-streaming-auth-token`` when a streaming auth token is
configured), ``start`` (``stream_id``; in ``start``: ``call_control_id``, ``custom_parameters``
— TeXML ``<Parameter>`` values — and ``media_format`` {``encoding``, ``sample_rate``,
``channels``}), then ``media`` (base64 RTP payload without header, ``chunk``, ``timestamp``,
``track``), ``dtmf``, ``mark`` (answers to ours), ``error`` and ``stop``. Media frames may
arrive out of order: they pass through a small :class:`~.reorder.ReorderWindow` keyed by
``chunk``, or by the message's ``sequence_number`` when there is no ``chunk``; that number counts
every message, so then the numbers of messages without inbound audio (DTMF, marks, other tracks)
are filled in the window rather than waited for as lost audio.

The inbound encoding is read from ``media_format`` (PCMU, PCMA, G722, OPUS or L16 — L16 in
network byte order). Audio goes back, in bidirectional ``rtp`` mode, as
``{"event": "media", "media": {"payload": …}}`` in the codec Telnyx was told to expect
(``bidirectionalCodec``/``stream_bidirectional_codec``, PCMU at 8 kHz by default). That choice
is not repeated in the ``start`` message, so the stream takes it from a ``bidirectional_codec``
(and ``bidirectional_sampling_rate``) custom parameter or query parameter, else uses Telnyx's
default, PCMU at 8 kHz, whatever the inbound encoding. ``clear`` flushes Telnyx's playout
queue; Telnyx cannot take DTMF from a stream.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from .protocol import CLOSE_BAD_REQUEST, StreamControl, StreamProtocol, StreamRefused
from .reorder import Gap, ReorderWindow
from .twilio import decode_payload
from .wire import UnsupportedFormat, wire_format

__all__ = ["AUTH_TOKEN_FIELD", "TelnyxStream"]

AUTH_TOKEN_FIELD = "x-telnyx-streaming-auth-token"
REORDER_WINDOW = 4  # chunks: at most 80 ms of extra delay when a chunk is lost


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class TelnyxStream(StreamProtocol):
    provider = "telnyx"

    def __init__(
        self,
        start: Mapping[str, Any],
        *,
        query: Mapping[str, str] | None = None,
        connected: Mapping[str, Any] | None = None,
        auth_header: str | None = None,
    ) -> None:
        query = query or {}
        body = start.get("start")
        if not isinstance(body, Mapping):
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-start", "start message without 'start'")
        self.stream_id = _text(start.get("stream_id")) or _text(body.get("stream_id"))
        self.call_control_id = _text(body.get("call_control_id"))
        if not self.stream_id:
            raise StreamRefused(CLOSE_BAD_REQUEST, "bad-start", "start without stream_id")
        params = body.get("custom_parameters")
        self.custom_parameters = (
            {str(k): str(v) for k, v in params.items()} if isinstance(params, Mapping) else {}
        )
        fmt = body.get("media_format")
        fmt = fmt if isinstance(fmt, Mapping) else {}
        channels = _int(fmt.get("channels", 1))
        self.inbound_format = self.outbound_format = wire_format("PCMU")
        try:
            if channels not in (1, None):
                raise UnsupportedFormat(f"{channels} channels (only mono is supported)")
            self.inbound_format = wire_format(
                fmt.get("encoding", "PCMU"), fmt.get("sample_rate", 8000)
            )
            back_codec = self.custom_parameters.get("bidirectional_codec") or query.get(
                "bidirectional_codec"
            )
            back_rate = self.custom_parameters.get("bidirectional_sampling_rate") or query.get(
                "bidirectional_sampling_rate"
            )
            # Telnyx's defaults: bidirectionalCodec PCMU, bidirectionalSamplingRate 8000.
            self.outbound_format = wire_format(back_codec or "PCMU", back_rate or 8000)
        except UnsupportedFormat as exc:
            self.refusal = StreamRefused(CLOSE_BAD_REQUEST, "unsupported-format", str(exc))
        connected_token = connected.get(AUTH_TOKEN_FIELD) if connected else None
        self.token = (
            self.custom_parameters.get("token")
            or query.get("token")
            or (connected_token if isinstance(connected_token, str) else None)
            or auth_header
        )
        self.provider_ids = {
            "call_control_id": self.call_control_id or self.stream_id,
            "stream_id": self.stream_id,
        }
        self.participant_id = self.stream_id
        self.live_key = self.call_control_id or None
        self.once_key = self.stream_id
        # None in the window: a sequence number that carries no inbound audio.
        self._window: ReorderWindow[bytes | None] = ReorderWindow(REORDER_WINDOW, first=None)
        self._by_sequence = False  # media frames without chunk: keyed by sequence_number
        self._chunk_ms = 20.0
        self.ignored_tracks = 0
        self.bad_payloads = 0
        self.errors_reported = 0

    def event_data(self) -> dict[str, Any]:
        return {"codec": self.outbound_format.name, "inbound_codec": self.inbound_format.name}

    def media_message(self, payload: bytes) -> str:
        return json.dumps(
            {"event": "media", "media": {"payload": base64.b64encode(payload).decode("ascii")}},
            separators=(",", ":"),
        )

    def clear_message(self) -> str:
        return '{"event":"clear"}'

    def mark_message(self, name: str) -> str:
        return json.dumps({"event": "mark", "mark": {"name": name}}, separators=(",", ":"))

    def on_text(self, message: Mapping[str, Any], participant: Any, control: StreamControl) -> None:
        event = message.get("event")
        if event == "media":
            self._media(message, participant)
            return
        self._no_audio(message, participant)
        if event == "dtmf":
            dtmf = message.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, Mapping) else None
            if isinstance(digit, str) and digit:
                control.dtmf(digit, _int(dtmf.get("duration_ms")) or 0)  # type: ignore[union-attr]
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, Mapping) else None
            if isinstance(name, str):
                participant.add_mark(name)
        elif event == "error":
            self.errors_reported += 1
            control.warn("telnyx-error", message.get("payload"))
        elif event == "stop":
            control.end("stream-stopped")

    def _media(self, message: Mapping[str, Any], participant: Any) -> None:
        media = message.get("media")
        if not isinstance(media, Mapping):
            self.bad_payloads += 1
            self._no_audio(message, participant)
            return
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            self.ignored_tracks += 1
            self._no_audio(message, participant)
            return
        payload = decode_payload(media)
        if payload is None:
            self.bad_payloads += 1
            self._no_audio(message, participant)
            return
        ms = self.inbound_format.duration_ms(len(payload))
        if ms > 0:
            self._chunk_ms = ms
        key = _int(media.get("chunk"))
        if key is None:
            key = _int(message.get("sequence_number"))
            self._by_sequence = self._by_sequence or key is not None
        if key is None:
            participant.receive_payload(payload)
            return
        self._release(self._window.push(key, payload), participant)

    def _no_audio(self, message: Mapping[str, Any], participant: Any) -> None:
        """A message that takes a sequence number but gives no inbound audio: when frames are
        ordered by sequence number, its number is not a lost frame to wait for."""
        if not self._by_sequence:
            return
        key = _int(message.get("sequence_number"))
        if key is not None:
            self._release(self._window.push(key, None), participant)

    def _release(self, items: list[bytes | None | Gap], participant: Any) -> None:
        for item in items:
            if item is None:
                continue
            if isinstance(item, Gap):
                participant.receive_gap(item.count * self._chunk_ms)
            else:
                participant.receive_payload(item)

    def on_close(self, participant: Any) -> None:
        self._release(self._window.flush(), participant)

    def stats(self) -> dict[str, Any]:
        window = self._window
        return {
            "out_of_order": window.out_of_order,
            "late_drops": window.late,
            "duplicates": window.duplicates,
            "chunks_lost": window.lost,
            "ignored_tracks": self.ignored_tracks,
            "bad_payloads": self.bad_payloads,
            "errors_reported": self.errors_reported,
        }
