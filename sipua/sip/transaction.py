"""The SIP transaction layer (RFC 3261 §17, RFC 6026, RFC 4320), sans-I/O.

:class:`TransactionLayer` is fed received messages and the current time, and
is asked for what to send (:meth:`~TransactionLayer.messages_to_send`), when
to wake it next (:meth:`~TransactionLayer.next_timer`) and what happened
(:meth:`~TransactionLayer.next_event`). It never reads a clock or touches a
socket. The four state machines of Figures 5–8 (with RFC 6026's Accepted
state) are the transition tables below: ``(state, input) -> (next state,
actions)``.

Where a message goes is the transport's business: a received message carries
an opaque ``context`` (set by the transport) and responses are sent back with
it; a client transaction is given the context of its destination. Whether the
transport is reliable decides the timers (§17.1.1.2, §17.1.2.2, §17.2.1).

One duty of the transaction user is done here as well: retransmitting a 2xx to
INVITE until its ACK arrives (§13.3.1.4). The server INVITE transaction does
it in the Accepted state (RFC 6026 §7.1), matches the ACK (which has a branch
of its own) by Call-ID, CSeq and tags, and reports :class:`AckReceived` or,
after 64*T1, :class:`AckTimedOut`. The user needs no timer of its own.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .builders import make_response
from .errors import ParseError
from .ids import new_tag
from .message import Request, Response, parse_message
from .transaction_fsm import (
    INITIAL_STATE,
    TABLES,
    Kind,
    State,
    response_class,
    rfc3261_branch,
)


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4 base values, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0  # Timer D on unreliable transports (> 32 s)
    l: float | None = None  # noqa: E741 - Timer L (RFC 6026): how long a 2xx waits for its ACK; 64*T1 when None


class Transaction:
    """One client or server transaction. Its fields are read by the user, changed only by the layer."""

    __slots__ = (
        "kind",
        "key",
        "_state",
        "_buried",
        "request",
        "context",
        "reliable",
        "request_bytes",
        "last_response",
        "response_bytes",
        "ack_bytes",
        "ack",
        "interval",
        "deadlines",
        "to_tag",
        "ack_key",
        "merge_key",
        "user_data",
        "layer_owned",
        "created",
    )

    def __init__(
        self, kind: Kind, key: tuple, request: Request, context: Any, reliable: bool
    ) -> None:
        self.kind = kind
        self.key = key
        self._state = State.TRYING
        # Set when the layer buried it (see TransactionLayer._bury): its tombstones and its own.
        self._buried: tuple[dict, tuple] | None = None
        self.request = request
        self.context = context
        self.reliable = reliable
        self.request_bytes: bytes | None = None
        self.last_response: Response | None = None
        self.response_bytes: bytes | None = None
        self.ack_bytes: bytes | None = None
        self.ack: Request | None = None  # the ACK a client INVITE sent for a 3xx-6xx
        self.interval = 0.0  # the current retransmission interval of Timer A, E or G
        self.deadlines: dict[str, float] = {}
        self.to_tag: str | None = None
        self.ack_key: tuple | None = None
        self.merge_key: tuple | None = None
        self.user_data: Any = None  # free for the transaction user
        self.created = 0.0  # when a server transaction's request arrived (RFC 4320 §4.1)
        # Answered by the layer itself (a merged request's 482, a CANCEL's 200/481):
        # the user never heard of it, so no event names it.
        self.layer_owned = False

    @property
    def state(self) -> State:
        """Its state in Figures 5-8. A buried transaction is Terminated once its tombstone is."""
        buried = self._buried
        if buried is not None and buried[0].get(self.key) is not buried[1]:
            return State.TERMINATED
        return self._state

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_server(self) -> bool:
        return self.kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER)

    def __repr__(self) -> str:
        return f"<Transaction {self.kind.value} {self.request.method} {self.state.value}>"


# -- what the layer tells its user ------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction; the user must answer it."""

    request: Request
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE (already answered 200 by the layer, RFC 3261 §9.2).

    The user should end the INVITE with 487 if it has not sent a final response.
    """

    request: Request
    invite: Transaction


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK outside any transaction: the ACK of a 2xx (``transaction`` set when matched)."""

    request: Request
    transaction: Transaction | None


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """No ACK came for a 2xx within 64*T1 (RFC 3261 §13.3.1.4): the user should send BYE."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    response: Response
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class StrayResponseReceived:
    """A response matching no client transaction (e.g. a 2xx retransmitted after it ended)."""

    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B (client INVITE with no response at all), F (client non-INVITE), or
    H (server, no ACK for a non-2xx final response)."""

    transaction: Transaction
    timer: str


