"""``POST /v1/sessions/{id}/participants/{pid}/transfer``: what the API answers, and when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sipua.service.api import create_app
from sipua.service.config import Settings
from sipua.service.sessions import SessionService
from sipua.ua.transfer import (
    InvalidTransferTarget,
    NotTransferable,
    ParticipantNotFound,
    TransferInProgress,
)

from .test_api import AUTH, KEY, FakeCalls, client_for, create

TARGET = "sip:agent-7@pbx.example.net"


class TransferCalls(FakeCalls):
    """The SIP side with transfers: each participant id answers as configured."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, Exception | bool] = {}
        self.requested: list[tuple[str, str, str]] = []

    def participants(self, session_id: str) -> list[dict[str, Any]]:
        return []

    def transfer_participant(self, session_id: str, participant_id: str, target: str) -> bool:
        outcome = self.outcomes.get(participant_id)
        if outcome is None:
            raise ParticipantNotFound(participant_id)
        if isinstance(outcome, Exception):
            raise outcome
        self.requested.append((session_id, participant_id, target))
        return outcome


@pytest.fixture
def calls() -> TransferCalls:
    return TransferCalls()


@pytest.fixture
async def client(
    settings: Settings, service: SessionService, calls: TransferCalls
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, service, calls, api_key=KEY)
    stream = {"participant_id": "tw_1", "provider": "twilio", "state": "connected"}
    app.state.streams = SimpleNamespace(participants=lambda session_id: [stream])
    async with client_for(app) as c:
        yield c


def url(session_id: str, participant_id: str) -> str:
    return f"/v1/sessions/{session_id}/participants/{participant_id}/transfer"


async def test_202_when_the_refer_was_sent(client: httpx.AsyncClient, calls: TransferCalls) -> None:
    sid = (await create(client))["id"]
    calls.outcomes["leg_1"] = True
    r = await client.post(url(sid, "leg_1"), json={"target": TARGET}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "session_id": sid,
        "participant_id": "leg_1",
        "target": TARGET,
        "status": "requested",
    }
    assert calls.requested == [(sid, "leg_1", TARGET)]


async def test_404_for_an_unknown_session_or_participant(
    client: httpx.AsyncClient, calls: TransferCalls
) -> None:
    r = await client.post(
        url("sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY", "leg_1"), json={"target": TARGET}, headers=AUTH
    )
    assert r.status_code == 404 and r.json()["detail"] == "session not found"
    sid = (await create(client))["id"]
    r = await client.post(url(sid, "leg_nobody"), json={"target": TARGET}, headers=AUTH)
    assert r.status_code == 404 and r.json()["detail"] == "participant not found"
    assert calls.requested == []


async def test_409_when_not_a_connected_sip_call_or_already_transferring(
    client: httpx.AsyncClient, calls: TransferCalls
) -> None:
    sid = (await create(client))["id"]
    calls.outcomes["leg_ringing"] = NotTransferable("participant leg_ringing is not connected")
    calls.outcomes["leg_busy"] = TransferInProgress("a transfer to sip:x@y is already in progress")
    for pid, detail in (
        ("tw_1", "only SIP participants can be transferred"),  # a Twilio media stream
        ("leg_ringing", "participant leg_ringing is not connected"),
        ("leg_busy", "a transfer to sip:x@y is already in progress"),
    ):
        r = await client.post(url(sid, pid), json={"target": TARGET}, headers=AUTH)
        assert r.status_code == 409, (pid, r.text)
        assert r.json()["detail"] == detail


@pytest.mark.parametrize(
    "body",
    [
        {"target": "tel:+15551234567"},
        {"target": "https://pbx.example.net/"},
        {"target": "sip:agent 7@pbx.example.net"},
        {"target": "sip:<agent@pbx.example.net>"},
        {"target": "sip:@@"},
        {"target": "sip:agent@pbx.example.net:99999"},
        {"target": "sip:" + "a" * 1100},
        {"target": TARGET, "extra": 1},
        {},
    ],
)
async def test_422_for_a_bad_target(
    client: httpx.AsyncClient, calls: TransferCalls, body: dict[str, Any]
) -> None:
    sid = (await create(client))["id"]
    calls.outcomes["leg_1"] = True
    r = await client.post(url(sid, "leg_1"), json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert calls.requested == []


async def test_422_when_the_sip_side_refuses_the_target(
    client: httpx.AsyncClient, calls: TransferCalls
) -> None:
    sid = (await create(client))["id"]
    calls.outcomes["leg_1"] = InvalidTransferTarget("target must be a sip: or sips: URI")
    r = await client.post(url(sid, "leg_1"), json={"target": TARGET}, headers=AUTH)
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "target"] and "sip:" in error["msg"]


async def test_503_when_the_refer_could_not_be_sent(
    client: httpx.AsyncClient, calls: TransferCalls
) -> None:
    sid = (await create(client))["id"]
    calls.outcomes["leg_1"] = False
    r = await client.post(url(sid, "leg_1"), json={"target": TARGET}, headers=AUTH)
    assert r.status_code == 503


async def test_needs_the_api_key(client: httpx.AsyncClient) -> None:
    sid = (await create(client))["id"]
    r = await client.post(url(sid, "leg_1"), json={"target": TARGET})
    assert r.status_code == 401
