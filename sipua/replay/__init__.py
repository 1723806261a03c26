"""``sipua replay``: the caller's side of a captured call, played again against a UAS.

An operator holds a customer's capture and wants to see what *this* UAS (a sipua on
loopback or staging, or any other SIP server) does with that same call. The replay takes
the first INVITE of the capture, keeps what describes the caller (its SDP offer with codecs
and attributes, User-Agent, Supported, Allow, P-Asserted-Identity, X- headers …) and
replaces what names the captured network (Via, Contact, Call-ID, tags, the SDP addresses)
with its own sockets, so the UAS answers to us and not to the customer's phone.

Two halves:

- pure functions, unit-tested without sockets: :func:`load_capture` finds the call in the
  capture, :func:`build_invite` and :func:`rewrite_offer` make the request to send,
  :func:`is_rtp` / :func:`answer_summary` read media;
- :class:`Replay`, a blocking driver around the sans-I/O core: the
  :class:`~sipua.sip.transaction.TransactionLayer` retransmits (Timer A with T1 = 0.5 s up
  to Timer B), ACKs a 3xx-6xx on the INVITE's branch (RFC 3261 §17.1.1.3) and runs BYE as a
  non-INVITE transaction; :class:`~sipua.sip.dialog.Dialog` builds the ACK of a 2xx and the
  BYE. One ``select`` loop carries SIP, the timers and the RTP schedule, and every wait in
  it has a deadline: a dead target becomes an error message, never a hang.
"""

from __future__ import annotations

from .capture import CapturedCall, is_rtcp, is_rtp, load_capture
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ReplayUsageError
from .driver import Replay, ReplayOptions, replay
from .invite import (
    AnswerMedia,
    answer_summary,
    build_cancel,
    build_invite,
    carried_headers,
    hostport,
    replay_request_uri,
    rewrite_offer,
)
from .links import parse_target, resolve
from .result import ReplayResult

__all__ = [
    "AnswerMedia",
    "CapturedCall",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Replay",
    "ReplayOptions",
    "ReplayResult",
    "ReplayUsageError",
    "answer_summary",
    "build_cancel",
    "build_invite",
    "carried_headers",
    "hostport",
    "is_rtcp",
    "is_rtp",
    "load_capture",
    "parse_target",
    "replay",
    "replay_request_uri",
    "resolve",
    "rewrite_offer",
]
