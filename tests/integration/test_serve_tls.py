"""Acceptance of ``sipua serve`` over SIP/TLS: a Python ``ssl`` client and baresip.

The service makes a self-signed certificate under ``<data_dir>/tls`` on first
run; clients either skip verification or verify against that file.
"""

from __future__ import annotations

import ssl
import time
import warnings
from pathlib import Path

import pytest

from .baresip import Baresip, BaresipConfig
from .conftest import StartService
from .service import Service
from .sipclient import SipClient, insecure_tls_context

pytestmark = pytest.mark.peer

CALLS = 20
EXPECTED = [100, 180, 200, 200]  # INVITE: 100, 180, 200; then BYE: 200


def session_calls(svc: Service, session_id: str) -> int:
    with svc.client() as c:
        r = c.get(f"/v1/sessions/{session_id}")
        assert r.status_code == 200, r.text
        return r.json()["calls"]


def test_tls_client_completes_calls(service: Service) -> None:
    session = service.create_session()
    port = service.ports["tls"]
    assert session["sip"]["tls_uri"] == f"sips:session_{session['id']}@127.0.0.1:{port}"
    uri = f"sip:session_{session['id']}@127.0.0.1:{port};transport=tls"
    failed = []
    with SipClient("tls", ("127.0.0.1", port)) as client:  # many calls on one connection
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        for _ in range(CALLS):
            statuses = client.call(uri)
            if statuses != EXPECTED:
                failed.append(statuses)
    assert failed == []
    assert session_calls(service, session["id"]) == 0


def test_tls_client_verifying_the_self_signed_certificate(service: Service) -> None:
    session = service.create_session()
    port = service.ports["tls"]
    cert = service.data_dir / "tls" / "sipua-cert.pem"
    ctx = ssl.create_default_context(cafile=str(cert))  # verifies chain and host name
    uri = f"sips:session_{session['id']}@127.0.0.1:{port}"
    for _ in range(3):  # a connection per call
        with SipClient(
            "tls", ("127.0.0.1", port), ssl_context=ctx, server_hostname="127.0.0.1"
        ) as c:
            call = c.new_call(uri)
            c.send(call.invite())
            ok = c.final_response()
            assert ok.status == 200
            # A sips: Request-URI gets a SIPS Contact (RFC 3261 §12.1.1).
            assert ok.contact_uri is not None and ok.contact_uri.startswith("sips:")
            c.send(call.ack(ok))
            c.send(call.bye())
            assert c.final_response("BYE").status == 200
    # A sip: Request-URI over TLS gets sip:…;transport=tls, which every peer can route to.
    with SipClient("tls", ("127.0.0.1", port)) as c:
        call = c.new_call(f"sip:session_{session['id']}@127.0.0.1:{port};transport=tls")
        c.send(call.invite())
        ok = c.final_response()
        assert ok.contact_uri is not None
        assert ok.contact_uri.startswith("sip:") and "transport=tls" in ok.contact_uri
        c.send(call.ack(ok))
        c.send(call.bye())
        assert c.final_response("BYE").status == 200


def _legacy_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers only ``version``, even one OpenSSL's defaults forbid."""
    ctx = insecure_tls_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def test_tls_minimum_version_is_1_2(service: Service) -> None:
    port = service.ports["tls"]
    with pytest.raises(ssl.SSLError):
        SipClient("tls", ("127.0.0.1", port), ssl_context=_legacy_client(ssl.TLSVersion.TLSv1_1))
    with SipClient(
        "tls", ("127.0.0.1", port), ssl_context=_legacy_client(ssl.TLSVersion.TLSv1_2)
    ) as client:
        assert client.sock.version() == "TLSv1.2"
        call = client.new_call(f"sip:ping@127.0.0.1:{port}")
        client.send(call.in_dialog("OPTIONS"))
        assert client.final_response("OPTIONS").status == 200


def test_tls_minimum_version_setting(serve: StartService) -> None:
    svc = serve(env={"SIPUA_SIP__TLS_MIN_VERSION": "1.3"})
    port = svc.ports["tls"]
    with pytest.raises(ssl.SSLError):
        SipClient("tls", ("127.0.0.1", port), ssl_context=_legacy_client(ssl.TLSVersion.TLSv1_2))
    with SipClient("tls", ("127.0.0.1", port)) as client:
        assert client.sock.version() == "TLSv1.3"


# -- baresip ----------------------------------------------------------------------------------------


def test_baresip_calls_the_session_over_tls(serve: StartService, tmp_path: Path) -> None:
    svc = serve()
    session = svc.create_session()
    config = BaresipConfig(transport="tls", ca_file=svc.data_dir / "tls" / "sipua-cert.pem")
    with Baresip(tmp_path / "baresip", config) as phone:
        ctrl = phone.control
        uri = f"sip:session_{session['id']}@127.0.0.1:{svc.ports['tls']}"
        ctrl.command("dial", uri, token="dial")
        event = ctrl.wait_event("CALL_ESTABLISHED", "CALL_CLOSED")
        assert event["type"] == "CALL_ESTABLISHED", ctrl.events
        assert ";transport=tls" in event["peeruri"]
        assert session_calls(svc, session["id"]) == 1  # sipua has the call up
        ctrl.command("hangup", token="hangup")
        closed = ctrl.wait_event("CALL_CLOSED")
        assert closed["id"] == event["id"]
        deadline = time.monotonic() + 10
        while session_calls(svc, session["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # the BYE is on its way; the API has no event to wait on
        assert session_calls(svc, session["id"]) == 0
        # sipua's own account of the call (its event log lines name the session).
        mine = [line for line in svc.stderr().splitlines() if session["id"] in line]
        assert any("connected" in line and "transport=tls" in line for line in mine), mine
        assert any("disconnected" in line and "remote-bye" in line for line in mine), mine
    trace = phone.log()
    # The whole call went over TLS: INVITE, ACK and BYE from baresip, 200 to each from sipua.
    for line in ("INVITE sip:session_", "ACK sip:", "BYE sip:"):
        assert line in trace, trace[-4000:]
    assert trace.count("TLS 127.0.0.1:") >= 6, trace[-4000:]
    bye_response = trace[trace.index("BYE sip:") :]
    assert "SIP/2.0 200 OK" in bye_response and "CSeq: " in bye_response, trace[-4000:]
