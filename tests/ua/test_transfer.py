"""Blind transfer by sipua (``sipua/ua/transfer.py``): REFER, its NOTIFYs, and the outcomes.

The test's UDP socket plays the PBX that called the session: it receives the REFER,
answers it, and reports its call to the target in NOTIFYs with message/sipfrag bodies
(RFC 3515 §2.4, RFC 3420).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from integration.sipclient import AsyncUdpClient, SipMessage, UacCall, build_response

from sipua.service.api import create_app
from sipua.service.config import load_settings
from sipua.service.models import SessionCreate
from sipua.service.sessions import SessionService
from sipua.service.store import MemorySessionRepository
from sipua.sip.auth import AuthOutcome
from sipua.ua.events import (
    CallConnected,
    CallDisconnected,
    TransferAccepted,
    TransferCompleted,
    TransferFailed,
)
from sipua.ua.transfer import (
    InvalidTransferTarget,
    NotTransferable,
    ParticipantNotFound,
    TransferInProgress,
    parse_sipfrag_status,
)

from .conftest import Harness, MakeUa
from .test_uas import _Pbx

TARGET = "sip:agent-7@pbx.example.net"


class Inbox:
    """What sipua sends the PBX, kept so a message read while waiting for another is not lost."""

    def __init__(self, client: AsyncUdpClient) -> None:
        self.client = client
        self.kept: list[SipMessage] = []

    async def next(
        self, predicate: Callable[[SipMessage], bool], timeout: float = 3.0
    ) -> SipMessage:
        for msg in self.kept:
            if predicate(msg):
                self.kept.remove(msg)
                return msg
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.client.recv(max(0.0, deadline - loop.time()))
            if predicate(msg):
                return msg
            self.kept.append(msg)

    async def request(self, method: str, timeout: float = 3.0) -> SipMessage:
        return await self.next(lambda m: m.is_request and m.method == method, timeout)

    async def response(self, cseq_method: str, timeout: float = 3.0) -> SipMessage:
        return await self.next(
            lambda m: not m.is_request and m.cseq[1] == cseq_method and m.status >= 200, timeout
        )

    async def nothing(self, predicate: Callable[[SipMessage], bool], wait: float = 0.5) -> None:
        with pytest.raises(TimeoutError):
            await self.next(predicate, timeout=wait)


async def connected(h: Harness) -> tuple[UacCall, SipMessage, str, Inbox]:
    call, ok = await h.connect()
    leg = next(e.leg_id for e in h.events if isinstance(e, CallConnected))
    return call, ok, leg, Inbox(h.client)


async def refer(h: Harness, leg: str, inbox: Inbox, target: str = TARGET) -> SipMessage:
    assert h.ua.uas.transfer_participant("s1", leg, target) is True
    return await inbox.request("REFER")


def notify(
    call: UacCall,
    sipfrag: bytes | None,
    *,
    refer_cseq: int | None,
    state: str = "active;expires=60",
    content_type: str = "message/sipfrag;version=2.0",
    event: str = "refer",
) -> bytes:
    headers = [("Contact", call.contact), ("Subscription-State", state)]
    headers.insert(0, ("Event", event if refer_cseq is None else f"{event};id={refer_cseq}"))
    return call.in_dialog(
        "NOTIFY",
        headers=headers,
        body=sipfrag or b"",
        content_type=content_type if sipfrag else None,
    )


async def send_notify(h: Harness, inbox: Inbox, data: bytes) -> SipMessage:
    await h.client.send(data)
    return await inbox.response("NOTIFY")


def _uri(value: str) -> str:
    m = re.search(r"<([^>]*)>", value)
    assert m is not None, value
    return m.group(1)


# -- the REFER --------------------------------------------------------------------------------


async def test_refer_goes_in_the_dialog_with_refer_to_referred_by_and_contact(ua: Harness) -> None:
    call, ok, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox, TARGET + ";user=phone?User-to-User=4a3b")
    assert msg.request_uri == f"sip:tester@127.0.0.1:{ua.client.local[1]}"  # the remote target
    assert msg.call_id == call.call_id
    assert msg.from_tag == ok.to_tag and msg.to_tag == call.from_tag
    assert _uri(msg["refer-to"]) == TARGET + ";user=phone?User-to-User=4a3b"
    assert _uri(msg["referred-by"]) == ua.uri("session_s1")  # the session's address
    assert msg.contact_uri == ok.contact_uri  # our Contact of the dialog
    assert msg.cseq[1] == "REFER" and msg.cseq[0] >= 1
    await ua.client.send(build_response(msg, 202, "Accepted"))
    event = await ua.wait_event(TransferAccepted)
    assert (event.target, event.leg_id, event.call_id) == (
        TARGET + ";user=phone?User-to-User=4a3b",
        leg,
        call.call_id,
    )
    # Later requests of ours in the dialog count on from the REFER's CSeq (RFC 3261 §12.2.1.1).
    await ua.ua.uas.end_calls("s1")
    bye = await inbox.request("BYE")
    assert bye.cseq[0] == msg.cseq[0] + 1


# -- outcomes ---------------------------------------------------------------------------------


async def test_notify_trying_then_ok_completes_and_sipua_hangs_up(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    seq = msg.cseq[0]
    await ua.client.send(build_response(msg, 202, "Accepted"))
    await ua.wait_event(TransferAccepted)
    trying = await send_notify(ua, inbox, notify(call, b"SIP/2.0 100 Trying\r\n", refer_cseq=seq))
    assert trying.status == 200
    await inbox.nothing(lambda m: m.is_request, wait=0.3)  # no BYE on a provisional
    assert ua.ua.uas.participants("s1")[0]["transfer_target"] == TARGET
    final = notify(
        call, b"SIP/2.0 200 OK\r\n", refer_cseq=seq, state="terminated;reason=noresource"
    )
    assert (await send_notify(ua, inbox, final)).status == 200
    bye = await inbox.request("BYE")
    assert "transferred" in bye["reason"]
    assert bye.cseq[0] == seq + 1
    await ua.client.send(build_response(bye, 200))
    ended = await ua.wait_event(CallDisconnected)
    assert ended.reason == "transferred"
    kinds = [type(e) for e in ua.events]
    assert (
        kinds.index(TransferAccepted)
        < kinds.index(TransferCompleted)
        < kinds.index(CallDisconnected)
    )
    assert not any(isinstance(e, TransferFailed) for e in ua.events)
    done = next(e for e in ua.events if isinstance(e, TransferCompleted))
    assert (done.target, done.status) == (TARGET, 200)
    assert ua.ua.uas.active_calls("s1") == 0


async def test_a_notify_before_the_202_counts_as_acceptance(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    # RFC 6665 §4.1.2.4: the NOTIFY may overtake the REFER's 2xx; no id for the first REFER.
    final = notify(call, b"SIP/2.0 200 OK", refer_cseq=None, state="terminated")
    assert (await send_notify(ua, inbox, final)).status == 200
    bye = await inbox.request("BYE")
    await ua.client.send(build_response(msg, 202, "Accepted"))  # late: changes nothing
    await ua.client.send(build_response(bye, 200))
    await ua.wait_event(CallDisconnected)
    assert [type(e) for e in ua.events].count(TransferAccepted) == 1
    assert any(isinstance(e, TransferCompleted) for e in ua.events)


async def test_notify_486_fails_the_transfer_and_the_call_goes_on(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    await ua.client.send(build_response(msg, 202, "Accepted"))
    busy = notify(call, b"SIP/2.0 486 Busy Here\r\n", refer_cseq=msg.cseq[0], state="terminated")
    assert (await send_notify(ua, inbox, busy)).status == 200
    failed = await ua.wait_event(TransferFailed)
    assert (failed.status, failed.reason, failed.detail) == (486, "target-failed", "Busy Here")
    await inbox.nothing(lambda m: m.is_request)  # no BYE
    assert ua.ua.uas.active_calls("s1") == 1
    assert not any(isinstance(e, CallDisconnected | TransferCompleted) for e in ua.events)
    assert ua.ua.uas.participants("s1")[0]["transfer_target"] is None
    # The call can be transferred again: a new REFER, a new subscription id.
    again = await refer(ua, leg, inbox, "sip:agent-8@pbx.example.net")
    assert again.cseq[0] == msg.cseq[0] + 1


@pytest.mark.parametrize(("status", "reason"), [(405, "Method Not Allowed"), (603, "Decline")])
async def test_a_refused_refer_fails_the_transfer(ua: Harness, status: int, reason: str) -> None:
    _, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    await ua.client.send(build_response(msg, status, reason))
    failed = await ua.wait_event(TransferFailed)
    assert (failed.status, failed.reason, failed.detail, failed.target) == (
        status,
        "rejected",
        reason,
        TARGET,
    )
    assert not any(isinstance(e, TransferAccepted) for e in ua.events)
    await inbox.nothing(lambda m: m.is_request)
    assert ua.ua.uas.active_calls("s1") == 1


async def test_no_final_notify_in_time_fails_and_a_late_notify_is_only_acknowledged(
    make_ua: MakeUa,
) -> None:
    h = await make_ua(transfer_timeout=0.3)
    call, _, leg, inbox = await connected(h)
    msg = await refer(h, leg, inbox)
    await h.client.send(build_response(msg, 202, "Accepted"))
    failed = await h.wait_event(TransferFailed)
    assert (failed.status, failed.reason) == (408, "timeout")
    late = notify(call, b"SIP/2.0 200 OK\r\n", refer_cseq=msg.cseq[0], state="terminated")
    assert (await send_notify(h, inbox, late)).status == 200  # its subscription is known
    await inbox.nothing(lambda m: m.is_request)  # decided already: no BYE
    assert h.ua.uas.active_calls("s1") == 1


async def test_the_peer_hanging_up_during_a_transfer_fails_it_first(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    await ua.client.send(build_response(msg, 202, "Accepted"))
    await ua.wait_event(TransferAccepted)
    assert (await ua.client.request(call.bye())).status == 200
    await ua.wait_event(CallDisconnected)
    failed = next(e for e in ua.events if isinstance(e, TransferFailed))
    assert (failed.status, failed.reason) == (0, "call-ended")
    kinds = [type(e) for e in ua.events]
    assert kinds.index(TransferFailed) < kinds.index(CallDisconnected)


# -- NOTIFYs that are not ours ------------------------------------------------------------------


async def test_notify_for_no_subscription_of_ours_gets_481(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    sipfrag = b"SIP/2.0 200 OK\r\n"
    assert (await send_notify(ua, inbox, notify(call, sipfrag, refer_cseq=None))).status == 481
    msg = await refer(ua, leg, inbox)
    wrong_id = notify(call, sipfrag, refer_cseq=msg.cseq[0] + 7)
    assert (await send_notify(ua, inbox, wrong_id)).status == 481
    presence = notify(call, sipfrag, refer_cseq=None, event="presence")
    assert (await send_notify(ua, inbox, presence)).status == 481
    no_event = call.in_dialog("NOTIFY", headers=[("Subscription-State", "active")])
    assert (await send_notify(ua, inbox, no_event)).status == 400
    assert not any(isinstance(e, TransferCompleted | TransferFailed) for e in ua.events)
    await inbox.nothing(lambda m: m.is_request and m.method == "BYE", wait=0.3)


async def test_a_notify_that_is_not_sipfrag_gets_415_and_fails_the_transfer(ua: Harness) -> None:
    call, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    await ua.client.send(build_response(msg, 202, "Accepted"))
    odd = notify(call, b"<ok/>", refer_cseq=msg.cseq[0], content_type="application/xml")
    answer = await send_notify(ua, inbox, odd)
    assert answer.status == 415 and "message/sipfrag" in answer.tokens("accept")
    failed = await ua.wait_event(TransferFailed)
    assert failed.reason == "bad-notify"
    assert ua.ua.uas.active_calls("s1") == 1


# -- refusals before anything is sent ---------------------------------------------------------


async def test_a_second_transfer_while_one_is_pending_is_refused(ua: Harness) -> None:
    _, _, leg, inbox = await connected(ua)
    msg = await refer(ua, leg, inbox)
    with pytest.raises(TransferInProgress, match="already in progress"):
        ua.ua.uas.transfer_participant("s1", leg, "sip:someone-else@pbx.example.net")
    await ua.client.send(build_response(msg, 202, "Accepted"))
    await ua.wait_event(TransferAccepted)
    with pytest.raises(TransferInProgress):
        ua.ua.uas.transfer_participant("s1", leg, "sip:someone-else@pbx.example.net")
    await inbox.nothing(lambda m: m.is_request and m.method == "REFER")


async def test_refusals_unknown_leg_unconnected_call_and_bad_target(make_ua: MakeUa) -> None:
    h = await make_ua(answer_delay=30.0)
    with pytest.raises(ParticipantNotFound):
        h.ua.uas.transfer_participant("s1", "leg_0000000000000000", TARGET)
    ringing = h.client.new_call(h.uri("session_s1"))
    await h.client.send(ringing.invite())
    await h.client.recv_until(lambda m: m.status == 180)
    (call,) = h.ua.uas.all_calls()
    with pytest.raises(NotTransferable, match="not a connected call"):
        h.ua.uas.transfer(call, TARGET)
    for bad in ("tel:+15551234567", "sip:a@b c", "sip:<x>", "sip:@@"):
        with pytest.raises(InvalidTransferTarget):
            h.ua.uas.transfer(call, bad)


async def test_the_api_route_sends_the_refer_through_the_user_agent(
    ua: Harness, tmp_path: Path
) -> None:
    settings = load_settings(None, data_dir=tmp_path, public_host="sip.example.test")
    service = SessionService(MemorySessionRepository(), settings)
    sid = service.create(SessionCreate(mode="ai_agent")).id
    ua.sessions.add(sid)
    app = create_app(settings, service, ua.ua.uas, api_key="k" * 32)
    auth = {"Authorization": "Bearer " + "k" * 32}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as api:
        call, _ = await ua.connect(f"session_{sid}")
        leg = next(e.leg_id for e in ua.events if isinstance(e, CallConnected))
        path = f"/v1/sessions/{sid}/participants/{leg}/transfer"
        r = await api.post(path, json={"target": TARGET}, headers=auth)
        assert r.status_code == 202, r.text
        msg = await Inbox(ua.client).request("REFER")  # sent before the API answered
        assert msg.call_id == call.call_id and _uri(msg["refer-to"]) == TARGET
        view = (await api.get(f"/v1/sessions/{sid}", headers=auth)).json()
        assert view["participants"][0]["transfer_target"] == TARGET
        again = await api.post(path, json={"target": TARGET}, headers=auth)
        assert again.status_code == 409 and "already in progress" in again.json()["detail"]
        unknown = await api.post(
            f"/v1/sessions/{sid}/participants/leg_0000000000000000/transfer",
            json={"target": TARGET},
            headers=auth,
        )
        assert unknown.status_code == 404


# -- digest challenges to the REFER (RFC 3261 §22.2) ------------------------------------------


async def test_a_challenged_refer_is_resent_once_with_the_session_credentials(
    ua: Harness,
) -> None:
    ua.sessions.by_id["s1"].provider = SimpleNamespace(username="trunk-7", password="s3cret")
    pbx = _Pbx("s3cret")
    _, _, leg, inbox = await connected(ua)
    first = await refer(ua, leg, inbox)
    assert "authorization" not in first
    await ua.client.send(pbx.challenge(first))
    second = await inbox.request("REFER")
    assert second.cseq[0] == first.cseq[0] + 1 and second.call_id == first.call_id
    assert second["refer-to"] == first["refer-to"]
    result = pbx.verify(second)
    assert result.outcome is AuthOutcome.OK, result
    # The same challenge again: the password is wrong, and it is not tried a second time.
    await ua.client.send(pbx.challenge(second))
    failed = await ua.wait_event(TransferFailed)
    assert (failed.status, failed.reason) == (401, "rejected")
    await inbox.nothing(lambda m: m.is_request and m.method == "REFER")
    assert ua.ua.uas.active_calls("s1") == 1


async def test_an_accepted_challenged_refer_is_followed_by_its_own_subscription(
    ua: Harness,
) -> None:
    ua.sessions.by_id["s1"].provider = SimpleNamespace(username="trunk-7", password="s3cret")
    pbx = _Pbx("s3cret")
    call, _, leg, inbox = await connected(ua)
    first = await refer(ua, leg, inbox)
    await ua.client.send(pbx.challenge(first, proxy=True))
    second = await inbox.request("REFER")
    assert pbx.verify(second, proxy=True).outcome is AuthOutcome.OK
    await ua.client.send(build_response(second, 202, "Accepted"))
    await ua.wait_event(TransferAccepted)
    # RFC 3515 §2.4.6: the id is the CSeq of the REFER that was accepted.
    stale = notify(call, b"SIP/2.0 200 OK", refer_cseq=first.cseq[0])
    assert (await send_notify(ua, inbox, stale)).status == 481
    final = notify(call, b"SIP/2.0 200 OK", refer_cseq=second.cseq[0], state="terminated")
    assert (await send_notify(ua, inbox, final)).status == 200
    bye = await inbox.request("BYE")
    assert "authorization" not in bye and "proxy-authorization" not in bye
    await ua.client.send(build_response(bye, 200))
    assert (await ua.wait_event(CallDisconnected)).reason == "transferred"


# -- the sipfrag status line (RFC 3420) ----------------------------------------------------


def test_sipfrag_status_lines() -> None:
    assert parse_sipfrag_status(b"SIP/2.0 200 OK\r\n") == (200, "OK")
    assert parse_sipfrag_status(b"SIP/2.0 100 Trying") == (100, "Trying")
    assert parse_sipfrag_status(b"sip/2.0 486 Busy Here\r\nContent-Length: 0\r\n") == (
        486,
        "Busy Here",
    )
    assert parse_sipfrag_status(b"SIP/2.0 503\r\n") == (503, "")
    assert parse_sipfrag_status(b"INVITE sip:a@b SIP/2.0\r\n") is None
    assert parse_sipfrag_status(b"SIP/2.0 99 Low\r\n") is None
    assert parse_sipfrag_status(b"") is None
