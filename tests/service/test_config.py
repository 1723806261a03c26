from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pydantic
import pytest

from sipua import __version__
from sipua.service.config import ConfigError, Settings, load_settings, primary_address


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipua.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_need_no_configuration() -> None:
    s = load_settings()
    assert s.data_dir == Path.home() / ".local" / "share" / "sipua"
    assert s.api_key is None
    assert s.log_level == "info"
    assert s.public_host is None
    sip = s.sip
    assert (sip.host, sip.udp_port, sip.tcp_port, sip.tls_port) == ("0.0.0.0", 5060, 5060, 5061)
    assert sip.transports == ["udp", "tcp", "tls"]
    assert sip.ipv6 is False
    assert (sip.t1, sip.t2, sip.t4) == (0.5, 4.0, 5.0)
    assert sip.max_message_size == 65535
    assert sip.tcp_idle_timeout == 300.0
    assert sip.max_connections_per_peer == 64
    assert sip.tls_cert is None and sip.tls_key is None
    assert sip.tls_min_version == "1.2"
    assert sip.user_agent == f"sipua/{__version__}"
    assert sip.ack_timeout == 32.0 == 64 * sip.t1
    assert sip.ringing is True
    assert sip.answer_delay == 0.0
    assert (s.http.host, s.http.port, s.http.public_url) == ("0.0.0.0", 8080, None)
    media = s.media
    assert (media.rtp_port_min, media.rtp_port_max) == (10000, 20000)
    assert media.symmetric_rtp is True
    assert media.default_app == "echo"
    assert media.codecs == ["opus", "G722", "PCMU", "PCMA"]
    assert media.srtp == "optional"


def test_default_data_dir_follows_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "sipua"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert load_settings().data_dir == Path.home() / ".local" / "share" / "sipua"


def test_settings_are_immutable() -> None:
    s = load_settings()
    with pytest.raises(pydantic.ValidationError):
        s.log_level = "debug"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        s.sip.udp_port = 1  # type: ignore[misc]


# -- sources ----------------------------------------------------------------------------------


