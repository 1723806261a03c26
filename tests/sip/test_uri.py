"""sipua.sip.uri: SIP/SIPS/tel/other URIs, serialisation and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest

from sipua.sip.errors import ParseError
from sipua.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=x&priority=urgent"
    )
    assert isinstance(uri, SipUri)
    assert uri.scheme == "sips" and uri.secure
    assert (uri.user, uri.password) == ("alice", "secret")
    assert uri.host == "Atlanta.example.com" and uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"}
    assert uri.transport == "tcp" and uri.lr and uri.maddr == "239.255.255.1"
    assert uri.headers == "subject=x&priority=urgent"
    assert uri.hostport == "Atlanta.example.com:5061"


def test_minimal_and_ipv6() -> None:
    uri = parse_uri("sip:example.com")
    assert uri.user is None and uri.port is None and uri.params == {} and uri.headers is None
    uri = parse_uri("sip:[2001:db8::1]:5070")
    assert uri.host == "[2001:db8::1]" and uri.host_bare == "2001:db8::1" and uri.port == 5070
    assert parse_uri("SIP:a@B").scheme == "sip"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:a@",
        "sip:a@b:",
        "sip:a@b:99999",
        "sip:a@b:5x",
        "sip:a b@c",
        "sip:a@[::1",
        "sip:2001:db8::10",
        "sip:a@b;",
        "sip:a@b;;lr",
        "sip:a@b;x=",
        "sip:a@b;x=<y>",
        "sip:<a>@b",
        "nocolon",
        "1abc:x",
        "mailto:",
        "http:has space",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_tel_and_other_schemes() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, TelUri) and tel.number == "+1-201-555-0123" and tel.user == tel.number
    assert tel.params == {"phone-context": "example.com"}
    other = parse_uri("urn:service:sos")
    assert (
        isinstance(other, AbsoluteUri) and other.scheme == "urn" and other.opaque == "service:sos"
    )
    assert str(other) == "urn:service:sos"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.example.com",
        "sips:a:b@h:1;x;y=z?h=v",
        "sip:%61lice@h;n%61me=v%61lue",
        "SIP:Alice@Host",
        "sip:[::ffff:192.0.2.2]",
        "tel:+12015550123;ext=1",
        "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
    ],
)
def test_str_is_the_text_parsed(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_built_uris_serialise_from_fields() -> None:
    uri = SipUri("example.com", user="bob", port=5070, params={"transport": "tcp", "lr": None})
    assert str(uri) == "sip:bob@example.com:5070;transport=tcp;lr"
    assert parse_uri(str(uri)).equivalent(uri)
    assert (
        str(SipUri("h", user="u", password="p", headers="a=b", scheme="sips")) == "sips:u:p@h?a=b"
    )
    assert str(TelUri("+1555", {"ext": "2"})) == "tel:+1555;ext=2"


def test_replace_makes_a_new_text() -> None:
    uri = parse_uri("sip:bob@example.com;transport=udp")
    moved = uri.replace(host="192.0.2.1", port=5080)
    assert str(moved) == "sip:bob@192.0.2.1:5080;transport=udp"
    assert str(uri) == "sip:bob@example.com;transport=udp"
    moved.params["lr"] = None
    assert "lr" not in uri.params  # the copy has its own params
    assert str(uri.replace(params={})) == "sip:bob@example.com"


def test_user_unescaped_once() -> None:
    assert parse_uri("sip:%2541@h").user_unescaped == "%41"
    assert parse_uri("sip:a%00b@h").user_unescaped == "a\x00b"
    assert parse_uri("sip:plain@h").user_unescaped == "plain"
    assert parse_uri("sip:h").user_unescaped is None


# --- RFC 3261 §19.1.4 ------------------------------------------------------------

EQUIVALENT = [
    # the RFC's own examples
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    # escapes of unreserved characters in parameters
    ("sip:a@h;n%61me=v%61lue", "sip:a@h;name=VALUE"),
    ("tel:+1-201-555-0123", "tel:+12015550123"),
    ("urn:x:y", "URN:x:y"),
]  # fmt: skip

DIFFERENT = [
    # the RFC's own examples
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    # more
    ("sip:a@h", "sips:a@h"),
    ("sip:a@h", "sip:h"),
    ("sip:a:x@h", "sip:a:y@h"),
    ("sip:a%3Bb@h", "sip:a;b@h"),  # ';' is reserved: its escape is not the same
    ("sip:a@h;user=phone", "sip:a@h"),
    ("sip:a@h;maddr=1.2.3.4", "sip:a@h;maddr=1.2.3.5"),
    ("sip:a@h?x=1", "sip:a@h?x=2"),
    ("sip:a@h", "tel:a"),
    ("tel:+1555", "tel:+1556"),
    ("tel:+1555;ext=1", "tel:+1555"),
    ("urn:x:y", "urn:x:Y"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_equivalent(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b))
    assert parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b))
    assert not parse_uri(b).equivalent(parse_uri(a))


def test_eq_and_hash_are_textual() -> None:
    a, b = parse_uri("sip:a@h"), parse_uri("sip:a@h")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert parse_uri("sip:a@H") != a  # textual; use equivalent() for the RFC rules
    assert a != "sip:a@h"


def test_target_user_names_whom_a_request_uri_addresses():
    from sipua.sip.uri import parse_uri, target_user

    assert target_user(parse_uri("sip:session_sess%5F1@example.com")) == "session_sess_1"
    assert target_user(parse_uri("sips:alice@example.com:5061;transport=tls")) == "alice"
    assert target_user(parse_uri("tel:+15551234567;phone-context=example.com")) == "+15551234567"
    assert target_user(parse_uri("sip:example.com")) is None
    assert target_user(parse_uri("nobodyKnowsThisScheme:opaque")) is None
