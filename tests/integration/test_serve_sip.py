"""Acceptance of ``sipua serve`` over UDP and TCP with real peers (SIPp, sipsak) and a test client.

Each test starts (or shares) a real ``python -m sipua serve`` on ephemeral
127.0.0.1 ports, creates sessions over its HTTP API and calls them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import StartService
from .service import Service, require_tool, run_sipp
from .sipclient import SipClient, UacCall, build_response

pytestmark = pytest.mark.peer

DATA = Path(__file__).resolve().parent.parent / "data" / "sipp"
CALLS = 100


def sipp_uac(
    svc: Service, user: str, transport: str = "udp", calls: int = CALLS, cwd: Path | None = None
):
    args = ["-sn", "uac", "-s", user, "-m", str(calls), "-r", "100", "-d", "100"]
    if transport == "tcp":
        args += ["-t", "t1"]
    if cwd is not None:
        args.append("-trace_err")
    return run_sipp(f"127.0.0.1:{svc.ports[transport]}", *args, timeout=60, cwd=cwd)


def error_statuses(cwd: Path) -> list[int]:
    """The status of every response SIPp's error log says aborted a call."""
    logs = list(cwd.glob("*_errors.log"))
    assert logs, f"SIPp wrote no error log in {cwd}"
    text = "".join(p.read_text(errors="replace") for p in logs)
    statuses = []
    for chunk in text.split("Aborting call on unexpected message")[1:]:
        _, _, rest = chunk.partition("received 'SIP/2.0 ")
        statuses.append(int(rest[:3]))
    return statuses


def invite_status(svc: Service, user: str, transport: str = "udp") -> tuple[int, str | None]:
    """Status and To tag of the final response to one INVITE to ``user``."""
    with SipClient(transport, ("127.0.0.1", svc.ports[transport])) as client:
        call = client.new_call(f"sip:{user}@127.0.0.1:{svc.ports[transport]}")
        client.send(call.invite())
        final = client.final_response()
        client.send(call.ack(final))
        return final.status, final.to_tag


def session_calls(svc: Service, session_id: str) -> int:
    with svc.client() as c:
        r = c.get(f"/v1/sessions/{session_id}")
        assert r.status_code == 200, r.text
        return r.json()["calls"]


# -- SIPp's built-in UAC ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uac_calls_the_session(service: Service, transport: str) -> None:
    session = service.create_session()
    assert session["sip"]["uri"].startswith(f"sip:session_{session['id']}@127.0.0.1:")
    result = sipp_uac(service, f"session_{session['id']}", transport)
    assert (result.successful, result.failed) == (CALLS, 0), result.output[-3000:]
    assert result.returncode == 0
    assert session_calls(service, session["id"]) == 0  # every call hung up


def test_sipp_uac_bare_id_form(service: Service) -> None:
    session = service.create_session()
    result = sipp_uac(service, session["id"], calls=20)
    assert (result.successful, result.failed) == (20, 0), result.output[-3000:]


def test_unknown_session_gets_404_for_every_call(service: Service, tmp_path: Path) -> None:
    result = sipp_uac(service, "session_sess_doesnotexist", calls=10, cwd=tmp_path)
    assert (result.successful, result.failed) == (0, 10), result.output[-3000:]
    assert error_statuses(tmp_path) == [404] * 10
    status, to_tag = invite_status(service, "session_sess_doesnotexist")
    assert status == 404
    assert to_tag, "RFC 3261 §8.2.6.2: a final response carries a To tag"


def test_ended_session_gets_404(service: Service, tmp_path: Path) -> None:
    session = service.create_session()
    user = f"session_{session['id']}"
    assert invite_status(service, user)[0] == 200  # reachable before it ends
    with service.client() as c:
        r = c.post(f"/v1/sessions/{session['id']}/end")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ended"
    assert invite_status(service, user)[0] == 404
    assert invite_status(service, session["id"], "tcp")[0] == 404
    result = sipp_uac(service, user, calls=5, cwd=tmp_path)
    assert (result.successful, result.failed) == (0, 5)
    assert error_statuses(tmp_path) == [404] * 5


