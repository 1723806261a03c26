"""Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

:class:`DigestServer` writes challenges and verifies credentials. Its nonces are
stateless: each one carries its issue time and an HMAC under the server secret,
so any node holding the secret can check a nonce it never stored. The only
state is a bounded table of the highest ``nc`` seen per nonce, which refuses a
replayed ``Authorization``.

:class:`DigestClient` answers challenges for a UAC, picking the strongest
algorithm offered, counting ``nc`` per nonce and reusing a nonce on later
requests; it retries at most once per challenge and says :class:`GiveUp` when a
challenge comes back for the credentials it just sent.

Everything works on header *values* (strings); the caller moves them in and out
of messages and passes the clock in as ``now``.
"""

from __future__ import annotations

import base64
import enum
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sipua.sip.credentials import (
    ALGORITHMS,
    AuthHeaderError,
    DigestAlgorithm,
    DigestChallenge,
    DigestCredentials,
    digest_response,
    get_algorithm,
    ha1,
    parse_challenges,
)

__all__ = [
    "AuthHeaderError",
    "AuthOutcome",
    "AuthResult",
    "Authorization",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "GiveUp",
    "HA1Lookup",
    "HA1Table",
    "RetryWith",
    "challenge_header_name",
    "credentials_header_name",
    "ha1",
]

HA1Lookup = Callable[[str, str, str], str | None]
"""``lookup_ha1(username, realm, algorithm) -> HA1 hex or None``.

``algorithm`` is the base name ("MD5", "SHA-256", "SHA-512-256"): a ``-sess``
variant uses the HA1 of its hash. None means no such user in that realm.
"""


def challenge_header_name(proxy: bool) -> str:
    """RFC 3261 §22.3: a proxy challenges in a 407 with Proxy-Authenticate."""
    return "Proxy-Authenticate" if proxy else "WWW-Authenticate"


