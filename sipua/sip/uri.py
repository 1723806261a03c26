"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), and any other absolute URI.

A parsed URI keeps the text it came from and serialises back to it unchanged
until it is modified through :meth:`SipUri.replace`. User parts stay escaped as
written; :attr:`SipUri.user_unescaped` decodes ``%HH`` once (never recursively,
RFC 4475 §3.1.1.3).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .errors import ParseError
from .grammar import format_params

_SIP_RE = re.compile(
    r"(?P<scheme>[sS][iI][pP][sS]?):"
    r"(?:(?P<userinfo>[^@\s<>\"]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>;[^?\s<>\"]*)?"
    r"(?:\?(?P<headers>[^\s<>\"]*))?\Z"
)
# The common shape, checked in one match: lower-case scheme, user without ':' and an
# optional password, every parameter already valid. It accepts nothing _SIP_RE and the
# checks in parse_uri() would refuse, and parses what it accepts the same way; anything
# else takes the general path, which also words the error.
_PCHAR = r"[A-Za-z0-9\-.!~*'()%\[\]/:&+$_]+"
# Seven groups: scheme, user, password, host, port, parameters, headers. Also used
# inside the name-addr pattern of headers.py.
SIP_URI_PATTERN = (
    r"(sips?):"
    r"(?:([^@\s<>\"\[\]:]+)(?::([^@\s<>\"\[\]]*))?@)?"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*)"
    r"(?::([0-9]{1,5}))?"
    r"((?:;" + _PCHAR + r"(?:=" + _PCHAR + r")?)*)"
    r"(?:\?([^\s<>\"]*))?"
)
_SIP_FAST = re.compile(SIP_URI_PATTERN + r"\Z")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_USERINFO_BAD = re.compile(r"[\s<>\"\[\]]")
_URI_PARAM_RE = re.compile(r"[A-Za-z0-9\-.!~*'()%\[\]/:&+$_]+")


class Uri:
    """Base of all URIs. ``str(uri)`` is its wire form."""

    __slots__ = ("scheme",)

    scheme: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Uri) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def equivalent(self, other: Uri) -> bool:
        """Whether two URIs name the same resource (textual equality unless a scheme says more)."""
        return str(self) == str(other)


# RFC 3261 §19.1.4: characters other than the reserved ones are equivalent to their
# %HH encoding; reserved ones are not (sip:a%3Bb@h is not sip:a;b@h).
_RESERVED = frozenset(";/?:@&=+$,")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def _decode_unreserved(match: re.Match[str]) -> str:
    c = chr(int(match.group(1), 16))
    if c in _RESERVED or c == "%" or not c.isascii():
        return "%" + match.group(1).upper()
    return c


def _comparable(text: str | None) -> str | None:
    """``text`` with escapes of unreserved characters decoded, for URI comparison."""
    if text is None or "%" not in text:
        return text
    return _ESCAPE_RE.sub(_decode_unreserved, text)


