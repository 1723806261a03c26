"""sipua configuration: defaults < TOML file < ``SIPUA_*`` environment < explicit overrides.

Every option has a safe default, so ``load_settings()`` with no file and no environment gives a
working configuration. Nested options use ``__`` in environment variables
(``SIPUA_SIP__UDP_PORT=5070``) and ``[tables]`` in the TOML file::

    data_dir = "/var/lib/sipua"

    [sip]
    udp_port = 5070
    transports = ["udp", "tcp"]

    [media]
    rtp_port_min = 20000
    rtp_port_max = 30000

List options may be given in the environment as JSON (``'["udp","tcp"]'``) or comma-separated
(``udp,tcp``). Relative paths in the TOML file are resolved against the file's directory.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from sipua import __version__
from sipua.service.models import (
    CODECS,
    MediaApp,
    SrtpPolicy,
    normalize_codec_list,
)
from sipua.service.security_config import SecuritySettings
from sipua.service.security_config import split_list as _split_list

__all__ = [
    "BridgeSettings",
    "ConfigError",
    "HttpSettings",
    "MediaSettings",
    "MetricsSettings",
    "Settings",
    "SipSettings",
    "StreamSettings",
    "TwilioSettings",
    "WebhookSettings",
    "default_data_dir",
    "load_settings",
    "primary_address",
]

Transport = Literal["udp", "tcp", "tls"]
_DEFAULT_TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# An API key travels in an HTTP header: visible ASCII, no spaces.
_API_KEY_RE = re.compile(r"^[\x21-\x7e]+$")
API_KEY_MIN_LENGTH = 16


class ConfigError(ValueError):
    """The configuration could not be loaded; ``str(err)`` is meant for the operator."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/sipua``, which is ``~/.local/share/sipua`` on a default system."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # XDG Base Directory spec: a relative XDG_DATA_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "sipua"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def nameserver_address(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as (address, port); port 53 by default."""
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


