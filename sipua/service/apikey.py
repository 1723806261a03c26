"""The HTTP API's bearer key: from ``SIPUA_API_KEY``, or generated once into the data dir."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipua.service.config import Settings

__all__ = ["API_KEY_FILENAME", "ApiKeyError", "ensure_api_key", "keys_equal"]

log = logging.getLogger(__name__)

API_KEY_FILENAME = "api_key"


class ApiKeyError(RuntimeError):
    """The key file exists but cannot be used; the message says what to do."""


def keys_equal(given: str, expected: str) -> bool:
    """Constant-time comparison (does not leak how many leading characters match)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _read_key(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyError(f"cannot read API key file {path}: {exc}") from exc
    if not key or any(not 0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ApiKeyError(
            f"API key file {path} is empty or not printable ASCII; "
            "delete it to generate a new key, or set SIPUA_API_KEY"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("API key file %s is readable by other users; chmod 600 it", path)
    return key


def ensure_api_key(settings: Settings) -> tuple[str, bool]:
    """The API key and whether it was generated just now.

    ``settings.api_key`` (``SIPUA_API_KEY``) wins. Otherwise ``<data_dir>/api_key`` is read,
    or created with a new random key (mode 0600). When the second value is True the caller
    should show the key to the operator once; it is not logged here.
    """
    if settings.api_key:
        return settings.api_key, False
    data_dir = Path(settings.data_dir)
    path = data_dir / API_KEY_FILENAME
    if path.exists():
        return _read_key(path), False
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiKeyError(f"cannot create data directory {data_dir}: {exc}") from exc
    key = secrets.token_urlsafe(32)
    tmp = data_dir / f".{API_KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        # link() fails if the name exists: a concurrent starter's key wins, and a reader never
        # sees a half-written file.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            # No hard links on this filesystem: rename, after re-checking the name is free.
            if path.exists():
                raise FileExistsError(path) from None
            os.rename(tmp, path)
    except FileExistsError:
        return _read_key(path), False
    except OSError as exc:
        raise ApiKeyError(f"cannot write API key file {path}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return key, True
