"""The ``[security]`` settings: defaults, TOML, environment, validation."""

from __future__ import annotations

import json

import pytest

from sipua.service.config import ConfigError, load_settings
from sipua.service.security_setup import security_policy


def test_defaults_keep_the_quick_start_open_but_guarded():
    sec = load_settings().security
    assert sec.auth == "off" and sec.allowlist == [] and sec.users == []
    assert sec.algorithms == ["SHA-256", "MD5"]
    assert sec.max_auth_failures == 5 and sec.ban_action == "drop"
    assert "friendly-scanner" in sec.scanner_user_agents
    assert sec.tls.verify_certificate is True and sec.tls.client_certificates == "off"
    policy = security_policy(load_settings(sip={"t1": 0.1}))
    assert policy.auth_required is False
    assert policy.transaction_window == pytest.approx(6.4)  # 64*T1


def test_toml(tmp_path):
    (tmp_path / "ca.pem").write_text("")
    config = tmp_path / "sipua.toml"
    config.write_text(
        """
[security]
auth = "required"
realm = "voice.example.com"
algorithms = ["MD5", "SHA-256"]
allowlist = ["203.0.113.0/24", "2001:db8::/32"]
ban_action = "reject"
challenge = 407

[[security.users]]
username = "asterisk"
ha1_md5 = "0123456789abcdef0123456789abcdef"
allowed_ips = ["203.0.113.10"]

[security.tls]
client_certificates = "require"
client_ca_file = "ca.pem"
"""
    )
    sec = load_settings(config).security
    assert sec.auth == "required" and sec.challenge == 407
    assert sec.users[0].allowed_ips == ["203.0.113.10/32"]
    assert sec.tls.client_ca_file == tmp_path / "ca.pem"  # relative to the file
    assert sec.allowlist == ["203.0.113.0/24", "2001:db8::/32"]


def test_environment(monkeypatch):
    monkeypatch.setenv("SIPUA_SECURITY__AUTH", "required")
    monkeypatch.setenv("SIPUA_SECURITY__ALGORITHMS", "MD5,SHA-256")
    monkeypatch.setenv("SIPUA_SECURITY__ALLOWLIST", "127.0.0.1/32, ::1")
    monkeypatch.setenv(
        "SIPUA_SECURITY__USERS", json.dumps([{"username": "test", "password": "test"}])
    )
    sec = load_settings().security
    assert sec.algorithms == ["MD5", "SHA-256"]
    assert sec.allowlist == ["127.0.0.1/32", "::1/128"]
    assert sec.users[0].password.get_secret_value() == "test"


@pytest.mark.parametrize(
    "security,fragment",
    [
        ({"auth": "sometimes"}, "security.auth"),
        ({"allowlist": ["10.0.0.0/33"]}, "not an IP address or CIDR network"),
        ({"algorithms": ["SHA-1"]}, "security.algorithms"),
        ({"algorithms": ["MD5", "MD5"]}, "must not repeat"),
        ({"unauthenticated_methods": ["INVITE"]}, "INVITE cannot"),
        ({"users": [{"username": "u"}]}, "needs a password"),
        ({"users": [{"username": "u", "password": "p", "ha1_md5": "0" * 32}]}, "not both"),
        ({"users": [{"username": "u", "ha1_md5": "xyz"}]}, "ha1_md5"),
        (
            {"users": [{"username": "u", "password": "p"}, {"username": "u", "password": "q"}]},
            "given twice",
        ),
        ({"tls": {"client_certificates": "require"}}, "client_ca_file"),
        ({"ban_action": "explode"}, "ban_action"),
    ],
)
def test_invalid(security, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(security=security)
    assert fragment in str(info.value)


def test_a_bad_password_is_not_echoed_in_errors():
    with pytest.raises(ConfigError) as info:
        load_settings(security={"users": [{"username": "u", "password": 12345678}]})
    assert "12345678" not in str(info.value)
