"""The admission gate: who may reach a session, checked before any call logic.

The UA asks the gate twice: :meth:`RequestGate.admit` for every packet or
connection (cheap, by source address: allowlists, bans, rate limits), and
:meth:`RequestGate.check_request` for every new request, after its
transaction exists (digest authentication, per-source limits). A decision
either lets the request through or says what to answer (or to drop it).
The default gate admits everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sipua.sip.message import Request
from sipua.transport.peer import Peer


@dataclass(frozen=True, slots=True)
class Decision:
    """``status`` 0 lets the request through; otherwise answer it (or drop it when ``drop``)."""

    status: int = 0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())
    drop: bool = False
    identity: str | None = None  # the authenticated user or credential, when there is one

    @property
    def allowed(self) -> bool:
        return self.status == 0 and not self.drop


ALLOW = Decision()


class RequestGate(Protocol):
    def admit(self, ip: str, transport: str, now: float) -> bool:
        """False drops the packet (UDP) or closes the connection (TCP/TLS) before parsing."""
        ...

    def check_request(self, request: Request, peer: Peer, now: float) -> Decision:
        """Called for each new request (not ACK, not CANCEL) before it is routed."""
        ...


class OpenGate:
    """Admits everything: the behaviour without security configuration."""

    def admit(self, ip: str, transport: str, now: float) -> bool:
        return True

    def check_request(self, request: Request, peer: Peer, now: float) -> Decision:
        return ALLOW
