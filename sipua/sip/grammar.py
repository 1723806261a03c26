"""Lexical pieces of the RFC 3261 §25 grammar shared by URIs and header values.

Hot paths first try the common shape (no quotes, no whitespace) with plain
string methods, and fall back to the full grammar only when needed.
"""

from __future__ import annotations

import re

from .errors import ParseError

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(_TOKEN)
_QUOTED = r'"(?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
QUOTED_RE = re.compile(_QUOTED)
# A parameter value: a token, a host (with ':' and IPv6 brackets) or a quoted string.
_PVALUE = r"(?:" + _QUOTED + r"|[^\s;,\"<>=]+)"
_PARAM_RE = re.compile(r"[ \t]*;[ \t]*(" + _TOKEN + r")(?:[ \t]*=[ \t]*(" + _PVALUE + r"))?[ \t]*")
# Parameters without quotes or LWS, checked whole in one match (the usual case).
_SIMPLE_PARAMS = re.compile(r"(?:;" + _TOKEN + r"(?:=[^;\"<>=, \t]+)?)+")
WS = " \t"

# Methods seen every second; a method in this set needs no token check.
COMMON_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    }
)


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def unquote(text: str) -> str:
    """The content of a quoted-string, quoted-pairs resolved (RFC 3261 §25.1)."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    n = len(inner)
    while i < n:
        c = inner[i]
        if c == "\\" and i + 1 < n:
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def quote(text: str) -> str:
    """``text`` as a quoted-string.

    CR and LF cannot be written in a quoted-string, not even as quoted-pairs
    (RFC 3261 §25.1), so they are refused rather than emitted into a header line.
    """
    if "\r" in text or "\n" in text:
        raise ValueError(f"CR or LF cannot be quoted: {text[:40]!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def param_value(value: str | None) -> str | None:
    """A parameter value as the application sees it (quotes removed)."""
    if value is not None and value[:1] == '"':
        return unquote(value)
    return value


def parse_params(text: str, what: str = "header") -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; keys lower-cased, values as written.

    ``text`` is empty or starts (after optional LWS) with ';'. A parameter with
    no name (``;;``) is an error (RFC 4475 §3.1.2.1).
    """
    if not text:
        return {}
    if _SIMPLE_PARAMS.fullmatch(text) is not None:
        params: dict[str, str | None] = {}
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name.lower()] = value if eq else None
        return params
    if '"' not in text and " " not in text and "\t" not in text:
        if text[0] != ";":
            raise ParseError(f"bad {what} parameters: {text!r}", header=what)
        params = {}
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            if not name or (eq and not value) or not TOKEN_RE.fullmatch(name):
                raise ParseError(f"bad {what} parameter {part!r}", header=what)
            if eq and ("<" in value or ">" in value or "=" in value or "," in value):
                raise ParseError(f"bad {what} parameter value {value!r}", header=what)
            params[name.lower()] = value if eq else None
        return params
    params = {}
    pos = 0
    n = len(text)
    match = _PARAM_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None or m.end() == pos:
            rest = text[pos:].strip(WS)
            if not rest:
                break
            raise ParseError(f"bad {what} parameters near {rest[:40]!r}", header=what)
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_commas(value: str) -> list[str]:
    """Split a header value on the commas that separate list elements.

    Commas inside quoted strings and inside ``<...>`` are not separators
    (RFC 3261 §7.3.1). Elements are stripped of surrounding LWS.
    """
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        return [v.strip(WS) for v in value.split(",")]
    return [v.strip(WS) for v in split_outside(value, ",")]


def split_outside(value: str, separator: str) -> list[str]:
    """``value`` split on ``separator`` where it stands outside quoted strings and ``<...>``."""
    out = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == separator and not in_angle:
            out.append(value[start:i])
            start = i + 1
        i += 1
    out.append(value[start:])
    return out


def split_tokens(value: str) -> list[str]:
    """A comma-separated list of tokens (Require, Supported, Allow …), lower-cased."""
    return [t.strip(WS).lower() for t in value.split(",") if t.strip(WS)]


def parse_uint(text: str, what: str, maximum: int = 2**32 - 1) -> int:
    """A decimal number within ``0..maximum``; leading zeros allowed (RFC 4475 §3.1.1.1)."""
    if not text.isdigit() or not text.isascii():
        raise ParseError(f"{what} is not a number: {text[:40]!r}", header=what)
    # More digits than the maximum has is too large, and int() of thousands of digits
    # is slow or refused (ValueError), so that is decided before converting.
    digits = text.lstrip("0") or "0"
    value = maximum + 1 if len(digits) > len(str(maximum)) else int(digits)
    if value > maximum:
        raise ParseError(f"{what} {text[:40]} is larger than {maximum}", header=what)
    return value
