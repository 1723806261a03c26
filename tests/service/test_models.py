from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sipua.service.models import (
    METADATA_MAX_BYTES,
    MediaOptions,
    Session,
    SessionCreate,
    SessionMode,
    SessionStatus,
    SipProvider,
    TelnyxProvider,
    TwilioProvider,
    normalize_language,
)


def errors_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        SessionCreate.model_validate(data)
    return [dict(e) for e in info.value.errors()]


def only_error(data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]["loc"], errors[0]["msg"]


# -- languages and mode -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("en-us", "en-US"),
        ("en_US", "en-US"),
        ("pt-BR", "pt-BR"),
        ("zh-hans-cn", "zh-Hans-CN"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
        ("yue", "yue"),
    ],
)
def test_language_tags_are_normalized(given: str, normal: str) -> None:
    assert normalize_language(given) == normal


@pytest.mark.parametrize("bad", ["english", "e", "en-", "en--US", "12", "en US", "x" * 40, ""])
def test_malformed_language_tags_are_rejected(bad: str) -> None:
    loc, msg = only_error({"mode": "transcription", "source_language": bad})
    assert loc == ("source_language",)
    assert "BCP-47" in msg


def test_source_defaults_to_auto_and_accepts_auto() -> None:
    assert SessionCreate(mode=SessionMode.ECHO).source_language == "auto"
    req = SessionCreate.model_validate(
        {"mode": "unidirectional_translation", "source_language": "AUTO", "target_language": "fr"}
    )
    assert (req.source_language, req.target_language) == ("auto", "fr")


def test_auto_is_not_a_target() -> None:
    loc, msg = only_error(
        {"mode": "bidirectional_translation", "source_language": "en", "target_language": "auto"}
    )
    assert loc == ("target_language",)
    assert "'auto' is only allowed as source_language" in msg


@pytest.mark.parametrize("mode", ["bidirectional_translation", "unidirectional_translation"])
def test_translation_needs_a_target(mode: str) -> None:
    loc, msg = only_error({"mode": mode, "source_language": "en"})
    assert loc == ("target_language",)
    assert msg == f"target_language is required for mode '{mode}'"


def test_translation_target_must_differ() -> None:
    loc, msg = only_error(
        {
            "mode": "bidirectional_translation",
            "source_language": "en-us",
            "target_language": "EN-US",
        }
    )
    assert loc == ("target_language",)
    assert "must differ" in msg


@pytest.mark.parametrize("mode", ["ai_agent", "transcription", "conference", "echo"])
def test_other_modes_need_no_target(mode: str) -> None:
    assert SessionCreate.model_validate({"mode": mode}).target_language is None


def test_bad_mode() -> None:
    loc, msg = only_error({"mode": "karaoke"})
    assert loc == ("mode",)
    assert "echo" in msg and "ai_agent" in msg


def test_unknown_fields_are_rejected_at_every_level() -> None:
    assert only_error({"mode": "echo", "colour": 1})[0] == ("colour",)
    assert only_error({"mode": "echo", "media": {"app": "echo", "volume": 3}})[0] == (
        "media",
        "volume",
    )
    assert only_error({"mode": "echo", "provider": {"type": "sip", "trunk": "x"}})[0] == (
        "provider",
        "sip",
        "trunk",
    )


# -- provider ---------------------------------------------------------------------------------


def test_provider_is_optional_and_discriminated() -> None:
    assert SessionCreate(mode=SessionMode.ECHO).provider is None
    assert SessionCreate.model_validate({"mode": "echo", "provider": None}).provider is None
    sid = "AC" + "0123456789abcdef" * 2
    cases = [
        ({"type": "sip"}, SipProvider),
        ({"type": "twilio", "account_sid": sid}, TwilioProvider),
        ({"type": "telnyx", "connection_id": "1234567890"}, TelnyxProvider),
    ]
    for provider, cls in cases:
        req = SessionCreate.model_validate({"mode": "echo", "provider": provider})
        assert isinstance(req.provider, cls)


def test_sip_provider_defaults() -> None:
    sip = SipProvider()
    assert sip.transport == "tls"
    assert sip.codecs is None and sip.srtp is None  # filled from settings by the service


def test_unknown_or_missing_provider_type() -> None:
    loc, msg = only_error({"mode": "echo", "provider": {"type": "skype"}})
    assert loc == ("provider",)
    assert "'sip', 'twilio', 'telnyx'" in msg
    loc, _ = only_error({"mode": "echo", "provider": {"transport": "udp"}})
    assert loc == ("provider",)


