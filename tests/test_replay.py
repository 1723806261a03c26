"""``sipua replay``: the INVITE and SDP it builds from a capture, and its driver against a fake UAS.

The pure half (capture reading, INVITE/SDP rewriting) is checked on the repository's
captures and on synthetic INVITEs. The driver runs against :class:`FakeUas`, a UDP UAS in a
thread of this process that answers as a test tells it and records what it received, so
retransmission, ACK, PRACK, CANCEL and BYE paths are checked without a sipua serve (the
live tests in ``tests/integration/test_replay_live.py`` do that).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sipua.cli import app
from sipua.replay import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CapturedCall,
    Replay,
    ReplayOptions,
    ReplayUsageError,
    answer_summary,
    build_cancel,
    build_invite,
    carried_headers,
    is_rtcp,
    is_rtp,
    load_capture,
    replay_request_uri,
    rewrite_offer,
)
from sipua.sip.builders import make_response
from sipua.sip.message import Request, parse_message
from sipua.sip.sdp import parse_sdp
from sipua.sip.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
PCMU_CALL = ROOT / "tests" / "data" / "pcap" / "voipshark-sip-rtp-pcmu-call.pcap"
TCP_CALL = ROOT / "tests" / "data" / "pcap" / "heplify-sip-over-tcp-call.pcap"
SRTP_CALL = ROOT / "pcaps" / "voipshark-sip-srtp-sdes-call.pcap"

runner = CliRunner()


@pytest.fixture(scope="module")
def pcmu_call() -> CapturedCall:
    return load_capture(str(PCMU_CALL))


@pytest.fixture(scope="module")
def tcp_call() -> CapturedCall:
    return load_capture(str(TCP_CALL))


# -- the call in the capture ---------------------------------------------------------------


def test_first_invite_of_a_udp_capture(pcmu_call: CapturedCall) -> None:
    # Frame 62 is the first INVITE (it was challenged with 401; frame 74 is the retry).
    assert (pcmu_call.frame, pcmu_call.transport) == (62, "udp")
    assert (pcmu_call.caller, pcmu_call.callee) == ("192.168.20.132:56330", "192.168.20.130:5060")
    assert pcmu_call.invite.cseq.seq == 15586
    assert pcmu_call.media_source == ("192.168.20.132", 4000)
    # tshark -z conv,udp: 1345 packets from 192.168.20.132:4000, all PCMU; RTCP went from :4001
    assert len(pcmu_call.rtp) == 1345
    assert {p.data[1] & 0x7F for p in pcmu_call.rtp} == {0}
    assert all(p.src == "192.168.20.132:4000" for p in pcmu_call.rtp)
    times = [p.time for p in pcmu_call.rtp]
    assert times == sorted(times) and 26 < times[-1] - times[0] < 28
    assert pcmu_call.srtp is None
    captured = answer_summary(pcmu_call.captured_answer)
    assert captured is not None and captured.codec == "PCMU/8000"


def test_first_invite_of_a_tcp_capture(tcp_call: CapturedCall) -> None:
    assert (tcp_call.frame, tcp_call.transport) == (3, "tcp")
    assert tcp_call.caller == "10.33.6.100:64802"
    assert tcp_call.media_source == ("10.33.6.100", 6000)
    # 20 PCMA packets and 4 comfort noise (PT 13) from 10.33.6.100:6000; its RTCP (:6001) is not RTP
    assert sorted(p.data[1] & 0x7F for p in tcp_call.rtp) == [8] * 20 + [13] * 4


def test_srtp_capture_is_said_to_be_srtp() -> None:
    call = load_capture(str(SRTP_CALL))
    assert call.srtp == "SRTP (SDES)"
    assert call.audio is not None and call.audio.proto == "RTP/SAVP"
    assert len(call.rtp) > 1000
    captured = answer_summary(call.captured_answer)
    assert captured is not None and captured.crypto == "3 AES_CM_128_HMAC_SHA1_80"


def test_is_rtp_tells_rtp_from_rtcp_and_stun() -> None:
    rtp = bytes([0x80, 0x00]) + bytes(10)
    marked = bytes([0x80, 0x80 | 8]) + bytes(10)
    sender_report = bytes([0x80, 200]) + bytes(26)
    receiver_report = bytes([0x81, 201, 0, 7]) + bytes(28)
    stun = bytes([0x00, 0x01]) + bytes(18)
    assert is_rtp(rtp) and is_rtp(marked)
    assert not is_rtp(sender_report) and not is_rtp(receiver_report) and not is_rtp(stun)
    assert is_rtcp(sender_report) and is_rtcp(receiver_report) and not is_rtcp(rtp)
    assert not is_rtp(rtp[:11])  # shorter than an RTP header


# -- the INVITE we send --------------------------------------------------------------------------

OFFER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 198.51.100.7\r\n"
    "s=-\r\n"
    "c=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\n"
    "a=ice-lite\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=rtcp:49171 IN IP4 198.51.100.7\r\n"
    "a=candidate:1 1 UDP 2130706431 198.51.100.7 49170 typ host\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=sendrecv\r\n"
    "m=video 49172 RTP/AVP 96\r\n"
    "a=rtpmap:96 H264/90000\r\n"
)

CAPTURED_INVITE = (
    "INVITE sip:+15551234567@203.0.113.5:5080;user=phone;maddr=203.0.113.99 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKcaptured;rport\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinner\r\n"
    "Record-Route: <sip:proxy.example.com;lr>\r\n"
    "Route: <sip:edge.example.com;lr>\r\n"
    "Max-Forwards: 68\r\n"
    'From: "Alice Customer" <sip:alice@example.com>;tag=capturedtag\r\n'
    "To: <sip:+15551234567@example.com;user=phone>\r\n"
    "Call-ID: captured-call-id@198.51.100.7\r\n"
    "CSeq: 4711 INVITE\r\n"
    "Contact: <sip:alice@198.51.100.7:5060>\r\n"
    'Authorization: Digest username="alice", realm="x", nonce="n", uri="sip:x", response="r"\r\n'
    'Proxy-Authorization: Digest username="alice", realm="y", nonce="n", response="r"\r\n'
    "Replaces: other-call;to-tag=a;from-tag=b\r\n"
    "P-Asserted-Identity: <sip:+15550001111@example.com;user=phone>\r\n"
    "User-Agent: CustomerPhone/1.2\r\n"
    "Supported: timer, replaces\r\n"
    "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"
    "Accept: application/sdp\r\n"
    "X-Customer-Ticket: 12345\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(OFFER)}\r\n"
    "\r\n"
    f"{OFFER}"
).encode()


def synthetic_call() -> CapturedCall:
    invite = parse_message(CAPTURED_INVITE)
    assert isinstance(invite, Request)
    return CapturedCall(
        path="synthetic",
        frame=1,
        transport="udp",
        caller="198.51.100.7:5060",
        callee="203.0.113.5:5080",
        invite=invite,
        offer=parse_sdp(invite.body),
        media_source=("198.51.100.7", 49170),
        rtp=(),
        captured_answer=None,
    )


def test_invite_has_fresh_dialog_headers_and_the_callers_identity() -> None:
    call = synthetic_call()
    uri = replay_request_uri(call.invite.uri, "127.0.0.1", 5070, "udp")
    invite = build_invite(
        call, request_uri=uri, transport="udp", local=("127.0.0.1", 40000), rtp=("127.0.0.1", 40002)
    )
    sent = parse_message(invite.to_bytes())  # what the UAS gets parses and validates
    assert isinstance(sent, Request)
    sent.validate()
    assert str(sent.uri) == "sip:+15551234567@127.0.0.1:5070;user=phone"

    [via] = sent.via  # one Via: ours, none of the captured path
    assert (via.transport, via.host, via.port) == ("UDP", "127.0.0.1", 40000)
    assert via.branch.startswith("z9hG4bK") and via.branch != "z9hG4bKcaptured"
    assert via.rport is True
    assert sent.from_.uri_text == "sip:alice@example.com"
    assert sent.from_.display_name == "Alice Customer"
    assert sent.from_.tag and sent.from_.tag != "capturedtag"
    assert sent.get("to") == "<sip:+15551234567@example.com;user=phone>" and sent.to.tag is None
    assert sent.call_id != call.invite.call_id
    assert (sent.cseq.seq, sent.cseq.method) == (1, "INVITE")
    assert [c.uri_text for c in sent.contact] == ["sip:alice@127.0.0.1:40000"]
    assert sent.max_forwards == 70
    assert sent.get("content-type") == "application/sdp"
    assert sent.content_length == len(sent.body)

    for name in ("P-Asserted-Identity", "User-Agent", "Supported", "Allow", "Accept"):
        assert sent.get(name) == call.invite.get(name), name
    assert sent.get("X-Customer-Ticket") == "12345"
    for name in ("Route", "Record-Route", "Authorization", "Proxy-Authorization", "Replaces"):
        assert name not in sent, name


def test_two_invites_share_no_identifiers() -> None:
    call = synthetic_call()
    uri = parse_uri("sip:x@127.0.0.1:5060")
    one, two = (
        build_invite(
            call,
            request_uri=uri,
            transport="udp",
            local=("127.0.0.1", 1),
            rtp=("127.0.0.1", 2),
        )
        for _ in range(2)
    )
    assert one.top_via.branch != two.top_via.branch
    assert one.from_.tag != two.from_.tag
    assert one.call_id != two.call_id


def test_tcp_invite_says_tcp_in_via_and_contact() -> None:
    call = synthetic_call()
    invite = build_invite(
        call,
        request_uri=parse_uri("sip:x@127.0.0.1:5060"),
        transport="tcp",
        local=("127.0.0.1", 40000),
        rtp=("127.0.0.1", 40002),
    )
    assert invite.top_via.transport == "TCP"
    assert invite.contact[0].uri_text == "sip:alice@127.0.0.1:40000;transport=tcp"


def test_carried_headers_keep_their_order_and_spelling() -> None:
    names = [name for name, _ in carried_headers(synthetic_call().invite)]
    assert names == [
        "P-Asserted-Identity",
        "User-Agent",
        "Supported",
        "Allow",
        "Accept",
        "X-Customer-Ticket",
    ]


def test_offer_points_at_our_rtp_socket_and_keeps_the_codecs() -> None:
    offer = parse_sdp(OFFER)
    ours = rewrite_offer(offer, "127.0.0.1", 40002)
    again = parse_sdp(ours.to_bytes())  # it round-trips as SDP
    audio, video = again.media
    assert str(again.connection) == "IN IP4 127.0.0.1"
    assert (audio.port, audio.formats) == (40002, ("0", "8", "101"))
    assert str(again.effective_connection(audio)) == "IN IP4 127.0.0.1"
    assert audio.rtp_codecs() == offer.media[0].rtp_codecs()
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    assert audio.attribute("rtcp") == "40002 IN IP4 127.0.0.1"
    # ICE would check the customer's candidates: gone, at both levels
    names = {a.name for a in audio.attributes} | {a.name for a in again.attributes}
    assert not names & {"candidate", "ice-ufrag", "ice-lite"}
    assert video.port == 0 and video.formats == ("96",)  # not replayed: declined
    assert again.origin == offer.origin
    assert b"198.51.100.7" not in ours.to_bytes().replace(b"o=- 1 1 IN IP4 198.51.100.7", b"")


def test_offer_with_only_media_level_connection() -> None:
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n"
    )
    ours = rewrite_offer(offer, "::1", 40002)
    assert ours.connection is None
    assert [str(c) for c in ours.media[0].connections] == ["IN IP6 ::1"]


def test_srtp_offer_keeps_its_crypto_lines() -> None:
    call = load_capture(str(SRTP_CALL))
    ours = rewrite_offer(call.offer, "127.0.0.1", 40002)
    assert ours.media[0].proto == "RTP/SAVP"
    assert ours.media[0].crypto_lines == call.offer.media[0].crypto_lines
    assert len(ours.media[0].crypto_lines) == 4


def test_request_uri_from_the_capture_or_from_uri() -> None:
    captured = parse_uri("sip:201@10.33.6.101;user=phone;transport=tcp;maddr=10.0.0.9")
    uri = replay_request_uri(captured, "127.0.0.1", 5070, "udp")
    assert str(uri) == "sip:201@127.0.0.1:5070;user=phone;transport=udp"
    assert str(replay_request_uri(captured, "::1", 5070, "tcp")).startswith("sip:201@[::1]:5070;")
    given = replay_request_uri(captured, "127.0.0.1", 5070, "udp", "sip:session_x@127.0.0.1:5070")
    assert str(given) == "sip:session_x@127.0.0.1:5070"
    with pytest.raises(ReplayUsageError, match="--uri must be a sip"):
        replay_request_uri(captured, "127.0.0.1", 5070, "udp", "http://example.com/")
    with pytest.raises(ReplayUsageError, match="bad --uri"):
        replay_request_uri(captured, "127.0.0.1", 5070, "udp", "sip:")
    with pytest.raises(ReplayUsageError, match="give --uri"):
        replay_request_uri(parse_uri("tel:+15551234567"), "127.0.0.1", 5070, "udp")


def test_cancel_matches_the_invite() -> None:
    call = synthetic_call()
    invite = build_invite(
        call,
        request_uri=parse_uri("sip:x@127.0.0.1:5060"),
        transport="udp",
        local=("127.0.0.1", 1),
        rtp=("127.0.0.1", 2),
    )
    cancel = parse_message(build_cancel(invite).to_bytes())
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(invite.uri)
    assert cancel.top_via.branch == invite.top_via.branch  # RFC 3261 §9.1
    for name in ("from", "to", "call-id"):
        assert cancel.get(name) == invite.get(name)
    assert (cancel.cseq.seq, cancel.cseq.method) == (1, "CANCEL")


def test_answer_summary_reads_codec_address_and_crypto() -> None:
    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 30000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:D2YmkapsLg7GhQkROWl3wLJxRXuRBhnHYVjq4nsO\r\n"
    )
    summary = answer_summary(answer)
    assert summary is not None
    assert (summary.codec, summary.payload_type) == ("PCMU/8000", 0)
    assert summary.target == ("127.0.0.1", 30000)
    assert summary.crypto == "3 AES_CM_128_HMAC_SHA1_80"  # never the key
    assert replace(summary, port=0).target is None
    assert replace(summary, address="0.0.0.0").target is None


# -- usage errors ------------------------------------------------------------------------------


def replay_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["replay", *args])
    return result.exit_code, result.stdout, result.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = replay_cli(str(tmp_path / "nope.pcap"), "--to", "127.0.0.1:5060")
    assert code == EXIT_USAGE and "no such file" in err


def test_not_a_capture_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a capture\n")
    code, _, err = replay_cli(str(path), "--to", "127.0.0.1:5060")
    assert code == EXIT_USAGE and "cannot read capture" in err


def write_capture(path: Path, *payloads: bytes) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(
        str(path),
        [
            Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5060, dport=5060) / p
            for p in payloads
        ],
    )


def test_capture_without_invite_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "options.pcap"
    write_capture(
        path,
        b"OPTIONS sip:192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:192.0.2.2>\r\nCall-ID: 1\r\n"
        b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    )
    code, _, err = replay_cli(str(path), "--to", "127.0.0.1:5060")
    assert code == EXIT_USAGE and "no INVITE in the capture" in err


def test_invite_without_offer_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "late-offer.pcap"
    write_capture(
        path,
        b"INVITE sip:b@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.2>\r\nCall-ID: 1\r\n"
        b"CSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n",
    )
    code, _, err = replay_cli(str(path), "--to", "127.0.0.1:5060")
    assert code == EXIT_USAGE and "no SDP offer" in err


def test_bad_target_and_bad_uri_are_usage_errors() -> None:
    code, _, err = replay_cli(str(TCP_CALL), "--to", "127.0.0.1:notaport")
    assert code == EXIT_USAGE and "bad --to" in err
    code, _, err = replay_cli(str(TCP_CALL), "--to", "127.0.0.1:5060", "--uri", "mailto:x@y")
    assert code == EXIT_USAGE and "--uri" in err
    code, _, err = replay_cli(str(TCP_CALL), "--to", "127.0.0.1:5060", "--transport", "tls")
    assert code == EXIT_USAGE and "--transport" in err


# -- the driver against a fake UAS ---------------------------------------------------------------


class FakeUas:
    """A UDP UAS in a thread: answers INVITE as told, echoes RTP, records every request.

    ``final`` is the final status (None: ring and never answer); ``reliable`` sends the
    180 reliably (RFC 3262) and answers only after its PRACK; ``hang_up`` sends BYE a
    moment after the ACK.
    """

    def __init__(
        self, final: int | None = 200, *, reliable: bool = False, hang_up: bool = False
    ) -> None:
        self.final, self.reliable, self.hang_up = final, reliable, hang_up
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.port = self.sip.getsockname()[1]
        self.requests: list[Request] = []
        self.responses: list[int] = []
        self.echoed = 0
        self.tag = "uastag"
        self.invite: Request | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeUas:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sip.close()
        self.rtp.close()

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def _send(self, response, addr) -> None:
        self.sip.sendto(response.to_bytes(), addr)

    def _answer(self, addr) -> None:
        invite = self.invite
        assert invite is not None
        if self.final is None:
            return
        if self.final >= 300:
            self._send(make_response(invite, self.final, to_tag=self.tag), addr)
            return
        rtp_port = self.rtp.getsockname()[1]
        sdp = (
            "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        ).encode()
        ok = make_response(
            invite,
            200,
            to_tag=self.tag,
            headers=[("Contact", f"<sip:uas@127.0.0.1:{self.port}>")],
            body=sdp,
            content_type="application/sdp",
        )
        self._send(ok, addr)

    def _on_sip(self, data: bytes, addr) -> None:
        message = parse_message(data)
        if not isinstance(message, Request):
            self.responses.append(message.status)
            return
        self.requests.append(message)
        method = message.method
        if method == "INVITE":
            if self.invite is not None:
                return  # a retransmission
            self.invite = message
            self._send(make_response(message, 100), addr)
            if self.reliable:
                ringing = make_response(
                    message,
                    180,
                    to_tag=self.tag,
                    headers=[
                        ("Contact", f"<sip:uas@127.0.0.1:{self.port}>"),
                        ("Require", "100rel"),
                        ("RSeq", "1"),
                    ],
                )
                self._send(ringing, addr)
            else:
                self._send(make_response(message, 180, to_tag=self.tag), addr)
                self._answer(addr)
        elif method == "PRACK":
            self._send(make_response(message, 200), addr)
            self._answer(addr)
        elif method == "CANCEL":
            self._send(make_response(message, 200), addr)
            assert self.invite is not None
            self._send(make_response(self.invite, 487, to_tag=self.tag), addr)
        elif method == "ACK":
            if self.hang_up and self.invite is not None and self.final == 200:
                time.sleep(0.2)
                self._send_bye(message, addr)
        elif method == "BYE":
            self._send(make_response(message, 200), addr)

    def _send_bye(self, ack: Request, addr) -> None:
        contact = self.invite.contact[0].uri_text
        bye = (
            f"BYE {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKuasbye\r\n"
            f"From: {ack.get('to')}\r\nTo: {ack.get('from')}\r\n"
            f"Call-ID: {ack.call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.sip.sendto(bye.encode(), addr)

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.sip, self.rtp], [], [], 0.05)
            for sock in readable:
                data, addr = sock.recvfrom(65535)
                if sock is self.sip:
                    self._on_sip(data, addr)
                else:
                    self.rtp.sendto(data, addr)  # the echo
                    self.echoed += 1


def wait_for(condition, timeout: float = 2.0) -> None:
    """The fake UAS runs in another thread: give it a bounded moment to read its socket."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def replay_against(
    call: CapturedCall, uas: FakeUas, *, max_seconds: float = 0.5, answer_timeout: float = 5.0
):
    options = ReplayOptions(
        target=("127.0.0.1", uas.port),
        transport="udp",
        uri=f"sip:echo@127.0.0.1:{uas.port}",
        max_seconds=max_seconds,
        answer_timeout=answer_timeout,
    )
    return Replay(call, options).run()


