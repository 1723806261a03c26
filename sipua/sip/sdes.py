"""SDES keying: the SDP ``a=crypto`` attribute (RFC 4568), for SRTP.

``a=crypto:<tag> <crypto-suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>] [<session-params>]``

(RFC 4568 §9.1, §6.1). Suites are the AES-CM ones of RFC 4568 §6.2 and the
AES-GCM ones of RFC 7714 §14.2; a line with any other suite parses to None so
that offer/answer skips it (RFC 4568 §7.1.1: the answerer picks one line it
supports). A line we cannot honour -- a bad key, a key of the wrong length, an
unknown mandatory session parameter -- raises :class:`SdesError`, which the
caller also treats as "skip this line".
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable

from .errors import SipError
from .rtp_params import SRTP_KEY_SALT_LENGTH, SRTP_SUITES, CryptoParams

__all__ = ["SdesError", "format_crypto", "generate_crypto", "parse_crypto"]

# RFC 3711 §9.2 / RFC 7714 §14.2: at most 2^48 SRTP packets per master key.
MAX_LIFETIME = 2**48
_TAG = re.compile(r"[0-9]{1,9}")
_SUITE = re.compile(r"[A-Za-z0-9_]+")
_LIFETIME = re.compile(r"(2\^)?([0-9]{1,15})")
_MKI = re.compile(r"([0-9]{1,309}):([0-9]{1,3})")  # 128 octets = 309 digits
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

# RFC 4568 §6.3: session parameters that do not change what we do with the
# stream. KDR=0 is the default (no re-keying); WSH is a replay-window hint
# (§6.3.7); FEC_ORDER/FEC_KEY only matter when FEC is in use, which we never
# negotiate. UNENCRYPTED_SRTP/SRTCP and UNAUTHENTICATED_SRTP would change the
# transform, which RtpParameters cannot express: lines with them are refused.
_HARMLESS_SESSION_PARAMS = ("WSH=", "FEC_ORDER=", "FEC_KEY=")


class SdesError(SipError, ValueError):
    """An ``a=crypto`` line of a known suite that we cannot use; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def parse_crypto(value: str) -> CryptoParams | None:
    """Parse the value of an ``a=crypto`` attribute (the text after ``crypto:``).

    Returns None when the suite is not one of :data:`SRTP_SUITES` (not an error:
    such a line is skipped). Raises :class:`SdesError` for a line of a known suite
    that is malformed or asks for something we do not do.
    """
    parts = value.split()
    if len(parts) < 3:
        raise SdesError(f"a=crypto needs '<tag> <suite> <key-params>': {value!r}")
    tag_text, suite, key_params, *session_params = parts
    if _TAG.fullmatch(tag_text) is None:
        raise SdesError(f"a=crypto tag is not 1-9 digits: {tag_text!r}")
    if _SUITE.fullmatch(suite) is None:
        raise SdesError(f"a=crypto suite is not a name: {suite!r}")
    if suite not in SRTP_SUITES:
        return None
    if ";" in key_params:
        # RFC 4568 §6.1 allows several keys told apart by MKI; we use one key per direction.
        raise SdesError("a=crypto with several keys (';' in key-params) is not supported")
    method, sep, key_info = key_params.partition(":")
    if not sep or method.lower() != "inline":
        raise SdesError(f"a=crypto key method is not 'inline:': {key_params!r}")
    key_text, *extras = key_info.split("|")
    key_salt = _decode_key(key_text, suite)
    lifetime, mki = _parse_key_extras(extras)
    for param in session_params:
        _check_session_param(param)
    return CryptoParams(
        tag=int(tag_text), suite=suite, key_salt=key_salt, lifetime=lifetime, mki=mki
    )


def _decode_key(text: str, suite: str) -> bytes:
    if _BASE64.fullmatch(text) is None:
        raise SdesError(f"a=crypto key is not base64: {text!r}")
    # Some implementations drop the '=' padding; the length check below still holds.
    padded = text + "=" * (-len(text) % 4)
    try:
        key_salt = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SdesError(f"a=crypto key is not base64: {exc}") from None
    expected = SRTP_KEY_SALT_LENGTH[suite]
    if len(key_salt) != expected:
        raise SdesError(
            f"{suite} needs a {expected}-octet master key||salt, the line has {len(key_salt)}"
        )
    return key_salt


