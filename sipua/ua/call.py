"""A call leg: one participant of a session, from INVITE to hang-up."""

from __future__ import annotations

from enum import Enum
from typing import Any

from sipua.sip.dialog import Dialog
from sipua.sip.ids import random_hex
from sipua.sip.message import Request
from sipua.sip.offer_answer import AnswerState, OfferState
from sipua.sip.transaction import Transaction
from sipua.transport.peer import Peer

from .media import MediaLeg


class CallState(Enum):
    RINGING = "ringing"  # INVITE received, not answered yet
    ANSWERED = "answered"  # 2xx sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDING = "ending"  # BYE sent, waiting for its response
    ENDED = "ended"


class Call:
    __slots__ = (
        "id",
        "session",
        "session_id",
        "invite",
        "invite_tx",
        "peer",
        "transport",
        "to_tag",
        "dialog",
        "state",
        "media",
        "sdp",
        "pending_offer",
        "reinvite_tx",
        "created_at",
        "answered_at",
        "connected_at",
        "ended_at",
        "end_reason",
        "answer_handle",
        "contact",
        "dialing",
        "__weakref__",  # so tests can prove an ended call is not kept alive
    )

    def __init__(self, session: Any, invite: Request, invite_tx: Transaction, peer: Peer) -> None:
        self.id = "leg_" + random_hex(8)
        self.session = session
        self.session_id: str = session.id
        self.invite = invite
        self.invite_tx = invite_tx
        self.peer = peer  # where the INVITE came from (and its connection, on streams)
        self.transport = peer.transport
        self.to_tag = ""
        self.dialog: Dialog | None = None
        self.state = CallState.RINGING
        self.media: MediaLeg | None = None
        self.sdp: AnswerState | None = None  # the last completed offer/answer
        self.pending_offer: OfferState | None = None  # our offer awaiting the ACK's answer
        self.reinvite_tx: Transaction | None = None
        self.created_at = 0.0
        self.answered_at = 0.0
        self.connected_at = 0.0
        self.ended_at = 0.0
        self.end_reason = ""
        self.answer_handle: Any = None
        self.contact = ""
        self.dialing: Any = None  # an outbound call's progress (sipua.ua.uac.Dialing)

    @classmethod
    def outgoing(cls, session: Any, peer: Peer) -> Call:
        """A call we place; its INVITE and transaction come with each attempt."""
        return cls(session, None, None, peer)  # type: ignore[arg-type]

    @property
    def call_id(self) -> str:
        invite = self.invite
        return invite.call_id if invite is not None else self.dialing.call_id

    @property
    def remote(self) -> str:
        host, port = self.peer.source
        return f"{host}:{port}"

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.session_id} {self.state.value}>"
