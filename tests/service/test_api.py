from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sipua.service.api import create_app
from sipua.service.config import Settings, load_settings
from sipua.service.ids import new_session_id
from sipua.service.models import Session
from sipua.service.sessions import SessionService
from sipua.service.store import MemorySessionRepository, open_repository

KEY = "test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeCalls:
    """The SIP side's CallInfo, recording what the API asks of it."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.ended: list[str] = []
        self.hang: asyncio.Event | None = None

    def active_calls(self, session_id: str) -> int:
        return self.counts.get(session_id, 0)

    async def end_calls(self, session_id: str) -> int:
        if self.hang is not None:
            await self.hang.wait()
        self.ended.append(session_id)
        return self.counts.pop(session_id, 0)


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
def calls() -> FakeCalls:
    return FakeCalls()


@pytest.fixture
async def client(
    settings: Settings, service: SessionService, calls: FakeCalls
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, service, calls, api_key=KEY)
    async with client_for(app) as c:
        yield c


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json=body or {"mode": "echo"}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


# -- create / get -----------------------------------------------------------------------------


async def test_create_returns_201_with_addresses(client: httpx.AsyncClient) -> None:
    body = {
        "mode": "bidirectional_translation",
        "source_language": "en-us",
        "target_language": "de-de",
        "provider": {"type": "sip", "codecs": ["opus", "pcmu"], "password": "pbx-secret"},
        "media": {"app": "bridge", "bridge_url": "wss://ai.example.test/audio"},
        "metadata": {"customer": "A-1042", "tags": ["vip"]},
        "webhook_url": "https://hooks.example.test/sipua",
    }
    response = await client.post("/v1/sessions", json=body, headers=AUTH)
    assert response.status_code == 201
    data = response.json()
    sid = data["id"]
    assert response.headers["location"] == f"/v1/sessions/{sid}"
    assert sid.startswith("sess_") and len(sid) == 31
    assert data["status"] == "active"
    assert data["mode"] == "bidirectional_translation"
    assert (data["source_language"], data["target_language"]) == ("en-US", "de-DE")
    assert data["provider"]["codecs"] == ["opus", "PCMU"]
    assert data["provider"]["srtp"]["enabled"] == "optional"
    assert data["provider"]["password"] == "**********"
    assert "pbx-secret" not in response.text
    assert data["media"] == {
        "app": "bridge",
        "bridge_url": "wss://ai.example.test/audio",
        "play_tone": None,
        "play_file": None,
        "bridge_format": None,
    }
    assert data["metadata"] == {"customer": "A-1042", "tags": ["vip"]}
    assert data["webhook_url"] == "https://hooks.example.test/sipua"
    assert data["sip"] == {
        "uri": f"sip:session_{sid}@sip.example.test",
        "tls_uri": f"sips:session_{sid}@sip.example.test",
    }
    assert data["stream"]["url"] == f"ws://sip.example.test:8080/v1/streams/{sid}"
    assert len(data["stream"]["token"]) >= 22
    assert data["created_at"] and data["ended_at"] is None
    assert data["calls"] == 0


async def test_get_returns_the_same_session(client: httpx.AsyncClient, calls: FakeCalls) -> None:
    created = await create(client)
    calls.counts[created["id"]] = 2
    response = await client.get(f"/v1/sessions/{created['id']}", headers=AUTH)
    assert response.status_code == 200
    got = response.json()
    assert got["calls"] == 2
    # The webhook secret is shown once, at creation; reads show null.
    assert got["webhook_secret"] is None and created["webhook_secret"].startswith("whsec_")
    skip = ("calls", "webhook_secret")
    assert {k: v for k, v in got.items() if k not in skip} == {
        k: v for k, v in created.items() if k not in skip
    }


async def test_unknown_and_malformed_ids_are_404(client: httpx.AsyncClient) -> None:
    for sid in (new_session_id(), "sess_nope", "anything"):
        for method, path in (("GET", f"/v1/sessions/{sid}"), ("POST", f"/v1/sessions/{sid}/end")):
            response = await client.request(method, path, headers=AUTH)
            assert response.status_code == 404, (method, path)
            assert response.json() == {"detail": "session not found"}


# -- list -------------------------------------------------------------------------------------


async def test_list_pages_through_everything(client: httpx.AsyncClient) -> None:
    ids = [(await create(client))["id"] for _ in range(5)]
    seen: list[str] = []
    after: str | None = None
    for _ in range(10):  # bounded: 3 pages expected
        params: dict[str, Any] = {"limit": 2}
        if after:
            params["after"] = after
        response = await client.get("/v1/sessions", params=params, headers=AUTH)
        assert response.status_code == 200
        page = response.json()
        assert len(page["data"]) <= 2
        seen.extend(item["id"] for item in page["data"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == ids


async def test_list_default_limit_and_status_filter(client: httpx.AsyncClient) -> None:
    ids = [(await create(client))["id"] for _ in range(22)]
    page = (await client.get("/v1/sessions", headers=AUTH)).json()
    assert [s["id"] for s in page["data"]] == ids[:20]
    assert page["next_after"] == ids[19]
    await client.post(f"/v1/sessions/{ids[3]}/end", headers=AUTH)
    ended = (await client.get("/v1/sessions?status=ended", headers=AUTH)).json()
    assert [s["id"] for s in ended["data"]] == [ids[3]]
    assert ended["next_after"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("after=bad", "after")],
)
async def test_list_rejects_bad_paging(client: httpx.AsyncClient, query: str, field: str) -> None:
    response = await client.get(f"/v1/sessions?{query}", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


# -- end --------------------------------------------------------------------------------------


async def test_end_hangs_up_calls_and_is_idempotent(
    client: httpx.AsyncClient, service: SessionService, calls: FakeCalls
) -> None:
    sid = (await create(client))["id"]
    calls.counts[sid] = 3
    notified: list[Session] = []
    service.on_ended.append(notified.append)

    response = await client.post(f"/v1/sessions/{sid}/end", headers=AUTH)
    assert response.status_code == 200
    first = response.json()
    assert first["status"] == "ended"
    assert first["ended_at"] is not None
    assert first["calls"] == 0
    assert calls.ended == [sid]
    assert [s.id for s in notified] == [sid]
    assert service.resolve_sip_user(f"session_{sid}") is not None
    assert not service.resolve_sip_user(f"session_{sid}").accepting_calls  # type: ignore[union-attr]

    again = await client.post(f"/v1/sessions/{sid}/end", headers=AUTH)
    assert again.status_code == 200
    assert again.json()["ended_at"] == first["ended_at"]
    assert len(notified) == 1

    got = (await client.get(f"/v1/sessions/{sid}", headers=AUTH)).json()
    assert got["status"] == "ended"


async def test_end_does_not_hang_on_stuck_calls(
    settings: Settings, service: SessionService, calls: FakeCalls
) -> None:
    calls.hang = asyncio.Event()  # never set
    app = create_app(settings, service, calls, api_key=KEY, end_calls_timeout=0.05)
    async with client_for(app) as c:
        sid = (await create(c))["id"]
        response = await asyncio.wait_for(c.post(f"/v1/sessions/{sid}/end", headers=AUTH), 5)
    assert response.status_code == 200
    assert response.json()["status"] == "ended"


async def test_works_without_call_info(settings: Settings, service: SessionService) -> None:
    app = create_app(settings, service, api_key=KEY)
    async with client_for(app) as c:
        sid = (await create(c))["id"]
        ended = await c.post(f"/v1/sessions/{sid}/end", headers=AUTH)
    assert ended.json()["status"] == "ended" and ended.json()["calls"] == 0


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="sipua"'),
        ({"Authorization": "Bearer"}, 'Bearer realm="sipua"'),
        ({"Authorization": f"Basic {KEY}"}, 'Bearer realm="sipua"'),
        ({"Authorization": "Bearer wrong-key"}, 'Bearer realm="sipua", error="invalid_token"'),
        ({"Authorization": f"Bearer {KEY}x"}, 'Bearer realm="sipua", error="invalid_token"'),
    ],
)
async def test_v1_requires_the_bearer_key(
    client: httpx.AsyncClient, headers: dict[str, str], challenge: str
) -> None:
    for method, path in (
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("GET", f"/v1/sessions/{new_session_id()}"),
        ("POST", f"/v1/sessions/{new_session_id()}/end"),
    ):
        response = await client.request(method, path, headers=headers, json={"mode": "echo"})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == challenge
        assert "detail" in response.json()


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sessions", headers={"Authorization": f"bearer {KEY}"})
    assert response.status_code == 200


async def test_auth_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/sessions", content=b"{not json")
    assert response.status_code == 401
    response = await client.post("/v1/sessions", content=b"x" * 200_000)
    assert response.status_code == 401


async def test_healthz_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_key_defaults_to_ensure_api_key(service: SessionService, data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir, public_host="h.test")
    app = create_app(settings, service)
    key = (data_dir / "api_key").read_text().strip()
    async with client_for(app) as c:
        ok = await c.get("/v1/sessions", headers={"Authorization": f"Bearer {key}"})
        bad = await c.get("/v1/sessions", headers=AUTH)
    assert (ok.status_code, bad.status_code) == (200, 401)


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"mode": "karaoke"}, ["body", "mode"], "Input should be"),
        (
            {
                "mode": "bidirectional_translation",
                "source_language": "en",
                "target_language": "auto",
            },
            ["body", "target_language"],
            "'auto' is only allowed as source_language",
        ),
        (
            {"mode": "unidirectional_translation", "source_language": "en"},
            ["body", "target_language"],
            "target_language is required",
        ),
        (
            {"mode": "echo", "provider": {"type": "sip", "codecs": ["G729"]}},
            ["body", "provider", "sip", "codecs"],
            "unsupported codec 'G729'",
        ),
        ({"mode": "echo", "colour": "blue"}, ["body", "colour"], "Extra inputs are not permitted"),
        ({"mode": "echo", "source_language": "klingon"}, ["body", "source_language"], "BCP-47"),
        (
            {"mode": "echo", "media": {"app": "bridge", "bridge_url": "http://x.test"}},
            ["body", "media", "bridge_url"],
            "URL scheme must be 'ws' or 'wss'",
        ),
        ({}, ["body", "mode"], "Field required"),
    ],
)
async def test_422_names_the_field_and_reason(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any], msg: str
) -> None:
    response = await client.post("/v1/sessions", json=body, headers=AUTH)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and msg in e["msg"] for e in errors), errors


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/sessions",
        content=b'{"mode": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


async def test_settings_conflict_is_a_field_level_422(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir, media__default_app="bridge")
    service = SessionService(MemorySessionRepository(), settings)
    async with client_for(create_app(settings, service, api_key=KEY)) as c:
        response = await c.post("/v1/sessions", json={"mode": "ai_agent"}, headers=AUTH)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "media", "bridge_url"]
    assert "bridge_url is required" in error["msg"]


async def test_large_bodies_are_refused(client: httpx.AsyncClient) -> None:
    big = {"mode": "echo", "metadata": {"k": "x" * 100_000}}
    response = await client.post("/v1/sessions", json=big, headers=AUTH)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post("/v1/sessions", content=chunks(), headers=AUTH)
    assert response.status_code == 413


# -- persistence and failures -----------------------------------------------------------------


async def test_sessions_survive_a_restart(data_dir: Path, settings: Settings) -> None:
    first = SessionService(open_repository(data_dir), settings)
    async with client_for(create_app(settings, first, api_key=KEY)) as c:
        created = await create(c, mode="transcription", source_language="fr")
        ended = await create(c)
        await c.post(f"/v1/sessions/{ended['id']}/end", headers=AUTH)
    first.close()

    second = SessionService(open_repository(data_dir), settings)
    try:
        async with client_for(create_app(settings, second, api_key=KEY)) as c:
            got = (await c.get(f"/v1/sessions/{created['id']}", headers=AUTH)).json()
            page = (await c.get("/v1/sessions", headers=AUTH)).json()
        assert got == {**created, "webhook_secret": None}
        assert [s["status"] for s in page["data"]] == ["active", "ended"]
        assert second.resolve_sip_user(f"session_{created['id']}") is not None
    finally:
        second.close()


async def test_store_failure_is_503(client: httpx.AsyncClient, service: SessionService) -> None:
    service.repo.close()
    response = await client.post("/v1/sessions", json={"mode": "echo"}, headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"detail": "session store unavailable"}


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["info"]["title"] == "sipua"
    assert doc["info"]["description"]
    paths = doc["paths"]
    assert set(paths) >= {
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/end",
        "/healthz",
    }
    assert set(paths["/v1/sessions"]) == {"get", "post"}
    create_op = paths["/v1/sessions"]["post"]
    assert create_op["summary"] == "Create a session"
    assert "201" in create_op["responses"] and "401" in create_op["responses"]
    assert "404" in paths["/v1/sessions/{session_id}"]["get"]["responses"]
    assert create_op["security"] == [{"apiKey": []}]
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    schemas = doc["components"]["schemas"]
    assert {"SessionCreate", "SessionResponse", "SessionPage"} <= set(schemas)
    assert schemas["SessionCreate"]["additionalProperties"] is False
    assert "security" not in paths["/healthz"]["get"]