@dataclass(frozen=True, slots=True)
class TransactionFailed:
    """The transport reported a failure (RFC 3261 §17.1.4, §17.2.4)."""

    transaction: Transaction
    reason: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes to send, and the transport context saying where."""

    data: bytes
    context: Any
    message: Request | Response


Event = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | AckTimedOut
    | ResponseReceived
    | StrayResponseReceived
    | TransactionTimedOut
    | TransactionFailed
)


# States in which a transaction only absorbs or answers retransmissions until a timer ends it.
SETTLED = frozenset((State.COMPLETED, State.CONFIRMED, State.ACCEPTED))

_SERVER_KINDS = frozenset((Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER))

# Where a timer entry's transaction is looked up: heap entries name a transaction by its key,
# not by reference, so that a pending timer keeps nothing alive (and its tuple of a float, an
# int and strings is one the cyclic collector stops tracking).
_IN_SERVER, _IN_CLIENT, _IN_TOMBS = 0, 1, 2

# A tombstone: what a settled server transaction still needs until its timer ends it
# (see TransactionLayer._bury): (expiry, response bytes to resend or None, context,
# To tag, merge key, whether it absorbs an ACK). Nothing in it refers to the transaction.
_Tomb = tuple[float, bytes | None, Any, str | None, tuple | None, bool]

# Which settled server transactions are buried, and the timer that ends their tombstone:
# a non-INVITE answered (Completed, Timer J), an INVITE whose 2xx was acknowledged
# (Accepted, Timer L) or whose 3xx-6xx was (Confirmed, Timer I).
_BURIABLE = {
    (Kind.NON_INVITE_SERVER, State.COMPLETED): "J",
    (Kind.INVITE_SERVER, State.ACCEPTED): "L",
    (Kind.INVITE_SERVER, State.CONFIRMED): "I",
}


def shed(tx: Transaction) -> None:
    """Drop the lookup tables of a settled transaction's messages; they are rebuilt if read.

    A settled transaction lives on for up to 64*T1 (32 s) only to match retransmissions by
    its key. At thousands of calls per second that is tens of thousands of messages whose
    header index (a dict of lists) and parsed values would otherwise stay alive, and be
    walked by the cyclic garbage collector, for nothing. The messages themselves (fields and
    body) are kept, so nothing is lost.
    """
    for message in (tx.request, tx.last_response):
        if message is not None:
            message._index = None
            message._cache = {}  # a new empty dict is not tracked by the collector; a cleared one is


class TransactionLayer:
    """All transactions of one SIP element."""

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        auto_trying: bool | str = True,
        max_transactions: int | None = None,
    ) -> None:
        self.timers = timers or TimerConfig()
        # RFC 3261 §17.2.1: the server INVITE transaction sends 100 Trying unless the user
        # will answer within 200 ms. True: at once. "deferred": when the user calls
        # send_deferred_trying() after handling the INVITE, and only if it has not
        # answered by then (its 180 or final response makes the 100 needless).
        self.auto_trying = auto_trying
        self._trying_due: list[Transaction] = []
        self.max_transactions = max_transactions
        # Set by the user while it is overloaded: a new INVITE outside a dialog then gets a
        # stateless 503 with Retry-After before any transaction exists (RFC 3261 §21.5.4), the
        # cheapest answer there is; requests of transactions and dialogs in progress go on.
        self.shedding = False
        self.retry_after = 5  # seconds, in the 503s of shedding and of max_transactions
        self.server: dict[tuple, Transaction] = {}
        self.client: dict[tuple, Transaction] = {}
        self._awaiting_ack: dict[tuple, Transaction] = {}
        self._merge: dict[tuple, Transaction] = {}
        self._heap: list[tuple[float, int, int, tuple, str]] = []
        self._tombs: dict[tuple, _Tomb] = {}
        self._seq = itertools.count()
        self._out: list[Outgoing] = []
        self._settled: list[Transaction] = []  # to shed at the next input (see shed)
        self._events: list[Event] = []
        self._event_pos = 0
        self.counters: dict[str, int] = {
            "retransmissions_sent": 0,
            "retransmissions_received": 0,
            "buried": 0,  # settled server transactions reduced to a tombstone (see _bury)
            "merged_requests": 0,
            "stray_acks": 0,
            "stray_responses": 0,
            "timeouts": 0,
            "overloaded": 0,
            "shed": 0,  # new INVITEs answered 503 statelessly while shedding
            "trying_withheld": 0,  # RFC 4320: an early 100 to a non-INVITE over UDP
            "408_withheld": 0,  # RFC 4320: never a 408 to a non-INVITE
        }

    # -- pulled output ---------------------------------------------------------

    def messages_to_send(self) -> list[Outgoing]:
        out = self._out
        self._out = []
        return out

    def next_event(self) -> Event | None:
        events = self._events
        pos = self._event_pos
        if pos < len(events):
            self._event_pos = pos + 1
            if pos + 1 == len(events):
                self._events = []
                self._event_pos = 0
            return events[pos]
        return None

    def events(self) -> list[Event]:
        """Every pending event at once (same order as :meth:`next_event`)."""
        events = self._events[self._event_pos :]
        self._events = []
        self._event_pos = 0
        return events

    def next_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, where, key, name = heap[0]
            if where == _IN_TOMBS:
                tomb = self._tombs.get(key)
                if tomb is not None and tomb[0] == when:
                    return when
            else:
                tx = (self.server if where == _IN_SERVER else self.client).get(key)
                if tx is not None and tx.deadlines.get(name) == when:
                    return when
            heapq.heappop(heap)  # cancelled, superseded, or its transaction is gone
        return None

    def __len__(self) -> int:
        """Live transactions (tombstones not counted: see :attr:`tombstones`)."""
        return len(self.server) + len(self.client)

    @property
    def tombstones(self) -> int:
        """Settled server transactions kept only as a tombstone until their timer ends them."""
        return len(self._tombs)

    def remembers(self, key: tuple) -> bool:
        """Whether a server transaction with this key is live or lingers as a tombstone."""
        return key in self.server or key in self._tombs

    # -- input: time -------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        if self._settled:
            self._shed_settled()
        heap = self._heap
        server = self.server
        while heap and heap[0][0] <= now:
            when, _, where, key, name = heapq.heappop(heap)
            if where == _IN_SERVER:
                tx = server.get(key)
            elif where == _IN_CLIENT:
                tx = self.client.get(key)
            else:
                tomb = self._tombs.get(key)
                if tomb is not None and tomb[0] == when:
                    self._unbury(key, tomb)  # a user still holding it now reads Terminated
                continue
            if tx is None or tx.deadlines.get(name) != when:
                continue
            del tx.deadlines[name]
            self._input(tx, name, name, now)

    # -- input: messages -----------------------------------------------------------

    def receive(self, message: Request | Response, now: float, *, reliable: bool = False) -> None:
        """A message the transport received; its ``context`` says where it came from.

        Raises :class:`ParseError` when a header the layer needs is malformed;
        the caller answers a request with ``error.status`` statelessly and
        drops a response (RFC 3261 §18.1.2).
        """
        if self._settled:
            self._shed_settled()
        if isinstance(message, Response):
            self._receive_response(message, now)
        else:
            self._receive_request(message, now, reliable)

    def _shed_settled(self) -> None:
        # At the next input, not when they settled: the messages they sent last have been
        # pulled and recorded by then, with their parsed values still at hand.
        settled = self._settled
        self._settled = []
        for tx in settled:
            if tx._state is State.TERMINATED:
                continue
            if tx.kind in _SERVER_KINDS and self._bury(tx):
                continue
            shed(tx)

    def _bury(self, tx: Transaction) -> bool:
        """Replace a settled server transaction by a tombstone, if all it still does is small.

        A server transaction outlives its answer by up to 64*T1 (32 s) only to absorb or
        answer retransmissions of its request. At thousands of calls per second that is
        hundreds of thousands of transactions, with their messages and contexts, that the
        cyclic garbage collector walks again and again for nothing (full collections of
        over half a second, long enough for clients to retransmit). What they still need
        fits in a tombstone of bytes and strings: the response to resend, where to, the To
        tag for a CANCEL and the merge key (RFC 3261 §8.2.2.2). The layer forgets the
        transaction object: a user still holding it reads it as before, and its ``state``
        reads Terminated once the timer has ended the tombstone.
        """
        timer = _BURIABLE.get((tx.kind, tx._state))
        expiry = tx.deadlines.get(timer) if timer is not None else None
        key = tx.key
        # An Accepted transaction still waiting for its ACK retransmits its 2xx: not yet.
        if expiry is None or tx.ack_key is not None or self.server.get(key) is not tx:
            return False
        if tx.kind is Kind.NON_INVITE_SERVER:  # resends its final response
            tomb: _Tomb = (expiry, tx.response_bytes, tx.context, None, tx.merge_key, False)
        else:  # absorbs INVITE (and, once Confirmed, ACK) retransmissions
            tomb = (expiry, None, None, self._to_tag(tx), tx.merge_key, timer == "I")
        del self.server[key]
        self._tombs[key] = tomb
        tx._buried = (self._tombs, tomb)
        if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
            self._merge[tx.merge_key] = key  # type: ignore[assignment]
        heapq.heappush(self._heap, (expiry, next(self._seq), _IN_TOMBS, key, timer))
        self.counters["buried"] += 1
        return True

    def _unbury(self, key: tuple, tomb: _Tomb) -> None:
        del self._tombs[key]
        merge_key = tomb[4]
        if merge_key is not None and self._merge.get(merge_key) == key:
            del self._merge[merge_key]

    def _tomb_request(self, request: Request, tomb: _Tomb, now: float) -> None:
        """A retransmitted request of a buried transaction: resend its response, if it has one."""
        self.counters["retransmissions_received"] += 1
        data = tomb[1]
        if data is not None:
            self.counters["retransmissions_sent"] += 1
            # Rare (a lost response): the message is parsed back for the user's records.
            self._send(data, tomb[2], parse_message(data))

    def _server_key(self, request: Request, method: str) -> tuple:
        via = request.top_via
        branch = via.branch
        if rfc3261_branch(branch):
            return (branch, via.sent_by.lower(), method)
        # RFC 3261 §17.2.3, RFC 2543 matching: everything but the To tag of an ACK.
        return (
            "2543",
            str(request.uri),
            request.from_.tag,
            request.call_id,
            request.cseq.seq,
            str(via),
            method,
        )

    def _receive_request(self, request: Request, now: float, reliable: bool) -> None:
        method = request.method
        if method == "ACK":
            key = self._server_key(request, "INVITE")
            tx = self.server.get(key)
            if tx is None and self._tombs:
                tomb = self._tombs.get(key)
                if (
                    tomb is not None
                    and tomb[5]
                    and (key[0] != "2543" or tomb[3] is None or request.to.tag == tomb[3])
                ):
                    return  # Confirmed absorbs ACK retransmissions (RFC 3261 §17.2.1)
            if tx is not None and tx._state is not State.ACCEPTED:
                if (
                    key[0] == "2543"
                    and (tag := self._to_tag(tx)) is not None
                    and request.to.tag != tag
                ):
                    tx = None
                else:
                    self._input(tx, "ack", request, now)
                    return
            self._ack_outside_transaction(request, now)
            return
        key = self._server_key(request, method)
        tx = self.server.get(key)
        if tx is not None:
            self.counters["retransmissions_received"] += 1
            self._input(tx, "request", request, now)
            return
        if self._tombs:
            tomb = self._tombs.get(key)
            if tomb is not None:
                self._tomb_request(request, tomb, now)
                return
        if method == "CANCEL":
            self._receive_cancel(request, key, now, reliable)
            return
        if self.shedding and method == "INVITE" and request.to.tag is None:
            self.counters["shed"] += 1
            self._respond_statelessly(
                request, 503, [("Retry-After", str(self.retry_after))], to_tag=new_tag()
            )
            return
        if self.max_transactions is not None and len(self) >= self.max_transactions:
            self.counters["overloaded"] += 1
            self._respond_statelessly(
                request, 503, [("Retry-After", str(self.retry_after))], to_tag=new_tag()
            )
            return
        kind = Kind.INVITE_SERVER if method == "INVITE" else Kind.NON_INVITE_SERVER
        tx = self._new(kind, key, request, request.context, reliable)
        tx.created = now
        # RFC 3261 §8.2.2.2: same From tag, Call-ID and CSeq as a request in
        # progress but another branch, and no To tag: the request was forked
        # and came back by another path.
        if request.to.tag is None:
            merge_key = (request.from_.tag, request.call_id, request.cseq.seq, method)
            other = self._merge.get(merge_key)
            if other is not None and (
                type(other) is tuple or other._state is not State.TERMINATED  # a tombstone's key
            ):
                self.counters["merged_requests"] += 1
                tx.layer_owned = True
                self.respond(tx, make_response(request, 482, to_tag=new_tag()), now)
                return
            tx.merge_key = merge_key
            self._merge[merge_key] = tx
        if kind is Kind.INVITE_SERVER and self.auto_trying:
            if self.auto_trying == "deferred":
                self._trying_due.append(tx)
            else:
                self.respond(tx, make_response(request, 100), now)
        self._events.append(RequestReceived(request, tx))

    def _receive_cancel(self, request: Request, key: tuple, now: float, reliable: bool) -> None:
        tx = self._new(Kind.NON_INVITE_SERVER, key, request, request.context, reliable)
        tx.layer_owned = True
        invite_key = key[:-1] + ("INVITE",)
        invite = self.server.get(invite_key)
        if invite is None:
            tomb = self._tombs.get(invite_key)
            if tomb is not None:
                # Answered already: the CANCEL has no effect, but it matched (§9.2).
                self.respond(tx, make_response(request, 200, to_tag=tomb[3] or new_tag()), now)
                return
            # RFC 3261 §9.2: no matching transaction.
            self.respond(tx, make_response(request, 481, to_tag=new_tag()), now)
            return
        # The 200 to the CANCEL carries the To tag of the INVITE's responses.
        # The 200 to the CANCEL carries the To tag of the INVITE's responses
        # (RFC 3261 §9.2); the user sets it on the INVITE transaction up front.
        if self._to_tag(invite) is None:
            invite.to_tag = new_tag()
        self.respond(tx, make_response(request, 200, to_tag=invite.to_tag), now)
        if invite._state is State.PROCEEDING:
            self._events.append(CancelReceived(request, invite))

    def _ack_outside_transaction(self, request: Request, now: float) -> None:
        ack_key = (request.call_id, request.cseq.seq, request.from_.tag, request.to.tag)
        tx = self._awaiting_ack.get(ack_key)
        if tx is not None:
            self._input(tx, "2xx_acked", request, now)
        else:
            self.counters["stray_acks"] += 1
        self._events.append(AckReceived(request, tx))

    def _receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        key = (via.branch, response.cseq.method)
        tx = self.client.get(key)
        if tx is None:
            self.counters["stray_responses"] += 1
            self._events.append(StrayResponseReceived(response))
            return
        self._input(tx, response_class(response.status), response, now)

    # -- input: the user ------------------------------------------------------------

    def send_request(
        self, request: Request, now: float, *, context: Any = None, reliable: bool = False
    ) -> Transaction:
        """Start a client transaction for ``request`` (its top Via carries the branch).

        An ACK is not a transaction: use :meth:`send_stateless`.
        """
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is sent with send_stateless, not in a transaction")
        branch = request.top_via.branch
        if not rfc3261_branch(branch):
            raise ValueError("client requests need a branch starting with z9hG4bK")
        key = (branch, method)
        if key in self.client:
            raise ValueError(f"a client transaction with branch {branch} {method} already exists")
        kind = Kind.INVITE_CLIENT if method == "INVITE" else Kind.NON_INVITE_CLIENT
        tx = self._new(kind, key, request, context, reliable)
        tx.request_bytes = request.to_bytes()
        self._send(tx.request_bytes, context, request)
        t = self.timers
        if kind is Kind.INVITE_CLIENT:
            if not reliable:
                tx.interval = t.t1
                self._start(tx, "A", now + t.t1)
            self._start(tx, "B", now + 64 * t.t1)
        else:
            if not reliable:
                tx.interval = t.t1
                self._start(tx, "E", now + t.t1)
            self._start(tx, "F", now + 64 * t.t1)
        return tx

    def respond(self, transaction: Transaction, response: Response, now: float) -> bool:
        """Send a response on a server transaction.

        Returns False (and sends nothing) when the transaction has already
        ended, which happens in races such as a CANCEL crossing a final response.
        """
        if not transaction.is_server:
            raise ValueError("respond() needs a server transaction")
        if transaction.state is State.TERMINATED:  # the property: a buried one may have ended
            return False
        status = response.status
        event = "tu_" + response_class(status)
        table = TABLES[transaction.kind]
        if (transaction._state, event) not in table:
            raise ValueError(
                f"cannot send {status} in state {transaction._state.value} of {transaction!r}"
            )
        if transaction.kind is Kind.NON_INVITE_SERVER and not self._rfc4320_allows(
            transaction, status, now
        ):
            return False
        self._input(transaction, event, response, now)
        return True

    def _rfc4320_allows(self, tx: Transaction, status: int, now: float) -> bool:
        """RFC 4320 §4.1–4.2 for responses to non-INVITE requests.

        Only 100 may be provisional, and over an unreliable transport not before the client's
        Timer E has reached T2 (an early 100 would make it stop retransmitting and then give
        up at Timer F all the same); no 408 ever: an element that cannot answer in time sends
        no final response at all, and the transaction ends unanswered.
        """
        if 100 < status < 200:
            raise ValueError(f"RFC 4320 §4.1: no {status} to a non-INVITE request")
        if status == 100 and not tx.reliable and now - tx.created < self.timers.t2:
            self.counters["trying_withheld"] += 1
            return False
        if status == 408:
            self.counters["408_withheld"] += 1
            self.terminate(tx)
            return False
        return True

    def send_deferred_trying(self, now: float) -> None:
        """Send 100 Trying for the INVITEs received since the last call that have no response yet."""
        due = self._trying_due
        if not due:
            return
        self._trying_due = []
        for tx in due:
            if tx._state is State.PROCEEDING and tx.last_response is None:
                self.respond(tx, make_response(tx.request, 100), now)

    def stop_retransmitting(self, transaction: Transaction, now: float) -> None:
        """Stop re-sending a 2xx whose ACK will not come (the peer already sent BYE).

        The transaction stays in Accepted, absorbing INVITE retransmissions
        until Timer L (RFC 6026 §7.1); no AckTimedOut is reported.
        """
        self._input(transaction, "2xx_acked", None, now)

    @staticmethod
    def _to_tag(tx: Transaction) -> str | None:
        """The To tag of the server transaction's responses, read from them when first needed."""
        if tx.to_tag is None:
            response = tx.last_response
            if response is not None and response.status > 100:
                tx.to_tag = response.to.tag
        return tx.to_tag

    def send_stateless(self, message: Request | Response, context: Any) -> None:
        """Send outside any transaction: the ACK of a 2xx, or a stateless response."""
        self._send(message.to_bytes(), context, message)

    def transport_error(
        self, transaction: Transaction, now: float, reason: str = "transport error"
    ) -> None:
        """The transport could not deliver a message of this transaction."""
        if (transaction.state, "transport_error") in TABLES[transaction.kind]:
            self._input(transaction, "transport_error", reason, now)

    def terminate(self, transaction: Transaction) -> None:
        """Forget a transaction now (the user gave up on it)."""
        self._enter(transaction, State.TERMINATED)

    # -- the machine ---------------------------------------------------------------

    def _new(
        self, kind: Kind, key: tuple, request: Request, context: Any, reliable: bool
    ) -> Transaction:
        tx = Transaction(kind, key, request, context, reliable)
        tx._state = INITIAL_STATE[kind]
        if kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER):
            self.server[key] = tx
        else:
            self.client[key] = tx
        return tx

    def _input(self, tx: Transaction, event: str, arg: Any, now: float) -> None:
        entry = TABLES[tx.kind].get((tx._state, event))
        if entry is None:
            return  # RFC 3261 §17: inputs a state does not name are absorbed
        next_state, actions = entry
        for action in actions:
            _ACTIONS[action](self, tx, arg, now)
        if next_state is not None and next_state is not tx._state:
            self._enter(tx, next_state)

    def _enter(self, tx: Transaction, state: State) -> None:
        tx._state = state
        if state in SETTLED:
            self._settled.append(tx)
        if state is State.TERMINATED:
            tx.deadlines.clear()
            table = self.server if tx.is_server else self.client
            if table.get(tx.key) is tx:
                del table[tx.key]
            elif tx._buried is not None and self._tombs.get(tx.key) is tx._buried[1]:
                self._unbury(tx.key, tx._buried[1])  # the user ended a buried transaction
            if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
                del self._merge[tx.merge_key]
            if tx.ack_key is not None and self._awaiting_ack.get(tx.ack_key) is tx:
                del self._awaiting_ack[tx.ack_key]

    def _start(self, tx: Transaction, name: str, when: float) -> None:
        tx.deadlines[name] = when
        where = _IN_SERVER if tx.kind in _SERVER_KINDS else _IN_CLIENT
        heapq.heappush(self._heap, (when, next(self._seq), where, tx.key, name))

    def _stop(self, tx: Transaction, name: str) -> None:
        tx.deadlines.pop(name, None)

    def _send(self, data: bytes, context: Any, message: Request | Response) -> None:
        self._out.append(Outgoing(data, context, message))

    def _respond_statelessly(
        self,
        request: Request,
        status: int,
        headers: list[tuple[str, str]],
        to_tag: str | None = None,
    ) -> None:
        response = make_response(request, status, headers=headers, to_tag=to_tag)
        self.send_stateless(response, request.context)

    # actions (named in the tables)

    def _a_resend_request(self, tx: Transaction, arg: Any, now: float) -> None:
        self.counters["retransmissions_sent"] += 1
        assert tx.request_bytes is not None
        self._send(tx.request_bytes, tx.context, tx.request)

    def _a_backoff_a(self, tx: Transaction, arg: Any, now: float) -> None:
        tx.interval *= 2
        self._start(tx, "A", now + tx.interval)

    def _a_backoff_e(self, tx: Transaction, arg: Any, now: float) -> None:
        tx.interval = min(tx.interval * 2, self.timers.t2)
        self._start(tx, "E", now + tx.interval)

    def _a_backoff_e_t2(self, tx: Transaction, arg: Any, now: float) -> None:
        tx.interval = self.timers.t2
        self._start(tx, "E", now + tx.interval)

    def _a_backoff_g(self, tx: Transaction, arg: Any, now: float) -> None:
        tx.interval = min(tx.interval * 2, self.timers.t2)
        self._start(tx, "G", now + tx.interval)

    def _a_backoff_2xx(self, tx: Transaction, arg: Any, now: float) -> None:
        tx.interval = min(tx.interval * 2, self.timers.t2)
        self._start(tx, "retransmit_2xx", now + tx.interval)

    def _a_pass_response(self, tx: Transaction, arg: Any, now: float) -> None:
        self._events.append(ResponseReceived(arg, tx))

    def _a_send_ack(self, tx: Transaction, arg: Any, now: float) -> None:
        ack = _ack_for_non_2xx(tx.request, arg)
        tx.ack = ack
        tx.ack_bytes = ack.to_bytes()
        self._send(tx.ack_bytes, tx.context, ack)

    def _a_resend_ack(self, tx: Transaction, arg: Any, now: float) -> None:
        if tx.ack_bytes is not None and tx.ack is not None:
            self.counters["retransmissions_sent"] += 1
            self._send(tx.ack_bytes, tx.context, tx.ack)

    def _a_send_response(self, tx: Transaction, arg: Response, now: float) -> None:
        data = arg.to_bytes()
        tx.last_response = arg
        tx.response_bytes = data
        self._send(data, tx.context, arg)

    def _a_resend_response(self, tx: Transaction, arg: Any, now: float) -> None:
        if tx.response_bytes is not None and tx.last_response is not None:
            self.counters["retransmissions_sent"] += 1
            self._send(tx.response_bytes, tx.context, tx.last_response)

    def _a_report_timeout(self, tx: Transaction, arg: Any, now: float) -> None:
        self.counters["timeouts"] += 1
        if not tx.layer_owned:
            self._events.append(TransactionTimedOut(tx, arg or "?"))

    def _a_report_failure(self, tx: Transaction, arg: Any, now: float) -> None:
        if not tx.layer_owned:
            self._events.append(TransactionFailed(tx, str(arg)))

    def _a_report_ack_timeout(self, tx: Transaction, arg: Any, now: float) -> None:
        if tx.ack_key is not None and self._awaiting_ack.get(tx.ack_key) is tx:
            self.counters["timeouts"] += 1
            self._events.append(AckTimedOut(tx))

    def _a_start_2xx_retransmit(self, tx: Transaction, arg: Response, now: float) -> None:
        request = tx.request
        if tx.to_tag is None:
            tx.to_tag = arg.to.tag
        tx.ack_key = (request.call_id, request.cseq.seq, request.from_.tag, tx.to_tag)
        self._awaiting_ack[tx.ack_key] = tx
        if not tx.reliable:
            tx.interval = self.timers.t1
            self._start(tx, "retransmit_2xx", now + tx.interval)

    def _a_stop_retransmit_2xx(self, tx: Transaction, arg: Any, now: float) -> None:
        self._stop(tx, "retransmit_2xx")
        if tx.ack_key is not None and self._awaiting_ack.get(tx.ack_key) is tx:
            del self._awaiting_ack[tx.ack_key]
        tx.ack_key = None
        self._settled.append(tx)  # now only absorbs retransmissions: to bury at the next input

    def _a_start_g(self, tx: Transaction, arg: Any, now: float) -> None:
        if not tx.reliable:
            tx.interval = self.timers.t1
            self._start(tx, "G", now + tx.interval)

    def _timer_starter(name: str, duration: Callable[[TimerConfig, bool], float]):  # type: ignore[misc]
        def start(self: TransactionLayer, tx: Transaction, arg: Any, now: float) -> None:
            self._start(tx, name, now + duration(self.timers, tx.reliable))

        return start

    def _timer_stopper(name: str):  # type: ignore[misc]
        def stop(self: TransactionLayer, tx: Transaction, arg: Any, now: float) -> None:
            self._stop(tx, name)

        return stop

    # Table 4 of RFC 3261; D, I, J and K are zero on reliable transports.
    _a_start_d = _timer_starter("D", lambda t, r: 0.0 if r else t.d)
    _a_start_h = _timer_starter("H", lambda t, r: 64 * t.t1)
    _a_start_i = _timer_starter("I", lambda t, r: 0.0 if r else t.t4)
    _a_start_j = _timer_starter("J", lambda t, r: 0.0 if r else 64 * t.t1)
    _a_start_k = _timer_starter("K", lambda t, r: 0.0 if r else t.t4)
    _a_start_l = _timer_starter("L", lambda t, r: 64 * t.t1 if t.l is None else t.l)  # RFC 6026
    _a_start_m = _timer_starter("M", lambda t, r: 64 * t.t1)  # RFC 6026
    _a_stop_a = _timer_stopper("A")
    _a_stop_b = _timer_stopper("B")
    _a_stop_e = _timer_stopper("E")
    _a_stop_f = _timer_stopper("F")
    _a_stop_g = _timer_stopper("G")
    _a_stop_h = _timer_stopper("H")
    del _timer_starter, _timer_stopper


