import base64
import json
import struct

import pytest
from pylibsrtp import ERRORS  # type: ignore[attr-defined]
from scapy.all import UDP, PcapReader

from sipua.media.rtp import parse_rtp
from sipua.media.srtp import (
    AUTH_FAIL,
    REPLAY_FAIL,
    SUITE_PROFILES,
    SrtpConfigError,
    SrtpTransform,
    is_supported,
)
from sipua.sip.rtp_params import SRTP_SUITES, CryptoParams

from .helpers import DATA, PCAPS, crypto

LIBSRTP = json.loads((DATA / "libsrtp-vectors.json").read_text())["vectors"]
RFC7714 = json.loads((DATA / "rfc7714-aes-gcm.json").read_text())["vectors"]
CAPTURES = json.loads((DATA / "capture-keys.json").read_text())["captures"]

RTP = bytes.fromhex("800f1234decafbadcafebabe") + bytes(range(160))


def _suite_of(vector: dict) -> str:
    return vector["suite"].split(" ")[0]


def test_every_sdes_suite_we_negotiate_has_a_libsrtp_profile():
    assert set(SRTP_SUITES) == set(SUITE_PROFILES)
    assert AUTH_FAIL in ERRORS and all(r in ERRORS for r in REPLAY_FAIL)


@pytest.mark.parametrize("vector", LIBSRTP, ids=lambda v: v["name"])
def test_libsrtp_vectors(vector):
    suite = _suite_of(vector)
    if suite not in SUITE_PROFILES:
        # AES_256_CM_HMAC_SHA1_80 (RFC 6188) has no pylibsrtp profile; we never offer it.
        assert suite not in SRTP_SUITES
        pytest.skip(f"{suite} not supported by pylibsrtp")
    key = CryptoParams(1, suite, bytes.fromhex(vector["master_key"] + vector["master_salt"]))
    if "sdes_inline" in vector:
        assert base64.b64decode(vector["sdes_inline"]) == key.key_salt
    ours = SrtpTransform(local=key, remote=None)
    theirs = SrtpTransform(local=None, remote=key)
    plaintext = bytes.fromhex(vector["plaintext"])
    protected = bytes.fromhex(vector["protected"])
    if "RTCP" in vector["name"]:
        assert ours.protect_rtcp(plaintext) == protected
        assert theirs.unprotect_rtcp(protected) == plaintext
        assert theirs.unprotect_rtcp(protected) is None  # the same SRTCP index again
    else:
        assert ours.protect_rtp(plaintext) == protected
        assert theirs.unprotect_rtp(protected) == plaintext
        assert theirs.unprotect_rtp(protected) is None
    assert theirs.replays == 1 and theirs.auth_failures == 0


@pytest.mark.parametrize(
    "vector",
    [v for v in RFC7714 if v["operation"].startswith(("protect (encrypt", "SRTCP protect (E=1)"))],
    ids=lambda v: v["section"],
)
def test_rfc7714_packets_through_libsrtp(vector):
    """RFC 7714 §16/§17 feed the AEAD key directly; libsrtp always runs the KDF.

    So the ciphertext cannot match, but the packet layout can: the header stays
    in clear, the tag is 16 octets, SRTCP appends E||index after the tag
    (RFC 7714 §9.2 and §17), and the packet makes the round trip.
    """
    suite = vector["aead"]
    key = CryptoParams(1, suite, bytes.fromhex(vector["key_hex"] + vector["salt_hex"]))
    ours = SrtpTransform(local=key, remote=None)
    theirs = SrtpTransform(local=None, remote=key)
    plaintext = bytes.fromhex(vector["input_hex"])
    expected = bytes.fromhex(vector["expected_output_hex"])
    if vector["section"].startswith("17"):
        protected = ours.protect_rtcp(plaintext)
        assert len(protected) == len(expected) == len(plaintext) + 16 + 4
        assert protected[:8] == plaintext[:8]
        assert protected[-4:-3] == b"\x80"  # E bit set: encrypted
        assert theirs.unprotect_rtcp(protected) == plaintext
    else:
        protected = ours.protect_rtp(plaintext)
        assert len(protected) == len(expected) == len(plaintext) + 16
        assert protected[:12] == expected[:12] == plaintext[:12]
        assert theirs.unprotect_rtp(protected) == plaintext


@pytest.mark.parametrize("suite", SRTP_SUITES)
def test_every_suite_round_trips_and_has_the_right_tag(suite):
    key = crypto(suite)
    ours = SrtpTransform(local=key, remote=None)
    theirs = SrtpTransform(local=None, remote=key)
    tag = {"AES_CM_128_HMAC_SHA1_32": 4, "AES_CM_128_HMAC_SHA1_80": 10}.get(suite, 16)
    for seq in range(5):
        packet = RTP[:2] + struct.pack("!H", seq) + RTP[4:]
        protected = ours.protect_rtp(packet)
        assert len(protected) == len(packet) + tag
        assert protected[12:] != packet[12:] + protected[len(packet) :]  # payload encrypted
        assert theirs.unprotect_rtp(protected) == packet
    rtcp = bytes.fromhex("81c90007") + bytes(28)
    protected = ours.protect_rtcp(rtcp)
    # RFC 4568 §6.2: SHA1_32 applies to SRTP only; SRTCP keeps the 80-bit tag.
    assert len(protected) == len(rtcp) + 4 + (16 if suite.startswith("AEAD") else 10)
    assert theirs.unprotect_rtcp(protected) == rtcp


