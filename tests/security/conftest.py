"""Shared pieces of the security tests: requests for the gate, and ``sipua serve`` fixtures.

Every service a test starts is stopped by the fixture that started it, and its
stderr is checked afterwards: a traceback or an ERROR line fails the test.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from integration.service import (  # noqa: F401 - re-exported for the security tests
    FAULT,
    Service,
    StartService,
    assert_clean_stderr,
    isolate_home,
    serving,
    start_service,
)
from integration.sipclient import (
    SipClient,
    SipMessage,
    build_request,
    insecure_tls_context,
    new_branch,
    sdp_offer,
)

from sipua.sip.auth import DigestClient, RetryWith
from sipua.sip.message import Request, parse_message
from sipua.transport.peer import Peer

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_home(monkeypatch, tmp_path)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartService]:
    """``serve(*flags, env={...}, data_dir=...)`` starts a service; all are stopped afterwards."""
    yield from serving(tmp_path)


# -- requests for the gate, built as text and parsed by sipua ------------------------------------

SESSION = "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"
URI = f"sip:session_{SESSION}@192.0.2.10:5060"


def request(
    method: str = "INVITE",
    uri: str = URI,
    *,
    headers: Iterable[tuple[str, str]] = (),
    to_tag: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    body: bytes | None = None,
    transport: str = "UDP",
) -> Request:
    if body is None:
        body = sdp_offer() if method == "INVITE" else b""
    to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
    data = build_request(
        method,
        uri,
        via=f"SIP/2.0/{transport} 198.51.100.7:5060;branch={new_branch()};rport",
        from_=f"<sip:pbx@198.51.100.7>;tag={secrets.token_hex(4)}",
        to=to,
        call_id=call_id or secrets.token_hex(8),
        cseq=cseq,
        contact="<sip:pbx@198.51.100.7:5060>",
        headers=headers,
        body=body,
        content_type="application/sdp" if body else None,
    )
    parsed = parse_message(data)
    assert isinstance(parsed, Request)
    return parsed


def peer(ip: str = "198.51.100.7", transport: str = "udp", port: int = 5060) -> Peer:
    return Peer(transport, (ip, port))


def answer(
    challenge: Iterable[tuple[str, str]],
    method: str = "INVITE",
    uri: str = URI,
    *,
    username: str = "trunk",
    password: str = "correct horse",
    algorithms: Iterable[str] = ("SHA-256", "MD5"),
) -> tuple[str, str]:
    """The Authorization header a client computes from a 401's challenge headers."""
    client = DigestClient(username, password, algorithms=tuple(algorithms))
    values = [v for n, v in challenge if n.lower() in ("www-authenticate", "proxy-authenticate")]
    proxy = any(n.lower() == "proxy-authenticate" for n, _ in challenge)
    decision = client.respond(values, method, uri, proxy=proxy)
    assert isinstance(decision, RetryWith), decision
    auth = decision.authorizations[0]
    return auth.header_name, auth.value


@dataclass
class FakeSession:
    id: str
    provider: Any = None
    metadata: dict = field(default_factory=dict)
    status: str = "active"
    accepting_calls: bool = True


# -- SIP clients from chosen loopback addresses (all of 127.0.0.0/8 is loopback on Linux) ------


def sip_client(
    transport: str,
    server: tuple[str, int],
    source_ip: str = "127.0.0.1",
    *,
    timeout: float = 5.0,
    ssl_context: Any = None,
) -> SipClient:
    """A :class:`SipClient` whose socket is bound to ``source_ip``: one source per test case."""
    client = SipClient.__new__(SipClient)
    client.transport = transport
    client.server = server
    client.timeout = timeout
    client._buffer = bytearray()
    client.received = []
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source_ip, 0))
    else:
        sock = socket.create_connection(server, timeout=timeout, source_address=(source_ip, 0))
        if transport == "tls":
            try:
                sock = (ssl_context or insecure_tls_context()).wrap_socket(sock)
            except BaseException:
                sock.close()
                raise
    client.sock = sock
    client.local = sock.getsockname()[:2]
    return client


def options(client: SipClient, *, user_agent: str | None = None, uri: str | None = None) -> bytes:
    call = client.new_call(uri or f"sip:{client.server[0]}:{client.server[1]}")
    headers = [("User-Agent", user_agent)] if user_agent else []
    return build_request(
        "OPTIONS",
        call.uri,
        via=call.via(new_branch()),
        from_=call.from_,
        to=f"<{call.uri}>",
        call_id=call.call_id,
        cseq=1,
        headers=headers,
    )


def no_answer(client: SipClient, wait: float = 0.4, call_id: str | None = None) -> bool:
    """True when nothing (for ``call_id``, when given) arrives within ``wait`` seconds."""
    try:
        client.recv_until(lambda m: call_id is None or m.call_id == call_id, wait)
    except TimeoutError:
        return True
    return False


def challenge_of(response: SipMessage) -> list[tuple[str, str]]:
    return [
        (n, v)
        for n, v in response.headers
        if n.lower() in ("www-authenticate", "proxy-authenticate")
    ]
