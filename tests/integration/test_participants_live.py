"""A session's live participants and their media statistics through the API (GET /v1/sessions/{id})."""

from __future__ import annotations

from pathlib import Path

from tests.integration.service import start_service
from tests.integration.test_webhooks_live import UdpCaller, send_rtp


def test_session_view_lists_the_sip_participant_with_its_media_statistics(tmp_path: Path) -> None:
    service = start_service(
        tmp_path / "data",
        env={"SIPUA_MEDIA__RTP_PORT_MIN": "31000", "SIPUA_MEDIA__RTP_PORT_MAX": "31999"},
    )
    try:
        sid = service.create_session()["id"]
        caller = UdpCaller(service.ports["udp"])
        try:
            call_id, _, _ = caller.call(f"session_{sid}")
            assert caller.media is not None
            send_rtp(caller.media, 25, skip=10)  # 24 packets, one lost
            with service.client() as api:
                view = api.get(f"/v1/sessions/{sid}").json()
            assert view["calls"] == 1
            (p,) = view["participants"]
            assert p["provider"] == "sip" and p["state"] == "confirmed"
            assert p["call_id"] == call_id and p["transport"] == "udp"
            assert p["codec"] == "PCMU" and p["secure"] is False
            assert p["duration_s"] is not None and p["duration_s"] >= 0.4
            assert p["stats"]["packets_received"] == 24
            assert p["stats"]["packets_lost"] == 1
            caller.hang_up(call_id)
        finally:
            caller.close()
        with service.client() as api:
            view = api.get(f"/v1/sessions/{sid}").json()
        assert view["calls"] == 0 and view["participants"] == []
    finally:
        service.stop()
