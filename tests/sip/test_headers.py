"""sipua.sip.headers and grammar: header names, Via, name-addr, CSeq, Content-Type, params."""

from __future__ import annotations

import pytest

from sipua.sip.errors import ParseError
from sipua.sip.grammar import (
    parse_params,
    parse_uint,
    quote,
    split_commas,
    split_tokens,
    unquote,
)
from sipua.sip.headers import (
    COMPACT_FORMS,
    ContentType,
    CSeq,
    NameAddr,
    Via,
    display_name,
    header_key,
    parse_content_type,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from sipua.sip.uri import SipUri, parse_uri


@pytest.mark.parametrize(
    "name, key",
    [
        ("Via", "via"),
        ("v", "via"),
        ("V", "via"),
        ("VIA ", "via"),
        ("i", "call-id"),
        ("Call-ID", "call-id"),
        ("l", "content-length"),
        ("k", "supported"),
        ("m", "contact"),
        ("X-Whatever", "x-whatever"),
        ("extensionHeader-!.%*+_`'~", "extensionheader-!.%*+_`'~"),
    ],
)
def test_header_key(name: str, key: str) -> None:
    assert header_key(name) == key


@pytest.mark.parametrize("name", ["", " Via", "Bad Name", "Bäd", "a:b", "<x>"])
def test_bad_header_names(name: str) -> None:
    with pytest.raises(ParseError):
        header_key(name)


def test_every_compact_form_expands() -> None:
    for short, long in COMPACT_FORMS.items():
        assert header_key(short) == header_key(short.upper()) == long


def test_display_name() -> None:
    assert display_name("call-id") == "Call-ID"
    assert display_name("cseq") == "CSeq"
    assert display_name("www-authenticate") == "WWW-Authenticate"
    assert display_name("record-route") == "Record-Route"
    assert display_name("x-foo-bar") == "X-Foo-Bar"


# --- Via ----------------------------------------------------------------------


def test_via_fields() -> None:
    via = parse_via(
        "SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK77;rport=5061;received=10.0.0.1;ttl=16;maddr=224.0.1.75"
    )
    assert via.protocol == "SIP/2.0" and via.transport == "UDP"
    assert via.host == "192.0.2.1" and via.port == 5060 and via.sent_by == "192.0.2.1:5060"
    assert via.branch == "z9hG4bK77" and via.rport == 5061 and via.received == "10.0.0.1"
    assert via.ttl == 16 and via.maddr == "224.0.1.75"


def test_via_lws_everywhere() -> None:
    via = parse_via("SIP  /   2.0  /UDP     192.0.2.2 : 5070 ;  branch =  z9hG4bK1 ; rport")
    assert via.transport == "UDP" and via.host == "192.0.2.2" and via.port == 5070
    assert via.branch == "z9hG4bK1" and via.rport is True


def test_via_ipv6_and_no_params() -> None:
    via = parse_via("SIP/2.0/TLS [2001:db8::9:1]:5061")
    assert via.host == "[2001:db8::9:1]" and via.host_bare == "2001:db8::9:1" and via.port == 5061
    assert via.params == {} and via.branch is None and via.rport is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;;branch=1",
        "SIP/2.0/UDP host extra",
        "SIP/2.0/UDP host;branch=a b",
    ],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(ParseError):
        parse_via(text)


def test_via_serialises() -> None:
    text = "SIP/2.0/UDP h:1;branch=z9hG4bK1"
    assert str(parse_via(text)) == text
    built = Via("TCP", "example.com", None, {"branch": "z9hG4bKx", "rport": None})
    assert str(built) == "SIP/2.0/TCP example.com;branch=z9hG4bKx;rport"
    again = parse_via(str(built))
    assert (again.transport, again.host, again.params) == ("TCP", "example.com", built.params)
    assert parse_via(text) == parse_via(text) and len({parse_via(text), parse_via(text)}) == 1


def test_via_odd_numbers_are_not_errors_of_the_accessors() -> None:
    via = parse_via("SIP/2.0/UDP h;rport=abc;ttl=999999")
    assert via.rport is True and via.ttl is None
    assert parse_via("SIP/2.0/UDP h;rport=\u0663").rport is True  # Arabic-Indic digit


# --- name-addr ----------------------------------------------------------------


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Alice \\"A\\" Liddell" <sip:alice@example.com;transport=tcp>;tag=88;x')
    assert na.display_name == 'Alice "A" Liddell'
    assert na.uri_text == "sip:alice@example.com;transport=tcp" and na.bracketed
    assert na.params == {"tag": "88", "x": None} and na.tag == "88"
    assert isinstance(na.uri, SipUri) and na.uri.params == {"transport": "tcp"}

    na = parse_name_addr("Bob Smith <sip:bob@example.com>")
    assert na.display_name == "Bob Smith" and na.tag is None

    na = parse_name_addr("sip:carol@example.com;tag=5")
    assert not na.bracketed and na.display_name is None
    assert na.uri_text == "sip:carol@example.com" and na.tag == "5"

    na = parse_name_addr('"" <sip:x@y>')
    assert na.display_name == ""

    na = parse_name_addr("<tel:+1555>;tag=a")
    assert na.uri.scheme == "tel" and na.tag == "a"


