"""A simulated network for sans-I/O SIP elements, driven in simulated time (tests only).

Nodes are joined by one link. A node is either a :class:`TransactionLayer`
with an optional transaction user (``on_event``), or a scripted peer without a
layer that only records what reaches it (``on_message`` may answer).

Every :class:`~sipua.sip.transaction.Outgoing` a layer produces is serialised
(its ``data``) and parsed back with :func:`parse_message` for each delivered
copy, whose ``context`` is set to the sender's name, so a response goes back to
where its request came from. The link's fate for each packet comes from a
fault policy: a list of delays, one per delivered copy (``[]`` drops it, two
entries duplicate it, unequal delays reorder packets). Policies are
deterministic: explicit plans, predicates, or a seeded ``random.Random``.

:meth:`SimNet.run` is a loop over simulated time: it always advances ``now`` to
the earliest of the next delivery, the next scheduled user action and every
layer's ``next_timer()``, and is bounded by a step count and a time limit. No
sleeps, no sockets, no clock.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sipua.sip.message import Request, Response, parse_message
from sipua.sip.transaction import Event, Outgoing, TransactionLayer

LATENCY = 0.01  # one-way delay of an undisturbed packet, in seconds


@dataclass
class Packet:
    """One transmission on the link (a retransmission is a packet of its own)."""

    index: int
    sent_at: float
    src: str
    dst: str
    data: bytes
    message: Request | Response  # the wire bytes parsed back
    delays: list[float] = field(default_factory=list)  # the fault policy's verdict
    delivered_at: list[float] = field(default_factory=list)

    @property
    def is_request(self) -> bool:
        return isinstance(self.message, Request)

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        m = self.message
        return m.method if isinstance(m, Request) else m.cseq.method

    @property
    def status(self) -> int | None:
        m = self.message
        return m.status if isinstance(m, Response) else None

    @property
    def label(self) -> str:
        """``INVITE`` for a request, ``200/INVITE`` for a response."""
        m = self.message
        if isinstance(m, Request):
            return m.method
        return f"{m.status}/{m.cseq.method}"

    def __repr__(self) -> str:
        return f"<Packet #{self.index} {self.src}->{self.dst} {self.label} t={self.sent_at:g}>"


FaultPolicy = Callable[[Packet], list[float]]


def perfect(latency: float = LATENCY) -> FaultPolicy:
    """Every packet arrives once, after ``latency``."""

    def policy(packet: Packet) -> list[float]:
        return [latency]

    return policy


def planned(plan: dict[int, list[float]], latency: float = LATENCY) -> FaultPolicy:
    """Packet ``i`` gets ``plan[i]`` (its delays), others arrive once after ``latency``."""

    def policy(packet: Packet) -> list[float]:
        return list(plan.get(packet.index, [latency]))

    return policy


def drop_matching(
    predicate: Callable[[Packet], bool], count: int = 1, latency: float = LATENCY
) -> FaultPolicy:
    """Drop the first ``count`` packets for which ``predicate`` is true."""
    left = [count]

    def policy(packet: Packet) -> list[float]:
        if left[0] > 0 and predicate(packet):
            left[0] -= 1
            return []
        return [latency]

    return policy


def seeded(
    seed: int,
    *,
    drop: float = 0.0,
    duplicate: float = 0.0,
    max_delay: float = LATENCY,
    min_delay: float = LATENCY,
) -> FaultPolicy:
    """Random drops, duplicates and delays in ``[min_delay, max_delay]``, reproducible by seed."""
    rng = random.Random(seed)

    def policy(packet: Packet) -> list[float]:
        if rng.random() < drop:
            return []
        copies = 2 if rng.random() < duplicate else 1
        return [rng.uniform(min_delay, max_delay) for _ in range(copies)]

    return policy


class Node:
    """One element on the simulated network."""

    def __init__(
        self,
        net: SimNet,
        name: str,
        layer: TransactionLayer | None,
        on_event: Callable[[Node, Event], None] | None,
        on_message: Callable[[Node, Request | Response], None] | None,
    ) -> None:
        self.net = net
        self.name = name
        self.layer = layer
        self.on_event = on_event
        self.on_message = on_message
        self.events: list[tuple[float, Event]] = []
        self.inbox: list[tuple[float, Request | Response]] = []

    def events_of(self, kind: type | tuple[type, ...]) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def timed_events_of(self, kind: type | tuple[type, ...]) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    def received(self, label: str | None = None) -> list[Request | Response]:
        """Messages delivered to this node (``label`` as in :attr:`Packet.label`)."""
        return [m for _, m in self.inbox if label is None or _label(m) == label]

    def sent(self, label: str | None = None) -> list[Packet]:
        """Packets this node put on the link (dropped ones included)."""
        return [
            p
            for p in self.net.packets
            if p.src == self.name and (label is None or p.label == label)
        ]

    def send(self, dst: str, message: Request | Response) -> Packet:
        """A scripted peer (or a test) sends a message directly, at the current time."""
        return self.net.transmit(self.name, Outgoing(message.to_bytes(), dst, message))

    def __repr__(self) -> str:
        return f"<Node {self.name}>"


def _label(m: Request | Response) -> str:
    return m.method if isinstance(m, Request) else f"{m.status}/{m.cseq.method}"


# Order of work due at the same instant: deliveries, then user actions, then timers.
_DELIVERY, _ACTION, _TIMER = 0, 1, 2


class SimNet:
    """Nodes, the link between them, and simulated time."""

    def __init__(
        self,
        faults: FaultPolicy | None = None,
        *,
        reliable: bool = False,
        start: float = 0.0,
    ) -> None:
        self.faults = faults or perfect()
        self.reliable = reliable
        self.now = start
        self.nodes: dict[str, Node] = {}
        self.packets: list[Packet] = []
        self.steps = 0
        self._in_flight: list[tuple[float, int, Packet]] = []
        self._actions: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # -- set-up -----------------------------------------------------------------

    def add(
        self,
        name: str,
        layer: TransactionLayer | None = None,
        *,
        on_event: Callable[[Node, Event], None] | None = None,
        on_message: Callable[[Node, Request | Response], None] | None = None,
    ) -> Node:
        node = Node(self, name, layer, on_event, on_message)
        self.nodes[name] = node
        return node

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action()`` at simulated time ``when`` (a transaction user's own timer)."""
        heapq.heappush(self._actions, (when, next(self._seq), action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    # -- the link ---------------------------------------------------------------------

    def transmit(self, src: str, out: Outgoing) -> Packet:
        dst = out.context
        if dst not in self.nodes:
            raise AssertionError(f"{src} sent {out.message!r} to unknown context {dst!r}")
        parsed = parse_message(out.data)
        # What the layer says it sent must be what its bytes say.
        if type(parsed) is not type(out.message) or _label(parsed) != _label(out.message):
            raise AssertionError(
                f"{src}: Outgoing.message {out.message!r} does not describe its data {parsed!r}"
            )
        packet = Packet(len(self.packets), self.now, src, dst, out.data, parsed)
        self.packets.append(packet)
        packet.delays = list(self.faults(packet))
        for delay in packet.delays:
            if delay < 0:
                raise ValueError("negative delay")
            heapq.heappush(self._in_flight, (self.now + delay, next(self._seq), packet))
        return packet

    def _deliver(self, packet: Packet) -> None:
        packet.delivered_at.append(self.now)
        node = self.nodes[packet.dst]
        message = parse_message(packet.data)  # a fresh copy per delivery
        message.context = packet.src
        node.inbox.append((self.now, message))
        if node.layer is not None:
            node.layer.receive(message, self.now, reliable=self.reliable)
        if node.on_message is not None:
            node.on_message(node, message)

    # -- time ----------------------------------------------------------------------------

    def _next(self) -> tuple[float, int, Any] | None:
        best: tuple[float, int, Any] | None = None
        if self._in_flight:
            best = (self._in_flight[0][0], _DELIVERY, None)
        if self._actions:
            cand = (self._actions[0][0], _ACTION, None)
            if best is None or cand[:2] < best[:2]:
                best = cand
        for node in self.nodes.values():
            if node.layer is None:
                continue
            when = node.layer.next_timer()
            if when is not None and (best is None or (when, _TIMER) < best[:2]):
                best = (when, _TIMER, node)
        return best

    def pump(self) -> None:
        """Move every layer's pending output onto the link and its events to the user."""
        for _ in range(10_000):
            busy = False
            for node in list(self.nodes.values()):
                layer = node.layer
                if layer is None:
                    continue
                for out in layer.messages_to_send():
                    busy = True
                    self.transmit(node.name, out)
                for event in layer.events():
                    busy = True
                    node.events.append((self.now, event))
                    if node.on_event is not None:
                        node.on_event(node, event)
            if not busy:
                return
        raise AssertionError("the layers keep producing output without time passing")

    def run(self, until: float, *, max_steps: int = 100_000) -> None:
        """Advance simulated time to ``until``, doing everything due on the way."""
        self.pump()
        for _ in range(max_steps):
            nxt = self._next()
            if nxt is None or nxt[0] > until:
                self.now = max(self.now, until)
                return
            when, kind, node = nxt
            if when < self.now:
                raise AssertionError(f"time went backwards: {when} < {self.now}")
            self.now = when
            self.steps += 1
            if kind == _DELIVERY:
                _, _, packet = heapq.heappop(self._in_flight)
                self._deliver(packet)
            elif kind == _ACTION:
                _, _, action = heapq.heappop(self._actions)
                action()
            else:
                node.layer.handle_timer(self.now)
            self.pump()
        raise AssertionError(f"simulation did not reach t={until} within {max_steps} steps")

    def run_for(self, duration: float, **kw: Any) -> None:
        self.run(self.now + duration, **kw)

    @property
    def idle(self) -> bool:
        """Nothing in flight, no user action and no layer timer pending."""
        return self._next() is None

    def packets_between(self, src: str, dst: str, labels: Iterable[str] | None = None):
        wanted = set(labels) if labels is not None else None
        return [
            p
            for p in self.packets
            if p.src == src and p.dst == dst and (wanted is None or p.label in wanted)
        ]
