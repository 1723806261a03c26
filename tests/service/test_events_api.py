"""``GET /v1/sessions/{id}/events``, the webhook secret shown once, and delivery end to end."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sipua.service.api import create_app
from sipua.service.config import Settings, load_settings
from sipua.service.events import EventPublisher, SessionEvent, new_event_id
from sipua.service.events_store import DeliveryAttempt, SqliteEventStore
from sipua.service.ids import new_session_id
from sipua.service.sessions import SessionService
from sipua.service.store import open_repository
from sipua.service.webhooks import RetryPolicy, WebhookDispatcher, session_target_resolver

from .test_webhooks import load_recipe
from .webhook_receiver import WebhookReceiver, receiving

KEY = "test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = RetryPolicy(max_attempts=4, initial_backoff=0.02, max_backoff=0.05)


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
def event_store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    store = SqliteEventStore(tmp_path / "events.db")
    yield store
    store.close()


@pytest.fixture
def app(settings: Settings, service: SessionService, event_store: SqliteEventStore) -> FastAPI:
    app = create_app(settings, service, api_key=KEY)
    app.state.event_store = event_store
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with receiving() as r:
        yield r


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"mode": "echo", **body}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def event(session_id: str, n: int) -> SessionEvent:
    return SessionEvent(
        new_event_id(),
        "session.dtmf",
        datetime.now(UTC).replace(microsecond=0),
        session_id,
        {"type": "sip", "sip_call_id": "c@x", "status": "connected"},
        {"participant_id": "leg_1", "digit": str(n), "duration_ms": 100, "source": "rfc4733"},
    )


# -- the secret ------------------------------------------------------------------------------


async def test_webhook_secret_is_shown_once(
    client: httpx.AsyncClient, service: SessionService
) -> None:
    created = await create(client, webhook_url="https://hooks.example.test/x")
    secret = created["webhook_secret"]
    assert isinstance(secret, str) and secret.startswith("whsec_") and len(secret) >= 40
    got = (await client.get(f"/v1/sessions/{created['id']}", headers=AUTH)).json()
    assert got["webhook_secret"] is None
    listed = (await client.get("/v1/sessions", headers=AUTH)).json()["data"]
    assert all(s["webhook_secret"] is None for s in listed)
    stored = service.get(created["id"])
    assert stored is not None and stored.webhook_secret is not None
    assert stored.webhook_secret.get_secret_value() == secret  # kept, for signing
    assert secret not in repr(stored)
    assert secret not in stored.model_dump_json()  # masked outside the store
    other = await create(client)
    assert other["webhook_secret"] != secret  # per session


async def test_webhook_secret_survives_a_restart(data_dir: Path, settings: Settings) -> None:
    first = SessionService(open_repository(data_dir), settings)
    async with client_for(create_app(settings, first, api_key=KEY)) as c:
        created = await create(c, webhook_url="https://hooks.example.test/x")
    first.close()
    second = SessionService(open_repository(data_dir), settings)
    try:
        session = second.get(created["id"])
        assert session is not None and session.webhook_secret is not None
        assert session.webhook_secret.get_secret_value() == created["webhook_secret"]
    finally:
        second.close()


# -- the log API -----------------------------------------------------------------------------


async def test_events_are_listed_in_pages_with_their_deliveries(
    client: httpx.AsyncClient, event_store: SqliteEventStore
) -> None:
    created = await create(client)
    sid = created["id"]
    events = [event(sid, n) for n in range(5)]
    event_store.append([(e, "pending", None) for e in events])
    event_store.append([(event(new_session_id(), 9), "pending", None)])  # another session
    t = datetime(2025, 1, 7, 10, 0, tzinfo=UTC)
    event_store.record_attempt(
        DeliveryAttempt(events[0].id, 1, "https://h/x", t, 5.0, 503, "HTTP 503", "retry")
    )
    event_store.record_attempt(
        DeliveryAttempt(events[0].id, 2, "https://h/x", t, 4.0, 200, None, "delivered")
    )
    event_store.set_status(events[0].id, "delivered", delivered_at=t)

    url = f"/v1/sessions/{sid}/events"
    page1 = (await client.get(url, params={"limit": 2}, headers=AUTH)).json()
    assert [e["id"] for e in page1["data"]] == [e.id for e in events[:2]]
    first = page1["data"][0]
    assert first["type"] == "session.dtmf" and first["session_id"] == sid
    assert first["provider"] == {"type": "sip", "sip_call_id": "c@x", "status": "connected"}
    assert first["data"]["digit"] == "0"
    delivery = first["delivery"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in delivery["attempt_log"]] == [
        (1, 503, "retry"),
        (2, 200, "delivered"),
    ]
    assert page1["data"][1]["delivery"] == {
        "status": "pending",
        "attempts": 0,
        "last_error": None,
        "delivered_at": None,
        "attempt_log": [],
    }
    page2 = (
        await client.get(url, params={"limit": 2, "after": page1["next_after"]}, headers=AUTH)
    ).json()
    page3 = (
        await client.get(url, params={"limit": 2, "after": page2["next_after"]}, headers=AUTH)
    ).json()
    assert [e["id"] for e in page2["data"] + page3["data"]] == [e.id for e in events[2:]]
    assert page3["next_after"] is None
    everything = (await client.get(url, headers=AUTH)).json()
    assert len(everything["data"]) == 5 and everything["next_after"] is None


async def test_events_of_unknown_sessions_are_404(client: httpx.AsyncClient) -> None:
    for sid in (new_session_id(), "sess_nope", "x" * 300):
        response = await client.get(f"/v1/sessions/{sid}/events", headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {"detail": "session not found"}


async def test_events_need_the_api_key_and_valid_paging(client: httpx.AsyncClient) -> None:
    created = await create(client)
    url = f"/v1/sessions/{created['id']}/events"
    assert (await client.get(url)).status_code == 401
    assert (
        await client.get(url, headers={"Authorization": "Bearer wrong-key-0123456789"})
    ).status_code == 401
    for params in ({"limit": 0}, {"limit": 101}, {"after": "evt_bad"}):
        response = await client.get(url, params=params, headers=AUTH)
        assert response.status_code == 422, params


async def test_events_without_an_event_log_are_503(
    settings: Settings, service: SessionService
) -> None:
    async with client_for(create_app(settings, service, api_key=KEY)) as c:
        created = await create(c)
        response = await c.get(f"/v1/sessions/{created['id']}/events", headers=AUTH)
    assert response.status_code == 503


def test_openapi_documents_the_routes(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert "/v1/sessions/{session_id}/events" in paths
    assert "/v1/sessions/{session_id}/twiml" in paths
    assert "/v1/sessions/{session_id}/texml" in paths
    assert "/metrics" in paths
    created = app.openapi()["components"]["schemas"]["SessionResponse"]["properties"]
    assert "webhook_secret" in created


# -- end to end in one process ------------------------------------------------------------------


async def test_published_events_are_delivered_signed_and_logged(
    client: httpx.AsyncClient,
    service: SessionService,
    settings: Settings,
    event_store: SqliteEventStore,
    receiver: WebhookReceiver,
) -> None:
    verify = load_recipe()
    created = await create(client, webhook_url=receiver.url("/session-hook"))
    sid = created["id"]
    receiver.script("/session-hook", 500)
    dispatcher = WebhookDispatcher(
        event_store, session_target_resolver(service, settings.webhooks), policy=FAST, timeout=2.0
    )
    publisher = EventPublisher([dispatcher.submit])
    await dispatcher.start()
    try:
        publisher.publish_provider_event(sid, "twilio", {"call_sid": "CA1"}, "connected")
        publisher.publish_dtmf(
            sid, "7", 90, "twilio", provider_type="twilio", provider_ids={"call_sid": "CA1"}
        )
        publisher.publish_provider_event(
            sid, "twilio", {"call_sid": "CA1"}, "disconnected", {"reason": "hangup"}
        )
        publisher.session_ended(sid)
        assert await dispatcher.wait_idle(10)
    finally:
        await dispatcher.stop()
    delivered = receiver.delivered("/session-hook")
    assert len(delivered) == 4
    for got in delivered:
        assert verify(created["webhook_secret"], got.headers["sipua-signature"], got.body)
    listed = (await client.get(f"/v1/sessions/{sid}/events", headers=AUTH)).json()["data"]
    assert [e["type"] for e in listed] == [
        "session.provider.connected",
        "session.dtmf",
        "session.provider.disconnected",
        "session.ended",
    ]
    assert [e["delivery"]["status"] for e in listed] == ["delivered"] * 4
    assert [e["delivery"]["attempts"] for e in listed] == [2, 1, 1, 1]
    assert [r.body for r in delivered] == [event_store.get(e["id"]).body for e in listed]  # type: ignore[union-attr]


async def test_organization_default_url_and_secret(
    data_dir: Path, receiver: WebhookReceiver, event_store: SqliteEventStore
) -> None:
    org_secret = "org-secret-0123456789abcdef"
    settings = load_settings(
        None,
        data_dir=data_dir,
        public_host="sip.example.test",
        webhooks={"default_url": receiver.url("/org"), "secret": org_secret},
    )
    service = SessionService(open_repository(data_dir), settings)
    try:
        async with client_for(create_app(settings, service, api_key=KEY)) as c:
            without = await create(c)
            own = await create(c, webhook_url=receiver.url("/own"))
        resolve = session_target_resolver(service, settings.webhooks)
        dispatcher = WebhookDispatcher(event_store, resolve, policy=FAST, rng=random.Random(2))
        await dispatcher.start()
        try:
            dispatcher.submit(event(without["id"], 1))
            dispatcher.submit(event(own["id"], 2))
            assert await dispatcher.wait_idle(10)
        finally:
            await dispatcher.stop()
        (org,) = receiver.delivered("/org")
        (mine,) = receiver.delivered("/own")
        assert load_recipe()(org_secret, org.headers["sipua-signature"], org.body)
        assert not load_recipe()(
            without["webhook_secret"], org.headers["sipua-signature"], org.body
        )
        assert load_recipe()(own["webhook_secret"], mine.headers["sipua-signature"], mine.body)
    finally:
        service.close()
