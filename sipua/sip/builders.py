"""Building requests and responses (RFC 3261 §8.1.1, §8.2.6).

Responses copy Via, From, Call-ID and CSeq from the request as they were
written, and To with a tag added when the UAS chose one; raw header text is
reused so building a response costs no parsing.
"""

from __future__ import annotations

from .errors import ParseError
from .headers import _key_cache, header_key
from .message import Request, Response

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_COPIED = frozenset({"via", "from", "call-id", "cseq"})


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    content_type: str | None = None,
    record_route: bool = False,
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6.2).

    ``to_tag`` is added to To unless the request's To already has a tag.
    ``record_route`` copies Record-Route, as a UAS does for dialog-creating
    responses (§12.1.1). For 100 Trying, Timestamp is copied (§8.2.6.1).
    Works on a request from :func:`~sipua.sip.message.salvage_request` too: the
    copied values are taken as written, never re-parsed.
    """
    fields = []
    for field in request.fields:
        key = field[0]
        if key in _COPIED:
            fields.append(field)
        elif key == "to":
            if to_tag is not None and not _has_tag(request, field[2]):
                fields.append((key, field[1], f"{field[2]};tag={to_tag}"))
            else:
                fields.append(field)
        elif key == "record-route" and record_route or key == "timestamp" and status == 100:
            fields.append(field)
    for name, value in headers:
        fields.append((_header_key(name), name, _line_safe(value)))
    if content_type is not None:
        fields.append(("content-type", "Content-Type", _line_safe(content_type)))
    if reason is None:
        reason = reason_phrase(status)
    return Response(status, _line_safe(reason), fields, body)


def make_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    max_forwards: int = 70,
    contact: str | None = None,
    route: list[str] | tuple[str, ...] = (),
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request with the header fields of RFC 3261 §8.1.1, from their wire text."""
    for value in (method, uri, via, from_, to, call_id, contact or "", *route):
        _line_safe(value)
    fields = [
        ("via", "Via", via),
        ("max-forwards", "Max-Forwards", str(max_forwards)),
    ]
    fields.extend(("route", "Route", r) for r in route)
    fields += [
        ("from", "From", from_),
        ("to", "To", to),
        ("call-id", "Call-ID", call_id),
        ("cseq", "CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("contact", "Contact", contact))
    for name, value in headers:
        fields.append((_header_key(name), name, _line_safe(value)))
    if content_type is not None:
        fields.append(("content-type", "Content-Type", _line_safe(content_type)))
    return Request(method, uri, fields, body)


def make_cancel(invite: Request) -> Request:
    """The CANCEL of a client INVITE (RFC 3261 §9.1): its Request-URI, Call-ID, From, To and
    Route, its top Via only (so the branch matches the INVITE's transaction), and its CSeq
    number with the method CANCEL."""
    fields = [("via", "Via", str(invite.top_via))]
    for key, name, value in invite.fields:
        if key in ("max-forwards", "route", "from", "to", "call-id"):
            fields.append((key, name, value))
    fields.append(("cseq", "CSeq", f"{invite.cseq.seq} CANCEL"))
    return Request("CANCEL", invite.uri, fields)


def _line_safe(value: str) -> str:
    """``value``, refused if it holds CR or LF: it would end the header line (injection)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in a header value or reason phrase: {value[:60]!r}")
    return value


def _header_key(name: str) -> str:
    key = _key_cache.get(name)
    return key if key is not None else header_key(name)


def _has_tag(request: Request, to_value: str) -> bool:
    """Whether the request's To carries a tag parameter (not a ``tag`` inside the URI)."""
    try:
        return request.to.tag is not None
    except ParseError:
        # A salvaged request: look at the text after the URI.
        rest = to_value[to_value.rfind(">") + 1 :] if ">" in to_value else to_value
        return ";tag=" in rest.replace(" ", "").replace("\t", "").lower()