def test_codecs_are_normalized_and_checked() -> None:
    req = SessionCreate.model_validate(
        {"mode": "echo", "provider": {"type": "sip", "codecs": ["pcmu", "OPUS", "g722"]}}
    )
    assert isinstance(req.provider, SipProvider)
    assert req.provider.codecs == ["PCMU", "opus", "G722"]

    loc, msg = only_error({"mode": "echo", "provider": {"type": "sip", "codecs": ["G729"]}})
    assert loc == ("provider", "sip", "codecs")
    assert msg == "unsupported codec 'G729'; supported: opus, G722, PCMU, PCMA"
    _, msg = only_error({"mode": "echo", "provider": {"type": "sip", "codecs": ["PCMU", "pcmu"]}})
    assert msg == "codec PCMU is listed twice"
    _, msg = only_error({"mode": "echo", "provider": {"type": "sip", "codecs": []}})
    assert "at least one codec" in msg


@pytest.mark.parametrize(
    ("enabled", "policy"),
    [(True, "required"), (False, "off"), ("optional", "optional"), ("required", "required")],
)
def test_srtp_enabled_accepts_bool_or_policy(enabled: Any, policy: str) -> None:
    req = SessionCreate.model_validate(
        {"mode": "echo", "provider": {"type": "sip", "srtp": {"enabled": enabled}}}
    )
    assert isinstance(req.provider, SipProvider) and req.provider.srtp is not None
    assert req.provider.srtp.enabled == policy


def test_srtp_crypto_suites() -> None:
    suites = ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"]
    req = SessionCreate.model_validate(
        {"mode": "echo", "provider": {"type": "sip", "srtp": {"crypto_suites": suites}}}
    )
    assert isinstance(req.provider, SipProvider) and req.provider.srtp is not None
    assert req.provider.srtp.crypto_suites == suites
    loc, _ = only_error(
        {"mode": "echo", "provider": {"type": "sip", "srtp": {"crypto_suites": ["NULL_CIPHER"]}}}
    )
    assert loc == ("provider", "sip", "srtp", "crypto_suites", 0)
    _, msg = only_error(
        {
            "mode": "echo",
            "provider": {"type": "sip", "srtp": {"crypto_suites": suites + suites[:1]}},
        }
    )
    assert "repeat" in msg or "at most" in msg


def test_sip_uri_and_credentials() -> None:
    req = SessionCreate.model_validate(
        {
            "mode": "echo",
            "provider": {
                "type": "sip",
                "sip_uri": "sips:alice@pbx.example.test",
                "username": "alice",
                "password": "s3cret",
            },
        }
    )
    sip = req.provider
    assert isinstance(sip, SipProvider) and sip.password is not None
    assert sip.password.get_secret_value() == "s3cret"
    assert sip.model_dump(mode="json")["password"] == "**********"
    assert "s3cret" not in repr(sip)
    revealed = sip.model_dump(mode="json", context={"reveal_secrets": True})
    assert revealed["password"] == "s3cret"

    assert only_error({"mode": "echo", "provider": {"type": "sip", "sip_uri": "http://x"}})[0] == (
        "provider",
        "sip",
        "sip_uri",
    )
    loc, msg = only_error({"mode": "echo", "provider": {"type": "sip", "username": "a\r\nVia: x"}})
    assert loc == ("provider", "sip", "username")
    assert "control characters" in msg


def test_outbound_endpoints_and_dial_timeout() -> None:
    req = SessionCreate.model_validate(
        {
            "mode": "ai_agent",
            "provider": {
                "type": "sip",
                "sip_uri": "sips:+15551234567@pbx-eu.example.test",
                "endpoints": [{"uri": "sip:+15551234567@pbx-us.example.test", "priority": 2}],
                "dial_timeout_s": 12,
            },
        }
    )
    sip = req.provider
    assert isinstance(sip, SipProvider) and sip.dial_timeout_s == 12
    assert sip.endpoints is not None and sip.endpoints[0].priority == 2
    assert SipProvider().dial_timeout_s == 30
    base = {"type": "sip", "sip_uri": "sip:a@b.test"}
    bad = [
        ({"endpoints": [{"uri": "tel:+1555"}]}, ("endpoints", 0, "uri")),
        ({"endpoints": [{"uri": "sip:a@b", "priority": -1}]}, ("endpoints", 0, "priority")),
        ({"endpoints": [{"uri": "sip:a@b"}] * 11}, ("endpoints",)),
        ({"dial_timeout_s": 0}, ("dial_timeout_s",)),
        ({"dial_timeout_s": 3600}, ("dial_timeout_s",)),
    ]
    for extra, where in bad:
        loc, _ = only_error({"mode": "echo", "provider": {**base, **extra}})
        assert loc == ("provider", "sip", *where), extra


def test_twilio_account_sid_shape() -> None:
    loc, _ = only_error({"mode": "echo", "provider": {"type": "twilio", "account_sid": "AC12"}})
    assert loc == ("provider", "twilio", "account_sid")


# -- media ------------------------------------------------------------------------------------


def test_media_defaults_are_resolved_later() -> None:
    assert SessionCreate(mode=SessionMode.ECHO).media == MediaOptions()
    assert MediaOptions().app is None


