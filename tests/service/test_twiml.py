"""TwiML/TeXML documents: valid XML, escaping, and the /twiml and /texml routes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sipua.service.api import create_app
from sipua.service.config import Settings, load_settings
from sipua.service.ids import new_session_id
from sipua.service.sessions import SessionService
from sipua.service.store import open_repository
from sipua.service.twiml import texml_connect_stream, twiml_connect_stream

KEY = "test-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
NASTY = "a&b<c>d\"e'f g\u00e9\U0001f600\tz"


def stream_of(xml: str) -> ET.Element:
    root = ET.fromstring(xml.encode())
    assert root.tag == "Response"
    (connect,) = list(root)
    assert connect.tag == "Connect"
    (stream,) = list(connect)
    assert stream.tag == "Stream"
    return stream


def parameters(stream: ET.Element) -> dict[str, str]:
    assert all(p.tag == "Parameter" for p in stream)
    return {p.attrib["name"]: p.attrib["value"] for p in stream}


def test_twiml_shape() -> None:
    xml = twiml_connect_stream("wss://voice.example.test/v1/streams/sess_1", "tok123")
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    stream = stream_of(xml)
    assert stream.attrib == {"url": "wss://voice.example.test/v1/streams/sess_1"}
    assert parameters(stream) == {"token": "tok123"}


def test_values_are_escaped_and_round_trip() -> None:
    url = "wss://h.example.test/v1/streams/a&b"
    xml = twiml_connect_stream(url, NASTY, {"note": "<x & y>", "q": '"quoted"'})
    assert "&amp;" in xml and "&lt;" in xml and "&quot;" in xml
    assert "<x & y>" not in xml and 'value=""quoted""' not in xml
    stream = stream_of(xml)
    assert stream.attrib["url"] == url
    assert parameters(stream) == {"token": NASTY, "note": "<x & y>", "q": '"quoted"'}
    texml = stream_of(texml_connect_stream(url, NASTY))
    assert parameters(texml) == {"token": NASTY}


def test_unrepresentable_values_are_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        twiml_connect_stream("wss://h.example.test/s", "bad\x00token")
    with pytest.raises(ValueError, match="query string"):
        twiml_connect_stream("wss://h.example.test/s?token=x", "t")


def test_texml_is_bidirectional_rtp() -> None:
    stream = stream_of(texml_connect_stream("wss://h.example.test/s", "t", codec="PCMA"))
    assert stream.attrib == {
        "url": "wss://h.example.test/s",
        "bidirectionalMode": "rtp",
        "bidirectionalCodec": "PCMA",
        "bidirectionalSamplingRate": "8000",
    }


# -- routes ----------------------------------------------------------------------------------


@pytest.fixture
async def client(settings: Settings, service: SessionService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, service, api_key=KEY)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as c:
        yield c


@pytest.mark.parametrize("kind,provider", [("twiml", "twilio"), ("texml", "telnyx")])
async def test_routes_serve_the_session_stream(
    client: httpx.AsyncClient, kind: str, provider: str
) -> None:
    created = (await client.post("/v1/sessions", json={"mode": "echo"}, headers=AUTH)).json()
    response = await client.get(f"/v1/sessions/{created['id']}/{kind}", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    stream = stream_of(response.text)
    assert stream.attrib["url"] == created["stream"]["url"]
    assert "?" not in stream.attrib["url"]
    assert parameters(stream) == {"token": created["stream"]["token"], "provider": provider}
    assert (kind == "texml") == ("bidirectionalMode" in stream.attrib)


@pytest.mark.parametrize("kind", ["twiml", "texml"])
async def test_routes_refuse_unknown_ended_and_unauthenticated(
    client: httpx.AsyncClient, kind: str
) -> None:
    assert (
        await client.get(f"/v1/sessions/{new_session_id()}/{kind}", headers=AUTH)
    ).status_code == 404
    created = (await client.post("/v1/sessions", json={"mode": "echo"}, headers=AUTH)).json()
    assert (await client.get(f"/v1/sessions/{created['id']}/{kind}")).status_code == 401
    await client.post(f"/v1/sessions/{created['id']}/end", headers=AUTH)
    response = await client.get(f"/v1/sessions/{created['id']}/{kind}", headers=AUTH)
    assert response.status_code == 409


async def test_public_https_url_gives_a_wss_stream(data_dir: Path) -> None:
    settings = load_settings(
        None, data_dir=data_dir, http={"public_url": "https://voice.example.test/edge"}
    )
    service = SessionService(open_repository(data_dir), settings)
    try:
        app = create_app(settings, service, api_key=KEY)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as c:
            created = (await c.post("/v1/sessions", json={"mode": "echo"}, headers=AUTH)).json()
            xml = (await c.get(f"/v1/sessions/{created['id']}/twiml", headers=AUTH)).text
        url = stream_of(xml).attrib["url"]
        assert url == f"wss://voice.example.test/edge/v1/streams/{created['id']}"
    finally:
        service.close()
