"""Per-call SIP traces: every message sipua received or sent, kept by Call-ID for operators.

When a PBX says "your side hung up" or "we never got the 200", the operator reads the
session's trace (``GET /v1/sessions/{id}/sip-trace``, JSON or pcap for Wireshark and
sngrep) instead of asking for a capture. Memory is bounded: the newest ``max_calls``
Call-IDs, ``max_messages`` messages each, each cut to ``max_bytes`` octets, and
``max_total_bytes`` in all; the oldest call is forgotten first. Only an INVITE starts a new
Call-ID's trace (every later message with that Call-ID is kept), so OPTIONS keep-alives and
scanner floods, which never become calls, cannot push real calls out. Messages are kept as
they went on the wire (the datagram or the framed stream message), so the trace shows what
the peer saw.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sipua.transport.peer import Peer


@dataclass(frozen=True, slots=True)
class TracedMessage:
    time: float  # seconds since the epoch
    direction: str  # "in" (received) or "out" (sent)
    transport: str  # udp, tcp, tls
    remote: tuple[str, int]  # where it came from / went to
    local: tuple[str, int] | None  # our address, when the transport knows it
    call_id: str
    data: bytes

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


class SipTrace:
    """A bounded store of the messages of recent calls, keyed by Call-ID."""

    def __init__(
        self,
        max_calls: int = 10000,
        max_messages: int = 200,
        max_bytes: int = 65535,
        max_total_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_calls = max_calls
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self._total_bytes = 0
        self._clock = clock
        # Call-ID -> (time, direction, transport, remote, local, call_id, data) tuples
        self._calls: OrderedDict[str, list[tuple[Any, ...]]] = OrderedDict()
        self._sessions: OrderedDict[str, dict[str, None]] = OrderedDict()  # session -> Call-IDs
        self.dropped = 0  # messages not kept because their call had max_messages already

    def record(
        self,
        direction: str,
        call_id: str | None,
        data: bytes,
        peer: Any,
        local: tuple[str, int] | None = None,
        *,
        opens: bool = True,
    ) -> None:
        """Keep one message; ``opens`` says it may start a Call-ID's trace (an INVITE)."""
        if not call_id or self.max_calls <= 0:
            return
        calls = self._calls
        messages = calls.get(call_id)
        if messages is None:
            if not opens:
                return
            messages = calls[call_id] = []
            if len(calls) > self.max_calls:
                self._forget_oldest()
        elif len(messages) >= self.max_messages:
            self.dropped += 1
            return
        if len(data) > self.max_bytes:
            data = data[: self.max_bytes]
        self._total_bytes += len(data)
        while self._total_bytes > self.max_total_bytes and len(calls) > 1:
            self._forget_oldest()
        if type(peer) is Peer:
            remote = peer.source if direction == "in" else peer.addr
            transport = peer.transport
            if local is None:
                local = peer.local
        else:
            remote = getattr(peer, "addr", None) or ("", 0)
            if direction == "in":
                remote = getattr(peer, "source", None) or remote
            transport = getattr(peer, "transport", "udp")
            if local is None:
                local = getattr(peer, "local", None)
        # Kept as a plain tuple (cheap on the call path); read back as a TracedMessage.
        messages.append((self._clock(), direction, transport, remote, local, call_id, data))

    def record_message(self, direction: str, message: Any, data: bytes, peer: Any) -> None:
        """Keep ``message`` (parsed) as ``data`` (its wire form); only an INVITE opens a trace."""
        if self.max_calls > 0:
            opens = getattr(message, "method", None) == "INVITE"
            self.record(direction, message.first("call-id"), data, peer, opens=opens)

    def _forget_oldest(self) -> None:
        _, messages = self._calls.popitem(last=False)
        self._total_bytes -= sum(len(m[6]) for m in messages)

    @property
    def total_bytes(self) -> int:
        return self._total_bytes

    def on_call_event(self, event: Any) -> None:
        """Event bus subscriber: every call event names its session and Call-ID."""
        self.link(event.session_id, event.call_id)

    def link(self, session_id: str, call_id: str) -> None:
        if self.max_calls <= 0 or not call_id:
            return
        sessions = self._sessions
        calls = sessions.get(session_id)
        if calls is None:
            calls = sessions[session_id] = {}
            if len(sessions) > self.max_calls:
                sessions.popitem(last=False)
        if call_id not in calls and len(calls) < self.max_messages:
            calls[call_id] = None

    def session_call_ids(self, session_id: str) -> list[str]:
        return list(self._sessions.get(session_id, ()))

    def session_messages(self, session_id: str) -> list[TracedMessage]:
        return self.messages(self.session_call_ids(session_id))

    def messages(self, call_ids: Iterable[str]) -> list[TracedMessage]:
        """The messages of these calls, in the order they were seen."""
        out: list[TracedMessage] = []
        for call_id in dict.fromkeys(call_ids):
            for when, direction, transport, remote, local, cid, data in self._calls.get(
                call_id, ()
            ):
                out.append(
                    TracedMessage(
                        when,
                        direction,
                        transport,
                        (str(remote[0]), int(remote[1])),
                        local,
                        cid,
                        data,
                    )
                )
        out.sort(key=lambda m: m.time)
        return out

    def __len__(self) -> int:
        return len(self._calls)
