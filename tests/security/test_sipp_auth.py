"""SIPp's INVITE -> 401 -> INVITE scenario against ``sipua serve`` with authentication required.

The scenario is saghul/sipp-scenarios' ``sipp_uac_invite-401-invite.xml`` with three fixes
(see ``tests/data/sipp/README.md``). SIPp 3.6.1 computes MD5 only and reads only the first
challenge, so the service offers MD5 first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration.service import require_tool, run_sipp

DATA = Path(__file__).resolve().parent.parent / "data" / "sipp"
SCENARIO = DATA / "uac_invite_401_invite.xml"
ENV = {
    "SIPUA_SECURITY__AUTH": "required",
    "SIPUA_SECURITY__ALGORITHMS": "MD5,SHA-256",
    "SIPUA_SECURITY__USERS": json.dumps([{"username": "test", "password": "test"}]),
    "SIPUA_SECURITY__MAX_AUTH_FAILURES": "100",
}


def _sipp(service, session_id: str, csv: str, *extra: str, timeout: float = 40):
    port = service.ports["udp"]
    return run_sipp(
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIO),
        "-inf",
        str(DATA / csv),
        "-s",
        f"session_{session_id}",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-m",
        "3",
        "-r",
        "10",
        "-d",
        "200",
        *extra,
        timeout=timeout,
    )


def _state(service) -> dict:
    with service.client() as c:
        return c.get("/v1/sip-security").json()["counters"]


@pytest.mark.peer
def test_sipp_invite_401_invite_with_auth_uri(serve):
    require_tool("sipp")
    service = serve(env=ENV)
    sid = service.create_session()["id"]
    port = service.ports["udp"]
    result = _sipp(
        service, sid, "auth_test_test.csv", "-auth_uri", f"session_{sid}@127.0.0.1:{port}"
    )
    assert (result.successful, result.failed) == (3, 0), result.output[-3000:]
    counters = _state(service)
    assert counters["auth_challenges"] == 3 and counters["auth_ok"] == 3
    assert counters["in_dialog_allowed"] == 3  # the BYEs, not challenged


@pytest.mark.peer
def test_sipp_wrong_password_fails(serve):
    require_tool("sipp")
    service = serve(env=ENV)
    sid = service.create_session()["id"]
    port = service.ports["udp"]
    result = _sipp(
        service, sid, "auth_test_wrong.csv", "-auth_uri", f"session_{sid}@127.0.0.1:{port}"
    )
    assert result.successful == 0 and result.failed == 3, result.output[-3000:]
    assert _state(service)["auth_failures"] == 3


@pytest.mark.peer
def test_sipp_default_digest_uri_needs_the_host_uri_check(serve):
    """Without -auth_uri SIPp hashes uri=sip:<ip>:<port>: refused by default, taken with 'host'."""
    require_tool("sipp")
    strict = serve(env=ENV)
    sid = strict.create_session()["id"]
    # Each call is challenged again and never answered: SIPp gives up at its -timeout.
    result = _sipp(strict, sid, "auth_test_test.csv", timeout=9)
    assert result.successful == 0, result.output[-3000:]
    assert _state(strict)["auth_ok"] == 0
    lenient = serve(env={**ENV, "SIPUA_SECURITY__URI_CHECK": "host"})
    sid = lenient.create_session()["id"]
    result = _sipp(lenient, sid, "auth_test_test.csv")
    assert (result.successful, result.failed) == (3, 0), result.output[-3000:]
