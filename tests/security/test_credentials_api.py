"""``/v1/sip-credentials`` and ``/v1/sip-security`` on the real app, in-process (ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sipua.service.api import create_app
from sipua.service.config import load_settings
from sipua.service.models import SessionCreate
from sipua.service.security_setup import build_security
from sipua.service.sessions import SessionService
from sipua.service.store import MemorySessionRepository
from sipua.sip.credentials import ha1

KEY = "api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def app_and_security(tmp_path):
    settings = load_settings(
        data_dir=tmp_path,
        security={"auth": "required", "users": [{"username": "cfg", "password": "config-pass"}]},
    )
    sessions = SessionService(MemorySessionRepository(), settings)
    security = build_security(settings)
    app = create_app(settings, sessions, api_key=KEY)
    app.state.sip_credentials = security.directory
    app.state.sip_security = security.gate
    yield app, security, sessions
    security.close()


@pytest.fixture
async def client(app_and_security) -> AsyncIterator[httpx.AsyncClient]:
    app, _, _ = app_and_security
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as c:
        yield c


async def test_create_shows_the_password_once(client, app_and_security):
    _, security, _ = app_and_security
    r = await client.post(
        "/v1/sip-credentials",
        json={"username": "pbx-1", "allowed_ips": ["203.0.113.0/28", "2001:db8:5::/48"]},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    password = created["password"]
    assert len(password) >= 24
    assert created["allowed_ips"] == ["203.0.113.0/28", "2001:db8:5::/48"]
    assert r.headers["location"] == f"/v1/sip-credentials/{created['id']}"
    record = security.directory.find("pbx-1", "sipua")
    assert record is not None and record.ha1["MD5"] == ha1("pbx-1", "sipua", password)

    got = (await client.get(f"/v1/sip-credentials/{created['id']}", headers=AUTH)).json()
    listed = (await client.get("/v1/sip-credentials", headers=AUTH)).json()["data"]
    for view in (got, *listed):
        assert "password" not in view and password not in str(view)
        assert not any("ha1" in key for key in view)
    assert [c["username"] for c in listed] == ["cfg", "pbx-1"]
    assert listed[0]["source"] == "config" and listed[1]["source"] == "api"
    assert got["active"] is True and "SHA-256" in got["algorithms"]


async def test_given_password_and_conflicts(client):
    body = {"username": "pbx-2", "password": "a-long-password"}
    r = await client.post("/v1/sip-credentials", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["password"] == "a-long-password"
    again = await client.post("/v1/sip-credentials", json=body, headers=AUTH)
    assert again.status_code == 409
    config_name = await client.post(
        "/v1/sip-credentials", json={"username": "cfg", "password": "whatever-1"}, headers=AUTH
    )
    assert config_name.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "password": "short"},
        {"username": "x", "allowed_ips": ["not-a-network"]},
        {"username": 'qu"ote'},
        {"username": "x", "session_id": "nope"},
        {"username": "x", "extra": 1},
        {"username": "x", "password": "has\ncontrol"},
    ],
)
async def test_invalid_bodies_are_422(client, body):
    r = await client.post("/v1/sip-credentials", json=body, headers=AUTH)
    assert r.status_code == 422, r.text


async def test_session_scope_must_name_a_session(client, app_and_security):
    _, _, sessions = app_and_security
    missing = await client.post(
        "/v1/sip-credentials",
        json={"username": "s", "session_id": "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"},
        headers=AUTH,
    )
    assert missing.status_code == 422
    session = sessions.create(SessionCreate(mode="echo"))
    r = await client.post(
        "/v1/sip-credentials", json={"username": "s", "session_id": session.id}, headers=AUTH
    )
    assert r.status_code == 201 and r.json()["session_id"] == session.id


async def test_delete(client, app_and_security):
    _, security, _ = app_and_security
    created = (
        await client.post("/v1/sip-credentials", json={"username": "gone"}, headers=AUTH)
    ).json()
    r = await client.delete(f"/v1/sip-credentials/{created['id']}", headers=AUTH)
    assert r.status_code == 204
    assert security.directory.find("gone", "sipua") is None
    assert (
        await client.delete(f"/v1/sip-credentials/{created['id']}", headers=AUTH)
    ).status_code == 404
    assert (
        await client.get(f"/v1/sip-credentials/{created['id']}", headers=AUTH)
    ).status_code == 404
    config_id = security.directory.list()[0].id
    assert (
        await client.delete(f"/v1/sip-credentials/{config_id}", headers=AUTH)
    ).status_code == 409


async def test_routes_need_the_api_key(client):
    for method, path in (
        ("POST", "/v1/sip-credentials"),
        ("GET", "/v1/sip-credentials"),
        ("DELETE", "/v1/sip-credentials/cred_x"),
        ("GET", "/v1/sip-security"),
    ):
        r = await client.request(method, path, json={"username": "x"})
        assert r.status_code == 401, (method, path)


async def test_security_state_and_lifting_a_ban(client, app_and_security):
    _, security, _ = app_and_security
    import asyncio

    now = asyncio.get_running_loop().time()
    security.gate.bans.ban("192.0.2.66", now, 300, "test")
    state = (await client.get("/v1/sip-security", headers=AUTH)).json()
    assert state["auth"] == "required" and state["realm"] == "sipua"
    assert [b["address"] for b in state["bans"]] == ["192.0.2.66"]
    assert 0 < state["bans"][0]["seconds_left"] <= 300
    assert "auth_failures" in state["counters"]
    assert (
        await client.delete("/v1/sip-security/bans/192.0.2.66", headers=AUTH)
    ).status_code == 204
    assert (
        await client.delete("/v1/sip-security/bans/192.0.2.66", headers=AUTH)
    ).status_code == 404
    assert (await client.delete("/v1/sip-security/bans/bogus", headers=AUTH)).status_code == 422
    assert (await client.get("/v1/sip-security", headers=AUTH)).json()["bans"] == []


async def test_without_wiring_the_routes_answer_503(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    app = create_app(settings, SessionService(MemorySessionRepository(), settings), api_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/v1/sip-credentials", headers=AUTH)).status_code == 503
        assert (await c.get("/v1/sip-security", headers=AUTH)).status_code == 503
        paths = (await c.get("/openapi.json")).json()["paths"]
    assert "/v1/sip-credentials" in paths and "/v1/sip-security" in paths
