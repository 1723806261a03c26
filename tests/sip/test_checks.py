"""sipua.sip.checks: RFC 3261 §8.2 UAS checks and the verdict of check_message."""

from __future__ import annotations

import pytest

from sipua.sip.checks import (
    SUPPORTED_OPTION_TAGS,
    Verdict,
    check_message,
    inspect_request,
)
from sipua.sip.message import parse_message


def request(
    *extra: str, method: str = "INVITE", uri: str = "sip:bob@example.com", drop: str = ""
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
        "Max-Forwards: 70",
        "From: <sip:alice@example.org>;tag=1",
        "To: <sip:bob@example.com>",
        "Call-ID: c1@example.org",
        f"CSeq: 1 {method}",
        *extra,
        "Content-Length: 0",
    ]
    if drop:
        lines = [line for line in lines if not line.lower().startswith(drop.lower() + ":")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_good_request_passes() -> None:
    assert inspect_request(parse_message(request())) is None
    verdict = check_message(request())
    assert verdict == Verdict(True, "request", method="INVITE", call_id="c1@example.org")
    assert verdict.as_dict() == {
        "verdict": "accepted",
        "kind": "request",
        "method": "INVITE",
        "call_id": "c1@example.org",
    }


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_400(header: str) -> None:
    rejection = inspect_request(parse_message(request(drop=header)))
    assert rejection is not None and rejection.status == 400
    assert header.lower() in rejection.detail.lower()


def test_cseq_method_mismatch() -> None:
    data = request().replace(b"CSeq: 1 INVITE", b"CSeq: 1 OPTIONS")
    rejection = inspect_request(parse_message(data))
    assert rejection is not None and rejection.status == 400 and "CSeq" in rejection.detail


@pytest.mark.parametrize(
    "uri, status",
    [("sip:bob@example.com", None), ("sips:bob@example.com", None), ("tel:+15551234", None),
     ("mailto:bob@example.com", 416), ("urn:service:sos", 416), ("http://x", 416)],
)  # fmt: skip
def test_uri_schemes(uri: str, status: int | None) -> None:
    rejection = inspect_request(parse_message(request(uri=uri)))
    assert (rejection.status if rejection else None) == status


def test_schemes_can_be_narrowed() -> None:
    rejection = inspect_request(parse_message(request(uri="tel:+1555")), schemes=frozenset({"sip"}))
    assert rejection is not None and rejection.status == 416


def test_require_unknown_is_420_listing_only_unknown_require_tags() -> None:
    data = request("Require: TIMER, foo", "Require: Bar, foo", "Proxy-Require: baz")
    rejection = inspect_request(parse_message(data))
    assert rejection is not None and (rejection.status, rejection.reason) == (420, "Bad Extension")
    assert rejection.headers == (("Unsupported", "foo, Bar"),)


def test_require_known_tags_pass_and_tags_configurable() -> None:
    assert "timer" in SUPPORTED_OPTION_TAGS
    assert inspect_request(parse_message(request("Require: timer, replaces"))) is None
    rejection = inspect_request(parse_message(request("Require: timer")), option_tags=frozenset())
    assert rejection is not None and rejection.status == 420


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_require_ignored_for_ack_and_cancel(method: str) -> None:
    assert inspect_request(parse_message(request("Require: foo", method=method))) is None


def test_malformed_typed_header_is_the_errors_status() -> None:
    data = request().replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE")
    rejection = inspect_request(parse_message(data))
    assert rejection is not None and rejection.status == 400 and "CSeq" in rejection.detail


def test_check_message_parse_error_of_a_request_reports_what_it_can() -> None:
    data = request().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    verdict = check_message(data)
    assert not verdict.accepted and verdict.kind == "request"
    assert (verdict.status, verdict.reason) == (505, "Version Not Supported")
    assert verdict.method == "INVITE" and verdict.call_id == "c1@example.org"


def test_check_message_responses() -> None:
    ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    verdict = check_message(ok)
    assert verdict.accepted and verdict.kind == "response" and verdict.status == 200
    assert verdict.call_id == "x" and verdict.reason == "OK"

    bad = ok.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    verdict = check_message(bad)
    assert not verdict.accepted and verdict.detail.startswith("discarded")

    unparseable = b"SIP/2.0 200 OK\r\nVia SIP/2.0/UDP h\r\n\r\n"
    verdict = check_message(unparseable)
    assert not verdict.accepted and verdict.kind == "response"
    assert verdict.detail.startswith("discarded") and verdict.as_dict()["verdict"] == "rejected"


def test_verdict_as_dict_includes_headers() -> None:
    verdict = check_message(request("Require: foo"))
    d = verdict.as_dict()
    assert d["status"] == 420 and d["headers"] == {"Unsupported": "foo"}
