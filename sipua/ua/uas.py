"""Call control for calls into sessions: the UAS core (RFC 3261 §8.2, §12–§15).

An INVITE whose Request-URI user is ``session_<id>`` or ``<id>`` of an active
session is answered (100 by the transaction layer, 180, then 200 with an SDP
answer); everything else gets the RFC's answer. The transaction layer reports
what happens; this module decides, and publishes call events on the bus.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sipua.sip.auth import Authorization
from sipua.sip.builders import make_response
from sipua.sip.checks import Rejection, inspect_request
from sipua.sip.dialog import Dialog, DialogRegistry
from sipua.sip.errors import ParseError
from sipua.sip.ids import new_branch, new_tag
from sipua.sip.message import Request
from sipua.sip.offer_answer import (
    AnswerState,
    MediaPolicy,
    OfferRejected,
    answer,
    make_offer,
    process_answer,
)
from sipua.sip.sdp import SdpError, parse_sdp
from sipua.sip.transaction import (
    SETTLED,
    AckReceived,
    AckTimedOut,
    CancelReceived,
    Kind,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    Transaction,
    TransactionFailed,
    TransactionTimedOut,
    shed,
)
from sipua.sip.uri import SipUri, target_user
from sipua.transport.manager import UDP_REQUEST_LIMIT
from sipua.transport.peer import Peer
from sipua.transport.resolver import numeric_host
from sipua.transport.routing import DEFAULT_PORTS

from .call import Call, CallState
from .capabilities import ACCEPT, ALLOW, IN_DIALOG_ONLY, OPTION_TAGS
from .challenges import ChallengeResponder
from .events import (
    CallConnected,
    CallConnecting,
    CallDisconnected,
    CallEvent,
    CallFailed,
    DtmfReceived,
    EventBus,
)
from .media import MediaBackend, MediaLeg
from .midcall import MidCall
from .transfer import Transferor
from .uac import Dialer

if TYPE_CHECKING:
    from .core import UserAgent

log = logging.getLogger(__name__)

_SDP_TYPES = frozenset({"application/sdp"})


class SessionResolver(Protocol):
    def resolve_sip_user(self, user: str) -> Any | None:
        """The session a Request-URI user names, or None; it has ``id``, ``status``, ``accepting_calls``."""
        ...


def _session_ended(session: Any) -> bool:
    status = getattr(session, "status", "active")
    return getattr(status, "value", status) == "ended"


class Uas:
    def __init__(
        self, ua: UserAgent, sessions: SessionResolver, media: MediaBackend, bus: EventBus
    ) -> None:
        self.ua = ua
        self.layer = ua.layer
        self.sessions = sessions
        self.media = media
        self.bus = bus
        self.dialogs = DialogRegistry()
        self.calls_by_session: dict[str, set[Call]] = {}
        self._policies: dict[str, MediaPolicy] = {}
        self._tasks: set[asyncio.Task] = set()
        self._byes: set[Transaction] = set()  # our BYEs still waiting for a final response
        self._byes_done: asyncio.Event | None = None
        self.challenges = ChallengeResponder()  # 401/407 to our BYEs and INVITEs
        self.dialer = Dialer(self)  # outbound calls
        self.midcall = MidCall(self)  # re-INVITE and INFO in established calls
        self.transfers = Transferor(self)  # blind transfers with REFER
        self.shutdown_grace = 3.0  # seconds shutdown() waits for its BYEs to be answered
        self.counters = {
            "calls_answered": 0,
            "calls_connected": 0,
            "calls_failed": 0,
            "calls_ended": 0,
        }

    # -- helpers ---------------------------------------------------------------------

    @property
    def server_header(self) -> tuple[str, str]:
        return ("Server", self.ua.config.user_agent)

    def respond(
        self,
        tx: Transaction,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
        dialog: bool = False,
    ) -> bool:
        if to_tag is None and status > 100:
            # RFC 3261 §8.2.6.2: every response but 100 carries a To tag (make_response
            # keeps the request's own tag when it has one).
            to_tag = new_tag()
        response = make_response(
            tx.request,
            status,
            reason,
            to_tag=to_tag,
            headers=[*headers, self.server_header],
            body=body,
            content_type=content_type,
            record_route=dialog,
        )
        return self.layer.respond(tx, response, self.ua.now())

    def reject(self, tx: Transaction, rejection: Rejection) -> None:
        headers = list(rejection.headers)
        if rejection.status == 400:
            detail = rejection.detail.replace("\\", "").replace('"', "'")[:200]
            headers.append(("Warning", f'399 sipua "{detail}"'))
        self.respond(tx, rejection.status, rejection.reason, headers=headers)

    def policy_for(self, session: Any) -> MediaPolicy:
        policy = self._policies.get(session.id)
        if policy is None:
            base = self.ua.config.media_policy
            provider = getattr(session, "provider", None)
            codecs = getattr(provider, "codecs", None) or base.codecs
            srtp = getattr(provider, "srtp", None)
            mode = getattr(srtp, "enabled", None) if srtp is not None else None
            if isinstance(mode, bool):
                mode = "optional" if mode else "off"
            suites = getattr(srtp, "crypto_suites", None) if srtp is not None else None
            policy = MediaPolicy(
                codecs=tuple(codecs),
                srtp=mode or base.srtp,
                crypto_suites=tuple(suites) if suites else base.crypto_suites,
                ptime=base.ptime,
                dtmf=base.dtmf,
            )
            if len(self._policies) > 10000:
                self._policies.clear()
            self._policies[session.id] = policy
        return policy

    def _event_fields(self, call: Call) -> dict[str, str]:
        return {
            "session_id": call.session_id,
            "call_id": call.call_id,
            "leg_id": call.id,
            "transport": call.transport,
            "remote": call.remote,
        }

    # -- requests --------------------------------------------------------------------

    def on_request(self, event: RequestReceived) -> None:
        request, tx = event.request, event.transaction
        rejection = inspect_request(request, option_tags=OPTION_TAGS)
        if rejection is not None:
            self.reject(tx, rejection)
            return
        decision = self.ua.gate.check_request(request, request.context, self.ua.now())
        if not decision.allowed:
            if decision.drop:
                self.layer.terminate(tx)  # silently: no response at all
            else:
                self.respond(tx, decision.status, decision.reason, headers=decision.headers)
            return
        method = request.method
        if request.to.tag is not None:
            self._in_dialog(request, tx)
            return
        if method != "OPTIONS" and request.max_forwards == 0:
            self.respond(tx, 483)
            return
        if method == "INVITE":
            self._incoming_call(request, tx)
        elif method == "OPTIONS":
            self._options(tx)
        elif method in IN_DIALOG_ONLY:
            self.respond(tx, 481)
        else:
            self.respond(tx, 405, headers=[("Allow", ALLOW)])

    def _options(self, tx: Transaction) -> None:
        self.respond(
            tx,
            200,
            headers=[
                ("Allow", ALLOW),
                ("Accept", ACCEPT),
                ("Accept-Encoding", "identity"),
                ("Supported", ""),
            ],
        )

    def _incoming_call(self, request: Request, tx: Transaction) -> None:
        if self._byes_done is not None:
            # Shutting down: a call answered now would be dropped without a BYE.
            self.respond(tx, 503, headers=[("Retry-After", "5")])
            return
        user = target_user(request.uri)
        session = self.sessions.resolve_sip_user(user) if user else None
        if session is None or _session_ended(session):
            self.respond(tx, 404)
            return
        if not getattr(session, "accepting_calls", True):
            self.respond(tx, 480, headers=[("Retry-After", "60")])
            return
        if len(self.calls_by_session.get(session.id, ())) >= self.ua.config.max_calls_per_session:
            # The session takes no more participants now; another may leave.
            self.respond(tx, 480, "Session Full", headers=[("Retry-After", "30")])
            return
        if "accept" in request:
            types = [v.split(";")[0].strip().lower() for v in request.values("accept")]
            if types and not any(t in ("application/sdp", "application/*", "*/*") for t in types):
                # RFC 4475 §3.3.15: we can only answer with SDP.
                self.respond(
                    tx,
                    406,
                    headers=[("Warning", '399 sipua "an answer can only be application/sdp"')],
                )
                return
        offer = None
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime not in _SDP_TYPES:
                self.respond(tx, 415, headers=[("Accept", "application/sdp")])
                return
            encoding = request.get("content-encoding")
            if encoding and encoding.strip().lower() != "identity":
                self.respond(tx, 415, headers=[("Accept-Encoding", "identity")])
                return
            try:
                offer = parse_sdp(request.body)
            except SdpError as e:
                self.respond(tx, 400, headers=[("Warning", f'399 sipua "bad SDP: {str(e)[:150]}"')])
                return
        call = Call(session, request, tx, request.context)
        call.created_at = self.ua.now()
        call.to_tag = new_tag()  # before any await: a CANCEL's 200 and 487 carry it too
        tx.to_tag = call.to_tag
        tx.user_data = call
        self.calls_by_session.setdefault(call.session_id, set()).add(call)
        try:
            leg = self.media.open_leg(session, call.id, self._media_event_sink(call))
        except OSError as e:
            self._no_media(call, e)
            return
        if inspect.isawaitable(leg):
            # The media layer binds its sockets asynchronously: continue when it has.
            task = self.ua.loop.create_task(self._setup_when_ready(call, offer, leg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._setup(call, offer, leg)

    async def _setup_when_ready(self, call: Call, offer: Any, pending: Any) -> None:
        try:
            leg = await pending
        except OSError as e:
            if call.state is CallState.RINGING:
                self._no_media(call, e)
                self.ua.after_user_action()
            return
        if call.state is not CallState.RINGING:
            leg.close()  # cancelled while the ports were being opened
            return
        self._setup(call, offer, leg)
        self.ua.after_user_action()

    def _no_media(self, call: Call, error: OSError) -> None:
        # The media layer's error may say what to answer (sip_status, failure_reason); by
        # default the ports ran out, which passes: 503 with Retry-After.
        status = getattr(error, "sip_status", 503)
        reason = getattr(error, "failure_reason", "no-media-ports")
        log.warning("no media for a call to %s (%s): %s", call.session_id, reason, error)
        headers = [("Retry-After", "5")] if status == 503 else []
        self.respond(call.invite_tx, status, headers=headers)
        self._end(call, reason, status=status)

    def _setup(self, call: Call, offer: Any, leg: MediaLeg) -> None:
        """Negotiate media on the leg's address, ring, and answer (now or after the delay)."""
        call.media = leg
        tx = call.invite_tx
        request = call.invite
        policy = self.policy_for(call.session)
        try:
            if offer is not None:
                call.sdp = answer(offer, policy, leg.local_host, leg.local_port)
            else:
                _, call.pending_offer = make_offer(policy, leg.local_host, leg.local_port)
        except OfferRejected as e:
            self.respond(tx, e.status, e.reason, headers=[("Warning", e.warning)])
            self._end(call, "no-common-media", status=e.status)
            return
        call.contact = (
            f"<{self.ua.transports.contact_uri(call.transport, sips=_wants_sips(request))}>"
        )
        config = self.ua.config
        if config.ringing:
            self.respond(
                tx, 180, to_tag=call.to_tag, headers=[("Contact", call.contact)], dialog=True
            )
        self.bus.publish(CallConnecting(**self._event_fields(call)))
        if config.answer_delay > 0:
            call.answer_handle = self.ua.loop.call_later(
                config.answer_delay, self._answer_later, call
            )
        else:
            self._answer(call)

    def _answer_later(self, call: Call) -> None:
        call.answer_handle = None
        if call.state is CallState.RINGING:
            self._answer(call)
            self.ua.after_user_action()

    def _answer(self, call: Call) -> None:
        tx = call.invite_tx
        if call.sdp is not None:
            body = call.sdp.sdp.to_bytes()
        else:
            assert call.pending_offer is not None
            body = call.pending_offer.sdp.to_bytes()
        response = make_response(
            call.invite,
            200,
            to_tag=call.to_tag,
            headers=[
                ("Contact", call.contact),
                ("Allow", ALLOW),
                ("Supported", ""),
                self.server_header,
            ],
            body=body,
            content_type="application/sdp",
            record_route=True,
        )
        if not self.layer.respond(tx, response, self.ua.now()):
            self._end(call, "transaction-ended", status=487)
            return
        dialog = Dialog.from_uas(call.invite, response, secure=call.peer.secure, context=call.peer)
        dialog.user_data = call
        call.dialog = dialog
        self.dialogs.add(dialog)
        call.state = CallState.ANSWERED
        call.answered_at = self.ua.now()
        self.counters["calls_answered"] += 1
        if call.sdp is not None and call.media is not None:
            call.media.start(call.sdp.params)  # the peer may send RTP as soon as it has the 2xx

    def on_cancel(self, event: CancelReceived) -> None:
        call = event.invite.user_data
        if call is None or call.state is not CallState.RINGING:
            return
        # RFC 3261 §9.2: the INVITE ends with 487.
        self.respond(call.invite_tx, 487, to_tag=call.to_tag)
        self._end(call, "cancelled", status=487)

    def on_ack(self, event: AckReceived) -> None:
        tx = event.transaction
        call: Call | None = tx.user_data if tx is not None else None
        if call is None:
            dialog = self.dialogs.find(event.request)
            if dialog is None:
                return  # RFC 3261 §17.2.3: a stray ACK is dropped
            call = dialog.user_data  # type: ignore[assignment]
            # The ACK of a re-INVITE's 2xx (matched to that re-INVITE's transaction, which has
            # no call of its own, or to none once it has gone): when the 2xx carried our offer
            # (a re-INVITE without SDP), the ACK carries the answer (RFC 3261 §14.2).
            if (
                call is not None
                and call.pending_offer is not None
                and call.state is CallState.CONFIRMED
            ):
                self._late_answer(call, event.request)
            return
        if call.state is not CallState.ANSWERED:
            return
        if call.pending_offer is not None and not self._late_answer(call, event.request):
            return
        call.state = CallState.CONFIRMED
        call.connected_at = self.ua.now()
        self.counters["calls_connected"] += 1
        params = call.sdp.params if call.sdp is not None else None
        self.bus.publish(
            CallConnected(
                **self._event_fields(call),
                codec=params.codec.name if params is not None else None,
                secure=bool(params is not None and params.secure),
            )
        )
        if call.end_reason:
            # The session ended while we waited for this ACK (RFC 3261 §15: BYE only after it).
            self._send_bye(call, call.end_reason)

    def _late_answer(self, call: Call, ack: Request) -> bool:
        """The ACK carries the answer to the offer we put in the 2xx (RFC 3264, late offer)."""
        offer = call.pending_offer
        assert offer is not None
        call.pending_offer = None
        try:
            if not ack.body:
                raise OfferRejected(304, "the ACK carries no answer to our offer")
            params = process_answer(offer, ack.body)
        except (OfferRejected, SdpError) as e:
            log.info("call %s: unusable answer in ACK: %s", call.id, e)
            call.state = CallState.CONFIRMED
            self._send_bye(call, "bad-answer")
            return False
        first = call.sdp is None
        call.sdp = AnswerState(offer.sdp, params)
        if call.media is not None:
            (call.media.start if first else call.media.update)(params)
        return True

    def on_ack_timeout(self, event: AckTimedOut) -> None:
        call = event.transaction.user_data
        if call is not None and call.state is CallState.ANSWERED:
            # RFC 3261 §13.3.1.4: no ACK in 64*T1: confirm and end the dialog with BYE.
            log.info("call %s: no ACK for the 2xx, hanging up", call.id)
            call.state = CallState.CONFIRMED
            self._send_bye(call, "ack-timeout")
            return
        if call is None:
            # A re-INVITE's 2xx (its transaction carries no call). When it held our offer,
            # the answer will never come: end the session as §13.3.1.4 says, rather than
            # refuse every later re-INVITE with 500 for a pending offer.
            dialog = self.dialogs.find(event.transaction.request)
            call = dialog.user_data if dialog is not None else None
            if (
                call is not None
                and call.pending_offer is not None
                and call.state is CallState.CONFIRMED
            ):
                log.info("call %s: no ACK with the answer to our re-offer, hanging up", call.id)
                call.pending_offer = None
                self._send_bye(call, "ack-timeout")

    # -- in-dialog requests ---------------------------------------------------------

    def _in_dialog(self, request: Request, tx: Transaction) -> None:
        result = self.dialogs.receive_request(request)
        if isinstance(result, Rejection):
            self.reject(tx, result)
            return
        dialog = result
        call: Call = dialog.user_data  # type: ignore[assignment]
        method = request.method
        if method == "BYE":
            self.respond(tx, 200)
            if call is not None:
                if call.state is CallState.ANSWERED:
                    # BYE before the ACK: the 2xx need not be re-sent any more.
                    self.layer.stop_retransmitting(call.invite_tx, self.ua.now())
                self._end(call, "remote-bye")
        elif method == "INVITE":
            self.midcall.reinvite(call, dialog, request, tx)
        elif method == "OPTIONS":
            self._options(tx)
        elif method == "INFO":
            self.midcall.info(call, request, tx)
        elif method == "NOTIFY":
            self.transfers.on_notify(call, dialog, request, tx)
        else:
            self.respond(tx, 405, headers=[("Allow", ALLOW)])

    # -- media events --------------------------------------------------------------------

    def _media_event_sink(self, call: Call):
        def sink(event: Any) -> None:
            digit = getattr(event, "digit", None)
            if digit is not None:
                self.bus.publish(
                    DtmfReceived(
                        **self._event_fields(call),
                        digit=str(digit),
                        duration_ms=int(getattr(event, "duration_ms", 0) or 0),
                        source=getattr(event, "source", "rfc4733"),
                    )
                )

        return sink

    # -- responses and timeouts (to our BYEs) -----------------------------------------------

    def on_response(self, event: ResponseReceived) -> None:
        tx = event.transaction
        call = tx.user_data
        response = event.response
        if call is None:
            return
        if call.dialing is not None and tx.method in ("INVITE", "CANCEL"):
            self.dialer.on_response(call, tx, response)
            return
        if tx.method == "REFER":
            self.transfers.on_response(call, tx, response)
            return
        if response.status < 200:
            return
        self._bye_finished(tx)
        if tx.method != "BYE" or call.dialog is None:
            return
        if response.status in (401, 407):
            # RFC 3261 §22.2: resend with credentials and a new CSeq, once per challenge.
            credentials = self.challenges.answer(call.id, call.session, tx.request, response)
            if credentials:
                self._send_bye(call, call.end_reason, credentials=credentials)
                return
        self.challenges.forget(call.id)
        self.dialogs.remove(call.dialog)

    def on_stray_response(self, event: StrayResponseReceived) -> None:
        return None  # RFC 3261 §18.1.2: responses matching no transaction are dropped

    def on_timeout(self, event: TransactionTimedOut) -> None:
        tx = event.transaction
        call = tx.user_data
        if call is None:
            return
        if call.dialing is not None and tx.method == "INVITE":
            self.dialer.on_timeout(call, tx)
            return
        if tx.method == "REFER":
            self.transfers.on_timeout(call, tx)
            return
        self._bye_finished(tx)
        if tx.kind is Kind.NON_INVITE_CLIENT and tx.method == "BYE" and call.dialog is not None:
            self.challenges.forget(call.id)
            self.dialogs.remove(call.dialog)

    def on_failure(self, event: TransactionFailed) -> None:
        tx = event.transaction
        self._bye_finished(tx)
        call = tx.user_data
        if call is not None and call.dialing is not None and tx.method in ("INVITE", "CANCEL"):
            self.dialer.on_failure(call, tx)
            return
        if call is not None and tx.method == "REFER":
            self.transfers.on_failure(call, tx)  # the call may still be fine: it goes on
            return
        if call is not None and call.state is not CallState.ENDED:
            self._end(call, "transport-error", status=503)

    # -- ending calls -------------------------------------------------------------------------

    def hangup(self, call: Call, reason: str) -> None:
        """End a call from our side, whatever state it is in."""
        if call.state is CallState.RINGING and call.dialing is not None:
            self.dialer.hangup(call, reason)  # an outbound call still dialing: CANCEL it
        elif call.state is CallState.RINGING:
            self.respond(call.invite_tx, 480, to_tag=call.to_tag)
            self._end(call, reason, status=480)
        elif call.state is CallState.ANSWERED:
            call.end_reason = reason  # BYE goes when the ACK comes, or on the ACK timeout
        elif call.state is CallState.CONFIRMED:
            self._send_bye(call, reason)

    def _send_bye(
        self, call: Call, reason: str, *, credentials: Sequence[Authorization] = ()
    ) -> None:
        dialog = call.dialog
        if dialog is None:
            self._end(call, reason)
            return
        headers = [("Reason", f'SIP;cause=200;text="{reason}"')]
        headers += [(a.header_name, a.value) for a in credentials]
        built = self.in_dialog_request(call, dialog, "BYE", headers)
        if built is None:
            log.warning(
                "call %s: BYE not sent: its next hop is sips: and TLS is not available", call.id
            )
            self.dialogs.remove(dialog)
            self._end(call, reason)
            return
        bye, peer = built
        try:
            tx = self.layer.send_request(bye, self.ua.now(), context=peer, reliable=peer.reliable)
            tx.user_data = call
            self._byes.add(tx)
        except (ValueError, ParseError) as e:
            log.warning("call %s: could not send BYE: %s", call.id, e)
            self.dialogs.remove(dialog)
        self._end(call, reason, keep_dialog=True)

    def in_dialog_request(
        self,
        call: Call,
        dialog: Dialog,
        method: str,
        headers: list[tuple[str, str]],
        *,
        via: Peer | None = None,
    ) -> tuple[Request, Peer] | None:
        """A request in ``dialog`` (next CSeq, route set) and where it goes; None when its
        next hop is sips: and no TLS is to be had (see :meth:`_dialog_peer`)."""
        peer = self._dialog_peer(call, dialog, via=via)
        if peer is None:
            return None
        transports = self.ua.transports
        request = dialog.create_request(
            method, via=transports.via(peer.transport, new_branch()), headers=headers
        )
        if (
            peer.transport == "udp"
            and len(request.to_bytes()) > UDP_REQUEST_LIMIT
            and transports.has_transport("tcp")
        ):
            # RFC 3261 §18.1.1: a request larger than 1300 octets (path MTU unknown) goes over
            # a congestion-controlled transport; the Via says so.
            peer = Peer("tcp", peer.addr)
            dialog.local_seq = (dialog.local_seq or 1) - 1  # reuse the CSeq number
            request = dialog.create_request(
                method, via=transports.via("tcp", new_branch()), headers=headers
            )
        return request, peer

    def _dialog_peer(self, call: Call, dialog: Dialog, *, via: Peer | None = None) -> Peer | None:
        """Where requests in this dialog go: the next hop, over the connection in use when possible.

        ``via`` is where the dialog's messages went so far (the call's peer by default; an
        outbound attempt we gave up on has its own). None when the next hop is a SIPS URI and
        no TLS is to be had: RFC 3261 §26.2.2, a sips: hop is reached over TLS or not at all."""
        sent_to = via if via is not None else call.peer
        next_hop = dialog.next_hop()
        transport = sent_to.transport
        host: str | None = None
        port: int | None = None
        secure = False
        if isinstance(next_hop, SipUri):
            if next_hop.transport in ("udp", "tcp", "tls"):
                transport = next_hop.transport
            if next_hop.secure:
                transport = "tls"
                secure = True
            host, port = next_hop.host_bare, next_hop.port
        if not self.ua.transports.has_transport(transport):
            if secure and sent_to.transport != "tls":
                return None
            transport = sent_to.transport
        conn = sent_to.connection
        if transport == sent_to.transport and conn is not None and conn.is_open:
            return Peer(transport, conn.remote, conn)
        if host is not None and numeric_host(host):
            return Peer(transport, (host, port or DEFAULT_PORTS[transport]))
        return Peer(transport, sent_to.source)

    def _end(
        self, call: Call, reason: str, *, status: int | None = None, keep_dialog: bool = False
    ) -> None:
        if call.state is CallState.ENDED:
            return
        was_connected = call.state in (CallState.CONFIRMED, CallState.ANSWERED) and status is None
        call.state = CallState.ENDED
        call.ended_at = self.ua.now()
        call.end_reason = call.end_reason or reason
        self.transfers.call_ended(call)  # a transfer still pending fails before the call ends
        if call.answer_handle is not None:
            call.answer_handle.cancel()
            call.answer_handle = None
        stats: dict[str, Any] = {}
        if call.media is not None:
            try:
                stats = call.media.stats()
            finally:
                call.media.close()
        if call.dialog is not None and not keep_dialog:
            self.dialogs.remove(call.dialog)
        calls = self.calls_by_session.get(call.session_id)
        if calls is not None:
            calls.discard(call)
            if not calls:
                del self.calls_by_session[call.session_id]
        event: CallEvent
        if was_connected:
            self.counters["calls_ended"] += 1
            duration = call.ended_at - (call.connected_at or call.answered_at)
            event = CallDisconnected(
                **self._event_fields(call), reason=reason, duration=duration, stats=stats
            )
        else:
            self.counters["calls_failed"] += 1
            event = CallFailed(**self._event_fields(call), status=status or 0, reason=reason)
        self.bus.publish(event)
        self._forget(call, keep_dialog)

    @staticmethod
    def _forget(call: Call, keep_dialog: bool) -> None:
        """Let what outlives an ended incoming call stop pointing at it.

        Its INVITE transaction waits out Timer L (32 s) after the 2xx and the dialog may be
        kept by a BYE in flight; left pointing at the call, they would keep its SDP, media
        leg and messages alive (and scanned by the collector) for that long, tens of
        thousands of calls at a high call rate. What they still do without it: absorb
        retransmissions (the layer) and drop a late ACK or CANCEL (no call: nothing to do).
        An outgoing call keeps its link: a late 2xx to it must still be ACKed and ended.
        """
        if call.dialing is not None:
            return
        tx = call.invite_tx
        if tx is not None and tx.user_data is call:
            tx.user_data = None
            if tx.state in SETTLED:
                shed(tx)  # the call read its INVITE again since the layer shed it
        if not keep_dialog and call.dialog is not None and call.dialog.user_data is call:
            call.dialog.user_data = None

    # -- the session service's view --------------------------------------------------

    def participants(self, session_id: str) -> list[dict[str, Any]]:
        """The session's SIP calls with their media statistics so far (for the API)."""
        now = self.ua.now()
        out = []
        for call in list(self.calls_by_session.get(session_id, ())):
            params = call.sdp.params if call.sdp is not None else None
            stats: dict[str, Any] = {}
            if call.media is not None and call.state is not CallState.RINGING:
                try:
                    stats = call.media.stats()
                except Exception:  # noqa: BLE001 - a view must not fail on one leg
                    log.debug("stats of %s failed", call.id, exc_info=True)
            out.append(
                {
                    "participant_id": call.id,
                    "provider": "sip",
                    "state": call.state.value,
                    "transport": call.transport,
                    "remote": call.remote,
                    "call_id": call.call_id,
                    "codec": params.codec.name if params is not None else None,
                    "secure": bool(params is not None and params.secure),
                    "duration_s": round(now - call.connected_at, 3) if call.connected_at else None,
                    "transfer_target": self.transfers.pending(call),
                    "stats": stats,
                }
            )
        return out

    def transfer(self, call: Call, target_uri: str) -> bool:
        """Blind-transfer a connected call with REFER (:mod:`sipua.ua.transfer`)."""
        return self.transfers.start(call, target_uri)

    def transfer_participant(self, session_id: str, participant_id: str, target: str) -> bool:
        """The API's transfer of one SIP participant; the REFER is sent before this returns."""
        return self.transfers.transfer_participant(session_id, participant_id, target)

    def active_calls(self, session_id: str) -> int:
        return len(self.calls_by_session.get(session_id, ()))

    async def end_calls(self, session_id: str) -> int:
        calls = list(self.calls_by_session.get(session_id, ()))
        for call in calls:
            self.hangup(call, "session-ended")
        self.ua.after_user_action()
        return len(calls)

    def all_calls(self) -> list[Call]:
        return [c for calls in self.calls_by_session.values() for c in calls]

    def _bye_finished(self, tx: Transaction) -> None:
        byes = self._byes
        if tx in byes:
            byes.discard(tx)
            if not byes and self._byes_done is not None:
                self._byes_done.set()

    async def shutdown(self) -> None:
        """Hang up every call, then give the BYEs up to :attr:`shutdown_grace` seconds to be
        answered: over UDP a lost BYE is only retransmitted while the event loop still runs."""
        for task in list(self._tasks):
            task.cancel()
        for call in self.all_calls():
            self.hangup(call, "shutdown")
            if call.state is not CallState.ENDED:
                self._end(call, "shutdown")
        self.ua.after_user_action()  # send them now and arm their retransmission timers
        if self._byes:
            self._byes_done = asyncio.Event()
            try:
                await asyncio.wait_for(self._byes_done.wait(), self.shutdown_grace)
            except TimeoutError:
                log.info("%d BYE(s) unanswered at shutdown", len(self._byes))


def _wants_sips(request: Request) -> bool:
    """RFC 3261 §12.1.1: our Contact is a SIPS URI when the Request-URI, or the top
    Record-Route (or the Contact, without Record-Route) of the dialog-creating request, is."""
    uri = request.uri
    if isinstance(uri, SipUri) and uri.secure:
        return True
    try:
        hops = request.record_route or request.contact
    except ParseError:
        return False
    if not hops:
        return False
    first = hops[0].uri
    return isinstance(first, SipUri) and first.secure
