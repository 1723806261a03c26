"""Start and stop a real ``sipua serve`` for integration tests, on ephemeral loopback ports."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT = 30.0

# The API key services are started with unless a test asks for none (``api_key=None``).
TEST_API_KEY = "test-key-0123456789abcdef"

# What a clean run of sipua serve never logs: a traceback, or an ERROR/CRITICAL line (text or JSON).
FAULT = re.compile(
    r"Traceback \(most recent call last\)|^\S+ \S+ (ERROR|CRITICAL) |\"level\": \"(error|critical)\"",
    re.M,
)


def require_tool(name: str) -> str:
    """The path of a real peer the test needs; the test fails (never skips) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(
            f"{name} is not installed: run the test command from README.md (tools/test.sh installs it)"
        )
    return path


@dataclass
class Service:
    proc: subprocess.Popen
    data_dir: Path
    ports: dict
    api_key: str  # "" when started without SIPUA_API_KEY: the key is the service's own
    stderr_path: Path
    env: dict = field(default_factory=dict)
    stderr_offset: int = 0  # where this run's stderr starts in ``stderr_path``

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.http, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10
        )

    def create_session(self, **body) -> dict:
        body.setdefault("mode", "ai_agent")
        body.setdefault("source_language", "en")
        with self.client() as c:
            r = c.post("/v1/sessions", json=body)
            assert r.status_code == 201, r.text
            return r.json()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def this_run_stderr(self) -> str:
        """What this process wrote (a restart on the same data dir appends to the same file)."""
        with open(self.stderr_path, "rb") as f:
            f.seek(self.stderr_offset)
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_service(
    data_dir: Path, *extra: str, env: dict | None = None, api_key: str | None = TEST_API_KEY
) -> Service:
    """Run ``sipua serve`` bound to 127.0.0.1 with ephemeral ports; wait for its ready line.

    ``api_key=None`` leaves SIPUA_API_KEY unset, so the service reads (or generates and
    prints) ``<data_dir>/api_key``, and ``Service.api_key`` is "" (the test reads the key).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir / "serve.stderr"
    # The developer's own SIPUA_* settings must not leak into the service under test.
    inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPUA_")}
    configured = {} if api_key is None else {"SIPUA_API_KEY": api_key}
    full_env = {**inherited, **configured, **(env or {})}
    cmd = [
        sys.executable,
        "-m",
        "sipua",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-host",
        "127.0.0.1",
        "--sip-port",
        "0",
        "--tls-port",
        "0",
        "--http-port",
        "0",
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    for _ in range(3):
        try:
            return _start(cmd, data_dir, stderr_path, full_env)
        except _PortTaken:
            # With --sip-port 0 TCP takes the number UDP was given, which another process may
            # hold for TCP: start again on new ephemeral ports.
            continue
    raise AssertionError(f"sipua serve found its ports taken three times:\n{_tail(stderr_path)}")


class _PortTaken(Exception):
    pass


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def _start(cmd: list[str], data_dir: Path, stderr_path: Path, full_env: dict) -> Service:
    offset = stderr_path.stat().st_size if stderr_path.exists() else 0
    with open(stderr_path, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=full_env)
    deadline = time.monotonic() + READY_TIMEOUT
    assert proc.stdout is not None
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "ready":
            return Service(
                proc,
                data_dir,
                msg["ports"],
                full_env.get("SIPUA_API_KEY", ""),
                stderr_path,
                full_env,
                offset,
            )
    proc.kill()
    code = proc.wait(5)
    proc.stdout.close()
    with open(stderr_path, "rb") as f:
        f.seek(offset)
        this_run = f.read().decode(errors="replace")
    if code == 1 and "cannot start" in this_run and "already in use" in this_run.lower():
        raise _PortTaken()
    raise AssertionError(
        f"sipua serve did not become ready (exit status {code}): {line!r}\n"
        f"{stderr_path.read_text(errors='replace')}"
    )


_SIPP_COUNTS = re.compile(r"^\s*(Successful call|Failed call)\s*\|\s*\d+\s*\|\s*(\d+)", re.M)


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str


def run_sipp(
    target: str, *args: str, timeout: float = 120.0, cwd: Path | None = None
) -> SippResult:
    """Run SIPp to completion (bounded by its own -timeout and ours) and read its final counts."""
    sipp = require_tool("sipp")
    cmd = [sipp, target, "-nostdin", "-timeout", str(int(timeout - 5)), "-timeout_error", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    counts = dict(_SIPP_COUNTS.findall(out))
    return SippResult(
        proc.returncode,
        int(counts.get("Successful call", 0)),
        int(counts.get("Failed call", 0)),
        out,
    )


def assert_clean_stderr(service: Service) -> None:
    """A bad message must become a response, never a crash in a handler."""
    text = service.stderr()
    match = FAULT.search(text)
    assert match is None, f"sipua serve logged a fault:\n{text[max(0, match.start() - 2000) :]}"


StartService = Callable[..., Service]


def isolate_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer SIPUA_* settings and no writes to the real home."""
    for name in list(os.environ):
        if name.upper().startswith("SIPUA_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))


def serving(tmp_path: Path) -> Iterator[StartService]:
    """The body of the ``serve`` fixtures: every service started is stopped, then its stderr checked."""
    started: list[Service] = []

    def start(
        *flags: str,
        env: dict | None = None,
        data_dir: Path | None = None,
        api_key: str | None = TEST_API_KEY,
    ) -> Service:
        svc = start_service(
            data_dir or tmp_path / f"data{len(started)}", *flags, env=env, api_key=api_key
        )
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()
    for svc in started:
        assert_clean_stderr(svc)
