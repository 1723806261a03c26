"""Errors of the SIP core.

A malformed message never becomes a traceback: it becomes a :class:`ParseError`
that knows what a UAS must answer (RFC 3261 §8.2, §21.4) or that the message is
to be dropped. It is the only exception type the parser raises.
"""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error the SIP core raises."""


class ParseError(SipError):
    """A message (or part of one) could not be parsed or is invalid.

    ``status`` is the response a UAS sends for a request with this fault
    (400 unless the RFC names another), ``reason`` the reason phrase, and
    ``detail`` says what exactly is wrong, for logs and for ``sipua check``.
    ``fatal_to_stream`` is true when a stream transport cannot find the start
    of the next message after this fault and must close the connection
    (RFC 3261 §18.3).
    """

    def __init__(
        self,
        detail: str,
        status: int = 400,
        reason: str | None = None,
        *,
        fatal_to_stream: bool = False,
        header: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.reason = reason or _DEFAULT_REASONS.get(status, "Bad Request")
        self.fatal_to_stream = fatal_to_stream
        self.header = header

    def __repr__(self) -> str:
        return f"ParseError({self.status} {self.reason}: {self.detail})"


_DEFAULT_REASONS = {
    400: "Bad Request",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    505: "Version Not Supported",
    513: "Message Too Large",
}
