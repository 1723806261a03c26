"""Blind transfer of a call by sipua, the transferor (RFC 3515 REFER, RFC 3420 sipfrag).

An AI voice agent hands its caller over to a human: sipua sends REFER in the call's
dialog asking the peer (the PBX, the transferee) to call ``Refer-To`` itself. The
REFER creates an implicit subscription to the ``refer`` event package (RFC 3515 §2.4.4):
the peer reports how its call to the target goes in NOTIFYs whose ``message/sipfrag``
body is that call's status line (``SIP/2.0 100 Trying``, ``SIP/2.0 200 OK``,
``SIP/2.0 486 Busy Here``).

- A 2xx to the REFER (202 Accepted) publishes :class:`TransferAccepted`; an error to it
  (405, 603 …) :class:`TransferFailed`, and the call goes on. 401/407 are answered once
  with the session's credentials, as the BYE path does (:mod:`sipua.ua.challenges`).
- A NOTIFY with a final 2xx sipfrag publishes :class:`TransferCompleted` and sipua hangs
  up its own leg (BYE, reason ``transferred``): the caller now talks to the target.
- A final error sipfrag, a subscription the peer terminates without a final status, no
  final status within :attr:`UaConfig.transfer_timeout` seconds, or the call ending first
  publish :class:`TransferFailed`; the call stays up (unless it is what ended).

One transfer at a time per call: a second one while the first is pending is refused
with :class:`TransferInProgress`. sipua does not act on REFERs sent to it (405 stays).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipua.sip.auth import Authorization
from sipua.sip.dialog import Dialog
from sipua.sip.errors import ParseError
from sipua.sip.grammar import parse_params
from sipua.sip.headers import parse_name_addr
from sipua.sip.message import Request, Response
from sipua.sip.transaction import Transaction
from sipua.sip.uri import SipUri, parse_uri

from .call import Call, CallState
from .events import TransferAccepted, TransferCompleted, TransferFailed

if TYPE_CHECKING:
    from .uas import Uas

log = logging.getLogger(__name__)

SIPFRAG = "message/sipfrag"
# RFC 3420 §2: a sipfrag of a response starts with its status line.
_STATUS_LINE = re.compile(rb"\s*SIP/2\.0[ \t]+([1-6][0-9]{2})(?:[ \t]+([^\r\n]*))?", re.I)


class TransferError(Exception):
    """A transfer that cannot be started; the message says why (for the API's answer)."""


class ParticipantNotFound(TransferError, LookupError):
    """No SIP call of the session has this participant id."""


class NotTransferable(TransferError):
    """The call is not in a state that can be transferred (not connected, or ending)."""


class TransferInProgress(TransferError):
    """The call already has a transfer waiting for its outcome."""


class InvalidTransferTarget(TransferError, ValueError):
    """The target is not a SIP or SIPS URI we can put in Refer-To."""


@dataclass(eq=False, slots=True)
class _Transfer:
    call: Call
    target: str
    refer_seq: int = 0  # the CSeq of the REFER sent last: the subscription's ``id`` (§2.4.6)
    tx: Transaction | None = None
    accepted: bool = False
    progress: int = 0  # the last provisional status the peer reported
    timer: asyncio.TimerHandle | None = None


def check_target(target: str) -> SipUri:
    """The Refer-To URI, or :class:`InvalidTransferTarget`.

    Header parameters (``?User-to-User=…``) are allowed: RFC 3515 §2.1 has the
    transferee copy them into its INVITE, which is how context reaches a human agent.
    """
    text = target.strip()
    if not text or len(text) > 1024 or any(c in text for c in '<>" \t\r\n'):
        raise InvalidTransferTarget('target must be a sip: or sips: URI without spaces or <>"')
    try:
        uri = parse_uri(text)
    except ParseError as e:
        raise InvalidTransferTarget(f"target is not a valid URI: {e.detail}") from None
    if not isinstance(uri, SipUri):
        raise InvalidTransferTarget("target must be a sip: or sips: URI")
    return uri


def parse_sipfrag_status(body: bytes) -> tuple[int, str] | None:
    """The status code and reason phrase of a sipfrag's status line, or None."""
    m = _STATUS_LINE.match(body)
    if m is None:
        return None
    return int(m.group(1)), (m.group(2) or b"").decode("utf-8", "replace").strip()


def _header_params(value: str) -> tuple[str, dict[str, str | None]]:
    """``refer;id=93809824`` -> ("refer", {"id": "93809824"}); raises ParseError."""
    token, sep, rest = value.partition(";")
    return token.strip().lower(), parse_params(sep + rest if sep else "", "header")


class Transferor:
    """The transfers of a :class:`~sipua.ua.uas.Uas`'s calls, one at a time per call."""

    def __init__(self, uas: Uas) -> None:
        self.uas = uas
        self._active: dict[str, _Transfer] = {}  # leg id -> its pending transfer
        # REFER CSeqs of concluded transfers whose subscription the peer has not
        # terminated yet: their late NOTIFYs are answered 200, not 481.
        self._finished: dict[str, set[int]] = {}

    @property
    def timeout(self) -> float:
        """Seconds a transfer has to reach a final outcome (``UaConfig.transfer_timeout``)."""
        return self.uas.ua.config.transfer_timeout

    def pending(self, call: Call) -> str | None:
        """The target of the call's pending transfer, if one is pending."""
        transfer = self._active.get(call.id)
        return transfer.target if transfer is not None else None

    # -- starting ---------------------------------------------------------------------

    def transfer_participant(self, session_id: str, participant_id: str, target: str) -> bool:
        """The service's entry: find the SIP call, start its transfer and send the REFER now."""
        for call in list(self.uas.calls_by_session.get(session_id, ())):
            if call.id == participant_id:
                break
        else:
            raise ParticipantNotFound(f"no SIP participant {participant_id} in this session")
        sent = self.start(call, target)
        self.uas.ua.after_user_action()
        return sent

    def start(self, call: Call, target: str, *, timeout: float | None = None) -> bool:
        """Send REFER for ``target`` in the call's dialog. True when it was sent; False when
        it could not be (then :class:`TransferFailed` is published at once).

        Raises :class:`NotTransferable`, :class:`TransferInProgress` or
        :class:`InvalidTransferTarget` without sending anything.
        """
        uri = check_target(target)
        if call.state is not CallState.CONFIRMED or call.dialog is None or call.end_reason:
            raise NotTransferable(
                f"participant {call.id} is not a connected call (state {call.state.value})"
            )
        current = self._active.get(call.id)
        if current is not None:
            raise TransferInProgress(
                f"a transfer of {call.id} to {current.target} is already in progress"
            )
        transfer = _Transfer(call, str(uri))
        self._active[call.id] = transfer
        if not self._send_refer(transfer):
            self._fail(transfer, 503, "transport-error", "the REFER could not be sent")
            return False
        transfer.timer = self.uas.ua.loop.call_later(
            self.timeout if timeout is None else timeout, self._timed_out, transfer
        )
        log.info("call %s: REFER to %s sent", call.id, transfer.target)
        return True

    def _send_refer(self, transfer: _Transfer, credentials: Sequence[Authorization] = ()) -> bool:
        call, dialog = transfer.call, transfer.call.dialog
        if dialog is None:
            return False
        uas = self.uas
        headers = [
            # RFC 3515 §2.1: the URI goes in angle brackets (it may carry ';' and '?').
            ("Refer-To", f"<{transfer.target}>"),
            ("Referred-By", _referred_by(dialog)),  # RFC 3892: who asks for the transfer
        ]
        headers += [(a.header_name, a.value) for a in credentials]
        # Contact and the CSeq come from the dialog (REFER is a target refresh request).
        built = uas.in_dialog_request(call, dialog, "REFER", headers)
        if built is None:
            log.warning(
                "call %s: REFER not sent: the next hop is sips: and TLS is not available", call.id
            )
            return False
        refer, peer = built
        try:
            tx = uas.layer.send_request(refer, uas.ua.now(), context=peer, reliable=peer.reliable)
        except (ValueError, ParseError) as e:
            log.warning("call %s: could not send REFER: %s", call.id, e)
            return False
        tx.user_data = call
        transfer.tx = tx
        transfer.refer_seq = refer.cseq.seq
        return True

    # -- the REFER's transaction ------------------------------------------------------------

    def on_response(self, call: Call, tx: Transaction, response: Response) -> None:
        transfer = self._active.get(call.id)
        if transfer is None or transfer.tx is not tx or response.status < 200:
            return
        status = response.status
        if status < 300:
            if call.dialog is not None:
                # RFC 3261 §12.2.1.2: the 2xx of a target refresh request updates the target.
                call.dialog.refresh_target(response)
            self._accept(transfer)
            return
        if status in (401, 407):
            # RFC 3261 §22.2: resend with credentials and a new CSeq, once per challenge.
            credentials = self.uas.challenges.answer(
                _challenge_key(call), call.session, tx.request, response
            )
            if credentials and self._send_refer(transfer, credentials):
                return
        self._fail(transfer, status, "rejected", response.reason)

    def on_timeout(self, call: Call, tx: Transaction) -> None:
        transfer = self._active.get(call.id)
        if transfer is not None and transfer.tx is tx:
            self._fail(transfer, 408, "timeout", "the REFER was not answered")

    def on_failure(self, call: Call, tx: Transaction) -> None:
        transfer = self._active.get(call.id)
        if transfer is not None and transfer.tx is tx:
            self._fail(transfer, 503, "transport-error", "the REFER could not be delivered")

    # -- the implicit subscription's NOTIFYs --------------------------------------------------

    def on_notify(
        self, call: Call | None, dialog: Dialog, request: Request, tx: Transaction
    ) -> None:
        """A NOTIFY in one of our dialogs: for a refer subscription of ours, or 481."""
        respond = self.uas.respond
        event = request.get("event")
        if event is None:
            respond(tx, 400, "Missing Event Header")  # every NOTIFY names its package (RFC 6665)
            return
        try:
            package, params = _header_params(event)
            state, state_params = _header_params(request.get("subscription-state") or "active")
        except ParseError:
            respond(tx, 400, headers=[("Warning", '399 sipua "bad Event or Subscription-State"')])
            return
        if package != "refer" or call is None:
            respond(tx, 481)  # RFC 6665 §4.1.3: no subscription of ours matches
            return
        sub_id = params.get("id")
        terminated = state == "terminated"
        transfer = self._active.get(call.id)
        if transfer is None or (sub_id is not None and sub_id != str(transfer.refer_seq)):
            if self._decided(call, sub_id, terminated):
                respond(tx, 200)  # its transfer is decided already: nothing more to do
            else:
                respond(tx, 481)
            return
        outcome: tuple[int, str] | None = None
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime != SIPFRAG:
                # RFC 3515 §2.4.5: the body is message/sipfrag. A non-2xx to a NOTIFY ends
                # the subscription at the notifier (RFC 6665 §4.2.2): the outcome is lost.
                respond(tx, 415, headers=[("Accept", SIPFRAG)])
                self._fail(transfer, 0, "bad-notify", "NOTIFY body is not message/sipfrag")
                return
            outcome = parse_sipfrag_status(request.body)
            if outcome is None:
                respond(tx, 400, headers=[("Warning", '399 sipua "no status line in sipfrag"')])
                self._fail(transfer, 0, "bad-notify", "NOTIFY sipfrag has no status line")
                return
        respond(tx, 200)
        dialog.refresh_target(request)  # NOTIFY is a target refresh request (RFC 6665)
        self._accept(transfer)  # RFC 6665 §4.1.2.4: a NOTIFY before the 2xx implies acceptance
        if outcome is not None and outcome[0] >= 200:
            status, reason = outcome
            if status < 300:
                self._complete(transfer, status, terminated)
            else:
                self._fail(transfer, status, "target-failed", reason, terminated=terminated)
        elif outcome is not None:
            transfer.progress = outcome[0]
            log.debug("call %s: transfer progress %d %s", call.id, *outcome)
        if terminated and self._active.get(call.id) is transfer:
            detail = state_params.get("reason") or "subscription terminated"
            self._fail(transfer, transfer.progress, "subscription-terminated", detail)

    def _decided(self, call: Call, sub_id: str | None, terminated: bool) -> bool:
        """Whether a NOTIFY belongs to a subscription whose transfer was already decided (or
        whose call is over); forgets the subscription when the NOTIFY terminates it."""
        if call.state is CallState.ENDED:
            return True
        finished = self._finished.get(call.id)
        if not finished:
            return False
        if sub_id is None:  # RFC 3515 §2.4.6: no id names the dialog's first REFER
            seq = min(finished)
        elif sub_id.isdigit() and int(sub_id) in finished:
            seq = int(sub_id)
        else:
            return False
        if terminated:
            finished.discard(seq)
        return True

    # -- outcomes ---------------------------------------------------------------------------

    def _accept(self, transfer: _Transfer) -> None:
        if transfer.accepted:
            return
        transfer.accepted = True
        call = transfer.call
        log.info("call %s: transfer to %s accepted", call.id, transfer.target)
        self.uas.bus.publish(
            TransferAccepted(**self.uas._event_fields(call), target=transfer.target)
        )

    def _complete(self, transfer: _Transfer, status: int, terminated: bool) -> None:
        call = transfer.call
        self._conclude(transfer, terminated)
        log.info("call %s: transferred to %s", call.id, transfer.target)
        self.uas.bus.publish(
            TransferCompleted(**self.uas._event_fields(call), target=transfer.target, status=status)
        )
        # The caller now talks to the target: the transferor ends its own call (RFC 5589 §6).
        self.uas.hangup(call, "transferred")

    def _fail(
        self,
        transfer: _Transfer,
        status: int,
        reason: str,
        detail: str,
        *,
        terminated: bool = True,
    ) -> None:
        call = transfer.call
        if self._active.get(call.id) is not transfer:
            return
        self._conclude(transfer, terminated)
        log.info(
            "call %s: transfer to %s failed: %s %d %s",
            call.id,
            transfer.target,
            reason,
            status,
            detail,
        )
        self.uas.bus.publish(
            TransferFailed(
                **self.uas._event_fields(call),
                target=transfer.target,
                status=status,
                reason=reason,
                detail=detail[:200],
            )
        )

    def _conclude(self, transfer: _Transfer, terminated: bool) -> None:
        call = transfer.call
        self._active.pop(call.id, None)
        if transfer.timer is not None:
            transfer.timer.cancel()
            transfer.timer = None
        self.uas.challenges.forget(_challenge_key(call))
        if not terminated and transfer.accepted and call.state is not CallState.ENDED:
            self._finished.setdefault(call.id, set()).add(transfer.refer_seq)

    def _timed_out(self, transfer: _Transfer) -> None:
        transfer.timer = None
        self._fail(
            transfer,
            408,
            "timeout",
            f"no final NOTIFY within {self.timeout:g}s",
            terminated=False,
        )
        self.uas.ua.after_user_action()

    def call_ended(self, call: Call) -> None:
        """The call ended (either side): a transfer still pending cannot complete any more."""
        transfer = self._active.get(call.id)
        if transfer is not None:
            self._fail(transfer, 0, "call-ended", f"the call ended ({call.end_reason})")
        self._finished.pop(call.id, None)


def _challenge_key(call: Call) -> str:
    # Its own Digest state: a REFER's credentials must not count as the BYE's earlier try.
    return f"{call.id}:refer"


def _referred_by(dialog: Dialog) -> str:
    try:
        return f"<{parse_name_addr(dialog.local_uri).uri}>"
    except ParseError:
        return dialog.local_uri
