"""Media streams against a real ``sipua serve``: a Twilio stream set up exactly as the TwiML helper
says, a browser stream and a Telnyx stream in the same session, the event log, ``/metrics``,
``/demo``, and ending the session closing every stream."""

from __future__ import annotations

import asyncio
import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import websockets

from tests.integration.conftest import StartService
from tests.integration.service import Service
from tests.service.streams.audio import dominant_frequency, pcm16le, tone, ulaw_decode, ulaw_encode
from tests.service.streams.peers import TelnyxPeer, TwilioPeer

WAIT = 10.0


def api(svc: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=svc.http, headers={"Authorization": f"Bearer {svc.api_key}"}, timeout=WAIT
    )


async def recv_json(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                return json.loads(message)


async def closed_with(ws: Any) -> tuple[int, str]:
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


async def test_twilio_browser_and_telnyx_streams_in_one_session(service: Service) -> None:
    async with api(service) as client:
        r = await client.post("/v1/sessions", json={"mode": "echo"})
        assert r.status_code == 201, r.text
        session = r.json()
        sid = session["id"]
        # What a customer's voice webhook would hand Twilio.
        twiml = await client.get(f"/v1/sessions/{sid}/twiml")
        assert twiml.status_code == 200
        stream = ET.fromstring(twiml.text).find("./Connect/Stream")
        assert stream is not None
        url = stream.get("url")
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        assert url == session["stream"]["url"]
        assert params["token"] == session["stream"]["token"]

        # Twilio: connected, start (token in customParameters), a second of 1 kHz, DTMF, stop.
        twilio = TwilioPeer(None, custom=params)
        tws = await websockets.connect(url, open_timeout=WAIT)
        await tws.send(twilio.connected())
        await tws.send(twilio.start())
        samples = tone(1000, 1000, 8000)
        for i in range(0, len(samples), 160):
            await tws.send(twilio.media(ulaw_encode(samples[i : i + 160])))
        echoed = []
        while len(echoed) < 45:
            message = await recv_json(tws)
            assert message["event"] == "media" and message["streamSid"] == twilio.stream_sid
            echoed.append(base64.b64decode(message["media"]["payload"]))
        heard = ulaw_decode(b"".join(echoed[2:]))
        assert abs(dominant_frequency(heard, 8000) - 1000) < 20
        await tws.send(twilio.dtmf("4"))

        # A browser joins the same session.
        bws = await websockets.connect(f"{url}?token={params['token']}", open_timeout=WAIT)
        assert (await recv_json(bws))["type"] == "ready"
        await bws.send(pcm16le(tone(1000, 200, 16000)))

        # And a Telnyx stream (PCMA), token as a TeXML parameter.
        telnyx = TelnyxPeer(params["token"], encoding="PCMA", custom={"provider": "telnyx"})
        lws = await websockets.connect(url, open_timeout=WAIT)
        await lws.send(telnyx.connected())
        await lws.send(telnyx.start())

        metrics = (await client.get("/metrics")).text
        for provider in ("twilio", "browser", "telnyx"):
            assert f'sipua_stream_connections_active{{provider="{provider}"}} 1.0' in metrics

        await tws.send(twilio.stop())
        assert await closed_with(tws) == (1000, "stream-stopped")

        # Ending the session closes the streams still open, saying why.
        r = await client.post(f"/v1/sessions/{sid}/end")
        assert r.status_code == 200
        assert (await recv_json(bws)) == {"type": "ended", "reason": "session-ended"}
        assert await closed_with(bws) == (1000, "session-ended")
        assert await closed_with(lws) == (1000, "session-ended")

        async with asyncio.timeout(WAIT):
            while True:
                r = await client.get(f"/v1/sessions/{sid}/events", params={"limit": 100})
                log = r.json()["data"]
                if any(e["type"] == "session.ended" for e in log):
                    break
                await asyncio.sleep(0.1)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for event in log:
            by_type.setdefault(event["type"], []).append(event)
        assert len(by_type["session.provider.connected"]) == 3
        dtmf = by_type["session.dtmf"][0]
        assert dtmf["data"]["digit"] == "4" and dtmf["provider"]["call_sid"] == twilio.call_sid
        gone = {e["provider"]["type"]: e for e in by_type["session.provider.disconnected"]}
        assert gone["twilio"]["data"]["reason"] == "stream-stopped"
        assert gone["twilio"]["data"]["stream"]["frames_in"] >= 45
        assert gone["browser"]["data"]["reason"] == "session-ended"
        assert gone["telnyx"]["data"]["reason"] == "session-ended"
        ended = by_type["session.ended"][0]
        assert {p["provider"]["type"] for p in ended["data"]["participants"]} == {
            "twilio",
            "browser",
            "telnyx",
        }
        assert log[-1]["type"] == "session.ended"

        metrics = (await client.get("/metrics")).text
        assert 'sipua_stream_connections_total{provider="twilio"} 1.0' in metrics
        assert 'sipua_stream_connections_active{provider="browser"} 0.0' in metrics

        # A stream for the ended session is refused.
        late = TwilioPeer(params["token"])
        async with websockets.connect(url, open_timeout=WAIT) as ws:
            await ws.send(late.start())
            assert await closed_with(ws) == (4403, "session-ended")


async def test_demo_page_is_served(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.http, timeout=WAIT) as client:
        page = await client.get("/demo")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "demo/demo.js" in page.text
        script = await client.get("/demo/demo.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await client.get("/demo/pcm-worklet.js")).status_code == 200
        assert (await client.get("/demo/../api_key")).status_code == 404
        assert (await client.get("/demo/secret.txt")).status_code == 404


async def test_shutdown_ends_streams_and_reports_them(serve: StartService) -> None:
    svc = serve()
    session = await asyncio.to_thread(svc.create_session, mode="echo")
    url = f"{session['stream']['url']}?token={session['stream']['token']}"
    ws = await websockets.connect(url, open_timeout=WAIT)
    assert (await recv_json(ws))["type"] == "ready"
    stopping = asyncio.ensure_future(asyncio.to_thread(svc.stop))
    assert await recv_json(ws) == {"type": "ended", "reason": "shutdown"}
    assert await closed_with(ws) == (1000, "shutdown")
    assert await stopping == 0
    # The participant's end is in the event log (read after a restart on the same data).
    again = serve(data_dir=svc.data_dir)
    async with api(again) as client:
        r = await client.get(f"/v1/sessions/{session['id']}/events", params={"limit": 100})
        gone = [e for e in r.json()["data"] if e["type"] == "session.provider.disconnected"]
    assert [e["data"]["reason"] for e in gone] == ["shutdown"]
    assert gone[0]["provider"]["type"] == "browser"
