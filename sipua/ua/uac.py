"""Outbound calls: sipua dials a session's PBX (RFC 3261 §8.1, §13.2, §17.1, §22.2).

A session whose provider names ``sip_uri`` (and possibly more ``endpoints``) is
connected by calling out: the endpoints are tried one after the other in
priority order, each for at most ``dial_timeout_s`` seconds. An endpoint that
does not answer, cannot be reached or answers 408 or 5xx passes the call to the
next one; any other final answer (486 Busy, 603 Decline, 404 …) is the callee's
and ends the attempt. 401/407 are answered once with the session's credentials
(:mod:`sipua.ua.challenges`). Once a 2xx comes, the call is a participant like
any incoming one: the same dialog handling, media, events and hang-up.

An endpoint's host is located as RFC 3263 §4 says (:func:`sipua.transport.resolver.locate`:
NAPTR, SRV, A/AAAA; ``UaConfig.dns_resolver`` names the nameservers, None the system's).
When that gives several targets, one that fails at the transport, times out without any
response (Timer B, or ``dial_timeout_s`` without even a provisional) or answers 503 passes
the call to the endpoint's next target (RFC 3263 §4.3), a new INVITE transaction with its
own ``dial_timeout_s``; when the targets run out, the endpoint has failed as above.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipua.sip.builders import make_cancel
from sipua.sip.dialog import Dialog
from sipua.sip.errors import ParseError
from sipua.sip.ids import new_branch, new_call_id, new_tag
from sipua.sip.message import Request, Response
from sipua.sip.offer_answer import AnswerState, OfferRejected, make_offer, process_answer
from sipua.sip.sdp import SdpError
from sipua.sip.transaction import Transaction
from sipua.sip.uri import SipUri, parse_uri
from sipua.transport.peer import Peer
from sipua.transport.resolver import (
    Target,
    default_transport,
    locate,
    uri_transport,
)
from sipua.transport.routing import DEFAULT_PORTS

from .call import Call, CallState
from .capabilities import ALLOW
from .events import CallConnected, CallConnecting

if TYPE_CHECKING:
    from .uas import Uas

log = logging.getLogger(__name__)

DEFAULT_DIAL_TIMEOUT = 30.0
# Final responses after which the next endpoint is tried: the endpoint, not the callee, failed.
FAILOVER_STATUSES = frozenset({408}) | frozenset(range(500, 600))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to call: a SIP or SIPS URI, with its priority (lower first) and region."""

    uri: str
    priority: int = 0
    region: str | None = None


def session_endpoints(session: Any) -> list[Endpoint]:
    """The endpoints a session's provider asks to be called at, in the order to try them.

    ``sip_uri`` comes first; ``endpoints`` follow by priority (stable for equal ones).
    """
    provider = getattr(session, "provider", None)
    if provider is None:
        return []
    out: list[Endpoint] = []
    sip_uri = getattr(provider, "sip_uri", None)
    if sip_uri:
        out.append(Endpoint(str(sip_uri)))
    more = getattr(provider, "endpoints", None) or ()
    ranked = sorted(more, key=lambda e: getattr(e, "priority", 0))
    out += [
        Endpoint(str(e.uri), getattr(e, "priority", 0), getattr(e, "region", None)) for e in ranked
    ]
    return out


@dataclass
class _Attempt:
    """One endpoint being called."""

    endpoint: Endpoint
    peer: Peer
    tx: Transaction
    done: asyncio.Future[tuple[int, str]]
    provisional: bool = False  # a 1xx came: the INVITE may be cancelled (RFC 3261 §9.1)
    cancel_pending: bool = False  # given up before any 1xx: CANCEL when one comes
    cancelled: bool = False


@dataclass
class Dialing:
    """What an outbound call needs until it is connected; kept on :attr:`Call.dialing`."""

    endpoints: list[Endpoint]
    timeout: float
    local_uri: str  # our From, without its tag
    from_tag: str
    call_id: str
    cseq: int = 0
    attempt: _Attempt | None = None
    abandoned: list[_Attempt] = field(default_factory=list)  # attempts we gave up on
    ack: Request | None = None  # the ACK of the 2xx, sent again for its retransmissions
    # uri, status, reason, and the targets tried ("transport:address:port")
    tried: list[dict[str, Any]] = field(default_factory=list)


