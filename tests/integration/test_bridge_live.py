"""``sipua serve`` bridging a SIP caller to a customer backend: the backend (a ``websockets``
server on 127.0.0.1 speaking Twilio Media Streams) hears the caller's RTP tone, its reply tone
reaches the caller as RTP, its mark is answered, and when it closes for good the event is
logged and the caller is hung up (fallback ``hangup``).

The SIP and RTP side runs in worker threads (blocking sockets, paced sends) so the backend,
which lives in the test's event loop, keeps answering.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.integration.conftest import StartService
from tests.integration.service import Service
from tests.integration.sipclient import SipClient, build_response, sdp_offer
from tests.service.streams.audio import dominant_frequency, rms, tone, ulaw_decode, ulaw_encode
from tests.service.streams.backend import Connection, backend

WAIT = 10.0


class RtpPeer:
    """The caller's RTP socket: sends a paced PCMU stream, keeps what comes back."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[int, bytes]] = []  # (payload type, payload)

    def close(self) -> None:
        self.sock.close()

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) > 12 and data[0] >> 6 == 2:
                self.received.append((data[1] & 0x7F, data[12:]))

    def exchange(self, target: tuple[str, int], payloads: list[bytes], linger: float) -> None:
        """Send ``payloads`` every 20 ms (on a deadline grid: no drift), receiving meanwhile."""
        self.sock.setblocking(False)
        ssrc = secrets.randbits(32)
        start = time.monotonic()
        for n, payload in enumerate(payloads):
            header = struct.pack("!BBHII", 0x80, 0, n + 1, 160 * n, ssrc)
            self.sock.sendto(header + payload, target)
            self._drain()
            delay = start + 0.020 * (n + 1) - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing, not waiting: RTP is sent on a clock
        end = time.monotonic() + linger
        while time.monotonic() < end:
            self._drain()
            time.sleep(0.005)

    def audio(self) -> Any:
        return ulaw_decode(b"".join(p for pt, p in self.received if pt == 0))


def answer_port(body: bytes) -> tuple[str, int]:
    text = body.decode()
    port = re.search(r"^m=audio (\d+) ", text, re.M)
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    assert port and host, text
    return host.group(1), int(port.group(1))


def place_call(svc: Service, session_id: str, rtp_port: int) -> tuple[SipClient, Any, Any]:
    client = SipClient("udp", ("127.0.0.1", svc.ports["udp"]), timeout=WAIT)
    call = client.new_call(f"sip:session_{session_id}@127.0.0.1:{svc.ports['udp']}")
    client.send(call.invite(sdp_offer(port=rtp_port, codecs="0 101")))
    final = client.final_response()
    assert final.status == 200, final.start
    client.send(call.ack(final))
    return client, call, final


async def events_of(svc: Service, session_id: str, want: str) -> list[dict[str, Any]]:
    """The session's event log once an event of type ``want`` is in it (bounded wait)."""
    async with httpx.AsyncClient(
        base_url=svc.http, headers={"Authorization": f"Bearer {svc.api_key}"}, timeout=WAIT
    ) as api:
        async with asyncio.timeout(WAIT):
            while True:
                r = await api.get(f"/v1/sessions/{session_id}/events", params={"limit": 100})
                assert r.status_code == 200, r.text
                data = r.json()["data"]
                if any(e["type"] == want for e in data):
                    return data
                await asyncio.sleep(0.1)


async def test_sip_caller_talks_to_a_twilio_style_backend_and_is_hung_up_when_it_leaves(
    serve: StartService, tmp_path: Path
) -> None:
    svc = serve(env={"SIPUA_BRIDGE__RECONNECT_ATTEMPTS": "0"})
    leave = asyncio.Event()
    replied_at: list[float] = []

    async def agent(conn: Connection) -> None:
        # Greets the caller with 1.2 s of 700 Hz (one TTS-like burst) and a mark.
        await conn.send_media(ulaw_encode(tone(700, 1200, 8000)))
        await conn.send_mark("greeting-played")
        replied_at.append(time.monotonic())
        await leave.wait()
        await conn.ws.close(1011, "agent crashed")

    async with backend("/agent") as agent_server:
        agent_server.script = agent
        session = await asyncio.to_thread(
            svc.create_session, mode="ai_agent", media={"bridge_url": agent_server.url}
        )
        sid = session["id"]
        rtp = RtpPeer()
        client = None
        try:
            client, call, final = await asyncio.to_thread(place_call, svc, sid, rtp.port)
            target = answer_port(final.body)
            conn = await agent_server.connection()
            await conn.wait_for(lambda c: bool(c.of("start")))
            params = conn.start["start"]["customParameters"]
            assert params["session_id"] == sid and params["provider"] == "sip"
            assert conn.start["start"]["mediaFormat"]["encoding"] == "audio/x-mulaw"
            leg = conn.start["start"]["callSid"]

            # Two seconds of the caller saying 1 kHz, while the greeting plays back.
            samples = tone(1000, 2000, 8000)
            payloads = [ulaw_encode(samples[i : i + 160]) for i in range(0, len(samples), 160)]
            await asyncio.to_thread(rtp.exchange, target, payloads, 0.5)

            # The backend heard the caller, in Twilio's format.
            heard = ulaw_decode(conn.audio())
            assert len(conn.of("media")) >= 80
            assert abs(dominant_frequency(heard[1600:], 8000) - 1000) < 20
            # The caller heard the backend.
            back = rtp.audio()
            frames = [back[i : i + 160] for i in range(0, len(back) - 159, 160)]
            voiced = [f for f in frames if rms(f) > 1000]
            assert len(voiced) >= 50  # ~1.2 s of greeting
            greeting = np.concatenate(voiced)
            assert abs(dominant_frequency(greeting, 8000) - 700) < 20
            # The mark came back once the greeting had been played.
            await conn.wait_for(lambda c: bool(c.of("mark")))
            assert conn.of("mark")[0]["mark"]["name"] == "greeting-played"

            # The backend goes away: no reconnection configured, so the caller gets a BYE.
            leave.set()
            bye = await asyncio.to_thread(
                client.recv_until, lambda m: m.is_request and m.method == "BYE", WAIT
            )
            assert bye.call_id == call.call_id
            client.send(build_response(bye, 200))
        finally:
            rtp.close()
            if client is not None:
                client.close()

    log = await events_of(svc, sid, "session.provider.disconnected")
    types = [e["type"] for e in log]
    assert "session.bridge.connected" in types
    lost = next(e for e in log if e["type"] == "session.bridge.disconnected")
    assert lost["data"]["participant_id"] == leg
    assert lost["data"]["fallback"] == "hangup"
    assert lost["data"]["reason"] == "backend-closed"
    assert lost["data"]["close_code"] == 1011
    assert lost["data"]["url"] == agent_server.url
    gone = next(e for e in log if e["type"] == "session.provider.disconnected")
    assert gone["provider"]["type"] == "sip"
    assert gone["data"]["reason"] == "bridge-closed"
    assert types.index("session.bridge.disconnected") < types.index("session.provider.disconnected")