_ACTIONS: dict[str, Callable[[TransactionLayer, Transaction, Any, float], None]] = {
    name[3:]: getattr(TransactionLayer, name)
    for name in dir(TransactionLayer)
    if name.startswith("_a_")
}


def _check_tables() -> None:
    for table in TABLES.values():
        for _, actions in table.values():
            for action in actions:
                if action not in _ACTIONS:
                    raise RuntimeError(f"transition table names unknown action {action!r}")


_check_tables()


def _ack_for_non_2xx(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx–6xx (RFC 3261 §17.1.1.3)."""
    fields = []
    via_done = False
    for key, name, value in request.fields:
        if key in ("call-id", "from", "max-forwards"):
            fields.append((key, name, value))
        elif key == "via":
            # "a single Via header field ... equal to the top Via header field of
            # the original request": the first value, not the whole first line.
            if not via_done:
                fields.append((key, name, str(request.top_via)))
                via_done = True
        elif key == "route":
            fields.append((key, name, value))
    to = response.get("to")
    fields.append(("to", "To", to if to is not None else request.get("to") or ""))
    fields.append(("cseq", "CSeq", f"{request.cseq.seq} ACK"))
    return Request("ACK", request.uri, fields)


__all__ = [
    "AckReceived",
    "AckTimedOut",
    "CancelReceived",
    "Event",
    "Kind",
    "Outgoing",
    "ParseError",
    "SETTLED",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponseReceived",
    "TimerConfig",
    "Transaction",
    "TransactionFailed",
    "TransactionLayer",
    "TransactionTimedOut",
    "shed",
]
