"""A :class:`~sipua.ua.core.UserAgent` running in the test's event loop on 127.0.0.1.

Sessions come from a fake resolver, media from :class:`HeldPortsBackend` (ports
bound, media ignored); tests speak raw SIP to it over UDP with
:class:`integration.sipclient.AsyncUdpClient` (``tests/integration/sipclient.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from integration.sipclient import AsyncUdpClient, SipMessage, UacCall

from sipua.sip.transaction import TimerConfig
from sipua.transport.manager import ListenConfig
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.events import CallConnected, CallEvent, EventBus
from sipua.ua.media import HeldPortsBackend


@dataclass
class FakeSession:
    id: str
    status: str = "active"
    accepting_calls: bool = True
    provider: Any = None


class FakeSessions:
    """The session service's one duty towards the UAS: name a session from a Request-URI user."""

    def __init__(self) -> None:
        self.by_id: dict[str, FakeSession] = {}

    def add(self, session_id: str, **kw: Any) -> FakeSession:
        session = FakeSession(session_id, **kw)
        self.by_id[session_id] = session
        return session

    def resolve_sip_user(self, user: str) -> FakeSession | None:
        return self.by_id.get(user.removeprefix("session_"))


@dataclass
class Harness:
    ua: UserAgent
    sessions: FakeSessions
    port: int
    client: AsyncUdpClient
    events: list[CallEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: CallEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def uri(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.port}"

    async def wait_event(self, kind: type, timeout: float = 3.0) -> Any:
        async def seen() -> Any:
            while True:
                for event in self.events:
                    if isinstance(event, kind):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(seen(), timeout)

    async def connect(
        self, user: str = "session_s1", body: bytes | None = None
    ) -> tuple[UacCall, SipMessage]:
        """A confirmed call: INVITE, 200, ACK; returns the caller's state and the 200."""
        call = self.client.new_call(self.uri(user))
        ok = await self.client.request(call.invite(body))
        assert ok.status == 200, ok.start
        await self.client.send(call.ack(ok))
        await self.wait_event(CallConnected)
        return call, ok


MakeUa = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_ua() -> AsyncIterator[MakeUa]:
    """``await make_ua(t1=..., tcp=True, ipv6=True, answer_delay=..., max_calls_per_session=...)``;
    stopped afterwards. ``tcp`` adds a TCP listener (and so outbound TCP) to the UDP one;
    ``ipv6`` listens on ``::`` as well (``ListenConfig.also_ipv6``, setting ``sip.ipv6``)."""
    started: list[Harness] = []

    async def make(
        *, t1: float = 0.5, t2: float = 4.0, tcp: bool = False, ipv6: bool = False, **config: Any
    ) -> Harness:
        sessions = FakeSessions()
        sessions.add("s1")
        bus = EventBus()
        ua = UserAgent(
            UaConfig(timers=TimerConfig(t1=t1, t2=t2), **config),
            ListenConfig(
                host="127.0.0.1",
                udp_port=0,
                tcp_port=0 if tcp else None,
                tls_port=None,
                also_ipv6=ipv6,
            ),
            sessions,
            HeldPortsBackend("127.0.0.1", "127.0.0.1", 30000, 39999),
            bus,
        )
        ua.uas.shutdown_grace = 0.2  # the test's socket is closed before the UA stops
        listening = await ua.start()
        port = listening.udp[0][1]
        harness = Harness(ua, sessions, port, AsyncUdpClient(("127.0.0.1", port)))
        bus.subscribe(harness.on_event)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.client.close()
        await harness.ua.stop()


@pytest.fixture
async def ua(make_ua: MakeUa) -> Harness:
    return await make_ua()
