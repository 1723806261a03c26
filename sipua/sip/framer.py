"""Message framing on stream transports (TCP, TLS): RFC 3261 §18.3, RFC 5626 §3.5.1.

Fed arbitrary chunks with :meth:`StreamFramer.receive_data`, the framer is
asked for events with :meth:`StreamFramer.next_event` until it answers
``NEED_DATA``. Content-Length delimits every message on a stream; a message
without one is framed as having no body and reported as malformed, so the
user can answer 400 and the stream goes on. A framing fault that loses the
position of the next message (bad or conflicting Content-Length, oversized
header or body) raises :class:`ParseError` with ``fatal_to_stream`` set: the
connection must be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ParseError
from .message import Request, Response, _content_length_of, parse_head_bytes


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class MessageFramed:
    message: Request | Response


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A framed message that cannot be used; ``message`` is set when its head parsed."""

    error: ParseError
    data: bytes
    message: Request | Response | None = None


@dataclass(frozen=True, slots=True)
class KeepAliveReceived:
    """A CRLFCRLF ping (RFC 5626 §3.5.1): answer with a single CRLF pong."""


FramerEvent = MessageFramed | MalformedMessage | KeepAliveReceived

_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_LEADING_CRLF = re.compile(rb"[\r\n]+")


class StreamFramer:
    def __init__(
        self,
        *,
        max_header_size: int = 16384,
        max_body_size: int = 65536,
        require_content_length: bool = True,
    ) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.require_content_length = require_content_length
        self._buffer = bytearray()
        self._scan_from = 0  # where to resume looking for the end of the head
        self._pending: tuple[int, int, Request | Response | None, ParseError | None] | None = None
        self._closed = False

    def receive_data(self, data: bytes) -> None:
        if self._closed:
            raise ParseError("stream already failed", fatal_to_stream=True)
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_event(self) -> FramerEvent | _NeedData:
        buf = self._buffer
        if self._pending is None:
            # Keep-alives and stray CRLFs between messages (RFC 3261 §7.5).
            if buf and (buf[0] == 13 or buf[0] == 10):  # CR, LF
                n = _LEADING_CRLF.match(buf).end()  # type: ignore[union-attr]
                ping = buf.find(b"\r\n\r\n", 0, n)
                if ping >= 0:
                    # One event per CRLFCRLF (RFC 5626 §4.4.1), whatever the chunking.
                    del buf[: ping + 4]
                    self._scan_from = 0
                    return KeepAliveReceived()
                if n == len(buf):
                    # Could still become a ping; only the last 3 octets can be part of one.
                    if n > 3:
                        del buf[: n - 3]
                    return NEED_DATA
                del buf[:n]
                self._scan_from = 0
            start = max(0, self._scan_from - 3)
            i = buf.find(b"\r\n\r\n", start)
            j = buf.find(b"\n\n", start, i if i >= 0 else len(buf))
            if j >= 0 and (i < 0 or j < i):
                head_end, body_start = j, j + 2
            elif i >= 0:
                head_end, body_start = i, i + 4
            else:
                if len(buf) > self.max_header_size:
                    self._fail()
                    raise ParseError(
                        f"header section exceeds {self.max_header_size} octets",
                        513,
                        fatal_to_stream=True,
                    )
                self._scan_from = len(buf)
                return NEED_DATA
            if head_end > self.max_header_size:
                self._fail()
                raise ParseError(
                    f"header section exceeds {self.max_header_size} octets",
                    513,
                    fatal_to_stream=True,
                )
            self._scan_from = 0
            head = bytes(buf[:head_end])
            message: Request | Response | None
            error: ParseError | None = None
            try:
                message = parse_head_bytes(head)
                cl_lines = message._idx().get("content-length")
            except ParseError as e:
                message, error = None, e
                cl_lines = [m.decode("latin-1").strip() for m in _CL_RE.findall(head)]
            if cl_lines:
                try:
                    length = _content_length_of(cl_lines)
                except ParseError:
                    # Negative, non-numeric or conflicting: where the next message
                    # starts is unknown (RFC 4475 §3.1.2.3, §3.3.9).
                    self._fail()
                    raise
            else:
                length = 0
                if self.require_content_length and error is None:
                    error = ParseError(
                        "missing Content-Length on a stream transport", header="content-length"
                    )
            if length > self.max_body_size:
                self._fail()
                raise ParseError(
                    f"body of {length} octets exceeds {self.max_body_size}",
                    413,
                    fatal_to_stream=True,
                )
            self._pending = (body_start, length, message, error)
        body_start, length, message, error = self._pending
        end = body_start + length
        if len(buf) < end:
            return NEED_DATA
        body = bytes(buf[body_start:end])
        if error is not None:
            data = bytes(buf[:end])
        del buf[:end]
        self._pending = None
        if error is not None:
            if message is not None:
                message.body = body
            return MalformedMessage(error, data, message)
        assert message is not None
        message.body = body
        return MessageFramed(message)

    def _fail(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._pending = None


def frame_all(framer: StreamFramer, data: bytes) -> list[FramerEvent]:
    """Feed ``data`` and collect every event it completes."""
    framer.receive_data(data)
    out: list[FramerEvent] = []
    while True:
        ev = framer.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)  # type: ignore[arg-type]
