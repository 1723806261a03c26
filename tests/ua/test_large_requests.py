"""RFC 3261 §18.1.1: a request over 1300 octets goes over TCP, not UDP."""

from __future__ import annotations

import asyncio

from integration.sipclient import AsyncUdpClient, frame, parse

from sipua.sip.transaction import TimerConfig
from sipua.transport.manager import ListenConfig
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.events import CallConnected, EventBus
from sipua.ua.media import HeldPortsBackend

from .conftest import FakeSessions


async def test_a_bye_over_1300_octets_goes_over_tcp_to_the_same_next_hop() -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while not reader.at_eof():
            buffer += await reader.read(65536)
            while (message := frame(buffer)) is not None:
                await received.put(message)
        writer.close()

    proxy = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    sessions = FakeSessions()
    sessions.add("s1")
    bus = EventBus()
    connected = asyncio.Event()
    bus.subscribe(lambda e: connected.set() if isinstance(e, CallConnected) else None)
    ua = UserAgent(
        UaConfig(timers=TimerConfig(t1=0.1)),
        ListenConfig(host="127.0.0.1", udp_port=0, tcp_port=0, tls_port=None),
        sessions,
        HeldPortsBackend("127.0.0.1", "127.0.0.1", 30000, 39999),
        bus,
    )
    ua.uas.shutdown_grace = 0.2
    listening = await ua.start()
    udp_port = listening.udp[0][1]
    client = AsyncUdpClient(("127.0.0.1", udp_port))
    try:
        call = client.new_call(f"sip:session_s1@127.0.0.1:{udp_port}")
        # A long route set (loose routing through the "proxy"): the BYE carries it all.
        padding = "x" * 150
        record_route = ", ".join(
            f"<sip:127.0.0.1:{proxy_port};lr;hop={i};pad={padding}>" for i in range(8)
        )
        invite = call.invite(headers=[("Record-Route", record_route)])
        ok = await client.request(invite)
        assert ok.status == 200
        await client.send(call.ack(ok))
        await asyncio.wait_for(connected.wait(), 3)
        assert await ua.uas.end_calls("s1") == 1
        data = await asyncio.wait_for(received.get(), 5)
        assert len(data) > 1300
        bye = parse(data)
        assert bye.method == "BYE"
        assert bye.top_via.startswith("SIP/2.0/TCP ")
        assert len(bye.all("route")) >= 1 and f":{proxy_port};lr" in bye.get("route")
        assert bye.call_id == ok.call_id
    finally:
        client.close()
        await ua.stop()
        proxy.close()
        await proxy.wait_closed()
