"""Header names and the typed header values the stack uses (RFC 3261 §7.3, §20).

Typed values keep the text they were parsed from and serialise back to it
unchanged; the ones the stack builds itself are made from their fields.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .grammar import (
    COMMON_METHODS,
    TOKEN_RE,
    WS,
    format_params,
    param_value,
    parse_params,
    parse_uint,
    quote,
    unquote,
)
from .uri import SIP_URI_PATTERN, Uri, parse_uri, sip_uri_from_groups

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_DISPLAY_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1). Others
# (Authorization, Date, WWW-Authenticate …) contain commas that separate nothing.
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "content-language",
        "in-reply-to",
        "path",
        "service-route",
        "reason",
        "warning",
    }
)

_key_cache: dict[str, str] = {}
_KEY_CACHE_LIMIT = 1024


def header_key(name: str) -> str:
    """The canonical key of a header name: lower case, compact forms expanded."""
    key = _key_cache.get(name)
    if key is not None:
        return key
    stripped = name.rstrip(WS)
    if not stripped or TOKEN_RE.fullmatch(stripped) is None:
        raise ParseError(f"bad header name {name[:40]!r}", header=name[:40])
    key = stripped.lower()
    key = COMPACT_FORMS.get(key, key)
    if len(_key_cache) < _KEY_CACHE_LIMIT:
        _key_cache[name] = key
    return key


def _prime_key_cache() -> None:
    # Common spellings are cached up front, so a peer sending many odd header names
    # fills the cache's free slots, never displaces these.
    names = list(COMPACT_FORMS) + list(COMPACT_FORMS.values()) + [
        "cseq", "max-forwards", "content-length", "content-type", "allow", "supported",
        "require", "proxy-require", "unsupported", "user-agent", "server", "route",
        "record-route", "expires", "min-expires", "accept", "accept-encoding",
        "accept-language", "authorization", "proxy-authorization", "www-authenticate",
        "proxy-authenticate", "authentication-info", "date", "timestamp", "organization",
        "priority", "warning", "reason", "rack", "rseq", "min-se", "privacy",
        "p-asserted-identity", "p-preferred-identity", "remote-party-id", "diversion",
        "history-info", "mime-version", "replaces", "in-reply-to", "reply-to",
        "error-info", "call-info", "alert-info", "retry-after", "path", "service-route",
        "sip-etag", "sip-if-match", "content-disposition", "content-language",
        "subscription-state", "x-asterisk-hangupcause", "x-asterisk-hangupcausecode",
    ]  # fmt: skip
    for key in names:
        canonical = COMPACT_FORMS.get(key, key)
        for spelling in {key, key.upper(), display_name(canonical) if len(key) > 1 else key}:
            _key_cache[spelling] = canonical
    for spelling in ("Call-ID", "Call-Id", "CALL-ID"):
        _key_cache[spelling] = "call-id"
    for spelling in ("CSeq", "Cseq", "CSEQ"):
        _key_cache[spelling] = "cseq"


def display_name(key: str) -> str:
    """The usual spelling of a header name, for headers the stack writes."""
    name = _DISPLAY_NAMES.get(key)
    if name is None:
        name = _DISPLAY_NAMES[key] = "-".join(p.capitalize() for p in key.split("-"))
    return name


class Via:
    """One Via value: ``SIP/2.0/<transport> <sent-by> *(;param)`` (RFC 3261 §20.42)."""

    __slots__ = ("protocol", "transport", "host", "port", "params", "_text")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
        _text: str | None = None,
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self._text = _text

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | bool | None:
        """None when absent, True when present without value, else the port."""
        if "rport" not in self.params:
            return None
        v = self.params["rport"]
        if v is None:
            return True
        return int(v) if v.isdigit() and v.isascii() and len(v) <= 5 else True

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        v = self.params.get("ttl")
        return int(v) if v and v.isdigit() and v.isascii() and len(v) <= 3 else None

    @property
    def host_bare(self) -> str:
        h = self.host
        return h[1:-1] if h[:1] == "[" else h

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self._text is None:
            self._text = (
                f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"
            )
        return self._text

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Via) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# Parameters with no quotes or LWS, valid as a whole (what parse_params accepts on
# its own fast path).
_SIMPLE_PARAMS = r"((?:;" + _TOKEN + r"(?:=[^;\"<>=, \t]+)?)*)"
_VIA_FAST = re.compile(
    r"SIP/2\.0/("
    + _TOKEN
    + r") (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::([0-9]{1,5}))?"
    + _SIMPLE_PARAMS
    + r"\Z"
)
_VIA_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?\Z",
    re.S,
)


def parse_via(value: str) -> Via:
    """One Via element (already split from its neighbours)."""
    m = _VIA_FAST.match(value)
    if m is not None:
        transport, host, port, ptext = m.groups()
        via = _new(Via)
        if port is not None:
            via.port = int(port)
            if via.port > 65535:
                raise ParseError(f"Via port out of range in {value[:80]!r}", header="via")
        else:
            via.port = None
        params: dict[str, str | None] = {}
        if ptext:
            for part in ptext[1:].split(";"):
                name, eq, pvalue = part.partition("=")
                params[name.lower()] = pvalue if eq else None
        via.params = params
        via.protocol = "SIP/2.0"
        via.transport = transport if transport.isupper() else transport.upper()
        via.host = host
        via._text = value
        return via
    return _parse_via_general(value)


def _parse_via_general(value: str) -> Via:
    m = _VIA_RE.match(value)
    if m is None:
        raise ParseError(f"bad Via {value[:80]!r}", header="via")
    name, version, transport, host, port, ptext = m.groups()
    protocol = f"{name}/{version}"
    params = parse_params(ptext, "Via") if ptext else {}
    port_n = None
    if port is not None:
        port_n = int(port)
        if port_n > 65535:
            raise ParseError(f"Via port out of range in {value[:80]!r}", header="via")
    return Via(transport.upper(), host, port_n, params, protocol, value)


_new = object.__new__


class NameAddr:
    """``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)`` (RFC 3261 §20.10, §20.20).

    Used for From, To, Contact, Route, Record-Route, Refer-To, Referred-By.
    The URI is parsed when first used.
    """

    __slots__ = ("display_name", "uri_text", "params", "bracketed", "_uri", "_text")

    def __init__(
        self,
        uri: Uri | str,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
        bracketed: bool = True,
        _text: str | None = None,
    ) -> None:
        if isinstance(uri, Uri):
            self._uri: Uri | None = uri
            self.uri_text = str(uri)
        else:
            self._uri = None
            self.uri_text = uri
        self.display_name = display_name
        self.params = params if params is not None else {}
        self.bracketed = bracketed
        self._text = _text

    @property
    def uri(self) -> Uri:
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self.uri_text)
        return uri

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def param(self, name: str) -> str | None:
        return param_value(self.params.get(name))

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with a ``tag`` parameter; the rest of the text is kept as it was."""
        params = dict(self.params)
        params["tag"] = tag
        text = None
        if self._text is not None and "tag" not in self.params:
            text = f"{self._text};tag={tag}"
        return NameAddr(self._uri or self.uri_text, self.display_name, params, self.bracketed, text)

    def __str__(self) -> str:
        if self._text is None:
            if self.display_name is not None:
                dn = self.display_name
                # Tokens separated by single LWS runs read back the same unquoted.
                dn = dn if _DISPLAY_TOKENS.fullmatch(dn) else quote(dn)
                text = f"{dn} <{self.uri_text}>"
            else:
                text = f"<{self.uri_text}>"
            self._text = text + format_params(self.params)
        return self._text

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameAddr) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_QUOTED_PREFIX = re.compile(r'"(?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"')


