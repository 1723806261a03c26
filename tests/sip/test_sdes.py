"""Tests of sipua.sip.sdes: the a=crypto attribute (RFC 4568, RFC 7714 §14.2)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.sip.rtp_params import SRTP_KEY_SALT_LENGTH, SRTP_SUITES, CryptoParams
from sipua.sip.sdes import (
    SdesError,
    format_crypto,
    format_lifetime,
    generate_crypto,
    parse_crypto,
)
from sipua.sip.sdp import parse_sdp

DATA = Path(__file__).parent.parent / "data" / "sdp"
KEYS = json.loads((DATA / "srtp-keys.json").read_text())
LIBSRTP = {v["name"]: v for v in KEYS["libsrtp"]}


def test_libsrtp_inline_key_is_master_key_then_salt():
    vector = LIBSRTP["srtp_validate RTP"]
    params = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{vector['sdes_inline']}")
    assert params == CryptoParams(
        tag=1,
        suite="AES_CM_128_HMAC_SHA1_80",
        key_salt=bytes.fromhex(vector["master_key"] + vector["master_salt"]),
    )
    assert format_crypto(params) == f"1 AES_CM_128_HMAC_SHA1_80 inline:{vector['sdes_inline']}"


def test_aes_256_cm_is_an_unknown_suite_and_skipped():
    vector = LIBSRTP["srtp_validate_aes_256 RTP"]
    assert parse_crypto(f"1 AES_256_CM_HMAC_SHA1_80 inline:{vector['sdes_inline']}") is None


@pytest.mark.parametrize("stream", KEYS["captures"], ids=lambda s: s["ssrc"])
def test_capture_keys_parse_and_format_back(stream):
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"):
        value = f"7 {suite} inline:{stream['key_inline']}"
        params = parse_crypto(value)
        assert params is not None
        assert len(params.key_salt) == 30
        assert base64.b64encode(params.key_salt).decode() == stream["key_inline"]
        assert format_crypto(params) == value


@pytest.mark.parametrize("name", ["srtp_validate_gcm RTP"])
def test_gcm_128_key_from_libsrtp_vector(name):
    vector = LIBSRTP[name]
    key_salt = bytes.fromhex(vector["master_key"] + vector["master_salt"])
    assert len(key_salt) == SRTP_KEY_SALT_LENGTH["AEAD_AES_128_GCM"] == 28
    params = CryptoParams(2, "AEAD_AES_128_GCM", key_salt)
    text = format_crypto(params)
    assert text == "2 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0OD6ChoqOkpaanqKmqqw=="
    assert parse_crypto(text) == params
    # The same 28 octets are the wrong length for the AES-CM and GCM-256 suites.
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"):
        with pytest.raises(SdesError, match="octet"):
            parse_crypto(text.replace("AEAD_AES_128_GCM", suite))


def test_gcm_256_key_length():
    key_salt = bytes(range(44))
    params = CryptoParams(3, "AEAD_AES_256_GCM", key_salt)
    assert parse_crypto(format_crypto(params)) == params
    with pytest.raises(SdesError, match="44-octet"):
        parse_crypto("3 AEAD_AES_256_GCM inline:" + base64.b64encode(bytes(30)).decode())


def test_real_offer_crypto_lines():
    # MicroSIP's offer from the voipshark SDES capture: two AES_256 lines we do not
    # implement, then the two AES_CM_128 ones.
    sdp = parse_sdp((DATA / "voipshark-srtp-f55-invite-microsip-offer.sdp").read_bytes())
    parsed = [parse_crypto(v) for v in sdp.media[0].crypto_lines]
    assert parsed[:2] == [None, None]
    assert [(p.tag, p.suite) for p in parsed[2:]] == [
        (3, "AES_CM_128_HMAC_SHA1_80"),
        (4, "AES_CM_128_HMAC_SHA1_32"),
    ]
    # capture-keys.json: the MicroSIP->PBX stream decrypts with tag 3's key.
    stream = next(s for s in KEYS["captures"] if s["ssrc"] == "0x547970c2")
    assert parsed[2].key_salt == base64.b64decode(stream["key_inline"])


def test_rfc4568_example_with_lifetime_and_mki():
    params = parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4"
    )
    assert params.lifetime == 2**20
    assert params.mki == (1, 4)
    assert format_crypto(params).endswith("|2^20|1:4")


@pytest.mark.parametrize(
    ("extras", "lifetime", "mki"),
    [
        ("", None, None),
        ("|2^31", 2**31, None),
        ("|1048576", 2**20, None),
        ("|1000", 1000, None),
        ("|2^48", 2**48, None),
        ("|5:1", None, (5, 1)),
        ("|2^10|255:1", 2**10, (255, 1)),
        ("|1:128", None, (1, 128)),
    ],
)
def test_lifetime_and_mki(extras, lifetime, mki):
    key = LIBSRTP["srtp_validate RTP"]["sdes_inline"]
    params = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_32 inline:{key}{extras}")
    assert (params.lifetime, params.mki) == (lifetime, mki)
    assert parse_crypto(format_crypto(params)) == params


def test_lifetime_formatting():
    assert format_lifetime(2**31) == "2^31"
    assert format_lifetime(1) == "2^0"
    assert format_lifetime(1000) == "1000"


KEY = LIBSRTP["srtp_validate RTP"]["sdes_inline"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:" + KEY, "tag"),
        ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + KEY, "tag"),
        ("1 AES-CM AES inline:" + KEY, "suite is not a name"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 " + KEY, "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:A", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY[:-4], "30-octet"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^49", "exceeds 2^48"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|0", "1..2^48"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^", "lifetime"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|soon", "lifetime"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|1:0", "1..128"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|1:129", "1..128"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|256:1", "does not fit"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|1:x", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|1:4|2^20", "MKI must come last"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^20|2^20", "lifetime must come"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^20|1:4|x", "too many"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4;inline:{KEY}|2:4", "several keys"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + " UNENCRYPTED_SRTP", "not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + " UNAUTHENTICATED_SRTP", "not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + " KDR=10", "not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + " NEW_PARAM", "not supported"),
    ],
)
def test_unusable_lines_raise_sdes_error(value, fragment):
    with pytest.raises(SdesError) as info:
        parse_crypto(value)
    assert fragment in info.value.detail


@pytest.mark.parametrize("session_params", ["KDR=0", "WSH=128", "FEC_ORDER=FEC_SRTP", "-X=1"])
def test_harmless_session_params_are_accepted(session_params):
    params = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} {session_params}")
    assert params is not None and params.tag == 1
    assert format_crypto(params, (session_params,)).endswith(" " + session_params)


def test_unpadded_base64_is_tolerated():
    key_salt = bytes(range(28))
    padded = base64.b64encode(key_salt).decode()
    assert padded.endswith("=")
    params = parse_crypto("1 AEAD_AES_128_GCM inline:" + padded.rstrip("="))
    assert params.key_salt == key_salt


def test_generate_crypto_uses_the_injected_generator():
    asked = []

    def random_bytes(n: int) -> bytes:
        asked.append(n)
        return bytes([0xAB]) * n

    for suite in SRTP_SUITES:
        params = generate_crypto(5, suite, random_bytes)
        assert params == CryptoParams(5, suite, b"\xab" * SRTP_KEY_SALT_LENGTH[suite])
    assert asked == [44, 28, 30, 30]


def test_generate_crypto_default_is_random():
    a = generate_crypto(1, "AES_CM_128_HMAC_SHA1_80")
    b = generate_crypto(1, "AES_CM_128_HMAC_SHA1_80")
    assert len(a.key_salt) == 30 and a.key_salt != b.key_salt


def test_generate_and_format_refuse_bad_input():
    with pytest.raises(ValueError, match="unknown SRTP suite"):
        generate_crypto(1, "AES_256_CM_HMAC_SHA1_80")
    with pytest.raises(ValueError, match="returned 3 octets"):
        generate_crypto(1, "AES_CM_128_HMAC_SHA1_80", lambda n: b"abc")
    with pytest.raises(ValueError, match="unknown SRTP suite"):
        format_crypto(CryptoParams(1, "F8_128_HMAC_SHA1_80", bytes(30)))
    with pytest.raises(ValueError, match="30 octets"):
        format_crypto(CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", bytes(29)))


@settings(max_examples=500)
@given(st.text(max_size=120))
def test_arbitrary_text_only_raises_sdes_error(text):
    try:
        parse_crypto(text)
    except SdesError:
        pass


@settings(max_examples=500)
@given(
    st.integers(0, 999_999_999),
    st.sampled_from(SRTP_SUITES),
    st.data(),
    st.one_of(st.none(), st.integers(1, 2**48)),
    st.one_of(
        st.none(),
        st.integers(1, 128).flatmap(
            lambda n: st.tuples(st.integers(0, 2 ** (8 * n) - 1), st.just(n))
        ),
    ),
)
def test_generated_crypto_round_trips(tag, suite, data, lifetime, mki):
    key_salt = data.draw(
        st.binary(min_size=SRTP_KEY_SALT_LENGTH[suite], max_size=SRTP_KEY_SALT_LENGTH[suite])
    )
    params = CryptoParams(tag, suite, key_salt, lifetime, mki)
    assert parse_crypto(format_crypto(params)) == params