def test_name_addr_param_value_quotes() -> None:
    na = parse_name_addr('<sip:a@b>;x="a;b,c";y=plain')
    assert na.params["x"] == '"a;b,c"' and na.param("x") == "a;b,c" and na.param("y") == "plain"
    assert na.param("missing") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<sip:a@b",
        '"unterminated <sip:a@b>',
        '"Alice" sip:a@b',
        "Bell, Alexander <sip:a@b>",
        "< sip:a@b >",
        "<sip:a@b> junk",
        "<sip:a@b>;;tag=1",
        "<nocolon>",
        "sip:a@b?x=y",
        'A "B" <sip:a@b>',
        '"A" x <sip:a@b>',
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(text)


def test_star_only_where_allowed() -> None:
    assert parse_name_addr("*", allow_star=True).uri_text == "*"
    with pytest.raises(ParseError):
        parse_name_addr("*")


def test_with_tag_keeps_the_text_and_adds_once() -> None:
    na = parse_name_addr("Bob <sip:bob@b.example.com>")
    tagged = na.with_tag("xyz")
    assert str(tagged) == "Bob <sip:bob@b.example.com>;tag=xyz" and tagged.tag == "xyz"
    assert na.tag is None
    retagged = tagged.with_tag("abc")
    assert retagged.tag == "abc" and str(retagged).count("tag=") == 1


@pytest.mark.parametrize(
    "display",
    [
        "Alice",
        "Alice Smith",
        'Quote "me"',
        "back\\slash",
        "",
        " lead",
        "trail ",
        "two  spaces",
        "a,b",
        "Zoë",
    ],
)
def test_built_name_addr_round_trips_display_names(display: str) -> None:
    na = NameAddr(parse_uri("sip:a@b"), display, {"tag": "1"})
    again = parse_name_addr(str(na))
    assert again.display_name == display and again.tag == "1" and again.uri_text == "sip:a@b"


def test_display_name_with_line_break_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        str(NameAddr("sip:a@b", "evil\r\nInjected: 1"))


def test_name_addr_equality_is_textual() -> None:
    assert parse_name_addr("<sip:a@b>") == parse_name_addr("<sip:a@b>")
    assert parse_name_addr("<sip:a@b>") != parse_name_addr("<sip:a@b>;tag=1")
    assert hash(parse_name_addr("<sip:a@b>")) == hash(parse_name_addr("<sip:a@b>"))


# --- CSeq, Content-Type ----------------------------------------------------------


def test_cseq() -> None:
    assert parse_cseq("0009 INVITE") == CSeq(9, "INVITE")
    assert parse_cseq("1 \t  BYE").method == "BYE"
    assert parse_cseq("4294967295 ACK").seq == 2**32 - 1
    assert str(CSeq(5, "OPTIONS")) == "5 OPTIONS"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "INVITE",
        "1 2 3",
        "-1 INVITE",
        "4294967296 INVITE",
        "1 IN(VITE",
        "1\rINVITE",
        "١ INVITE",
    ],
)
def test_bad_cseq(text: str) -> None:
    with pytest.raises(ParseError):
        parse_cseq(text)


def test_content_type() -> None:
    ct = parse_content_type("Application/SDP ; charset=UTF-8")
    assert ct.mime == "application/sdp" and ct.type == "application" and ct.subtype == "sdp"
    assert ct.params == {"charset": "UTF-8"}
    assert ct == ContentType("application/sdp", {"charset": "UTF-8"})
    assert ct != ContentType("application/sdp")
    assert str(ContentType("text/plain")) == "text/plain" and "text/plain" in repr(
        ContentType("text/plain")
    )
    for bad in ("sdp", "a/", "/b", "a/b;", "a/b c"):
        with pytest.raises(ParseError):
            parse_content_type(bad)


# --- grammar ------------------------------------------------------------------------


def test_params() -> None:
    assert parse_params("") == {}
    assert parse_params(';a;B=2;c="x y"') == {"a": None, "b": "2", "c": '"x y"'}
    assert parse_params(" ; a = 1 ;b") == {"a": "1", "b": None}
    for bad in (";", ";;a", "a", ";a=", ";a=<x>", ";=1", ";a b"):
        with pytest.raises(ParseError):
            parse_params(bad)


def test_quote_unquote() -> None:
    for text in ["", "plain", 'a"b', "a\\b", '\\"']:
        assert unquote(quote(text)) == text
    assert unquote('"a\\x"') == "ax"


def test_split_commas_respects_quotes_and_angles() -> None:
    assert split_commas("a, b ,c") == ["a", "b", "c"]
    assert split_commas('"x, y" <sip:a@b>, <sip:c@d;p=1,2>') == [
        '"x, y" <sip:a@b>',
        "<sip:c@d;p=1,2>",
    ]
    assert split_commas('"a\\", b" <sip:x@y>') == ['"a\\", b" <sip:x@y>']
    assert split_commas("single") == ["single"]


def test_split_tokens_and_uint() -> None:
    assert split_tokens(" Timer,100REL ,, replaces") == ["timer", "100rel", "replaces"]
    assert parse_uint("007", "x") == 7
    for bad in ("", "-1", "1.5", "٣", "4294967296"):
        with pytest.raises(ParseError):
            parse_uint(bad, "x")
    with pytest.raises(ParseError):
        parse_uint("9" * 5000, "x")