def credentials_header_name(proxy: bool) -> str:
    return "Proxy-Authorization" if proxy else "Authorization"


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class AuthOutcome(enum.Enum):
    OK = "ok"
    # The response was right for its nonce, but the nonce is too old (or its nc
    # was already used): challenge again with stale=true (RFC 7616 §3.3).
    STALE = "stale"
    # Wrong credentials or a nonce we did not issue: challenge again.
    FAILED = "failed"
    # Credentials that do not follow the grammar: answer 400.
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The verdict on one set of credentials, and what to answer.

    ``status_hint`` is the response to send when not ok: 400 for malformed
    credentials, else 401 (407 for a proxy) with a fresh :meth:`DigestServer.challenge`,
    passing ``stale=result.stale``.
    """

    outcome: AuthOutcome
    reason: str = ""
    username: str | None = None
    realm: str | None = None
    algorithm: str | None = None
    status_hint: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK

    @property
    def stale(self) -> bool:
        return self.outcome is AuthOutcome.STALE


# Failure reasons. Unknown user and wrong password share one, on purpose.
REASON_BAD_CREDENTIALS = "bad credentials"
REASON_NONCE_INVALID = "nonce not issued by this server"
REASON_NONCE_EXPIRED = "nonce expired"
REASON_NC_REPLAYED = "nonce count replayed"

_NONCE_VERSION = 1
_NONCE_RANDOM = 14
_NONCE_MAC = 16
# version (1) + issue time in ms (8) + random (14) + truncated HMAC-SHA256 (16)
# = 39 octets: 52 base64url characters, no padding.
_NONCE_OCTETS = 1 + 8 + _NONCE_RANDOM + _NONCE_MAC
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{52}")
_MAX_MS = 2**63 - 1


def _to_ms(now: float) -> int:
    try:
        return min(max(int(now * 1000), 0), _MAX_MS)
    except (OverflowError, ValueError):  # inf, nan
        return 0


@dataclass(frozen=True, slots=True)
class _Nonce:
    issued: float  # seconds, as the ``now`` it was issued at (to the millisecond)


class NonceCounts:
    """The highest ``nc`` accepted per nonce, for at most ``max_entries`` nonces.

    Entries are kept in first-seen order (close to issue order) and the oldest
    goes first when the table is full. Forgetting a live nonce would let its
    old nc values replay, so the table remembers the latest issue time it
    has evicted: a nonce issued no later than that and not in the table is
    refused as if replayed, and its client gets a fresh nonce.
    """

    def __init__(self, max_entries: int = 10000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._evicted_up_to = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def is_fresh(self, nonce: str, issued: float, nc: int) -> bool:
        seen = self._seen.get(nonce)
        if seen is not None:
            return nc > seen[0]
        return issued > self._evicted_up_to

    def record(self, nonce: str, issued: float, nc: int) -> None:
        seen = self._seen.get(nonce)
        if seen is not None:
            self._seen[nonce] = (max(nc, seen[0]), issued)
            return
        self._seen[nonce] = (nc, issued)
        while len(self._seen) > self.max_entries:
            _, (_, evicted_issued) = self._seen.popitem(last=False)
            self._evicted_up_to = max(self._evicted_up_to, evicted_issued)

    def expire(self, oldest_live: float) -> None:
        """Forget nonces issued before ``oldest_live``: they are refused as expired anyway."""
        while self._seen:
            nonce, (_, issued) = next(iter(self._seen.items()))
            if issued >= oldest_live:
                return
            del self._seen[nonce]
            # Should the clock step back, a forgotten nonce still counts as seen.
            self._evicted_up_to = max(self._evicted_up_to, issued)


class DigestServer:
    """Challenges and verifies Digest credentials for a UAS, registrar or proxy.

    ``secret`` keys the nonce and opaque HMACs. Give every node behind one load
    balancer the same secret, and keep it across restarts, or nonces issued
    before a restart fail as not ours (the client is re-challenged without
    ``stale``); ``previous_secrets`` still verify during a key rotation. With a
    persistent secret pass wall-clock time as ``now``, since a monotonic clock
    starts again at boot.

    ``algorithms`` are offered in that order, one challenge each (RFC 8760 §2.4:
    most preferred first); ``qop`` lists the qop-options offered. Credentials
    without a qop (RFC 2069 style, no nc and so no replay protection) are only
    taken when ``require_qop`` is False.

    The credentials' ``uri`` must equal the Request-URI. ``uri_matches(digest_uri,
    request_uri)`` can relax that for clients that put something else there:
    SIPp (3.6) by default sends ``sip:<remote_ip>:<remote_port>`` whatever the
    Request-URI, unless run with ``-auth_uri``.

    Clients that read only the first challenge (SIPp 3.6 among them) fail when
    it is not MD5; put "MD5" first in ``algorithms`` for them.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: Sequence[str] = ("auth",),
        require_qop: bool = True,
        max_nonces: int = 10000,
        previous_secrets: Sequence[bytes] = (),
        max_clock_skew: float = 30.0,
        uri_matches: Callable[[str, str], bool] | None = None,
    ) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 octets")
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        offered: list[DigestAlgorithm] = []
        for name in algorithms:
            alg = get_algorithm(name)
            if alg is None:
                raise ValueError(f"unsupported digest algorithm {name!r}")
            offered.append(alg)
        if not offered:
            raise ValueError("offer at least one algorithm")
        qop = tuple(q.lower() for q in qop)
        if not set(qop) <= {"auth", "auth-int"}:
            raise ValueError("qop must be among 'auth', 'auth-int'")
        if require_qop and not qop:
            raise ValueError("require_qop needs a qop to offer")
        if any(a.session for a in offered) and not qop:
            raise ValueError("a -sess algorithm needs a qop (the client's cnonce)")
        self._secret = secret
        self._secrets = (secret, *previous_secrets)
        self.nonce_lifetime = float(nonce_lifetime)
        self.algorithms: tuple[DigestAlgorithm, ...] = tuple(offered)
        self.qop: tuple[str, ...] = qop
        self.require_qop = require_qop
        self.max_clock_skew = float(max_clock_skew)
        self.nonce_counts = NonceCounts(max_nonces)
        self._uri_matches = uri_matches or _same_uri
        # Unknown users are checked against this instead of a stored HA1, so
        # that they cost the same work as known ones (no user enumeration).
        self._dummy_ha1 = {
            alg.base: alg.hash(secrets.token_bytes(32)) for alg in ALGORITHMS.values()
        }

    # -- nonce and opaque ------------------------------------------------------------------

    @staticmethod
    def _mac(secret: bytes, body: bytes, realm: str, proxy: bool) -> bytes:
        message = b"sipua digest nonce\x00" + body + (b"P" if proxy else b"W") + _octets(realm)
        return hmac.new(secret, message, "sha256").digest()[:_NONCE_MAC]

    def make_nonce(self, realm: str, now: float, *, proxy: bool = False) -> str:
        """A fresh nonce for ``realm``: base64url(version, time, random, HMAC)."""
        body = (
            bytes((_NONCE_VERSION,))
            + _to_ms(now).to_bytes(8, "big")
            + secrets.token_bytes(_NONCE_RANDOM)
        )
        raw = body + self._mac(self._secret, body, realm, proxy)
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def _check_nonce(self, nonce: str, realm: str, proxy: bool) -> _Nonce | None:
        """The nonce's issue time if this server (or a previous secret) issued it for ``realm``."""
        if not _NONCE_RE.fullmatch(nonce):
            return None
        raw = base64.urlsafe_b64decode(nonce)
        if len(raw) != _NONCE_OCTETS or raw[0] != _NONCE_VERSION:
            return None
        body, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        # Every secret is tried, so the time taken does not say which one matched.
        valid = False
        for secret in self._secrets:
            valid |= hmac.compare_digest(mac, self._mac(secret, body, realm, proxy))
        if not valid:
            return None
        return _Nonce(int.from_bytes(body[1:9], "big") / 1000)

    def opaque(self, realm: str) -> str:
        """The opaque value for ``realm``: fixed per secret, so it needs no state."""
        return self._opaque(self._secret, realm)

    @staticmethod
    def _opaque(secret: bytes, realm: str) -> str:
        mac = hmac.new(secret, b"sipua digest opaque\x00" + _octets(realm), "sha256").digest()
        return base64.urlsafe_b64encode(mac[:12]).decode("ascii")

    def _check_opaque(self, opaque: str, realm: str) -> bool:
        valid = False
        for secret in self._secrets:
            valid |= hmac.compare_digest(_octets(opaque), self._opaque(secret, realm).encode())
        return valid

    # -- challenge -------------------------------------------------------------------------

    def challenge(
        self, realm: str, now: float, *, stale: bool = False, proxy: bool = False
    ) -> list[str]:
        """The challenge header values, one per algorithm, most preferred first.

        They go in ``WWW-Authenticate`` headers of a 401, or ``Proxy-Authenticate``
        headers of a 407 when ``proxy`` (see :func:`challenge_header_name`). All
        share one nonce: a client answers only one of them.
        """
        nonce = self.make_nonce(realm, now, proxy=proxy)
        opaque = self.opaque(realm)
        return [
            DigestChallenge(
                realm=realm,
                nonce=nonce,
                algorithm=alg.name,
                qop=self.qop,
                opaque=opaque,
                stale=stale,
            ).to_header()
            for alg in self.algorithms
        ]

    # -- verify ----------------------------------------------------------------------------

    def verify(
        self,
        method: str,
        credentials: str,
        lookup_ha1: HA1Lookup,
        now: float,
        *,
        request_uri: str,
        body: bytes = b"",
        proxy: bool = False,
        realm: str | None = None,
    ) -> AuthResult:
        """Check one ``Authorization`` (``Proxy-Authorization`` when ``proxy``) value.

        ``request_uri`` is the Request-URI of the request as received: the
        credentials' ``uri`` must be the same (RFC 2617 §3.2.2.5). ``realm``,
        when given, is the only realm accepted. ``body`` is the message body,
        used only for qop=auth-int. On ok, the credentials' nc is recorded, so
        the same value is refused next time.
        """
        challenge_status = 407 if proxy else 401
        try:
            creds = DigestCredentials.parse(credentials)
        except AuthHeaderError as exc:
            # A non-Digest scheme is not malformed: we can only challenge for Digest.
            if isinstance(credentials, str) and _is_other_scheme(credentials):
                return AuthResult(
                    AuthOutcome.FAILED, "scheme not Digest", status_hint=challenge_status
                )
            return AuthResult(AuthOutcome.MALFORMED, exc.reason, status_hint=400)

        def failed(reason: str, outcome: AuthOutcome = AuthOutcome.FAILED) -> AuthResult:
            return AuthResult(
                outcome, reason, creds.username, creds.realm, creds.algorithm, challenge_status
            )

        alg = get_algorithm(creds.algorithm)
        if alg is None or alg not in self.algorithms:
            return failed("algorithm not offered")
        if creds.qop is None:
            if self.require_qop:
                return failed("qop required")
        elif creds.qop not in self.qop:
            return failed("qop not offered")
        if alg.session and creds.cnonce is None:
            return failed("-sess needs a cnonce")
        if creds.userhash:
            return failed("userhash not offered")
        if realm is not None and creds.realm != realm:
            return failed("realm not served")
        if not self._uri_matches(creds.uri, request_uri):
            return failed("uri does not match the Request-URI")
        if creds.opaque is not None and not self._check_opaque(creds.opaque, creds.realm):
            # A client that leaves opaque out is tolerated; one that alters it is not.
            return failed("opaque not ours")
        nonce = self._check_nonce(creds.nonce, creds.realm, proxy)
        if nonce is None:
            return failed(REASON_NONCE_INVALID)

        stored = lookup_ha1(creds.username, creds.realm, alg.base)
        known = stored is not None
        expected = digest_response(
            stored if stored is not None else self._dummy_ha1[alg.base],
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            algorithm=alg,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        matched = hmac.compare_digest(expected.encode(), _octets(creds.response.lower()))
        if not (matched and known):
            return failed(REASON_BAD_CREDENTIALS)

        age = now - nonce.issued
        if not -self.max_clock_skew <= age <= self.nonce_lifetime:  # also refuses a NaN now
            return failed(REASON_NONCE_EXPIRED, AuthOutcome.STALE)
        self.nonce_counts.expire(now - self.nonce_lifetime)
        nc = creds.nonce_count
        if nc is not None:
            # RFC 7616 §3.4: a repeated nc is a replay. Answering stale lets a
            # client that merely sent two requests out of order carry on with a
            # new nonce, while the replayed request itself is refused.
            if not self.nonce_counts.is_fresh(creds.nonce, nonce.issued, nc):
                return failed(REASON_NC_REPLAYED, AuthOutcome.STALE)
            self.nonce_counts.record(creds.nonce, nonce.issued, nc)
        return AuthResult(AuthOutcome.OK, "", creds.username, creds.realm, alg.name, None)


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    return digest_uri == request_uri


def _octets(text: str) -> bytes:
    # For MACs and hmac.compare_digest (which takes str only when ASCII): never
    # raises, even on lone surrogates a lenient message decoder may have left.
    return text.encode("utf-8", "surrogatepass")


_SCHEME_RE = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s|$)")


