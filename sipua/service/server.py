"""``sipua serve``: SIP transports, call control, media and the HTTP API in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn

from sipua import __version__
from sipua.sip.offer_answer import MediaPolicy
from sipua.sip.transaction import TimerConfig
from sipua.transport.manager import ListenConfig
from sipua.transport.tls import ensure_certificate, server_context
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.events import EventBus
from sipua.ua.uac import session_endpoints

from .api import create_app
from .apikey import ensure_api_key
from .bridge import configure_bridge
from .config import Settings, nameserver_address
from .events import EventPublisher
from .events_store import EventStore, open_event_store
from .logs import configure_logging
from .media_backend import build_media_backend
from .metrics import Metrics
from .security_setup import (
    SecurityRuntime,
    build_security,
    client_tls_context,
    server_tls_options,
)
from .sessions import PublicEndpoints, SessionService
from .store import open_repository
from .webhooks import WebhookDispatcher, session_target_resolver

log = logging.getLogger("sipua.server")


@dataclass
class RunningService:
    """What :func:`start_service` brought up; :meth:`stop` takes it all down."""

    settings: Settings
    ua: UserAgent
    sessions: SessionService
    bus: EventBus
    http: uvicorn.Server
    http_task: asyncio.Task
    api_key: str
    api_key_generated: bool
    ports: dict[str, Any]
    events: EventPublisher | None = None
    webhooks: WebhookDispatcher | None = None
    event_store: EventStore | None = None
    metrics: Metrics | None = None
    security: SecurityRuntime | None = None
    streams: Any = None  # sipua.service.streams.StreamHub

    async def stop(self) -> None:
        if self.streams is not None:
            # Stream participants leave first, reported like the SIP calls hung up below.
            await self.streams.close_all("shutdown")
        self.http.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.http_task), 5.0)
        if not self.http_task.done():
            self.http_task.cancel()
        await self.ua.stop()
        if self.webhooks is not None:
            # After the UA: the hang-ups of shutdown are logged (and delivered if quick).
            await self.webhooks.stop(timeout=2.0)
        if self.event_store is not None:
            self.event_store.close()
        if self.security is not None:
            self.security.close()
        self.sessions.close()


def _ua_config(settings: Settings) -> UaConfig:
    sip = settings.sip
    media = settings.media
    return UaConfig(
        timers=TimerConfig(t1=sip.t1, t2=sip.t2, t4=sip.t4, l=sip.ack_timeout),
        user_agent=sip.user_agent,
        ringing=sip.ringing,
        answer_delay=sip.answer_delay,
        media_policy=MediaPolicy(codecs=tuple(media.codecs), srtp=media.srtp),
        max_message_size=sip.max_message_size,
        max_calls_per_session=sip.max_calls_per_session,
        trace_calls=sip.trace_calls,
        trace_messages=sip.trace_messages,
        dns_resolver=_dns_resolver(sip.dns_servers),
        transfer_timeout=sip.transfer_timeout,
    )


def _dns_resolver(servers: list[str]) -> Any:
    """A resolver asking ``servers`` (RFC 3263 lookups of outbound calls), or None for the
    system's configuration."""
    if not servers:
        return None
    import dns.asyncresolver
    import dns.nameserver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [
        dns.nameserver.Do53Nameserver(*nameserver_address(server)) for server in servers
    ]
    return resolver


def _listen_config(settings: Settings) -> ListenConfig:
    sip = settings.sip
    transports = set(sip.transports)
    tls_ctx = None
    if "tls" in transports:
        if sip.tls_cert is not None and sip.tls_key is not None:
            cert, key = sip.tls_cert, sip.tls_key
        else:
            cert, key = ensure_certificate(settings.data_dir, [settings.resolved_public_host()])
        tls_ctx = server_context(
            cert, key, min_version=sip.tls_min_version, **server_tls_options(settings)
        )
    return ListenConfig(
        host=sip.host,
        udp_port=sip.udp_port if "udp" in transports else None,
        tcp_port=sip.tcp_port if "tcp" in transports else None,
        tls_port=sip.tls_port if "tls" in transports else None,
        also_ipv6=sip.ipv6,
        tls_context=tls_ctx,
        max_message_size=sip.max_message_size,
        max_connections_per_peer=sip.max_connections_per_peer,
        idle_timeout=sip.tcp_idle_timeout,
        advertised_host=settings.resolved_public_host(),
        client_tls_context=client_tls_context(settings),
    )


def _bind_http(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start_service(settings: Settings) -> RunningService:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    api_key, generated = ensure_api_key(settings)
    repo = open_repository(settings.data_dir)
    sessions = SessionService(repo, settings)
    bus = EventBus()
    listen = _listen_config(settings)
    # The SIP gate (docs/SECURITY.md): allowlists, bans, limits, overload, digest auth.
    security = build_security(settings)
    listen.admit_address = security.admit_address
    media = build_media_backend(settings, bus)
    ua = UserAgent(_ua_config(settings), listen, sessions, media, bus, gate=security.gate)
    security.bind(ua, sessions)
    try:
        listening = await ua.start()
        http_sock = _bind_http(settings.http.host, settings.http.port)
    except BaseException:
        await ua.stop()
        security.close()
        sessions.close()
        raise
    http_port = http_sock.getsockname()[1]
    ports = {
        "udp": listening.udp[0][1] if listening.udp else None,
        "tcp": listening.tcp[0][1] if listening.tcp else None,
        "tls": listening.tls[0][1] if listening.tls else None,
        "http": http_port,
    }
    sessions.endpoints = PublicEndpoints.from_settings(
        settings,
        udp_port=ports["udp"],
        tcp_port=ports["tcp"],
        tls_port=ports["tls"],
        http_port=http_port,
    )

    async def end_calls(session: Any) -> None:
        await ua.uas.end_calls(session.id)

    sessions.on_ended.append(end_calls)

    def dial_out(session: Any) -> None:
        if session_endpoints(session):  # provider.sip_uri / endpoints: sipua calls the PBX
            ua.uas.dialer.dial(session)

    sessions.on_created.append(dial_out)
    # Events: UA bus -> product events -> event log + signed webhooks, and metrics.
    event_store = open_event_store(settings.data_dir)
    metrics = Metrics()
    webhooks = WebhookDispatcher.from_settings(
        event_store,
        session_target_resolver(sessions, settings.webhooks),
        settings.webhooks,
        metrics=metrics,
    )
    events = EventPublisher([webhooks.submit, metrics.observe_event])
    events.attach(bus)
    sessions.on_ended.append(events.on_session_ended)  # after end_calls: its hang-ups first
    metrics.bind(ua=ua, sessions=sessions, webhooks=webhooks)
    await webhooks.start()
    app = create_app(settings, sessions, calls=ua.uas, api_key=api_key)
    app.state.ua = ua
    app.state.bus = bus
    app.state.events = events  # publish_provider_event() for the stream endpoints
    app.state.event_store = event_store
    app.state.metrics = metrics  # stream_connected()/stream_disconnected()
    app.state.sip_credentials = security.directory  # /v1/sip-credentials
    app.state.sip_security = security.gate  # /v1/sip-security
    # Media streams (Twilio, Telnyx, browsers) tick on the SIP media engine's clock; the bridge
    # app reports to the event log and can hang up SIP legs.
    engine = getattr(media, "engine", None)
    if engine is not None:
        app.state.streams.use_clock(engine.clock)
    configure_bridge(events=events, hangup_leg=_leg_hangup(ua), settings=settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    http = uvicorn.Server(config)
    # We own SIGINT/SIGTERM (serve() ends streams and calls first, then stops HTTP). uvicorn
    # would take them over when its task first runs: install_signal_handlers() in older
    # releases, capture_signals() in newer ones. Were it to win, a SIGTERM would make uvicorn
    # close every WebSocket with 1012 before the streams could say why they end.
    http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    http_task = asyncio.get_running_loop().create_task(http.serve(sockets=[http_sock]))
    return RunningService(
        settings,
        ua,
        sessions,
        bus,
        http,
        http_task,
        api_key,
        generated,
        ports,
        events=events,
        webhooks=webhooks,
        event_store=event_store,
        metrics=metrics,
        security=security,
        streams=app.state.streams,
    )


def _leg_hangup(ua: UserAgent) -> Any:
    """``(session_id, leg_id, reason) -> found``: hang up one SIP leg (the bridge's fallback)."""

    def hangup(session_id: str, leg_id: str, reason: str) -> bool:
        for call in list(ua.uas.calls_by_session.get(session_id, ())):
            if call.id == leg_id:
                ua.uas.hangup(call, reason)
                ua.after_user_action()
                return True
        return False

    return hangup


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the per-call path.

    Everything alive after start-up (modules, settings, the app) is moved out of the
    collector's sight with ``gc.freeze()``, and a young collection runs every 50,000
    allocations instead of 700: with thousands of live calls and transactions the default
    makes full collections frequent and long (profiles showed ~20 % of CPU in them).
    Call objects still form cycles (a call and its dialog refer to each other), so the
    collector stays on.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then hang up calls and stop cleanly."""
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    service = await start_service(settings)
    tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    ports = service.ports
    host = settings.resolved_public_host()
    print(f"sipua {__version__} serving", file=sys.stderr)
    print(
        f"  SIP  udp:{ports['udp']} tcp:{ports['tcp']} tls:{ports['tls']} on {settings.sip.host} (public {host})",
        file=sys.stderr,
    )
    print(
        f"  HTTP http://{settings.http.host}:{ports['http']}  (OpenAPI at /openapi.json)",
        file=sys.stderr,
    )
    print(f"  data {settings.data_dir}", file=sys.stderr)
    if service.api_key_generated:
        print(
            f"  API key (shown once, stored in {settings.data_dir / 'api_key'}): {service.api_key}",
            file=sys.stderr,
        )
    # One JSON line on stdout for scripts and tests to wait on.
    print(json.dumps({"event": "ready", "ports": ports, "public_host": host}), flush=True)
    done = asyncio.ensure_future(stop.wait())
    await asyncio.wait([done, service.http_task], return_when=asyncio.FIRST_COMPLETED)
    if service.http_task.done() and not done.done():
        exc = service.http_task.exception() if not service.http_task.cancelled() else None
        log.error("HTTP server stopped unexpectedly: %s", exc)
    done.cancel()
    log.info("shutting down")
    await service.stop()


def run(settings: Settings, *, use_uvloop: bool = False) -> None:
    if use_uvloop:
        import uvloop

        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))
