"""sipua.sip.builders and ids: responses and requests built from their wire text; identifiers."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from sipua.sip import ids
from sipua.sip.builders import (
    REASON_PHRASES,
    make_cancel,
    make_request,
    make_response,
    reason_phrase,
)
from sipua.sip.message import Request, parse_message

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1\r\n"
    b"Via: SIP/2.0/UDP  pc34.example.com ;branch=z9hG4bK2 ;received=192.0.2.9\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"To:   Bob <sip:bob@biloxi.example.com>\r\n"
    b"f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"i: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq:   314159   INVITE\r\n"
    b"Timestamp: 54.2 0.5\r\n"
    b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.fixture
def invite() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def test_response_copies_fields_verbatim(invite: Request) -> None:
    response = make_response(invite, 180, to_tag="abc")
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.get_all("via") == invite.get_all("via")
    assert [n for k, n, _ in response.fields if k in ("from", "call-id")] == ["f", "i"]
    assert response.get("from") == invite.get("from")
    assert response.get("call-id") == invite.get("call-id")
    assert response.get("cseq") == "314159   INVITE"
    assert response.get("to") == "Bob <sip:bob@biloxi.example.com>;tag=abc"
    assert "record-route" not in response and "timestamp" not in response
    assert "contact" not in response and "max-forwards" not in response
    wire = response.to_bytes()
    again = parse_message(wire)
    assert again.to.tag == "abc" and again.cseq.seq == 314159
    assert [v.branch for v in again.via] == ["z9hG4bKp1", "z9hG4bK1", "z9hG4bK2"]


def test_to_tag_added_once(invite: Request) -> None:
    tagged = make_response(invite, 200, to_tag="first")
    assert tagged.to.tag == "first"
    # A request that already has a To tag (in-dialog) keeps it.
    invite.set("To", "Bob <sip:bob@biloxi.example.com>;tag=existing")
    assert make_response(invite, 200, to_tag="other").to.tag == "existing"
    invite.set("To", "Bob <sip:bob@biloxi.example.com> ; TAG = existing")
    assert str(make_response(invite, 200, to_tag="other").get("to")).count("=") == 1
    assert make_response(invite, 100).get("to") == invite.get("to")


def test_to_tag_not_fooled_by_tag_inside_the_uri_or_display_name(invite: Request) -> None:
    invite.set("To", "<sip:bob@biloxi.example.com;tag=inuri>")
    assert make_response(invite, 200, to_tag="t1").to.tag == "t1"
    invite.set("To", '";tag=x" <sip:bob@biloxi.example.com>')
    assert make_response(invite, 200, to_tag="t2").to.tag == "t2"
    invite.set("To", "<sip:bob@biloxi.example.com>;\ttag=tabbed")
    assert make_response(invite, 200, to_tag="t3").to.tag == "tabbed"


def test_no_to_tag_when_none_given(invite: Request) -> None:
    assert make_response(invite, 400).to.tag is None


def test_record_route_only_when_asked(invite: Request) -> None:
    assert "record-route" not in make_response(invite, 200, to_tag="x")
    response = make_response(invite, 200, to_tag="x", record_route=True)
    assert response.get_all("record-route") == ["<sip:proxy.example.com;lr>"]


def test_100_copies_timestamp(invite: Request) -> None:
    assert make_response(invite, 100).get("timestamp") == "54.2 0.5"
    assert "timestamp" not in make_response(invite, 180, to_tag="x")


def test_extra_headers_body_and_content_type(invite: Request) -> None:
    response = make_response(
        invite,
        200,
        to_tag="x",
        headers=[("Contact", "<sip:uas@192.0.2.5>"), ("k", "timer"), ("Allow", "INVITE, ACK")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert response.get("contact") == "<sip:uas@192.0.2.5>"
    assert response.option_tags("supported") == ["timer"]  # compact form keyed as Supported
    assert response.content_type.mime == "application/sdp"
    wire = response.to_bytes()
    assert wire.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    assert parse_message(wire) == response


def test_reason_phrases() -> None:
    assert make_response(parse_message(INVITE), 486).reason == "Busy Here"
    assert make_response(parse_message(INVITE), 499, "Custom").reason == "Custom"
    assert reason_phrase(299) == "OK"  # class default
    assert reason_phrase(477) == "Bad Request"
    assert reason_phrase(799) == "Unknown"
    assert all(100 <= code < 700 and text for code, text in REASON_PHRASES.items())


def test_response_to_a_salvaged_request() -> None:
    from sipua.sip.message import salvage_request

    data = INVITE.replace(b"To:   Bob <sip:bob@biloxi.example.com>", b"To: Bob, Smith <sip:bob@b>")
    request = salvage_request(data)
    assert request is not None
    response = make_response(request, 400, to_tag="t")
    assert response.get("to") == "Bob, Smith <sip:bob@b>;tag=t"
    assert response.get("call-id") == "a84b4c76e66710@pc33.example.com"
    request.set("To", "Bob, Smith <sip:bob@b>;tag=old")
    assert make_response(request, 400, to_tag="t").get("to") == "Bob, Smith <sip:bob@b>;tag=old"


def test_make_request() -> None:
    request = make_request(
        "OPTIONS",
        "sip:bob@example.com",
        via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc;rport",
        from_="<sip:sipua@example.org>;tag=f1",
        to="<sip:bob@example.com>",
        call_id="c1@example.org",
        cseq=7,
        contact="<sip:sipua@192.0.2.1>",
        route=["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
        headers=[("User-Agent", "sipua"), ("k", "timer")],
        body=b"hello",
        content_type="text/plain",
    )
    wire = request.to_bytes()
    assert wire.startswith(b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: ")
    parsed = parse_message(wire)
    parsed.validate()
    assert parsed == request
    assert parsed.cseq.seq == 7 and parsed.cseq.method == "OPTIONS"
    assert parsed.max_forwards == 70
    assert [r.uri.host for r in parsed.route] == ["p1.example.com", "p2.example.com"]
    assert parsed.option_tags("supported") == ["timer"]
    assert parsed.body == b"hello" and parsed.content_type.mime == "text/plain"
    keys = [k for k, _, _ in request.fields]
    assert keys.index("via") < keys.index("max-forwards") < keys.index("route") < keys.index("from")


# --- ids ------------------------------------------------------------------------------


def test_branch_format_and_uniqueness() -> None:
    branches = [ids.new_branch() for _ in range(2000)]
    assert len(set(branches)) == len(branches)
    for b in branches[:50]:
        assert b.startswith("z9hG4bK") and re.fullmatch(r"z9hG4bK[0-9a-f]{24}", b)


def test_tag_and_call_id_format_and_uniqueness() -> None:
    tags = [ids.new_tag() for _ in range(2000)]
    assert len(set(tags)) == len(tags) and all(re.fullmatch(r"[0-9a-f]{16}", t) for t in tags)
    call_ids = [ids.new_call_id() for _ in range(2000)]
    assert len(set(call_ids)) == len(call_ids) and all(len(c) == 32 for c in call_ids)
    assert re.fullmatch(r"[0-9a-f]{32}@example\.org", ids.new_call_id("example.org"))


def test_ids_look_random() -> None:
    # Every hex digit appears at every position with roughly equal frequency: a crude
    # check that the values are not counters or timestamps.
    values = [ids.new_tag() for _ in range(4000)]
    for position in (0, 7, 15):
        counts = Counter(v[position] for v in values)
        assert len(counts) == 16
        assert max(counts.values()) < 2 * 4000 / 16


def test_built_values_parse_as_what_they_are() -> None:
    request = make_request(
        "INVITE",
        "sip:a@b",
        via=f"SIP/2.0/UDP h;branch={ids.new_branch()}",
        from_=f"<sip:x@y>;tag={ids.new_tag()}",
        to="<sip:a@b>",
        call_id=ids.new_call_id("h"),
        cseq=1,
    )
    parsed = parse_message(request.to_bytes())
    parsed.validate()
    assert parsed.top_via.branch.startswith(ids.MAGIC_COOKIE)


@pytest.mark.parametrize("evil", ["x\r\nInjected: 1", "x\ny", "x\r"])
def test_line_breaks_in_values_are_refused(invite: Request, evil: str) -> None:
    with pytest.raises(ValueError):
        make_response(invite, 200, headers=[("Subject", evil)])
    with pytest.raises(ValueError):
        make_response(invite, 480, evil)
    with pytest.raises(ValueError):
        make_response(invite, 200, content_type=evil)
    with pytest.raises(ValueError):
        make_request(
            "OPTIONS",
            "sip:a@b",
            via="SIP/2.0/UDP h",
            from_=evil,
            to="<sip:a@b>",
            call_id="c",
            cseq=1,
        )
    with pytest.raises(ValueError):
        make_request(
            "OPTIONS", "sip:a@b", via="SIP/2.0/UDP h", from_="<sip:x@y>", to="<sip:a@b>", call_id="c",
            cseq=1, headers=[("X-A", evil)],
        )  # fmt: skip


def test_cancel_copies_what_rfc3261_9_1_says_and_only_the_top_via():
    invite = parse_message(
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtop, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\r\n"
        b"Max-Forwards: 70\r\nRoute: <sip:proxy.example.com;lr>\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: c-1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
    cancel = parse_message(make_cancel(invite).to_bytes())
    assert (cancel.method, str(cancel.uri)) == ("CANCEL", "sip:bob@example.com")
    assert [v.branch for v in cancel.via] == ["z9hG4bKtop"]
    assert (cancel.cseq.seq, cancel.cseq.method) == (7, "CANCEL")
    assert cancel.get_all("route") == ["<sip:proxy.example.com;lr>"]
    assert (cancel.call_id, cancel.from_.tag, cancel.to.tag) == ("c-1", "a1", None)
    assert "contact" not in cancel and cancel.body == b""
