"""sipua.sip.message: parsing, typed accessors, header mutation, serialisation, salvage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipua.sip.checks import check_message
from sipua.sip.errors import ParseError
from sipua.sip.framer import MalformedMessage, MessageFramed, StreamFramer, frame_all
from sipua.sip.headers import Via
from sipua.sip.message import (
    Request,
    Response,
    parse_message,
    salvage_request,
)
from sipua.sip.uri import SipUri


def wire(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


INVITE = wire(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    'To: "Bob" <sip:bob@biloxi.example.com>',
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    "Content-Length: 4",
    body=b"v=0\n",
)

RESPONSE = wire(
    "SIP/2.0 180 Ringing",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
    "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Content-Length: 0",
)


def test_request_fields_and_typed_values() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.version == "SIP/2.0"
    assert isinstance(msg.uri, SipUri) and msg.uri.user == "bob"
    assert msg.top_via.branch == "z9hG4bK776asdhds" and msg.top_via.rport is True
    assert msg.to.display_name == "Bob" and msg.to.tag is None
    assert msg.from_.display_name == "Alice" and msg.from_.tag == "1928301774"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (msg.cseq.seq, msg.cseq.method) == (314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.content_length == 4 and msg.body == b"v=0\n"
    assert msg.content_type.mime == "application/sdp"
    assert [c.uri.host for c in msg.contact] == ["pc33.atlanta.example.com"]
    assert msg.route == [] and msg.record_route == []
    msg.validate()


def test_response_fields() -> None:
    msg = parse_message(RESPONSE)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert msg.to.tag == "a6c85cf" and msg.top_via.received == "192.0.2.1"
    msg.validate()


def test_fields_keep_names_as_written_and_keys_canonical() -> None:
    msg = parse_message(
        wire(
            "OPTIONS sip:a@b SIP/2.0",
            "v: SIP/2.0/UDP h;branch=z9hG4bK1",
            "f: <sip:x@y>;tag=1",
            "t: <sip:a@b>",
            "i: cid",
            "CSEQ: 1 OPTIONS",
            "l: 0",
        )
    )
    assert [(k, n) for k, n, _ in msg.fields] == [
        ("via", "v"),
        ("from", "f"),
        ("to", "t"),
        ("call-id", "i"),
        ("cseq", "CSEQ"),
        ("content-length", "l"),
    ]
    assert msg.get("Call-ID") == msg.get("i") == "cid"
    assert "From" in msg and "f" in msg and "Route" not in msg
    assert msg.to_bytes().startswith(b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP")


def test_first_reads_a_header_as_get_does_without_building_the_index() -> None:
    from sipua.sip.builders import make_response

    request = parse_message(INVITE)
    built = make_response(request, 200, to_tag="x")  # fields only, no index yet
    assert built._index is None
    for name in ("Call-ID", "call-id", "i", "To", "t", "X-Absent"):
        assert built.first(name) == built.get(name), name
    assert built._index is not None  # get() built it; first() did not
    fresh = make_response(request, 200, to_tag="x")
    assert fresh.first("i") == request.call_id and fresh._index is None
    assert request.first("Content-Length") == "4"  # from the parser's index
    assert fresh.first("X-Absent") is None


def test_get_all_and_values_split_list_headers_only() -> None:
    msg = parse_message(
        wire(
            "OPTIONS sip:a@b SIP/2.0",
            "Via: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP h3;branch=z9hG4bK3",
            'Contact: "A, B" <sip:a@b>, <sip:c@d;x=1,2>',
            'Authorization: Digest username="a", realm="b"',
        )
    )
    assert len(msg.get_all("via")) == 2
    assert [v.host for v in msg.via] == ["h1", "h2", "h3"]
    assert msg.values("contact") == ['"A, B" <sip:a@b>', "<sip:c@d;x=1,2>"]
    assert msg.values("authorization") == ['Digest username="a", realm="b"']


def test_line_folding_and_lws() -> None:
    msg = parse_message(
        wire(
            "OPTIONS sip:a@b SIP/2.0",
            "Via: SIP/2.0/UDP h1",
            "  ;branch=z9hG4bK1",
            "Subject: first",
            "\tsecond",
            "Call-ID   :   x@y  ",
        )
    )
    assert msg.top_via.branch == "z9hG4bK1"
    assert msg.get("subject") == "first second"
    assert msg.call_id == "x@y"


def test_leading_crlfs_are_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + INVITE) == parse_message(INVITE)


def test_lf_only_message_is_accepted() -> None:
    lf = INVITE.replace(b"\r\n", b"\n")
    msg = parse_message(lf)
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.body == b"v=0\n"


def test_mixed_line_ends_are_split_on_every_line_end() -> None:
    # A bare LF inside a CRLF header section ends the line too; it must not stay in a value
    # (it would be copied into responses as a line break).
    data = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
    msg = parse_message(data)
    assert msg.get("max-forwards") == "70"
    assert all("\n" not in v and "\r" not in v for _, _, v in msg.fields)


def test_stray_cr_in_a_header_line_is_rejected() -> None:
    data = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\rX-Evil: 1")
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_message_without_empty_line_is_all_headers() -> None:
    msg = parse_message(RESPONSE[:-4])
    assert msg.body == b"" and msg.call_id


def test_body_cut_to_content_length_and_missing_length_takes_all() -> None:
    msg = parse_message(INVITE + b"garbage")
    assert msg.body == b"v=0\n"
    no_cl = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(no_cl + b"more").body == b"v=0\nmore"


@pytest.mark.parametrize(
    "value, fatal",
    [("-1", True), ("abc", True), ("4 4", True), ("", True), ("99", False)],
)
def test_bad_content_length(value: str, fatal: bool) -> None:
    data = INVITE.replace(b"Content-Length: 4", f"Content-Length: {value}".encode())
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status == 400 and info.value.fatal_to_stream is fatal


def test_huge_numbers_are_parse_errors_not_value_errors() -> None:
    # int() refuses strings of more than 4300 digits; the parser must not leak ValueError.
    digits = "9" * 5000
    with pytest.raises(ParseError):
        parse_message(INVITE.replace(b"Content-Length: 4", f"Content-Length: {digits}".encode()))
    msg = parse_message(INVITE.replace(b"CSeq: 314159", f"CSeq: {digits}".encode()))
    with pytest.raises(ParseError):
        msg.cseq  # noqa: B018
    msg = parse_message(INVITE.replace(b"Max-Forwards: 70", f"Max-Forwards: {digits}".encode()))
    with pytest.raises(ParseError):
        msg.max_forwards  # noqa: B018
    msg = parse_message(INVITE.replace(b";rport", f";rport={digits}".encode()))
    assert msg.top_via.rport is True


def test_long_runs_of_leading_zeros_are_still_numbers() -> None:
    zeros = "0" * 5000
    data = (
        f"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: {zeros}5 OPTIONS\r\n"
        f"Max-Forwards: {zeros}7\r\nContent-Length: {zeros}2\r\n\r\nab"
    ).encode()
    msg = parse_message(data)
    assert (msg.cseq.seq, msg.max_forwards, msg.content_length, msg.body) == (5, 7, 2, b"ab")


def test_repeated_content_length_with_equal_values() -> None:
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 004")
    msg = parse_message(data)
    assert msg.body == b"v=0\n"
    with pytest.raises(ParseError) as info:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 3"))
    assert info.value.fatal_to_stream


@pytest.mark.parametrize(
    "start, status",
    [
        ("INVITE sip:a@b SIP/3.0", 505),
        ("INVITE sip:a@b SIP/2.0 extra", 400),
        ("INVITE sip:a@b HTTP/1.1", 400),
        ("INV(ITE sip:a@b SIP/2.0", 400),
        ("INVITE <sip:a@b> SIP/2.0", 400),
        ("INVITE sip:a@b?X=y SIP/2.0", 400),
        ("INVITE  sip:a@b SIP/2.0", 400),
        ("SIP/2.0 1000 Huh", 400),
        ("SIP/2.0 099 Low", 400),
        ("SIP/3.0 200 OK", 400),
    ],
)
def test_bad_start_lines(start: str, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(wire(start, "Via: SIP/2.0/UDP h;branch=z9hG4bK1"))
    assert info.value.status == status


def test_lower_case_version_is_normalised() -> None:
    msg = parse_message(wire("OPTIONS sip:a@b sip/2.0", "Via: SIP/2.0/UDP h"))
    assert msg.version == "SIP/2.0"
    assert msg.to_bytes().startswith(b"OPTIONS sip:a@b SIP/2.0\r\n")


def test_response_without_reason_phrase() -> None:
    msg = parse_message(wire("SIP/2.0 200", "Via: SIP/2.0/UDP h"))
    assert msg.status == 200 and msg.reason == ""


@pytest.mark.parametrize(
    "line",
    ["Foo bar", "Bad Name: x", "Bäd: x", ": nothing"],
)
def test_bad_header_lines(line: str) -> None:
    with pytest.raises(ParseError):
        parse_message(wire("OPTIONS sip:a@b SIP/2.0", "Via: SIP/2.0/UDP h", line))


def test_empty_message() -> None:
    for data in (b"", b"\r\n\r\n", b"\r\n"):
        with pytest.raises(ParseError):
            parse_message(data)


def test_max_size() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVITE, max_size=100)
    assert info.value.status == 513
    assert parse_message(INVITE, max_size=len(INVITE)).method == "INVITE"


@pytest.mark.parametrize(
    "header, value",
    [
        ("from", "sip:a@b"),
        ("from", "<sip:a@b>;tag=1, <sip:c@d>"),
        ("cseq", "1"),
        ("cseq", "x INVITE"),
        ("cseq", "1 INV ITE"),
        ("cseq", "1\u00a0INVITE"),
        ("call-id", "has space"),
        ("call-id", "caf\u00e9"),
        ("max-forwards", "256"),
        ("max-forwards", "-1"),
        ("via", "SIP/2.0/UDP"),
        ("via", "SIP/2.0/UDP h;;branch=1"),
        ("to", "<sip:a@b"),
        ("to", "<not a uri>"),
        ("to", '"unterminated <sip:a@b>'),
        ("contact", "<sip:a@b>;;x"),
        ("content-type", "sdp"),
    ],
)
def test_malformed_typed_values_fail_validate(header: str, value: str) -> None:
    msg = parse_message(INVITE)
    if header == "from" and value == "sip:a@b":
        # two From lines
        msg.add("From", "<sip:c@d>;tag=2")
    else:
        msg.set(header, value)
    with pytest.raises(ParseError) as info:
        msg.validate()
    assert info.value.status == 400


def test_validate_parses_uris_inside_name_addr_values() -> None:
    for header in ("From", "To", "Contact", "Route", "Record-Route"):
        msg = parse_message(INVITE)
        msg.set(header, "<sip:user@bad host>")
        with pytest.raises(ParseError):
            msg.validate()
        msg.set(header, "<sip:[::1>")
        with pytest.raises(ParseError):
            msg.validate()


def test_contact_star() -> None:
    msg = parse_message(INVITE)
    msg.set("Contact", "*")
    assert msg.contact[0].uri_text == "*"
    msg.validate()


def test_missing_headers() -> None:
    msg = parse_message(wire("OPTIONS sip:a@b SIP/2.0", "Content-Length: 0"))
    for attribute in ("top_via", "from_", "to", "call_id", "cseq"):
        with pytest.raises(ParseError) as info:
            getattr(msg, attribute)
        assert "missing" in info.value.detail
    assert msg.via == [] and msg.contact == [] and msg.max_forwards is None
    assert msg.content_type is None


# --- mutation -----------------------------------------------------------------


def test_add_set_remove_keep_order_and_invalidate_caches() -> None:
    msg = parse_message(INVITE)
    assert msg.top_via.host == "pc33.atlanta.example.com"
    msg.add("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp", first=True)
    assert msg.fields[0][:2] == ("via", "Via")
    assert [v.host for v in msg.via] == ["proxy.example.com", "pc33.atlanta.example.com"]

    assert msg.to.tag is None
    msg.set("To", "<sip:bob@biloxi.example.com>;tag=xyz")
    assert msg.to.tag == "xyz"
    keys = [k for k, _, _ in msg.fields]
    assert keys.index("to") == 3  # replaced where it was

    msg.add("Route", "<sip:p1@example.com;lr>")
    msg.add("Route", "<sip:p2@example.com;lr>")
    assert [r.uri.user for r in msg.route] == ["p1", "p2"]
    msg.set("Route", "<sip:p3@example.com;lr>")
    assert [r.uri.user for r in msg.route] == ["p3"]
    assert msg.fields[-1][0] == "route"

    msg.remove("Route")
    assert "route" not in msg and msg.route == []

    msg.set("X-New", "1")
    assert msg.fields[-1] == ("x-new", "X-New", "1")

    msg.set("CSeq", "2 INVITE")
    assert msg.cseq.seq == 2
    msg.set("Max-Forwards", "9")
    assert msg.max_forwards == 9
    msg.set("Content-Type", "text/plain")
    assert msg.content_type.mime == "text/plain"


def test_add_uses_canonical_spelling_for_lower_case_and_compact_names() -> None:
    msg = Request("OPTIONS", "sip:a@b")
    msg.add("call-id", "x")
    msg.add("v", "SIP/2.0/UDP h")
    msg.add("X-Custom-Thing", "y")
    assert [n for _, n, _ in msg.fields] == ["Call-ID", "Via", "X-Custom-Thing"]


def test_set_does_not_change_a_fields_list_shared_with_another_message() -> None:
    fields = [("to", "To", "<sip:a@b>"), ("to", "To", "<sip:c@d>")]
    first = Request("OPTIONS", "sip:a@b", fields)
    second = Request("OPTIONS", "sip:a@b", fields)
    first.set("To", "<sip:e@f>")
    assert second.get_all("to") == ["<sip:a@b>", "<sip:c@d>"]
    assert first.get_all("to") == ["<sip:e@f>"]


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_add_and_set_refuse_line_breaks(value: str) -> None:
    msg = Request("OPTIONS", "sip:a@b")
    with pytest.raises(ValueError):
        msg.add("Subject", value)
    with pytest.raises(ValueError):
        msg.set("Subject", value)
    assert msg.fields == []


def test_invalidate_after_changing_fields_in_place() -> None:
    msg = parse_message(INVITE)
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    i = next(i for i, f in enumerate(msg.fields) if f[0] == "via")
    msg.fields[i] = ("via", "Via", str(Via("UDP", "h2", 5070, {"branch": "z9hG4bKnew"})))
    assert msg.top_via.branch == "z9hG4bK776asdhds"  # cached until told
    msg.invalidate("via")
    assert msg.top_via.branch == "z9hG4bKnew" and msg.top_via.port == 5070
    msg.fields.append(("subject", "Subject", "hi"))
    msg.invalidate()
    assert msg.get("subject") == "hi"


# --- serialisation and equality -------------------------------------------------


def test_to_bytes_round_trip_and_content_length_rewritten() -> None:
    msg = parse_message(INVITE)
    assert msg.to_bytes() == INVITE
    msg.body = b"v=0\r\no=x\r\n"
    out = msg.to_bytes()
    assert b"Content-Length: 10\r\n\r\nv=0" in out
    assert parse_message(out).body == msg.body
    assert bytes(msg) == out


def test_to_bytes_adds_a_missing_content_length_and_drops_repeats() -> None:
    req = Request("OPTIONS", "sip:a@b", [("via", "Via", "SIP/2.0/UDP h")])
    assert (
        req.to_bytes()
        == b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"))
    assert msg.to_bytes().count(b"Content-Length: 4") == 1 and b"\r\nl:" not in msg.to_bytes()


def test_equality_ignores_content_length_spelling_but_not_body() -> None:
    a = parse_message(INVITE)
    b = parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 0004"))
    assert a == b
    c = parse_message(INVITE.replace(b"Content-Length: 4\r\n", b""))
    assert a == c  # same body: the length line is derived from it
    d = parse_message(INVITE)
    d.body = b"v=1\n"
    assert a != d
    e = parse_message(INVITE)
    e.set("Subject", "x")
    assert a != e
    assert a != parse_message(RESPONSE) and parse_message(RESPONSE) != a
    with pytest.raises(TypeError):
        hash(a)


def test_compact_and_long_names_compare_equal() -> None:
    a = parse_message(wire("OPTIONS sip:a@b SIP/2.0", "Call-ID: x"))
    b = parse_message(wire("OPTIONS sip:a@b SIP/2.0", "i: x"))
    assert a == b


def test_folded_values_round_trip() -> None:
    data = wire("OPTIONS sip:a@b SIP/2.0", "Subject: one  ", "   two", "Via: SIP/2.0/UDP h")
    msg = parse_message(data)
    assert parse_message(msg.to_bytes()) == msg


def test_non_utf8_octets_survive_a_round_trip() -> None:
    raw = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\nContent-Length: 0\r\n\r\n"
    msg = parse_message(raw)
    assert msg.to_bytes() == raw


def test_context_is_carried_untouched() -> None:
    msg = parse_message(INVITE)
    assert msg.context is None
    msg.context = ("udp", ("192.0.2.1", 5060))
    assert msg.context[0] == "udp"


# --- salvage ---------------------------------------------------------------------


def test_salvage_keeps_raw_fields() -> None:
    data = wire(
        "INVITE <sip:bob@example.com> SIP/2.0",
        "Via: SIP/2.0/UDP h;;branch=z9hG4bK1",
        "From: Bell, Alexander <sip:a@b>;tag=1",
        "To: < sip:bob@example.com >",
        "Call-ID: abc",
        "CSeq: 99999999999999999999 INVITE",
        "This line has no colon",
        "Content-Length: 77",
    )
    with pytest.raises(ParseError):
        parse_message(data)
    request = salvage_request(data)
    assert request is not None
    assert request.method == "INVITE"
    assert str(request.uri) == "sip:bob@example.com"
    assert request.get("via") == "SIP/2.0/UDP h;;branch=z9hG4bK1"
    assert request.get("from") == "Bell, Alexander <sip:a@b>;tag=1"
    assert request.get("to") == "< sip:bob@example.com >"
    assert request.get("cseq") == "99999999999999999999 INVITE"
    assert request.body == b""


def test_salvage_keeps_an_unparseable_request_uri_as_text() -> None:
    request = salvage_request(wire("OPTIONS sip:2001:db8::10 SIP/2.0", "Via: SIP/2.0/UDP h"))
    assert request is not None and str(request.uri) == "sip:2001:db8::10"
    assert request.to_bytes().startswith(b"OPTIONS sip:2001:db8::10 SIP/2.0\r\n")


def test_salvage_without_via_or_request_line() -> None:
    assert salvage_request(wire("OPTIONS sip:a@b SIP/2.0", "To: <sip:a@b>")) is None
    assert salvage_request(wire("SIP/2.0 200 OK", "Via: SIP/2.0/UDP h")) is None
    assert salvage_request(b"\r\n\r\n") is None
    assert salvage_request(wire("(bad) x y", "Via: SIP/2.0/UDP h")) is None


# --- RFC call flows (tests/data/sip/callflows) ------------------------------------------------

CALLFLOWS = Path(__file__).resolve().parent.parent / "data" / "sip" / "callflows"


def load_callflow(path: Path) -> list[bytes]:
    """The messages of one call-flow file, LF converted to CRLF.

    Each file is a YAML list of literal block scalars ("- |+", two-space indent, trailing
    line breaks kept); this reads that one shape without a YAML library.
    """
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith("- |"):
            current = []
            blocks.append(current)
        elif line.startswith("#"):
            current = None
        elif current is not None:
            current.append(line[2:])
    return ["".join(f"{line}\r\n" for line in block).encode() for block in blocks]


FLOWS = {
    p.relative_to(CALLFLOWS).as_posix(): load_callflow(p) for p in sorted(CALLFLOWS.rglob("*.yaml"))
}


def test_callflow_files_load() -> None:
    assert len(FLOWS) == 29  # RFC 3665 (16), 3515 (2), 3327 (2), 4916 (2), 5626 (6), gh-21
    assert sum(len(m) for m in FLOWS.values()) == 254
    for messages in FLOWS.values():
        for data in messages:
            assert data[:4] == b"SIP/" or re.match(rb"[A-Z]+ \S+ SIP/2\.0\r\n", data), data[:60]


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_callflow_messages(name: str) -> None:
    """Every message of the RFC call flows is accepted and round-trips.

    The RFC 5626 examples leave out Via, Max-Forwards and other headers ("abbreviated"), so a
    UAS answers their requests 400 and drops their responses; nothing else is rejected.
    """
    messages = [parse_message(data) for data in FLOWS[name]]
    for i, (data, msg) in enumerate(zip(FLOWS[name], messages, strict=True)):
        verdict = check_message(data)
        if "via" not in msg:
            assert name.startswith("rfc5626/"), (name, i)
            assert not verdict.accepted and "missing Via" in (verdict.detail or "")
            continue
        assert verdict.accepted, (name, i, verdict)
        msg.validate()
        assert parse_message(msg.to_bytes()) == msg
        if msg.content_length is not None:
            assert len(msg.body) == msg.content_length
        if isinstance(msg, Response) and name != "gh-21.yaml":
            # a response answers a request earlier in the same flow
            key = (msg.call_id, msg.cseq.seq, msg.cseq.method)
            assert any(
                isinstance(r, Request) and (r.get("call-id"), r.cseq.seq, r.method) == key
                for r in messages[:i]
            ), (name, i)


def test_callflow_gh21_contact_list() -> None:
    (data,) = FLOWS["gh-21.yaml"]
    msg = parse_message(data)
    contacts = msg.contact
    assert [c.params["reg-id"] for c in contacts] == ["1", "2"]
    assert contacts[0].param("+sip.instance") == "<d79966b435633699badcf12507380d51d4e97eab>"
    assert contacts[1].param("received") == "sip:e52@78.102.16.243:17127"
    assert [c.uri.port for c in contacts] == [55497, 17127]


def test_callflows_framed_as_one_stream() -> None:
    """Each flow sent back to back on one connection frames into the same messages.

    A message without Content-Length is reported malformed on a stream. When it has a
    body, where the next message starts is lost, so the comparison stops there.
    """
    compared = 0
    for messages in FLOWS.values():
        # A datagram may end without the empty line; on a stream it ends the header section.
        messages = [m if b"\r\n\r\n" in m else m + b"\r\n" for m in messages]
        events = frame_all(StreamFramer(), b"".join(messages))
        for data, event in zip(messages, events, strict=False):
            expected = parse_message(data)
            if "content-length" not in expected:
                assert isinstance(event, MalformedMessage)
                assert "missing Content-Length" in event.error.detail
                assert event.message is not None and event.message.call_id == expected.call_id
                if expected.body:
                    break
                assert event.message == expected
            else:
                assert isinstance(event, MessageFramed) and event.message == expected
            compared += 1
    assert compared > 220
