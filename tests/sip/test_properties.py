"""Property tests of the SIP message layer (hypothesis).

Generated valid URIs, header values and messages parse back to what was generated and
round-trip; arbitrary and mutated input never raises anything but ParseError and never
takes long (the deadline below fails an example that does).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sipua.sip.builders import make_request, make_response
from sipua.sip.checks import check_message
from sipua.sip.errors import ParseError
from sipua.sip.framer import NEED_DATA, StreamFramer
from sipua.sip.grammar import quote, unquote
from sipua.sip.headers import NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from sipua.sip.message import Request, Response, parse_message, salvage_request
from sipua.sip.uri import SipUri, parse_uri

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
SEEDS = [
    p.read_bytes()
    for folder in ("rfc4475", "rfc5118")
    for p in sorted((DATA / folder).iterdir())
    if p.suffix != ".json"
]

# SIPUA_FUZZ_SCALE=50 runs fifty times as many examples (a longer campaign than CI's).
SCALE = max(1, int(os.environ.get("SIPUA_FUZZ_SCALE", "1")))


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.too_slow],
    )


FAST = budget(200)

# --- strategies -----------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = ALNUM + "-.!%*_+`'~"
UNRESERVED = ALNUM + "-_.!~*'()"
USER_CHARS = UNRESERVED + "&=+$,;?/"
PASSWORD_CHARS = UNRESERVED + "&=+$,"
PARAM_CHARS = UNRESERVED + "[]/:&+$"
HEADER_CHARS = UNRESERVED + "[]/?:+$"
HEX = "0123456789ABCDEF"

escaped = st.tuples(st.sampled_from(HEX), st.sampled_from(HEX)).map(lambda t: "%" + "".join(t))


def text_of(chars: str, min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(chars), escaped)
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


tokens = st.text(TOKEN, min_size=1, max_size=12)
label = st.text(ALNUM, min_size=1, max_size=8)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda g: "[" + ":".join(f"{x:x}" for x in g) + "]"
)
hosts = st.one_of(domain, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(0, 65535))
uri_params = st.dictionaries(
    text_of(PARAM_CHARS).map(str.lower),
    st.one_of(st.none(), text_of(PARAM_CHARS)),
    max_size=4,
)
uri_headers = st.one_of(
    st.none(),
    st.lists(
        st.tuples(text_of(HEADER_CHARS), text_of(HEADER_CHARS, min_size=0)), min_size=1, max_size=3
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> SipUri:
    user = draw(st.one_of(st.none(), text_of(USER_CHARS)))
    password = draw(st.one_of(st.none(), text_of(PASSWORD_CHARS, min_size=0))) if user else None
    return SipUri(
        host=draw(hosts),
        user=user,
        port=draw(ports),
        params=draw(uri_params),
        headers=draw(uri_headers) if with_headers else None,
        scheme=draw(st.sampled_from(["sip", "sips"])),
        password=password,
    )


lws = st.sampled_from(["", " ", "  ", "\t", " \t "])
gen_values = st.one_of(
    st.text(TOKEN + ":[]", min_size=1, max_size=12).filter(lambda v: v[0] not in ":"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(quote),
)
header_params = st.dictionaries(tokens.map(str.lower), st.one_of(st.none(), gen_values), max_size=4)


# --- URIs --------------------------------------------------------------------------------


@FAST
@given(sip_uris())
def test_generated_sip_uris_parse_to_their_fields(uri: SipUri) -> None:
    text = str(uri)
    parsed = parse_uri(text)
    assert isinstance(parsed, SipUri)
    assert (parsed.scheme, parsed.user, parsed.password) == (uri.scheme, uri.user, uri.password)
    assert (parsed.host, parsed.port) == (uri.host, uri.port)
    assert parsed.params == uri.params and parsed.headers == uri.headers
    assert str(parsed) == text
    assert parsed.equivalent(uri) and uri.equivalent(parsed)
    # a copy built from the parsed fields is the same URI again
    rebuilt = parsed.replace()
    assert str(rebuilt) == text and rebuilt.equivalent(parsed)


@FAST
@given(sip_uris(), st.sampled_from(["host", "port", "user", "scheme"]))
def test_changing_a_compared_part_breaks_equivalence(uri: SipUri, part: str) -> None:
    if part == "host":
        other = uri.replace(host=uri.host + "x" if uri.host[0] != "[" else "example.com")
    elif part == "port":
        other = uri.replace(port=None if uri.port is not None else 5060)
    elif part == "user":
        other = uri.replace(user=None if uri.user else "u", password=None)
    else:
        other = uri.replace(scheme="sips" if uri.scheme == "sip" else "sip")
    assert not uri.equivalent(other) and not other.equivalent(uri)


# --- header values --------------------------------------------------------------------------


@FAST
@given(
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "X-NEW"]),
    host=hosts,
    port=ports,
    params=st.dictionaries(
        tokens.map(str.lower),
        st.one_of(st.none(), st.text(TOKEN, min_size=1, max_size=10)),
        max_size=4,
    ),
    pad=st.tuples(lws, lws, lws, lws),
)
def test_via_values_parse_back(
    transport: str, host: str, port: int | None, params: dict, pad: tuple
) -> None:
    built = Via(transport, host, port, params)
    parsed = parse_via(str(built))
    assert (parsed.transport, parsed.host, parsed.port, parsed.params) == (
        transport,
        host,
        port,
        params,
    )
    # the same value written with LWS around '/', ':' and ';'
    a, b, c, d = pad
    spaced = f"SIP{a}/{b}2.0{a}/{c}{transport.lower()} {d}{host}"
    if port is not None:
        spaced += f"{b}:{c}{port}"
    spaced += "".join(
        f"{a};{b}{k}" if v is None else f"{a};{b}{k}{c}={d}{v}" for k, v in params.items()
    )
    again = parse_via(spaced)
    assert (again.transport, again.host, again.port, again.params) == (
        transport,
        host,
        port,
        params,
    )


display_names = st.one_of(
    st.none(),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF), max_size=8),
    st.lists(tokens, min_size=1, max_size=3).map(" ".join),
)


@FAST
@given(sip_uris(), display_names, header_params)
def test_name_addr_values_parse_back(uri: SipUri, display: str | None, params: dict) -> None:
    built = NameAddr(uri, display, params)
    parsed = parse_name_addr(str(built))
    assert parsed.display_name == display
    assert parsed.uri_text == str(uri) and parsed.uri.equivalent(uri)
    assert parsed.params == params
    for k, v in params.items():
        assert parsed.param(k) == (v if v is None or v[:1] != '"' else unquote(v))


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(0, 5), tokens, lws)
def test_cseq_values_parse_back(seq: int, zeros: int, method: str, pad: str) -> None:
    cseq = parse_cseq(f"{'0' * zeros}{seq} {pad}{method}")
    assert (cseq.seq, cseq.method) == (seq, method)


# --- whole messages ---------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "REGISTER", "X-PROBE"]))
    extra = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "Subject",
                        "X-Custom",
                        "User-Agent",
                        "Supported",
                        "Allow",
                        "P-Asserted-Identity",
                    ]
                ),
                st.text(
                    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30
                ),
            ),
            max_size=4,
        )
    )
    body = draw(st.binary(max_size=64))
    return make_request(
        method,
        str(draw(sip_uris(with_headers=False))),
        via=str(Via("UDP", draw(hosts), draw(ports), {"branch": "z9hG4bK" + draw(tokens)})),
        from_=str(NameAddr(draw(sip_uris()), draw(display_names), {"tag": draw(tokens)})),
        to=str(NameAddr(draw(sip_uris()), draw(display_names))),
        call_id=draw(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
        ),
        cseq=draw(st.integers(0, 2**31)),
        contact=str(NameAddr(draw(sip_uris()))),
        headers=extra,
        body=body,
        content_type="application/octet-stream" if body else None,
    )


@budget(100)
@given(requests())
def test_generated_messages_round_trip(request: Request) -> None:
    wire = request.to_bytes()
    parsed = parse_message(wire)
    assert parsed == request
    parsed.validate()
    assert parse_message(parsed.to_bytes()) == parsed
    # the response a UAS builds for it parses back too, with the tag added once
    response = make_response(parsed, 200, to_tag="t1")
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response) and again == response
    again.validate()
    assert again.to.tag == "t1" and again.get_all("via") == parsed.get_all("via")
    # and framed on a stream it is the same message
    framer = StreamFramer()
    framer.receive_data(wire + wire)
    first, second = framer.next_event(), framer.next_event()
    assert first.message == parsed and second.message == parsed  # type: ignore[union-attr]


# --- robustness ---------------------------------------------------------------------------------


def exercise(data: bytes) -> None:
    """Everything a transport does with untrusted octets: only ParseError may come out."""
    try:
        msg = parse_message(data)
    except ParseError as e:
        assert 400 <= e.status < 600 and isinstance(e.detail, str)
        salvaged = salvage_request(data)
        if salvaged is not None:
            make_response(salvaged, e.status, to_tag="x").to_bytes()
    else:
        try:
            msg.validate()
        except ParseError:
            pass
        else:
            assert parse_message(msg.to_bytes()) == msg
        for name in ("via", "contact", "route", "record_route", "content_type", "max_forwards"):
            try:
                getattr(msg, name)
            except ParseError:
                pass
        msg.to_bytes()
    verdict = check_message(data)
    assert verdict.accepted in (True, False)
    verdict.as_dict()
    framer = StreamFramer(max_header_size=4096, max_body_size=4096)
    try:
        framer.receive_data(data)
        for _ in range(len(data) + 2):
            if framer.next_event() is NEED_DATA:
                break
        else:  # pragma: no cover
            raise AssertionError("framer did not stop")
    except ParseError as e:
        assert e.fatal_to_stream


@budget(500)
@given(st.binary(max_size=600))
@example(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
@example(b"SIP/2.0 200 OK\r\nCSeq: " + b"1" * 5000 + b" INVITE\r\n\r\n")
@example(b"\r\n" * 300)
@example(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;rport=" + b"9" * 5000 + b"\r\n\r\n")
def test_arbitrary_bytes(data: bytes) -> None:
    exercise(data)


def mutate(seed: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for kind, pos, blob in ops:
        if not data:
            data.extend(blob)
            continue
        pos %= len(data)
        if kind == 0:
            data[pos : pos + 1] = blob  # replace one octet with a few
        elif kind == 1:
            del data[pos : pos + len(blob) + 1]  # delete a run
        elif kind == 2:
            data[pos:pos] = blob  # insert
        else:
            data[pos:pos] = data[pos : pos + 40]  # duplicate a stretch (headers, CRLFs…)
    return bytes(data)


SPICE = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"%00",
     b"\x00", b"\xff", b"@", b"[", b"]", b"=", b"\r\n\r\n", b"\r\n ", b"Content-Length: 99\r\n",
     b"l: -1\r\n", b"Via: ", b"SIP/2.0", b"sip:", b"9999999999999999999999"]
)  # fmt: skip


@budget(800)
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 4000),
            st.one_of(SPICE, st.binary(min_size=1, max_size=4)),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_torture_messages(seed: bytes, ops: list[tuple[int, int, bytes]]) -> None:
    data = mutate(seed, ops)
    assume(len(data) < 8000)
    exercise(data)


# --- fast paths agree with the general grammar --------------------------------------------
#
# uri.py and headers.py parse the common shapes with one regular expression each and fall
# back to the general code for everything else. Both must give the same answer.


def _uri_fields(text: str, parse) -> tuple:
    try:
        uri = parse(text)
    except ParseError:
        return ("error",)
    return (type(uri).__name__, str(uri), getattr(uri, "user", None), getattr(uri, "password", None),
            getattr(uri, "host", None), getattr(uri, "port", None), getattr(uri, "params", None),
            getattr(uri, "headers", None), uri.scheme)  # fmt: skip


def _name_addr_fields(text: str, parse) -> tuple:
    try:
        na = parse(text)
    except ParseError:
        return ("error",)
    return (na.display_name, na.uri_text, na.params, na.bracketed, str(na),
            _uri_fields(na.uri_text, lambda _: na.uri))  # fmt: skip


def _via_fields(text: str, parse) -> tuple:
    try:
        via = parse(text)
    except ParseError:
        return ("error",)
    return (via.protocol, via.transport, via.host, via.port, via.params, str(via))


name_addr_texts = st.builds(
    lambda uri, display, params: str(NameAddr(uri, display, params)),
    sip_uris(),
    display_names,
    header_params,
)
via_texts = st.builds(
    lambda t, h, p, params: str(Via(t, h, p, params)),
    st.sampled_from(["UDP", "tcp", "TLS"]),
    hosts,
    ports,
    st.dictionaries(
        tokens, st.one_of(st.none(), st.text(TOKEN, min_size=1, max_size=8)), max_size=3
    ),
)


def _mutations(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    spice = st.sampled_from(list(' \t;:,<>"\\@[]=?%&') + ["SIP:", "sips:", "70000", "\u00e9"])
    return st.builds(
        lambda text, pos, piece, cut: (
            text[: pos % (len(text) + 1)] + piece + text[pos % (len(text) + 1) + cut :]
        ),
        base,
        st.integers(0, 200),
        spice,
        st.integers(0, 3),
    )


@FAST
@given(st.one_of(sip_uris().map(str), _mutations(sip_uris().map(str))))
def test_uri_fast_path_agrees_with_general(text: str) -> None:
    from sipua.sip.uri import _parse_uri_general

    assert _uri_fields(text, parse_uri) == _uri_fields(text, _parse_uri_general)


@FAST
@given(st.one_of(name_addr_texts, _mutations(name_addr_texts)))
def test_name_addr_fast_path_agrees_with_general(text: str) -> None:
    from sipua.sip.headers import _parse_name_addr_general

    general = _name_addr_fields(text, lambda t: _parse_name_addr_general(t, "To", False))
    assert _name_addr_fields(text, parse_name_addr) == general


@FAST
@given(st.one_of(via_texts, _mutations(via_texts)))
def test_via_fast_path_agrees_with_general(text: str) -> None:
    from sipua.sip.headers import _parse_via_general

    assert _via_fields(text, parse_via) == _via_fields(text, _parse_via_general)
