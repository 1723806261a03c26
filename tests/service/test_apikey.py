from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sipua.service.apikey import ApiKeyError, ensure_api_key, keys_equal
from sipua.service.config import load_settings


def test_configured_key_wins_and_nothing_is_written(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir, api_key="configured-key-0123456789")
    assert ensure_api_key(settings) == ("configured-key-0123456789", False)
    assert not (data_dir / "api_key").exists()


def test_env_key(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("SIPUA_API_KEY", "from-the-environment-0001")
    assert ensure_api_key(load_settings(data_dir=data_dir)) == ("from-the-environment-0001", False)


def test_generated_once_then_reused(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    key, generated = ensure_api_key(settings)
    assert generated is True
    assert len(key) >= 32
    path = data_dir / "api_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key
    assert ensure_api_key(settings) == (key, False)
    assert [p.name for p in data_dir.iterdir()] == ["api_key"]  # no temp files left


def test_existing_file_is_read(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "api_key").write_text("  handwritten-key-abcdef\n")
    assert ensure_api_key(load_settings(data_dir=data_dir)) == ("handwritten-key-abcdef", False)


@pytest.mark.parametrize("content", ["", "\n", "two words\n"])
def test_unusable_file_is_an_error(data_dir: Path, content: str) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "api_key").write_text(content)
    with pytest.raises(ApiKeyError, match="delete it"):
        ensure_api_key(load_settings(data_dir=data_dir))


def test_keys_equal() -> None:
    assert keys_equal("abc", "abc")
    assert not keys_equal("abc", "abd")
    assert not keys_equal("abc", "abcd")
    assert not keys_equal("", "abc")
    assert not keys_equal("ключ", "abc")
