"""``sipua replay`` against a real ``sipua serve`` (echo app), run as operators run it.

The captured customer call is the plain PCMU call of ``voipshark-sip-rtp-pcmu-call.pcap``
(MicroSIP calling a FreePBX). Replayed at a session of the service, it must be answered,
its caller RTP must reach sipua and come back echoed, and the BYE must get its 200; at a
session that does not exist it must get 404 and exit 1. The SRTP capture is replayed too:
its summary must say the media is SRTP rather than claim an echo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .baresip import media_env, wait_events
from .service import Service, assert_clean_stderr, start_service

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
PCMU_CALL = ROOT / "tests" / "data" / "pcap" / "voipshark-sip-rtp-pcmu-call.pcap"
SRTP_CALL = ROOT / "pcaps" / "voipshark-sip-srtp-sdes-call.pcap"
MAX_SECONDS = 2  # of the 27 s of captured RTP: about 100 packets


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service(tmp_path_factory.mktemp("replay") / "data", env=media_env())
    try:
        yield service
    finally:
        service.stop()
    assert_clean_stderr(service)


def replay(capture: Path, target: str, *args: str) -> tuple[int, dict]:
    """Run ``sipua replay --json``; every wait in it is bounded, and so is ours."""
    proc = subprocess.run(
        [sys.executable, "-m", "sipua", "replay", str(capture), "--to", target, "--json", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pcmu_call_is_answered_echoed_and_hung_up(svc: Service, transport: str) -> None:
    session = svc.create_session(provider={"type": "sip", "transport": "udp"})
    uri = session["sip"]["uri"]
    code, summary = replay(
        PCMU_CALL,
        f"127.0.0.1:{svc.ports[transport]}",
        "--uri",
        uri,
        "--transport",
        transport,
        "--max-seconds",
        str(MAX_SECONDS),
    )
    assert code == 0, summary
    assert summary["exit_code"] == 0 and summary["error"] is None
    assert summary["request_uri"] == uri and summary["transport"] == transport
    assert summary["responses"][-1] == 200 and summary["final_status"] == 200
    # The caller offered opus/PCMA/PCMU with telephone-event at 8000 only: sipua picks
    # a narrowband codec with DTMF, which is what the captured RTP carries.
    assert summary["answer_codec"] == "PCMU/8000" and summary["answer_payload_type"] == 0
    assert summary["captured_answer_codec"] == "PCMU/8000"
    assert summary["media"] == "RTP"
    assert 80 <= summary["rtp_sent"] <= 110  # 20 ms packets of the first 2 s
    assert summary["rtp_received"] > 0  # the echo
    assert summary["bye_status"] == 200 and summary["hung_up_by"] == "us"

    [connected] = wait_events(svc, session["id"], "session.provider.connected")
    assert connected["data"]["codec"] == "PCMU"
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    quality = gone["data"]["quality"]
    # on loopback nothing is lost: sipua received what we sent, and sent back what we counted
    assert quality["packets_received"] >= 0.9 * summary["rtp_sent"], quality
    assert summary["rtp_received"] >= 0.9 * quality["packets_sent"], (summary, quality)


def test_unknown_session_gets_404_and_exit_1(svc: Service) -> None:
    port = svc.ports["udp"]
    code, summary = replay(
        PCMU_CALL, f"127.0.0.1:{port}", "--uri", f"sip:session_sess_doesnotexist@127.0.0.1:{port}"
    )
    assert code == 1, summary
    assert summary["final_status"] == 404 and summary["responses"][-1] == 404
    assert summary["answered"] is False and summary["exit_code"] == 1
    assert summary["rtp_sent"] == 0 and summary["bye_status"] is None


def test_srtp_call_says_its_media_is_srtp(svc: Service) -> None:
    session = svc.create_session(provider={"type": "sip", "transport": "udp"})
    code, summary = replay(
        SRTP_CALL,
        f"127.0.0.1:{svc.ports['udp']}",
        "--uri",
        session["sip"]["uri"],
        "--max-seconds",
        "1",
    )
    assert code == 0, summary
    assert summary["media"] == "SRTP (SDES)"
    assert any("not checked as an echo" in note for note in summary["notes"]), summary
    assert summary["answer_crypto"] is not None and "inline" not in summary["answer_crypto"]
    assert summary["rtp_sent"] > 0 and summary["bye_status"] == 200