# -- CANCEL ---------------------------------------------------------------------------------------


def test_cancel_while_ringing(serve: StartService, tmp_path: Path) -> None:
    svc = serve(env={"SIPUA_SIP__ANSWER_DELAY": "5"})
    session = svc.create_session()
    result = run_sipp(
        f"127.0.0.1:{svc.ports['udp']}",
        "-sf",
        str(DATA / "uac_cancel.xml"),
        "-s",
        f"session_{session['id']}",
        "-m",
        "10",
        "-r",
        "50",
        "-trace_err",
        timeout=30,
        cwd=tmp_path,
    )
    assert (result.successful, result.failed) == (10, 0), result.output[-3000:]
    assert session_calls(svc, session["id"]) == 0

    # The same by hand over TCP: 100, 180, then CANCEL -> 200 (CANCEL) and 487 (INVITE).
    with SipClient("tcp", ("127.0.0.1", svc.ports["tcp"])) as client:
        call = client.new_call(f"sip:session_{session['id']}@127.0.0.1:{svc.ports['tcp']}")
        client.send(call.invite())
        ringing = client.recv_until(lambda m: m.status == 180)
        client.send(call.cancel())
        cancel_ok = client.recv_until(lambda m: m.cseq[1] == "CANCEL")
        assert cancel_ok.status == 200
        assert cancel_ok.to_tag == ringing.to_tag  # RFC 3261 §9.2
        final = client.final_response()
        assert final.status == 487
        assert final.to_tag == ringing.to_tag
        client.send(call.ack(final))
        assert [m.status for m in client.received if m.cseq[1] == "INVITE"] == [100, 180, 487]
    assert session_calls(svc, session["id"]) == 0


# -- the missing ACK ----------------------------------------------------------------------------------


def test_missing_ack_retransmits_200_then_byes(serve: StartService) -> None:
    t1, t2 = 0.05, 0.4
    svc = serve(env={"SIPUA_SIP__T1": str(t1), "SIPUA_SIP__T2": str(t2)})
    session = svc.create_session()
    uri = f"sip:session_{session['id']}@127.0.0.1:{svc.ports['udp']}"
    with SipClient("udp", ("127.0.0.1", svc.ports["udp"])) as client:
        call = client.new_call(uri)
        client.send(call.invite())
        oks: list[float] = []
        tags: set[str | None] = set()
        bye = None
        deadline = time.monotonic() + 64 * t1 + 3.0
        while time.monotonic() < deadline:
            msg = client.recv(deadline - time.monotonic())
            if msg.is_request:
                bye = msg
                break
            if msg.status == 200:
                oks.append(time.monotonic())
                tags.add(msg.to_tag)
        assert bye is not None, "sipua never gave up on the ACK"
        assert bye.method == "BYE"
        assert bye.call_id == call.call_id
        assert len(tags) == 1 and bye.from_tag in tags  # the dialog of the 200
        assert bye.to_tag == call.from_tag
        # RFC 3261 §13.3.1.4: 2xx retransmitted at T1, 2T1, 4T1 … capped at T2, for 64*T1.
        elapsed = time.monotonic() - oks[0]
        assert 64 * t1 - 0.1 <= elapsed <= 64 * t1 + 1.0, elapsed
        intervals = [b - a for a, b in zip(oks, oks[1:], strict=False)]
        expected = [min(t1 * 2**i, t2) for i in range(len(intervals))]
        # 0.05 .1 .2 .4 .4 … until 3.2 s: 10 retransmissions, one or two fewer when timers
        # run late on a loaded machine (the last one is due 50 ms before 64*T1).
        assert 8 <= len(intervals) <= 10, intervals
        for got, want in zip(intervals, expected, strict=True):
            assert want - 0.03 <= got <= want + 0.2, (intervals, expected)
        client.send(build_response(bye, 200), bye.source)
        # Answered: no BYE retransmission (Timer E would resend it after T1).
        with pytest.raises(TimeoutError):
            client.recv_until(lambda m: m.is_request, timeout=8 * t1)
    assert session_calls(svc, session["id"]) == 0