class SipSettings(_Section):
    """SIP listeners and protocol timers (RFC 3261 17.1.1.1: T1, T2, T4)."""

    host: str = Field("0.0.0.0", description="Address the SIP listeners bind to.")
    udp_port: int = Field(5060, ge=0, le=65535, description="0 picks an ephemeral port.")
    tcp_port: int = Field(5060, ge=0, le=65535)
    tls_port: int = Field(5061, ge=0, le=65535)
    transports: Annotated[list[Transport], NoDecode] = Field(
        default_factory=lambda: list(_DEFAULT_TRANSPORTS), min_length=1
    )
    ipv6: bool = Field(
        False, description="Also listen on IPv6: '::', or '::1' when host is IPv4 loopback."
    )
    t1: float = Field(0.5, gt=0, le=60, description="RTT estimate, seconds.")
    t2: float = Field(4.0, gt=0, le=600, description="Maximum retransmit interval, seconds.")
    t4: float = Field(5.0, gt=0, le=600, description="Maximum time a message lingers, seconds.")
    max_message_size: int = Field(65535, ge=1024, le=16 * 1024 * 1024)
    tcp_idle_timeout: float = Field(300.0, gt=0)
    max_connections_per_peer: int = Field(64, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    user_agent: str = Field(f"sipua/{__version__}", min_length=1, max_length=256)
    ack_timeout: float = Field(
        32.0,
        gt=0,
        description="How long a 2xx is retransmitted waiting for ACK; defaults to 64*T1 "
        "(RFC 3261 13.3.1.4).",
    )
    ringing: bool = Field(True, description="Send 180 Ringing before 200 OK.")
    answer_delay: float = Field(0.0, ge=0, le=300, description="Seconds before answering.")
    max_calls_per_session: int = Field(
        100, ge=1, le=10000, description="More calls into one session get 480 until one leaves."
    )
    trace_calls: int = Field(
        10000,
        ge=0,
        le=1_000_000,
        description="SIP traces: the messages of this many recent calls are kept in memory for "
        "GET /v1/sessions/{id}/sip-trace (0 turns tracing off).",
    )
    trace_messages: int = Field(200, ge=1, le=10000, description="Messages kept per call.")
    dns_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Nameservers for outbound calls' RFC 3263 lookups (NAPTR, SRV, A/AAAA): "
        "'IP' or 'IP:PORT' ('[IPv6]:PORT'); empty: the system's resolver configuration.",
    )
    transfer_timeout: float = Field(
        60.0,
        ge=1,
        le=600,
        description="Seconds a transfer (REFER) has to report its final outcome in a NOTIFY "
        "before it counts as failed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _ack_timeout_follows_t1(cls, data: Any) -> Any:
        # RFC 3261 13.3.1.4: the UAS gives up on the ACK after 64*T1, so a configured T1
        # moves the default with it unless ack_timeout is set explicitly.
        if isinstance(data, Mapping) and "ack_timeout" not in data and "t1" in data:
            try:
                t1 = float(data["t1"])
            except (TypeError, ValueError):
                return data  # the t1 field reports the error
            if t1 > 0:
                return {**data, "ack_timeout": 64 * t1}
        return data

    @field_validator("transports", mode="before")
    @classmethod
    def _parse_transports(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _parse_dns_servers(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers_are_addresses(cls, value: list[str]) -> list[str]:
        for server in value:
            try:
                nameserver_address(server)
            except ValueError:
                raise ValueError(
                    f"dns_servers: {server!r} is not 'IP', 'IP:PORT' or '[IPv6]:PORT'"
                ) from None
        return value

    @field_validator("transports")
    @classmethod
    def _unique_transports(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("transports must not repeat")
        return value

    @field_validator("tls_min_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # TOML `tls_min_version = 1.2` is a float; accept it as the string it means.
        if isinstance(value, float):
            return f"{value:.1f}"
        return value

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _check(self) -> SipSettings:
        if self.t2 < self.t1:
            raise ValueError(f"t2 ({self.t2}) must not be smaller than t1 ({self.t1})")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        return self


class HttpSettings(_Section):
    """The HTTP API and media stream endpoint."""

    host: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    port: int = Field(8080, ge=0, le=65535, description="0 picks an ephemeral port.")
    public_url: AnyHttpUrl | None = Field(
        None,
        description="Base URL clients reach the HTTP server at, when behind a proxy "
        "(e.g. https://voice.example.com). Stream URLs use ws(s) on it.",
    )


class MediaSettings(_Section):
    """RTP ports, codecs and the default media application."""

    enabled: bool = Field(
        True, description="Process RTP; false only holds the ports (signalling-only load tests)."
    )
    rtp_port_min: int = Field(10000, ge=1, le=65535)
    rtp_port_max: int = Field(20000, ge=1, le=65535)
    symmetric_rtp: bool = Field(True, description="Send RTP to where the peer's RTP comes from.")
    default_app: MediaApp = "echo"
    codecs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(CODECS),
        description="Codecs offered/accepted, in order of preference.",
    )
    srtp: SrtpPolicy = "optional"

    @field_validator("codecs", mode="before")
    @classmethod
    def _parse_codecs(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("codecs")
    @classmethod
    def _check_codecs(cls, value: list[str]) -> list[str]:
        return normalize_codec_list(value)

    @model_validator(mode="after")
    def _check_ports(self) -> MediaSettings:
        if self.rtp_port_min >= self.rtp_port_max:
            raise ValueError(
                f"rtp_port_min ({self.rtp_port_min}) must be smaller than "
                f"rtp_port_max ({self.rtp_port_max})"
            )
        # RFC 3550 11: RTP uses an even port and RTCP the next odd one.
        if self.rtp_port_min % 2:
            raise ValueError(f"rtp_port_min ({self.rtp_port_min}) must be even")
        return self


class WebhookSettings(_Section):
    """Webhook delivery of session events (see docs/WEBHOOKS.md)."""

    default_url: AnyHttpUrl | None = Field(
        None,
        description="Organization-level webhook URL for sessions created without webhook_url.",
    )
    secret: str | None = Field(
        None,
        repr=False,
        min_length=16,
        description="Signs deliveries to default_url; without it they are signed with each "
        "session's own webhook_secret.",
    )
    timeout: float = Field(5.0, gt=0, le=120, description="Seconds per delivery attempt.")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts per event, first included.")
    initial_backoff: float = Field(0.5, gt=0, le=3600, description="Seconds before the 2nd try.")
    max_backoff: float = Field(60.0, gt=0, le=86400, description="Cap on the wait between tries.")
    max_concurrency: int = Field(
        64, ge=1, le=10000, description="Deliveries in flight at once, all sessions together."
    )
    max_queue_per_session: int = Field(
        1000, ge=1, description="Undelivered events a session may hold; more are marked failed."
    )
    max_pending: int = Field(
        100_000, ge=1, description="Undelivered events held in memory for all sessions together."
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> WebhookSettings:
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must not be smaller than initial_backoff")
        return self


class MetricsSettings(_Section):
    """The Prometheus endpoint, ``GET /metrics``."""

    enabled: bool = True
    token: str | None = Field(
        None,
        repr=False,
        min_length=16,
        description="When set, /metrics needs 'Authorization: Bearer <token>'; open otherwise.",
    )


class StreamSettings(_Section):
    """Media stream WebSockets: Twilio, Telnyx and browsers (see docs/STREAMS.md)."""

    start_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds a provider has to send its 'start' message."
    )
    send_ahead_ms: int = Field(
        60,
        ge=20,
        le=1000,
        description="How far ahead of real time audio may be sent to a stream peer (its "
        "playout buffer absorbs our jitter); on average it is never sent faster than real time.",
    )
    demo: bool = Field(True, description="Serve the browser demo page at /demo.")
    token_ttl: float = Field(
        86400.0,
        ge=0,
        le=366 * 86400,
        description="Seconds after a session's creation during which its stream token admits "
        "new streams (streams already connected are not cut); 0: the token never expires.",
    )


class TwilioSettings(_Section):
    """Twilio media streams."""

    auth_token: str | None = Field(
        None,
        repr=False,
        min_length=1,
        description="The Twilio account's auth token: when set, Twilio stream handshakes must "
        "carry a valid X-Twilio-Signature.",
    )


class BridgeSettings(_Section):
    """The ``bridge`` media app: a WebSocket per participant to the session's bridge_url."""

    format: Literal["twilio", "l16"] = Field(
        "twilio",
        description="'twilio': Twilio Media Streams messages with μ-law 8 kHz; 'l16': the same "
        "messages with 16-bit little-endian PCM at 16 kHz.",
    )
    fallback: Literal["hangup", "continue", "echo"] = Field(
        "hangup",
        description="When the backend is gone for good: hang up the participant, continue "
        "(silence), or echo the participant's audio.",
    )
    connect_timeout: float = Field(5.0, gt=0, le=60, description="Seconds per connection attempt.")
    reconnect_attempts: int = Field(
        2, ge=0, le=10, description="Reconnections after the backend closes or fails."
    )
    reconnect_backoff: float = Field(
        0.5, ge=0, le=30, description="Seconds before the first reconnection; doubles after."
    )


# The TOML layer of the settings being built by load_settings(); a context variable keeps
# concurrent loads (threads, tasks) apart without changing how Settings() itself behaves.
_toml_layer: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sipua_toml_layer", default=None
)


class _TomlLayer(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole layer at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_layer.get() or {})


class Settings(BaseSettings):
    """All sipua options. Build with :func:`load_settings`; ``Settings()`` reads env only."""

    model_config = SettingsConfigDict(
        env_prefix="SIPUA_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir, description="Where the database and API key live."
    )
    api_key: str | None = Field(
        None,
        repr=False,
        description="Bearer key for the HTTP API; generated into <data_dir>/api_key if unset.",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="'json' writes one JSON object per log line (session_id, call_id …)."
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio", description="'uvloop' needs the uvloop extra (pip install 'sipua[uvloop]')."
    )
    public_host: str | None = Field(
        None,
        description="Host name used in SIP URIs and stream URLs; derived from sip.host if unset.",
    )
    sip: SipSettings = Field(default_factory=SipSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: overrides > environment > TOML > field defaults.
        return (init_settings, env_settings, _TomlLayer(settings_cls))

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None  # an empty SIPUA_API_KEY means "not set": a key is generated
        if not _API_KEY_RE.match(value):
            raise ValueError("api_key must be printable ASCII without spaces")
        if len(value) < API_KEY_MIN_LENGTH:
            raise ValueError(f"api_key must be at least {API_KEY_MIN_LENGTH} characters")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level == "warn":
            level = "warning"
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("public_host")
    @classmethod
    def _check_public_host(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        host = value.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        problem = "public_host must be a host name or an IP address, without port"
        if ":" in host:  # only an IPv6 literal may contain colons
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(problem) from None
        elif not re.fullmatch(r"[A-Za-z0-9.\-]+", host) or len(host) > 253:
            raise ValueError(problem)
        return host

    def resolved_public_host(self) -> str:
        """The host put in SIP URIs and stream URLs (no brackets around IPv6 literals).

        ``public_host`` when set; else ``sip.host`` unless it is a wildcard address, in which
        case the machine's primary address (see :func:`primary_address`).
        """
        if self.public_host:
            return self.public_host
        host = self.sip.host.strip().strip("[]")
        try:
            unspecified = host == "" or ipaddress.ip_address(host).is_unspecified
        except ValueError:
            unspecified = False  # a host name
        if not unspecified:
            return host
        return primary_address(ipv6=":" in host)


def primary_address(*, ipv6: bool = False) -> str:
    """The local address of the default route, found without sending any packet.

    ``connect()`` on a UDP socket only selects a route and a source address. Falls back to the
    loopback address when there is no route (e.g. an isolated container).
    """
    families: list[tuple[socket.AddressFamily, str, str]] = [
        (socket.AF_INET, "192.0.2.1", "127.0.0.1")  # RFC 5737 TEST-NET-1
    ]
    if ipv6:
        families.insert(0, (socket.AF_INET6, "2001:db8::1", "::1"))  # RFC 3849
    for family, probe, _ in families:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                address = str(sock.getsockname()[0]).split("%", 1)[0]
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_unspecified:
            return address
    return families[-1][2]


_SECTIONS = frozenset({"sip", "http", "media", "webhooks", "metrics", "security"})
_PATH_KEYS = (
    ("data_dir",),
    ("sip", "tls_cert"),
    ("sip", "tls_key"),
    ("security", "tls", "ca_file"),
    ("security", "tls", "client_ca_file"),
)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    base = path.parent
    for keys in _PATH_KEYS:
        table: Any = data
        for key in keys[:-1]:
            table = table.get(key) if isinstance(table, dict) else None
        if isinstance(table, dict):
            value = table.get(keys[-1])
            if isinstance(value, str) and value and not value.startswith("~"):
                path_value = Path(value)
                if not path_value.is_absolute():
                    table[keys[-1]] = str(base / path_value)
    return data


def _nest_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sip__udp_port": 5070}`` -> ``{"sip": {"udp_port": 5070}}``; ``None`` values dropped."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        parts = key.split("__")
        table = nested
        for part in parts[:-1]:
            existing = table.get(part)
            if not isinstance(existing, dict):
                existing = {}
                table[part] = existing
            table = existing
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(table.get(leaf), dict):
            table[leaf].update(value)
        elif isinstance(value, Mapping):
            table[leaf] = {k: v for k, v in value.items() if v is not None}
        else:
            table[leaf] = value
    return nested


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        path = [str(part) for part in error["loc"] if isinstance(part, str)]
        loc = ".".join(str(part) for part in error["loc"]) or "settings"
        msg = error["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        # Name the environment variable for a leaf option; a section-level check (loc is just
        # the section) has no single variable.
        env = f" [SIPUA_{'__'.join(path).upper()}]" if path and path[-1] not in _SECTIONS else ""
        given = error.get("input")
        secret = "api_key" in path or path[-1:] in (["secret"], ["token"], ["password"])
        shown = "" if secret or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {loc}{env}: {msg}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from an optional TOML file, ``SIPUA_*`` variables and explicit overrides.

    Precedence: ``overrides`` > environment > TOML file > defaults. Overrides are meant for CLI
    flags: ``None`` values are ignored (flag not given), and nested options are spelled with
    ``__`` (``sip__udp_port=5070``) or as a mapping (``sip={"udp_port": 5070}``).

    Raises :class:`ConfigError` with one line per invalid option.
    """
    toml = _read_toml(Path(config_file).expanduser().absolute()) if config_file else {}
    token = _toml_layer.set(toml)
    try:
        return Settings(**_nest_overrides(overrides))
    except ValidationError as exc:
        source = f" (config file {config_file})" if config_file is not None else ""
        raise ConfigError(_describe(exc) + source) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        _toml_layer.reset(token)