def test_answered_call_plays_rtp_acks_and_hangs_up(tcp_call: CapturedCall) -> None:
    with FakeUas(200) as uas:
        result = replay_against(tcp_call, uas, max_seconds=0.5)
    assert result.responses == [100, 180, 200]
    assert result.answer is not None and result.answer.codec == "PCMA/8000"
    assert result.exit_code == EXIT_OK and result.error is None
    assert uas.methods() == ["INVITE", "ACK", "BYE"]
    invite, ack, bye = uas.requests
    # RFC 3261 §13.2.2.4: the ACK of a 2xx is its own transaction, to the Contact
    assert ack.top_via.branch != invite.top_via.branch
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.to.tag == "uastag" and str(ack.uri) == f"sip:uas@127.0.0.1:{uas.port}"
    assert bye.to.tag == "uastag" and bye.cseq.seq == 2 and bye.call_id == invite.call_id
    assert result.bye_status == 200 and result.hung_up_by == "us"
    # the captured caller RTP of the first 0.5 s (20 ms packets), every one echoed back
    assert 10 <= result.rtp_sent <= 30
    assert result.rtp_received == result.rtp_sent == uas.echoed
    # a session description of ours, not the customer's
    offer = parse_sdp(invite.body)
    assert offer.media[0].formats == ("8", "13", "101")
    assert str(offer.connection) == "IN IP4 127.0.0.1"


