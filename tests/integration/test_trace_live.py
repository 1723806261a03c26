"""A session's SIP trace from a running ``sipua serve``, as JSON and as a pcap tshark reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .service import Service, require_tool
from .sipclient import SipClient

pytestmark = pytest.mark.peer


def test_sip_trace_of_a_session_as_json_and_pcap(service: Service, tmp_path: Path) -> None:
    session = service.create_session()
    other = service.create_session()
    uri = f"sip:session_{session['id']}@127.0.0.1:{service.ports['udp']}"
    with SipClient("udp", ("127.0.0.1", service.ports["udp"])) as client:
        assert client.call(uri)[-1] == 200
        local = client.local
    with service.client() as api:
        trace = api.get(f"/v1/sessions/{session['id']}/sip-trace")
        assert trace.status_code == 200, trace.text
        body = trace.json()
        lines = [(m["direction"], m["first_line"].split(" sip:")[0]) for m in body["messages"]]
        assert lines == [
            ("in", "INVITE"),
            ("out", "SIP/2.0 100 Trying"),  # the media ports open asynchronously
            ("out", "SIP/2.0 180 Ringing"),
            ("out", "SIP/2.0 200 OK"),
            ("in", "ACK"),
            ("in", "BYE"),
            ("out", "SIP/2.0 200 OK"),
        ], lines
        assert {m["remote"] for m in body["messages"]} == {f"{local[0]}:{local[1]}"}
        assert len(body["call_ids"]) == 1
        assert body["messages"][0]["text"].startswith("INVITE sip:session_")
        # Another session's trace is its own (empty here); unknown sessions are 404.
        assert api.get(f"/v1/sessions/{other['id']}/sip-trace").json()["messages"] == []
        missing = api.get("/v1/sessions/sess_00000000000000000000000000/sip-trace")
        assert missing.status_code == 404
        pcap = api.get(f"/v1/sessions/{session['id']}/sip-trace.pcap")
        assert pcap.status_code == 200
        assert pcap.headers["content-type"] == "application/vnd.tcpdump.pcap"
    path = tmp_path / "trace.pcap"
    path.write_bytes(pcap.content)
    tshark = require_tool("tshark")
    fields = subprocess.run(
        [tshark, "-r", str(path), "-Y", "sip", "-T", "fields"]
        + ["-e", "ip.src", "-e", "udp.srcport", "-e", "sip.Method", "-e", "sip.Status-Code"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in fields if line.strip()]
    assert [(r[2] or r[3]) for r in rows] == ["INVITE", "100", "180", "200", "ACK", "BYE", "200"], (
        rows
    )
    # The caller's packets come from its port, sipua's from its SIP port.
    assert {int(r[1]) for r in rows if r[2]} == {local[1]}
    assert {int(r[1]) for r in rows if r[3]} == {service.ports["udp"]}
