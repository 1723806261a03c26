"""A webhook endpoint on 127.0.0.1 for tests, with scripted answers (status codes or hangs).

It runs the standard library's threaded HTTP server in a background thread, so it serves both
tests that run the dispatcher in their own event loop and tests that run ``sipua serve`` in
another process. Every request is recorded, whatever it was answered.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"  # hold the request unanswered until released (or the server stops)
MAX_HANG = 60.0  # a hung handler thread never outlives a test by more than this


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    answered: int | str  # the status sent, or HANG
    at: float  # time.monotonic() on arrival


class WebhookReceiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[int | str]] = {}
        self.default: int | str = 200
        self.release = threading.Event()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------------------

    def script(self, path: str, *answers: int | str) -> None:
        """Answer the next requests to ``path`` with these, then with :attr:`default`."""
        with self._cond:
            self._scripts.setdefault(path, deque()).extend(answers)

    def _next_answer(self, path: str) -> int | str:
        with self._cond:
            queue = self._scripts.get(path)
            if queue:
                return queue.popleft()
            return self.default

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._next_answer(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._cond:
                    receiver.requests.append(
                        Received(self.path, headers, body, answer, time.monotonic())
                    )
                    receiver._cond.notify_all()
                if answer == HANG:
                    receiver.release.wait(MAX_HANG)
                    answer = 200
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up on us (its timeout): expected for hangs

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(0.05), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    # -- waiting -------------------------------------------------------------------------

    def wait_for(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        """Block until ``predicate(requests)`` is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    async def until(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def delivered(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx (a hang released later counts as not delivered)."""
        with self._cond:
            return [
                r
                for r in self.requests
                if isinstance(r.answered, int)
                and 200 <= r.answered < 300
                and (path is None or r.path == path)
            ]


@contextmanager
def receiving() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
