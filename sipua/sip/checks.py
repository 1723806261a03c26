"""What a UAS checks before it looks at what a request asks for (RFC 3261 §8.2).

``inspect_request`` returns the rejection a UAS core sends before any
application logic (mandatory headers, URI scheme, Require), or None.
``check_message`` combines parsing and those checks into one verdict; it is
what ``sipua check`` prints for captured messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ParseError
from .headers import display_name
from .message import Request, Response, parse_message, salvage_request
from .uri import SipUri, TelUri

# Option tags this stack implements (RFC 3261 §19.2). Anything else in Require is 420.
SUPPORTED_OPTION_TAGS: frozenset[str] = frozenset({"replaces", "norefersub", "timer"})
SUPPORTED_SCHEMES: frozenset[str] = frozenset({"sip", "sips", "tel"})
MANDATORY_REQUEST_HEADERS = ("via", "from", "to", "call-id", "cseq")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A response a UAS sends instead of processing the request."""

    status: int
    reason: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


def inspect_request(
    request: Request,
    *,
    option_tags: frozenset[str] = SUPPORTED_OPTION_TAGS,
    schemes: frozenset[str] = SUPPORTED_SCHEMES,
) -> Rejection | None:
    """RFC 3261 §8.2.1–§8.2.2 checks, in the RFC's order after the method check."""
    try:
        for key in MANDATORY_REQUEST_HEADERS:
            if key not in request:
                return Rejection(400, "Bad Request", f"missing {display_name(key)} header")
        request.validate()
        cseq = request.cseq
    except ParseError as e:
        return Rejection(e.status, e.reason, e.detail)
    if cseq.method != request.method:
        # RFC 4475 §3.1.2.17
        return Rejection(
            400, "Bad Request", f"CSeq method {cseq.method} does not match {request.method}"
        )
    uri = request.uri
    if uri.scheme.lower() not in schemes or not isinstance(uri, (SipUri, TelUri)):
        return Rejection(
            416, "Unsupported URI Scheme", f"Request-URI scheme {uri.scheme!r} is not supported"
        )
    if request.method not in ("ACK", "CANCEL"):
        # RFC 3261 §8.2.2.3: list what Require asks for and we lack (a UAS does not look
        # at Proxy-Require). Tokens compare case-insensitively (§7.3.1); they are echoed
        # as the client wrote them.
        unsupported = []
        for line in request.get_all("require"):
            for tag in line.split(","):
                tag = tag.strip(" \t")
                if tag and tag.lower() not in option_tags and tag not in unsupported:
                    unsupported.append(tag)
        if unsupported:
            return Rejection(
                420,
                "Bad Extension",
                f"unsupported extensions required: {', '.join(unsupported)}",
                (("Unsupported", ", ".join(unsupported)),),
            )
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking one wire message."""

    accepted: bool
    kind: str  # "request", "response" or "unknown"
    method: str | None = None
    status: int | None = None  # the response status for requests' rejections, or the response's own
    reason: str | None = None
    call_id: str | None = None
    detail: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "verdict": "accepted" if self.accepted else "rejected",
            "kind": self.kind,
        }
        for key in ("method", "status", "reason", "call_id", "detail"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.headers:
            d["headers"] = dict(self.headers)
        return d


def check_message(data: bytes) -> Verdict:
    """Parse ``data`` as one datagram and judge it as sipua's UAS would."""
    try:
        msg = parse_message(data)
    except ParseError as e:
        return judge_error(data, e)
    return judge(msg)


def judge_error(
    data: bytes, error: ParseError, message: Request | Response | None = None
) -> Verdict:
    """The verdict on octets that could not be used because of ``error``.

    ``message`` is the message when its head parsed (a stream message without
    Content-Length); otherwise the method and Call-ID come from :func:`salvage_request`.
    """
    if message is not None:
        kind = "response" if isinstance(message, Response) else "request"
    else:
        kind = "response" if data.lstrip(b"\r\n")[:4].upper() == b"SIP/" else "request"
    if kind == "response":
        # RFC 3261 §18.1.2: a malformed response is silently discarded.
        status = message.status if isinstance(message, Response) else None
        return Verdict(False, kind, status=status, detail=f"discarded: {error.detail}")
    request = message if isinstance(message, Request) else salvage_request(data)
    method = call_id = None
    if request is not None:
        method = request.method
        call_id = request.get("call-id")
    return Verdict(
        False,
        kind,
        method=method,
        status=error.status,
        reason=error.reason,
        call_id=call_id,
        detail=error.detail,
    )


def judge(msg: Request | Response) -> Verdict:
    """The verdict on a message already parsed (or framed from a stream)."""
    if isinstance(msg, Response):
        try:
            msg.validate()
            call_id = msg.call_id
        except ParseError as e:
            return Verdict(False, "response", status=msg.status, detail=f"discarded: {e.detail}")
        return Verdict(True, "response", status=msg.status, reason=msg.reason, call_id=call_id)
    rejection = inspect_request(msg)
    call_id = msg.get("call-id")
    if rejection is not None:
        return Verdict(
            False,
            "request",
            method=msg.method,
            status=rejection.status,
            reason=rejection.reason,
            call_id=call_id,
            detail=rejection.detail,
            headers=rejection.headers,
        )
    return Verdict(True, "request", method=msg.method, call_id=call_id)
