"""The ``[security]`` section of the settings (see docs/SECURITY.md for every option).

Kept apart from :mod:`sipua.service.config`, which only mounts it, so the
security options, their validation and their defaults live in one place. The
defaults keep the quick start working: authentication is off, nobody is
allowlisted out, and only scanner floods and repeated authentication failures
are acted on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from sipua.sip.credentials import ALGORITHMS
from sipua.ua.netlist import parse_network
from sipua.ua.security import DEFAULT_SCANNER_USER_AGENTS

__all__ = ["SecuritySettings", "SipUserSettings", "TlsPolicySettings"]

DigestAlgorithmName = Literal["SHA-256", "MD5", "SHA-512-256"]
# A digest username travels in a quoted-string: no quotes, backslashes or controls.
_USERNAME_RE = re.compile(r'^[^"\\\x00-\x1f\x7f]{1,128}$')
_REALM_RE = re.compile(r'^[^"\\\x00-\x1f\x7f]{1,128}$')
_METHOD_RE = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]{1,32}$")
_SESSION_ID_RE = re.compile(r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def split_list(value: Any) -> Any:
    """``'["a","b"]'`` (JSON) or ``'a, b'`` from the environment; lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON list: {exc.msg}") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _check_networks(value: list[str]) -> list[str]:
    return [str(parse_network(v)) for v in value]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hex(length: int) -> Any:
    return Field(None, pattern=rf"^[0-9a-fA-F]{{{length}}}$")


class SipUserSettings(_Section):
    """One SIP user from the configuration: a password (hashed at start) or HA1 values."""

    username: str = Field(pattern=_USERNAME_RE.pattern)
    password: SecretStr | None = Field(
        None, description="Hashed into HA1 values at start; prefer giving ha1_* values."
    )
    ha1_md5: str | None = _hex(32)
    ha1_sha256: str | None = _hex(64)
    ha1_sha512_256: str | None = _hex(64)
    realm: str | None = Field(
        None, pattern=_REALM_RE.pattern, description="Defaults to security.realm."
    )
    allowed_ips: list[str] = Field(
        default_factory=list, description="CIDR networks this user may call from; [] = any."
    )
    session_id: str | None = Field(None, pattern=_SESSION_ID_RE.pattern)
    organization: str | None = Field(None, min_length=1, max_length=128)

    _networks = field_validator("allowed_ips")(_check_networks)

    @model_validator(mode="after")
    def _one_secret(self) -> SipUserSettings:
        hashes = (self.ha1_md5, self.ha1_sha256, self.ha1_sha512_256)
        if self.password is None and not any(hashes):
            raise ValueError(f"user {self.username!r} needs a password or an ha1_* value")
        if self.password is not None and any(hashes):
            raise ValueError(f"user {self.username!r}: give a password or ha1_* values, not both")
        return self


class TlsPolicySettings(_Section):
    """TLS beyond the listener's certificate (``sip.tls_cert``) and ``sip.tls_min_version``."""

    verify_certificate: bool = Field(
        True, description="Verify the certificate of peers sipua connects to over TLS."
    )
    ca_file: Path | None = Field(
        None, description="CA bundle for outbound TLS; the system store when unset."
    )
    client_certificates: Literal["off", "request", "require"] = Field(
        "off", description="Ask TLS clients for a certificate signed by client_ca_file."
    )
    client_ca_file: Path | None = None

    @field_validator("ca_file", "client_ca_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _client_ca(self) -> TlsPolicySettings:
        if self.client_certificates != "off" and self.client_ca_file is None:
            raise ValueError("client_certificates needs client_ca_file")
        return self


class SecuritySettings(_Section):
    """Who may reach a session, and how sipua holds up against hostile traffic."""

    auth: Literal["off", "required"] = Field(
        "off", description="'required': digest-authenticate every request (not ACK/CANCEL)."
    )
    realm: str = Field("sipua", pattern=_REALM_RE.pattern)
    challenge: Literal[401, 407] = Field(
        401, description="401 (WWW-Authenticate) as a UAS, or 407 (Proxy-Authenticate)."
    )
    algorithms: Annotated[list[DigestAlgorithmName], NoDecode] = Field(
        default_factory=lambda: ["SHA-256", "MD5"],
        min_length=1,
        description="Offered in this order, one challenge each. SIPp 3.6 and old phones "
        "read only the first: put MD5 first for them.",
    )
    nonce_lifetime: float = Field(300.0, ge=10, le=86400)
    uri_check: Literal["strict", "host"] = Field(
        "strict",
        description="'host' also accepts a digest uri of sip:<host>:<port>, as SIPp sends "
        "without -auth_uri.",
    )
    unauthenticated_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Methods let through without credentials, e.g. OPTIONS."
    )
    users: list[SipUserSettings] = Field(default_factory=list)
    allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDR networks allowed to reach sipua; [] = everyone."
    )
    allowlist_action: Literal["reject", "drop"] = "reject"
    max_auth_failures: int = Field(5, ge=0, description="Failures that ban a source; 0: never.")
    failure_window: float = Field(60.0, gt=0)
    ban_time: float = Field(300.0, ge=0)
    ban_action: Literal["drop", "reject"] = "drop"
    scanner_user_agents: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SCANNER_USER_AGENTS)
    )
    ban_scanners: bool = True
    scan_requests_per_second: float = Field(20.0, ge=0)
    scan_request_burst: float = Field(100.0, ge=1)
    requests_per_second: float = Field(0.0, ge=0)
    request_burst: float = Field(1000.0, ge=1)
    max_transactions_per_source: int = Field(0, ge=0)
    max_headers: int = Field(128, ge=0)
    max_transactions: int = Field(0, ge=0)
    overload_lag: float = Field(0.5, ge=0)
    overload_queue_delay: float = Field(
        0.2, ge=0, le=10, description="Seconds a SIP datagram may wait to be read (0 = not used)."
    )
    retry_after: int = Field(5, ge=1, le=3600)
    tls: TlsPolicySettings = Field(default_factory=TlsPolicySettings)

    @field_validator(
        "algorithms", "unauthenticated_methods", "allowlist", "scanner_user_agents", mode="before"
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("algorithms must not repeat")
        missing = [a for a in value if a.upper() not in ALGORITHMS]
        if missing:
            raise ValueError(f"this Python's hashlib lacks {', '.join(missing)}")
        return value

    @field_validator("unauthenticated_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        for method in value:
            if not _METHOD_RE.match(method):
                raise ValueError(f"not a SIP method: {method!r}")
        methods = [m.upper() for m in value]
        if "INVITE" in methods:
            raise ValueError("INVITE cannot be let through without authentication")
        return methods

    _allowlist = field_validator("allowlist")(_check_networks)

    @model_validator(mode="after")
    def _users_unique(self) -> SecuritySettings:
        seen: set[tuple[str, str]] = set()
        for user in self.users:
            key = (user.username, user.realm or self.realm)
            if key in seen:
                raise ValueError(f"user {user.username!r} is given twice for realm {key[1]!r}")
            seen.add(key)
        return self
