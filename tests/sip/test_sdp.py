"""Tests of sipua.sip.sdp: parsing, serializing and reading SDP (RFC 8866)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipua.sip.rtp_params import Codec
from sipua.sip.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    parse_sdp,
)

DATA = Path(__file__).parent.parent / "data" / "sdp"
ALL_FILES = sorted(p.name for p in DATA.glob("*.sdp"))
VALID_FILES = [name for name in ALL_FILES if "bogus" not in name]


def load(name: str) -> SessionDescription:
    return parse_sdp((DATA / name).read_bytes())


# --- real descriptions ---------------------------------------------------------------


def test_data_files_are_present():
    # Guards the parametrized tests below against silently running on nothing.
    assert len(VALID_FILES) >= 30


@pytest.mark.parametrize("name", VALID_FILES)
def test_real_sdp_round_trips(name):
    raw = (DATA / name).read_bytes()
    sdp = parse_sdp(raw)
    assert parse_sdp(sdp.to_bytes()) == sdp
    # We write CRLF; apart from that the bytes are what the peer sent.
    assert sdp.to_bytes() == raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_pcap_offer_fields():
    sdp = load("voipshark-srtp-f55-invite-microsip-offer.sdp")
    assert sdp.origin == Origin("-", 3732317048, 3732317048, "192.168.20.132")
    assert sdp.session_name == "pjmedia"
    assert sdp.connection is None
    assert sdp.bandwidths == (Bandwidth("AS", 84),)
    assert sdp.timings == (Timing(0, 0),)
    assert sdp.attributes == (Attribute("X-nat", "0"),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.port_count, audio.proto) == (
        "audio",
        4000,
        None,
        "RTP/SAVP",
    )
    assert audio.formats == ("123", "8", "0", "101")
    assert audio.connections == (Connection("192.168.20.132"),)
    assert audio.bandwidths == (Bandwidth("TIAS", 64000),)
    assert audio.rtcp == RtcpAttribute(4001, Connection("192.168.20.132"))
    assert audio.direction == "sendrecv"
    assert audio.is_secure_proto and audio.is_rtp
    assert [line.split()[1] for line in audio.crypto_lines] == [
        "AES_256_CM_HMAC_SHA1_80",
        "AES_256_CM_HMAC_SHA1_32",
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
    ]
    # Unknown attributes are kept, in order, among the known ones.
    names = [a.name for a in audio.attributes]
    assert names == [
        "rtcp",
        "sendrecv",
        "rtpmap",
        "fmtp",
        "rtpmap",
        "rtpmap",
        "rtpmap",
        "fmtp",
        "ssrc",
        "crypto",
        "crypto",
        "crypto",
        "crypto",
    ]
    assert audio.attribute("ssrc") == "1417244866 cname:257b2b670c466ff5"


def test_rtp_codecs_from_rtpmap_and_fmtp():
    audio = load("voipshark-pcmu-f62-invite-microsip-offer.sdp").media[0]
    assert audio.rtp_codecs() == (
        Codec("opus", 123, 48000, 2, (("maxplaybackrate", "24000"),)),
        Codec("PCMA", 8, 8000),
        Codec("PCMU", 0, 8000),
        Codec("telephone-event", 101, 8000, 1, (("0-16", ""),)),
    )
    assert audio.rtpmaps()[123] == RtpMap(123, "opus", 48000, 2)
    assert audio.fmtp(123) == "maxplaybackrate=24000"
    assert audio.fmtp(8) is None


def test_static_payload_types_without_rtpmap():
    # saghul sipp_uac_no_rtpmap: "m=audio 6000 RTP/AVP 8 0 9 101" with only 101 mapped.
    audio = load("saghul-no-rtpmap-offer.sdp").media[0]
    assert [(c.name, c.payload_type, c.clock_rate) for c in audio.rtp_codecs()] == [
        ("PCMA", 8, 8000),
        ("PCMU", 0, 8000),
        ("G722", 9, 8000),  # RTP clock 8000 although G.722 samples at 16 kHz
        ("telephone-event", 101, 8000),
    ]


def test_malformed_rtpmap_is_ignored_not_fatal():
    # saghul sipp_uac_hold sends "a=rtpmap: PCMA/8000" (no payload type).
    sdp = load("saghul-hold-1-offer.sdp")
    audio = sdp.media[0]
    assert audio.attribute("rtpmap") == " PCMA/8000"
    assert audio.rtpmaps() == {}
    assert audio.rtp_codecs() == (Codec("PCMA", 8, 8000),)


def test_dynamic_payload_type_without_rtpmap_is_left_out():
    sdp = parse_sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 96 0 x 200\n")
    assert [c.payload_type for c in sdp.media[0].rtp_codecs()] == [0]


def test_rfc4475_sdp01_has_audio_and_video():
    sdp = load("rfc4475-sdp01.sdp")
    assert [(m.media, m.port, m.formats) for m in sdp.media] == [
        ("audio", 49217, ("0", "12")),
        ("video", 3227, ("31",)),
    ]
    assert sdp.media[1].attribute("rtpmap") == "31 LPC"  # malformed, kept as written
    assert sdp.media[1].rtpmaps() == {}


def test_ipv6_connection_and_large_session_id():
    sdp = load("rfc5118-ipv6-in-sdp.sdp")
    assert sdp.origin.session_id == 971731711378798081
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("2001:db8::20", "IP6")
    assert sdp.timings == (Timing(3338481189, 3370017201),)
    assert sdp.effective_connection(1) == Connection("2001:db8::20", "IP6")


def test_media_level_connection_overrides_session_level():
    sdp = load("rfc5118-mult-ip-in-sdp.sdp")
    assert sdp.session_name == ""  # "s=" with nothing: tolerated
    assert sdp.connection is None
    assert sdp.effective_connection(sdp.media[0]) == Connection("192.0.2.1")
    assert sdp.effective_connection(1) == Connection("2001:db8::1", "IP6")
    # Session level applies where a section has none.
    both = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\nc=IN IP4 192.0.2.7\r\n"
    )
    assert both.effective_connection(0) == Connection("192.0.2.9")
    assert both.effective_connection(1) == Connection("192.0.2.7")


def test_no_connection_anywhere_reads_as_none():
    sdp = parse_sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0\n")
    assert sdp.effective_connection(0) is None


def test_hold_address_is_unspecified():
    held = load("saghul-deprecated-hold-2-reinvite-hold.sdp")
    assert held.connection == Connection("0.0.0.0")
    assert held.connection.is_unspecified
    assert not load("saghul-deprecated-hold-1-offer.sdp").connection.is_unspecified
    assert Connection("::", "IP6").is_unspecified


def test_multicast_connection_ttl_and_count():
    sdp = parse_sdp(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 224.2.1.1/127/3\nt=0 0\n"
        "m=audio 49170/2 RTP/AVP 0\nc=IN IP6 ff15::101/3\n"
    )
    assert sdp.connection == Connection("224.2.1.1", "IP4", "IN", ttl=127, count=3)
    assert sdp.media[0].connections == (Connection("ff15::101", "IP6", count=3),)
    assert sdp.media[0].port_count == 2
    assert b"c=IN IP4 224.2.1.1/127/3\r\n" in sdp.to_bytes()
    assert b"m=audio 49170/2 RTP/AVP 0\r\n" in sdp.to_bytes()


@pytest.mark.parametrize(
    ("proto", "secure"),
    [
        ("RTP/AVP", False),
        ("RTP/SAVP", True),
        ("RTP/AVPF", False),
        ("RTP/SAVPF", True),
        ("UDP/TLS/RTP/SAVP", False),
        ("UDP/TLS/RTP/SAVPF", False),
    ],
)
def test_protos(proto, secure):
    sdp = parse_sdp(f"v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 9 {proto} 0\n")
    assert sdp.media[0].proto == proto
    assert sdp.media[0].is_secure_proto is secure
    assert sdp.media[0].is_rtp


def test_direction_media_then_session_then_default():
    base = "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n"
    sdp = parse_sdp(base + "a=sendonly\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\na=inactive\n")
    assert sdp.direction == "sendonly"
    assert sdp.effective_direction(0) == "sendonly"
    assert sdp.effective_direction(1) == "inactive"
    assert parse_sdp(base + "m=audio 1 RTP/AVP 0\n").effective_direction(0) == "sendrecv"
    assert load("saghul-uas-dir-recvonly-answer.sdp").effective_direction(0) == "recvonly"


@pytest.mark.parametrize(
    ("lines", "ptime", "maxptime"),
    [
        (["a=ptime:20", "a=maxptime:150"], 20, 150),
        (["a=ptime:30.0"], 30, None),
        (["a=ptime:22.5"], None, None),
        (["a=ptime:0"], None, None),
        (["a=ptime:abc"], None, None),
        (["a=ptime: 40 "], 40, None),
        ([], None, None),
    ],
)
def test_ptime_and_maxptime(lines, ptime, maxptime):
    text = "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0\n" + "".join(
        line + "\n" for line in lines
    )
    audio = parse_sdp(text).media[0]
    assert audio.ptime == ptime
    assert audio.maxptime == maxptime


def test_rtcp_and_rtcp_mux_attributes():
    text = "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0\na=rtcp:51799\na=rtcp-mux\n"
    audio = parse_sdp(text).media[0]
    assert audio.rtcp == RtcpAttribute(51799)
    assert audio.rtcp_mux
    bad = parse_sdp(text.replace("a=rtcp:51799", "a=rtcp:99999")).media[0]
    assert bad.rtcp is None  # malformed value reads as absent
    assert not parse_sdp(text.replace("a=rtcp-mux\n", "")).media[0].rtcp_mux


# --- tolerance ---------------------------------------------------------------------------


def test_lf_only_trailing_whitespace_and_blank_lines():
    crlf = (DATA / "heplify-f3-invite-offer.sdp").read_bytes()
    messy = b"\n".join(line + b" \t" for line in crlf.split(b"\r\n")) + b"\n\n"
    assert parse_sdp(messy) == parse_sdp(crlf)
    assert parse_sdp(crlf.decode()) == parse_sdp(crlf)


def test_missing_s_and_t_are_tolerated_and_written_back():
    sdp = parse_sdp("v=0\no=- 1 1 IN IP4 h\nc=IN IP4 192.0.2.1\nm=audio 1 RTP/AVP 0\n")
    assert sdp.session_name == "-"
    assert sdp.timings == (Timing(),)
    assert sdp.to_bytes().startswith(
        b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    )


def test_latin1_text_is_accepted():
    sdp = parse_sdp(b"v=0\no=- 1 1 IN IP4 h\ns=Gespr\xe4ch\nt=0 0\n")
    assert sdp.session_name == "Gespräch"
    assert parse_sdp(sdp.to_bytes()) == sdp


# --- errors --------------------------------------------------------------------------------

GOOD_HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("\r\n\r\n", "empty"),
        ("o=- 1 1 IN IP4 h\nv=0\n", "does not start with v="),
        ("v=1\no=- 1 1 IN IP4 h\n", "version"),
        ("v=0\ns=-\nt=0 0\n", "no o= line"),
        ("v=0\no=- 1 1 IN IP4\n", "o= needs 6 fields"),
        ("v=0\no=- x 1 IN IP4 h\n", "sess-id"),
        ("v=0\no=- 1 ١ IN IP4 h\n", "sess-version"),  # an Arabic-Indic digit
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\n", "more than one o="),
        (GOOD_HEAD + "v=0\n", "more than one v="),
        (GOOD_HEAD + "x=1\n", "unknown line type"),
        (GOOD_HEAD + "V=0\n", "not <type>=<value>"),
        (GOOD_HEAD + "bogus\n", "not <type>=<value>"),
        (GOOD_HEAD + "a =x\n", "not <type>=<value>"),
        (GOOD_HEAD + "a=\n", "attribute name"),
        (GOOD_HEAD + "a=:x\n", "attribute name"),
        (GOOD_HEAD + "a=fo o\n", "attribute name"),
        (GOOD_HEAD + "c=IN IP4\n", "c= needs 3 fields"),
        (GOOD_HEAD + "c=IN IP4 /1\n", "empty address"),
        (GOOD_HEAD + "c=IN IP4 224.2.1.1/300\n", "TTL"),
        (GOOD_HEAD + "c=IN IP4 224.2.1.1/1/2/3\n", "too many"),
        (GOOD_HEAD + "c=IN IP6 ff15::1/x\n", "count"),
        (GOOD_HEAD + "c=IN IP4 a\nc=IN IP4 b\n", "more than one session-level c="),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\ns=-\n", "more than one session-level s="),
        (GOOD_HEAD + "b=AS\n", "b= is not"),
        (GOOD_HEAD + "b=AS:x\n", "bandwidth"),
        ("v=0\no=- 1 1 IN IP4 h\nt=0\n", "t= needs 2 fields"),
        ("v=0\no=- 1 1 IN IP4 h\nt=now 0\n", "t= start"),
        ("v=0\no=- 1 1 IN IP4 h\nr=7d 1h 0\n", "r= before any t="),
        (GOOD_HEAD + "m=audio\n", "m= needs"),
        (GOOD_HEAD + "m=audio 70000 RTP/AVP 0\n", "m= port out of range"),
        (GOOD_HEAD + "m=audio -1 RTP/AVP 0\n", "m= port"),
        (GOOD_HEAD + "m=audio +5 RTP/AVP 0\n", "m= port"),
        (GOOD_HEAD + "m=audio 1_000 RTP/AVP 0\n", "m= port"),
        (GOOD_HEAD + "m=audio 4000/0 RTP/AVP 0\n", "port count is zero"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP; 0\n", "proto"),
        (GOOD_HEAD + "m=audi(o 4000 RTP/AVP 0\n", "media type"),
        (GOOD_HEAD + "m=audio 1 RTP/AVP 0\ns=-\n", "not allowed in a media section"),
        (GOOD_HEAD + "m=audio 1 RTP/AVP 0\ni=a\ni=b\n", "more than one i="),
        (GOOD_HEAD + "m=audio 1 RTP/AVP 0\nc=IN\n", "c= needs 3 fields"),
        (GOOD_HEAD + "s=a\x00b\n", "NUL or a bare CR"),
        (GOOD_HEAD + "s=a\rb\n", "NUL or a bare CR"),
    ],
)
def test_malformed_sdp_raises_sdp_error(text, fragment):
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert fragment in info.value.detail
    assert info.value.status == 400


def test_bogus_sdp_from_saghul_scenario_is_rejected_with_line_number():
    # The scenario's last body line is a lone U+FFFD: not a <type>=<value> line.
    with pytest.raises(SdpError) as info:
        parse_sdp((DATA / "saghul-uac-bogus-offer.sdp").read_bytes())
    assert "line 17" in info.value.detail
    assert info.value.warning.startswith('399 sipua "Malformed SDP: line 17')


def test_error_names_the_line():
    with pytest.raises(SdpError, match=r"line 3 \(c=\)"):
        parse_sdp("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n")


def test_non_bytes_input_is_an_sdp_error():
    with pytest.raises(SdpError):
        parse_sdp(1234)  # type: ignore[arg-type]


def test_too_long_sdp_is_rejected():
    with pytest.raises(SdpError, match="longer"):
        parse_sdp(GOOD_HEAD + "a=x:" + "y" * 70000 + "\n")


def test_sdp_error_is_a_parse_error_with_status():
    from sipua.sip.errors import ParseError

    exc = SdpError("x")
    assert isinstance(exc, ParseError) and isinstance(exc, ValueError)
    assert (exc.status, exc.reason, exc.detail) == (400, "Bad Request", "x")


def test_warning_escapes_quotes():
    exc = SdpError('bad "thing"')
    assert exc.warning == '399 sipua "Malformed SDP: bad \\"thing\\""'


# --- serializing -----------------------------------------------------------------------


def test_serializes_in_rfc_order_with_crlf():
    sdp = SessionDescription(
        origin=Origin("alice", 2890844526, 2890842807, "10.47.16.5"),
        session_name="SRTP Discussion",
        information="A discussion",
        uri="http://www.example.com/seminars/srtp.pdf",
        emails=("marge@example.com (Marge Simpson)",),
        phones=("+1 617 555-6011",),
        connection=Connection("168.2.17.12"),
        bandwidths=(Bandwidth("CT", 128),),
        timings=(Timing(2873397496, 2873404696, ("604800 3600 0 90000",)),),
        zone="2882844526 -1h",
        key="prompt",
        attributes=(Attribute("recvonly"),),
        media=(
            MediaDescription(
                media="audio",
                port=49170,
                proto="RTP/SAVP",
                formats=("0",),
                title="voice",
                connections=(Connection("192.0.2.1"),),
                bandwidths=(Bandwidth("AS", 64),),
                key="prompt",
                attributes=(Attribute("rtpmap", "0 PCMU/8000"), Attribute("rtcp-mux")),
            ),
        ),
    )
    assert sdp.to_str() == (
        "v=0\r\n"
        "o=alice 2890844526 2890842807 IN IP4 10.47.16.5\r\n"
        "s=SRTP Discussion\r\n"
        "i=A discussion\r\n"
        "u=http://www.example.com/seminars/srtp.pdf\r\n"
        "e=marge@example.com (Marge Simpson)\r\n"
        "p=+1 617 555-6011\r\n"
        "c=IN IP4 168.2.17.12\r\n"
        "b=CT:128\r\n"
        "t=2873397496 2873404696\r\n"
        "r=604800 3600 0 90000\r\n"
        "z=2882844526 -1h\r\n"
        "k=prompt\r\n"
        "a=recvonly\r\n"
        "m=audio 49170 RTP/SAVP 0\r\n"
        "i=voice\r\n"
        "c=IN IP4 192.0.2.1\r\n"
        "b=AS:64\r\n"
        "k=prompt\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtcp-mux\r\n"
    )
    assert parse_sdp(sdp.to_bytes()) == sdp
    assert bytes(sdp) == sdp.to_bytes()


# --- property tests ------------------------------------------------------------------------


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_sdp_error(data):
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    assert parse_sdp(sdp.to_bytes()) == sdp


_SESSION_LINES = [
    ("s", "-"),
    ("i", "info"),
    ("c", "IN IP4 192.0.2.1"),
    ("c", "IN IP4 0.0.0.0"),
    ("c", "IN IP4 224.2.1.1/127/3"),
    ("c", "IN ATM x"),
    ("b", "AS:64"),
    ("t", "0 0"),
    ("r", "7d 1h 0 25h"),
    ("a", "sendonly"),
    ("a", "x-unknown:anything at all"),
]
_M_LINES = [
    "audio 4000 RTP/AVP 0 8 101",
    "audio 4000 RTP/AVP 96 101 110",
    "audio 0 RTP/SAVP 0",
    "audio 5004 RTP/SAVPF 0 96",
    "video 5000/2 RTP/AVP 31",
    "application 9 UDP/TLS/RTP/SAVPF",
]
_MEDIA_LINES = [
    ("c", "IN IP4 192.0.2.1"),
    ("c", "IN IP6 ff15::1/2"),
    ("c", "IN IP4 0.0.0.0"),
    ("b", "TIAS:64000"),
    ("a", "rtpmap:101 telephone-event/8000"),
    ("a", "rtpmap:110 telephone-event/48000"),
    ("a", "rtpmap: PCMA/8000"),
    ("a", "rtpmap:96 opus/48000/2"),
    ("a", "rtpmap:96 opus/48000/0"),
    ("a", "fmtp:101 0-16"),
    ("a", "fmtp:96"),
    ("a", "ptime:20"),
    ("a", "maxptime:20.5"),
    ("a", "rtcp:4001 IN IP4 192.0.2.1"),
    ("a", "rtcp:4001 IN"),
    ("a", "rtcp-mux"),
    ("a", "inactive"),
    ("a", "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm"),
    ("a", "x-unknown:anything at all"),
]
# Now and then a line of a right type with any value, or of any type.
_NOISE = st.one_of(
    st.tuples(st.sampled_from("cbak"), st.text(max_size=30)),
    st.tuples(st.sampled_from("vosicbtrmkaezpux"), st.text(max_size=30)),
)


def _lines(pool):
    return st.lists(
        st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.sampled_from(pool), _NOISE),
        max_size=8,
    )


_SDP_SHAPED = st.tuples(
    st.lists(st.sampled_from(_SESSION_LINES), max_size=6, unique_by=lambda kv: kv[0]),
    st.lists(st.tuples(st.sampled_from(_M_LINES), _lines(_MEDIA_LINES)), max_size=3),
)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(_SDP_SHAPED, st.sampled_from(["\r\n", "\n"]))
def test_sdp_shaped_text_only_raises_sdp_error_and_reparses_stably(shape, eol):
    session, sections = shape
    lines = [("v", "0"), ("o", "- 1 1 IN IP4 192.0.2.1"), *session]
    for m_line, media_lines in sections:
        lines += [("m", m_line), *media_lines]
    text = "".join(f"{kind}={value}{eol}" for kind, value in lines)
    try:
        sdp = parse_sdp(text)
    except SdpError:
        return
    again = parse_sdp(sdp.to_bytes())
    assert again == sdp
    assert again.to_bytes() == sdp.to_bytes()
    for media in sdp.media:  # the accessors never raise either
        media.rtp_codecs()
        media.rtcp, media.ptime, media.maxptime, media.direction  # noqa: B018
        sdp.effective_connection(media)
        sdp.effective_direction(media)


_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._+",
    min_size=1,
    max_size=10,
)
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
).map(lambda s: s.rstrip(" \t"))
_ADDRESS = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.just("host.example.com")
)
_CONNECTION = st.builds(
    lambda addr: Connection(addr, "IP6" if ":" in addr else "IP4"),
    _ADDRESS,
)
_ATTRIBUTE = st.builds(Attribute, _TOKEN, st.one_of(st.none(), _TEXT))
_MEDIA = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "application", "text"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF", "UDP/TLS/RTP/SAVP"]),
    formats=st.lists(st.integers(0, 127).map(str), max_size=6).map(tuple),
    port_count=st.one_of(st.none(), st.integers(1, 4)),
    title=st.one_of(st.none(), _TEXT),
    connections=st.lists(_CONNECTION, max_size=2).map(tuple),
    bandwidths=st.lists(st.builds(Bandwidth, _TOKEN, st.integers(0, 10**9)), max_size=2).map(tuple),
    attributes=st.lists(_ATTRIBUTE, max_size=6).map(tuple),
)
_SESSION = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin,
        username=_TOKEN,
        session_id=st.integers(0, 2**64),
        session_version=st.integers(0, 2**64),
        address=_ADDRESS,
    ),
    session_name=_TEXT,
    connection=st.one_of(st.none(), _CONNECTION),
    media=st.lists(_MEDIA, max_size=4).map(tuple),
    timings=st.lists(
        st.builds(Timing, st.integers(0, 2**40), st.integers(0, 2**40)), min_size=1, max_size=2
    ).map(tuple),
    attributes=st.lists(_ATTRIBUTE, max_size=4).map(tuple),
    information=st.one_of(st.none(), _TEXT),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_SESSION)
def test_generated_descriptions_round_trip(sdp):
    parsed = parse_sdp(sdp.to_bytes())
    assert parsed == sdp
    assert parse_sdp(parsed.to_bytes()) == parsed
