"""The ``/demo`` page in headless Chromium (Debian ``chromium``; never skipped), against a real
``sipua serve``: the page streams Chromium's fake microphone to a bridge session, the backend
(on 127.0.0.1) hears it and answers with a tone, the page plays the answer and counts the played
frames; the keypad sends DTMF and "Hang up" ends the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.cdp import Page, chromium
from tests.integration.conftest import assert_clean_stderr
from tests.integration.service import Service, start_service
from tests.service.streams.audio import rms, tone, ulaw_decode, ulaw_encode
from tests.service.streams.backend import Connection, backend

WAIT = 20.0


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = start_service(tmp_path / "data")
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)


async def page_value(page: Page, expression: str, until: Any, timeout: float = WAIT) -> Any:
    """Evaluate ``expression`` in the page until ``until(value)`` holds (bounded)."""
    value = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    value = await page.evaluate(expression)
                except RuntimeError:
                    value = None  # the page is still loading
                if until(value):
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{expression} stayed {value!r}; console: {page.console}") from None


async def test_demo_page_streams_the_microphone_and_plays_the_reply(
    service: Service, tmp_path: Path
) -> None:
    async def agent(conn: Connection) -> None:
        await conn.send_media(ulaw_encode(tone(600, 3000, 8000)))  # 3 s reply

    async with backend("/agent") as agent_server:
        agent_server.script = agent
        session = await asyncio.to_thread(
            service.create_session, mode="ai_agent", media={"bridge_url": agent_server.url}
        )
        stream = session["stream"]
        url = (
            f"{service.http}/demo#url={quote(stream['url'], safe='')}"
            f"&token={quote(stream['token'], safe='')}&autostart=1"
        )
        async with chromium(url, tmp_path / "profile", tmp_path / "chromium.log") as page:
            status = await page_value(page, "window.sipuaDemo && sipuaDemo.status", bool)
            participant = await page_value(page, "sipuaDemo.participant", bool)
            assert (await page.evaluate("sipuaDemo.status")) == "streaming", status
            # The backend hears the fake microphone through sipua...
            conn = await agent_server.connection(timeout=WAIT)
            await conn.wait_for(lambda c: len(c.of("media")) >= 100, timeout=WAIT)
            assert conn.start["start"]["customParameters"]["provider"] == "browser"
            assert conn.start["start"]["callSid"] == participant
            heard = ulaw_decode(conn.audio())
            frames = [heard[i : i + 160] for i in range(0, len(heard) - 159, 160)]
            assert max(rms(f) for f in frames) > 50, "only silence came from the microphone"
            # ...and the page plays its reply: the page's audio worklet counts the 20 ms frames
            # it played out of what arrived, shown in #played-frames.
            played = await page_value(
                page,
                "Number(document.getElementById('played-frames').textContent)",
                lambda v: (v or 0) >= 100,
            )
            received = await page.evaluate("sipuaDemo.received")
            assert received >= played >= 100
            sent = await page.evaluate("Number(document.getElementById('sent-frames').textContent)")
            assert sent >= 100

            await page.evaluate("document.querySelector('#keypad [data-digit=\"5\"]').click()")
            await conn.wait_for(lambda c: bool(c.of("dtmf")), timeout=WAIT)
            assert conn.of("dtmf")[0]["dtmf"]["digit"] == "5"

            await page.evaluate("document.getElementById('stop').click()")
            await page_value(page, "sipuaDemo.status", lambda v: str(v).startswith("closed"))
            assert await page.evaluate("sipuaDemo.status") == "closed 1000 remote-hangup"
            assert await page.evaluate("sipuaDemo.ended") == "remote-hangup"
            await conn.wait_for(lambda c: c.closed.is_set(), timeout=WAIT)
            assert conn.of("stop"), "the bridge did not send stop"
