"""The session service: create, look up and end sessions.

:class:`SessionService` is what the rest of sipua talks to. The HTTP API creates and ends
sessions through it; the SIP stack calls :meth:`SessionService.resolve_sip_user` on every
INVITE, which is a dict lookup (active sessions are all cached in memory, write-through to
the repository), and subscribes to :attr:`SessionService.on_ended` to hang up calls when a
session ends.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from sipua.service.ids import is_session_id, new_session_id, new_token
from sipua.service.models import (
    MediaOptions,
    ProviderConfig,
    Session,
    SessionCreate,
    SessionMode,
    SessionResponse,
    SessionStatus,
    SipAddresses,
    SipProvider,
    SrtpOptions,
    StreamInfo,
    stream_token_expiry,
)
from sipua.service.store import SessionRepository

if TYPE_CHECKING:
    from sipua.service.config import Settings

__all__ = [
    "CallInfo",
    "EndedObserver",
    "PublicEndpoints",
    "SessionListPage",
    "SessionRequestError",
    "SessionService",
]

log = logging.getLogger(__name__)

SIP_USER_PREFIX = "session_"

EndedObserver = Callable[[Session], Awaitable[None] | None]


@runtime_checkable
class CallInfo(Protocol):
    """What the service layer needs from the SIP side about calls (implemented by ``ua``)."""

    def active_calls(self, session_id: str) -> int:
        """Number of calls currently connected to the session."""
        ...

    async def end_calls(self, session_id: str) -> int:
        """Hang up (BYE/CANCEL) every call of the session; returns how many were ended."""
        ...


class SessionRequestError(ValueError):
    """A create request that is well-formed but conflicts with the server's settings.

    ``loc`` names the field as FastAPI would (``("body", "media", "bridge_url")``), so the API
    can answer 422 in the same shape as schema validation errors.
    """

    def __init__(self, loc: tuple[str | int, ...], msg: str, type_: str = "value_error") -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc = loc
        self.msg = msg
        self.type = type_

    def errors(self) -> list[dict[str, Any]]:
        return [{"type": self.type, "loc": self.loc, "msg": self.msg, "input": None}]


def _bracket(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


@dataclass(frozen=True, slots=True)
class PublicEndpoints:
    """How the outside world reaches this node; used to build SIP URIs and stream URLs.

    Built from settings at startup. When listeners bind port 0, the orchestrator replaces it
    with the real ports: ``service.endpoints = PublicEndpoints.from_settings(s, udp_port=...)``.
    """

    host: str
    sip_port: int
    sip_transport: str | None  # URI transport parameter, None for the UDP default
    tls_port: int | None  # None when there is no TLS listener
    stream_base: str  # e.g. "ws://203.0.113.5:8080"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        udp_port: int | None = None,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        http_port: int | None = None,
    ) -> PublicEndpoints:
        sip = settings.sip
        host = settings.resolved_public_host()
        transports = set(sip.transports)
        tls = tls_port if tls_port is not None else sip.tls_port
        if "udp" in transports:
            port, transport = (udp_port if udp_port is not None else sip.udp_port), None
        elif "tcp" in transports:
            port, transport = (tcp_port if tcp_port is not None else sip.tcp_port), "tcp"
        else:
            port, transport = tls, "tls"
        public_url = settings.http.public_url
        if public_url is not None:
            parts = urlsplit(str(public_url))
            scheme = "wss" if parts.scheme == "https" else "ws"
            stream_base = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        else:
            http = http_port if http_port is not None else settings.http.port
            stream_base = f"ws://{_bracket(host)}:{http}"
        return cls(
            host=host,
            sip_port=port,
            sip_transport=transport,
            tls_port=tls if "tls" in transports else None,
            stream_base=stream_base,
        )

    def sip_uri(self, session_id: str) -> str:
        """``sip:session_<id>@host[:port]``, the port omitted when it is the default 5060."""
        default = 5060 if self.sip_transport != "tls" else 5061
        port = "" if self.sip_port == default else f":{self.sip_port}"
        params = f";transport={self.sip_transport}" if self.sip_transport else ""
        return f"sip:{SIP_USER_PREFIX}{session_id}@{_bracket(self.host)}{port}{params}"

    def sips_uri(self, session_id: str) -> str | None:
        """``sips:session_<id>@host[:port]`` (default port 5061), or None without TLS."""
        if self.tls_port is None:
            return None
        port = "" if self.tls_port == 5061 else f":{self.tls_port}"
        return f"sips:{SIP_USER_PREFIX}{session_id}@{_bracket(self.host)}{port}"

    def stream_url(self, session_id: str) -> str:
        return f"{self.stream_base}/v1/streams/{session_id}"


@dataclass(frozen=True, slots=True)
class SessionListPage:
    items: Sequence[Session]
    next_after: str | None


class SessionService:
    """Sessions: creation, lookup (O(1), synchronous), ending and observers.

    All methods must be called from one thread (the event loop's); only :meth:`end` awaits.
    """

    #: Ended sessions kept in memory for fast repeated lookups (e.g. retransmitted INVITEs).
    ENDED_CACHE_SIZE = 1024

    def __init__(
        self,
        repo: SessionRepository,
        settings: Settings,
        *,
        endpoints: PublicEndpoints | None = None,
        clock: Callable[[], datetime] | None = None,
        observer_timeout: float = 10.0,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.endpoints = endpoints or PublicEndpoints.from_settings(settings)
        #: Called with the ended :class:`Session` whenever a session ends (once per session).
        #: Sync callables run inline; awaitables run concurrently, bounded by observer_timeout.
        self.on_ended: list[EndedObserver] = []
        #: Called with each new :class:`Session` once it is stored (outbound sessions dial here).
        self.on_created: list[Callable[[Session], None]] = []
        self.observer_timeout = observer_timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        self._active: dict[str, Session] = {}
        self._ended: OrderedDict[str, Session] = OrderedDict()
        self._observer_tasks: set[asyncio.Task[Any]] = set()
        self._load_active()

    def _load_active(self) -> None:
        after: str | None = None
        while True:
            page = self.repo.list(1000, after=after, status=SessionStatus.ACTIVE)
            for session in page:
                self._active[session.id] = session
            if len(page) < 1000:
                break
            after = page[-1].id
        if self._active:
            log.info("loaded %d active sessions", len(self._active))

    # -- lookups (synchronous, hot path) -------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """The session with this exact id (active or ended), or ``None``."""
        session = self._active.get(session_id)
        if session is not None:
            return session
        session = self._ended.get(session_id)
        if session is not None:
            self._ended.move_to_end(session_id)
            return session
        if not is_session_id(session_id):
            return None  # never let garbage reach the store
        session = self.repo.get(session_id)
        if session is not None:
            self._cache(session)
        return session

    def resolve_sip_user(self, user: str) -> Session | None:
        """The session a Request-URI user part names: ``session_<id>`` or ``<id>``.

        Matching is exact and case-sensitive. Returns ended sessions too, so the SIP side can
        tell "gone" from "never existed"; check :attr:`Session.accepting_calls`.
        """
        session_id = user.removeprefix(SIP_USER_PREFIX)
        return self.get(session_id)

    @property
    def active_sessions(self) -> Sequence[Session]:
        return list(self._active.values())

    def list(
        self, limit: int = 20, after: str | None = None, status: SessionStatus | None = None
    ) -> SessionListPage:
        """A page of sessions in creation order, starting after the id ``after``."""
        limit = max(1, min(limit, 1000))
        rows = self.repo.list(limit + 1, after=after, status=status)
        if len(rows) > limit:
            return SessionListPage(items=rows[:limit], next_after=rows[limit - 1].id)
        return SessionListPage(items=rows, next_after=None)

    # -- changes -------------------------------------------------------------------------------

    def create(self, request: SessionCreate) -> Session:
        """Store a new active session; raises :class:`SessionRequestError` on a settings clash."""
        session = Session(
            id=new_session_id(),
            status=SessionStatus.ACTIVE,
            mode=request.mode,
            source_language=request.source_language,
            target_language=request.target_language,
            provider=self._resolve_provider(request.provider),
            media=self._resolve_media(request),
            metadata=request.metadata,
            webhook_url=request.webhook_url,
            stream_token=new_token(),
            created_at=self._clock(),
        )
        self.repo.create(session)
        self._active[session.id] = session
        log.info(
            "session created",
            extra={"session_id": session.id, "mode": session.mode.value},
        )
        for observer in list(self.on_created):
            try:
                observer(session)
            except Exception:  # noqa: BLE001 - the session exists; its call reports its failure
                log.exception("session observer failed", extra={"session_id": session.id})
        return session

    async def end(self, session_id: str) -> Session | None:
        """End a session and notify :attr:`on_ended`; ``None`` if unknown. Idempotent."""
        session = self.get(session_id)
        if session is None or session.status is SessionStatus.ENDED:
            return session
        # No await between the check above and these updates: concurrent end() calls see the
        # session ended and return without notifying twice.
        updated = self.repo.set_status(session_id, SessionStatus.ENDED, self._clock())
        self._active.pop(session_id, None)
        if updated is None:
            return None
        self._cache(updated)
        log.info("session ended", extra={"session_id": session_id})
        await self._notify_ended(updated)
        return updated

    def close(self) -> None:
        """Close the repository. Pending observer tasks are cancelled."""
        for task in list(self._observer_tasks):
            task.cancel()
        self.repo.close()

    # -- presentation --------------------------------------------------------------------------

    def describe(
        self, session: Session, calls: int = 0, participants: Sequence[Any] = ()
    ) -> SessionResponse:
        """The API view of a session, with URIs built from :attr:`endpoints`."""
        ep = self.endpoints
        return SessionResponse(
            id=session.id,
            status=session.status,
            mode=session.mode,
            source_language=session.source_language,
            target_language=session.target_language,
            provider=session.provider,
            media=session.media,
            metadata=session.metadata,
            webhook_url=session.webhook_url,
            sip=SipAddresses(uri=ep.sip_uri(session.id), tls_uri=ep.sips_uri(session.id)),
            stream=StreamInfo(
                url=ep.stream_url(session.id),
                token=session.stream_token,
                expires_at=stream_token_expiry(session.created_at, self.settings.streams.token_ttl),
            ),
            created_at=session.created_at,
            ended_at=session.ended_at,
            calls=max(0, calls),
            participants=list(participants),
        )

    # -- internals -----------------------------------------------------------------------------

    def _cache(self, session: Session) -> None:
        if session.status is SessionStatus.ACTIVE:
            self._active[session.id] = session
            return
        self._ended[session.id] = session
        self._ended.move_to_end(session.id)
        while len(self._ended) > self.ENDED_CACHE_SIZE:
            self._ended.popitem(last=False)

    def _resolve_provider(self, provider: ProviderConfig | None) -> ProviderConfig | None:
        if not isinstance(provider, SipProvider):
            return provider
        media = self.settings.media
        loc: tuple[str | int, ...] = ("body", "provider", "sip")
        codecs = provider.codecs
        if codecs is None:
            codecs = list(media.codecs)
        else:
            disabled = [c for c in codecs if c not in media.codecs]
            if disabled:
                raise SessionRequestError(
                    (*loc, "codecs"),
                    f"codec {disabled[0]} is not enabled on this server "
                    f"(enabled: {', '.join(media.codecs)})",
                )
        srtp = provider.srtp
        if srtp is None:
            srtp = SrtpOptions(enabled=media.srtp)
        elif media.srtp == "off" and srtp.enabled == "required":
            raise SessionRequestError(
                (*loc, "srtp", "enabled"), "SRTP is required but disabled on this server"
            )
        elif media.srtp == "required" and srtp.enabled == "off":
            raise SessionRequestError(
                (*loc, "srtp", "enabled"), "this server requires SRTP; 'off' is not allowed"
            )
        return provider.model_copy(update={"codecs": codecs, "srtp": srtp})

    def _resolve_media(self, request: SessionCreate) -> MediaOptions:
        media = request.media
        if media.app is not None:
            return media
        if media.bridge_url is not None:
            app = "bridge"
        elif media.play_file is not None or media.play_tone is not None:
            app = "play"
        elif request.mode is SessionMode.ECHO:
            app = "echo"
        elif request.mode is SessionMode.CONFERENCE:
            app = "conference"
        else:
            app = self.settings.media.default_app
        if app == "bridge" and media.bridge_url is None:
            raise SessionRequestError(
                ("body", "media", "bridge_url"),
                "bridge_url is required: the server's default media app is 'bridge'",
                "missing",
            )
        if app == "play" and media.play_file is None and media.play_tone is None:
            raise SessionRequestError(
                ("body", "media", "play_file"),
                "play_file is required: the server's default media app is 'play'",
                "missing",
            )
        return media.model_copy(update={"app": app})

    async def _notify_ended(self, session: Session) -> None:
        pending: list[Awaitable[Any]] = []
        for observer in list(self.on_ended):
            try:
                result = observer(session)
            except Exception:
                log.exception("on_ended observer failed", extra={"session_id": session.id})
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        if not pending:
            return
        tasks = {asyncio.ensure_future(aw) for aw in pending}
        for task in tasks:
            # Held until done, so a cancelled end() does not leave them to the GC.
            self._observer_tasks.add(task)
            task.add_done_callback(self._observer_tasks.discard)
        done, late = await asyncio.wait(tasks, timeout=self.observer_timeout)
        for task in late:
            task.cancel()
            log.warning(
                "on_ended observer did not finish within %.1fs; cancelled",
                self.observer_timeout,
                extra={"session_id": session.id},
            )
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "on_ended observer failed",
                    exc_info=task.exception(),
                    extra={"session_id": session.id},
                )