def test_rejected_call_is_acked_on_the_invites_branch(tcp_call: CapturedCall) -> None:
    with FakeUas(486) as uas:
        result = replay_against(tcp_call, uas)
        wait_for(lambda: "ACK" in uas.methods())
    assert result.responses == [100, 180, 486] and result.final_status == 486
    assert result.exit_code == EXIT_FAILED and result.rtp_sent == 0
    invite, ack = uas.requests
    # RFC 3261 §17.1.1.3: same branch, same Request-URI, the To of the response
    assert ack.method == "ACK" and ack.top_via.branch == invite.top_via.branch
    assert str(ack.uri) == str(invite.uri) and ack.to.tag == "uastag"
    assert ack.cseq.seq == invite.cseq.seq


def test_reliable_ringing_gets_a_prack(tcp_call: CapturedCall) -> None:
    with FakeUas(200, reliable=True) as uas:
        result = replay_against(tcp_call, uas, max_seconds=0.1)
    assert uas.methods() == ["INVITE", "PRACK", "ACK", "BYE"]
    prack = uas.requests[1]
    assert prack.get("rack") == "1 1 INVITE" and prack.to.tag == "uastag"
    assert result.responses == [100, 180, 200] and result.exit_code == EXIT_OK
    assert uas.requests[3].cseq.seq == prack.cseq.seq + 1  # one CSeq space for the dialog


