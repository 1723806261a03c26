"""Socket receive buffers, shared by the SIP transports and the RTP ports.

``transport/`` and ``media/`` are siblings (DESIGN.md §1: ``ua → (sip, transport,
media)``), so neither imports the other; this module sits beneath both and needs
nothing but the standard library.
"""

from __future__ import annotations

import socket

# DESIGN.md §4: large receive buffers on SIP and RTP sockets; bursts drop packets long
# before CPU runs out.
RECEIVE_BUFFER = 4 * 1024 * 1024


def enlarge_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Ask for a ``size`` receive buffer; return what the kernel granted.

    Linux caps SO_RCVBUF at net.core.rmem_max; SO_RCVBUFFORCE goes past it when
    we have CAP_NET_ADMIN. Either may be refused, which is not an error.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass
    # Linux reports twice the requested value (bookkeeping overhead included).
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if granted < size and force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            pass
    return granted
