"""SIPp's ``uac_pcap`` scenario against ``sipua serve`` with the echo app.

SIPp plays a recorded PCMA stream (``pcap/g711a.pcap``), then an RFC 2833 DTMF "1"
(``pcap/dtmf_2833_1.pcap``, another SSRC and sequence, its end packet sent three times with one
sequence number), then hangs up. The figures the test expects are read from the pcaps
themselves; sipua's account is the session's event log.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .baresip import media_env, session_events, wait_events
from .conftest import assert_clean_stderr
from .service import Service, run_sipp, start_service

pytestmark = pytest.mark.peer

DATA = Path(__file__).resolve().parents[1] / "data" / "media_it"
SCENARIO = DATA / "uac_pcap.xml"
CALLS = 2  # at once
DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2 event codes 0-15


@dataclass
class RtpCapture:
    packets: int
    sequence_numbers: set[tuple[int, int]]  # (SSRC, sequence number)
    payload_types: set[int]
    events: list[int]  # telephone-event codes, in order, once per event


def read_rtp_pcap(path: Path) -> RtpCapture:
    """The RTP packets of a classic little-endian Ethernet/IPv4/UDP pcap (as SIPp's are)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and linktype == 1, (path, hex(magic), linktype)
    offset, packets, seqs, pts, events = 24, 0, set(), set(), []
    while offset + 16 <= len(data):
        incl_len = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl_len]
        offset += 16 + incl_len
        assert frame[12:14] == b"\x08\x00", "not IPv4"
        ip = frame[14:]
        assert ip[9] == 17, "not UDP"
        rtp = ip[(ip[0] & 0x0F) * 4 + 8 :]
        assert rtp[0] >> 6 == 2, "not RTP version 2"
        pt = rtp[1] & 0x7F
        seq, _, ssrc = struct.unpack_from("!HII", rtp, 2)
        packets += 1
        seqs.add((ssrc, seq))
        pts.add(pt)
        if pt >= 96:  # dynamic: the scenario maps 101 to telephone-event
            payload = rtp[12 + 4 * (rtp[0] & 0x0F) :]
            if not events or events[-1] != payload[0]:
                events.append(payload[0])
    return RtpCapture(packets, seqs, pts, events)


def played_pcaps(scenario: Path) -> list[Path]:
    return [DATA / p for p in re.findall(r'play_pcap_audio="([^"]+)"', scenario.read_text())]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Service]:
    svc = start_service(tmp_path / "data", env=media_env())
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)


def test_sipp_uac_pcap_is_echoed_and_its_dtmf_reported(media: Service) -> None:
    audio, dtmf = (read_rtp_pcap(p) for p in played_pcaps(SCENARIO))
    assert audio.payload_types == {8} and audio.packets == 236  # PCMA, as SIPp ships it
    assert dtmf.events and len(dtmf.sequence_numbers) < dtmf.packets  # repeated end packets
    digits = "".join(DTMF_EVENTS[e] for e in dtmf.events)

    session = media.create_session(provider={"type": "sip", "transport": "udp"})
    result = run_sipp(
        f"127.0.0.1:{media.ports['udp']}",
        "-sf",
        str(SCENARIO),
        "-s",
        f"session_{session['id']}",
        "-m",
        str(CALLS),
        "-l",
        str(CALLS),
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-mp",
        str(free_udp_port()),
        timeout=60,
        cwd=DATA,  # the scenario names its pcaps relative to the working directory
    )
    assert (result.returncode, result.successful, result.failed) == (0, CALLS, 0), result.output

    gone = wait_events(media, session["id"], "session.provider.disconnected", count=CALLS)
    events = session_events(media, session["id"])
    connected = [e for e in events if e["type"] == "session.provider.connected"]
    assert [e["data"]["codec"] for e in connected] == ["PCMA"] * CALLS
    legs = {e["data"]["participant_id"] for e in connected}
    assert len(legs) == CALLS
    for leg in legs:
        presses = [
            e["data"]
            for e in events
            if e["type"] == "session.dtmf" and e["data"]["participant_id"] == leg
        ]
        assert "".join(p["digit"] for p in presses) == digits, presses
        assert {p["source"] for p in presses} == {"rfc4733"}
    for event in gone:
        quality = event["data"]["quality"]
        assert event["data"]["reason"] == "remote-bye"
        # Everything SIPp played arrived (loopback); the audio was relayed back, the
        # telephone-events were not (they are reported, not echoed).
        assert quality["packets_received"] == audio.packets + dtmf.packets, quality
        assert quality["packets_sent"] == audio.packets, quality
        # Per source: both streams' sequence numbers, duplicates not counted as negative loss.
        expected = len(audio.sequence_numbers) + len(dtmf.sequence_numbers)
        assert quality["packets_expected"] == expected, quality
        assert quality["packets_lost"] == 0 and quality["loss_percent"] == 0, quality
        assert quality["jitter_ms"] > 0  # the audio source's, not the DTMF source's (none)
        assert 4.0 < quality["mos"] <= 4.5
