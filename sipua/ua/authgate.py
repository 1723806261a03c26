"""Digest authentication of incoming requests (RFC 3261 §22, RFC 7616, RFC 8760).

:class:`RequestAuthenticator` wraps :class:`~sipua.sip.auth.DigestServer` for
the UA: it reads the credentials off a request, looks the user up in a
:class:`CredentialLookup` (HA1 per realm and algorithm, never a password),
and says what to do as an :class:`AuthVerdict`. Everything else a credential
restricts (the source addresses it may be used from, the sessions it may
reach) is checked only after the digest itself, and a credential used from
the wrong place fails exactly as a wrong password does: an attacker learns
nothing from the answer that a wrong guess would not tell them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sipua.sip.auth import (
    REASON_BAD_CREDENTIALS,
    AuthOutcome,
    DigestServer,
    challenge_header_name,
    credentials_header_name,
)
from sipua.sip.credentials import get_algorithm
from sipua.sip.message import Request

from .netlist import AddressList

__all__ = [
    "AuthVerdict",
    "CredentialLookup",
    "CredentialRecord",
    "RequestAuthenticator",
    "Verdict",
    "uri_check",
]


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """One SIP credential as the gate sees it.

    ``ha1`` maps a base algorithm name ("MD5", "SHA-256", "SHA-512-256") to the
    stored H(username:realm:password) in hex. ``allowed`` empty means any source
    address (the global allowlist still applies). ``session_id`` and
    ``organization`` restrict which sessions the credential can call: a session
    is in scope when its id is ``session_id``, or its ``metadata.organization`` is
    ``organization``.
    """

    username: str
    realm: str
    ha1: Mapping[str, str]
    allowed: AddressList = field(default_factory=AddressList)
    session_id: str | None = None
    organization: str | None = None
    id: str | None = None
    source: str = "config"

    @property
    def scoped(self) -> bool:
        return self.session_id is not None or self.organization is not None

    def allows_address(self, ip: str) -> bool:
        return not self.allowed or ip in self.allowed

    def allows_session(self, session: object | None) -> bool:
        if not self.scoped:
            return True
        if session is None:
            return False
        if self.session_id is not None and getattr(session, "id", None) != self.session_id:
            return False
        if self.organization is not None:
            metadata = getattr(session, "metadata", None) or {}
            if (
                not isinstance(metadata, Mapping)
                or metadata.get("organization") != self.organization
            ):
                return False
        return True


class CredentialLookup(Protocol):
    def find(self, username: str, realm: str) -> CredentialRecord | None:
        """The credential for ``username`` in ``realm``; must not touch disk (timing)."""
        ...


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # no credentials for our realm: send a challenge, not a failure
    STALE = "stale"  # right password, old nonce or reused nc: challenge with stale=true
    FAILED = "failed"  # wrong user, password, address or scope: a failure
    MISMATCH = "mismatch"  # credentials we cannot check (nonce not ours, algorithm …): a failure
    MALFORMED = "malformed"  # credentials that do not parse: 400


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    verdict: Verdict
    reason: str = ""  # for logs only, never sent
    username: str | None = None
    record: CredentialRecord | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


def uri_check(mode: str) -> Callable[[str, str], bool]:
    """How the digest ``uri`` must relate to the Request-URI.

    ``strict``: equal, as RFC 2617 §3.2.2.5 says. ``host``: also a SIP or SIPS URI
    with the Request-URI's host and port and no user, which is what SIPp sends
    when run without ``-auth_uri`` (``sip:<remote_ip>:<remote_port>``). The
    response still covers the uri the client used, so this only widens which
    uri a client may have hashed, not who can answer.
    """
    if mode == "strict":
        return lambda digest_uri, request_uri: digest_uri == request_uri
    if mode != "host":
        raise ValueError(f"unknown uri check {mode!r}")

    def host_matches(digest_uri: str, request_uri: str) -> bool:
        if digest_uri == request_uri:
            return True
        return _hostport(digest_uri, user_allowed=False) == _hostport(request_uri) is not None

    return host_matches


def _hostport(uri: str, *, user_allowed: bool = True) -> tuple[str, str] | None:
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        return None
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    if "@" in rest:
        if not user_allowed:
            return None
        rest = rest.rsplit("@", 1)[1]
    return scheme.lower(), rest.lower()


class RequestAuthenticator:
    """Checks the Digest credentials of requests against a :class:`CredentialLookup`.

    ``proxy`` challenges with 407/Proxy-Authenticate and reads Proxy-Authorization
    instead of 401/WWW-Authenticate/Authorization (RFC 3261 §22.3).
    """

    def __init__(
        self,
        server: DigestServer,
        credentials: CredentialLookup,
        realm: str,
        *,
        proxy: bool = False,
    ) -> None:
        self.server = server
        self.credentials = credentials
        self.realm = realm
        self.proxy = proxy
        self.challenge_status = 407 if proxy else 401
        self.challenge_header = challenge_header_name(proxy)
        self.credentials_header = credentials_header_name(proxy)

    def challenge(self, now: float, *, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """The challenge headers: one per offered algorithm, sharing one fresh nonce."""
        name = self.challenge_header
        values = self.server.challenge(self.realm, now, stale=stale, proxy=self.proxy)
        return tuple((name, value) for value in values)

    def _ours(self, values: Sequence[str]) -> str | None:
        """The credentials for our realm among several (one per realm, RFC 3261 §22.3)."""
        for value in values:
            if _mentions_realm(value, self.realm):
                return value
        return values[0] if len(values) == 1 else None

    def authenticate(self, request: Request, ip: str, now: float) -> AuthVerdict:
        """The verdict on ``request`` from source ``ip``; ``now`` is wall-clock time.

        The nonce secret persists across restarts, so ``now`` must be a clock
        that persists too (``time.time()``), not the loop's monotonic clock.
        """
        values = request.get_all(self.credentials_header)
        if not values:
            return AuthVerdict(Verdict.CHALLENGE, "no credentials")
        value = self._ours(values)
        if value is None:
            return AuthVerdict(Verdict.CHALLENGE, "no credentials for our realm")
        found: list[CredentialRecord | None] = [None]

        def lookup_ha1(username: str, realm: str, algorithm: str) -> str | None:
            record = self.credentials.find(username, realm)
            found[0] = record
            if record is None:
                return None
            return record.ha1.get(algorithm)

        result = self.server.verify(
            request.method,
            value,
            lookup_ha1,
            now,
            request_uri=str(request.uri),
            body=request.body,
            proxy=self.proxy,
            realm=self.realm,
        )
        record = found[0]
        if result.outcome is AuthOutcome.MALFORMED:
            return AuthVerdict(Verdict.MALFORMED, result.reason)
        if result.outcome is AuthOutcome.STALE:
            return AuthVerdict(Verdict.STALE, result.reason, result.username, record)
        if result.outcome is AuthOutcome.FAILED:
            kind = Verdict.FAILED if result.reason == REASON_BAD_CREDENTIALS else Verdict.MISMATCH
            return AuthVerdict(kind, result.reason, result.username)
        assert record is not None
        if not record.allows_address(ip):
            return AuthVerdict(Verdict.FAILED, "source address not allowed", record.username)
        return AuthVerdict(Verdict.OK, "", record.username, record)


def _mentions_realm(value: str, realm: str) -> bool:
    # Cheap pre-check; the digest parser validates the value itself.
    return f'realm="{realm}"' in value or f"realm={realm}" in value


def supported_algorithm(name: str) -> bool:
    return get_algorithm(name) is not None
