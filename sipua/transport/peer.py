"""Where a SIP message came from or goes to: the transport context the core carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stream import StreamConnection

RELIABLE = frozenset({"tcp", "tls"})


class Peer:
    """A remote SIP element as one transport sees it.

    ``addr`` is the address messages go to; for a received request it is
    where its responses go (RFC 3261 §18.2.2, RFC 3581), for a stream it is
    the remote end of ``connection``. ``source`` is where the message really
    came from.
    """

    __slots__ = ("transport", "addr", "source", "connection", "local")

    def __init__(
        self,
        transport: str,
        addr: tuple[str, int],
        connection: StreamConnection | None = None,
        source: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        self.transport = transport
        self.addr = addr
        self.connection = connection
        self.source = source if source is not None else addr
        self.local = local

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def secure(self) -> bool:
        return self.transport == "tls"

    def __repr__(self) -> str:
        return f"Peer({self.transport}:{self.addr[0]}:{self.addr[1]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Peer) and (self.transport, self.addr) == (
            other.transport,
            other.addr,
        )

    def __hash__(self) -> int:
        return hash((self.transport, self.addr))
