"""Mutated SIP messages (hypothesis) sent over UDP and TCP to a running ``sipua serve``.

Afterwards: no traceback or ERROR line in the service's stderr, a valid OPTIONS is
answered, and the resident memory of the process grew by less than a bound.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import assert_clean_stderr, options, sip_client
from .mutations import messages

UDP_EXAMPLES = 600
TCP_EXAMPLES = 200
RSS_GROWTH_BOUND_KB = 64 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def answers_options(service, source: str = "127.0.0.99", timeout: float = 10.0) -> int:
    """Send valid OPTIONS until one gets a final answer; return its status."""
    deadline = time.monotonic() + timeout
    with sip_client("udp", ("127.0.0.1", service.ports["udp"]), source) as client:
        while time.monotonic() < deadline:
            client.send(options(client))
            try:
                return client.final_response("OPTIONS", timeout=1.0).status
            except TimeoutError:
                continue
    raise AssertionError("no answer to a valid OPTIONS")


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    from integration.service import start_service

    data = tmp_path_factory.mktemp("fuzz") / "data"
    service = start_service(
        data,
        env={
            "SIPUA_SECURITY__AUTH": "required",
            "SIPUA_SECURITY__USERS": json.dumps([{"username": "trunk", "password": "pw-123456"}]),
            "SIPUA_SECURITY__UNAUTHENTICATED_METHODS": "OPTIONS",
            "SIPUA_SECURITY__MAX_AUTH_FAILURES": "0",
            "SIPUA_SECURITY__SCAN_REQUESTS_PER_SECOND": "0",
            "SIPUA_SIP__T1": "0.05",  # transactions end within 64*T1 = 3.2 s
            "SIPUA_LOG_FORMAT": "json",
        },
    )
    try:
        yield service
    finally:
        service.stop()


def test_mutated_messages_over_udp_and_tcp(fuzz_service):
    service = fuzz_service
    pid = service.proc.pid
    udp_addr = ("127.0.0.1", service.ports["udp"])
    tcp_addr = ("127.0.0.1", service.ports["tcp"])
    assert answers_options(service) == 200
    before = rss_kb(pid)

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    sent = {"udp": 0, "tcp": 0}

    @settings(
        max_examples=UDP_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(messages)
    def over_udp(data: bytes) -> None:
        try:
            udp.sendto(data[:65507], udp_addr)
        except BlockingIOError:
            pass
        sent["udp"] += 1
        if sent["udp"] % 50 == 0:
            time.sleep(0.01)  # let the service keep up; loss is not the point here
        try:
            while udp.recv(65535):
                pass
        except (BlockingIOError, ConnectionRefusedError):
            pass

    @settings(
        max_examples=TCP_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(messages)
    def over_tcp(data: bytes) -> None:
        with socket.create_connection(tcp_addr, timeout=3) as conn:
            try:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(0.2)
                while conn.recv(65535):
                    pass
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass
        sent["tcp"] += 1

    try:
        over_udp()
        over_tcp()
    finally:
        udp.close()
    assert sent["udp"] >= UDP_EXAMPLES // 2 and sent["tcp"] >= TCP_EXAMPLES // 2

    assert service.proc.poll() is None, "sipua serve died"
    assert answers_options(service) == 200
    time.sleep(3.5)  # the fuzzed transactions end (64*T1)
    assert answers_options(service) == 200
    after = rss_kb(pid)
    print(
        f"\nlive fuzz: {sent['udp']} UDP datagrams, {sent['tcp']} TCP connections; "
        f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB"
    )
    assert after - before < RSS_GROWTH_BOUND_KB
    with service.client() as c:
        state = c.get("/v1/sip-security").json()
    assert state["counters"]["auth_challenges"] > 0  # mutated INVITEs met the gate
    assert_clean_stderr(service)
    assert '"exc"' not in service.stderr()  # no exception logged, even below ERROR