def test_no_answer_is_cancelled_within_the_bound(tcp_call: CapturedCall) -> None:
    with FakeUas(None) as uas:
        start = time.monotonic()
        result = replay_against(tcp_call, uas, answer_timeout=1.0)
        elapsed = time.monotonic() - start
    assert elapsed < 4
    assert "CANCEL" in uas.methods() and result.final_status == 487
    assert result.responses == [100, 180, 487]
    assert result.exit_code == EXIT_FAILED


def test_remote_hang_up_is_clean(tcp_call: CapturedCall) -> None:
    with FakeUas(200, hang_up=True) as uas:
        result = replay_against(tcp_call, uas, max_seconds=3.0)
        wait_for(lambda: uas.responses)  # our 200 may still be in its socket
    assert result.hung_up_by == "remote" and result.bye_status is None
    assert uas.responses == [200]  # our 200 to its BYE
    assert "BYE" not in uas.methods()
    assert result.exit_code == EXIT_OK
    assert result.rtp_sent < 24  # the media stopped at its BYE


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_dead_target_fails_fast_with_a_clear_error(tcp_call: CapturedCall, transport: str) -> None:
    port = closed_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    options = ReplayOptions(target=("127.0.0.1", port), transport=transport)
    start = time.monotonic()
    result = Replay(tcp_call, options).run()
    assert time.monotonic() - start < 3  # ICMP / RST, not Timer B
    assert result.exit_code == EXIT_FAILED and result.responses == []
    assert result.error is not None
    assert ("unreachable" in result.error) if transport == "udp" else ("refused" in result.error)


