"""``X-Twilio-Signature`` on the WebSocket handshake of a Twilio media stream.

Twilio signs each request to your server with your account's auth token: the base64 HMAC-SHA1
of the full URL it requested, followed, for a POST, by every form parameter name and value in
name order. A media stream handshake is a GET, so only the URL is signed. Behind a TLS proxy the
URL Twilio used (``wss://voice.example.com/v1/streams/…``) is not the one we see, so the
caller passes every URL the request may have had (the public stream URL and the one built from
the Host header), and the signature must match one of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = ["candidate_urls", "twilio_signature", "valid_twilio_signature"]

_SCHEMES = ("wss", "https", "ws", "http")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The signature Twilio sends for a request to ``url`` (with ``params`` for a POST)."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params or {}))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def candidate_urls(urls: Iterable[str]) -> list[str]:
    """Each URL as given, then with each other scheme (a TLS proxy in front of us turns
    ``wss`` into ``ws``; some tools spell the handshake URL ``https``). The signature still
    binds the host, path and query."""
    out: list[str] = []
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url)
        variants = [url]
        if parts.scheme in _SCHEMES:
            variants += [urlunsplit(parts._replace(scheme=s)) for s in _SCHEMES]
        for variant in variants:
            if variant not in out:
                out.append(variant)
    return out


def valid_twilio_signature(auth_token: str, signature: str, urls: Iterable[str]) -> bool:
    """True when ``signature`` signs one of ``urls`` (see :func:`candidate_urls`)."""
    if not auth_token or not signature:
        return False
    return any(
        hmac.compare_digest(twilio_signature(auth_token, url), signature)
        for url in candidate_urls(urls)
    )
