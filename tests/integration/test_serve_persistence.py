"""A restart of ``sipua serve`` on the same data directory keeps its sessions and certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import StartService
from .service import run_sipp
from .sipclient import SipClient

pytestmark = pytest.mark.peer


def test_sessions_survive_a_restart(serve: StartService, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve(data_dir=data_dir)
    kept = first.create_session(metadata={"case": "restart"})
    ended = first.create_session()
    with first.client() as c:
        assert c.post(f"/v1/sessions/{ended['id']}/end").status_code == 200
    cert = (data_dir / "tls" / "sipua-cert.pem").read_bytes()
    assert first.stop() == 0  # a clean exit on SIGTERM

    second = serve(data_dir=data_dir)
    with second.client() as c:
        r = c.get(f"/v1/sessions/{kept['id']}")
        assert r.status_code == 200, r.text
        again = r.json()
        assert again["status"] == "active"
        assert again["metadata"] == {"case": "restart"}
        assert again["created_at"] == kept["created_at"]
        assert again["stream"]["token"] == kept["stream"]["token"]
        assert c.get(f"/v1/sessions/{ended['id']}").json()["status"] == "ended"
    # Same certificate: peers that pinned it still connect.
    assert (data_dir / "tls" / "sipua-cert.pem").read_bytes() == cert

    result = run_sipp(
        f"127.0.0.1:{second.ports['udp']}",
        "-sn",
        "uac",
        "-s",
        f"session_{kept['id']}",
        "-m",
        "10",
        "-r",
        "50",
        "-d",
        "100",
        timeout=30,
    )
    assert (result.successful, result.failed) == (10, 0), result.output[-3000:]
    with SipClient("udp", ("127.0.0.1", second.ports["udp"])) as client:
        call = client.new_call(f"sip:session_{ended['id']}@127.0.0.1:{second.ports['udp']}")
        client.send(call.invite())
        final = client.final_response()
        client.send(call.ack(final))
        assert final.status == 404  # still ended after the restart
