"""The four transaction state machines of RFC 3261 §17 (Figures 5–8, with RFC 6026's Accepted state).

Each machine is a transition table: ``(state, input) -> (next state, actions)``.
Inputs: "1xx", "2xx", "3-6xx" (a received response), "tu_1xx", "tu_2xx",
"tu_3-6xx" (a response the user sends on a server transaction), "request" (a
retransmitted request), "ack", timers by letter, "transport_error", and the
2xx retransmission inputs of the server INVITE transaction. Actions are names
of :class:`~sipua.sip.transaction.TransactionLayer` methods (``_a_<name>``),
run in order; :mod:`sipua.sip.transaction` checks at import that every name
exists.
"""

from __future__ import annotations

from enum import Enum

from .ids import MAGIC_COOKIE


class Kind(Enum):
    INVITE_CLIENT = "ict"
    NON_INVITE_CLIENT = "nict"
    INVITE_SERVER = "ist"
    NON_INVITE_SERVER = "nist"


class State(Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# -- transition tables ---------------------------------------------------------
# Inputs: "1xx", "2xx", "3-6xx" (a received response, or one the user sends on a
# server transaction: "tu_1xx", "tu_2xx", "tu_3-6xx"), "request" (a retransmitted
# request), "ack", timers by letter, "transport_error".
# Actions are method names of TransactionLayer, run in order.

_S = State
ICT_TABLE: dict[tuple[State, str], tuple[State | None, tuple[str, ...]]] = {
    (_S.CALLING, "A"): (None, ("resend_request", "backoff_a")),
    (_S.CALLING, "B"): (_S.TERMINATED, ("report_timeout",)),
    # Figure 5: Timer B only ends the Calling state. Once the peer answers 1xx the
    # call may ring for minutes; the user ends it with CANCEL (RFC 3261 §9.1).
    (_S.CALLING, "1xx"): (_S.PROCEEDING, ("stop_a", "stop_b", "pass_response")),
    (_S.CALLING, "2xx"): (_S.ACCEPTED, ("stop_a", "stop_b", "pass_response", "start_m")),
    (_S.CALLING, "3-6xx"): (
        _S.COMPLETED,
        ("stop_a", "stop_b", "send_ack", "pass_response", "start_d"),
    ),
    (_S.CALLING, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.PROCEEDING, "1xx"): (None, ("pass_response",)),
    (_S.PROCEEDING, "2xx"): (_S.ACCEPTED, ("stop_b", "pass_response", "start_m")),
    (_S.PROCEEDING, "3-6xx"): (_S.COMPLETED, ("stop_b", "send_ack", "pass_response", "start_d")),
    (_S.COMPLETED, "3-6xx"): (None, ("resend_ack",)),
    (_S.COMPLETED, "D"): (_S.TERMINATED, ()),
    (_S.COMPLETED, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    # RFC 6026 §7.2: 2xx retransmissions and forked 2xx go to the user, who ACKs them.
    (_S.ACCEPTED, "2xx"): (None, ("pass_response",)),
    (_S.ACCEPTED, "M"): (_S.TERMINATED, ()),
}

NICT_TABLE: dict[tuple[State, str], tuple[State | None, tuple[str, ...]]] = {
    (_S.TRYING, "E"): (None, ("resend_request", "backoff_e")),
    (_S.TRYING, "F"): (_S.TERMINATED, ("report_timeout",)),
    (_S.TRYING, "1xx"): (_S.PROCEEDING, ("pass_response",)),
    (_S.TRYING, "2xx"): (_S.COMPLETED, ("stop_e", "stop_f", "pass_response", "start_k")),
    (_S.TRYING, "3-6xx"): (_S.COMPLETED, ("stop_e", "stop_f", "pass_response", "start_k")),
    (_S.TRYING, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.PROCEEDING, "E"): (None, ("resend_request", "backoff_e_t2")),
    (_S.PROCEEDING, "F"): (_S.TERMINATED, ("report_timeout",)),
    (_S.PROCEEDING, "1xx"): (None, ("pass_response",)),
    (_S.PROCEEDING, "2xx"): (_S.COMPLETED, ("stop_e", "stop_f", "pass_response", "start_k")),
    (_S.PROCEEDING, "3-6xx"): (_S.COMPLETED, ("stop_e", "stop_f", "pass_response", "start_k")),
    (_S.PROCEEDING, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.COMPLETED, "K"): (_S.TERMINATED, ()),
}

IST_TABLE: dict[tuple[State, str], tuple[State | None, tuple[str, ...]]] = {
    (_S.PROCEEDING, "request"): (None, ("resend_response",)),
    (_S.PROCEEDING, "tu_1xx"): (None, ("send_response",)),
    (_S.PROCEEDING, "tu_2xx"): (_S.ACCEPTED, ("send_response", "start_l", "start_2xx_retransmit")),
    (_S.PROCEEDING, "tu_3-6xx"): (_S.COMPLETED, ("send_response", "start_g", "start_h")),
    (_S.PROCEEDING, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.COMPLETED, "request"): (None, ("resend_response",)),
    (_S.COMPLETED, "G"): (None, ("resend_response", "backoff_g")),
    (_S.COMPLETED, "H"): (_S.TERMINATED, ("report_timeout",)),
    (_S.COMPLETED, "ack"): (_S.CONFIRMED, ("stop_g", "stop_h", "start_i")),
    (_S.COMPLETED, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.CONFIRMED, "ack"): (None, ()),
    (_S.CONFIRMED, "request"): (None, ()),
    (_S.CONFIRMED, "I"): (_S.TERMINATED, ()),
    # RFC 6026 §7.1: INVITE retransmissions are absorbed, the user's 2xx retransmissions sent.
    (_S.ACCEPTED, "request"): (None, ()),
    (_S.ACCEPTED, "tu_2xx"): (None, ("send_response",)),
    (_S.ACCEPTED, "retransmit_2xx"): (None, ("resend_response", "backoff_2xx")),
    (_S.ACCEPTED, "2xx_acked"): (None, ("stop_retransmit_2xx",)),
    (_S.ACCEPTED, "L"): (_S.TERMINATED, ("report_ack_timeout",)),
}

NIST_TABLE: dict[tuple[State, str], tuple[State | None, tuple[str, ...]]] = {
    (_S.TRYING, "request"): (None, ()),
    (_S.TRYING, "tu_1xx"): (_S.PROCEEDING, ("send_response",)),
    (_S.TRYING, "tu_2xx"): (_S.COMPLETED, ("send_response", "start_j")),
    (_S.TRYING, "tu_3-6xx"): (_S.COMPLETED, ("send_response", "start_j")),
    (_S.PROCEEDING, "request"): (None, ("resend_response",)),
    (_S.PROCEEDING, "tu_1xx"): (None, ("send_response",)),
    (_S.PROCEEDING, "tu_2xx"): (_S.COMPLETED, ("send_response", "start_j")),
    (_S.PROCEEDING, "tu_3-6xx"): (_S.COMPLETED, ("send_response", "start_j")),
    (_S.PROCEEDING, "transport_error"): (_S.TERMINATED, ("report_failure",)),
    (_S.COMPLETED, "request"): (None, ("resend_response",)),
    (_S.COMPLETED, "J"): (_S.TERMINATED, ()),
    # Figure 8: "Trnsprt Err. Inform TU" from Completed as from Proceeding.
    (_S.COMPLETED, "transport_error"): (_S.TERMINATED, ("report_failure",)),
}

TABLES = {
    Kind.INVITE_CLIENT: ICT_TABLE,
    Kind.NON_INVITE_CLIENT: NICT_TABLE,
    Kind.INVITE_SERVER: IST_TABLE,
    Kind.NON_INVITE_SERVER: NIST_TABLE,
}

INITIAL_STATE = {
    Kind.INVITE_CLIENT: State.CALLING,
    Kind.NON_INVITE_CLIENT: State.TRYING,
    Kind.INVITE_SERVER: State.PROCEEDING,
    Kind.NON_INVITE_SERVER: State.TRYING,
}


def response_class(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "3-6xx"


def rfc3261_branch(branch: str | None) -> bool:
    # RFC 4475 §3.2.1: a branch that is only the magic cookie identifies nothing.
    return (
        branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)
    )
