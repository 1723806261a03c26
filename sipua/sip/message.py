"""SIP requests and responses: parsing and serialisation (RFC 3261 §7, §20, §25).

``parse_message`` splits a message into its start line, an ordered list of
header fields and the body. Headers the stack uses have typed accessors
(``via``, ``from_``, ``to``, ``call_id``, ``cseq``, ``contact`` …) that parse on
first use and raise :class:`ParseError` when the value is malformed; other
headers are kept verbatim and serialised back unchanged. ``validate()`` parses
them all at once, which is what a UAS does before it trusts a request.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ParseError
from .grammar import COMMON_METHODS, TOKEN_RE, WS, split_commas, split_tokens
from .headers import (
    LIST_HEADERS,
    ContentType,
    CSeq,
    NameAddr,
    Via,
    _key_cache,
    display_name,
    header_key,
    parse_content_type,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from .uri import SipUri, Uri, parse_uri

SIP_VERSION = "SIP/2.0"
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_CALL_ID_RE = re.compile(r"[!-~]+")  # word [ "@" word ]: visible ASCII, no LWS

# Headers that may appear at most once (RFC 3261 §7.3, Table 2/3).
SINGLETON_HEADERS = frozenset({"from", "to", "call-id", "cseq", "max-forwards", "content-length"})

# Methods seen every second; anything else is checked against the token grammar.
_COMMON_METHODS = COMMON_METHODS


class Message:
    """What requests and responses share: header fields and a body.

    ``fields`` is the ordered list of ``(key, name, value)``: ``key`` the
    canonical lower-case name (compact forms expanded), ``name`` as written,
    ``value`` with surrounding whitespace and line folding removed. Code that
    changes ``fields`` in place calls :meth:`invalidate` afterwards; ``add``,
    ``set`` and ``remove`` do that themselves.
    ``context`` is left to the transport (where the message came from or is
    going to); the core carries it but never looks inside.
    """

    __slots__ = ("fields", "body", "context", "_index", "_cache")

    def __init__(self, fields: list[tuple[str, str, str]] | None = None, body: bytes = b"") -> None:
        self.fields = fields if fields is not None else []
        self.body = body
        self.context: Any = None
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, Any] = {}

    # -- raw header access -------------------------------------------------

    def _idx(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self.fields:
                lst = index.get(key)
                if lst is None:
                    index[key] = [value]
                else:
                    lst.append(value)
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (a whole line, not split on commas)."""
        lst = self._idx().get(_key(name))
        return lst[0] if lst else default

    def first(self, name: str) -> str | None:
        """The first value of a header, as :meth:`get` gives it.

        Unlike :meth:`get`, it does not build the header index when there is none: a
        message read once (an outgoing response being traced) is only scanned.
        """
        key = _key(name)
        index = self._index
        if index is not None:
            lst = index.get(key)
            return lst[0] if lst else None
        for k, _, value in self.fields:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every line of a header, in order."""
        return list(self._idx().get(_key(name), ()))

    def values(self, name: str) -> list[str]:
        """Every element of a list header: lines split on top-level commas."""
        key = _key(name)
        lines = self._idx().get(key, ())
        if key not in LIST_HEADERS:
            return list(lines)
        out: list[str] = []
        for line in lines:
            out.extend(split_commas(line))
        return out

    def __contains__(self, name: str) -> bool:
        return _key(name) in self._idx()

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a header line (or put it first); typed values of that header are re-read."""
        _check_value(value)
        key = _key(name)
        entry = (key, display_name(key) if name.lower() == key or len(name) == 1 else name, value)
        if first:
            self.fields.insert(0, entry)
        else:
            self.fields.append(entry)
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every line of a header with one, where the first one was."""
        _check_value(value)
        key = _key(name)
        fields = self.fields
        for i, (k, n, _) in enumerate(fields):
            if k == key:
                self.fields = [
                    (k, n, value) if j == i else f
                    for j, f in enumerate(fields)
                    if j == i or f[0] != key
                ]
                break
        else:
            fields.append((key, display_name(key), value))
        self._changed(key)

    def remove(self, name: str) -> None:
        key = _key(name)
        self.fields = [f for f in self.fields if f[0] != key]
        self._changed(key)

    def _changed(self, key: str) -> None:
        self._index = None
        self._cache.pop(key, None)

    def invalidate(self, name: str | None = None) -> None:
        """Forget parsed values after ``fields`` was changed in place.

        With ``name``, only that header's typed value is read again; without, all are.
        """
        self._index = None
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(_key(name), None)

    # -- typed header access -----------------------------------------------

    def _single(self, key: str) -> str | None:
        index = self._index
        lst = (index if index is not None else self._idx()).get(key)
        if not lst:
            return None
        if len(lst) > 1:
            raise ParseError(f"more than one {display_name(key)} header", header=key)
        return lst[0]

    @property
    def via(self) -> list[Via]:
        cache = self._cache
        v = cache.get("via")
        if v is None:
            index = self._index
            lines = (index if index is not None else self._idx()).get("via", ())
            if len(lines) == 1 and "," not in lines[0]:
                v = [parse_via(lines[0])]
            else:
                v = [parse_via(e) for e in self.values("via")]
            cache["via"] = v
        return v

    @property
    def top_via(self) -> Via:
        vias = self._cache.get("via")
        if vias is None:
            vias = self.via
        if not vias:
            raise ParseError("missing Via header", header="via")
        return vias[0]

    def _name_addr(self, key: str) -> NameAddr:
        cache = self._cache
        v = cache.get(key)
        if v is None:
            raw = self._single(key)
            if raw is None:
                raise ParseError(f"missing {display_name(key)} header", header=key)
            v = cache[key] = parse_name_addr(raw, display_name(key))
        return v

    @property
    def from_(self) -> NameAddr:
        v = self._cache.get("from")
        return v if v is not None else self._name_addr("from")

    @property
    def to(self) -> NameAddr:
        v = self._cache.get("to")
        return v if v is not None else self._name_addr("to")

    @property
    def call_id(self) -> str:
        cache = self._cache
        v = cache.get("call-id")
        if v is None:
            raw = self._single("call-id")
            if raw is None:
                raise ParseError("missing Call-ID header", header="call-id")
            if _CALL_ID_RE.fullmatch(raw) is None:
                raise ParseError(f"bad Call-ID {raw[:60]!r}", header="call-id")
            v = cache["call-id"] = raw
        return v

    @property
    def cseq(self) -> CSeq:
        cache = self._cache
        v = cache.get("cseq")
        if v is None:
            raw = self._single("cseq")
            if raw is None:
                raise ParseError("missing CSeq header", header="cseq")
            v = cache["cseq"] = parse_cseq(raw)
        return v

    def _name_addr_list(self, key: str, allow_star: bool = False) -> list[NameAddr]:
        cache = self._cache
        v = cache.get(key)
        if v is None:
            name = display_name(key)
            index = self._index
            lines = (index if index is not None else self._idx()).get(key, ())
            if not lines:
                v = []
            elif len(lines) == 1 and "," not in lines[0]:
                v = [parse_name_addr(lines[0], name, allow_star=allow_star)]
            else:
                v = [parse_name_addr(e, name, allow_star=allow_star) for e in self.values(key)]
            cache[key] = v
        return v

    @property
    def contact(self) -> list[NameAddr]:
        """Contact values; ``Contact: *`` gives one NameAddr whose uri_text is ``*``."""
        v = self._cache.get("contact")
        return v if v is not None else self._name_addr_list("contact", allow_star=True)

    @property
    def route(self) -> list[NameAddr]:
        return self._name_addr_list("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._name_addr_list("record-route")

    @property
    def content_length(self) -> int | None:
        cache = self._cache
        if "content-length" in cache:
            return cache["content-length"]
        raw = self._single("content-length")
        v = cache["content-length"] = None if raw is None else _parse_content_length(raw)
        return v

    @property
    def max_forwards(self) -> int | None:
        cache = self._cache
        if "max-forwards" in cache:
            return cache["max-forwards"]
        raw = self._single("max-forwards")
        v = None
        if raw is not None and len(raw) < 3 and raw.isdigit() and raw.isascii():
            v = int(raw)
        elif raw is not None:
            # RFC 3261 §20.22: 1*DIGIT, 0-255 in practice; leading zeros allowed (RFC 4475 §3.1.1.1).
            digits = raw.lstrip("0") or "0"
            if not raw.isdigit() or not raw.isascii() or len(digits) > 3 or int(digits) > 255:
                raise ParseError(f"bad Max-Forwards {raw[:40]!r}", header="max-forwards")
            v = int(digits)
        cache["max-forwards"] = v
        return v

    @property
    def content_type(self) -> ContentType | None:
        cache = self._cache
        if "content-type" in cache:
            return cache["content-type"]
        raw = self._single("content-type")
        v = cache["content-type"] = parse_content_type(raw) if raw is not None else None
        return v

    def option_tags(self, name: str) -> list[str]:
        """Require, Proxy-Require, Supported, Unsupported: lower-cased option tags."""
        out: list[str] = []
        for line in self._idx().get(_key(name), ()):
            out.extend(split_tokens(line))
        return out

    def validate(self) -> None:
        """Parse every header the stack relies on, raising :class:`ParseError` on the first fault.

        That is the top Via (all Via values), From, To, Call-ID, CSeq, Max-Forwards,
        Content-Length, Content-Type, Contact, Route and Record-Route, including the URIs
        inside the name-addr values (a ``Contact: *`` has none).
        """
        self.via  # noqa: B018 - parses every Via value
        self.top_via  # noqa: B018
        self.from_.uri  # noqa: B018
        self.to.uri  # noqa: B018
        self.call_id  # noqa: B018
        self.cseq  # noqa: B018
        self.max_forwards  # noqa: B018
        self.content_length  # noqa: B018
        self.content_type  # noqa: B018
        for contact in self.contact:
            if contact.uri_text != "*":
                contact.uri  # noqa: B018
        for route in self.route:
            route.uri  # noqa: B018
        for route in self.record_route:
            route.uri  # noqa: B018

    # -- serialisation -----------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length always states the body's real length."""
        body = self.body
        parts = [self.start_line()]
        seen_cl = False
        for key, name, value in self.fields:
            if key == "content-length":
                if seen_cl:
                    continue
                seen_cl = True
                value = str(len(body))
            parts.append(f"{name}: {value}")
        if not seen_cl:
            parts.append(f"Content-Length: {len(body)}")
        parts.append("\r\n")
        head = "\r\n".join(parts).encode("utf-8", "surrogateescape")
        return head + body if body else head

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def header_items(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs of every header line, in order."""
        return [(k, v) for k, _, v in self.fields]

    def _eq_items(self) -> list[tuple[str, str]]:
        # Content-Length is left out: to_bytes() writes the body's real length, and
        # equality compares the bodies themselves.
        return [(k, v) for k, _, v in self.fields if k != "content-length"]


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        fields: list[tuple[str, str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(fields, body)
        self.method = method
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        self.version = version

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __eq__(self, other: object) -> bool:
        """Same method, Request-URI text, header values (names compared by key) and body.

        Content-Length lines are not compared: they follow from the body.
        """
        return (
            isinstance(other, Request)
            and self.method == other.method
            and str(self.uri) == str(other.uri)
            and self.body == other.body
            and self._eq_items() == other._eq_items()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason", "version")

    def __init__(
        self,
        status: int,
        reason: str = "",
        fields: list[tuple[str, str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(fields, body)
        self.status = status
        self.reason = reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __eq__(self, other: object) -> bool:
        """Same status, reason, header values and body (Content-Length not compared)."""
        return (
            isinstance(other, Response)
            and self.status == other.status
            and self.reason == other.reason
            and self.body == other.body
            and self._eq_items() == other._eq_items()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _key(name: str) -> str:
    key = _key_cache.get(name)
    return key if key is not None else header_key(name)


def _check_value(value: str) -> None:
    if "\r" in value or "\n" in value:
        # A CR or LF would end the header line early: header injection.
        raise ValueError(f"header value contains a line break: {value[:60]!r}")


def _parse_content_length(raw: str) -> int:
    if not raw.isdigit() or not raw.isascii():
        # RFC 4475 §3.1.2.3: the framing is lost; a stream must be closed.
        raise ParseError(
            f"bad Content-Length {raw[:40]!r}", header="content-length", fatal_to_stream=True
        )
    digits = raw.lstrip("0") or "0"
    if len(digits) > 12:
        return 10**12  # more than any limit; int() of a huge string is slow or refused
    return int(digits)


def _content_length_of(lines: list[str]) -> int:
    """The one Content-Length of a message that may repeat the header with the same value."""
    length = _parse_content_length(lines[0])
    for other in lines[1:]:
        if _parse_content_length(other) != length:
            # RFC 4475 §3.3.9: no way to know where the body ends.
            raise ParseError(
                "conflicting Content-Length values", header="content-length", fatal_to_stream=True
            )
    return length


def split_head(data: bytes) -> tuple[bytes, int] | None:
    """Find the end of the header section: ``(head, body_start)`` or None.

    CRLF CRLF is the rule; a bare LF LF is tolerated (RFC 5118's archive uses it).
    """
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n", 0, i if i >= 0 else len(data))
    if j >= 0 and (i < 0 or j < i):
        return data[:j], j + 2
    if i >= 0:
        return data[:i], i + 4
    return None


class _Folded(Exception):
    """The header section has continuation lines: unfold it and start again."""


def _odd_lines(head: str) -> list[str]:
    """The lines of a header section whose line ends are not all CRLF.

    LF alone is tolerated as a line end (RFC 5118's archive uses it); a CR anywhere
    but before LF is an error.
    """
    lines = head.split("\n")
    for i, line in enumerate(lines):
        if line[-1:] == "\r":
            line = lines[i] = line[:-1]
        if "\r" in line:
            raise ParseError(f"stray CR in header line {line[:60]!r}")
    return lines


def parse_head(head: str) -> tuple[str, list[tuple[str, str, str]], dict[str, list[str]]]:
    """Split a decoded header section into the start line and header fields."""
    try:
        return _parse_head(head)
    except _Folded:
        # RFC 3261 §7.3.1: a line starting with SP/HT continues the previous one.
        return _parse_head(_FOLD_RE.sub(" ", head), unfolded=True)


def _parse_head(
    head: str, unfolded: bool = False
) -> tuple[str, list[tuple[str, str, str]], dict[str, list[str]]]:
    lines = head.split("\r\n")
    n = len(lines) - 1
    if head.count("\n") != n or head.count("\r") != n:
        lines = _odd_lines(head)
    fields: list[tuple[str, str, str]] = []
    index: dict[str, list[str]] = {}
    append = fields.append
    index_get = index.get
    cache_get = _key_cache.get
    it = iter(lines)
    start = next(it)
    for line in it:
        name, colon, value = line.partition(":")
        key = cache_get(name)
        if key is None or not colon:
            if not line.strip(WS):
                continue
            if not unfolded and line[0] in WS:
                raise _Folded
            if not colon:
                raise ParseError(f"header line without a colon: {line[:60]!r}")
            key = header_key(name)
        value = value.strip(WS)
        append((key, name, value))
        lst = index_get(key)
        if lst is None:
            index[key] = [value]
        else:
            lst.append(value)
    return start, fields, index


def parse_request_line(line: str) -> tuple[str, Uri, str]:
    parts = line.split(" ")
    if len(parts) != 3 or "" in parts:
        raise ParseError(f"malformed Request-Line {line[:80]!r}")
    method, uri_text, version = parts
    if version != SIP_VERSION:
        if version.upper() != SIP_VERSION:
            if _VERSION_RE.fullmatch(version):
                raise ParseError(f"SIP version {version} not supported", 505)
            raise ParseError(f"malformed SIP version {version[:20]!r}")
        version = SIP_VERSION
    if method not in _COMMON_METHODS and TOKEN_RE.fullmatch(method) is None:
        raise ParseError(f"bad method {method[:40]!r}")
    if uri_text[:1] == "<":
        # RFC 4475 §3.1.2.7
        raise ParseError("Request-URI must not be enclosed in <>")
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers is not None:
        # RFC 3261 §19.1.1 (table): headers are not allowed in a Request-URI.
        raise ParseError("Request-URI must not contain headers")
    return method, uri, version


def parse_status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise ParseError(f"malformed or unsupported Status-Line {line[:80]!r}")
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise ParseError(f"bad status code {code[:10]!r}")
    return SIP_VERSION, int(code), reason


def parse_head_bytes(head: bytes) -> Request | Response:
    """A message (with an empty body) from the raw header section of a stream message."""
    if _fast_head is not None:
        msg = _fast_head(head)
        if msg is not None:
            return msg
    return build_message(head.decode("utf-8", "surrogateescape"), b"")


def build_message(head: str, body: bytes) -> Request | Response:
    """A message from its decoded header section and its body (already framed)."""
    try:
        start, fields, index = _parse_head(head)
    except _Folded:
        start, fields, index = parse_head(head)
    msg: Request | Response
    if start[:4].upper() == "SIP/":
        version, status, reason = parse_status_line(start)
        msg = Response.__new__(Response)
        msg.status = status
        msg.reason = reason
    else:
        method, uri, version = parse_request_line(start)
        msg = Request.__new__(Request)
        msg.method = method
        msg.uri = uri
    # The fields Message.__init__ would set, without its argument handling.
    msg.version = version
    msg.fields = fields
    msg.body = body
    msg.context = None
    msg._index = index
    msg._cache = {}
    return msg


def parse_message(data: bytes, *, max_size: int | None = None) -> Request | Response:
    """Parse one message from a datagram (RFC 3261 §18.3 framing for UDP).

    The body is what follows the header section, cut to Content-Length;
    octets beyond it are ignored (RFC 4475 §3.1.1.8). A Content-Length larger
    than the body is an error (§3.1.2.2).
    """
    if max_size is not None and len(data) > max_size:
        raise ParseError(f"message of {len(data)} octets exceeds {max_size}", 513)
    if _fast_datagram is not None:
        msg = _fast_datagram(data)
        if msg is not None:
            return msg
    return parse_message_py(data)


def parse_message_py(data: bytes) -> Request | Response:
    """:func:`parse_message` in Python only (what the compiled fast path must agree with)."""
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    if data[:1] == b"\r" or data[:1] == b"\n":
        data = data.lstrip(b"\r\n")
    i = data.find(b"\r\n\r\n")
    if i > 0 and data.find(b"\n\n", 0, i) < 0:
        head_bytes = data[:i]
        rest = data[i + 4 :]
    else:
        split = split_head(data)
        if split is None:
            # No empty line: the datagram holds only headers (RFC 5118 §4.10's files).
            head_bytes, rest = data.rstrip(b"\r\n"), b""
        else:
            head_bytes, body_start = split
            rest = data[body_start:]
        if not head_bytes:
            raise ParseError("empty message")
    msg = build_message(head_bytes.decode("utf-8", "surrogateescape"), b"")
    cl_lines = msg._index.get("content-length")  # type: ignore[union-attr]
    if cl_lines:
        if len(cl_lines) == 1:
            raw = cl_lines[0]
            if raw.isdigit() and raw.isascii() and len(raw) < 10:
                length = int(raw)
            else:
                length = _parse_content_length(raw)
            msg._cache["content-length"] = length
        else:
            length = _content_length_of(cl_lines)
        if length > len(rest):
            raise ParseError(
                f"Content-Length {cl_lines[0][:20]} is larger than the {len(rest)} octets received",
                header="content-length",
            )
        msg.body = rest[:length] if length < len(rest) else rest
    else:
        msg.body = rest
    return msg


# -- salvage -----------------------------------------------------------------


class _UnparsedUri(Uri):
    """A Request-URI that did not parse, kept as text by :func:`salvage_request`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.scheme = text.partition(":")[0] if ":" in text else ""
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"_UnparsedUri({self.text!r})"


def salvage_request(data: bytes) -> Request | None:
    """What can be read of a request that :func:`parse_message` rejected, to answer it.

    RFC 3261 §8.2 wants a 400 (or 505, 416 …) for a malformed request, and the
    response needs the request's Via, From, To, Call-ID and CSeq copied into it
    (§8.2.6.2). This parse is tolerant: header lines that cannot be read are
    skipped, values are kept raw and unvalidated, the body is dropped, and a
    Request-URI that does not parse is kept as text. The result is only fit for
    :func:`~sipua.sip.builders.make_response`; its typed accessors may still raise.

    Returns None for a response, or when not even a request line and a Via are found.
    """
    data = data.lstrip(b"\r\n")
    split = split_head(data)
    head = (split[0] if split is not None else data).decode("utf-8", "surrogateescape")
    head = _FOLD_RE.sub(" ", head)
    lines = head.split("\n")
    start = lines[0].strip(" \t\r")
    parts = start.split()
    if not parts or TOKEN_RE.fullmatch(parts[0]) is None:
        return None  # a response ("SIP/2.0" is no token) or garbage
    method = parts[0]
    uri_text = parts[1] if len(parts) > 1 else ""
    uri: Uri
    try:
        uri = parse_uri(uri_text.strip("<>"))
    except ParseError:
        uri = _UnparsedUri(uri_text)
    fields: list[tuple[str, str, str]] = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        name, colon, value = line.partition(":")
        if not colon or "\r" in value:
            continue
        try:
            key = header_key(name)
        except ParseError:
            continue
        fields.append((key, name.strip(WS), value.strip(WS)))
    if not any(f[0] == "via" for f in fields):
        return None
    return Request(method, uri, fields, b"")


# -- the compiled fast path --------------------------------------------------


def _load_speedups() -> tuple[Any, Any]:
    """sipua.sip._speedups, built from csrc/*.c when the package was installed.

    It parses messages of the common shape (and their Via, From, To, Call-ID, CSeq,
    Contact and Content-Length) into the same objects as the code above and returns
    None for anything else, which this module then parses. ``SIPUA_NO_SPEEDUPS=1``
    turns it off; without a C compiler at install time it is simply absent.
    """
    import os

    if os.environ.get("SIPUA_NO_SPEEDUPS"):
        return None, None
    try:
        from . import _speedups
    except ImportError:
        return None, None
    from .headers import header_key as _header_key

    _speedups.setup(
        Request, Response, Via, NameAddr, SipUri, CSeq, _key_cache, _header_key, SIP_VERSION
    )
    return _speedups.parse_datagram, _speedups.parse_head


_fast_datagram, _fast_head = _load_speedups()
SPEEDUPS = _fast_datagram is not None
