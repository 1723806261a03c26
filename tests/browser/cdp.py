"""Headless Chromium driven over the Chrome DevTools Protocol with the ``websockets`` library.

:func:`chromium` starts the browser on a page (its own profile in a temporary directory, a fake
microphone, loopback only) and yields a :class:`Page` to evaluate JavaScript in; the browser
process is stopped when the block ends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.integration.service import require_tool

START_TIMEOUT = 20.0

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Page:
    """One page target's DevTools session."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.console: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                reply = json.loads(await self.ws.recv())
                if reply.get("method") == "Runtime.consoleAPICalled":
                    args = reply["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", "")) for a in args))
                elif reply.get("method") == "Runtime.exceptionThrown":
                    details = reply["params"].get("exceptionDetails", {})
                    self.console.append(f"exception: {details.get('text')} {details}")
                if reply.get("id") == message_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


async def _devtools_port(profile: Path, proc: subprocess.Popen) -> int:
    # With --remote-debugging-port=0 Chromium writes the port it chose into the profile.
    marker = profile / "DevToolsActivePort"
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"chromium exited with status {proc.returncode}")
            if marker.exists():
                text = marker.read_text().split()
                if text:
                    return int(text[0])
            await asyncio.sleep(0.05)


@asynccontextmanager
async def chromium(url: str, profile: Path, log: Path) -> AsyncIterator[Page]:
    binary = require_tool("chromium")
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous run's
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        port = await _devtools_port(profile, proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    targets = (await client.get("/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        break
                    await asyncio.sleep(0.05)
        async with websockets.connect(
            pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=START_TIMEOUT
        ) as ws:
            page = Page(ws)
            await page.call("Runtime.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
