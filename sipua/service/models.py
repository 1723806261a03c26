"""Session data: the create request, the stored :class:`Session`, and the API response.

Validation lives here so that every entry point (HTTP, CLI, tests) rejects the same inputs with
the same field-level messages. Values that depend on server settings (default codecs, SRTP
policy, media app) are optional in the request and filled in by
:class:`sipua.service.sessions.SessionService` when the session is created, so a stored
:class:`Session` always holds the effective values.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    SerializationInfo,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sipua.media.play import tone_frequencies
from sipua.sip.errors import ParseError
from sipua.sip.uri import parse_uri

__all__ = [
    "CODECS",
    "CRYPTO_SUITES",
    "METADATA_MAX_BYTES",
    "MediaApp",
    "MediaOptions",
    "ProviderConfig",
    "Session",
    "SessionCreate",
    "SessionMode",
    "SessionPage",
    "SessionResponse",
    "SessionStatus",
    "SipAddresses",
    "SipEndpoint",
    "DialResponse",
    "SipProvider",
    "SrtpOptions",
    "SrtpPolicy",
    "StreamInfo",
    "TelnyxProvider",
    "TransferCreate",
    "TransferResponse",
    "TwilioProvider",
    "new_webhook_secret",
    "normalize_codec_list",
    "normalize_language",
]

# ---------------------------------------------------------------------------------------------
# Shared vocabulary (also used by config.py)

CODECS: tuple[str, ...] = ("opus", "G722", "PCMU", "PCMA")
_CODEC_BY_LOWER = {c.lower(): c for c in CODECS}
CryptoSuite = Literal[
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
]
# Default preference: the RFC 4568 mandatory suite first (widest interop), then the rest.
CRYPTO_SUITES: tuple[CryptoSuite, ...] = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)
SrtpPolicy = Literal["required", "optional", "off"]
MediaApp = Literal["echo", "record", "play", "bridge", "conference"]
SipTransport = Literal["udp", "tcp", "tls"]

METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 32
METADATA_KEY_MAX = 256
URL_MAX = 2048
_MASK = "**********"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


WEBHOOK_SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A per-session webhook signing secret: ``whsec_`` + 256 random bits, URL-safe."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


def normalize_codec_list(names: Iterable[str]) -> list[str]:
    """Canonical spelling of codec names (case-insensitive input); rejects unknown and repeats."""
    result: list[str] = []
    for name in names:
        codec = _CODEC_BY_LOWER.get(str(name).strip().lower())
        if codec is None:
            raise PydanticCustomError(
                "codec",
                "unsupported codec '{codec}'; supported: {supported}",
                {"codec": name, "supported": ", ".join(CODECS)},
            )
        if codec in result:
            raise PydanticCustomError(
                "codec_repeated", "codec {codec} is listed twice", {"codec": codec}
            )
        result.append(codec)
    if not result:
        raise PydanticCustomError("too_short", "at least one codec is required")
    return result


# BCP-47 subset: language, optional script, optional region, variants. Enough to catch typos
# ("english", "en-") without an IANA registry lookup.
_LANGUAGE_RE = re.compile(
    r"[a-z]{2,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|\d{3}))?(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*",
    re.IGNORECASE,
)


def normalize_language(value: str) -> str:
    """``en_us`` -> ``en-US``, ``zh-hans-cn`` -> ``zh-Hans-CN``; raises on a malformed tag."""
    tag = value.strip().replace("_", "-")
    if len(tag) > 35 or not _LANGUAGE_RE.fullmatch(tag):
        raise PydanticCustomError(
            "language_tag",
            "must be a BCP-47 language tag such as 'en', 'pt-BR' or 'zh-Hans-CN'",
        )
    parts = tag.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())  # region
        else:
            out.append(part.lower())
    return "-".join(out)


def _source_language(value: str) -> str:
    if value.strip().lower() == "auto":
        return "auto"
    return normalize_language(value)


def _target_language(value: str) -> str:
    if value.strip().lower() == "auto":
        raise PydanticCustomError(
            "language_auto", "'auto' is only allowed as source_language, not as target_language"
        )
    return normalize_language(value)


def _url_check(schemes: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        url = value.strip()
        if len(url) > URL_MAX:
            raise PydanticCustomError(
                "url_too_long", "URL must be at most {max} characters", {"max": URL_MAX}
            )
        if _CONTROL_RE.search(url) or " " in url:
            raise PydanticCustomError(
                "url_parsing", "URL must not contain spaces or control characters"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise PydanticCustomError("url_parsing", "not a valid URL") from None
        if parts.scheme.lower() not in schemes:
            raise PydanticCustomError(
                "url_scheme",
                "URL scheme must be {schemes}",
                {"schemes": " or ".join(repr(s) for s in schemes)},
            )
        if not parts.hostname:
            raise PydanticCustomError("url_parsing", "URL must include a host")
        return url

    return AfterValidator(check)


WsUrl = Annotated[str, _url_check(("ws", "wss")), Field(json_schema_extra={"format": "uri"})]
HttpUrlStr = Annotated[
    str, _url_check(("http", "https")), Field(json_schema_extra={"format": "uri"})
]
SourceLanguage = Annotated[str, AfterValidator(_source_language)]
TargetLanguage = Annotated[str, AfterValidator(_target_language)]


def _no_control(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise PydanticCustomError("control_characters", "must not contain control characters")
    return value


SafeText = Annotated[str, AfterValidator(_no_control)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Request


class SessionMode(StrEnum):
    """What the session does with the call's audio."""

    BIDIRECTIONAL_TRANSLATION = "bidirectional_translation"
    UNIDIRECTIONAL_TRANSLATION = "unidirectional_translation"
    AI_AGENT = "ai_agent"
    TRANSCRIPTION = "transcription"
    CONFERENCE = "conference"
    ECHO = "echo"

    @property
    def is_translation(self) -> bool:
        return self in (
            SessionMode.BIDIRECTIONAL_TRANSLATION,
            SessionMode.UNIDIRECTIONAL_TRANSLATION,
        )


class SessionStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class SrtpOptions(_Model):
    """SDES-SRTP (RFC 4568) policy for the call's media."""

    enabled: SrtpPolicy = Field(
        "optional",
        description="'required' rejects plain RTP, 'optional' uses SRTP when the peer offers "
        "it, 'off' never encrypts. true means 'required', false means 'off'.",
    )
    crypto_suites: list[CryptoSuite] = Field(
        default_factory=lambda: list(CRYPTO_SUITES),
        min_length=1,
        max_length=len(CRYPTO_SUITES),
        description="Accepted crypto suites in order of preference.",
    )

    @field_validator("enabled", mode="before")
    @classmethod
    def _bool_policy(cls, value: Any) -> Any:
        if value is True:
            return "required"
        if value is False:
            return "off"
        return value

    @field_validator("crypto_suites")
    @classmethod
    def _unique_suites(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("suite_repeated", "crypto suites must not repeat")
        return value


class SipEndpoint(_Model):
    """One place an outbound session is called at; tried in priority order (lower first)."""

    uri: SafeText = Field(
        max_length=1024,
        pattern=r"^(?i:sips?):\S+$",
        description="sip: or sips: URI of the PBX or trunk (';transport=tcp|tls' honoured).",
        examples=["sips:+15551234567@pbx-eu.example.com"],
    )
    priority: int = Field(0, ge=0, le=1000, description="Lower is tried first.")
    region: SafeText | None = Field(None, max_length=64, examples=["eu-west"])


class SipProvider(_Model):
    """Calls reach the session over SIP (a PBX or SIP trunk dials the session URI)."""

    type: Literal["sip"] = "sip"
    transport: SipTransport = Field("tls", description="Transport the peer is expected to use.")
    codecs: list[str] | None = Field(
        None,
        description="Allowed codecs in order of preference (opus, G722, PCMU, PCMA); "
        "defaults to the server's media.codecs.",
        examples=[["opus", "PCMU"]],
    )
    srtp: SrtpOptions | None = Field(
        None, description="Defaults to the server's media.srtp policy with every crypto suite."
    )
    sip_uri: SafeText | None = Field(
        None,
        max_length=1024,
        pattern=r"^(?i:sips?):\S+$",
        description="Where to call for outbound sessions (sip: or sips: URI): sipua dials it "
        "when the session is created, before any of 'endpoints'.",
    )
    endpoints: list[SipEndpoint] | None = Field(
        None,
        max_length=10,
        description="More places to call, in priority order, when the ones before do not "
        "answer, cannot be reached, or answer 408 or 5xx.",
    )
    dial_timeout_s: float = Field(
        30.0, ge=1.0, le=300.0, description="How long each endpoint is given to answer."
    )
    username: SafeText | None = Field(None, min_length=1, max_length=256)
    password: SecretStr | None = Field(
        None, min_length=1, max_length=256, description="Never returned by the API."
    )

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalize_codec_list(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _no_control(value.get_secret_value())
        return value

    @field_serializer("password")
    def _mask_password(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        # The store dumps with context={"reveal_secrets": True}; everything else sees a mask.
        if value is None:
            return None
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return value.get_secret_value()
        return _MASK


class TwilioProvider(_Model):
    """Calls arrive through a Twilio media stream."""

    type: Literal["twilio"] = "twilio"
    account_sid: str | None = Field(None, pattern=r"^AC[0-9a-fA-F]{32}$")


class TelnyxProvider(_Model):
    """Calls arrive through a Telnyx media stream."""

    type: Literal["telnyx"] = "telnyx"
    connection_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,128}$")


ProviderConfig = Annotated[
    SipProvider | TwilioProvider | TelnyxProvider, Field(discriminator="type")
]


class MediaOptions(_Model):
    """What sipua does with the call's audio."""

    app: MediaApp | None = Field(
        None,
        description="echo, record, play, bridge or conference ('conference': every participant "
        "of the session, SIP call or media stream, hears the mix of all the others, not "
        "itself). Defaults to 'bridge' when bridge_url is given, 'play' when play_file or "
        "play_tone is given, 'echo' for echo mode, 'conference' for conference mode, else the "
        "server's media.default_app.",
    )
    bridge_url: WsUrl | None = Field(
        None,
        validate_default=True,
        description="ws:// or wss:// URL of the backend the bridge app streams audio to.",
    )
    play_tone: str | None = Field(
        None,
        max_length=64,
        description="Tone for app 'play' instead of a file: frequencies in Hz joined by '+' "
        "('440', '350+440'); it plays until hang-up.",
        examples=["350+440"],
    )
    play_file: str | None = Field(
        None,
        validate_default=True,
        max_length=255,
        description="File to play, relative to the server's media directory.",
    )
    bridge_format: Literal["twilio", "l16"] | None = Field(
        None,
        description="Wire format of the bridge: 'twilio' (Twilio Media Streams, mu-law 8 kHz, the "
        "default) or 'l16' (16-bit PCM at 16 kHz). Defaults to the server's bridge.format.",
    )

    @field_validator("bridge_url")
    @classmethod
    def _bridge_url_fits_app(cls, value: str | None, info: ValidationInfo) -> str | None:
        app = info.data.get("app")
        if app == "bridge" and value is None:
            raise PydanticCustomError("missing", "bridge_url is required when app is 'bridge'")
        if value is not None and app not in (None, "bridge"):
            raise PydanticCustomError(
                "unused", "bridge_url is only used by app 'bridge' (app is '{app}')", {"app": app}
            )
        return value

    @field_validator("play_tone")
    @classmethod
    def _play_tone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        app = info.data.get("app")
        if app not in (None, "play"):
            raise PydanticCustomError(
                "unused", "play_tone is only used by app 'play' (app is '{app}')", {"app": app}
            )
        try:
            tone_frequencies("tone:" + value)
        except ValueError:
            raise PydanticCustomError(
                "play_tone", "play_tone must be frequencies in Hz (0-24000) joined by '+'"
            ) from None
        return value

    @field_validator("play_file")
    @classmethod
    def _play_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        app = info.data.get("app")
        if value is None:
            # play_tone is absent from info.data when it failed its own validation.
            if app == "play" and "play_tone" in info.data and info.data["play_tone"] is None:
                raise PydanticCustomError(
                    "missing", "play_file (or play_tone) is required when app is 'play'"
                )
            return None
        if info.data.get("play_tone") is not None:
            raise PydanticCustomError("conflict", "give play_file or play_tone, not both")
        if app not in (None, "play"):
            raise PydanticCustomError(
                "unused", "play_file is only used by app 'play' (app is '{app}')", {"app": app}
            )
        parts = value.replace("\\", "/").split("/")
        if (
            not value.strip()
            or _CONTROL_RE.search(value)
            or value.startswith(("/", "\\"))
            or re.match(r"^[A-Za-z]:", value)
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise PydanticCustomError(
                "play_file", "play_file must be a relative path without '.' or '..' segments"
            )
        return value


def _metadata_shape(value: Any) -> Any:
    # Iterative depth check before pydantic recurses into the value.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > METADATA_MAX_DEPTH:
                raise PydanticCustomError(
                    "metadata_depth",
                    "metadata must not nest deeper than {max} levels",
                    {"max": METADATA_MAX_DEPTH},
                )
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not key or len(key) > METADATA_KEY_MAX:
            raise PydanticCustomError(
                "metadata_key",
                "metadata keys must be 1 to {max} characters",
                {"max": METADATA_KEY_MAX},
            )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise PydanticCustomError(
            "metadata_size",
            "metadata is {size} bytes as JSON; the limit is {max}",
            {"size": size, "max": METADATA_MAX_BYTES},
        )
    return value


Metadata = Annotated[
    dict[str, JsonValue], BeforeValidator(_metadata_shape), AfterValidator(_metadata_size)
]


class SessionCreate(_Model):
    """``POST /v1/sessions`` body."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "mode": "bidirectional_translation",
                    "source_language": "en-US",
                    "target_language": "de-DE",
                    "provider": {"type": "sip", "transport": "tls", "codecs": ["opus", "PCMU"]},
                    "media": {"app": "bridge", "bridge_url": "wss://backend.example/audio"},
                    "metadata": {"customer_ref": "A-1042"},
                }
            ]
        },
    )

    mode: SessionMode
    source_language: SourceLanguage = Field(
        "auto", description="BCP-47 tag of the caller's language, or 'auto' to detect it."
    )
    target_language: TargetLanguage | None = Field(
        None,
        validate_default=True,
        description="BCP-47 tag to translate into; required for the translation modes.",
    )
    provider: ProviderConfig | None = Field(None, description="How calls reach the session.")
    media: MediaOptions = Field(default_factory=MediaOptions)
    metadata: Metadata = Field(
        default_factory=dict,
        description=f"Free-form JSON object, at most {METADATA_MAX_BYTES} bytes serialized.",
    )
    webhook_url: HttpUrlStr | None = Field(
        None, description="http(s) URL that receives session and call events."
    )

    @field_validator("target_language")
    @classmethod
    def _target_fits_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        mode = info.data.get("mode")
        if value is None:
            if isinstance(mode, SessionMode) and mode.is_translation:
                raise PydanticCustomError(
                    "missing",
                    "target_language is required for mode '{mode}'",
                    {"mode": mode.value},
                )
            return None
        translating = isinstance(mode, SessionMode) and mode.is_translation
        if translating and info.data.get("source_language") == value:
            raise PydanticCustomError(
                "same_language", "target_language must differ from source_language"
            )
        return value


# ---------------------------------------------------------------------------------------------
# Stored session


class Session(_Model):
    """A session as stored: immutable snapshot; changes produce a new instance."""

    id: str
    status: SessionStatus
    mode: SessionMode
    source_language: str
    target_language: str | None = None
    provider: ProviderConfig | None = None
    media: MediaOptions
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    webhook_url: str | None = None
    stream_token: str = Field(repr=False)
    webhook_secret: SecretStr | None = Field(
        default_factory=lambda: SecretStr(new_webhook_secret()),
        repr=False,
        description="Signs this session's webhook deliveries; shown once, at creation.",
    )
    created_at: datetime
    ended_at: datetime | None = None

    @property
    def accepting_calls(self) -> bool:
        """True while new calls may join: the session is active and has not ended."""
        return self.status is SessionStatus.ACTIVE and self.ended_at is None

    @field_serializer("webhook_secret")
    def _mask_webhook_secret(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        # The store dumps with context={"reveal_secrets": True}; everything else sees a mask.
        if value is None:
            return None
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return value.get_secret_value()
        return _MASK

    @property
    def sip_user(self) -> str:
        """The user part of the session's SIP URI: ``session_<id>``."""
        return f"session_{self.id}"


class TransferCreate(_Model):
    """Hand a connected SIP participant over to another party (blind transfer, REFER)."""

    target: SafeText = Field(
        max_length=1024,
        pattern=r"^(?i:sips?):[^\s<>\"]+$",
        description="sip: or sips: URI the participant's PBX is asked to call (Refer-To); "
        "URI headers such as '?User-to-User=…' are passed on.",
        examples=["sip:+15557654321@pbx.example.com", "sip:agents@pbx.example.com"],
    )

    @field_validator("target")
    @classmethod
    def _parsable(cls, value: str) -> str:
        # The pattern says which scheme; the SIP parser says whether the rest is a URI at all.
        try:
            parse_uri(value)
        except ParseError as e:
            raise PydanticCustomError(
                "sip_uri", "not a valid SIP URI: {detail}", {"detail": e.detail}
            ) from None
        return value


# ---------------------------------------------------------------------------------------------
# Response


class SipAddresses(BaseModel):
    uri: str = Field(
        description="SIP URI to dial over UDP/TCP.",
        examples=["sip:session_sess_01J0...@pbx.example"],
    )
    tls_uri: str | None = Field(
        description="SIPS URI to dial over TLS; null when the server has no TLS listener."
    )


def stream_token_expiry(created_at: datetime | None, ttl: float) -> datetime | None:
    """When a session's stream token stops admitting new streams (None: never)."""
    if not ttl or created_at is None:
        return None
    return created_at + timedelta(seconds=ttl)


class StreamInfo(BaseModel):
    url: str = Field(description="WebSocket URL of the session's media stream.")
    token: str = Field(description="Secret the stream client presents.")
    expires_at: datetime | None = Field(
        None,
        description="From then on the token admits no new stream (streams.token_ttl after "
        "creation); null: it does not expire.",
    )


class SessionResponse(BaseModel):
    """A session as the API shows it."""

    id: str = Field(examples=["sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"])
    status: SessionStatus
    mode: SessionMode
    source_language: str
    target_language: str | None
    provider: ProviderConfig | None
    media: MediaOptions
    metadata: dict[str, JsonValue]
    webhook_url: str | None
    webhook_secret: str | None = Field(
        None,
        description="Secret that signs this session's webhooks (Sipua-Signature header). "
        "Returned once, in the response that creates the session; null everywhere else.",
    )
    sip: SipAddresses
    stream: StreamInfo
    created_at: datetime
    ended_at: datetime | None
    calls: int = Field(ge=0, description="Calls currently connected to the session.")
    participants: list[ParticipantInfo] = Field(
        default_factory=list,
        description="The session's live participants (SIP calls and media streams) with their "
        "media statistics so far.",
    )


class ParticipantInfo(BaseModel):
    """One live participant of a session, as ``GET /v1/sessions/{id}`` shows it."""

    participant_id: str
    provider: str = Field(description="sip, twilio, telnyx or browser.")
    state: str = Field(description="SIP: ringing, answered, confirmed; streams: their state.")
    transport: str | None = None
    remote: str | None = Field(None, description="host:port the participant connects from.")
    call_id: str | None = Field(None, description="SIP Call-ID, or the provider's call id.")
    codec: str | None = None
    secure: bool | None = Field(None, description="SRTP in use (SIP).")
    duration_s: float | None = Field(None, description="Seconds since the media connected.")
    transfer_target: str | None = Field(
        None, description="Where a transfer in progress sends the participant (SIP)."
    )
    stats: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Media statistics so far: packets and bytes each way, loss, jitter, "
        "round-trip time, R-factor and MOS (SIP); frame counters (streams).",
    )


SessionResponse.model_rebuild()


class TransferResponse(BaseModel):
    """A transfer that was requested: its outcome arrives as session.transfer.* events."""

    session_id: str
    participant_id: str
    target: str
    status: Literal["requested"] = Field(
        "requested",
        description="The REFER was sent; session.transfer.accepted, .completed or .failed follow.",
    )


class DialResponse(BaseModel):
    """An outbound call that was started: its progress arrives as session.provider.* events."""

    session_id: str
    participant_id: str
    endpoints: list[str] = Field(description="The URIs sipua will try, in this order.")
    status: Literal["dialing"] = "dialing"


class SessionPage(BaseModel):
    data: list[SessionResponse]
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )
