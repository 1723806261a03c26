"""The asyncio driver of the sans-I/O core.

Every input — a datagram, a framed stream message, a timer — goes the same
way: feed it to the :class:`~sipua.sip.transaction.TransactionLayer` with
``now``, handle the events it reports (:class:`~sipua.ua.uas.Uas` does the
call control), send what it emits, and arm one timer for its next deadline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipua.sip.builders import make_response
from sipua.sip.errors import ParseError
from sipua.sip.framer import MalformedMessage
from sipua.sip.ids import new_tag
from sipua.sip.message import Request, Response, parse_message, salvage_request
from sipua.sip.offer_answer import MediaPolicy
from sipua.sip.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TimerConfig,
    TransactionFailed,
    TransactionLayer,
    TransactionTimedOut,
)
from sipua.transport.manager import ListenConfig, Listening, TransportManager
from sipua.transport.peer import Peer
from sipua.transport.routing import response_peer, stamp_via

from .events import EventBus
from .gate import OpenGate, RequestGate
from .media import MediaBackend
from .trace import SipTrace
from .uas import SessionResolver, Uas

if TYPE_CHECKING:
    import dns.asyncresolver

log = logging.getLogger(__name__)


@dataclass
class UaConfig:
    timers: TimerConfig = field(default_factory=TimerConfig)
    user_agent: str = "sipua"
    ringing: bool = True
    answer_delay: float = 0.0
    media_policy: MediaPolicy = field(default_factory=MediaPolicy)
    max_transactions: int | None = 200_000
    max_message_size: int = 65535
    max_calls_per_session: int = 100
    # Where outbound calls look up NAPTR/SRV/A/AAAA (RFC 3263); None: the system's resolver
    # configuration (see sipua.transport.resolver). Tests point one at a stub nameserver.
    dns_resolver: dns.asyncresolver.Resolver | None = None
    trace_calls: int = 10000  # Call-IDs whose messages are kept for operators (0: no trace)
    trace_messages: int = 200  # messages kept per Call-ID
    transfer_timeout: float = 60.0  # seconds a REFER has to report a final outcome


class UserAgent:
    def __init__(
        self,
        config: UaConfig,
        listen: ListenConfig,
        sessions: SessionResolver,
        media: MediaBackend,
        bus: EventBus | None = None,
        gate: RequestGate | None = None,
    ) -> None:
        self.config = config
        self.gate: RequestGate = gate or OpenGate()
        # 100 Trying goes only to INVITEs the call control has not answered by the end of
        # the burst that brought them (RFC 3261 §17.2.1): an immediate 180 makes it needless.
        self.layer = TransactionLayer(
            config.timers, max_transactions=config.max_transactions, auto_trying="deferred"
        )
        self.transports = TransportManager(
            listen, self._on_datagram, self._on_message, self._on_malformed, self._drain
        )
        self.bus = bus or EventBus()
        self.uas = Uas(self, sessions, media, self.bus)
        self.trace = SipTrace(config.trace_calls, config.trace_messages)
        self.bus.subscribe(self.trace.on_call_event)  # which session each Call-ID belongs to
        self.transports.pool.on_connect_failed = self._on_connect_failed
        if getattr(self.gate, "observe_queue_delay", None) is not None:
            self.transports.on_queue_delay = self._on_queue_delay
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self.counters: dict[str, int] = {
            "requests_received": 0,
            "responses_received": 0,
            "parse_errors": 0,
            "keepalives": 0,
            "handler_errors": 0,
            "dropped_by_gate": 0,
        }
        self.responses_sent: dict[int, int] = {}
        self.requests_by_method: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> Listening:
        self._loop = asyncio.get_running_loop()
        return await self.transports.start()

    async def stop(self) -> None:
        await self.uas.shutdown()
        self._drain()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.transports.close()
        await self.uas.media.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "UserAgent.start() first"
        return self._loop

    def now(self) -> float:
        return self.loop.time()

    # -- input -------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        if not self.gate.admit(peer.source[0], "udp", self.loop.time()):
            self.counters["dropped_by_gate"] += 1
            return
        if len(data) <= 4 and not data.strip(b"\r\n\x00"):
            self.counters["keepalives"] += (
                1  # CRLF keep-alives (RFC 5626 §4.4.1 uses STUN; some send CRLF)
            )
            return
        try:
            message = parse_message(data, max_size=self.config.max_message_size)
        except ParseError as e:
            self._reject_unparsable(data, peer, e)
            return
        # The UDP listener calls _drain once after each burst of datagrams.
        self._receive(message, peer, data)

    def _on_queue_delay(self, delay: float) -> None:
        """At the start of each UDP burst: how long its first datagram waited to be read.

        While the gate finds the service overloaded, the transaction layer answers the new
        INVITEs of this burst with a stateless 503 (far cheaper than a call, or than a 503
        from a transaction: shedding that costs nearly as much as serving sheds nothing).
        """
        gate: Any = self.gate  # wired only for a gate that has observe_queue_delay
        retry_after = gate.observe_queue_delay(delay, self.loop.time())
        layer = self.layer
        layer.shedding = retry_after is not None
        if retry_after is not None:
            layer.retry_after = retry_after

    def _on_malformed(self, data: bytes, peer: Peer, event: MalformedMessage | None) -> None:
        error = event.error if event is not None else ParseError("malformed message")
        if event is not None and isinstance(event.message, Request):
            self._reject_request(event.message, peer, error)
        else:
            self._reject_unparsable(data, peer, error)

    def _on_message(self, message: Request | Response, peer: Peer) -> None:
        """A message framed on a stream connection."""
        self._receive(message, peer)
        self._drain()

    def _receive(self, message: Request | Response, peer: Peer, raw: bytes | None = None) -> None:
        """Feed one message to the transaction layer; events wait for the next _drain."""
        now = self.loop.time()
        trace = self.trace
        if trace.max_calls:
            trace.record_message(
                "in", message, raw if raw is not None else message.to_bytes(), peer
            )
        try:
            if isinstance(message, Request):
                self.counters["requests_received"] += 1
                method = message.method
                self.requests_by_method[method] = self.requests_by_method.get(method, 0) + 1
                # Optional gate hook: drop before any transaction exists (not even a 100 goes back).
                screen = getattr(self.gate, "screen", None)
                if screen is not None and not screen(message, peer, now):
                    self.counters["dropped_by_gate"] += 1
                    return
                stamp_via(message, peer.source)
                message.context = response_peer(message, peer)
                self.layer.receive(message, now, reliable=peer.reliable)
            else:
                self.counters["responses_received"] += 1
                message.context = peer
                self.layer.receive(message, now)
        except ParseError as e:
            if isinstance(message, Request):
                self._reject_request(message, peer, e)
            else:
                # RFC 3261 §18.1.2: a malformed response is dropped.
                self.counters["parse_errors"] += 1
                log.info("dropped malformed response from %s: %s", peer, e.detail)

    def _reject_unparsable(self, data: bytes, peer: Peer, error: ParseError) -> None:
        self.counters["parse_errors"] += 1
        request = salvage_request(data)
        if request is None:
            log.info("dropped unparsable message from %s: %s", peer, error.detail)
            return
        self._reject_request(request, peer, error)

    def _reject_request(self, request: Request, peer: Peer, error: ParseError) -> None:
        """Answer a request we cannot process statelessly with the status its fault calls for."""
        self.counters["parse_errors"] += 1
        if request.method == "ACK":
            return  # never answer an ACK
        log.info("rejecting %s from %s: %d %s", request.method, peer, error.status, error.detail)
        try:
            try:
                stamp_via(request, peer.source)
                target = response_peer(request, peer)
            except ParseError:
                target = peer
            detail = error.detail.replace("\\", "").replace('"', "'")[:200]
            response = make_response(
                request,
                error.status,
                error.reason,
                to_tag=new_tag(),  # RFC 3261 §8.2.6.2
                headers=[("Warning", f'399 sipua "{detail}"')],
            )
            self.send_message(response, target)
        except Exception:  # noqa: BLE001 - the request is too broken to answer
            log.debug("could not answer malformed request from %s", peer, exc_info=True)

    def _on_connect_failed(self, transport: str, addr: tuple[str, int]) -> None:
        """A TCP/TLS connection could not be opened: every transaction waiting to send on it
        fails now (RFC 3261 §17.1.4, §17.2.4), so an outbound call tries its next target."""
        now = self.loop.time()
        layer = self.layer
        for tx in [*layer.client.values(), *layer.server.values()]:
            peer = tx.context
            if (
                isinstance(peer, Peer)
                and peer.transport == transport
                and tuple(peer.addr) == tuple(addr)
                and (peer.connection is None or not peer.connection.is_open)
            ):
                layer.transport_error(tx, now, f"could not connect to {addr[0]}:{addr[1]}")
        self._drain()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        self.layer.handle_timer(self.loop.time())
        self._drain()

    # -- the driver loop -------------------------------------------------------------

    def _drain(self) -> None:
        layer = self.layer
        uas = self.uas
        for _ in range(1000):  # bounded: handlers may cause events, never endlessly
            events = layer.events()
            if not events:
                break
            for event in events:
                try:
                    handler = _HANDLERS[type(event)]
                    handler(uas, event)
                except Exception:  # noqa: BLE001 - one bad call must not stop the others
                    self.counters["handler_errors"] += 1
                    log.exception("error handling %s", type(event).__name__)
                    self._fail_safe(event)
        layer.send_deferred_trying(self.loop.time())
        self.flush()
        self._arm()

    def flush(self) -> None:
        send = self.transports.send
        sent = self.responses_sent
        trace = self.trace if self.trace.max_calls else None
        for out in self.layer.messages_to_send():
            message = out.message
            if isinstance(message, Response):
                status = message.status
                sent[status] = sent.get(status, 0) + 1
            send(out.data, out.context)
            if trace is not None:
                trace.record_message("out", message, out.data, out.context)

    def _arm(self) -> None:
        when = self.layer.next_timer()
        if when is None:
            return
        if self._timer_when is not None and self._timer_when <= when:
            return  # an earlier wake-up is armed; it re-arms for the rest
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _fail_safe(self, event: Any) -> None:
        """After a handler bug, answer a pending request with 500 rather than leave it hanging."""
        if isinstance(event, RequestReceived):
            tx = event.transaction
            try:
                if tx.last_response is None or tx.last_response.status < 200:
                    self.layer.respond(tx, make_response(event.request, 500), self.loop.time())
            except Exception:  # noqa: BLE001
                log.debug("fail-safe 500 failed", exc_info=True)

    # -- output helpers for call control ---------------------------------------------

    def send_message(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction (stateless responses, ACK for 2xx)."""
        if isinstance(message, Response):
            self.responses_sent[message.status] = self.responses_sent.get(message.status, 0) + 1
        data = message.to_bytes()
        self.transports.send(data, peer)
        if self.trace.max_calls:
            self.trace.record_message("out", message, data, peer)

    def after_user_action(self) -> None:
        """Call after acting outside an input (API call, answer timer): send and re-arm."""
        self._drain()


_HANDLERS = {
    RequestReceived: Uas.on_request,
    CancelReceived: Uas.on_cancel,
    AckReceived: Uas.on_ack,
    AckTimedOut: Uas.on_ack_timeout,
    ResponseReceived: Uas.on_response,
    StrayResponseReceived: Uas.on_stray_response,
    TransactionTimedOut: Uas.on_timeout,
    TransactionFailed: Uas.on_failure,
}