def test_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        data_dir = "state"
        log_level = "DEBUG"
        public_host = "voice.example.test"

        [sip]
        udp_port = 5070
        transports = ["udp", "tls"]
        tls_cert = "certs/cert.pem"
        tls_key = "/etc/sipua/key.pem"
        tls_min_version = 1.3

        [http]
        port = 9000

        [media]
        rtp_port_min = 30000
        rtp_port_max = 31000
        codecs = ["pcmu", "OPUS"]
        srtp = "required"
        default_app = "record"
        """,
    )
    s = load_settings(path)
    assert s.data_dir == tmp_path / "state"  # relative to the file's directory
    assert s.log_level == "debug"
    assert s.public_host == "voice.example.test"
    assert s.sip.udp_port == 5070
    assert s.sip.tcp_port == 5060  # untouched keys keep their defaults
    assert s.sip.transports == ["udp", "tls"]
    assert s.sip.tls_cert == tmp_path / "certs" / "cert.pem"
    assert s.sip.tls_key == Path("/etc/sipua/key.pem")
    assert s.sip.tls_min_version == "1.3"
    assert s.http.port == 9000
    assert (s.media.rtp_port_min, s.media.rtp_port_max) == (30000, 31000)
    assert s.media.codecs == ["PCMU", "opus"]
    assert s.media.srtp == "required"
    assert s.media.default_app == "record"


def test_env_overrides_toplevel_and_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIPUA_DATA_DIR", str(tmp_path / "envdata"))
    monkeypatch.setenv("SIPUA_API_KEY", "k" * 32)
    monkeypatch.setenv("SIPUA_SIP__UDP_PORT", "5070")
    monkeypatch.setenv("SIPUA_SIP__RINGING", "false")
    monkeypatch.setenv("SIPUA_HTTP__PORT", "8181")
    monkeypatch.setenv("SIPUA_CONFIG", "/not/a/setting")  # unrelated SIPUA_ names are ignored
    s = load_settings()
    assert s.data_dir == tmp_path / "envdata"
    assert s.api_key == "k" * 32
    assert s.sip.udp_port == 5070
    assert s.sip.ringing is False
    assert s.http.port == 8181


@pytest.mark.parametrize(
    ("value", "expected"),
    [("udp,tcp", ["udp", "tcp"]), ('["tls"]', ["tls"]), (" UDP , TLS ", ["udp", "tls"])],
)
def test_env_lists_accept_json_or_commas(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("SIPUA_SIP__TRANSPORTS", value)
    assert load_settings().sip.transports == expected


def test_env_codec_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPUA_MEDIA__CODECS", "pcma,g722")
    assert load_settings().media.codecs == ["PCMA", "G722"]


def test_precedence_overrides_env_toml_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_toml(
        tmp_path,
        """
        log_level = "warning"
        [sip]
        udp_port = 5071
        tcp_port = 5072
        tls_port = 5073
        """,
    )
    monkeypatch.setenv("SIPUA_SIP__TCP_PORT", "6072")
    monkeypatch.setenv("SIPUA_SIP__TLS_PORT", "6073")
    monkeypatch.setenv("SIPUA_LOG_LEVEL", "error")
    s = load_settings(path, sip__tls_port=7073, log_level=None, http={"port": 9090, "host": None})
    assert s.sip.udp_port == 5071  # TOML over default
    assert s.sip.tcp_port == 6072  # env over TOML
    assert s.sip.tls_port == 7073  # override over env
    assert s.log_level == "error"  # None override ignored: env stays
    assert s.http.port == 9090
    assert s.http.host == "0.0.0.0"  # None inside a mapping is ignored too
    assert s.sip.t1 == 0.5  # default


def test_relative_config_path_resolves_against_its_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "sipua.toml").write_text('data_dir = "state"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(Path("etc/sipua.toml")).data_dir == tmp_path / "etc" / "state"


def test_ack_timeout_follows_t1_unless_set(tmp_path: Path) -> None:
    assert load_settings(sip__t1=1.0).sip.ack_timeout == 64.0
    assert load_settings(sip__t1=1.0, sip__ack_timeout=10).sip.ack_timeout == 10.0


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sip__udp_port": 70000}, "sip.udp_port [SIPUA_SIP__UDP_PORT]: Input should be less"),
        ({"sip__tls_min_version": "1.1"}, "sip.tls_min_version"),
        ({"sip__transports": ["udp", "sctp"]}, "sip.transports.1"),
        ({"sip__transports": ["udp", "udp"]}, "transports must not repeat"),
        ({"sip__transports": []}, "sip.transports"),
        ({"sip__t1": 0}, "sip.t1"),
        ({"sip__t1": 5.0, "sip__t2": 4.0}, "t2 (4.0) must not be smaller than t1 (5.0)"),
        ({"sip__tls_cert": "/tmp/c.pem"}, "tls_cert and tls_key must be set together"),
        ({"sip__max_message_size": 10}, "sip.max_message_size"),
        ({"media__rtp_port_min": 20000, "media__rtp_port_max": 20000}, "must be smaller than"),
        ({"media__rtp_port_min": 10001}, "rtp_port_min (10001) must be even"),
        ({"media__codecs": ["G729"]}, "unsupported codec 'G729'"),
        ({"media__codecs": ["PCMU", "pcmu"]}, "codec PCMU is listed twice"),
        ({"media__srtp": "sometimes"}, "media.srtp"),
        ({"media__default_app": "karaoke"}, "media.default_app"),
        ({"log_level": "loud"}, "log_level must be one of"),
        ({"public_host": "host:5060"}, "public_host must be a host name"),
        ({"http__public_url": "ftp://x"}, "http.public_url"),
        ({"sip__udpport": 5060}, "sip.udpport"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_values_name_field_and_reason(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **overrides)
    message = str(info.value)
    assert message.startswith("invalid configuration:")
    assert fragment in message


def test_invalid_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPUA_SIP__UDP_PORT", "fifty")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sip.udp_port [SIPUA_SIP__UDP_PORT]" in str(info.value)
    assert "'fifty'" in str(info.value)


def test_invalid_toml_value_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[media]\nsrtp = 'maybe'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "media.srtp" in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sip]\nudp_prot = 5070\n")
    with pytest.raises(ConfigError, match=r"sip\.udp_prot.*Extra inputs"):
        load_settings(path)


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write_toml(tmp_path, "[sip\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_api_key_rules_and_secrecy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPUA_API_KEY", "")
    assert load_settings().api_key is None  # empty means unset
    monkeypatch.setenv("SIPUA_API_KEY", "short-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "api_key must be at least 16 characters" in str(info.value)
    assert "short-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="printable ASCII"):
        load_settings(api_key="has a space in the key")
    good = load_settings(api_key="x" * 40)
    assert "x" * 40 not in repr(good)


# -- public host ------------------------------------------------------------------------------


def test_public_host_explicit_wins() -> None:
    s = load_settings(public_host="voice.example.test", sip__host="192.0.2.10")
    assert s.resolved_public_host() == "voice.example.test"
    assert load_settings(public_host="[2001:db8::5]").resolved_public_host() == "2001:db8::5"


def test_public_host_from_specific_sip_host() -> None:
    assert load_settings(sip__host="192.0.2.10").resolved_public_host() == "192.0.2.10"
    assert load_settings(sip__host="pbx.example.test").resolved_public_host() == "pbx.example.test"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_public_host_from_wildcard_is_a_concrete_address(wildcard: str) -> None:
    host = load_settings(sip__host=wildcard).resolved_public_host()
    assert not ipaddress.ip_address(host).is_unspecified


def test_primary_address_sends_nothing_and_is_concrete() -> None:
    for ipv6 in (False, True):
        address = ipaddress.ip_address(primary_address(ipv6=ipv6))
        assert not address.is_unspecified


def test_settings_constructor_reads_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPUA_HTTP__PORT", "8123")
    assert Settings().http.port == 8123


def test_dns_servers_for_outbound_lookups(tmp_path, monkeypatch) -> None:
    from sipua.service.server import _ua_config

    assert _ua_config(load_settings(data_dir=tmp_path)).dns_resolver is None  # the system's
    monkeypatch.setenv("SIPUA_SIP__DNS_SERVERS", "127.0.0.1:5353, ::1, [::1]:5300")
    settings = load_settings(data_dir=tmp_path)
    assert settings.sip.dns_servers == ["127.0.0.1:5353", "::1", "[::1]:5300"]
    resolver = _ua_config(settings).dns_resolver
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 5300),
    ]
    for bad in ("dns.example.com", "127.0.0.1:0", "127.0.0.1:99999", "1.2.3.4:x"):
        monkeypatch.setenv("SIPUA_SIP__DNS_SERVERS", bad)
        with pytest.raises(ConfigError, match="dns_servers"):
            load_settings(data_dir=tmp_path)