# The common shape in one match: a quoted display name without escapes or a run of
# tokens, a SIP URI in <>, parameters without quotes or LWS. What it accepts parses
# exactly as on the general path below, with the URI parsed at the same time.
_NAME_ADDR_FAST = re.compile(
    r'(?:"([^"\\\r\n]*)"[ \t]*|(' + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")*)[ \t]*)?"
    r"<(" + SIP_URI_PATTERN + r")>" + _SIMPLE_PARAMS + r"\Z"
)


def parse_name_addr(value: str, header: str = "header", *, allow_star: bool = False) -> NameAddr:
    """One name-addr / addr-spec element with its parameters."""
    m = _NAME_ADDR_FAST.match(value)
    if m is not None:
        quoted, tokens, uri_text, *uri_groups, ptext = m.groups()
        na = _new(NameAddr)
        na.display_name = quoted if quoted is not None else tokens
        na.uri_text = uri_text
        na._uri = sip_uri_from_groups(uri_text, *uri_groups)
        params: dict[str, str | None] = {}
        if ptext:
            for part in ptext[1:].split(";"):
                name, eq, pvalue = part.partition("=")
                params[name.lower()] = pvalue if eq else None
        na.params = params
        na.bracketed = True
        na._text = value
        return na
    return _parse_name_addr_general(value, header, allow_star)


