"""``sipua serve`` with a webhook endpoint that hangs: calls are answered at once anyway, and the
events reach the endpoint, signed and in order, once it recovers. Also checks ``/metrics`` after
the calls and the JSON log lines' call context.

The SIP side is a few lines of raw UDP (INVITE, ACK, BYE) so the timing measured is sipua's.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.service import Service, start_service
from tests.service.test_webhooks import load_recipe
from tests.service.webhook_receiver import HANG, WebhookReceiver, receiving

PROMPT = 0.5  # seconds from INVITE to 200 OK on loopback, whatever the webhook does
WAIT = 20.0

SDP = (
    "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


class UdpCaller:
    """Plays a caller over UDP: INVITE, wait for 200, ACK, later BYE."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def _request(
        self,
        method: str,
        user: str,
        call_id: str,
        cseq: int,
        from_tag: str,
        to_tag: str = "",
        body: str = "",
    ) -> str:
        to = f"<sip:{user}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} sip:{user}@127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:caller@127.0.0.1>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@127.0.0.1:{self.local}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def _final(self, call_id: str, method: str, deadline: float) -> str:
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65535).decode(errors="replace")  # raises on timeout
            head = data.split("\r\n\r\n", 1)[0]
            if f"Call-ID: {call_id}" not in head or f" {method}\r\n" not in head + "\r\n":
                continue
            status = int(head.split(" ", 2)[1])
            if status >= 200:
                return data

    def call(self, user: str) -> tuple[str, float, str]:
        """Place a call; returns (Call-ID, seconds from INVITE to 200, To tag)."""
        call_id = f"{secrets.token_hex(6)}@127.0.0.1"
        from_tag = secrets.token_hex(4)
        started = time.monotonic()
        self.sock.sendto(
            self._request("INVITE", user, call_id, 1, from_tag, body=SDP).encode(), self.target
        )
        data = self._final(call_id, "INVITE", started + 5)
        latency = time.monotonic() - started
        head, _, body = data.partition("\r\n\r\n")
        port = re.search(r"^m=audio (\d+) ", body, re.M)
        host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
        self.media = (host.group(1), int(port.group(1))) if host and port else None
        assert head.startswith("SIP/2.0 200"), head
        to_line = next(
            line for line in head.split("\r\n") if line.lower().startswith(("to:", "t:"))
        )
        to_tag = to_line.split("tag=")[1].split(";")[0].strip()
        self.sock.sendto(
            self._request("ACK", user, call_id, 1, from_tag, to_tag).encode(), self.target
        )
        self._calls = getattr(self, "_calls", {})
        self._calls[call_id] = (user, from_tag, to_tag)
        return call_id, latency, to_tag

    def hang_up(self, call_id: str) -> None:
        user, from_tag, to_tag = self._calls[call_id]
        self.sock.sendto(
            self._request("BYE", user, call_id, 2, from_tag, to_tag).encode(), self.target
        )
        head = self._final(call_id, "BYE", time.monotonic() + 5)
        assert head.startswith("SIP/2.0 200"), head


def send_rtp(target: tuple[str, int], count: int, skip: int) -> None:
    """PCMU packets paced at 20 ms (the media clock), one sequence number left out (a loss)."""
    ssrc = secrets.randbits(32)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 40000 + secrets.randbelow(10000) * 2))
        for n in range(count):
            if n != skip:
                header = struct.pack("!BBHII", 0x80, 0, n + 1, 160 * n, ssrc)
                sock.sendto(header + b"\xff" * 160, target)
            time.sleep(0.02)  # pacing, not waiting: RTP is sent on a clock


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def receiver() -> WebhookReceiver:
    with receiving() as r:
        yield r


@pytest.fixture
def service(tmp_path: Path) -> Service:
    svc = start_service(
        tmp_path / "data",
        env={
            "SIPUA_WEBHOOKS__TIMEOUT": "1",
            "SIPUA_WEBHOOKS__INITIAL_BACKOFF": "0.2",
            "SIPUA_WEBHOOKS__MAX_BACKOFF": "0.5",
            "SIPUA_WEBHOOKS__MAX_ATTEMPTS": "40",
            "SIPUA_LOG_FORMAT": "json",
        },
    )
    try:
        yield svc
    finally:
        svc.stop()


