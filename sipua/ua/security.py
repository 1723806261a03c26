"""The security gate: allowlists, bans, scanner and flood limits, overload, digest authentication.

:class:`SecurityGate` is the :class:`~sipua.ua.gate.RequestGate` that ``sipua serve``
installs. The UA asks it three times, cheapest first:

1. :meth:`SecurityGate.admit` for every UDP datagram and every new TCP/TLS
   connection, before parsing: the global allowlist (in ``drop`` mode) and bans
   (in ``drop`` mode) are enforced here, at the cost of one dict lookup.
2. :meth:`SecurityGate.screen` for every parsed request, before the transaction
   layer sees it (so nothing, not even a 100 Trying, goes back): scanner
   User-Agents, per-source rate limits, and bans on connections opened before
   the ban.
3. :meth:`SecurityGate.check_request` for every new transaction (not ACK or
   CANCEL): allowlist and bans in ``reject`` mode (403), overload (503 with
   Retry-After), header count, SIPS over TLS only, the session's transport
   policy, and Digest authentication with its failure bans.

Everything is counted in :attr:`SecurityGate.counters` and logged through the
``sipua.security`` logger with the peer address in ``extra`` (repeated events
from one source are logged at most once per :data:`LOG_INTERVAL`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sipua.sip.auth import DigestServer
from sipua.sip.errors import ParseError
from sipua.sip.message import Request
from sipua.sip.uri import SipUri, target_user
from sipua.transport.peer import Peer

from .authgate import CredentialLookup, CredentialRecord, RequestAuthenticator, Verdict, uri_check
from .gate import ALLOW, Decision
from .netlist import AddressList
from .overload import LoopLagMonitor
from .throttle import Ban, BanList, FailureTracker, RateLimiter, WindowCounter

log = logging.getLogger("sipua.security")

__all__ = [
    "DEFAULT_SCANNER_USER_AGENTS",
    "LOG_INTERVAL",
    "SecurityGate",
    "SecurityPolicy",
]

# User-Agent substrings of SIP scanners seen in the wild (matched case-insensitively).
DEFAULT_SCANNER_USER_AGENTS: tuple[str, ...] = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak-scan",
    "sundayddr",
    "iwar",
    "sivus",
    "vaxsipuseragent",
    "pplsip",
    "smap",
)
# Methods a scanner floods to find and probe servers; rate-limited out of dialog.
SCAN_METHODS = frozenset({"OPTIONS", "REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "NOTIFY"})
LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class SecurityPolicy:
    """Every knob of the gate, with the defaults ``sipua serve`` uses (see docs/SECURITY.md).

    A rate or count of 0 disables that limit.
    """

    # Digest authentication
    auth_required: bool = False
    realm: str = "sipua"
    proxy_challenge: bool = False  # 407/Proxy-Authenticate instead of 401/WWW-Authenticate
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_lifetime: float = 300.0
    uri_check: str = "strict"
    unauthenticated_methods: frozenset[str] = frozenset()
    # Who may connect
    allowlist: AddressList = field(default_factory=AddressList)
    allowlist_action: str = "reject"  # "reject": 403 (UDP) / close (TCP, TLS); "drop": silence
    # Failed authentications
    max_auth_failures: int = 5
    failure_window: float = 60.0
    ban_time: float = 300.0
    ban_action: str = "drop"  # or "reject": 403 Forbidden
    # Scanners and floods
    scanner_user_agents: tuple[str, ...] = DEFAULT_SCANNER_USER_AGENTS
    ban_scanners: bool = True
    scan_requests_per_second: float = 20.0
    scan_request_burst: float = 100.0
    requests_per_second: float = 0.0
    request_burst: float = 1000.0
    max_transactions_per_source: int = 0
    transaction_window: float = 32.0  # 64*T1: the longest a server transaction lives
    max_headers: int = 128
    # Overload
    max_transactions: int = 0
    overload_lag: float = 0.5
    overload_queue_delay: float = 0.2  # seconds a UDP datagram waits to be read (0: not used)
    retry_after: int = 5

    def __post_init__(self) -> None:
        if self.allowlist_action not in ("reject", "drop"):
            raise ValueError("allowlist_action must be 'reject' or 'drop'")
        if self.ban_action not in ("reject", "drop"):
            raise ValueError("ban_action must be 'reject' or 'drop'")
        uri_check(self.uri_check)  # raises on an unknown mode


SessionFinder = Callable[[str], Any]
DialogFinder = Callable[[Request], Any]


class SecurityGate:
    """A :class:`~sipua.ua.gate.RequestGate` enforcing a :class:`SecurityPolicy`.

    ``credentials`` supplies the users (required when ``policy.auth_required``);
    ``secret`` keys the digest nonces (persist it: nonces then survive restarts).
    ``wall_clock`` is the clock for nonces (they carry wall-clock issue times);
    the ``now`` passed to each hook is the UA's monotonic clock, used for bans
    and rates. Call :meth:`bind` once the UA exists, so the gate can find
    sessions, dialogs and the transaction count.
    """

    def __init__(
        self,
        policy: SecurityPolicy | None = None,
        credentials: CredentialLookup | None = None,
        *,
        secret: bytes | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy = policy or SecurityPolicy()
        if policy.auth_required and credentials is None:
            raise ValueError("authentication is required but no credentials were given")
        self.credentials = credentials
        self.wall_clock = wall_clock
        self.digest = DigestServer(
            secret,
            nonce_lifetime=policy.nonce_lifetime,
            algorithms=policy.algorithms,
            uri_matches=uri_check(policy.uri_check),
        )
        self.authenticator = (
            RequestAuthenticator(
                self.digest, credentials, policy.realm, proxy=policy.proxy_challenge
            )
            if credentials is not None
            else None
        )
        self.bans = BanList()
        self.failures = FailureTracker(
            max(policy.max_auth_failures, 1), max(policy.failure_window, 1e-3)
        )
        self.scan_rate = (
            RateLimiter(policy.scan_requests_per_second, max(policy.scan_request_burst, 1))
            if policy.scan_requests_per_second > 0
            else None
        )
        self.request_rate = (
            RateLimiter(policy.requests_per_second, max(policy.request_burst, 1))
            if policy.requests_per_second > 0
            else None
        )
        self.source_transactions = (
            WindowCounter(policy.transaction_window)
            if policy.max_transactions_per_source > 0
            else None
        )
        self.monitor = (
            LoopLagMonitor(policy.overload_lag, queue_threshold=policy.overload_queue_delay)
            if policy.overload_lag > 0
            else None
        )
        self._scanners = tuple(s.lower() for s in policy.scanner_user_agents if s)
        self._sessions: SessionFinder | None = None
        self._dialogs: DialogFinder | None = None
        self._transactions: Callable[[], int] | None = None
        self._logged: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._retry_after_seconds = max(int(policy.retry_after), 1)
        self._retry_after = (("Retry-After", str(self._retry_after_seconds)),)
        self.counters: dict[str, int] = {
            "allowlist_refused": 0,
            "banned_refused": 0,
            "bans": 0,
            "scanners_dropped": 0,
            "rate_limited": 0,
            "overload_refused": 0,
            "source_transactions_refused": 0,
            "too_many_headers": 0,
            "sips_refused": 0,
            "tls_required_refused": 0,
            "auth_challenges": 0,
            "auth_stale": 0,
            "auth_ok": 0,
            "auth_failures": 0,
            "auth_malformed": 0,
            "in_dialog_allowed": 0,
        }

    # -- wiring ----------------------------------------------------------------------

    def bind(
        self,
        *,
        sessions: SessionFinder | None = None,
        dialogs: DialogFinder | None = None,
        transactions: Callable[[], int] | None = None,
    ) -> None:
        """``sessions(user)``: the session a Request-URI user names; ``dialogs(request)``:
        the dialog an in-dialog request belongs to; ``transactions()``: how many are alive."""
        if sessions is not None:
            self._sessions = sessions
        if dialogs is not None:
            self._dialogs = dialogs
        if transactions is not None:
            self._transactions = transactions

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching event-loop lag (done by itself on first use inside a loop)."""
        if self.monitor is not None and not self.monitor.running:
            self.monitor.start(loop)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    def observe_queue_delay(self, delay: float, now: float) -> int | None:
        """The UDP transport's measurement: how long a datagram waited to be read.

        Returns the Retry-After seconds to shed new calls with while the service is
        overloaded (by this measurement or the loop's lag), None while it is not."""
        monitor = self.monitor
        if monitor is None:
            return None
        monitor.observe_queue(delay, now)
        return self._retry_after_seconds if monitor.overloaded(now) else None

    def _ensure_monitor(self) -> None:
        monitor = self.monitor
        if monitor is not None and not monitor.running:
            try:
                monitor.start()
            except RuntimeError:  # no running loop (unit tests calling the gate directly)
                pass

    # -- logging ---------------------------------------------------------------------

    def _note(
        self,
        kind: str,
        ip: str,
        transport: str,
        message: str,
        *args: Any,
        level: int = logging.INFO,
    ) -> None:
        """Log ``message`` for ``ip``, at most once per LOG_INTERVAL per (kind, ip)."""
        key = (kind, ip)
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._logged[key] = now
        self._logged.move_to_end(key)
        while len(self._logged) > 10_000:
            self._logged.popitem(last=False)
        log.log(level, message, *args, extra={"peer": ip, "transport": transport})

    # -- 1. admit: per packet / connection, before parsing --------------------------------

    def admit(self, ip: str, transport: str, now: float) -> bool:
        policy = self.policy
        # A stream from outside the allowlist is closed at accept; a datagram is dropped
        # here, or answered 403 by check_request in "reject" mode.
        if (
            policy.allowlist
            and ip not in policy.allowlist
            and (transport != "udp" or policy.allowlist_action == "drop")
        ):
            self.counters["allowlist_refused"] += 1
            self._note(
                "allowlist",
                ip,
                transport,
                "refused %s from %s: not in the allowlist",
                transport,
                ip,
            )
            return False
        if policy.ban_action == "drop" and self.bans.get(ip, now) is not None:
            self.counters["banned_refused"] += 1
            return False
        return True

    # -- 2. screen: every parsed request, before the transaction layer ----------------------

    def screen(self, request: Request, peer: Peer, now: float) -> bool:
        """False drops ``request`` silently: no transaction, no response."""
        ip = peer.source[0]
        policy = self.policy
        if policy.ban_action == "drop" and self.bans.get(ip, now) is not None:
            self.counters["banned_refused"] += 1
            return False
        if policy.allowlist and policy.allowlist_action == "drop" and ip not in policy.allowlist:
            self.counters["allowlist_refused"] += 1
            return False
        if self._scanners:
            agent = request.get("user-agent")
            if agent is not None:
                lowered = agent.lower()
                if any(s in lowered for s in self._scanners):
                    self.counters["scanners_dropped"] += 1
                    self._note(
                        "scanner", ip, peer.transport, "dropped scanner %r from %s", agent[:80], ip
                    )
                    if policy.ban_scanners and policy.ban_time > 0:
                        self._ban(ip, peer.transport, now, "scanner")
                    return False
        if self.request_rate is not None and not self.request_rate.allow(ip, now):
            self.counters["rate_limited"] += 1
            self._note("rate", ip, peer.transport, "rate-limiting requests from %s", ip)
            return False
        if (
            self.scan_rate is not None
            and request.method in SCAN_METHODS
            and _out_of_dialog(request)
            and not self.scan_rate.allow(ip, now)
        ):
            self.counters["rate_limited"] += 1
            self._note(
                "scan-rate",
                ip,
                peer.transport,
                "rate-limiting %s requests from %s",
                request.method,
                ip,
            )
            return False
        return True

    # -- 3. check_request: every new transaction -----------------------------------------

    def check_request(self, request: Request, peer: Peer, now: float) -> Decision:
        self._ensure_monitor()
        policy = self.policy
        ip = peer.source[0]
        transport = peer.transport
        if policy.allowlist and ip not in policy.allowlist:
            self.counters["allowlist_refused"] += 1
            self._note(
                "allowlist",
                ip,
                transport,
                "refused %s from %s: not in the allowlist",
                request.method,
                ip,
            )
            return _drop() if policy.allowlist_action == "drop" else Decision(403)
        ban = self.bans.get(ip, now)
        if ban is not None:
            self.counters["banned_refused"] += 1
            return _drop() if policy.ban_action == "drop" else Decision(403)
        refusal = self._overloaded(ip, transport, now, _out_of_dialog(request))
        if refusal is not None:
            return refusal
        if policy.max_headers and len(request.fields) > policy.max_headers:
            self.counters["too_many_headers"] += 1
            self._note(
                "headers",
                ip,
                transport,
                "refused a request with %d header fields from %s",
                len(request.fields),
                ip,
            )
            return Decision(400, "Too Many Header Fields")
        uri = request.uri
        if isinstance(uri, SipUri) and uri.secure and transport != "tls":
            # RFC 5630 §4 and Appendix A (RFC 3261 §26.2.2 as amended): SIPS means TLS on
            # every hop, the last one included; this hop was not TLS, and a UAS must not
            # treat a SIPS URI as SIP (§5.1.2). 416 is the answer RFC 5630 §5.1.1 expects
            # for a SIPS URI that cannot be served.
            self.counters["sips_refused"] += 1
            return Decision(
                416,
                "Unsupported URI Scheme",
                (("Warning", '399 sipua "a sips: Request-URI must arrive over TLS"'),),
            )
        if not _out_of_dialog(request) and self._dialogs is not None:
            try:
                dialog = self._dialogs(request)
            except ParseError:
                dialog = None
            if dialog is not None:
                # The dialog was set up by a request that passed this gate.
                self.counters["in_dialog_allowed"] += 1
                return ALLOW
        resolved: list[Any] = []

        def session() -> Any:
            """The session the Request-URI names, looked up once and only when needed."""
            if not resolved:
                resolved.append(self._session_for(request))
            return resolved[0]

        identity: str | None = None
        if policy.auth_required and request.method not in policy.unauthenticated_methods:
            decision, record = self._authenticate(request, ip, transport, now, session)
            if record is None:
                return decision
            identity = record.username
        if request.method == "INVITE" and transport != "tls" and _requires_tls(session()):
            # RFC 5630 §5.1.2: a UAS that requires SIPS answers a SIP request with 480 and
            # warn-code 381. The session wants TLS signalling and SRTP together, so a call
            # over UDP or TCP is refused here instead of failing later at offer/answer.
            self.counters["tls_required_refused"] += 1
            return Decision(
                480,
                "SIPS Required",
                (("Warning", '381 sipua "this session takes calls over TLS with SRTP only"'),),
                identity=identity,
            )
        if identity is not None:
            return Decision(identity=identity)
        return ALLOW

    # -- pieces -------------------------------------------------------------------------

    def _overloaded(self, ip: str, transport: str, now: float, new_work: bool) -> Decision | None:
        """503 for overload. The service-wide checks refuse new work only: a request in a
        dialog (a BYE above all) ends or changes a call already paid for, and refusing it
        would leave the call hanging. The per-source limit counts every transaction."""
        policy = self.policy
        monitor = self.monitor
        if new_work and monitor is not None and monitor.overloaded(now):
            self.counters["overload_refused"] += 1
            return Decision(503, "Service Unavailable", self._retry_after)
        if (
            new_work
            and policy.max_transactions
            and self._transactions is not None
            and self._transactions() > policy.max_transactions
        ):
            self.counters["overload_refused"] += 1
            self._note(
                "overload",
                "*",
                transport,
                "over %d transactions alive: refusing new requests with 503",
                policy.max_transactions,
            )
            return Decision(503, "Service Unavailable", self._retry_after)
        if self.source_transactions is not None:
            started = self.source_transactions.add(ip, now)
            if started > policy.max_transactions_per_source:
                self.counters["source_transactions_refused"] += 1
                self._note(
                    "source-tx",
                    ip,
                    transport,
                    "%s started over %d transactions in %.0f s",
                    ip,
                    policy.max_transactions_per_source,
                    policy.transaction_window,
                )
                return Decision(503, "Service Unavailable", self._retry_after)
        return None

    def _session_for(self, request: Request) -> Any:
        if self._sessions is None:
            return None
        user = target_user(request.uri)
        if not user:
            return None
        try:
            return self._sessions(user)
        except Exception:  # noqa: BLE001 - a lookup failure must not open the gate or crash
            log.exception("session lookup failed in the security gate")
            return None

    def _authenticate(
        self, request: Request, ip: str, transport: str, now: float, session: Callable[[], Any]
    ) -> tuple[Decision, CredentialRecord | None]:
        authenticator = self.authenticator
        assert authenticator is not None
        wall = self.wall_clock()
        verdict = authenticator.authenticate(request, ip, wall)
        kind = verdict.verdict
        if kind is Verdict.OK:
            record = verdict.record
            assert record is not None
            # Only after the right password: the lookup's cost tells nothing about users.
            if not record.scoped or record.allows_session(session()):
                self.counters["auth_ok"] += 1
                return ALLOW, record
            # Out of scope fails as a wrong password does: no oracle for good credentials.
            kind, reason = Verdict.FAILED, "session out of the credential's scope"
        else:
            reason = verdict.reason
        if kind is Verdict.CHALLENGE:
            self.counters["auth_challenges"] += 1
            return Decision(
                authenticator.challenge_status, headers=authenticator.challenge(wall)
            ), None
        if kind is Verdict.STALE:
            self.counters["auth_stale"] += 1
            return (
                Decision(
                    authenticator.challenge_status,
                    headers=authenticator.challenge(wall, stale=True),
                ),
                None,
            )
        self._auth_failed(ip, transport, now, verdict.username, reason)
        if kind is Verdict.MALFORMED:
            self.counters["auth_malformed"] += 1
            return Decision(
                400, "Bad Request", (("Warning", '399 sipua "malformed credentials"'),)
            ), None
        if kind is Verdict.MISMATCH:
            # Credentials we could not check (a nonce we did not issue, an algorithm we did
            # not offer, another uri): they say nothing about the user; challenge afresh.
            return Decision(
                authenticator.challenge_status, headers=authenticator.challenge(wall)
            ), None
        return Decision(403, "Forbidden"), None

    def _auth_failed(
        self, ip: str, transport: str, now: float, username: str | None, reason: str
    ) -> None:
        self.counters["auth_failures"] += 1
        # The reason stays in our log; the peer only ever sees 403 or a new challenge.
        self._note(
            "auth",
            ip,
            transport,
            "authentication failed from %s (user %r): %s",
            ip,
            (username or "")[:64],
            reason,
        )
        policy = self.policy
        if policy.max_auth_failures > 0 and policy.ban_time > 0 and self.failures.record(ip, now):
            self.failures.reset(ip)
            self._ban(ip, transport, now, f"{policy.max_auth_failures} failed authentications")

    def _ban(self, ip: str, transport: str, now: float, reason: str) -> Ban:
        existing = self.bans.get(ip, now)
        ban = self.bans.ban(ip, now, self.policy.ban_time, reason)
        if existing is None:
            self.counters["bans"] += 1
            log.warning(
                "banned %s for %.0f s: %s",
                ip,
                self.policy.ban_time,
                reason,
                extra={"peer": ip, "transport": transport},
            )
        return ban

    # -- operator view ----------------------------------------------------------------------

    def lift_ban(self, ip: str) -> bool:
        lifted = self.bans.lift(ip)
        self.failures.reset(ip)
        if lifted:
            log.warning("ban on %s lifted by the operator", ip, extra={"peer": ip})
        return lifted

    def active_bans(self, now: float) -> list[Ban]:
        return self.bans.active(now)

    def status(self, now: float) -> dict[str, Any]:
        """Counters, bans and overload state, for the HTTP API and metrics."""
        monitor = self.monitor
        return {
            "auth": "required" if self.policy.auth_required else "off",
            "realm": self.policy.realm,
            "counters": dict(self.counters),
            "bans": [
                {"address": b.address, "reason": b.reason, "seconds_left": round(b.until - now, 1)}
                for b in self.active_bans(now)
            ],
            "overloaded": bool(monitor is not None and monitor.overloaded(now)),
            "loop_lag_ms": round(monitor.lag(now) * 1000, 1) if monitor is not None else None,
            "queue_delay_ms": (
                round(monitor.queue_smoothed * 1000, 1) if monitor is not None else None
            ),
        }


def _drop() -> Decision:
    return Decision(drop=True)


def _out_of_dialog(request: Request) -> bool:
    try:
        return request.to.tag is None
    except ParseError:
        return True


def _requires_tls(session: Any) -> bool:
    """A session whose SIP provider asks for TLS transport and SRTP required."""
    provider = getattr(session, "provider", None)
    if provider is None or getattr(provider, "type", "sip") != "sip":
        return False
    transport = getattr(provider, "transport", None)
    srtp = getattr(provider, "srtp", None)
    mode = getattr(srtp, "enabled", None) if srtp is not None else None
    if mode is True:
        mode = "required"
    return transport == "tls" and mode == "required"


def scanner_matches(agent: str, scanners: Iterable[str] = DEFAULT_SCANNER_USER_AGENTS) -> bool:
    lowered = agent.lower()
    return any(s.lower() in lowered for s in scanners if s)