def _is_other_scheme(value: str) -> bool:
    found = _SCHEME_RE.match(value)
    return found is not None and found.group(1).lower() != "digest"


class HA1Table:
    """An in-memory ``lookup_ha1``: HA1 per (username, realm, algorithm), never passwords.

    Enough for tests and a static config; a database store provides the same
    call. ``add`` hashes a password once per algorithm and forgets it.
    """

    def __init__(self) -> None:
        self._ha1: dict[tuple[str, str, str], str] = {}

    def add(
        self,
        username: str,
        realm: str,
        password: str,
        algorithms: Iterable[str] = ("MD5", "SHA-256", "SHA-512-256"),
    ) -> None:
        for name in algorithms:
            alg = get_algorithm(name)
            if alg is None:
                continue  # e.g. SHA-512-256 where hashlib lacks it
            self._ha1[(username, realm, alg.base)] = ha1(username, realm, password, alg)

    def add_ha1(self, username: str, realm: str, algorithm: str, stored_ha1: str) -> None:
        alg = get_algorithm(algorithm)
        if alg is None:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self._ha1[(username, realm, alg.base)] = stored_ha1.lower()

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        return self._ha1.get((username, realm, algorithm))


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorization:
    """One ``Authorization``/``Proxy-Authorization`` header to put on a request.

    Keep it with the request: when the request is challenged, pass it back to
    :meth:`DigestClient.respond` as ``sent`` so the client knows whether these
    credentials already answered a challenge.
    """

    header_name: str
    value: str
    realm: str
    nonce: str
    solicited: bool  # computed in answer to a challenge, not reused from an earlier one
    attempt: int = 0  # how many challenges this request chain has answered, this one included


