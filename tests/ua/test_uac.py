"""Outbound calls (``sipua/ua/uac.py``): sipua dials fake PBXes on 127.0.0.1 over UDP.

Each PBX is a raw UDP socket that reads sipua's requests and answers them by hand, so every
step of RFC 3261 §13.2 (INVITE, provisional, 2xx, ACK), §9.1 (CANCEL) and §22.2 (digest
retry) is checked on the wire.
"""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import httpx
import pytest
from integration.sipclient import AsyncUdpClient, SipMessage, build_response, new_token, sdp_offer
from transport.test_resolver import start_stub_dns

from sipua.service.api import create_app
from sipua.service.config import load_settings
from sipua.service.models import SessionCreate
from sipua.service.sessions import SessionService
from sipua.service.store import MemorySessionRepository
from sipua.sip.auth import AuthOutcome, DigestServer, HA1Table
from sipua.ua.events import CallConnected, CallConnecting, CallDisconnected, CallFailed
from sipua.ua.uac import Endpoint, session_endpoints

from .conftest import Harness, MakeUa

ANSWER = sdp_offer(42000, codecs="0 101")


class Pbx:
    """A PBX that sipua calls: answers sipua's INVITEs as a test says."""

    def __init__(self, h: Harness) -> None:
        self.sock = AsyncUdpClient(("127.0.0.1", h.port))
        self.to_tag = new_token()

    @property
    def uri(self) -> str:
        return f"sip:+15551234567@127.0.0.1:{self.sock.local[1]}"

    @property
    def contact(self) -> str:
        return f"<sip:pbx@127.0.0.1:{self.sock.local[1]}>"

    async def request(self, method: str | None = None, timeout: float = 3.0) -> SipMessage:
        return await self.sock.recv_until(
            lambda m: m.is_request and (method is None or m.method == method), timeout
        )

    async def answer(self, invite: SipMessage, status: int, **kw) -> None:
        await self.sock.send(build_response(invite, status, to_tag=self.to_tag, **kw))

    async def accept(self, invite: SipMessage) -> None:
        await self.answer(invite, 180, reason="Ringing", headers=[("Contact", self.contact)])
        await self.answer(
            invite,
            200,
            headers=[("Contact", self.contact), ("Content-Type", "application/sdp")],
            body=ANSWER,
        )

    async def bye(self, invite: SipMessage, cseq: int = 1) -> bytes:
        """A BYE from the PBX in the dialog of ``invite`` (its From is sipua)."""
        local = self.sock.local
        lines = [
            f"BYE {invite['contact'].strip('<>')} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{local[1]};branch=z9hG4bK{new_token()};rport",
            "Max-Forwards: 70",
            f"From: {invite['to']};tag={self.to_tag}",
            f"To: {invite['from']}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {cseq} BYE",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def pbxes():
    made: list[Pbx] = []

    def make(h: Harness) -> Pbx:
        made.append(Pbx(h))
        return made[-1]

    yield make
    for pbx in made:
        pbx.close()


def outbound(h: Harness, *uris: str, timeout: float = 5.0, **creds) -> SimpleNamespace:
    provider = SimpleNamespace(
        sip_uri=uris[0],
        endpoints=[SimpleNamespace(uri=u, priority=i) for i, u in enumerate(uris[1:], 1)],
        dial_timeout_s=timeout,
        **creds,
    )
    h.sessions.by_id["s1"].provider = provider
    return h.sessions.by_id["s1"]


def test_endpoints_are_tried_sip_uri_first_then_by_priority() -> None:
    provider = SimpleNamespace(
        sip_uri="sip:a@x",
        endpoints=[
            SimpleNamespace(uri="sip:c@x", priority=5, region="us"),
            SimpleNamespace(uri="sip:b@x", priority=1, region="eu"),
            SimpleNamespace(uri="sip:d@x", priority=5, region=None),
        ],
    )
    found = session_endpoints(SimpleNamespace(provider=provider))
    assert [e.uri for e in found] == ["sip:a@x", "sip:b@x", "sip:c@x", "sip:d@x"]
    assert found[1] == Endpoint("sip:b@x", 1, "eu")
    assert session_endpoints(SimpleNamespace(provider=None)) == []


async def test_outbound_call_is_answered_acked_and_hung_up_by_the_pbx(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    session = outbound(h, pbx.uri)
    call = h.ua.uas.dialer.dial(session)
    invite = await pbx.request("INVITE")
    assert invite.request_uri == pbx.uri
    assert f"sip:session_s1@127.0.0.1:{h.port}" in invite["from"] and invite.from_tag
    assert invite.to_tag is None and invite.call_id == call.call_id
    assert invite["content-type"] == "application/sdp"
    assert b"m=audio " in invite.body and b"PCMU/8000" in invite.body  # our offer
    connecting = await h.wait_event(CallConnecting)
    assert connecting.session_id == "s1"
    await pbx.accept(invite)
    ack = await pbx.request("ACK")
    assert ack.cseq == (invite.cseq[0], "ACK") and ack.to_tag == pbx.to_tag
    assert ack.request_uri == pbx.contact.strip("<>")  # the 2xx's Contact (RFC 3261 §13.2.2.4)
    connected = await h.wait_event(CallConnected)
    assert connected.codec == "PCMU" and connected.call_id == invite.call_id
    # A retransmitted 2xx gets the ACK again (the PBX did not hear the first).
    await pbx.answer(
        invite,
        200,
        headers=[("Contact", pbx.contact), ("Content-Type", "application/sdp")],
        body=ANSWER,
    )
    again = await pbx.request("ACK")
    assert again.cseq == ack.cseq and again.top_via == ack.top_via
    # The PBX hangs up.
    ok = await pbx.sock.request(await pbx.bye(invite))
    assert ok.status == 200
    gone = await h.wait_event(CallDisconnected)
    assert gone.reason == "remote-bye"
    assert len(h.ua.uas.dialogs) == 0


async def test_we_hang_up_an_outbound_call_with_bye(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    h.ua.uas.dialer.dial(outbound(h, pbx.uri))
    invite = await pbx.request("INVITE")
    await pbx.accept(invite)
    await pbx.request("ACK")
    await h.wait_event(CallConnected)
    await h.ua.uas.end_calls("s1")
    bye = await pbx.request("BYE")
    assert bye.request_uri == pbx.contact.strip("<>") and bye.to_tag == pbx.to_tag
    assert bye.cseq[0] == invite.cseq[0] + 1
    await pbx.sock.send(build_response(bye, 200))
    assert (await h.wait_event(CallDisconnected)).reason == "session-ended"


async def test_a_challenged_invite_is_resent_once_with_credentials(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    realm = "pbx.example.net"
    server = DigestServer()
    users = HA1Table()
    users.add("trunk-7", realm, "s3cret")
    session = outbound(h, pbx.uri, username="trunk-7", password="s3cret")
    h.ua.uas.dialer.dial(session)
    first = await pbx.request("INVITE")
    assert "authorization" not in first
    challenge = [("WWW-Authenticate", v) for v in server.challenge(realm, time.time())]
    await pbx.answer(first, 401, reason="Unauthorized", headers=challenge)
    assert (await pbx.request("ACK")).cseq == (first.cseq[0], "ACK")  # the 401's own ACK
    second = await pbx.request("INVITE")
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    assert second.cseq[0] == first.cseq[0] + 1 and second.top_via != first.top_via
    verdict = server.verify(
        "INVITE", second["authorization"], users, time.time(), request_uri=second.request_uri
    )
    assert verdict.outcome is AuthOutcome.OK and verdict.algorithm == "SHA-256"
    await pbx.accept(second)
    await pbx.request("ACK")
    await h.wait_event(CallConnected)


async def test_a_wrong_password_fails_the_call_after_one_retry(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    server = DigestServer()
    h.ua.uas.dialer.dial(outbound(h, pbx.uri, username="trunk-7", password="wrong"))
    for _ in range(2):
        invite = await pbx.request("INVITE")
        challenge = [("WWW-Authenticate", v) for v in server.challenge("r", time.time())]
        await pbx.answer(invite, 401, reason="Unauthorized", headers=challenge)
    failed = await h.wait_event(CallFailed)
    assert failed.status == 401
    with pytest.raises(TimeoutError):
        await pbx.request("INVITE", timeout=0.5)  # no loop on a refused password


async def test_failover_on_503_and_on_silence_but_not_on_busy(make_ua: MakeUa, pbxes):
    h = await make_ua()
    down, silent, good = pbxes(h), pbxes(h), pbxes(h)
    session = outbound(h, down.uri, silent.uri, good.uri, timeout=1.0)
    started = time.monotonic()
    h.ua.uas.dialer.dial(session)
    await down.answer(await down.request("INVITE"), 503, reason="Service Unavailable")
    await silent.request("INVITE")  # and never answers: after 1 s the next endpoint
    invite = await good.request("INVITE", timeout=4.0)
    assert 0.9 < time.monotonic() - started < 3.0
    await good.accept(invite)
    await good.request("ACK")
    connected = await h.wait_event(CallConnected)
    assert connected.remote == f"127.0.0.1:{good.sock.local[1]}"
    # The silent endpoint had sent nothing, so it gets no CANCEL (RFC 3261 §9.1), only the
    # INVITE's retransmissions, until it answers at last: then it is cancelled.
    with pytest.raises(TimeoutError):
        await silent.request("CANCEL", timeout=1.2)
    retransmitted = await silent.request("INVITE")
    await silent.answer(retransmitted, 180, reason="Ringing", headers=[("Contact", silent.contact)])
    cancel = await silent.request("CANCEL")
    assert cancel.cseq == (retransmitted.cseq[0], "CANCEL")
    call = next(iter(h.ua.uas.calls_by_session["s1"]))
    assert [(t["status"], t["reason"]) for t in call.dialing.tried] == [
        (503, "Service Unavailable"),
        (408, "dial-timeout"),
        (200, "connected"),
    ]


async def test_busy_is_the_callees_answer_and_ends_the_attempt(make_ua: MakeUa, pbxes):
    h = await make_ua()
    busy, other = pbxes(h), pbxes(h)
    h.ua.uas.dialer.dial(outbound(h, busy.uri, other.uri))
    await busy.answer(await busy.request("INVITE"), 486, reason="Busy Here")
    failed = await h.wait_event(CallFailed)
    assert failed.status == 486
    with pytest.raises(TimeoutError):
        await other.request("INVITE", timeout=0.5)


async def test_a_ringing_endpoint_that_times_out_is_cancelled(make_ua: MakeUa, pbxes):
    h = await make_ua()
    slow, good = pbxes(h), pbxes(h)
    h.ua.uas.dialer.dial(outbound(h, slow.uri, good.uri, timeout=1.0))
    invite = await slow.request("INVITE")
    await slow.answer(invite, 180, reason="Ringing", headers=[("Contact", slow.contact)])
    cancel = await slow.request("CANCEL", timeout=3.0)
    assert cancel.cseq == (invite.cseq[0], "CANCEL") and cancel.top_via == invite.top_via
    await slow.sock.send(build_response(cancel, 200))
    await slow.answer(invite, 487, reason="Request Terminated")
    assert (await slow.request("ACK")).cseq == (invite.cseq[0], "ACK")
    await good.accept(await good.request("INVITE"))
    await h.wait_event(CallConnected)


async def test_hanging_up_while_it_rings_cancels_the_invite(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    call = h.ua.uas.dialer.dial(outbound(h, pbx.uri))
    invite = await pbx.request("INVITE")
    await pbx.answer(invite, 180, reason="Ringing", headers=[("Contact", pbx.contact)])
    await asyncio.wait_for(_until(lambda: call.dialing.attempt.provisional), 3.0)
    await h.ua.uas.end_calls("s1")
    cancel = await pbx.request("CANCEL")
    assert cancel.cseq == (invite.cseq[0], "CANCEL")
    failed = await h.wait_event(CallFailed)
    assert failed.reason == "session-ended"


async def test_hanging_up_before_any_provisional_cancels_when_one_comes(make_ua: MakeUa, pbxes):
    h = await make_ua()
    pbx = pbxes(h)
    h.ua.uas.dialer.dial(outbound(h, pbx.uri))
    invite = await pbx.request("INVITE")
    await h.ua.uas.end_calls("s1")
    assert (await h.wait_event(CallFailed)).reason == "session-ended"
    with pytest.raises(TimeoutError):  # RFC 3261 §9.1: not before a provisional response
        await pbx.request("CANCEL", timeout=0.3)
    await pbx.answer(invite, 180, reason="Ringing", headers=[("Contact", pbx.contact)])
    cancel = await pbx.request("CANCEL")
    assert cancel.cseq == (invite.cseq[0], "CANCEL")


async def _until(condition) -> None:
    """Until ``condition()`` holds; the UA's own loop makes it so (bounded by the caller)."""
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_2xx_after_we_gave_up_is_acked_and_byed(make_ua: MakeUa, pbxes):
    h = await make_ua()
    late, other = pbxes(h), pbxes(h)
    h.ua.uas.dialer.dial(outbound(h, late.uri, other.uri, timeout=1.0))
    invite = await late.request("INVITE")
    await other.request("INVITE", timeout=3.0)  # sipua moved on
    await late.accept(invite)  # then the first one answers after all
    ack = await late.request("ACK")
    bye = await late.request("BYE")
    assert ack.to_tag == bye.to_tag == late.to_tag


async def test_an_endpoint_named_by_dns_is_called_at_its_srv_target(make_ua: MakeUa, pbxes):
    stub = await start_stub_dns({})
    try:
        h = await make_ua(dns_resolver=stub.resolver())
        pbx = pbxes(h)
        stub.add("_sip._udp.pbx.test", "SRV", [f"0 0 {pbx.sock.local[1]} edge1.pbx.test."])
        stub.add("edge1.pbx.test", "A", ["127.0.0.1"])
        h.ua.uas.dialer.dial(outbound(h, "sip:+1555@pbx.test"))
        invite = await pbx.request("INVITE")
        assert invite.request_uri == "sip:+1555@pbx.test"  # DNS moves the hop, not the URI
        await pbx.accept(invite)
        await pbx.request("ACK")
        connected = await h.wait_event(CallConnected)
        assert connected.remote == f"127.0.0.1:{pbx.sock.local[1]}"
        # RFC 3263 §4.1: NAPTR first; we listen on UDP alone, so only its SRV is asked.
        assert stub.asked("NAPTR") == ["pbx.test"] and stub.asked("SRV") == ["_sip._udp.pbx.test"]
    finally:
        stub.close()


async def test_a_failing_srv_target_passes_the_call_to_the_next_one(make_ua: MakeUa, pbxes):
    stub = await start_stub_dns({})
    try:
        h = await make_ua(dns_resolver=stub.resolver())
        down, good, other = pbxes(h), pbxes(h), pbxes(h)
        stub.add(
            "_sip._udp.pbx.test",
            "SRV",
            [
                f"10 0 {down.sock.local[1]} edge1.pbx.test.",
                f"20 0 {good.sock.local[1]} edge1.pbx.test.",
            ],
        )
        stub.add("edge1.pbx.test", "A", ["127.0.0.1"])
        call = h.ua.uas.dialer.dial(outbound(h, "sip:+1555@pbx.test", other.uri))
        first = await down.request("INVITE")
        await down.answer(first, 503, reason="Service Unavailable")
        # RFC 3263 §4.3: a new transaction (new branch) to the next target of the endpoint.
        second = await good.request("INVITE")
        assert second.call_id == first.call_id and second.top_via != first.top_via
        await good.answer(second, 486, reason="Busy Here")  # the callee's answer: no more tries
        failed = await h.wait_event(CallFailed)
        assert failed.status == 486
        assert call.dialing.tried == [
            {
                "uri": "sip:+1555@pbx.test",
                "status": 486,
                "reason": "Busy Here",
                "targets": [f"udp:127.0.0.1:{p.sock.local[1]}" for p in (down, good)],
            }
        ]
        with pytest.raises(TimeoutError):
            await other.request("INVITE", timeout=0.3)
    finally:
        stub.close()


async def test_a_tcp_endpoint_that_refuses_the_connection_fails_over_at_once(
    make_ua: MakeUa, pbxes
):
    h = await make_ua(tcp=True)
    good = pbxes(h)
    with socket.socket() as s:  # a loopback TCP port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    session = outbound(h, f"sip:x@127.0.0.1:{dead};transport=tcp", good.uri, timeout=20.0)
    started = time.monotonic()
    call = h.ua.uas.dialer.dial(session)
    invite = await good.request("INVITE", timeout=5.0)
    assert time.monotonic() - started < 3.0  # not the 20 s dial timeout, nor Timer B
    assert h.ua.transports.pool.counters["connect_failures"] == 1
    await good.accept(invite)
    await h.wait_event(CallConnected)
    await asyncio.wait_for(_until(lambda: len(call.dialing.tried) == 2), 3.0)
    assert [t["reason"] for t in call.dialing.tried] == ["transport-error", "connected"]


async def test_the_dial_route_calls_the_sessions_pbx_again(make_ua: MakeUa, pbxes, tmp_path):
    h = await make_ua()
    pbx = pbxes(h)
    settings = load_settings(None, data_dir=tmp_path, public_host="sip.example.test")
    service = SessionService(MemorySessionRepository(), settings)
    outbound_session = service.create(
        SessionCreate.model_validate(
            {
                "mode": "ai_agent",
                "provider": {"type": "sip", "transport": "udp", "sip_uri": pbx.uri},
            }
        )
    )
    inbound_session = service.create(SessionCreate.model_validate({"mode": "ai_agent"}))
    h.sessions.by_id[outbound_session.id] = outbound_session
    app = create_app(settings, service, h.ua.uas, api_key="k" * 32)
    auth = {"Authorization": "Bearer " + "k" * 32}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as api:
        r = await api.post(f"/v1/sessions/{outbound_session.id}/dial", headers=auth)
        assert r.status_code == 202, r.text
        assert r.json()["endpoints"] == [pbx.uri] and r.json()["status"] == "dialing"
        invite = await pbx.request("INVITE")
        assert f"session_{outbound_session.id}@" in invite["from"]
        await pbx.accept(invite)
        await pbx.request("ACK")
        connected = await h.wait_event(CallConnected)
        assert connected.leg_id == r.json()["participant_id"]
        r = await api.post(f"/v1/sessions/{inbound_session.id}/dial", headers=auth)
        assert r.status_code == 409 and "names no sip_uri" in r.json()["detail"]
        r = await api.post("/v1/sessions/sess_00000000000000000000000000/dial", headers=auth)
        assert r.status_code == 404
        await service.end(outbound_session.id)
        r = await api.post(f"/v1/sessions/{outbound_session.id}/dial", headers=auth)
        assert r.status_code == 409 and "ended" in r.json()["detail"]
