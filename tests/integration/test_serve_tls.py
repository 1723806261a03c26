"""Acceptance of ``sipua serve`` over SIP/TLS: a Python ``ssl`` client and baresip.

The service makes a self-signed certificate under ``<data_dir>/tls`` on first
run; clients either skip verification or verify against that file.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from .conftest import StartService
from .service import Service, require_tool
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BaresipControl:
    """baresip's ctrl_tcp module: netstring-framed JSON commands, responses and events."""

    def __init__(self, port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # baresip is still starting; nothing to wait on but the port
        self.buffer = b""
        self.events: list[dict] = []

    def close(self) -> None:
        self.sock.close()

    def command(self, command: str, params: str = "", token: str = "t") -> None:
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def next(self, deadline: float) -> dict:
        while True:
            head, sep, rest = self.buffer.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                n = int(head)
                self.buffer = rest[n + 1 :]
                msg = json.loads(rest[:n])
                self.events.append(msg)
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"baresip said nothing more; so far: {self.events}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"baresip closed its control socket; events: {self.events}")
            self.buffer += chunk

    def wait_event(self, *types: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(deadline)
            if msg.get("event") and msg.get("type") in types:
                return msg


def _baresip_config(directory: Path, sip_port: int, ctrl_port: int, ca_file: Path) -> None:
    directory.mkdir()
    # Loopback only (net_interface), no sound card: a sine source and a bridge as player.
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{sip_port}",
                f"sip_cafile {ca_file}",
                "net_interface 127.0.0.1",
                "call_local_timeout 20",
                "audio_player aubridge,nil",
                "audio_source ausine,440",
                "ausrc_srate 48000",
                "ausrc_channels 2",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module ausine.so",
                "module aubridge.so",
                "module_tmp account.so",
                "module_app menu.so",
                "module_app ctrl_tcp.so",
                f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}",
                "",
            ]
        )
    )
    (directory / "accounts").write_text(
        "<sip:tester@127.0.0.1;transport=tls>;regint=0;answermode=manual\n"
    )


def test_baresip_calls_the_session_over_tls(serve: StartService, tmp_path: Path) -> None:
    baresip = require_tool("baresip")
    svc = serve()
    session = svc.create_session()
    ctrl_port = _free_port()
    config = tmp_path / "baresip"
    _baresip_config(config, _free_port(), ctrl_port, svc.data_dir / "tls" / "sipua-cert.pem")
    log_path = tmp_path / "baresip.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [baresip, "-f", str(config), "-s"],  # -s: SIP trace in the log
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ctrl = None
    try:
        ctrl = BaresipControl(ctrl_port, proc)
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
    finally:
        if ctrl is not None:
            ctrl.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    trace = log_path.read_text(errors="replace")
    # The whole call went over TLS: INVITE, ACK and BYE from baresip, 200 to each from sipua.
    for line in ("INVITE sip:session_", "ACK sip:", "BYE sip:"):
        assert line in trace, trace[-4000:]
    assert trace.count("TLS 127.0.0.1:") >= 6, trace[-4000:]
    bye_response = trace[trace.index("BYE sip:") :]
    assert "SIP/2.0 200 OK" in bye_response and "CSeq: " in bye_response, trace[-4000:]
