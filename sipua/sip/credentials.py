"""Digest challenges and credentials: their header values and their hashes.

Two halves of one concept, kept together because each needs the other:

- the wire form of the ``WWW-Authenticate`` / ``Proxy-Authenticate`` values
  (*challenges*) and the ``Authorization`` / ``Proxy-Authorization`` values
  (*credentials*), RFC 3261 §25.1 and RFC 7235 §2.1: a scheme, then either
  comma-separated ``name=value`` auth-params (value a token or a quoted string)
  or a single token68;
- the digest computation of RFC 2617 §3.2.2 and RFC 7616 §3.4 over MD5,
  SHA-256 and SHA-512-256 (RFC 8760), with their ``-sess`` variants.

The roles that use them (a server that challenges and verifies, a client that
answers) live in :mod:`sipua.sip.auth`.

Every parse error is an :class:`AuthHeaderError`, whatever the input string;
it carries the status a server should answer with (400).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = [
    "ALGORITHMS",
    "AuthHeaderError",
    "AuthValue",
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestCredentials",
    "digest_response",
    "format_auth_value",
    "get_algorithm",
    "ha1",
    "ha2",
    "parse_auth_values",
    "parse_challenges",
    "parse_credentials",
    "session_ha1",
]

# A header value longer than this is refused outright: no real challenge or
# credentials come near it, and it bounds the work an attacker can ask for.
MAX_VALUE_LENGTH = 16384


class AuthHeaderError(ValueError):
    """A challenge or credentials value that does not follow the grammar.

    A server answers a request carrying such credentials with ``status_hint``
    (RFC 3261 §21.4.1, 400 Bad Request); a client ignores such a challenge.
    """

    status_hint = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------------------------

# RFC 7230 tchar; RFC 3261's token characters are a subset of it.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 7235 token68.
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# An unquoted auth-param value must be a token. We also take the characters of
# token68 and of a bare URI ("/", "=", ":", "@", "?", "[", "]"), which some
# clients send unquoted; none of them can end a value or start another.
_UNQUOTED = _TCHAR | frozenset("/=:@?[]")
_WS = " \t"
# RFC 3261 §7.3.1: a header may be folded over lines; a fold is whitespace.
_FOLD = re.compile(r"\r?\n[ \t]+")


@dataclass(frozen=True, slots=True)
class AuthValue:
    """One challenge or one set of credentials, of any scheme.

    ``params`` holds the auth-params in order, names lowercased (they are
    case-insensitive, RFC 7235 §2.1) and values unquoted. A scheme such as
    ``Basic`` or ``Bearer`` may instead carry a single ``token68``.
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def param(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.params:
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        return format_auth_value(self)


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def _token_end(text: str, i: int, chars: frozenset[str] = _TCHAR) -> int:
    n = len(text)
    while i < n and text[i] in chars:
        i += 1
    return i


def _quoted_string(text: str, i: int) -> tuple[str, int]:
    """The unescaped content of the quoted-string at ``text[i] == '"'``, and the index past it."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            # RFC 3261 §25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            if i + 1 >= n:
                break
            escaped = text[i + 1]
            # Stricter than the grammar: an escaped control character is refused too.
            if (
                ord(escaped) > 0x7F
                or escaped == "\x7f"
                or (ord(escaped) < 0x20 and escaped != "\t")
            ):
                raise AuthHeaderError("bad quoted-pair in quoted string")
            out.append(escaped)
            i += 2
            continue
        if (ord(c) < 0x20 and c != "\t") or c == "\x7f":
            raise AuthHeaderError("control character in quoted string")
        out.append(c)
        i += 1
    raise AuthHeaderError("unterminated quoted string")


def _starts_challenge(text: str, i: int) -> bool:
    """Whether the list element at ``i`` is a new scheme rather than an auth-param.

    An auth-param is ``token [ws] "="``; anything else that begins with a token
    (the token then whitespace, a comma or the end) starts the next challenge.
    """
    end = _token_end(text, i)
    if end == i:
        raise AuthHeaderError(f"expected an auth-param or a scheme at offset {i}")
    after = _skip_ws(text, end)
    return not (after < len(text) and text[after] == "=")


def _skip_list_separators(text: str, i: int) -> int:
    # RFC 7230 §7: a #list may hold empty elements (", ,"); skip them.
    n = len(text)
    while i < n and (text[i] in _WS or text[i] == ","):
        i += 1
    return i


def _token68_at(text: str, i: int) -> int | None:
    """The end of a token68 standing alone at ``i`` (then the end or a comma), else None."""
    end = _token_end(text, i, _TOKEN68)
    if end == i:
        return None
    while end < len(text) and text[end] == "=":
        end += 1
    after = _skip_ws(text, end)
    if after == len(text) or text[after] == ",":
        return end
    return None


def parse_auth_values(value: str) -> list[AuthValue]:
    """Every challenge (or credentials) in one header value, in order.

    RFC 7235 lets one ``WWW-Authenticate`` value hold several challenges, and
    some stacks join repeated headers with commas; this takes both. Param names
    must be unique within one challenge (RFC 7235 §2.1).
    """
    if not isinstance(value, str):
        raise AuthHeaderError("header value is not text")
    if len(value) > MAX_VALUE_LENGTH:
        raise AuthHeaderError("header value too long")
    text = _FOLD.sub(" ", value)
    n = len(text)
    i = _skip_ws(text, 0)
    if i == n:
        raise AuthHeaderError("empty header value")
    found: list[AuthValue] = []
    while True:
        end = _token_end(text, i)
        if end == i:
            raise AuthHeaderError(f"expected an auth-scheme at offset {i}")
        scheme = text[i:end]
        i = _skip_ws(text, end)
        params: list[tuple[str, str]] = []
        token68: str | None = None
        next_challenge = False
        if i < n and text[i] != ",":
            if i == end:
                raise AuthHeaderError("auth-scheme must be followed by whitespace")
            t68_end = _token68_at(text, i)
            if t68_end is not None:
                token68 = text[i:t68_end]
                i = _skip_list_separators(text, t68_end)
                if i < n:
                    if not _starts_challenge(text, i):
                        raise AuthHeaderError("auth-param after a token68")
                    next_challenge = True
            else:
                i, next_challenge = _auth_params(text, i, params)
        else:
            # A bare scheme (RFC 7235 allows it), possibly followed by more challenges.
            i = _skip_list_separators(text, i)
            next_challenge = i < n
        found.append(AuthValue(scheme, tuple(params), token68))
        if not next_challenge:
            return found


def _auth_params(text: str, i: int, params: list[tuple[str, str]]) -> tuple[int, bool]:
    """Read ``name=value`` params from ``i``; return where they stop, and whether a scheme follows."""
    n = len(text)
    seen: set[str] = set()
    while True:
        end = _token_end(text, i)
        if end == i:
            raise AuthHeaderError(f"expected an auth-param name at offset {i}")
        name = text[i:end].lower()
        i = _skip_ws(text, end)
        if i >= n or text[i] != "=":
            raise AuthHeaderError(f"auth-param {name!r} has no value")
        i = _skip_ws(text, i + 1)
        if i < n and text[i] == '"':
            param_value, i = _quoted_string(text, i)
        else:
            value_end = _token_end(text, i, _UNQUOTED)
            if value_end == i:
                raise AuthHeaderError(f"auth-param {name!r} has an empty or invalid value")
            param_value, i = text[i:value_end], value_end
        if name in seen:
            raise AuthHeaderError(f"auth-param {name!r} repeated")
        seen.add(name)
        params.append((name, param_value))
        i = _skip_ws(text, i)
        if i == n:
            return i, False
        if text[i] != ",":
            raise AuthHeaderError(f"expected ',' at offset {i}")
        i = _skip_list_separators(text, i)
        if i == n:
            return i, False
        while name == "qop" and (bare_end := _bare_token_end(text, i)) is not None:
            # Some stacks write qop-options unquoted (qop=auth,auth-int): a bare
            # token after qop continues its list rather than starting a scheme.
            params[-1] = ("qop", f"{params[-1][1]},{text[i:bare_end]}")
            i = _skip_list_separators(text, bare_end)
            if i == n:
                return i, False
        if _starts_challenge(text, i):
            return i, True


def _bare_token_end(text: str, i: int) -> int | None:
    """The end of a token at ``i`` followed only by whitespace, then a comma or the end."""
    end = _token_end(text, i)
    if end == i:
        return None
    after = _skip_ws(text, end)
    return end if after == len(text) or text[after] == "," else None


def _check_header_text(text: str, what: str) -> None:
    for c in text:
        if (ord(c) < 0x20 and c != "\t") or c == "\x7f":
            raise AuthHeaderError(f"{what} holds a control character")


def quote(text: str) -> str:
    """``text`` as a quoted-string (RFC 3261 §25.1)."""
    _check_header_text(text, "quoted value")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_token(text: str, chars: frozenset[str] = _TCHAR) -> bool:
    return bool(text) and all(c in chars for c in text)


def format_auth_value(
    value: AuthValue, *, unquoted: Iterable[str] = ("algorithm", "stale", "nc", "qop")
) -> str:
    """The header value for ``value``. Params named in ``unquoted`` are written as
    tokens when they are tokens; every other param is quoted."""
    if not _is_token(value.scheme):
        raise AuthHeaderError("auth-scheme is not a token")
    if value.token68 is not None:
        if _token68_at(value.token68, 0) != len(value.token68):
            raise AuthHeaderError("token68 value is not a token68")
        return f"{value.scheme} {value.token68}"
    bare = {name.lower() for name in unquoted}
    parts = []
    for name, param_value in value.params:
        if not _is_token(name):
            raise AuthHeaderError("auth-param name is not a token")
        if name.lower() in bare and _is_token(param_value):
            parts.append(f"{name}={param_value}")
        else:
            parts.append(f"{name}={quote(param_value)}")
    return f"{value.scheme} {', '.join(parts)}" if parts else value.scheme


def parse_challenges(values: str | Iterable[str]) -> list[AuthValue]:
    """Every challenge in one or several ``WWW-Authenticate``/``Proxy-Authenticate`` values."""
    if isinstance(values, str):
        values = (values,)
    found: list[AuthValue] = []
    for value in values:
        found.extend(parse_auth_values(value))
    return found


def parse_credentials(value: str) -> AuthValue:
    """The credentials of one ``Authorization``/``Proxy-Authorization`` value.

    RFC 3261 §7.3.1 forbids joining these headers with commas, so exactly one
    set of credentials is expected.
    """
    found = parse_auth_values(value)
    if len(found) != 1:
        raise AuthHeaderError("more than one set of credentials in one header value")
    return found[0]


# --------------------------------------------------------------------------------------------
# Digest algorithms and hashes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestAlgorithm:
    """A value of the digest ``algorithm`` param (RFC 7616 §3.3, RFC 8760 §2)."""

    name: str  # as registered, e.g. "SHA-256-sess"
    hash_name: str  # the hashlib name
    session: bool  # a -sess variant: HA1 also covers nonce and cnonce (RFC 7616 §3.4.2)
    strength: int  # for choosing among offered challenges; higher is stronger

    @property
    def base(self) -> str:
        """The name without ``-sess``: the algorithm a stored HA1 is computed with."""
        return self.name[: -len("-sess")] if self.session else self.name

    def hash(self, data: bytes) -> str:
        """H(data), in lowercase hex."""
        return _hexdigest(self.hash_name, data)

    @property
    def hex_length(self) -> int:
        return hashlib.new(self.hash_name).digest_size * 2


def _hexdigest(hash_name: str, data: bytes) -> str:
    return hashlib.new(hash_name, data).hexdigest()


def _hash_available(hash_name: str) -> bool:
    try:
        hashlib.new(hash_name, b"")
    except (ValueError, TypeError):
        return False
    return True


def _build_algorithms() -> dict[str, DigestAlgorithm]:
    table: dict[str, DigestAlgorithm] = {}
    for name, hash_name, strength in (
        ("MD5", "md5", 1),
        ("SHA-256", "sha256", 2),
        # RFC 8760 names "SHA-512-256" the SHA-512/256 of FIPS 180-4 (its own
        # initial values, not a truncated SHA-512); OpenSSL provides it, but not
        # every build, so it is left out where hashlib cannot compute it.
        ("SHA-512-256", "sha512_256", 3),
    ):
        if not _hash_available(hash_name):
            continue
        table[name.upper()] = DigestAlgorithm(name, hash_name, False, strength)
        table[f"{name}-SESS".upper()] = DigestAlgorithm(f"{name}-sess", hash_name, True, strength)
    return table


# Keyed by upper-case name: algorithm values are case-insensitive (RFC 7616 §3.3).
ALGORITHMS: Mapping[str, DigestAlgorithm] = _build_algorithms()


def get_algorithm(name: str | None) -> DigestAlgorithm | None:
    """The algorithm called ``name``, MD5 when absent (RFC 2617 §3.2.1), None if unsupported."""
    if name is None:
        return ALGORITHMS["MD5"]
    return ALGORITHMS.get(name.upper())


def _require_algorithm(name: str | DigestAlgorithm) -> DigestAlgorithm:
    if isinstance(name, DigestAlgorithm):
        return name
    algorithm = get_algorithm(name)
    if algorithm is None:
        raise ValueError(f"unsupported digest algorithm {name!r}")
    return algorithm


def _bytes(text: str) -> bytes:
    # Header text reaches us decoded; a SIP parser that kept undecodable octets
    # with "surrogateescape" gets them back as they were on the wire.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def ha1(username: str, realm: str, password: str, algorithm: str | DigestAlgorithm = "MD5") -> str:
    """H(username ":" realm ":" password): the form in which a server stores a password.

    For a ``-sess`` algorithm this is still the plain HA1 of its hash; the session
    HA1 is derived from it per nonce by :func:`session_ha1`.
    """
    alg = _require_algorithm(algorithm)
    return alg.hash(_bytes(f"{username}:{realm}:{password}"))


def session_ha1(stored_ha1: str, nonce: str, cnonce: str, algorithm: str | DigestAlgorithm) -> str:
    """RFC 7616 §3.4.2: for ``-sess``, HA1 = H(H(user:realm:password) ":" nonce ":" cnonce)."""
    alg = _require_algorithm(algorithm)
    return alg.hash(_bytes(f"{stored_ha1}:{nonce}:{cnonce}"))


def ha2(
    method: str,
    uri: str,
    algorithm: str | DigestAlgorithm = "MD5",
    *,
    qop: str | None = None,
    body: bytes = b"",
) -> str:
    """H(A2): A2 = method ":" uri, and ":" H(entity-body) for qop=auth-int (RFC 2617 §3.2.2.3)."""
    alg = _require_algorithm(algorithm)
    a2 = f"{method}:{uri}"
    if qop is not None and qop.lower() == "auth-int":
        a2 += ":" + alg.hash(body)
    return alg.hash(_bytes(a2))


def digest_response(
    stored_ha1: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str | DigestAlgorithm = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` param, from the stored (plain) HA1.

    With a qop: H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2) (RFC 2617
    §3.2.2.1); without one, the RFC 2069 form H(HA1 ":" nonce ":" HA2).
    """
    alg = _require_algorithm(algorithm)
    key = stored_ha1.lower()
    if alg.session:
        if cnonce is None:
            raise ValueError(f"{alg.name} needs a cnonce")
        key = session_ha1(key, nonce, cnonce, alg)
    hash2 = ha2(method, uri, alg, qop=qop, body=body)
    if qop is None:
        return alg.hash(_bytes(f"{key}:{nonce}:{hash2}"))
    if nc is None or cnonce is None:
        raise ValueError("a qop response needs nc and cnonce")
    return alg.hash(_bytes(f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{hash2}"))


# --------------------------------------------------------------------------------------------
# Digest views of challenges and credentials
# --------------------------------------------------------------------------------------------


_NC = re.compile(r"[0-9a-fA-F]{8}")


def _digest_only(value: AuthValue) -> None:
    if not value.is_digest:
        raise AuthHeaderError(f"scheme {value.scheme!r} is not Digest")
    if value.token68 is not None:
        raise AuthHeaderError("Digest takes auth-params, not a token68")


def _required(value: AuthValue, name: str) -> str:
    found = value.param(name)
    if found is None:
        raise AuthHeaderError(f"Digest {name!r} missing")
    return found


def _extra(value: AuthValue, known: frozenset[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in value.params if k not in known)


def _canonical_algorithm(name: str | None) -> str:
    if name is None:
        return "MD5"
    known = get_algorithm(name)
    return known.name if known is not None else name


_CHALLENGE_PARAMS = frozenset(
    ("realm", "domain", "nonce", "opaque", "stale", "algorithm", "qop", "userhash", "charset")
)


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A Digest challenge (RFC 3261 §25.1 digest-cln, RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # the registered spelling when known, as written otherwise
    algorithm_given: bool = True  # False when the param was absent (RFC 2617: MD5)
    qop: tuple[str, ...] = ()  # the qop-options, lowercased; empty: RFC 2069 style
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False
    charset: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # other auth-params, kept for the caller

    @classmethod
    def from_auth_value(cls, value: AuthValue) -> DigestChallenge:
        _digest_only(value)
        algorithm = value.param("algorithm")
        qop = value.param("qop")
        return cls(
            realm=_required(value, "realm"),
            nonce=_required(value, "nonce"),
            algorithm=_canonical_algorithm(algorithm),
            algorithm_given=algorithm is not None,
            qop=tuple(q.strip().lower() for q in qop.split(",") if q.strip()) if qop else (),
            opaque=value.param("opaque"),
            stale=(value.param("stale") or "").lower() == "true",
            domain=value.param("domain"),
            userhash=(value.param("userhash") or "").lower() == "true",
            charset=value.param("charset"),
            extra=_extra(value, _CHALLENGE_PARAMS),
        )

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        """The single Digest challenge in ``value``."""
        found = parse_auth_values(value)
        if len(found) != 1:
            raise AuthHeaderError("expected exactly one challenge")
        return cls.from_auth_value(found[0])

    def to_auth_value(self) -> AuthValue:
        params: list[tuple[str, str]] = [("realm", self.realm)]
        if self.domain is not None:
            params.append(("domain", self.domain))
        params.append(("nonce", self.nonce))
        if self.opaque is not None:
            params.append(("opaque", self.opaque))
        if self.stale:
            params.append(("stale", "true"))
        if self.algorithm_given:
            params.append(("algorithm", self.algorithm))
        if self.qop:
            params.append(("qop", ",".join(self.qop)))
        if self.charset is not None:
            params.append(("charset", self.charset))
        if self.userhash:
            params.append(("userhash", "true"))
        params.extend(self.extra)
        return AuthValue("Digest", tuple(params))

    def to_header(self) -> str:
        # RFC 3261 §25.1: qop-options is always quoted, algorithm and stale never.
        return format_auth_value(self.to_auth_value(), unquoted=("algorithm", "stale", "charset"))


_CREDENTIAL_PARAMS = frozenset(
    (
        "username",
        "username*",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
    )
)


def _ext_value(text: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''percent-encoded``), as ``username*`` uses."""
    charset, sep, rest = text.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep or not sep2 or charset.lower() != "utf-8":
        raise AuthHeaderError("username* is not a UTF-8 ext-value")
    try:
        return unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthHeaderError("username* is not valid UTF-8") from exc


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """Digest credentials (RFC 3261 §25.1 digest-response, RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    algorithm_given: bool = True
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None  # message-qop, lowercased; None: RFC 2069 style
    nc: str | None = None  # 8LHEX, as written
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def nonce_count(self) -> int | None:
        return int(self.nc, 16) if self.nc is not None else None

    @classmethod
    def from_auth_value(cls, value: AuthValue) -> DigestCredentials:
        _digest_only(value)
        username = value.param("username")
        username_ext = value.param("username*")
        if username is not None and username_ext is not None:
            raise AuthHeaderError("both username and username* given")  # RFC 7616 §3.4.4
        if username_ext is not None:
            username = _ext_value(username_ext)
        if username is None:
            raise AuthHeaderError("Digest 'username' missing")
        algorithm = value.param("algorithm")
        qop = value.param("qop")
        nc = value.param("nc")
        cnonce = value.param("cnonce")
        if qop is not None:
            qop = qop.strip().lower()
            # RFC 2617 §3.2.2: with a qop, cnonce and nc MUST be present.
            if cnonce is None or nc is None:
                raise AuthHeaderError("qop given without cnonce and nc")
        if nc is not None and not _NC.fullmatch(nc):
            raise AuthHeaderError("nc is not 8 hex digits")
        return cls(
            username=username,
            realm=_required(value, "realm"),
            nonce=_required(value, "nonce"),
            uri=_required(value, "uri"),
            response=_required(value, "response"),
            algorithm=_canonical_algorithm(algorithm),
            algorithm_given=algorithm is not None,
            cnonce=cnonce,
            opaque=value.param("opaque"),
            qop=qop,
            nc=nc,
            userhash=(value.param("userhash") or "").lower() == "true",
            extra=_extra(value, _CREDENTIAL_PARAMS),
        )

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        return cls.from_auth_value(parse_credentials(value))

    def to_auth_value(self) -> AuthValue:
        params: list[tuple[str, str]] = [
            ("username", self.username),
            ("realm", self.realm),
            ("nonce", self.nonce),
            ("uri", self.uri),
            ("response", self.response),
        ]
        if self.algorithm_given:
            params.append(("algorithm", self.algorithm))
        if self.cnonce is not None:
            params.append(("cnonce", self.cnonce))
        if self.opaque is not None:
            params.append(("opaque", self.opaque))
        if self.qop is not None:
            params.append(("qop", self.qop))
        if self.nc is not None:
            params.append(("nc", self.nc))
        if self.userhash:
            params.append(("userhash", "true"))
        params.extend(self.extra)
        return AuthValue("Digest", tuple(params))

    def to_header(self) -> str:
        # RFC 3261 §25.1 / RFC 7616 §3.4: message-qop, nc and algorithm are tokens.
        return format_auth_value(self.to_auth_value(), unquoted=("algorithm", "qop", "nc"))
