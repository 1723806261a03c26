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
        """URI comparison of RFC 3261 §19.1.4 (the parts the stack relies on)."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if self.user_unescaped != other.user_unescaped or self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for key in ("user", "ttl", "method", "maddr", "transport"):
            a, b = self.params.get(key), other.params.get(key)
            if (a is None) != (b is None) or (a and b and a.lower() != b.lower()):
                return False
        for key in set(self.params) & set(other.params):
            a, b = self.params[key], other.params[key]
            if (a or "").lower() != (b or "").lower():
                return False
        return True


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