class Dialer:
    """Places outbound calls with the UAS's transaction layer, dialogs and media."""

    def __init__(self, uas: Uas) -> None:
        self.uas = uas
        self.ua = uas.ua

    # -- starting ------------------------------------------------------------------

    def dial(self, session: Any, *, timeout: float | None = None) -> Call:
        """Call the session's endpoints; returns the call at once (it is dialing)."""
        endpoints = session_endpoints(session)
        if not endpoints:
            raise ValueError("the session names no sip_uri or endpoints to call")
        provider = getattr(session, "provider", None)
        timeout = float(
            timeout or getattr(provider, "dial_timeout_s", None) or DEFAULT_DIAL_TIMEOUT
        )
        call = Call.outgoing(session, self._first_guess(endpoints[0], provider))
        call.created_at = self.ua.now()
        user = f"session_{session.id}"
        host = self.ua.transports.sent_by(call.transport)
        scheme = "sips" if call.transport == "tls" else "sip"
        call.dialing = Dialing(
            endpoints=endpoints,
            timeout=timeout,
            local_uri=f"<{scheme}:{user}@{host}>",
            from_tag=new_tag(),
            call_id=new_call_id(),
        )
        self.uas.calls_by_session.setdefault(call.session_id, set()).add(call)
        task = self.ua.loop.create_task(self._run(call))
        self.uas._tasks.add(task)
        task.add_done_callback(self.uas._tasks.discard)
        return call

    async def _run(self, call: Call) -> None:
        dialing = call.dialing
        assert dialing is not None
        try:
            await self._open_media(call)
        except OSError as e:
            log.warning("outbound call %s: no media: %s", call.id, e)
            self.uas._end(call, getattr(e, "failure_reason", "no-media-ports"), status=503)
            self.ua.after_user_action()
            return
        if call.state is CallState.ENDED:
            return
        self.uas.bus.publish(CallConnecting(**self.uas._event_fields(call)))
        status, reason = 0, "no-endpoint"
        for endpoint in dialing.endpoints:
            if call.state is not CallState.RINGING:
                return  # hung up while dialing
            targets: list[str] = []
            status, reason = await self._try(call, endpoint, targets)
            dialing.tried.append(
                {"uri": endpoint.uri, "status": status, "reason": reason, "targets": targets}
            )
            if 200 <= status < 300 or call.state is not CallState.RINGING:
                return
            if status and status not in FAILOVER_STATUSES:
                break  # the callee's answer, not the endpoint's failure
            log.info(
                "outbound call %s: %s failed (%s %s), trying the next endpoint",
                call.id,
                endpoint.uri,
                status,
                reason,
            )
        if call.state is CallState.RINGING:
            self.uas._end(call, reason, status=status or 408)
            self.ua.after_user_action()

    async def _open_media(self, call: Call) -> None:
        leg = self.uas.media.open_leg(call.session, call.id, self.uas._media_event_sink(call))
        if inspect.isawaitable(leg):
            leg = await leg
        if call.state is CallState.ENDED:
            leg.close()
            return
        call.media = leg
        policy = self.uas.policy_for(call.session)
        _, call.pending_offer = make_offer(policy, leg.local_host, leg.local_port)

    def _uri(self, endpoint: Endpoint) -> SipUri | None:
        try:
            uri = parse_uri(endpoint.uri)
        except ParseError:
            return None
        return uri if isinstance(uri, SipUri) else None

    @staticmethod
    def _explicit_transport(provider: Any) -> str | None:
        """The provider's ``transport`` when it was set, not merely defaulted."""
        if "transport" in getattr(provider, "model_fields_set", ()):
            return str(getattr(provider.transport, "value", provider.transport))
        return None

    def _first_guess(self, endpoint: Endpoint, provider: Any) -> Peer:
        """Where the call is thought to go before DNS has said (for its From and first
        events): the URI's host, on the transport the URI fixes, or one we listen on."""
        uri = self._uri(endpoint)
        if uri is None:
            return Peer("udp", ("0.0.0.0", 0))
        transport = uri_transport(uri, self._explicit_transport(provider))
        if transport is None:
            transport = default_transport(uri)
            if not self.ua.transports.has_transport(transport):
                transport = next(
                    (t for t in ("udp", "tcp", "tls") if self.ua.transports.has_transport(t)),
                    transport,
                )
        return Peer(transport, (uri.host_bare, uri.port or DEFAULT_PORTS[transport]))

    def _reachable(self, target: Target) -> bool:
        """UDP goes out of a listener of the address's family; TCP/TLS connect from any."""
        if target.transport != "udp":
            return True
        v6 = ":" in target.host
        return any((":" in host) == v6 for host, _ in self.ua.transports.listening.udp)

    # -- one endpoint ------------------------------------------------------------------

    async def _try(self, call: Call, endpoint: Endpoint, tried: list[str]) -> tuple[int, str]:
        """Call ``endpoint``: each of its RFC 3263 targets in turn, until one answers."""
        provider = getattr(call.session, "provider", None)
        uri = self._uri(endpoint)
        if uri is None:
            return 0, "bad-endpoint-uri"
        explicit = self._explicit_transport(provider)
        fixed = uri_transport(uri, explicit)
        transports = self.ua.transports
        if fixed is not None and not transports.has_transport(fixed):
            return 0, f"no-{fixed}-transport"
        available = {t for t in DEFAULT_PORTS if transports.has_transport(t)}
        dialing = call.dialing
        assert dialing is not None
        try:
            targets = await asyncio.wait_for(
                locate(
                    uri,
                    transports_available=available,
                    explicit_transport=explicit,
                    resolver=self.ua.config.dns_resolver,
                ),
                dialing.timeout,
            )
        except TimeoutError:
            return 0, "endpoint-does-not-resolve"
        targets = [t for t in targets if self._reachable(t)]
        if not targets:
            log.info("outbound call %s: %s does not resolve", call.id, uri.host)
            return 0, "endpoint-does-not-resolve"
        status, reason = 0, "no-target"
        for target in targets:
            if call.state is not CallState.RINGING:
                return 0, "hung-up"
            tried.append(f"{target.transport}:{target.host}:{target.port}")
            status, reason, heard = await self._try_target(call, endpoint, uri, target)
            if not _target_failed(status, reason, heard):
                return status, reason  # an answer, or the callee's silence after a 1xx
            log.info(
                "outbound call %s: %s failed (%s %s), trying its next target",
                call.id,
                tried[-1],
                status,
                reason,
            )
        return status, reason

    async def _try_target(
        self, call: Call, endpoint: Endpoint, uri: SipUri, target: Target
    ) -> tuple[int, str, bool]:
        """Send the INVITE to one target and wait for its outcome: (status, reason, whether
        a provisional response came from it)."""
        dialing = call.dialing
        assert dialing is not None
        peer = Peer(target.transport, (target.host, target.port))
        if target.transport == "tls" and target.server_name:
            self.ua.transports.pool.name_server(peer.addr, target.server_name)
        call.peer = peer
        call.transport = peer.transport
        done: asyncio.Future[tuple[int, str]] = self.ua.loop.create_future()
        tx = self._send_invite(call, uri, peer)
        if tx is None:
            return 0, "send-failed", False
        attempt = _Attempt(endpoint, peer, tx, done)
        dialing.attempt = attempt
        self.ua.after_user_action()
        try:
            status, reason = await asyncio.wait_for(asyncio.shield(done), dialing.timeout)
        except TimeoutError:
            heard = attempt.provisional
            self._abandon(call)
            return 408, "dial-timeout", heard
        return status, reason, attempt.provisional

    def _send_invite(
        self, call: Call, uri: SipUri, peer: Peer, credentials: Sequence[Any] = ()
    ) -> Transaction | None:
        dialing = call.dialing
        assert dialing is not None and call.pending_offer is not None
        dialing.cseq += 1
        contact = self.ua.transports.contact_uri(
            peer.transport, f"session_{call.session_id}", sips=uri.secure
        )
        call.contact = f"<{contact}>"
        fields = [
            ("via", "Via", self.ua.transports.via(peer.transport, new_branch())),
            ("max-forwards", "Max-Forwards", "70"),
            ("from", "From", f"{dialing.local_uri};tag={dialing.from_tag}"),
            ("to", "To", f"<{uri}>"),
            ("call-id", "Call-ID", dialing.call_id),
            ("cseq", "CSeq", f"{dialing.cseq} INVITE"),
            ("contact", "Contact", call.contact),
            ("allow", "Allow", ALLOW),
            ("supported", "Supported", ""),
            ("user-agent", "User-Agent", self.ua.config.user_agent),
        ]
        fields += [(a.header_name.lower(), a.header_name, a.value) for a in credentials]
        fields.append(("content-type", "Content-Type", "application/sdp"))
        invite = Request("INVITE", uri, fields, call.pending_offer.sdp.to_bytes())
        try:
            tx = self.uas.layer.send_request(
                invite, self.ua.now(), context=peer, reliable=peer.reliable
            )
        except (ValueError, ParseError) as e:
            log.warning("outbound call %s: INVITE not sent: %s", call.id, e)
            return None
        tx.user_data = call
        call.invite = invite
        call.invite_tx = tx
        return tx

    def _abandon(self, call: Call) -> None:
        """Stop the current attempt: CANCEL it once it has rung, else let it go quietly."""
        dialing = call.dialing
        attempt = dialing.attempt if dialing is not None else None
        if attempt is None:
            return
        dialing.attempt = None  # type: ignore[union-attr]
        dialing.abandoned.append(attempt)  # type: ignore[union-attr]
        if attempt.provisional:
            self._cancel(attempt)
        else:
            # RFC 3261 §9.1: no CANCEL before a provisional response; it goes when one comes
            # (the INVITE transaction lives on until then, or until Timer B).
            attempt.cancel_pending = True
        if not attempt.done.done():
            attempt.done.set_result((487, "abandoned"))
        self.ua.after_user_action()

    def _cancel(self, attempt: _Attempt) -> None:
        if attempt.cancelled:
            return
        attempt.cancelled = True
        cancel = make_cancel(attempt.tx.request)
        try:
            self.uas.layer.send_request(
                cancel, self.ua.now(), context=attempt.peer, reliable=attempt.peer.reliable
            )
        except ValueError as e:
            log.debug("CANCEL not sent: %s", e)

    def hangup(self, call: Call, reason: str) -> None:
        """End an outbound call that is still dialing."""
        dialing = call.dialing
        call.end_reason = reason
        self._abandon(call)
        if dialing is not None and dialing.attempt is None:
            self.uas._end(call, reason, status=487)

    # -- responses ------------------------------------------------------------------

    def on_response(self, call: Call, tx: Transaction, response: Response) -> None:
        """A response to one of our INVITEs (or to a CANCEL of one)."""
        dialing = call.dialing
        if dialing is None:
            return
        if tx.method == "CANCEL":
            return  # its INVITE ends with 487 (or a 2xx that crossed it, handled below)
        status = response.status
        attempt = dialing.attempt
        current = attempt is not None and tx is attempt.tx
        if status < 200:
            if current:
                attempt.provisional = True  # type: ignore[union-attr]
            else:
                for gone in dialing.abandoned:
                    if gone.tx is tx and gone.cancel_pending:
                        gone.provisional = True
                        self._cancel(gone)
                        self.ua.after_user_action()
            return
        if status < 300:
            self._on_2xx(call, tx, response, current)
            return
        if not current:
            return  # the answer of an attempt we gave up on (the layer ACKed it)
        assert attempt is not None
        if status in (401, 407):
            credentials = self.uas.challenges.answer(call.id, call.session, tx.request, response)
            if credentials:
                uri = tx.request.uri
                assert isinstance(uri, SipUri)
                retry = self._send_invite(call, uri, attempt.peer, credentials)
                if retry is not None:
                    attempt.tx = retry
                    attempt.provisional = False
                    return
        if not attempt.done.done():
            attempt.done.set_result((status, response.reason or str(status)))

    def _on_2xx(self, call: Call, tx: Transaction, response: Response, current: bool) -> None:
        dialing = call.dialing
        assert dialing is not None
        dialog = call.dialog
        if dialog is not None and tx is call.invite_tx:
            if response.to.tag == dialog.remote_tag and dialing.ack is not None:
                # RFC 3261 §13.2.2.4: a retransmitted 2xx gets the same ACK again.
                self.uas.layer.send_stateless(dialing.ack, self._ack_peer(call, dialog))
                return
            # A second 2xx from another fork: ACK it, then end that dialog (§13.2.2.4).
            self._ack_and_bye(call, tx, response)
            return
        if not current or call.state is not CallState.RINGING:
            self._ack_and_bye(call, tx, response)  # too late: we moved on or hung up
            return
        try:
            dialog = Dialog.from_uac(tx.request, response, context=dialing.attempt.peer)  # type: ignore[union-attr]
        except (ValueError, ParseError) as e:
            log.info("outbound call %s: unusable 2xx: %s", call.id, e)
            self._finish_attempt(call, 502, "bad-2xx")
            return
        dialog.user_data = call
        call.dialog = dialog
        call.to_tag = response.to.tag or ""
        self.uas.dialogs.add(dialog)
        ack = dialog.create_ack(
            tx.request, via=self.ua.transports.via(call.transport, new_branch())
        )
        dialing.ack = ack
        self.uas.layer.send_stateless(ack, self._ack_peer(call, dialog))
        call.state = CallState.CONFIRMED
        call.answered_at = call.connected_at = self.ua.now()
        self.uas.counters["calls_connected"] += 1
        offer = call.pending_offer
        call.pending_offer = None
        try:
            if offer is None or not response.body:
                raise OfferRejected(488, "the 2xx carries no answer to our offer")
            params = process_answer(offer, response.body)
        except (OfferRejected, SdpError) as e:
            log.info("outbound call %s: unusable answer: %s", call.id, e)
            self._finish_attempt(call, 200, "connected")
            self.uas._send_bye(call, "bad-answer")
            return
        call.sdp = AnswerState(offer.sdp, params)
        if call.media is not None:
            call.media.start(params)
        self.uas.bus.publish(
            CallConnected(
                **self.uas._event_fields(call), codec=params.codec.name, secure=params.secure
            )
        )
        self._finish_attempt(call, 200, "connected")

    def _finish_attempt(self, call: Call, status: int, reason: str) -> None:
        attempt = call.dialing.attempt if call.dialing is not None else None
        if attempt is not None and not attempt.done.done():
            attempt.done.set_result((status, reason))

    def _ack_peer(self, call: Call, dialog: Dialog) -> Peer:
        return self.uas._dialog_peer(call, dialog) or call.peer

    def _ack_and_bye(self, call: Call, tx: Transaction, response: Response) -> None:
        """A 2xx we do not want: confirm its dialog with an ACK and end it with a BYE."""
        sent_to = call.peer
        for attempt in call.dialing.abandoned if call.dialing is not None else ():
            if attempt.tx is tx:
                sent_to = attempt.peer
        try:
            dialog = Dialog.from_uac(tx.request, response, context=sent_to)
        except (ValueError, ParseError):
            return
        peer = self.uas._dialog_peer(call, dialog, via=sent_to) or sent_to
        via = self.ua.transports.via(peer.transport, new_branch())
        self.uas.layer.send_stateless(dialog.create_ack(tx.request, via=via), peer)
        reason = [("Reason", 'SIP;cause=200;text="abandoned"')]
        built = self.uas.in_dialog_request(call, dialog, "BYE", reason, via=sent_to)
        if built is None:
            return  # a sips: hop without TLS: the ACK went on the INVITE's own path only
        bye, peer = built
        try:
            self.uas.layer.send_request(bye, self.ua.now(), context=peer, reliable=peer.reliable)
        except (ValueError, ParseError) as e:
            log.info("outbound call %s: BYE of an unwanted 2xx not sent: %s", call.id, e)

    def on_timeout(self, call: Call, tx: Transaction) -> None:
        """Timer B: nothing at all came back from the endpoint."""
        self._tx_failed(call, tx, 408, "no-response")

    def on_failure(self, call: Call, tx: Transaction) -> None:
        self._tx_failed(call, tx, 503, "transport-error")

    def _tx_failed(self, call: Call, tx: Transaction, status: int, reason: str) -> None:
        dialing = call.dialing
        attempt = dialing.attempt if dialing is not None else None
        if attempt is not None and tx is attempt.tx and not attempt.done.done():
            attempt.done.set_result((status, reason))


def _target_failed(status: int, reason: str, heard: bool) -> bool:
    """Whether the server at a target failed, so that the endpoint's next target is tried.

    RFC 3263 §4.3: a transport error or a transaction timeout (Timer B); a target silent
    for the whole dial timeout is as dead. RFC 3261 §21.5.4: a 503 asks for an alternate
    server. A timeout after a provisional response is the callee's, not the server's.
    """
    if status == 503 or reason == "no-response":
        return True
    return reason == "dial-timeout" and not heard