@dataclass(frozen=True, slots=True)
class RetryWith:
    """Send the request again (new CSeq, RFC 3261 §22.2) with these headers."""

    authorizations: tuple[Authorization, ...]


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: the credentials were refused, or no challenge can be answered."""

    reason: str


@dataclass(slots=True)
class _RealmState:
    challenge: DigestChallenge
    algorithm: DigestAlgorithm
    qop: str | None
    nc: int = 0


def _default_cnonce() -> str:
    return secrets.token_hex(16)


class DigestClient:
    """Answers Digest challenges for one user (RFC 3261 §22.2, §22.3).

    Give a ``password``, or stored HA1 values keyed by ``(realm, algorithm)``
    (the base algorithm name) in ``ha1s``. ``algorithms`` lists those we accept;
    of the challenges offered for a realm, the strongest accepted one is taken.
    """

    def __init__(
        self,
        username: str,
        password: str | None = None,
        *,
        ha1s: Mapping[tuple[str, str], str] | None = None,
        algorithms: Iterable[str] = tuple(a.name for a in ALGORITHMS.values()),
        cnonce_factory: Callable[[], str] = _default_cnonce,
        max_attempts: int = 3,
    ) -> None:
        if password is None and not ha1s:
            raise ValueError("give a password or HA1 values")
        self.username = username
        self._password = password
        self._ha1s: dict[tuple[str, str], str] = {
            (realm, alg.base): value.lower()
            for (realm, name), value in (ha1s or {}).items()
            if (alg := get_algorithm(name)) is not None
        }
        self._accepted = frozenset(
            alg for name in algorithms if (alg := get_algorithm(name)) is not None
        )
        self._cnonce = cnonce_factory
        self.max_attempts = max_attempts
        # (proxy, realm) -> the challenge answered last, for reuse on later requests.
        self._realms: dict[tuple[bool, str], _RealmState] = {}

    def _ha1_for(self, realm: str, alg: DigestAlgorithm) -> str | None:
        key = (realm, alg.base)
        if key not in self._ha1s:
            if self._password is None:
                return None
            self._ha1s[key] = ha1(self.username, realm, self._password, alg)
        return self._ha1s[key]

    def _usable(self, challenge: DigestChallenge) -> tuple[DigestAlgorithm, str | None] | None:
        alg = get_algorithm(challenge.algorithm)
        if alg is None or alg not in self._accepted or challenge.userhash:
            return None
        if "auth" in challenge.qop:
            qop: str | None = "auth"
        elif "auth-int" in challenge.qop:
            qop = "auth-int"
        elif challenge.qop:
            return None  # only qop values we do not know
        else:
            qop = None  # RFC 2069 style
        if alg.session and qop is None:
            return None  # no cnonce to derive the session key from
        if self._ha1_for(challenge.realm, alg) is None:
            return None
        return alg, qop

    def _choose(self, challenges: list[DigestChallenge]) -> dict[str, _RealmState]:
        """Per realm, the strongest usable challenge; the server's order breaks ties."""
        best: dict[str, _RealmState] = {}
        for challenge in challenges:
            usable = self._usable(challenge)
            if usable is None:
                continue
            alg, qop = usable
            current = best.get(challenge.realm)
            if current is None or alg.strength > current.algorithm.strength:
                best[challenge.realm] = _RealmState(challenge, alg, qop)
        return best

    def _authorization(
        self,
        state: _RealmState,
        method: str,
        uri: str,
        body: bytes,
        proxy: bool,
        *,
        solicited: bool,
        attempt: int,
    ) -> Authorization:
        challenge = state.challenge
        state.nc += 1
        nc = cnonce = None
        if state.qop is not None:
            nc = f"{state.nc:08x}"
            cnonce = self._cnonce()
        stored = self._ha1_for(challenge.realm, state.algorithm)
        assert stored is not None  # checked by _usable
        response = digest_response(
            stored,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            algorithm=state.algorithm,
            qop=state.qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        value = DigestCredentials(
            username=self.username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=state.algorithm.name,
            cnonce=cnonce,
            opaque=challenge.opaque,
            qop=state.qop,
            nc=nc,
        ).to_header()
        return Authorization(
            credentials_header_name(proxy),
            value,
            challenge.realm,
            challenge.nonce,
            solicited,
            attempt,
        )

    def respond(
        self,
        challenges: str | Iterable[str],
        method: str,
        uri: str,
        *,
        sent: Sequence[Authorization] = (),
        proxy: bool = False,
        body: bytes = b"",
    ) -> RetryWith | GiveUp:
        """What to do about a 401 (or a 407 when ``proxy``) to a request.

        ``challenges`` are the response's ``WWW-Authenticate`` (``Proxy-Authenticate``)
        values, ``method``/``uri``/``body`` those of the request to resend, and
        ``sent`` the :class:`Authorization` headers the challenged request carried.

        RFC 3261 §22.2: a challenge to credentials that themselves answered a
        challenge means they are wrong, unless it says ``stale=true``; then the
        answer is :class:`GiveUp`, never another try with the same password.
        Credentials reused from an earlier nonce get one fresh try.
        """
        parsed: list[DigestChallenge] = []
        if isinstance(challenges, str):
            challenges = (challenges,)
        for value in challenges:
            try:
                found = parse_challenges(value)
            except AuthHeaderError:
                continue  # one bad header does not spoil the others
            for item in found:
                if item.is_digest:
                    try:
                        parsed.append(DigestChallenge.from_auth_value(item))
                    except AuthHeaderError:
                        continue
        chosen = self._choose(parsed)
        if not chosen:
            return GiveUp("no Digest challenge we can answer")
        header_name = credentials_header_name(proxy)
        sent = [a for a in sent if a.header_name == header_name]
        previous = {a.realm: a for a in sent}
        # Counted over the whole request chain, so realms cannot take turns forever.
        attempt = max((a.attempt for a in sent), default=0) + 1
        if attempt > self.max_attempts:
            return GiveUp(f"challenged {attempt} times for one request")
        answers = []
        for realm, state in chosen.items():
            before = previous.get(realm)
            if before is not None and before.solicited:
                if not state.challenge.stale:
                    return GiveUp(f"credentials for realm {realm!r} refused")
                if state.challenge.nonce == before.nonce:
                    return GiveUp(f"realm {realm!r} called its own nonce stale")
            self._realms[(proxy, realm)] = state
            answers.append(
                self._authorization(
                    state, method, uri, body, proxy, solicited=True, attempt=attempt
                )
            )
        return RetryWith(tuple(answers))

    def authorize(
        self, method: str, uri: str, *, proxy: bool = False, body: bytes = b""
    ) -> tuple[Authorization, ...]:
        """Credentials for a new request, reusing the nonces of earlier challenges.

        Each use counts ``nc`` up for its nonce (RFC 7616 §3.4). Empty until a
        challenge has been answered.
        """
        return tuple(
            self._authorization(state, method, uri, body, proxy, solicited=False, attempt=0)
            for (for_proxy, _realm), state in self._realms.items()
            if for_proxy == proxy
        )

    def forget(self, realm: str | None = None) -> None:
        """Drop cached nonces (all, or one realm's), e.g. after a final failure."""
        for key in list(self._realms):
            if realm is None or key[1] == realm:
                del self._realms[key]