def test_bridge_needs_a_websocket_url() -> None:
    ok = MediaOptions.model_validate({"app": "bridge", "bridge_url": "wss://ai.example/v1/a?x=1"})
    assert ok.bridge_url == "wss://ai.example/v1/a?x=1"
    loc, msg = only_error({"mode": "echo", "media": {"app": "bridge"}})
    assert loc == ("media", "bridge_url")
    assert msg == "bridge_url is required when app is 'bridge'"
    loc, msg = only_error({"mode": "echo", "media": {"bridge_url": "https://ai.example/"}})
    assert loc == ("media", "bridge_url")
    assert msg == "URL scheme must be 'ws' or 'wss'"
    _, msg = only_error({"mode": "echo", "media": {"bridge_url": "wss://"}})
    assert "host" in msg
    _, msg = only_error({"mode": "echo", "media": {"app": "echo", "bridge_url": "ws://a.test"}})
    assert "only used by app 'bridge'" in msg


@pytest.mark.parametrize("bad", ["/etc/passwd", "../secret.wav", "a/../../b.wav", "C:x.wav", ""])
def test_play_file_must_stay_inside_media_dir(bad: str) -> None:
    loc, _ = only_error({"mode": "echo", "media": {"app": "play", "play_file": bad}})
    assert loc == ("media", "play_file")


def test_play_needs_a_file() -> None:
    assert only_error({"mode": "echo", "media": {"app": "play"}})[0] == ("media", "play_file")
    ok = MediaOptions.model_validate({"app": "play", "play_file": "prompts/hello.wav"})
    assert ok.play_file == "prompts/hello.wav"


def test_play_a_tone_instead_of_a_file() -> None:
    assert MediaOptions.model_validate({"app": "play", "play_tone": "350+440"}).play_file is None
    assert MediaOptions.model_validate({"play_tone": "1000"}).play_tone == "1000"
    for bad in ("loud", "440+", "0", "30000", "440;rm"):
        loc, msg = only_error({"mode": "echo", "media": {"app": "play", "play_tone": bad}})
        assert loc == ("media", "play_tone") and "frequencies in Hz" in msg, bad
    loc, msg = only_error(
        {"mode": "echo", "media": {"app": "play", "play_tone": "440", "play_file": "a.wav"}}
    )
    assert loc == ("media", "play_file") and "not both" in msg
    loc, msg = only_error({"mode": "echo", "media": {"app": "echo", "play_tone": "440"}})
    assert loc == ("media", "play_tone") and "only used by app 'play'" in msg


# -- metadata and webhook ---------------------------------------------------------------------


def test_metadata_accepts_json_values() -> None:
    meta = {"a": 1, "b": [True, None, 1.5, "x"], "c": {"d": {"e": []}}}
    assert SessionCreate.model_validate({"mode": "echo", "metadata": meta}).metadata == meta


def test_metadata_size_limit() -> None:
    fits = {"k": "x" * (METADATA_MAX_BYTES - 10)}  # {"k":"..."} adds 8 bytes
    SessionCreate.model_validate({"mode": "echo", "metadata": fits})
    too_big = {"k": "x" * METADATA_MAX_BYTES}
    loc, msg = only_error({"mode": "echo", "metadata": too_big})
    assert loc == ("metadata",)
    assert f"the limit is {METADATA_MAX_BYTES}" in msg
    # Bytes, not characters: 3-byte UTF-8 characters count three times.
    loc, _ = only_error({"mode": "echo", "metadata": {"k": "€" * (METADATA_MAX_BYTES // 3)}})
    assert loc == ("metadata",)


def test_metadata_shape_limits() -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    assert "nest deeper" in only_error({"mode": "echo", "metadata": {"d": deep}})[1]
    assert only_error({"mode": "echo", "metadata": []})[0] == ("metadata",)
    assert "keys" in only_error({"mode": "echo", "metadata": {"": 1}})[1]


def test_webhook_url() -> None:
    req = SessionCreate.model_validate({"mode": "echo", "webhook_url": "https://h.example/hook"})
    assert req.webhook_url == "https://h.example/hook"
    loc, msg = only_error({"mode": "echo", "webhook_url": "ftp://h.example/"})
    assert loc == ("webhook_url",)
    assert msg == "URL scheme must be 'http' or 'https'"
    assert only_error({"mode": "echo", "webhook_url": "https://h.example:99999/"})[1] == (
        "not a valid URL"
    )


# -- stored session ---------------------------------------------------------------------------


def make_session(**changes: Any) -> Session:
    base: dict[str, Any] = {
        "id": "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY",
        "status": SessionStatus.ACTIVE,
        "mode": SessionMode.ECHO,
        "source_language": "auto",
        "media": MediaOptions(app="echo"),
        "stream_token": "t" * 43,
        "created_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    base.update(changes)
    return Session(**base)


def test_accepting_calls() -> None:
    assert make_session().accepting_calls
    ended = make_session(status=SessionStatus.ENDED, ended_at=datetime.now(UTC))
    assert not ended.accepting_calls
    assert make_session().sip_user == "session_sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"
    assert "t" * 43 not in repr(make_session())
