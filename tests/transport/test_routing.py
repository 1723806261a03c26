"""Via stamping and response routing (``sipua/transport/routing.py``): RFC 3261 §18.2.1,
§18.2.2 and RFC 3581 §4."""

from __future__ import annotations

import pytest

from sipua.sip.message import Request, parse_message
from sipua.transport.peer import Peer
from sipua.transport.routing import reconnect_addr, response_peer, stamp_via


def request(via: str, extra_via: str | None = None) -> Request:
    lines = [
        "OPTIONS sip:ping@192.0.2.1 SIP/2.0",
        f"Via: {via}",
        *([f"Via: {extra_via}"] if extra_via else []),
        "Max-Forwards: 70",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:ping@192.0.2.1>",
        "Call-ID: routing-test",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def test_received_added_when_the_via_host_is_not_the_source() -> None:
    req = request(
        "SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bKa", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb"
    )
    via = stamp_via(req, ("203.0.113.9", 40000))
    assert via.received == "203.0.113.9"
    assert "rport" not in via.params
    assert req.top_via.received == "203.0.113.9"  # the request itself now carries it
    assert len(req.via) == 2 and req.via[1].host == "10.0.0.1"
    assert response_peer(req, Peer("udp", ("203.0.113.9", 40000))).addr == ("203.0.113.9", 5066)


def test_nothing_added_when_the_via_is_the_source() -> None:
    req = request("SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bKa")
    via = stamp_via(req, ("203.0.113.9", 40000))
    assert via.received is None
    # RFC 3261 §18.2.2: to the sent-by port, not the source port, without rport.
    assert response_peer(req, Peer("udp", ("203.0.113.9", 40000))).addr == ("203.0.113.9", 5070)


def test_rport_is_filled_and_used_for_udp() -> None:
    req = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport")
    via = stamp_via(req, ("198.51.100.4", 61000))
    assert via.params["rport"] == "61000" and via.received == "198.51.100.4"
    peer = response_peer(req, Peer("udp", ("198.51.100.4", 61000)))
    assert (peer.transport, peer.addr) == ("udp", ("198.51.100.4", 61000))
    # RFC 3581 §4: received is added even when the host matches, once rport is filled.
    same = request("SIP/2.0/UDP 198.51.100.4:5060;branch=z9hG4bKa;rport")
    assert stamp_via(same, ("198.51.100.4", 61000)).received == "198.51.100.4"


def test_maddr_wins() -> None:
    req = request("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa;maddr=239.255.255.1")
    stamp_via(req, ("198.51.100.4", 61000))
    assert response_peer(req, Peer("udp", ("198.51.100.4", 61000))).addr == ("239.255.255.1", 5062)


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/TCP client.example.com:5070;branch=z9hG4bKa", ("198.51.100.4", 5070)),
        ("SIP/2.0/TCP client.example.com;branch=z9hG4bKa;rport", ("198.51.100.4", 5060)),
        ("SIP/2.0/TLS 198.51.100.4;branch=z9hG4bKa", ("198.51.100.4", 5061)),
    ],
)
def test_stream_responses_use_the_connection_then_the_sent_by(via: str, expected: tuple) -> None:
    transport = "tls" if "/TLS" in via else "tcp"
    req = request(via)
    source = ("198.51.100.4", 49152)
    stamp_via(req, source)
    conn = object()
    peer = response_peer(req, Peer(transport, source, conn))  # type: ignore[arg-type]
    assert peer.connection is conn  # the same connection while it is open
    assert peer.source == source
    assert peer.addr == expected == reconnect_addr(req, Peer(transport, source))
