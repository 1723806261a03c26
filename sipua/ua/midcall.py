"""Requests inside an established call: re-INVITE (RFC 3261 §14, RFC 3264 §8) and INFO.

A re-INVITE renegotiates media without tearing the call down (hold, resume, codec change,
a new address); one without SDP gets our offer in the 2xx and the answer in the ACK. INFO
carries DTMF for PBXes that relay key presses in signalling (``application/dtmf-relay``,
``application/dtmf``); each digit goes to the media application and the event bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipua.sip.dialog import Dialog
from sipua.sip.message import Request
from sipua.sip.offer_answer import OfferRejected, answer, make_offer
from sipua.sip.sdp import SdpError
from sipua.sip.transaction import Transaction

from .call import Call, CallState
from .capabilities import ALLOW
from .events import DtmfReceived

if TYPE_CHECKING:
    from .uas import Uas

SDP_TYPES = frozenset({"application/sdp"})
DTMF_INFO_TYPES = frozenset({"application/dtmf-relay", "application/dtmf"})
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class MidCall:
    """re-INVITE and INFO handling for :class:`~sipua.ua.uas.Uas`."""

    def __init__(self, uas: Uas) -> None:
        self.uas = uas

    def reinvite(self, call: Call, dialog: Dialog, request: Request, tx: Transaction) -> None:
        uas = self.uas
        if call is None or call.state is CallState.ENDING:
            uas.respond(tx, 481)
            return
        if call.state is CallState.ANSWERED or call.pending_offer is not None:
            # RFC 3261 §14.2: an INVITE before the ACK of the previous one.
            uas.respond(tx, 500, headers=[("Retry-After", "1")])
            return
        if call.reinvite_tx is not None and call.reinvite_tx.state.value in (
            "Calling",
            "Proceeding",
        ):
            uas.respond(tx, 491)  # our own re-INVITE is pending (§14.2)
            return
        policy = uas.policy_for(call.session)
        leg = call.media
        host = leg.local_host if leg is not None else uas.ua.transports.advertised_host or "0.0.0.0"
        port = leg.local_port if leg is not None else 9
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime not in SDP_TYPES:
                uas.respond(tx, 415, headers=[("Accept", "application/sdp")])
                return
            try:
                state = answer(request.body, policy, host, port, previous=call.sdp)
            except OfferRejected as e:
                # The session in place stays as it was (RFC 3261 §14.2).
                uas.respond(tx, e.status, e.reason, headers=[("Warning", e.warning)])
                return
            except SdpError as e:
                uas.respond(tx, 400, headers=[("Warning", f'399 sipua "bad SDP: {str(e)[:150]}"')])
                return
            call.sdp = state
            body = state.sdp.to_bytes()
            if leg is not None:
                leg.update(state.params)
        else:
            sdp, call.pending_offer = make_offer(policy, host, port, previous=call.sdp)
            body = sdp.to_bytes()
        dialog.refresh_target(request)
        uas.respond(
            tx,
            200,
            headers=[("Contact", call.contact), ("Allow", ALLOW), ("Supported", "")],
            body=body,
            content_type="application/sdp",
        )

    def info(self, call: Call | None, request: Request, tx: Transaction) -> None:
        uas = self.uas
        ctype = request.content_type
        if not request.body:
            uas.respond(tx, 200)  # an empty INFO is a keep-alive for some PBXes
            return
        if ctype is None or ctype.mime not in DTMF_INFO_TYPES:
            uas.respond(tx, 415, headers=[("Accept", "application/dtmf-relay, application/dtmf")])
            return
        digit, duration = parse_dtmf_info(ctype.mime, request.body)
        if digit is None:
            uas.respond(tx, 400, headers=[("Warning", '399 sipua "no DTMF signal in the body"')])
            return
        uas.respond(tx, 200)
        if call is not None:
            deliver = getattr(call.media, "dtmf", None)
            if deliver is not None:
                deliver(digit, duration, "sip-info")  # to the media application too
            uas.bus.publish(
                DtmfReceived(
                    **uas._event_fields(call), digit=digit, duration_ms=duration, source="sip-info"
                )
            )


def parse_dtmf_info(mime: str, body: bytes) -> tuple[str | None, int]:
    """``application/dtmf-relay`` (Signal=/Duration=) or ``application/dtmf`` (the digit alone)."""
    text = body.decode("utf-8", "replace")
    if mime == "application/dtmf":
        digit = text.strip()[:1].upper()
        return (digit if digit in DTMF_DIGITS else None), 250
    digit: str | None = None
    duration = 250
    for line in text.replace("\r", "\n").split("\n"):
        name, _, value = line.partition("=")
        name, value = name.strip().lower(), value.strip()
        if name == "signal":
            value = value.upper()
            if value in DTMF_DIGITS:
                digit = value
            elif value.isdigit() and 10 <= int(value) <= 11:
                digit = "*#"[int(value) - 10]  # some PBXes send event codes
        elif name == "duration" and value.isdigit():
            duration = min(int(value), 60000)
    return digit, duration