# -- OPTIONS ---------------------------------------------------------------------------------------


def test_sipsak_options_ping(service: Service) -> None:
    sipsak = require_tool("sipsak")
    proc = subprocess.run(
        [sipsak, "-vv", "-s", f"sip:ping@127.0.0.1:{service.ports['udp']}"],
        capture_output=True,
        timeout=30,
    )
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "SIP/2.0 200 OK" in out, out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_capabilities(service: Service, transport: str) -> None:
    port = service.ports[transport]
    with SipClient(transport, ("127.0.0.1", port)) as client:
        call = client.new_call(f"sip:ping@127.0.0.1:{port}")
        client.send(call.in_dialog("OPTIONS", headers=[("Accept", "application/sdp")]))
        ok = client.final_response("OPTIONS")
    assert ok.status == 200
    assert {"invite", "ack", "bye", "cancel", "options"} <= ok.tokens("allow")
    assert "application/sdp" in ok.tokens("accept")
    assert "supported" in ok
    assert ok.to_tag


# -- sipua hangs up ------------------------------------------------------------------------------


def _connected(svc: Service, session_id: str, transport: str) -> tuple[SipClient, UacCall]:
    port = svc.ports[transport]
    suffix = ";transport=tls" if transport == "tls" else ""
    client = SipClient(transport, ("127.0.0.1", port))
    call = client.new_call(f"sip:session_{session_id}@127.0.0.1:{port}{suffix}")
    client.send(call.invite())
    ok = client.final_response()
    assert ok.status == 200
    client.send(call.ack(ok))
    return client, call


def test_ending_a_session_byes_its_calls(service: Service) -> None:
    session = service.create_session()
    legs = [_connected(service, session["id"], t) for t in ("udp", "tcp", "tls")]
    try:
        # An in-dialog OPTIONS per leg: its 200 proves sipua has seen the ACK before we end.
        for client, call in legs:
            client.send(call.in_dialog("OPTIONS"))
            assert client.final_response("OPTIONS").status == 200
        assert session_calls(service, session["id"]) == 3
        with service.client() as c:
            assert c.post(f"/v1/sessions/{session['id']}/end").status_code == 200
        for client, call in legs:
            bye = client.recv_until(lambda m: m.is_request)
            assert bye.method == "BYE" and bye.call_id == call.call_id, bye.start
            assert bye.to_tag == call.from_tag
            # UDP: to where the caller's Contact says; streams: on the caller's connection.
            client.send(build_response(bye, 200), bye.source if client.transport == "udp" else None)
        assert session_calls(service, session["id"]) == 0
    finally:
        for client, _ in legs:
            client.close()


def test_shutdown_byes_connected_calls(serve: StartService) -> None:
    svc = serve()
    session = svc.create_session()
    client, call = _connected(svc, session["id"], "udp")
    with client:
        client.send(call.in_dialog("OPTIONS"))
        assert client.final_response("OPTIONS").status == 200
        svc.proc.send_signal(signal.SIGTERM)
        bye = client.recv_until(lambda m: m.is_request, timeout=10)
        assert bye.method == "BYE" and bye.call_id == call.call_id
        # Lose the first BYE: sipua keeps running until its retransmission is answered.
        again = client.recv_until(lambda m: m.is_request, timeout=5)
        assert again.method == "BYE" and again.via_param("branch") == bye.via_param("branch")
        assert svc.proc.poll() is None
        client.send(build_response(again, 200), again.source)
    assert svc.proc.wait(15) == 0
    assert "unanswered at shutdown" not in svc.stderr()