def test_tampered_replayed_and_garbage_packets_are_counted_not_raised():
    key = crypto("AES_CM_128_HMAC_SHA1_80")
    ours = SrtpTransform(local=key, remote=None)
    theirs = SrtpTransform(local=None, remote=key)
    good = ours.protect_rtp(RTP)
    tampered = bytearray(ours.protect_rtp(RTP[:3] + b"\x35" + RTP[4:]))
    tampered[20] ^= 0x01
    assert theirs.unprotect_rtp(bytes(tampered)) is None
    assert theirs.auth_failures == 1
    assert theirs.unprotect_rtp(good) == RTP
    assert theirs.unprotect_rtp(good) is None
    assert theirs.replays == 1
    for junk in (b"", b"\x80", b"\x80\x00\x00\x01", bytes(2000)):
        assert theirs.unprotect_rtp(junk) is None
        assert theirs.unprotect_rtcp(junk) is None
    assert theirs.malformed + theirs.auth_failures - 1 == 8
    # A packet protected with another key fails authentication.
    stranger = SrtpTransform(local=crypto("AES_CM_128_HMAC_SHA1_80"), remote=None)
    assert theirs.unprotect_rtp(stranger.protect_rtp(RTP[:3] + b"\x77" + RTP[4:])) is None
    assert theirs.auth_failures >= 2


def test_no_crypto_means_plain_rtp_both_ways():
    plain = SrtpTransform(local=None, remote=None)
    assert not plain.encrypts and not plain.decrypts
    assert plain.protect_rtp(RTP) is RTP
    assert plain.protect_rtcp(b"\x81\xc9\x00\x01abcd") == b"\x81\xc9\x00\x01abcd"
    assert plain.unprotect_rtp(RTP) is RTP
    # Crypto offered by the peer but none of ours: we still never encrypt.
    receive_only = SrtpTransform(local=None, remote=crypto("AEAD_AES_128_GCM"))
    assert receive_only.protect_rtp(RTP) == RTP


def test_unusable_crypto_is_refused():
    with pytest.raises(SrtpConfigError):
        SrtpTransform(local=CryptoParams(1, "F8_128_HMAC_SHA1_80", bytes(30)), remote=None)
    with pytest.raises(SrtpConfigError):
        SrtpTransform(local=CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", bytes(28)), remote=None)
    with pytest.raises(SrtpConfigError):
        SrtpTransform(
            local=CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", bytes(30), mki=(1, 4)), remote=None
        )
    assert is_supported(crypto("AEAD_AES_256_GCM"))
    assert not is_supported(CryptoParams(1, "AEAD_AES_256_GCM", bytes(30)))
    assert not is_supported(CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", bytes(30), mki=(1, 1)))


def test_same_keys():
    a, b = crypto("AES_CM_128_HMAC_SHA1_80"), crypto("AES_CM_128_HMAC_SHA1_80")
    transform = SrtpTransform(a, b)
    assert transform.same_keys(CryptoParams(7, a.suite, a.key_salt), b)
    assert not transform.same_keys(b, a)
    assert not transform.same_keys(None, b)


def _is_rtcp(data: bytes) -> bool:
    return len(data) > 1 and 200 <= data[1] <= 204


@pytest.mark.parametrize("capture", sorted(CAPTURES), ids=lambda c: c.split("/")[-1])
def test_every_srtp_packet_of_the_captures_decrypts(capture):
    info = CAPTURES[capture]
    streams = {int(s["ssrc"], 16): s for s in info["streams"]}
    transforms = {
        ssrc: SrtpTransform(
            local=None,
            remote=CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", base64.b64decode(s["key_inline"])),
        )
        for ssrc, s in streams.items()
    }
    decrypted = dict.fromkeys(streams, 0)
    rtcp_decrypted = dict.fromkeys(streams, 0)
    first_payload: dict[int, bytes] = {}
    with PcapReader(str(PCAPS / capture.split("/")[-1])) as reader:
        for frame in reader:
            if UDP not in frame:
                continue
            data = bytes(frame[UDP].payload)
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            if _is_rtcp(data):
                ssrc = int.from_bytes(data[4:8], "big")
                if ssrc in transforms:
                    assert transforms[ssrc].unprotect_rtcp(data) is not None
                    rtcp_decrypted[ssrc] += 1
                continue
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc not in transforms:
                continue
            plain = transforms[ssrc].unprotect_rtp(data)
            assert plain is not None, f"SSRC {ssrc:#x}: packet {decrypted[ssrc] + 1} failed"
            pt, _marker, _seq, _ts, packet_ssrc, start, end = parse_rtp(plain)
            assert (pt, packet_ssrc) == (streams[ssrc]["payload_type"], ssrc)
            first_payload.setdefault(ssrc, plain[start : start + 8])
            decrypted[ssrc] += 1
    for ssrc, stream in streams.items():
        assert decrypted[ssrc] == stream["packets_authenticated_and_decrypted"]
        assert first_payload[ssrc].hex() == stream["first_decrypted_payload_octets"]
        transform = transforms[ssrc]
        assert transform.auth_failures == transform.replays == transform.malformed == 0
    # The SDES calls carry SRTCP too: every compound packet of those SSRCs authenticates.
    if "voipshark" in capture:
        assert all(count > 0 for count in rtcp_decrypted.values())