def test_hanging_webhook_does_not_delay_calls_and_events_arrive_after_recovery(
    service: Service, receiver: WebhookReceiver
) -> None:
    verify = load_recipe()
    receiver.default = HANG
    session = service.create_session(webhook_url=receiver.url("/hook"))
    sid, secret = session["id"], session["webhook_secret"]
    caller = UdpCaller(service.ports["udp"])
    try:
        first, latency1, _ = caller.call(f"session_{sid}")
        assert latency1 < PROMPT
        assert caller.media is not None
        send_rtp(caller.media, 40, skip=20)
        # The endpoint now holds the first event's delivery.
        assert receiver.wait_for(lambda rs: len(rs) >= 1, WAIT)
        second, latency2, _ = caller.call(f"session_{sid}")
        assert latency2 < PROMPT
        caller.hang_up(first)
        caller.hang_up(second)
    finally:
        caller.close()

    with service.client() as api:
        logged = api.get(f"/v1/sessions/{sid}/events", params={"limit": 100}).json()["data"]
        assert len(logged) == 6
        assert logged[0]["delivery"]["status"] == "pending"  # still being retried
        assert not any(e["delivery"]["status"] == "delivered" for e in logged)

        receiver.default = 200  # the endpoint recovers
        ids = [e["id"] for e in logged]
        assert receiver.wait_for(
            lambda rs: {json.loads(r.body)["id"] for r in rs if r.answered == 200} >= set(ids),
            WAIT,
        )
        delivered = receiver.delivered("/hook")
        # In order, each once, signed with the secret the create response showed.
        assert [json.loads(r.body)["id"] for r in delivered] == ids
        for r in delivered:
            assert verify(secret, r.headers["sipua-signature"], r.body)
        kinds = [
            (json.loads(r.body)["type"], json.loads(r.body)["provider"]["sip_call_id"])
            for r in delivered
        ]
        assert kinds == [
            ("session.provider.connecting", first),
            ("session.provider.connected", first),
            ("session.provider.connecting", second),
            ("session.provider.connected", second),
            ("session.provider.disconnected", first),
            ("session.provider.disconnected", second),
        ]
        # Ending the session reports both participants. Deliveries are in order, so once
        # session.ended has arrived, the log has the earlier six settled.
        assert api.post(f"/v1/sessions/{sid}/end").status_code == 200
        assert receiver.wait_for(
            lambda rs: any(json.loads(r.body)["type"] == "session.ended" for r in rs), WAIT
        )
        logged = api.get(f"/v1/sessions/{sid}/events", params={"limit": 100}).json()["data"]
        assert [e["delivery"]["status"] for e in logged[:6]] == ["delivered"] * 6
        head = logged[0]["delivery"]
        assert head["attempts"] >= 2
        assert head["attempt_log"][0]["status_code"] is None
        assert "timeout" in head["attempt_log"][0]["error"]
        assert head["attempt_log"][-1]["status_code"] == 200

        # /metrics after the calls.
        response = api.get("/metrics")
        assert response.status_code == 200
        m = metric_values(response.text)
        assert m[("sipua_sip_requests_received_total", (("method", "INVITE"),))] == 2
        assert m[("sipua_sip_requests_received_total", (("method", "BYE"),))] == 2
        assert m[("sipua_sip_responses_sent_total", (("code", "200"),))] >= 4
        assert m[("sipua_calls_connected_total", ())] == 2
        assert m[("sipua_calls_active", ())] == 0
        assert m[("sipua_events_total", (("type", "session.provider.connecting"),))] == 2
        retries = ("sipua_webhook_attempts_total", (("outcome", "retry"), ("status_class", "none")))
        assert m[retries] >= 1
        assert m[("sipua_webhook_deliveries_total", (("status", "delivered"),))] >= 6
        assert m[("sipua_call_duration_seconds_count", (("provider", "sip"),))] == 2
        assert m[("sipua_call_mos_count", (("provider", "sip"),))] == 1  # the call with media
        assert m[("sipua_rtp_packets_received_total", (("provider", "sip"),))] >= 10
    ended = next(
        json.loads(r.body)
        for r in receiver.delivered()
        if json.loads(r.body)["type"] == "session.ended"
    )
    participants = ended["data"]["participants"]
    assert [p["provider"]["sip_call_id"] for p in participants] == [first, second]
    # The first call's real media statistics: what arrived, the gap, and an E-model MOS.
    quality = participants[0]["quality"]
    assert 10 <= quality["packets_received"] <= 39
    assert quality["packets_lost"] >= 1
    assert quality["codec"] == "PCMU"
    assert 1.0 <= quality["mos"] <= 4.5
    assert participants[1]["quality"]["packets_received"] == 0

    # JSON log lines carry the call's context.
    lines = [json.loads(line) for line in service.stderr().splitlines() if line.startswith("{")]
    connected = [e for e in lines if e.get("msg", "").startswith("call connected")]
    assert {(e["session_id"], e["call_id"]) for e in connected} == {(sid, first), (sid, second)}
    assert all(e["transport"] == "udp" and e["peer"].startswith("127.0.0.1:") for e in connected)
