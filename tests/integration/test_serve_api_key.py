"""``sipua serve`` without SIPUA_API_KEY: a key generated into the data dir, shown once."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx

from .conftest import StartService

SHOWN = re.compile(r"API key \(shown once, stored in (?P<path>\S+)\): (?P<key>\S+)")


def _sessions_status(http: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=http, headers=headers, timeout=10) as client:
        return client.get("/v1/sessions").status_code


def test_generated_api_key_is_shown_once_and_kept(serve: StartService, tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    assert not data_dir.exists()
    first = serve(data_dir=data_dir, api_key=None)
    assert "SIPUA_API_KEY" not in first.env

    stderr = first.this_run_stderr()
    shown = SHOWN.findall(stderr)
    assert len(shown) == 1, stderr
    ((path, key),) = shown
    assert Path(path) == data_dir / "api_key"
    assert len(key) >= 32
    assert stderr.count(key) == 1  # printed once, and in no log line either

    key_file = data_dir / "api_key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # its owner's only
    assert _sessions_status(first.http, key) == 200
    assert _sessions_status(first.http, "not-" + key) == 401  # the key is what is checked
    assert first.stop() == 0

    second = serve(data_dir=data_dir, api_key=None)
    again = second.this_run_stderr()
    assert "API key" not in again and key not in again, again
    assert key_file.read_text().strip() == key
    assert _sessions_status(second.http, key) == 200
