"""Outbound sessions against real peers: ``sipua serve`` dials baresip and SIPp.

A session created with ``provider.sip_uri`` (and ``endpoints``) is called at once. baresip
(auto-answer, sine tone, ``sndfile`` recording) hears its own tone back through the echo
app; SIPp's built-in ``uas`` scenario counts the call as successful only when sipua ACKs
its 200 and later hangs up with a BYE it answers.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .baresip import (
    Baresip,
    BaresipConfig,
    free_port,
    media_env,
    session_events,
    wait_events,
)
from .conftest import assert_clean_stderr
from .service import Service, require_tool, start_service
from .test_media_baresip import ECHO_SECONDS, assert_hears_tone

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def media_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("outbound") / "data", env=media_env())
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)


def test_outbound_session_calls_baresip_which_hears_the_echo(
    media_service: Service, tmp_path: Path
) -> None:
    svc = media_service
    config = BaresipConfig(codec_modules=("g711",), tone_hz=880, record=True, answermode="auto")
    with Baresip(tmp_path / "baresip", config) as phone:
        session = svc.create_session(
            provider={
                "type": "sip",
                "transport": "udp",
                "codecs": ["PCMA"],
                "sip_uri": f"sip:tester@127.0.0.1:{phone.sip_port}",
            }
        )
        incoming = phone.control.wait_event("CALL_ESTABLISHED", "CALL_CLOSED", timeout=15)
        assert incoming["type"] == "CALL_ESTABLISHED", phone.control.events
        assert incoming.get("direction") == "incoming", incoming
        phone.wait_received_audio(ECHO_SECONDS + 0.5)
        ended = svc.client().post(f"/v1/sessions/{session['id']}/end")
        assert ended.status_code == 200
        closed = phone.control.wait_event("CALL_CLOSED", timeout=10)
        assert closed["type"] == "CALL_CLOSED"
    sent, received = phone.recordings()
    assert_hears_tone(sent, 880, ECHO_SECONDS)
    assert_hears_tone(received, 880, ECHO_SECONDS)
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    kinds = [e["type"] for e in session_events(svc, session["id"])]
    assert kinds.index("session.provider.connecting") < kinds.index("session.provider.connected")
    [connected] = [
        e for e in session_events(svc, session["id"]) if e["type"] == "session.provider.connected"
    ]
    assert connected["data"]["codec"] == "PCMA"
    assert gone["data"]["reason"] == "session-ended"
    assert gone["data"]["quality"]["packets_received"] >= ECHO_SECONDS * 50


def _dead_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, read, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_outbound_fails_over_to_sipp_uas_which_counts_a_clean_call(
    media_service: Service, tmp_path: Path
) -> None:
    svc = media_service
    sipp = require_tool("sipp")
    port = free_port()
    cmd = [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin"]
    cmd += ["-timeout", "40"]  # SIPp's own bound; ours is the wait below
    log_path = tmp_path / "sipp.out"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        dead = _dead_udp_port()
        started = time.monotonic()
        session = svc.create_session(
            provider={
                "type": "sip",
                "transport": "udp",
                "codecs": ["PCMU"],
                "sip_uri": f"sip:nobody@127.0.0.1:{dead}",  # nothing answers: 2 s, then next
                "endpoints": [
                    {"uri": f"sip:service@127.0.0.1:{port}", "priority": 1, "region": "b"}
                ],
                "dial_timeout_s": 2,
            }
        )
        [connected] = wait_events(svc, session["id"], "session.provider.connected", timeout=15)
        assert time.monotonic() - started >= 1.9  # the first endpoint had its 2 s
        assert connected["data"]["codec"] == "PCMU"
        ended = svc.client().post(f"/v1/sessions/{session['id']}/end")
        assert ended.status_code == 200
        assert proc.wait(30) == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    assert gone["data"]["reason"] == "session-ended"
    assert_clean_stderr(svc)
