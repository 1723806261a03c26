"""Tests of sipua.sip.offer_answer: RFC 3264 offer/answer with SDES (RFC 4568)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sipua.sip.errors import SipError
from sipua.sip.offer_answer import (
    AnswerState,
    MediaPolicy,
    OfferRejected,
    OfferState,
    answer,
    make_offer,
    process_answer,
)
from sipua.sip.rtp_params import SRTP_SUITES, Codec, CryptoParams
from sipua.sip.sdes import parse_crypto
from sipua.sip.sdp import Connection, SdpError, SessionDescription, parse_sdp

DATA = Path(__file__).parent.parent / "data" / "sdp"
KEYS = json.loads((DATA / "srtp-keys.json").read_text())
ADDR, PORT = "203.0.113.5", 40000


def load(name: str) -> SessionDescription:
    return parse_sdp((DATA / name).read_bytes())


def counter_bytes(start: int = 0):
    """A deterministic random_bytes: 0, 1, 2, … (mod 256) across calls."""
    state = [start]

    def random_bytes(n: int) -> bytes:
        out = bytes((state[0] + i) & 0xFF for i in range(n))
        state[0] += n
        return out

    return random_bytes


def offer_sdp(media: str, session: str = "c=IN IP4 192.0.2.50\n") -> SessionDescription:
    return parse_sdp("v=0\no=peer 100 100 IN IP4 192.0.2.50\ns=-\n" + session + "t=0 0\n" + media)


def do_answer(offer, policy=None, **kwargs) -> AnswerState:
    kwargs.setdefault("random_bytes", counter_bytes())
    return answer(offer, policy or MediaPolicy(), ADDR, PORT, **kwargs)


def crypto_of(media) -> list[CryptoParams]:
    return [parse_crypto(v) for v in media.crypto_lines]


# --- codecs ----------------------------------------------------------------------------


def test_pcmu_only_offer():
    offer = load("saghul-uac-basic-offer.sdp")  # m=audio 6000 RTP/AVP 0
    sdp, params = do_answer(offer)
    assert params.codec == Codec("PCMU", 0, 8000)
    assert params.codecs == (params.codec,)
    assert params.dtmf is None
    assert params.remote_rtp == ("192.0.2.10", 6000)
    assert params.remote_rtcp == ("192.0.2.10", 6001)
    assert params.direction == "sendrecv"
    assert params.ptime == 20
    # SRTP "optional" (the default) never encrypts toward a peer that offered no crypto.
    assert params.srtp_local is None and params.srtp_remote is None and not params.secure
    assert not params.rtcp_mux
    (media,) = sdp.media
    assert (media.port, media.proto, media.formats) == (PORT, "RTP/AVP", ("0",))
    assert sdp.connection == Connection(ADDR)
    assert sdp.origin.address == ADDR
    assert media.crypto_lines == []
    assert media.rtpmaps()[0].encoding_name == "PCMU"
    assert media.direction == "sendrecv"
    assert media.ptime == 20
    assert b"a=fingerprint" not in sdp.to_bytes()


OPUS_TWO_TELEPHONE_EVENTS = (
    "m=audio 5004 RTP/AVP 96 0 101 102\n"
    "a=rtpmap:96 opus/48000/2\n"
    "a=fmtp:96 minptime=10;useinbandfec=1;sprop-stereo=1\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-16\n"
    "a=rtpmap:102 telephone-event/48000\n"
    "a=fmtp:102 0-15\n"
)


def test_opus_with_telephone_event_at_48000():
    sdp, params = do_answer(offer_sdp(OPUS_TWO_TELEPHONE_EVENTS))
    assert params.codec.name == "opus"
    assert (params.codec.payload_type, params.codec.clock_rate, params.codec.channels) == (
        96,
        48000,
        2,
    )
    assert params.dtmf == Codec("telephone-event", 102, 48000, 1, (("0-15", ""),))
    assert params.codecs == (params.codec, params.dtmf)
    media = sdp.media[0]
    assert media.formats == ("96", "102")
    assert str(media.rtpmaps()[96]) == "96 opus/48000/2"
    assert str(media.rtpmaps()[102]) == "102 telephone-event/48000"
    # Receiver preferences echoed; the offerer's own sprop-* is not ours to state.
    assert media.fmtp(96) == "minptime=10;useinbandfec=1"
    assert media.fmtp(102) == "0-15"
    # The codec handed to the media layer keeps the offer's fmtp (what the peer wants).
    assert params.codec.fmtp_dict()["sprop-stereo"] == "1"


def test_pcmu_preferred_gets_telephone_event_at_8000():
    policy = MediaPolicy(codecs=("PCMU", "opus"))
    sdp, params = do_answer(offer_sdp(OPUS_TWO_TELEPHONE_EVENTS), policy)
    assert params.codec == Codec("PCMU", 0, 8000)
    assert params.dtmf.payload_type == 101 and params.dtmf.clock_rate == 8000
    assert sdp.media[0].formats == ("0", "101")


def test_opus_offer_with_only_8000_telephone_event_prefers_a_codec_with_dtmf():
    # MicroSIP's real offer: opus/48000/2 and telephone-event/8000 only. Events at
    # 8000 cannot share a 48 kHz stream's timestamps (RFC 4733 §2.1), so a codec at
    # 8000 is chosen: a voice agent must hear key presses.
    sdp, params = do_answer(load("voipshark-pcmu-f62-invite-microsip-offer.sdp"))
    assert params.codec.clock_rate == 8000 and params.codec.name in ("G722", "PCMU", "PCMA")
    assert params.dtmf is not None and params.dtmf.clock_rate == 8000
    assert str(params.dtmf.payload_type) in sdp.media[0].formats


def test_opus_offer_with_only_8000_telephone_event_keeps_opus_without_dtmf_policy():
    sdp, params = do_answer(
        load("voipshark-pcmu-f62-invite-microsip-offer.sdp"), MediaPolicy(dtmf=False)
    )
    assert params.codec.name == "opus" and params.codec.payload_type == 123
    assert params.dtmf is None
    assert sdp.media[0].formats == ("123",)
    assert sdp.media[0].fmtp(123) == "maxplaybackrate=24000"


def test_dtmf_off_in_policy():
    _, params = do_answer(offer_sdp(OPUS_TWO_TELEPHONE_EVENTS), MediaPolicy(dtmf=False))
    assert params.dtmf is None


def test_telephone_event_without_fmtp_gets_default_events():
    offer = offer_sdp("m=audio 5004 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n")
    sdp, params = do_answer(offer)
    assert params.dtmf.fmtp == ()
    assert sdp.media[0].fmtp(101) == "0-16"


def test_g722_uses_8000_clock():
    sdp, params = do_answer(load("saghul-g722-offer.sdp"))  # 9 G722/8000 + te 101/8000
    assert params.codec == Codec("G722", 9, 8000)
    assert params.dtmf.payload_type == 101
    assert str(sdp.media[0].rtpmaps()[9]) == "9 G722/8000"


def test_g722_written_as_16000_is_still_g722_at_8000():
    # SIPp's pfca scenario writes "a=rtpmap:9 G722/16000".
    sdp, params = do_answer(load("sipp-pfca-sdes-on-avp-offer.sdp"), MediaPolicy(srtp="off"))
    assert params.codec.name == "G722" and params.codec.clock_rate == 8000
    assert params.codec.fmtp == (("bitrate", "64000"),)
    assert str(sdp.media[0].rtpmaps()[9]) == "9 G722/8000"
    assert params.dtmf.clock_rate == 8000  # te/8000 matches G.722's RTP clock


def test_static_payload_types_without_rtpmap():
    # saghul no_rtpmap: "8 0 9 101", only 101 has an rtpmap.
    _, params = do_answer(load("saghul-no-rtpmap-offer.sdp"))
    assert params.codec == Codec("G722", 9, 8000)
    _, params = do_answer(load("saghul-no-rtpmap-offer.sdp"), MediaPolicy(codecs=("PCMA",)))
    assert params.codec == Codec("PCMA", 8, 8000)


def test_our_preference_order_wins_over_the_offer_order():
    offer = load("voipshark-pcmu-f77-invite-asterisk-offer.sdp")  # 0 8 3 111(G726) 101
    assert do_answer(offer).params.codec.name == "PCMU"
    assert do_answer(offer, MediaPolicy(codecs=["pcma", "PCMU"])).params.codec.name == "PCMA"
    # PT 111 is G726-32 here, not Opus: matching is by name and clock, not by number.
    assert do_answer(offer, MediaPolicy(codecs=["OPUS", "pcmu"])).params.codec.name == "PCMU"


def test_no_common_codec_is_488_with_305_warning():
    offer = offer_sdp("m=audio 5004 RTP/AVP 18 3\na=rtpmap:18 G729/8000\n")
    with pytest.raises(OfferRejected) as info:
        do_answer(offer)
    exc = info.value
    assert (exc.status, exc.reason, exc.code) == (488, "Not Acceptable Here", 305)
    assert exc.warning.startswith('305 sipua "Incompatible media format: no common codec')
    assert "G729/8000" in exc.warning and "GSM/8000" in exc.warning
    assert "opus, G722, PCMU, PCMA" in exc.detail


def test_ipv6_offer_with_only_g726_is_rejected():
    with pytest.raises(OfferRejected) as info:
        do_answer(load("rfc5118-ipv6-in-sdp.sdp"))
    assert info.value.code == 305


# --- m-lines -----------------------------------------------------------------------------


def test_video_line_is_refused_with_port_zero():
    offer = load("rfc4475-sdp01.sdp")  # audio 0 12, video 31
    sdp, params = do_answer(offer)
    assert params.codec.name == "PCMU"
    assert params.remote_rtp == ("192.0.2.5", 49217)
    audio, video = sdp.media
    assert (audio.media, audio.port, audio.formats) == ("audio", PORT, ("0",))
    assert (video.media, video.port, video.proto, video.formats) == ("video", 0, "RTP/AVP", ("31",))
    assert video.attributes == ()


def test_media_level_connection_and_ipv6_answer():
    offer = load("rfc5118-mult-ip-in-sdp.sdp")
    sdp, params = answer(offer, MediaPolicy(), "2001:db8::5", PORT, random_bytes=counter_bytes())
    assert params.remote_rtp == ("192.0.2.1", 22334)
    assert sdp.connection == Connection("2001:db8::5", "IP6")
    assert sdp.origin.addrtype == "IP6"
    assert [m.port for m in sdp.media] == [PORT, 0]


def test_m_line_count_and_order_preserved_with_several_streams():
    offer = offer_sdp(
        "m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
        "m=audio 5002 RTP/AVP 18\n"  # no common codec: refused, the next audio is tried
        "m=application 5004 UDP/BFCP *\n"
        "m=audio 5006 RTP/AVP 8\n"
        "m=audio 5008 RTP/AVP 0\n"  # a second usable audio: refused, we take one stream
    )
    sdp, params = do_answer(offer)
    assert params.codec.name == "PCMA"
    assert params.remote_rtp == ("192.0.2.50", 5006)
    assert [(m.media, m.port, m.proto, m.formats) for m in sdp.media] == [
        ("video", 0, "RTP/AVP", ("96",)),
        ("audio", 0, "RTP/AVP", ("18",)),
        ("application", 0, "UDP/BFCP", ("*",)),
        ("audio", PORT, "RTP/AVP", ("8",)),
        ("audio", 0, "RTP/AVP", ("0",)),
    ]
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_offer_without_audio_is_304():
    with pytest.raises(OfferRejected) as info:
        do_answer(offer_sdp("m=video 5000 RTP/AVP 31\n"))
    assert info.value.code == 304
    assert info.value.warning.startswith('304 sipua "Media type not available')
    with pytest.raises(OfferRejected):
        do_answer(offer_sdp(""))


def test_audio_with_port_zero_is_rejected_unless_another_audio_is_active():
    with pytest.raises(OfferRejected) as info:
        do_answer(offer_sdp("m=audio 0 RTP/AVP 0\n"))
    assert info.value.code == 304
    sdp, params = do_answer(offer_sdp("m=audio 0 RTP/AVP 0\nm=audio 5000 RTP/AVP 8\n"))
    assert [m.port for m in sdp.media] == [0, PORT]
    assert params.codec.name == "PCMA"


def test_bytes_offer_is_parsed_and_malformed_bytes_raise_sdp_error():
    raw = (DATA / "heplify-f3-invite-offer.sdp").read_bytes()
    assert do_answer(raw).params.codec.name == "PCMA"
    with pytest.raises(SdpError):
        do_answer((DATA / "saghul-uac-bogus-offer.sdp").read_bytes())


@pytest.mark.parametrize(
    ("proto", "fragment"),
    [
        ("UDP/TLS/RTP/SAVPF", "DTLS-SRTP"),
        ("UDP/TLS/RTP/SAVP", "DTLS-SRTP"),
        ("udp", "is not RTP/AVP or RTP/SAVP"),
    ],
)
def test_unsupported_transport_is_302(proto, fragment):
    with pytest.raises(OfferRejected) as info:
        do_answer(offer_sdp(f"m=audio 5000 {proto} 0\n"))
    assert info.value.code == 302
    assert fragment in info.value.detail


def test_avpf_profile_is_echoed():
    sdp, _ = do_answer(offer_sdp("m=audio 5000 RTP/AVPF 0\n"))
    assert sdp.media[0].proto == "RTP/AVPF"


@pytest.mark.parametrize(
    ("session", "code"),
    [
        ("", 301),  # no c= anywhere
        ("c=ATM NSAP 47.0091.8100.0000.0060.3e64.fd01.0060.3e64.fd01.00\n", 300),
        ("c=IN IPX 1.2.3.4\n", 301),
    ],
)
def test_bad_connection_is_rejected(session, code):
    with pytest.raises(OfferRejected) as info:
        do_answer(offer_sdp("m=audio 5000 RTP/AVP 0\n", session=session))
    assert info.value.code == code


def test_connection_with_host_name_is_used_as_is():
    _, params = do_answer(offer_sdp("m=audio 5000 RTP/AVP 0\n", "c=IN IP4 pbx.example.com\n"))
    assert params.remote_rtp == ("pbx.example.com", 5000)


# --- ptime -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("", 20),
        ("a=ptime:30\n", 30),
        ("a=ptime:10\n", 10),
        ("a=ptime:60\n", 60),
        ("a=ptime:25\n", 20),  # not a multiple of 10
        ("a=ptime:80\n", 20),  # above 60
        ("a=ptime:5\n", 20),
        ("a=ptime:40\na=maxptime:30\n", 20),  # above the offer's own maxptime
        ("a=ptime:20\na=maxptime:150\n", 20),
        ("a=maxptime:10\n", 10),  # our default would exceed maxptime
        ("a=ptime:30.0\n", 30),
    ],
)
def test_ptime(attrs, expected):
    sdp, params = do_answer(offer_sdp("m=audio 5000 RTP/AVP 0\n" + attrs))
    assert params.ptime == expected
    assert sdp.media[0].ptime == expected


def test_policy_ptime_default():
    _, params = do_answer(offer_sdp("m=audio 5000 RTP/AVP 0\n"), MediaPolicy(ptime=40))
    assert params.ptime == 40


# --- direction and hold ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_direction_mapping(offered, answered):
    sdp, params = do_answer(offer_sdp(f"m=audio 5000 RTP/AVP 0\na={offered}\n"))
    assert params.direction == answered
    assert sdp.media[0].direction == answered
    assert params.remote_rtp == ("192.0.2.50", 5000)


def test_session_level_direction_applies():
    offer = offer_sdp("m=audio 5000 RTP/AVP 0\n", "c=IN IP4 192.0.2.50\na=sendonly\n")
    assert do_answer(offer).params.direction == "recvonly"


@pytest.mark.parametrize(
    ("offered", "wish", "answered"),
    [
        ("sendrecv", "sendonly", "sendonly"),  # we hold the peer
        ("sendonly", "sendonly", "inactive"),  # both hold
        ("sendrecv", "recvonly", "recvonly"),
        ("recvonly", "inactive", "inactive"),
    ],
)
def test_our_own_direction_wish(offered, wish, answered):
    sdp, params = do_answer(offer_sdp(f"m=audio 5000 RTP/AVP 0\na={offered}\n"), direction=wish)
    assert params.direction == answered == sdp.media[0].direction


def test_bad_direction_argument():
    with pytest.raises(ValueError, match="direction"):
        do_answer(offer_sdp("m=audio 5000 RTP/AVP 0\n"), direction="both")


def test_hold_and_resume_with_sendonly_reinvite():
    # saghul sipp_uac_hold: sendrecv, then re-INVITE sendonly, then sendrecv again.
    first = do_answer(load("saghul-hold-1-offer.sdp"))
    held = do_answer(load("saghul-hold-2-reinvite-sendonly.sdp"), previous=first)
    resumed = do_answer(load("saghul-hold-3-reinvite-resume.sdp"), previous=held)
    assert [s.params.direction for s in (first, held, resumed)] == [
        "sendrecv",
        "recvonly",
        "sendrecv",
    ]
    assert held.params.remote_rtp == ("192.0.2.10", 6000)  # RFC 3264 hold keeps the address
    assert [s.sdp.origin.session_version for s in (first, held, resumed)] == [
        first.sdp.origin.session_version + i for i in range(3)
    ]
    assert len({s.sdp.origin.session_id for s in (first, held, resumed)}) == 1
    assert first.params.codec == Codec("PCMA", 8, 8000)  # "a=rtpmap: PCMA/8000" on PT 8


def test_deprecated_hold_with_zero_address():
    # saghul sipp_uac_deprecated_hold: c=IN IP4 0.0.0.0 in the re-INVITE, then resume.
    first = do_answer(load("saghul-deprecated-hold-1-offer.sdp"))
    held = do_answer(load("saghul-deprecated-hold-2-reinvite-hold.sdp"), previous=first)
    resumed = do_answer(load("saghul-deprecated-hold-3-reinvite-resume.sdp"), previous=held)
    assert held.params.direction == "recvonly"
    assert held.sdp.media[0].direction == "recvonly"
    assert held.params.remote_rtp is None and held.params.remote_rtcp is None
    assert resumed.params.direction == "sendrecv"
    assert resumed.params.remote_rtp == ("192.0.2.10", 6000)
    assert resumed.sdp.origin.session_version == first.sdp.origin.session_version + 2


def test_zero_address_with_recvonly_is_inactive():
    offer = offer_sdp("m=audio 5000 RTP/AVP 0\na=recvonly\n", "c=IN IP4 0.0.0.0\n")
    assert do_answer(offer).params.direction == "inactive"


def test_empty_reinvite_flow_inactive_then_we_offer():
    # saghul sipp_uac_empty_reinvite: the INVITE holds (c=0.0.0.0, a=inactive); then a
    # re-INVITE without SDP, so we offer in the 200 OK and the answer comes in the ACK.
    first = do_answer(load("saghul-empty-reinvite-1-offer.sdp"))
    assert first.params.direction == "inactive"
    assert first.params.remote_rtp is None
    offer, state = make_offer(
        MediaPolicy(), ADDR, PORT, previous=first, random_bytes=counter_bytes(9)
    )
    assert offer.origin.session_id == first.sdp.origin.session_id
    assert offer.origin.session_version == first.sdp.origin.session_version + 1
    params = process_answer(state, load("saghul-empty-reinvite-2-ack-answer.sdp"))
    assert params.codec == Codec("PCMA", 8, 8000)
    assert params.direction == "sendrecv"
    assert params.remote_rtp == ("192.0.2.10", 6000)


# --- RTCP ----------------------------------------------------------------------------------


def test_rtcp_attribute_gives_the_rtcp_address():
    offer = offer_sdp("m=audio 5000 RTP/AVP 0\na=rtcp:5501 IN IP4 198.51.100.7\n")
    assert do_answer(offer).params.remote_rtcp == ("198.51.100.7", 5501)
    pfca = load("sipp-pfca-sdes-on-avp-offer.sdp")  # a=rtcp:6001 without an address
    assert do_answer(pfca).params.remote_rtcp == ("192.0.2.20", 6001)
    pjsip = load("voipshark-pcmu-f62-invite-microsip-offer.sdp")  # a=rtcp:4001 IN IP4 …
    assert do_answer(pjsip).params.remote_rtcp == ("192.168.20.132", 4001)


def test_rtcp_mux_accepted():
    offer = offer_sdp("m=audio 5000 RTP/AVP 0\na=rtcp-mux\n")
    sdp, params = do_answer(offer)
    assert params.rtcp_mux
    assert params.remote_rtcp == params.remote_rtp == ("192.0.2.50", 5000)
    assert sdp.media[0].rtcp_mux
    sdp, params = do_answer(offer, MediaPolicy(rtcp_mux=False))
    assert not params.rtcp_mux and not sdp.media[0].rtcp_mux
    assert params.remote_rtcp == ("192.0.2.50", 5001)


def test_top_port_has_no_implicit_rtcp_port():
    _, params = do_answer(offer_sdp("m=audio 65535 RTP/AVP 0\n"))
    assert params.remote_rtcp is None


# --- SRTP (SDES) ---------------------------------------------------------------------------


def test_sdes_offer_from_capture_picks_first_supported_in_offer_order():
    # MicroSIP offers AES_256_CM ×2 (not ours), then AES_CM_128_HMAC_SHA1_80 tag 3 and
    # _32 tag 4. Asterisk answered tag 3 in the capture (f84); so must we.
    offer = load("voipshark-srtp-f55-invite-microsip-offer.sdp")
    sdp, params = do_answer(offer, random_bytes=counter_bytes(100))
    (media,) = sdp.media
    assert media.proto == "RTP/SAVP"
    (ours,) = crypto_of(media)
    asterisk = crypto_of(load("voipshark-srtp-f84-200ok-asterisk-answer.sdp").media[0])[0]
    assert (
        (ours.tag, ours.suite) == (asterisk.tag, asterisk.suite) == (3, "AES_CM_128_HMAC_SHA1_80")
    )
    assert ours.key_salt == bytes(range(100, 130))  # from the injected generator
    assert params.srtp_local == ours
    stream = next(s for s in KEYS["captures"] if s["ssrc"] == "0x547970c2")
    assert params.srtp_remote.key_salt == base64.b64decode(stream["key_inline"])
    assert params.srtp_remote.tag == 3
    assert params.secure
    assert not any(a.name in ("fingerprint", "setup") for a in media.attributes)
    # Opus is offered with telephone-event at 8000 only: a codec that can carry DTMF wins.
    assert params.codec.clock_rate == 8000 and params.dtmf is not None


def test_sdes_asterisk_offer():
    offer = load("voipshark-srtp-f62-invite-asterisk-offer.sdp")
    sdp, params = do_answer(offer)
    assert params.codec.name == "PCMU" and params.dtmf.payload_type == 101
    assert params.srtp_remote.key_salt == base64.b64decode(
        "+PmjSa8ZRO+QtCcuylYCwJTY1RBdQez7NjnsfAAu"
    )
    assert sdp.media[0].crypto_lines[0].startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")


def _crypto_offer(*suites: str, proto: str = "RTP/SAVP") -> SessionDescription:
    lines = "".join(
        f"a=crypto:{tag} {suite} inline:"
        + base64.b64encode(
            bytes([tag]) * {"AEAD_AES_256_GCM": 44, "AEAD_AES_128_GCM": 28}.get(suite, 30)
        ).decode()
        + "\n"
        for tag, suite in enumerate(suites, 1)
    )
    return offer_sdp(f"m=audio 5000 {proto} 0\n" + lines)


def test_suite_choice_follows_offer_order_then_our_allowed_list():
    offer = _crypto_offer("AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM")
    assert do_answer(offer).params.srtp_local.suite == "AES_CM_128_HMAC_SHA1_32"
    only_gcm = MediaPolicy(crypto_suites=("AEAD_AES_256_GCM", "AEAD_AES_128_GCM"))
    _, params = do_answer(offer, only_gcm)
    assert (params.srtp_local.tag, params.srtp_local.suite) == (2, "AEAD_AES_128_GCM")
    assert params.srtp_remote.key_salt == bytes([2]) * 28
    assert len(params.srtp_local.key_salt) == 28


def test_malformed_crypto_line_is_skipped():
    offer = offer_sdp(
        "m=audio 5000 RTP/SAVP 0\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\n"  # too short
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"
        + KEYS["libsrtp"][0]["sdes_inline"]
        + " UNENCRYPTED_SRTP\n"
        "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" + KEYS["libsrtp"][0]["sdes_inline"] + "\n"
    )
    assert do_answer(offer).params.srtp_local.tag == 3


def test_srtp_required_and_no_crypto_is_488():
    with pytest.raises(OfferRejected) as info:
        do_answer(load("saghul-uac-basic-offer.sdp"), MediaPolicy(srtp="required"))
    assert info.value.status == 488 and info.value.code == 302
    assert "SRTP is required" in info.value.detail


def test_savp_with_no_usable_crypto_is_488():
    offer = _crypto_offer("AES_256_CM_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80")
    with pytest.raises(OfferRejected) as info:
        do_answer(offer)
    assert info.value.code == 302
    assert "AES_256_CM_HMAC_SHA1_80 unknown" in info.value.detail
    with pytest.raises(OfferRejected) as info:
        do_answer(
            _crypto_offer("AES_CM_128_HMAC_SHA1_32"),
            MediaPolicy(crypto_suites=("AEAD_AES_128_GCM",)),
        )
    assert "AES_CM_128_HMAC_SHA1_32 not allowed" in info.value.detail
    with pytest.raises(OfferRejected):
        do_answer(_crypto_offer())  # RTP/SAVP without any a=crypto


def test_srtp_off_and_savp_offer_is_488():
    with pytest.raises(OfferRejected) as info:
        do_answer(load("voipshark-srtp-f55-invite-microsip-offer.sdp"), MediaPolicy(srtp="off"))
    assert info.value.code == 302
    assert "SRTP is disabled" in info.value.detail


def test_best_effort_crypto_on_avp_is_accepted_when_allowed():
    # SIPp pfca: RTP/AVP with a=crypto (tags 1 and 2).
    offer = load("sipp-pfca-sdes-on-avp-offer.sdp")
    for mode in ("optional", "required"):
        sdp, params = do_answer(offer, MediaPolicy(srtp=mode), random_bytes=counter_bytes(7))
        assert sdp.media[0].proto == "RTP/AVP"
        (ours,) = crypto_of(sdp.media[0])
        assert (ours.tag, ours.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
        assert params.srtp_local == ours
        assert params.srtp_remote.key_salt == bytes.fromhex(
            KEYS["libsrtp"][0]["master_key"] + KEYS["libsrtp"][0]["master_salt"]
        )
    sdp, params = do_answer(offer, MediaPolicy(srtp="off"))
    assert sdp.media[0].crypto_lines == [] and params.srtp_local is None


def test_best_effort_crypto_we_cannot_use_falls_back_to_plain():
    offer = _crypto_offer("AES_256_CM_HMAC_SHA1_80", proto="RTP/AVP")
    sdp, params = do_answer(offer)
    assert params.srtp_local is None and params.srtp_remote is None
    assert sdp.media[0].crypto_lines == []
    with pytest.raises(OfferRejected):
        do_answer(offer, MediaPolicy(srtp="required"))


def test_reinvite_keeps_our_key_unless_peer_key_or_suite_changes():
    first = do_answer(
        load("voipshark-srtp-f55-invite-microsip-offer.sdp"), random_bytes=counter_bytes(0)
    )
    # MicroSIP's UPDATE re-offers the same key under tag 1; Asterisk kept its key
    # and switched to tag 1 (f92). We do the same.
    update = load("voipshark-srtp-f90-update-microsip-offer.sdp")
    second = do_answer(update, previous=first, random_bytes=counter_bytes(200))
    assert second.params.srtp_local == replace(first.params.srtp_local, tag=1)
    assert crypto_of(second.sdp.media[0]) == [second.params.srtp_local]
    asterisk_before = crypto_of(load("voipshark-srtp-f84-200ok-asterisk-answer.sdp").media[0])[0]
    asterisk_after = crypto_of(load("voipshark-srtp-f92-200ok-asterisk-answer.sdp").media[0])[0]
    assert asterisk_after == replace(asterisk_before, tag=1)
    assert second.params.codec.name == "PCMU"  # the UPDATE narrowed the codecs

    # The peer changes its key: we change ours.
    old_key = update.media[0].crypto_lines[0].split("inline:")[1]
    new_key = base64.b64encode(bytes(30)).decode()
    rekeyed = parse_sdp(update.to_str().replace(old_key, new_key))
    third = do_answer(rekeyed, previous=second, random_bytes=counter_bytes(200))
    assert third.params.srtp_local.key_salt == bytes(range(200, 230))
    # The peer changes suite (same key octets): new key too.
    resuited = parse_sdp(
        update.to_str().replace("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    )
    fourth = do_answer(resuited, previous=second, random_bytes=counter_bytes(50))
    assert fourth.params.srtp_local.key_salt == bytes(range(50, 80))
    assert fourth.params.srtp_local.suite == "AES_CM_128_HMAC_SHA1_32"


# --- re-INVITE ------------------------------------------------------------------------------


def test_unchanged_reoffer_gives_unchanged_answer_but_the_version():
    offer = load("voipshark-srtp-f55-invite-microsip-offer.sdp")
    first = do_answer(offer, random_bytes=counter_bytes(1))
    again = do_answer(offer, previous=first, random_bytes=counter_bytes(77))
    assert again.sdp.origin == replace(
        first.sdp.origin, session_version=first.sdp.origin.session_version + 1
    )
    assert replace(again.sdp, origin=first.sdp.origin) == first.sdp
    assert again.params == first.params


def test_codec_change_on_reinvite():
    first = do_answer(load("voipshark-pcmu-f77-invite-asterisk-offer.sdp"))
    assert first.params.codec.name == "PCMU"
    second = do_answer(offer_sdp("m=audio 5000 RTP/AVP 8\n"), previous=first)
    assert second.params.codec.name == "PCMA"
    assert second.params.remote_rtp == ("192.0.2.50", 5000)
    assert second.sdp.origin.session_version == first.sdp.origin.session_version + 1


def test_origin_from_policy_and_determinism():
    policy = MediaPolicy(session_id=42, session_version=7, username="edge", session_name="call")
    sdp, _ = do_answer(load("saghul-uac-basic-offer.sdp"), policy)
    assert sdp.to_str().startswith("v=0\r\no=edge 42 7 IN IP4 203.0.113.5\r\ns=call\r\n")
    offer = load("voipshark-srtp-f55-invite-microsip-offer.sdp")
    a = do_answer(offer, random_bytes=counter_bytes(3))
    b = do_answer(offer, random_bytes=counter_bytes(3))
    assert a.sdp.to_bytes() == b.sdp.to_bytes() and a.params == b.params
    assert a.sdp.origin.session_version == a.sdp.origin.session_id


# --- making offers ---------------------------------------------------------------------------


def test_make_offer_default_policy():
    sdp, state = make_offer(MediaPolicy(), ADDR, PORT, random_bytes=counter_bytes())
    (media,) = sdp.media
    assert (media.media, media.port, media.proto) == ("audio", PORT, "RTP/AVP")
    assert media.formats == ("111", "9", "0", "8", "101", "110")
    assert {pt: str(m) for pt, m in media.rtpmaps().items()} == {
        111: "111 opus/48000/2",
        9: "9 G722/8000",
        0: "0 PCMU/8000",
        8: "8 PCMA/8000",
        101: "101 telephone-event/8000",
        110: "110 telephone-event/48000",
    }
    assert media.fmtp(101) == media.fmtp(110) == "0-16"
    assert media.ptime == 20
    assert media.direction == "sendrecv"
    cryptos = crypto_of(media)
    assert [(c.tag, c.suite) for c in cryptos] == list(enumerate(SRTP_SUITES, 1))
    assert cryptos == list(state.cryptos)
    assert len({c.key_salt for c in cryptos}) == 4
    assert sdp.connection == Connection(ADDR)
    assert isinstance(state, OfferState) and state.sdp == sdp
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_make_offer_srtp_modes():
    required, _ = make_offer(MediaPolicy(srtp="required"), ADDR, PORT)
    assert required.media[0].proto == "RTP/SAVP" and len(required.media[0].crypto_lines) == 4
    off, state = make_offer(MediaPolicy(srtp="off"), ADDR, PORT)
    assert off.media[0].proto == "RTP/AVP" and off.media[0].crypto_lines == []
    assert state.cryptos == ()
    one, _ = make_offer(
        MediaPolicy(srtp="required", crypto_suites=["AES_CM_128_HMAC_SHA1_80"]), ADDR, PORT
    )
    assert [c.split()[:2] for c in one.media[0].crypto_lines] == [["1", "AES_CM_128_HMAC_SHA1_80"]]


def test_make_offer_narrow_policy():
    sdp, _ = make_offer(MediaPolicy(codecs=["PCMU"], srtp="off"), ADDR, PORT)
    assert sdp.media[0].formats == ("0", "101")
    sdp, _ = make_offer(MediaPolicy(codecs=["opus"], dtmf=False, ptime=40), ADDR, PORT)
    assert sdp.media[0].formats == ("111",)
    assert sdp.media[0].ptime == 40
    sdp, _ = make_offer(MediaPolicy(), "2001:db8::5", PORT, direction="sendonly")
    assert sdp.connection.addrtype == "IP6" and sdp.media[0].direction == "sendonly"


def test_late_offer_round_trip_with_sipp_answer():
    # saghul sipp_uac_late_offer: INVITE without SDP; we offer in the 200 OK and SIPp
    # answers PCMU in the ACK.
    policy = MediaPolicy()
    offer, state = make_offer(policy, ADDR, PORT, random_bytes=counter_bytes())
    params = process_answer(state, (DATA / "saghul-late-offer-ack-answer.sdp").read_bytes())
    assert params.codec == Codec("PCMU", 0, 8000)
    assert params.dtmf is None  # SIPp did not answer telephone-event
    assert params.remote_rtp == ("192.0.2.10", 6000)
    assert params.remote_rtcp == ("192.0.2.10", 6001)
    assert params.direction == "sendrecv"
    assert params.srtp_local is None and params.srtp_remote is None  # best effort declined


def test_two_sipua_ends_negotiate_srtp_and_opus():
    alice, bob = MediaPolicy(srtp="required"), MediaPolicy(srtp="optional")
    offer, state = make_offer(alice, "192.0.2.1", 4000, random_bytes=counter_bytes(0))
    answer_sdp, bob_params = answer(
        offer.to_bytes(), bob, "192.0.2.2", 6000, random_bytes=counter_bytes(150)
    )
    alice_params = process_answer(state, answer_sdp.to_bytes())
    assert alice_params.srtp_local == bob_params.srtp_remote
    assert alice_params.srtp_remote == bob_params.srtp_local
    assert alice_params.srtp_local.suite == "AEAD_AES_256_GCM"  # the first one offered
    assert alice_params.codec == bob_params.codec == Codec("opus", 111, 48000, 2)
    assert alice_params.dtmf == bob_params.dtmf
    assert alice_params.dtmf.payload_type == 110
    assert alice_params.remote_rtp == ("192.0.2.2", 6000)
    assert bob_params.remote_rtp == ("192.0.2.1", 4000)
    assert alice_params.direction == bob_params.direction == "sendrecv"
    # Bob holds Alice with a re-INVITE: Bob offers sendonly, Alice answers recvonly.
    hold, hold_state = make_offer(
        bob, "192.0.2.2", 6000, previous=AnswerState(answer_sdp, bob_params), direction="sendonly"
    )
    assert hold.origin.session_version == answer_sdp.origin.session_version + 1
    assert crypto_of(hold.media[0])[2].key_salt != bob_params.srtp_local.key_salt
    kept = [c for c in crypto_of(hold.media[0]) if c.suite == bob_params.srtp_local.suite]
    assert kept[0].key_salt == bob_params.srtp_local.key_salt  # our key in use is kept
    alice_answer, alice_held = answer(
        hold, alice, "192.0.2.1", 4000, previous=AnswerState(offer, alice_params)
    )
    assert alice_held.direction == "recvonly"
    bob_held = process_answer(hold_state, alice_answer)
    assert bob_held.direction == "sendonly"
    assert alice_answer.origin.session_version == offer.origin.session_version + 1


def test_peer_answer_with_different_payload_type_and_pcma():
    _, state = make_offer(MediaPolicy(srtp="off"), ADDR, PORT)
    answer_sdp = offer_sdp(
        "m=audio 7000 RTP/AVP 96 97\na=rtpmap:96 opus/48000/2\na=rtpmap:97 telephone-event/48000\n"
    )
    params = process_answer(state, answer_sdp)
    assert params.codec == Codec("opus", 96, 48000, 2)
    assert params.dtmf.payload_type == 97
    params = process_answer(state, load("heplify-f9-200ok-answer.sdp"))  # PCMA CN te
    assert params.codec == Codec("PCMA", 8, 8000)
    assert params.dtmf.payload_type == 101
    assert params.remote_rtp == ("10.33.6.101", 6050)


def test_recvonly_answer_makes_us_sendonly():
    _, state = make_offer(MediaPolicy(srtp="off"), ADDR, PORT)
    params = process_answer(state, load("saghul-uas-dir-recvonly-answer.sdp"))
    assert params.direction == "sendonly"


def test_answer_on_hold_address():
    _, state = make_offer(MediaPolicy(srtp="off"), ADDR, PORT)
    held = offer_sdp("m=audio 7000 RTP/AVP 0\n", "c=IN IP4 0.0.0.0\n")
    params = process_answer(state, held)
    assert params.remote_rtp is None and params.direction == "recvonly"


def _answer_text(media: str) -> bytes:
    return offer_sdp(media).to_bytes()


@pytest.mark.parametrize(
    ("policy", "answer_media", "code", "fragment"),
    [
        (MediaPolicy(codecs=["opus", "G722"]), None, 305, "no codec from our offer"),
        (MediaPolicy(), "m=audio 0 RTP/AVP 0\n", 304, "refused the audio stream"),
        (MediaPolicy(), "m=audio 7000 RTP/AVP 0\nm=video 0 RTP/AVP 31\n", 399, "m-lines"),
        (MediaPolicy(srtp="required"), "m=audio 7000 RTP/AVP 0\n", 302, "no a=crypto"),
        (MediaPolicy(srtp="required"), "m=audio 7000 RTP/SAVP 0\n", 302, "no a=crypto"),
        (
            MediaPolicy(),
            "m=audio 7000 RTP/AVP 0\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:"
            + KEYS["libsrtp"][0]["sdes_inline"]
            + "\n",
            302,
            "does not match a tag",
        ),
        (
            MediaPolicy(),
            "m=audio 7000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
            + KEYS["libsrtp"][0]["sdes_inline"]
            + "\n",  # tag 1 is AEAD_AES_256_GCM in our offer
            302,
            "does not match a tag",
        ),
        (
            MediaPolicy(),
            "m=audio 7000 RTP/AVP 0\na=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:AAAA\n",
            302,
            "answer a=crypto",
        ),
        (
            MediaPolicy(),
            "m=audio 7000 RTP/AVP 0\na=crypto:3 X\na=crypto:4 Y\n",
            302,
            "2 a=crypto lines",
        ),
        (MediaPolicy(srtp="off"), "m=audio 7000 RTP/SAVP 0\n", 302, "did not offer"),
        (MediaPolicy(), "m=audio 7000 UDP/TLS/RTP/SAVP 0\n", 302, "DTLS"),
    ],
)
def test_unusable_answers(policy, answer_media, code, fragment):
    _, state = make_offer(policy, ADDR, PORT)
    if answer_media is None:
        body = (DATA / "voipshark-pcmu-f126-200ok-asterisk-answer.sdp").read_bytes()
    else:
        body = _answer_text(answer_media)
    with pytest.raises(OfferRejected) as info:
        process_answer(state, body)
    assert info.value.code == code
    assert fragment in info.value.detail


def test_malformed_answer_is_offer_rejected():
    _, state = make_offer(MediaPolicy(), ADDR, PORT)
    with pytest.raises(OfferRejected) as info:
        process_answer(state, (DATA / "saghul-uac-bogus-offer.sdp").read_bytes())
    assert info.value.code == 399 and "malformed SDP answer" in info.value.detail


def test_srtp_answer_to_our_optional_offer():
    # A PBX that does SDES answers our best-effort offer with RTP/SAVP and tag 3.
    _, state = make_offer(MediaPolicy(), ADDR, PORT, random_bytes=counter_bytes())
    their = KEYS["captures"][0]["key_inline"]
    params = process_answer(
        state,
        _answer_text(
            f"m=audio 7000 RTP/SAVP 0\na=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{their}\n"
        ),
    )
    assert params.srtp_local == state.cryptos[2]
    assert params.srtp_remote.key_salt == base64.b64decode(their)


# --- policy and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"codecs": ["G729"]}, "not implemented"),
        ({"codecs": []}, "empty"),
        ({"srtp": "maybe"}, "srtp"),
        ({"crypto_suites": ["AES_256_CM_HMAC_SHA1_80"]}, "crypto suite"),
        ({"crypto_suites": []}, "at least one"),
        ({"ptime": 25}, "ptime"),
        ({"ptime": 70}, "ptime"),
    ],
)
def test_policy_validation(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        MediaPolicy(**kwargs)


def test_policy_defaults():
    policy = MediaPolicy(codecs="pcmu", srtp="off", crypto_suites=[])
    assert policy.codecs == ("pcmu",)
    default = MediaPolicy()
    assert default.codecs == ("opus", "G722", "PCMU", "PCMA")
    assert default.crypto_suites == SRTP_SUITES
    assert (default.ptime, default.dtmf) == (20, True)


def test_offer_rejected_warning_format():
    exc = OfferRejected(305, 'no "codec"', agent="edge.example.com")
    assert exc.warning == '305 edge.example.com "Incompatible media format: no \\"codec\\""'
    assert (exc.status, exc.reason) == (488, "Not Acceptable Here")
    assert "305" in repr(exc)
    assert isinstance(exc, SipError)
    policy = MediaPolicy(warning_agent="sbc1")
    with pytest.raises(OfferRejected) as info:
        do_answer(offer_sdp("m=video 5000 RTP/AVP 31\n"), policy)
    assert info.value.warning.startswith('304 sbc1 "')


# --- property: any parseable offer gets an answer or a 488 -------------------------------------

_MEDIA_BLOCKS = st.sampled_from(
    [
        "m=audio 5000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\n",
        "m=audio 5000 RTP/AVP 9 0 8 96\na=rtpmap:96 opus/48000/2\n",
        "m=audio 5000 RTP/SAVP 0 8\na=crypto:1 AEAD_AES_128_GCM inline:"
        + base64.b64encode(bytes(28)).decode()
        + "\n",
        "m=audio 5000 RTP/AVP 96 110\na=rtpmap:96 opus/48000/2\na=rtpmap:110 telephone-event/48000\n",
        "m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
        + KEYS["libsrtp"][0]["sdes_inline"]
        + "\n",
        "m=audio 5000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:garbage\n",
        "m=audio 5000 RTP/SAVPF 9\na=crypto:x\n",
        "m=audio 0 RTP/AVP 0\n",
        "m=audio 5000 RTP/AVP 18\n",
        "m=audio 5000 UDP/TLS/RTP/SAVPF 111\n",
        "m=video 5002 RTP/AVP 31\n",
        "m=audio 5000 RTP/AVP 0\nc=IN IP4 0.0.0.0\na=sendonly\n",
        "m=audio 5000 RTP/AVP 8\nc=IN IP6 2001:db8::9\na=rtcp:1 IN IP4 192.0.2.3\na=rtcp-mux\n",
        "m=audio 5000 RTP/AVP 0\na=ptime:0\na=maxptime:1\n",
        "m=audio 5000 RTP/AVP 0\nc=IN IPX x\n",
        "m=text 5000 RTP/AVP 98\n",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_MEDIA_BLOCKS, min_size=1, max_size=3),
    st.sampled_from(["c=IN IP4 192.0.2.50\n"] * 4 + ["", "a=inactive\nc=IN IP4 192.0.2.50\n"]),
    st.builds(
        MediaPolicy,
        codecs=st.permutations(["opus", "G722", "PCMU", "PCMA"]).map(lambda c: tuple(c[:2])),
        srtp=st.sampled_from(["required", "optional", "off"]),
    ),
)
def test_answer_returns_or_rejects(blocks, session, policy):
    offer = offer_sdp("".join(blocks), session)
    try:
        sdp, params = answer(offer, policy, ADDR, PORT, random_bytes=counter_bytes())
    except OfferRejected as exc:
        event(f"rejected {exc.code}")
        assert exc.status == 488 and exc.warning
        return
    event("answered, secure" if params.secure else "answered, plain")
    assert len(sdp.media) == len(offer.media)
    assert sum(m.port != 0 for m in sdp.media) == 1
    assert parse_sdp(sdp.to_bytes()) == sdp
    if params.srtp_local is not None:
        assert (
            params.srtp_remote is not None and params.srtp_local.suite == params.srtp_remote.suite
        )
    if policy.srtp == "required":
        assert params.secure
    if policy.srtp == "off":
        assert not params.secure