def _uri_headers(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split("&"):
        name, _, value = part.partition("=")
        out[(_comparable(name) or "").lower()] = _comparable(value) or ""
    return out


class SipUri(Uri):
    """A ``sip:`` or ``sips:`` URI."""

    __slots__ = ("user", "password", "host", "port", "params", "headers", "_text")

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        scheme: str = "sip",
        password: str | None = None,
        _text: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers
        self._text = _text

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def user_unescaped(self) -> str | None:
        if self.user is None or "%" not in self.user:
            return self.user
        return unquote_to_bytes(self.user).decode("utf-8", "surrogateescape")

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets, ready for a socket call."""
        h = self.host
        return h[1:-1] if h[:1] == "[" else h

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def replace(self, **changes: object) -> SipUri:
        """A copy with some fields changed (``params`` replaces the whole dict)."""
        fields = {
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "params": dict(self.params),
            "headers": self.headers,
            "scheme": self.scheme,
            "password": self.password,
        }
        fields.update(changes)
        return SipUri(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        text = self._text
        if text is None:
            parts = [self.scheme, ":"]
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts.append(":" + self.password)
                parts.append("@")
            parts.append(self.host)
            if self.port is not None:
                parts.append(f":{self.port}")
            if self.params:
                parts.append(format_params(self.params))
            if self.headers:
                parts.append("?" + self.headers)
            text = self._text = "".join(parts)
        return text

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def equivalent(self, other: Uri) -> bool:
        """URI comparison of RFC 3261 §19.1.4.

        Scheme, user and password case-sensitively; host case-insensitively; a port, or
        a ``user``/``ttl``/``method``/``maddr``/``transport`` parameter, present in one
        only is a mismatch; other parameters are compared only when both have them;
        URI headers must all be present in both. Escapes of unreserved characters
        equal the characters themselves.
        """
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if _comparable(self.user) != _comparable(other.user):
            return False
        if _comparable(self.password) != _comparable(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _comparable_params(self.params)
        theirs = _comparable_params(other.params)
        for key in ("user", "ttl", "method", "maddr", "transport"):
            if (key in mine) != (key in theirs):
                return False
        for key in mine.keys() & theirs.keys():
            if mine[key] != theirs[key]:
                return False
        return _uri_headers(self.headers) == _uri_headers(other.headers)


class TelUri(Uri):
    """A ``tel:`` URI (RFC 3966): a number and its parameters."""

    __slots__ = ("number", "params", "_text")

    def __init__(
        self, number: str, params: dict[str, str | None] | None = None, _text: str | None = None
    ):
        self.scheme = "tel"
        self.number = number
        self.params = params or {}
        self._text = _text

    @property
    def user(self) -> str:
        return self.number

    def equivalent(self, other: Uri) -> bool:
        """RFC 3966 §4: same number without visual separators, same parameters."""
        if not isinstance(other, TelUri):
            return False
        return _tel_digits(self.number) == _tel_digits(other.number) and _comparable_params(
            self.params
        ) == _comparable_params(other.params)

    def __str__(self) -> str:
        if self._text is None:
            self._text = f"tel:{self.number}{format_params(self.params)}"
        return self._text

    def __repr__(self) -> str:
        return f"TelUri({str(self)!r})"


class AbsoluteUri(Uri):
    """Any other scheme: kept whole, so the UAS can answer 416 (RFC 3261 §8.2.2.1)."""

    __slots__ = ("opaque",)

    def __init__(self, scheme: str, opaque: str):
        self.scheme = scheme
        self.opaque = opaque

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def __repr__(self) -> str:
        return f"AbsoluteUri({str(self)!r})"

    def equivalent(self, other: Uri) -> bool:
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme.lower() == other.scheme.lower()
            and self.opaque == other.opaque
        )


def _comparable_params(params: dict[str, str | None]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in params.items():
        name = (_comparable(key) or "").lower()
        out[name] = None if value is None else (_comparable(value) or "").lower()
    return out


_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")


def _tel_digits(number: str) -> str:
    return (_comparable(number) or "").translate(_VISUAL_SEPARATORS).lower()


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        if (
            not name
            or not _URI_PARAM_RE.fullmatch(name)
            or (eq and not _URI_PARAM_RE.fullmatch(value))
        ):
            raise ParseError(f"bad URI parameter {part!r}", header="uri")
        params[name.lower()] = value if eq else None
    return params


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise :class:`ParseError` (400) when it is malformed."""
    m = _SIP_FAST.match(text)
    if m is not None:
        uri = sip_uri_from_groups(text, *m.groups())
        if uri is not None:
            return uri
    return _parse_uri_general(text)


_new = object.__new__


def sip_uri_from_groups(
    text: str,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: str | None,
    ptext: str,
    headers: str | None,
) -> SipUri | None:
    """The SipUri for a match of SIP_URI_PATTERN; None when the port is out of range."""
    uri = _new(SipUri)
    if port is not None:
        port_n = int(port)
        if port_n > 65535:
            return None
        uri.port = port_n
    else:
        uri.port = None
    if ptext:
        params: dict[str, str | None] = {}
        for part in ptext[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name.lower()] = value if eq else None
        uri.params = params
    else:
        uri.params = {}
    uri.scheme = scheme
    uri.user = user
    uri.password = password
    uri.host = host
    uri.headers = headers
    uri._text = text
    return uri


def _parse_uri_general(text: str) -> Uri:
    m = _SIP_RE.match(text)
    if m is None:
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise ParseError(f"not a URI: {text[:80]!r}", header="uri")
        lower = scheme.lower()
        if lower in ("sip", "sips"):
            raise ParseError(f"malformed {lower} URI: {text[:80]!r}", header="uri")
        if not rest or any(c in rest for c in ' \t\r\n<>"'):
            raise ParseError(f"malformed URI: {text[:80]!r}", header="uri")
        if lower == "tel":
            number, _, ptext = rest.partition(";")
            params = _parse_uri_params(";" + ptext) if ptext else {}
            return TelUri(number, params, _text=text)
        return AbsoluteUri(scheme, rest)
    user = password = None
    userinfo = m.group("userinfo")
    if userinfo is not None:
        if not userinfo or _USERINFO_BAD.search(userinfo):
            raise ParseError(f"bad user part in URI {text[:80]!r}", header="uri")
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
        if not user:
            raise ParseError(f"empty user in URI {text[:80]!r}", header="uri")
    port = m.group("port")
    if port is not None:
        port_n = int(port)
        if port_n > 65535:
            raise ParseError(f"port out of range in URI {text[:80]!r}", header="uri")
    else:
        port_n = None
    ptext = m.group("params")
    params = _parse_uri_params(ptext) if ptext else {}
    return SipUri(
        host=m.group("host"),
        user=user,
        port=port_n,
        params=params,
        headers=m.group("headers"),
        scheme=m.group("scheme").lower(),
        password=password,
        _text=text,
    )


def target_user(uri: Uri) -> str | None:
    """Whom a Request-URI names: a SIP URI's user part (unescaped once), a tel URI's number."""
    if isinstance(uri, SipUri):
        return uri.user_unescaped
    if isinstance(uri, TelUri):
        return uri.number
    return None
