"""RFC 4475 and RFC 5118 torture messages: every file is handled as its expectation says.

The verdict tables below map each file to what ``check_message`` (parse, then the RFC 3261
§8.2 UAS checks) must answer, with the reason. Where the RFC allows a liberal outcome the
table says which one sipua chose. The tables are checked against ``expectations.json`` so a
file cannot be added or dropped without the table saying how it is handled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipua.sip.builders import make_response
from sipua.sip.checks import check_message, inspect_request
from sipua.sip.errors import ParseError
from sipua.sip.framer import (
    NEED_DATA,
    MessageFramed,
    StreamFramer,
    frame_all,
)
from sipua.sip.message import Request, Response, parse_message, salvage_request
from sipua.sip.uri import AbsoluteUri, SipUri

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
RFC4475 = DATA / "rfc4475"
RFC5118 = DATA / "rfc5118"


def load(path: Path) -> bytes:
    return path.read_bytes()


def expectations(folder: Path) -> dict[str, dict]:
    table = json.loads((folder / "expectations.json").read_text())
    return {m["file"]: m for m in table["messages"]}


@dataclass(frozen=True)
class Expect:
    accepted: bool
    status: int | None  # status a UAS answers for a rejected request; None when accepted/discarded
    why: str
    discarded: bool = False  # a malformed response: dropped silently (RFC 3261 §18.1.2)


# RFC 4475: file -> verdict. "must accept" / "invalid" cite the expectation (parser_must_accept,
# expected_handling); "liberal: chose strict" marks files where the RFC tolerates either outcome.
# fmt: off
RFC4475_VERDICTS: dict[str, Expect] = {
    # §3.1.1 valid messages: parser_must_accept=true.
    "wsinv.dat": Expect(True, None, "§3.1.1.1 must accept: LWS, folding, escaped quotes, leading zeros"),
    "intmeth.dat": Expect(True, None, "§3.1.1.2 must accept: unusual token/word characters; the 501 for the unknown method is the application's"),
    "esc01.dat": Expect(True, None, "§3.1.1.3 must accept: %HH escapes in SIP-URI parts"),
    "escnull.dat": Expect(True, None, "§3.1.1.4 must accept: %00 in user parts, two distinct Contacts"),
    "longreq.dat": Expect(True, None, "§3.1.1.7 must accept: long values, 34 Via values"),
    "dblreq.dat": Expect(True, None, "§3.1.1.8 must accept the REGISTER; the INVITE-like octets after Content-Length 0 are ignored (RFC 3261 §18.3)"),
    "transports.dat": Expect(True, None, "§3.1.1.10 must accept: unknown Via transport"),
    "mpart01.dat": Expect(True, None, "§3.1.1.11 must accept: binary body with NULs framed by Content-Length"),
    "unreason.dat": Expect(True, None, "§3.1.1.12 must accept: response with a UTF-8 reason phrase"),
    # §3.1.2 invalid messages: parser_must_accept=false.
    "badinv01.dat": Expect(False, 400, "§3.1.2.1 invalid: empty Via/Contact parameters and list elements -> 400"),
    "clerr.dat": Expect(False, 400, "§3.1.2.2 invalid: Content-Length 9999 > body; over UDP -> 400 (a stream waits, see test_clerr_on_a_stream_waits)"),
    "ncl.dat": Expect(False, 400, "§3.1.2.3 invalid: negative Content-Length -> error; fatal_to_stream on TCP"),
    "scalar02.dat": Expect(False, 400, "§3.1.2.4 invalid: CSeq larger than 2**32-1 -> 400"),
    "scalarlg.dat": Expect(False, None, "§3.1.2.5 invalid response (CSeq overflow) -> discard", discarded=True),
    "ltgtruri.dat": Expect(False, 400, "§3.1.2.7 liberal allowed; chose strict 400: <> around the Request-URI"),
    "lwsstart.dat": Expect(False, 400, "§3.1.2.9 liberal allowed; chose strict 400: extra SP in the Request-Line"),
    "escruri.dat": Expect(False, 400, "§3.1.2.11 liberal allowed; chose strict 400: headers in the Request-URI"),
    "regbadct.dat": Expect(False, 400, "§3.1.2.13 liberal allowed; chose strict 400: Contact URI with '?' outside <>"),
    "badaspec.dat": Expect(False, 400, "§3.1.2.14 liberal allowed; chose strict 400: SP inside <> of the To URI"),
    "baddn.dat": Expect(False, 400, "§3.1.2.15 liberal allowed; chose strict 400: unquoted display name with a comma"),
    "mismatch01.dat": Expect(False, 400, "§3.1.2.17 invalid: CSeq method differs from the Request-Line method -> 400"),
    # §3.2.1: parser must not break; either 400 or RFC 2543 matching.
    "badbranch.dat": Expect(True, None, "§3.2.1 liberal: accepted; branch 'z9hG4bK' with nothing after it is matched by the transaction layer's RFC 2543 fallback"),
    # §3.3 application-layer semantics: parser_must_accept=true, the UAS checks answer.
    "insuf.dat": Expect(False, 400, "§3.3.1 parses; missing Call-ID/From/To -> 400 (ideal answer)"),
    "unkscm.dat": Expect(False, 416, "§3.3.2 parses; unknown Request-URI scheme -> 416"),
    "novelsc.dat": Expect(False, 416, "§3.3.3 parses; a scheme sipua never accepts -> 416"),
    "bext01.dat": Expect(False, 420, "§3.3.5 parses; unknown Require tags -> 420 with Unsupported (UAS role: Require only)"),
    "regaut01.dat": Expect(True, None, "§3.3.7 parses; 405/401 for a REGISTER is the application's"),
    "mcl01.dat": Expect(False, 400, "§3.3.9 two different Content-Lengths: respond with an error; fatal_to_stream on TCP"),
    "bcast.dat": Expect(True, None, "§3.3.10 response parses; discarding it (broadcast Via) is the transaction layer's: no matching client transaction"),
    "cparam01.dat": Expect(True, None, "§3.3.12 REGISTER parses; unknownparam is a contact-param, not a URI param"),
    "cparam02.dat": Expect(True, None, "§3.3.13 REGISTER parses; unknownparam is a URI param"),
    "regescrt.dat": Expect(True, None, "§3.3.14 REGISTER parses; the escaped Route stays in the Contact URI"),
    "sdp01.dat": Expect(True, None, "§3.3.15 parses; the 406 for Accept: text/nobodyKnowsThis is an application-level answer"),
    # test.dat: in the archive, no RFC section. Our classification: the Request-Line has no
    # SIP-Version (RFC 3261 §7.1) and 'Foobar roobar' is a header line without a colon (§7.3.1).
    "test.dat": Expect(False, 400, "not in the RFC text; Request-Line without SIP-Version and a header line without ':' -> 400"),
}

# RFC 5118 (all LF-only, as in the RFC archive; LF-only is accepted as is).
RFC5118_VERDICTS: dict[str, Expect] = {
    "ipv6-good": Expect(True, None, "§4.1 accept"),
    "ipv6-bad": Expect(False, 400, "§4.2 reject 400: IPv6 reference without [] in the Request-URI"),
    "port-ambiguous": Expect(True, None, "§4.3 accept; [2001:db8::10:5070] is an address, no port"),
    "port-unambiguous": Expect(True, None, "§4.4 accept; port 5070"),
    "via-received-param-with-delim": Expect(True, None, "§4.5 accept; received=[...]"),
    "via-received-param-no-delim": Expect(True, None, "§4.5 accept; received without []"),
    # Archive quirk: Content-Length 268 > the 242-octet body. By the RFC 4475 §3.1.2.2 rule (a
    # datagram whose Content-Length exceeds its body is rejected with 400) the raw file is
    # rejected; with the length corrected it is accepted (test_rfc5118_corrected_content_length).
    "ipv6-in-sdp": Expect(False, 400, "§4.6 accept in the RFC; archive quirk CL 268 > body 242 -> 400 raw"),
    "mult-ip-in-header": Expect(True, None, "§4.7 accept"),
    # Archive quirk: CL 181 > body 180 (LF form) -> 400 raw, accepted once corrected.
    "mult-ip-in-sdp": Expect(False, 400, "§4.8 accept in the RFC; archive quirk CL 181 > body 180 -> 400 raw"),
    # Archive quirk: CL 236 matches the LF-only body exactly (it is short of the CRLF form, 245):
    # the raw file is accepted whole; converted to CRLF the body is cut to 236 (RFC 3261 §18.3).
    "ipv4-mapped-ipv6": Expect(True, None, "§4.9 accept; CL 236 equals the LF-only body"),
    # §4.10 files have no final empty line: the datagram is all header section.
    "ipv6-bug-abnf-3-colons": Expect(True, None, "§4.10 accept (liberal): [2001:db8:::192.0.2.1]"),
    "ipv6-correct-abnf-2-colons": Expect(True, None, "§4.10 accept: [2001:db8::192.0.2.1]"),
}
# fmt: on

QUIRK_CL = {"ipv6-in-sdp": 268, "mult-ip-in-sdp": 181, "ipv4-mapped-ipv6": 236}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "expectations.json")


def test_tables_cover_every_file_and_every_expectation() -> None:
    assert set(RFC4475_VERDICTS) == set(expectations(RFC4475)) == set(_files(RFC4475))
    assert set(RFC5118_VERDICTS) == set(expectations(RFC5118)) == set(_files(RFC5118))


@pytest.mark.parametrize("folder", [RFC4475, RFC5118], ids=["rfc4475", "rfc5118"])
def test_files_are_the_archive_bytes(folder: Path) -> None:
    for name, exp in expectations(folder).items():
        data = load(folder / name)
        assert len(data) == exp["size"], name
        assert hashlib.sha256(data).hexdigest() == exp["sha256"], name


def _check_consistent_with_expectation(exp: dict, verdict_table: Expect, name: str) -> None:
    """Our table may not contradict the shared expectation where the RFC leaves no choice."""
    if exp.get("parser_must_accept") is False and not exp.get("rfc_allows_liberal_acceptance"):
        assert not verdict_table.accepted, f"{name}: the RFC says invalid"
    if exp.get("rfc_allows_liberal_acceptance") is True and exp.get("parser_must_accept") is False:
        # liberal reception is allowed; we chose strict everywhere it applies
        assert "liberal" in verdict_table.why


@pytest.mark.parametrize("name", sorted(RFC4475_VERDICTS))
def test_rfc4475_verdict(name: str) -> None:
    expect = RFC4475_VERDICTS[name]
    _check_consistent_with_expectation(expectations(RFC4475)[name], expect, name)
    verdict = check_message(load(RFC4475 / name))
    assert verdict.accepted is expect.accepted, (name, verdict)
    if expect.discarded:
        assert verdict.kind == "response"
        assert verdict.detail and verdict.detail.startswith("discarded")
    elif not expect.accepted:
        assert verdict.kind == "request"
        assert verdict.status == expect.status, (name, verdict)


@pytest.mark.parametrize("name", sorted(RFC5118_VERDICTS))
def test_rfc5118_verdict(name: str) -> None:
    expect = RFC5118_VERDICTS[name]
    data = load(RFC5118 / name)
    assert b"\r" not in data  # LF-only, as in the archive: accepted as is
    verdict = check_message(data)
    assert verdict.accepted is expect.accepted, (name, verdict)
    if not expect.accepted:
        assert verdict.status == expect.status


@pytest.mark.parametrize("name", sorted(RFC5118_VERDICTS))
def test_rfc5118_crlf_form_gives_the_same_verdict(name: str) -> None:
    data = load(RFC5118 / name).replace(b"\n", b"\r\n")
    expect = RFC5118_VERDICTS[name]
    if name == "mult-ip-in-sdp":
        # CRLF form: the body grows to 189 octets, more than CL 181, so it frames and is accepted.
        assert check_message(data).accepted
        return
    assert check_message(data).accepted is expect.accepted


@pytest.mark.parametrize("name", sorted(QUIRK_CL))
def test_rfc5118_corrected_content_length(name: str) -> None:
    raw = load(RFC5118 / name)
    head, sep, body = raw.partition(b"\n\n")
    assert f"Content-Length: {QUIRK_CL[name]}".encode() in head
    fixed = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head) + sep + body
    verdict = check_message(fixed)
    assert verdict.accepted, verdict
    msg = parse_message(fixed)
    assert msg.body == body and msg.content_length == len(body)
    assert b"IN IP6" in msg.body


def test_rfc5118_raw_content_length_rules() -> None:
    # CL larger than what arrived: the RFC 4475 §3.1.2.2 rule for a datagram -> 400.
    for name in ("ipv6-in-sdp", "mult-ip-in-sdp"):
        with pytest.raises(ParseError) as info:
            parse_message(load(RFC5118 / name))
        assert info.value.status == 400
        assert "Content-Length" in info.value.detail
    # CL shorter than the CRLF-converted body: the extra octets are not part of the message.
    crlf = load(RFC5118 / "ipv4-mapped-ipv6").replace(b"\n", b"\r\n")
    msg = parse_message(crlf)
    assert len(msg.body) == 236
    assert crlf.endswith(msg.body + crlf[-9:])  # the last 9 octets were cut off


def test_rfc4475_parser_accepts_what_must_be_accepted() -> None:
    """parser_must_accept=true means parse_message succeeds, except where framing is broken."""
    framing_faults = {"mcl01.dat"}  # two Content-Lengths: the RFC asks for an error response
    for name, exp in expectations(RFC4475).items():
        data = load(RFC4475 / name)
        if exp.get("parser_must_accept") and name not in framing_faults:
            parse_message(data)  # must not raise


def test_every_rejection_is_a_parse_error_with_a_status() -> None:
    for folder in (RFC4475, RFC5118):
        for name in _files(folder):
            data = load(folder / name)
            try:
                msg = parse_message(data)
                msg.validate()
            except ParseError as e:
                assert 400 <= e.status < 600 and e.reason and e.detail


# --- specific values --------------------------------------------------------


def test_wsinv_values() -> None:
    msg = parse_message(load(RFC4475 / "wsinv.dat"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert str(msg.uri) == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.uri.params == {"unknownparam": None}
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.to.tag == "1918181833n"
    assert str(msg.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    vias = msg.via
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [v.host for v in vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert msg.max_forwards == 68
    assert msg.cseq.seq == 9 and msg.cseq.method == "INVITE"
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.get("subject") == ""
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = msg.route
    assert route.uri.lr and route.uri.params["unknownwith"] == "value"
    assert msg.content_length == 150 and len(msg.body) == 150
    assert msg.content_type is not None and msg.content_type.mime == "application/sdp"


def test_intmeth_values() -> None:
    msg = parse_message(load(RFC4475 / "intmeth.dat"))
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq.method == msg.method and msg.cseq.seq == 139122385
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert isinstance(msg.uri, SipUri) and msg.uri.host == "example.com"
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.max_forwards == 255


def test_esc01_user_unescaped_once() -> None:
    msg = parse_message(load(RFC4475 / "esc01.dat"))
    assert msg.uri.user == "sips%3Auser%40example.com"
    assert msg.uri.user_unescaped == "sips:user@example.com"
    assert msg.to.uri.user_unescaped == "user"
    assert msg.from_.uri.user_unescaped == "I have spaces"
    (contact,) = msg.contact
    assert contact.uri.user_unescaped == "caller"
    # Never unescape recursively: value%25%34%31 is value%41, not valueA.
    assert contact.uri.params["n%61me"] == "v%61lue%25%34%31"


def test_escnull_two_distinct_contacts() -> None:
    msg = parse_message(load(RFC4475 / "escnull.dat"))
    contacts = msg.contact
    assert [c.uri.user_unescaped for c in contacts] == ["\x00", "\x00\x00"]
    assert not contacts[0].uri.equivalent(contacts[1].uri)
    assert msg.to.uri.user_unescaped == "null-\x00-null"
    assert msg.content_length == 0


def test_longreq_values() -> None:
    msg = parse_message(load(RFC4475 / "longreq.dat"))
    vias = msg.via
    assert len(vias) == 34
    assert all(v.transport == "TCP" for v in vias)
    assert vias[0].host == "sip33.example.com" and vias[-2].host == "sip1.example.com"
    assert vias[-1].host == "host.example.com" and vias[-1].received == "192.0.2.5"
    assert vias[-1].branch.startswith("verylonglong") and vias[-1].branch.endswith("branchvalue")
    assert len(msg.from_.tag) > 100 and msg.to.uri.port == 6000
    assert msg.to.display_name.startswith("I have a user name of extremeextreme")


def test_dblreq_trailing_octets_ignored() -> None:
    data = load(RFC4475 / "dblreq.dat")
    msg = parse_message(data)
    assert msg.method == "REGISTER" and msg.body == b""
    out = msg.to_bytes()
    assert b"INVITE" not in out and out.endswith(b"Content-Length: 0\r\n\r\n")


def test_transports_via_transports() -> None:
    msg = parse_message(load(RFC4475 / "transports.dat"))
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body() -> None:
    data = load(RFC4475 / "mpart01.dat")
    msg = parse_message(data)
    assert b"\x00" in msg.body and len(msg.body) == msg.content_length
    assert data.endswith(msg.body)


def test_unreason_reason_phrase() -> None:
    msg = parse_message(load(RFC4475 / "unreason.dat"))
    assert isinstance(msg, Response) and msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def test_bext01_unsupported_lists_require_not_proxy_require() -> None:
    msg = parse_message(load(RFC4475 / "bext01.dat"))
    rejection = inspect_request(msg)
    assert rejection is not None and rejection.status == 420
    headers = dict(rejection.headers)
    listed = [t.strip() for t in headers["Unsupported"].split(",")]
    assert listed == ["nothingSupportsThis", "nothingSupportsThisEither"]  # as written
    assert not any("prox" in t.lower() for t in listed)
    response = make_response(msg, 420, headers=rejection.headers)
    assert response.option_tags("unsupported") == [t.lower() for t in listed]


def test_badbranch_is_parsed_and_has_the_bare_cookie() -> None:
    msg = parse_message(load(RFC4475 / "badbranch.dat"))
    assert msg.top_via.branch == "z9hG4bK"


def test_cparam_contact_param_versus_uri_param() -> None:
    (c1,) = parse_message(load(RFC4475 / "cparam01.dat")).contact
    assert c1.params == {"unknownparam": None} and c1.uri.params == {}
    (c2,) = parse_message(load(RFC4475 / "cparam02.dat")).contact
    assert c2.params == {} and c2.uri.params == {"unknownparam": None}


def test_regescrt_escaped_route_kept_in_contact_uri() -> None:
    (contact,) = parse_message(load(RFC4475 / "regescrt.dat")).contact
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_unkscm_and_novelsc_uris_are_kept_whole() -> None:
    msg = parse_message(load(RFC4475 / "unkscm.dat"))
    assert isinstance(msg.uri, AbsoluteUri) and msg.uri.scheme == "nobodyKnowsThisScheme"
    msg = parse_message(load(RFC4475 / "novelsc.dat"))
    assert isinstance(msg.uri, AbsoluteUri) and msg.uri.scheme == "soap.beep"


def test_scalar02_and_scalarlg() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(load(RFC4475 / "scalar02.dat")).validate()
    assert info.value.status == 400 and "CSeq" in info.value.detail
    verdict = check_message(load(RFC4475 / "scalarlg.dat"))
    assert verdict.kind == "response" and not verdict.accepted
    # status is the response's own; nothing is sent back for a response
    assert verdict.status == 503 and verdict.detail.startswith("discarded")


def test_ncl_and_mcl01_are_fatal_on_a_stream() -> None:
    for name in ("ncl.dat", "mcl01.dat"):
        data = load(RFC4475 / name)
        with pytest.raises(ParseError) as info:
            parse_message(data)
        assert info.value.status == 400 and info.value.fatal_to_stream
        framer = StreamFramer()
        with pytest.raises(ParseError) as info:
            frame_all(framer, data)
        assert info.value.fatal_to_stream


def test_clerr_on_a_stream_waits() -> None:
    data = load(RFC4475 / "clerr.dat")
    framer = StreamFramer()
    framer.receive_data(data)
    assert framer.next_event() is NEED_DATA  # waits for the 9999 octets; the transport times out
    framer.receive_data(b"x" * (9999 - (len(data) - data.index(b"\r\n\r\n") - 4)))
    event = framer.next_event()
    assert isinstance(event, MessageFramed) and len(event.message.body) == 9999


def test_port_ambiguity() -> None:
    msg = parse_message(load(RFC5118 / "port-ambiguous"))
    assert msg.uri.host == "[2001:db8::10:5070]" and msg.uri.port is None
    assert msg.uri.host_bare == "2001:db8::10:5070"
    msg = parse_message(load(RFC5118 / "port-unambiguous"))
    assert msg.uri.host == "[2001:db8::10]" and msg.uri.port == 5070


def test_via_received_ipv6() -> None:
    msg = parse_message(load(RFC5118 / "via-received-param-no-delim"))
    assert msg.top_via.received == "2001:db8::9:255"
    assert msg.top_via.host == "[2001:db8::9:1]" and msg.top_via.branch == "z9hG4bKas3"
    msg = parse_message(load(RFC5118 / "via-received-param-with-delim"))
    assert msg.top_via.received == "[2001:db8::9:255]"


def test_rfc5118_ipv6_values() -> None:
    msg = parse_message(load(RFC5118 / "ipv6-bug-abnf-3-colons"))
    assert msg.uri.host == "[2001:db8:::192.0.2.1]" and msg.body == b""
    msg = parse_message(load(RFC5118 / "ipv4-mapped-ipv6"))
    assert msg.contact[0].uri.host == "[::ffff:192.0.2.2]"
    msg = parse_message(load(RFC5118 / "mult-ip-in-header"))
    assert len(msg.via) >= 2


# --- round trip and salvage ---------------------------------------------------


def _accepted_files() -> list[Path]:
    out = []
    for folder in (RFC4475, RFC5118):
        for name in _files(folder):
            try:
                parse_message(load(folder / name)).validate()
            except ParseError:
                continue
            out.append(folder / name)
    return out


def test_there_are_accepted_files() -> None:
    assert len(_accepted_files()) >= 25


@pytest.mark.parametrize("path", _accepted_files(), ids=lambda p: p.name)
def test_round_trip(path: Path) -> None:
    msg = parse_message(load(path))
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()
    again.validate()


REJECTED_REQUESTS = [
    name for name, e in RFC4475_VERDICTS.items() if not e.accepted and not e.discarded
] + [name for name, e in RFC5118_VERDICTS.items() if not e.accepted]


@pytest.mark.parametrize("name", REJECTED_REQUESTS)
def test_salvage_rejected_requests(name: str) -> None:
    """Every rejected torture request still yields enough for a 400 built by make_response."""
    folder = RFC4475 if name.endswith(".dat") else RFC5118
    data = load(folder / name)
    request = salvage_request(data)
    if name == "test.dat":
        # No Via at all: nothing to route a response to.
        assert request is None
        return
    assert request is not None
    start = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    assert start.split(" ", 1)[0] == request.method
    status = RFC4475_VERDICTS.get(name, RFC5118_VERDICTS.get(name)).status
    response = make_response(request, status)
    out = response.to_bytes()
    assert out.startswith(b"SIP/2.0 %d " % status)
    # The fields a client matches on are copied verbatim.
    for key in ("via", "call-id", "cseq", "from"):
        for value in request.get_all(key):
            assert value.encode() in out
    reparsed = parse_message(out)
    assert reparsed.get_all("via") == request.get_all("via")


def test_salvage_returns_none_for_responses_and_garbage() -> None:
    assert salvage_request(load(RFC4475 / "scalarlg.dat")) is None
    assert salvage_request(b"") is None
    assert salvage_request(b"\x00\x01\x02") is None
    assert salvage_request(b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n") is None