def _parse_key_extras(extras: list[str]) -> tuple[int | None, tuple[int, int] | None]:
    # RFC 4568 §9.1: key-info = key-salt ["|" lifetime] ["|" mki]; the MKI has a ':'.
    lifetime: int | None = None
    mki: tuple[int, int] | None = None
    if len(extras) > 2:
        raise SdesError(f"a=crypto key has too many '|' parts: {len(extras) + 1}")
    for index, extra in enumerate(extras):
        if ":" in extra:
            if mki is not None or index != len(extras) - 1:
                raise SdesError(f"a=crypto MKI must come last and once: {extra!r}")
            match = _MKI.fullmatch(extra)
            if match is None:
                raise SdesError(f"a=crypto MKI is not <value>:<length>: {extra!r}")
            value, length = int(match.group(1)), int(match.group(2))
            if not 1 <= length <= 128:
                raise SdesError(f"a=crypto MKI length must be 1..128 octets: {length}")
            if value >= 1 << (8 * length):
                raise SdesError(f"a=crypto MKI value {value} does not fit {length} octets")
            mki = (value, length)
        else:
            if lifetime is not None or mki is not None:
                raise SdesError(f"a=crypto lifetime must come before the MKI: {extra!r}")
            match = _LIFETIME.fullmatch(extra)
            if match is None:
                raise SdesError(f"a=crypto lifetime is not '2^n' or a number: {extra!r}")
            exponent_or_value = int(match.group(2))
            if match.group(1):
                if exponent_or_value > 48:
                    raise SdesError(f"a=crypto lifetime 2^{exponent_or_value} exceeds 2^48")
                lifetime = 1 << exponent_or_value
            else:
                lifetime = exponent_or_value
            if not 1 <= lifetime <= MAX_LIFETIME:
                raise SdesError(f"a=crypto lifetime must be 1..2^48 packets: {extra!r}")
    return lifetime, mki


def _check_session_param(param: str) -> None:
    # RFC 4568 §6.3.7: an unknown parameter prefixed with '-' may be ignored; any
    # other one we do not understand makes the whole line invalid.
    if param.startswith("-") or param.startswith(_HARMLESS_SESSION_PARAMS):
        return
    if param == "KDR=0":
        return
    raise SdesError(f"a=crypto session parameter not supported: {param!r}")


def format_lifetime(lifetime: int) -> str:
    """``2^n`` when ``lifetime`` is a power of two, else the decimal number."""
    if lifetime > 0 and lifetime & (lifetime - 1) == 0:
        return f"2^{lifetime.bit_length() - 1}"
    return str(lifetime)


def format_crypto(params: CryptoParams, session_params: tuple[str, ...] = ()) -> str:
    """The value of an ``a=crypto`` attribute for ``params`` (without ``crypto:``)."""
    expected = SRTP_KEY_SALT_LENGTH.get(params.suite)
    if expected is None:
        raise ValueError(f"unknown SRTP suite {params.suite!r}")
    if len(params.key_salt) != expected:
        raise ValueError(f"{params.suite} needs {expected} octets of key||salt")
    text = "inline:" + base64.b64encode(params.key_salt).decode("ascii")
    if params.lifetime is not None:
        text += "|" + format_lifetime(params.lifetime)
    if params.mki is not None:
        text += f"|{params.mki[0]}:{params.mki[1]}"
    return " ".join((str(params.tag), params.suite, text, *session_params))


def generate_crypto(
    tag: int,
    suite: str,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> CryptoParams:
    """A fresh master key and salt for ``suite`` (RFC 4568 §6.1: from a strong RNG)."""
    length = SRTP_KEY_SALT_LENGTH.get(suite)
    if length is None:
        raise ValueError(f"unknown SRTP suite {suite!r}")
    key_salt = bytes(random_bytes(length))
    if len(key_salt) != length:
        raise ValueError(f"random_bytes({length}) returned {len(key_salt)} octets")
    return CryptoParams(tag=tag, suite=suite, key_salt=key_salt)