def _parse_name_addr_general(value: str, header: str, allow_star: bool) -> NameAddr:
    lt = value.find("<")
    if lt >= 0:
        if value[:1] == '"':
            m = _QUOTED_PREFIX.match(value)
            if m is None:
                raise ParseError(f"unterminated quoted display name in {header}", header=header)
            end = m.end()
            if value[end:lt].strip(WS):
                raise ParseError(f"junk between display name and URI in {header}", header=header)
            display: str | None = unquote(m.group(0))
            lt = value.find("<", end)
        else:
            text = value[:lt].strip(WS)
            if text and _DISPLAY_TOKENS.fullmatch(text) is None:
                # RFC 4475 §3.1.2.15: non-token characters need quotes.
                raise ParseError(
                    f"display name {text[:40]!r} in {header} must be quoted", header=header
                )
            display = text or None
        gt = value.find(">", lt)
        if gt < 0:
            raise ParseError(f"missing '>' in {header}", header=header)
        uri_text = value[lt + 1 : gt]
        rest = value[gt + 1 :]
        bracketed = True
    else:
        if value[:1] == '"':
            raise ParseError(f"display name without <URI> in {header}", header=header)
        if allow_star and value == "*":
            return NameAddr("*", None, {}, False, "*")
        semi = value.find(";")
        if semi >= 0:
            uri_text, rest = value[:semi].rstrip(WS), value[semi:]
        else:
            uri_text, rest = value, ""
        display = None
        bracketed = False
        # RFC 3261 §20.10: an addr-spec with ',', '?' or ';' must be in <>.
        if "?" in uri_text or "," in uri_text:
            raise ParseError(
                f"URI in {header} must be enclosed in <>: {uri_text[:60]!r}", header=header
            )
    if not uri_text or any(c in uri_text for c in ' \t<>"'):
        raise ParseError(f"bad URI {uri_text[:60]!r} in {header}", header=header)
    if ":" not in uri_text:
        raise ParseError(f"URI without scheme in {header}: {uri_text[:60]!r}", header=header)
    rest = rest.strip(WS)
    params = parse_params(rest, header) if rest else {}
    return NameAddr(uri_text, display, params, bracketed, value)


class CSeq:
    """``CSeq: <number> <method>`` (RFC 3261 §20.16)."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CSeq) and self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))


def parse_cseq(value: str) -> CSeq:
    seq, sp, method = value.partition(" ")
    if sp and method in COMMON_METHODS and seq.isdigit() and seq.isascii() and len(seq) < 10:
        return CSeq(int(seq), method)  # fewer than 10 digits: below 2**32
    return _parse_cseq_general(value)


def _parse_cseq_general(value: str) -> CSeq:
    # CSeq = 1*DIGIT LWS Method: only SP/HT separate (str.split() would also split on
    # CR, NBSP and other Unicode spaces).
    parts = value.replace("\t", " ").split(" ")
    if len(parts) > 2:
        parts = [p for p in parts if p]
    if len(parts) != 2:
        raise ParseError(f"bad CSeq {value[:60]!r}", header="cseq")
    seq = parse_uint(parts[0], "CSeq")
    if TOKEN_RE.fullmatch(parts[1]) is None:
        raise ParseError(f"bad CSeq method {parts[1][:40]!r}", header="cseq")
    return CSeq(seq, parts[1])


class ContentType:
    """``type/subtype *(;param)``, compared case-insensitively."""

    __slots__ = ("mime", "params")

    def __init__(self, mime: str, params: dict[str, str | None] | None = None) -> None:
        self.mime = mime.lower()
        self.params = params or {}

    @property
    def type(self) -> str:
        return self.mime.partition("/")[0]

    @property
    def subtype(self) -> str:
        return self.mime.partition("/")[2]

    def __str__(self) -> str:
        return self.mime + format_params(self.params)

    def __repr__(self) -> str:
        return f"ContentType({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """Same type/subtype (case-insensitive) and parameters (names case-insensitive)."""
        if not isinstance(other, ContentType):
            return NotImplemented
        return self.mime == other.mime and self.params == other.params

    def __hash__(self) -> int:
        return hash(self.mime)


_MIME_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*(.*)\Z", re.S
)


_SIMPLE_MIME: dict[str, str] = {}  # "type/subtype" as written -> lower case, for values seen


def parse_content_type(value: str) -> ContentType:
    mime = _SIMPLE_MIME.get(value)
    if mime is not None:  # a bare type/subtype already checked once
        ct = _new(ContentType)
        ct.mime = mime
        ct.params = {}
        return ct
    m = _MIME_RE.match(value)
    if m is None:
        raise ParseError(f"bad Content-Type {value[:60]!r}", header="content-type")
    if not m.group(3) and len(_SIMPLE_MIME) < 64 and value == f"{m.group(1)}/{m.group(2)}":
        _SIMPLE_MIME[value] = value.lower()
    return ContentType(f"{m.group(1)}/{m.group(2)}", parse_params(m.group(3), "Content-Type"))


_prime_key_cache()