def test_silent_target_ends_at_the_answer_timeout(tcp_call: CapturedCall) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    sink.bind(("127.0.0.1", 0))
    with sink:
        options = ReplayOptions(target=sink.getsockname(), transport="udp", answer_timeout=1.6)
        start = time.monotonic()
        result = Replay(tcp_call, options).run()
        elapsed = time.monotonic() - start
        retransmissions = 0
        while select.select([sink], [], [], 0)[0]:
            sink.recv(65535)
            retransmissions += 1
    assert 1.5 < elapsed < 3
    # Timer A: sent at 0, 0.5, 1.5 s (T1 doubling)
    assert retransmissions == 3
    assert result.exit_code == EXIT_FAILED and "no response" in (result.error or "")


@pytest.fixture
def uas() -> Iterator[FakeUas]:
    with FakeUas(200) as fake:
        yield fake


def test_cli_json_summary(uas: FakeUas) -> None:
    code, out, _ = replay_cli(
        str(TCP_CALL),
        "--to",
        f"127.0.0.1:{uas.port}",
        "--transport",
        "udp",
        "--max-seconds",
        "0.2",
        "--json",
    )
    assert code == EXIT_OK, out
    summary = json.loads(out)
    assert summary["responses"] == [100, 180, 200]
    assert summary["answer_codec"] == "PCMA/8000"
    assert summary["captured_answer_codec"] == "PCMA/8000"
    assert summary["bye_status"] == 200 and summary["exit_code"] == 0
    assert summary["rtp_sent"] > 0 and summary["rtp_received"] > 0
    assert summary["request_uri"] == f"sip:201@127.0.0.1:{uas.port};user=phone"
    assert summary["media"] == "RTP" and summary["error"] is None


def test_cli_text_summary(uas: FakeUas) -> None:
    code, out, _ = replay_cli(
        str(TCP_CALL), "--to", f"127.0.0.1:{uas.port}", "--transport", "udp", "--max-seconds", "0"
    )
    assert code == EXIT_OK, out
    lines = out.splitlines()
    assert "responses: 100 Trying, 180 Ringing, 200 OK" in lines
    assert "BYE: 200" in lines
    assert lines[-1] == "result: answered and hung up (exit 0)"
    assert any(line.startswith("answer: PCMA/8000 (PT 8) at 127.0.0.1:") for line in lines)
