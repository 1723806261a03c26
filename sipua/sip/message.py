"""SIP requests and responses: parsing and serialisation (RFC 3261 §7, §20, §25).

``parse_message`` splits a message into its start line, an ordered list of
header fields and the body. Headers the stack uses have typed accessors
(``via``, ``from_``, ``to``, ``call_id``, ``cseq``, ``contact`` …) that parse on
first use and raise :class:`ParseError` when the value is malformed; other
headers are kept verbatim and serialised back unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ParseError
from .grammar import TOKEN_RE, WS, split_commas, split_tokens
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


class Message:
    """What requests and responses share: header fields and a body.

    ``fields`` is the ordered list of ``(key, name, value)``: ``key`` the
    canonical lower-case name (compact forms expanded), ``name`` as written,
    ``value`` with surrounding whitespace and line folding removed.
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
        key = _key(name)
        entry = (key, display_name(key) if name.lower() == key or len(name) == 1 else name, value)
        if first:
            self.fields.insert(0, entry)
        else:
            self.fields.append(entry)
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every line of a header with one, where the first one was."""
        key = _key(name)
        fields = self.fields
        for i, (k, n, _) in enumerate(fields):
            if k == key:
                fields[i] = (k, n, value)
                self.fields = [f for j, f in enumerate(fields) if j == i or f[0] != key]
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

    # -- typed header access -----------------------------------------------

    def _single(self, key: str) -> str | None:
        lst = self._idx().get(key)
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
            v = cache["via"] = [parse_via(e) for e in self.values("via")]
        return v

    @property
    def top_via(self) -> Via:
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
        return self._name_addr("from")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("to")

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
            v = cache[key] = [
                parse_name_addr(e, name, allow_star=allow_star) for e in self.values(key)
            ]
        return v

    @property
    def contact(self) -> list[NameAddr]:
        """Contact values; ``Contact: *`` gives one NameAddr whose uri_text is ``*``."""
        return self._name_addr_list("contact", allow_star=True)

    @property
    def route(self) -> list[NameAddr]:
        return self._name_addr_list("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._name_addr_list("record-route")

    @property
    def content_length(self) -> int | None:
        raw = self._single("content-length")
        if raw is None:
            return None
        return _parse_content_length(raw)

    @property
    def max_forwards(self) -> int | None:
        cache = self._cache
        if "max-forwards" in cache:
            return cache["max-forwards"]
        raw = self._single("max-forwards")
        v = None
        if raw is not None:
            if not raw.isdigit() or not raw.isascii() or int(raw) > 255:
                raise ParseError(f"bad Max-Forwards {raw[:40]!r}", header="max-forwards")
            v = int(raw)
        cache["max-forwards"] = v
        return v

    @property
    def content_type(self) -> ContentType | None:
        raw = self._single("content-type")
        return parse_content_type(raw) if raw is not None else None

    def option_tags(self, name: str) -> list[str]:
        """Require, Proxy-Require, Supported, Unsupported: lower-cased option tags."""
        out: list[str] = []
        for line in self._idx().get(_key(name), ()):
            out.extend(split_tokens(line))
        return out

    def validate(self) -> None:
        """Parse every header the stack relies on, raising :class:`ParseError` on the first fault."""
        for parse in _VALIDATED:
            parse.fget(self)  # type: ignore[attr-defined]

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
        """``(key, value)`` pairs: what message equality compares."""
        return [(k, v) for k, _, v in self.fields]


_VALIDATED = (
    Message.top_via,
    Message.from_,
    Message.to,
    Message.call_id,
    Message.cseq,
    Message.max_forwards,
    Message.contact,
    Message.content_length,
)


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
        return (
            isinstance(other, Request)
            and self.method == other.method
            and str(self.uri) == str(other.uri)
            and self.header_items() == other.header_items()
            and self.body == other.body
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
        return (
            isinstance(other, Response)
            and self.status == other.status
            and self.reason == other.reason
            and self.header_items() == other.header_items()
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _key(name: str) -> str:
    key = _key_cache.get(name)
    return key if key is not None else header_key(name)


def _parse_content_length(raw: str) -> int:
    if not raw.isdigit() or not raw.isascii():
        # RFC 4475 §3.1.2.3: the framing is lost; a stream must be closed.
        raise ParseError(
            f"bad Content-Length {raw[:40]!r}", header="content-length", fatal_to_stream=True
        )
    return int(raw)


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


def parse_head(head: str) -> tuple[str, list[tuple[str, str, str]], dict[str, list[str]]]:
    """Split a decoded header section into the start line and header fields."""
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n") if "\r" in head else head.split("\n")
    fields: list[tuple[str, str, str]] = []
    index: dict[str, list[str]] = {}
    cache_get = _key_cache.get
    for i in range(1, len(lines)):
        line = lines[i]
        name, colon, value = line.partition(":")
        if not colon:
            if not line.strip(WS):
                continue
            raise ParseError(f"header line without a colon: {line[:60]!r}")
        key = cache_get(name)
        if key is None:
            key = header_key(name)
        value = value.strip(WS)
        fields.append((key, name, value))
        lst = index.get(key)
        if lst is None:
            index[key] = [value]
        else:
            lst.append(value)
    return lines[0], fields, index


def parse_request_line(line: str) -> tuple[str, Uri, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"malformed Request-Line {line[:80]!r}")
    method, uri_text, version = parts
    if version != SIP_VERSION:
        if version.upper() != SIP_VERSION:
            if _VERSION_RE.fullmatch(version):
                raise ParseError(f"SIP version {version} not supported", 505)
            raise ParseError(f"malformed SIP version {version[:20]!r}")
        version = SIP_VERSION
    if TOKEN_RE.fullmatch(method) is None:
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


def build_message(head: str, body: bytes) -> Request | Response:
    """A message from its decoded header section and its body (already framed)."""
    start, fields, index = parse_head(head)
    if start[:4].upper() == "SIP/":
        version, status, reason = parse_status_line(start)
        msg: Request | Response = Response(status, reason, fields, body, version)
    else:
        method, uri, version = parse_request_line(start)
        msg = Request(method, uri, fields, body, version)
    msg._index = index
    return msg


def parse_message(data: bytes, *, max_size: int | None = None) -> Request | Response:
    """Parse one message from a datagram (RFC 3261 §18.3 framing for UDP).

    The body is what follows the header section, cut to Content-Length;
    octets beyond it are ignored (RFC 4475 §3.1.2.8). A Content-Length larger
    than the body is an error (§3.1.2.2).
    """
    if max_size is not None and len(data) > max_size:
        raise ParseError(f"message of {len(data)} octets exceeds {max_size}", 513)
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    split = split_head(data)
    if split is None:
        # No empty line: the datagram holds only headers (RFC 5118 §4.10's files).
        head_bytes, rest = data.rstrip(b"\r\n"), b""
    else:
        head_bytes, body_start = split
        rest = data[body_start:]
    if not head_bytes:
        raise ParseError("empty message")
    head = head_bytes.decode("utf-8", "surrogateescape")
    msg = build_message(head, b"")
    cl_lines = msg._idx().get("content-length")
    if cl_lines:
        if len(cl_lines) > 1 and len(set(cl_lines)) > 1:
            raise ParseError(
                "conflicting Content-Length values", header="content-length", fatal_to_stream=True
            )
        length = _parse_content_length(cl_lines[0])
        if length > len(rest):
            raise ParseError(
                f"Content-Length {length} is larger than the {len(rest)} octets received",
                header="content-length",
            )
        msg.body = rest[:length]
    else:
        msg.body = rest
    return msg
