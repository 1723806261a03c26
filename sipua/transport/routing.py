"""Via processing on receipt and response routing (RFC 3261 §18.2.1, §18.2.2; RFC 3581)."""

from __future__ import annotations

import ipaddress

from sipua.sip.grammar import split_commas
from sipua.sip.headers import Via
from sipua.sip.message import Request

from .peer import Peer

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def _same_host(via_host: str, ip: str) -> bool:
    host = via_host[1:-1] if via_host[:1] == "[" else via_host
    if host == ip:
        return True
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(ip)
    except ValueError:
        return False


def stamp_via(request: Request, source: tuple[str, int]) -> Via:
    """Add ``received`` and fill ``rport`` on the top Via as RFC 3261 §18.2.1 and RFC 3581 §4 say.

    The request's header fields are changed in place, so every response built
    from it carries the stamped Via. Returns the top Via as it now stands.
    """
    via = request.top_via
    ip, port = source
    add_received = not _same_host(via.host, ip)
    fill_rport = "rport" in via.params and via.params["rport"] is None
    if not add_received and not fill_rport:
        return via
    params = dict(via.params)
    if fill_rport:
        params["rport"] = str(port)
        add_received = True  # RFC 3581 §4: received is always added with rport
    if add_received:
        params["received"] = ip
    new_top = Via(via.transport, via.host, via.port, params, via.protocol)
    fields = request.fields
    for i, (key, name, value) in enumerate(fields):
        if key == "via":
            rest = split_commas(value)[1:]
            text = str(new_top) if not rest else ", ".join([str(new_top), *rest])
            fields[i] = (key, name, text)
            break
    request._index = None
    request._cache.pop("via", None)
    return new_top


def response_peer(request: Request, peer: Peer) -> Peer:
    """Where the responses to ``request`` go (RFC 3261 §18.2.2, RFC 3581 §4)."""
    if peer.reliable:
        # On the same connection; should it have closed, a new one goes to the Via's
        # received address and sent-by port (§18.2.2), never to the old source port.
        return Peer(
            peer.transport,
            reconnect_addr(request, peer),
            peer.connection,
            source=peer.source,
            local=peer.local,
        )
    via = request.top_via
    maddr = via.maddr
    if maddr:
        return Peer("udp", (maddr, via.port or 5060), source=peer.source, local=peer.local)
    rport = via.params.get("rport")
    host = via.received or peer.source[0]
    if rport and rport.isdigit():
        return Peer("udp", (host, int(rport)), source=peer.source, local=peer.local)
    return Peer(
        "udp", (host, via.port or DEFAULT_PORTS["udp"]), source=peer.source, local=peer.local
    )


def reconnect_addr(request: Request, peer: Peer) -> tuple[str, int]:
    """Where to open a new connection for a response when the request's has closed (§18.2.2).

    The received address (or the source) and the sent-by port: ``rport`` names the source
    port of the closed connection, which listens for nothing (RFC 3581 §4 applies it to
    unreliable transports only).
    """
    via = request.top_via
    host = via.received or peer.source[0]
    return host, via.port or DEFAULT_PORTS.get(peer.transport, 5060)
