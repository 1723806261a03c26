"""The compiled fast path (sipua/sip/csrc/) agrees with the Python parser.

``_speedups.parse_datagram`` and ``parse_head`` either decline a message (None: the Python
parser then handles it) or return exactly what the Python parser builds: the same classes,
start line, header fields, body, and the same typed values (Via, From, To, Call-ID, CSeq,
Contact, Content-Length), which it parses ahead. These tests compare both, slot by slot, on
the RFC 4475/5118 corpus, on generated messages, and on mutations of both, and check that
the common messages really take the fast path (or the benchmark figure would be a lie).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sipua.sip import message as message_module
from sipua.sip.builders import make_request, make_response
from sipua.sip.errors import ParseError
from sipua.sip.headers import NameAddr, Via
from sipua.sip.message import build_message, parse_message_py
from sipua.sip.uri import SipUri

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
CORPUS = [
    p.read_bytes()
    for folder in ("rfc4475", "rfc5118")
    for p in sorted((DATA / folder).iterdir())
    if p.suffix != ".json"
]
SCALE = max(1, int(os.environ.get("SIPUA_FUZZ_SCALE", "1")))

if os.environ.get("SIPUA_NO_SPEEDUPS"):
    pytest.skip("SIPUA_NO_SPEEDUPS is set: the pure-Python parser only", allow_module_level=True)


def test_the_extension_is_built_and_loaded() -> None:
    # tools/test.sh installs the package, which compiles sipua/sip/csrc/ (gcc and the Python
    # headers are on every machine of this kind). Missing, the parser is five times slower.
    from sipua.sip import _speedups  # noqa: F401

    assert message_module.SPEEDUPS


from sipua.sip import _speedups  # noqa: E402

ACCESSORS = ("via", "top_via", "from_", "to", "call_id", "cseq", "contact", "route",
             "record_route", "content_length", "max_forwards", "content_type")  # fmt: skip


def dump(value: object, depth: int = 0) -> object:
    """A comparable picture of a parsed value: its class and every slot, recursively."""
    assert depth < 8
    if value is None or isinstance(value, str | int | bytes | bool):
        return (type(value).__name__, value)
    if isinstance(value, list):
        return [dump(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(dump(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: dump(v, depth + 1) for k, v in value.items()}
    slots = []
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name == "context":
                continue
            slots.append((name, dump(getattr(value, name, "<unset>"), depth + 1)))
    return (type(value).__name__, sorted(slots))


def view(msg) -> tuple:
    """The message and what each typed accessor gives (a value or the ParseError)."""
    typed = []
    for name in ACCESSORS:
        try:
            typed.append((name, dump(getattr(msg, name))))
        except ParseError as e:
            typed.append((name, ("ParseError", e.status, str(e))))
    return dump(msg), typed


def python_view(data: bytes) -> object:
    try:
        return view(parse_message_py(data))
    except ParseError as e:
        return ("ParseError", e.status, str(e))


def assert_agrees(data: bytes) -> bool:
    """Compare both parsers on a datagram; True when the fast path took it."""
    fast = _speedups.parse_datagram(data)
    if fast is None:
        return False
    assert view(fast) == python_view(data), data[:200]
    return True


def assert_head_agrees(data: bytes) -> bool:
    """The same for a stream message's header section (framer path)."""
    head = data.partition(b"\r\n\r\n")[0]
    fast = _speedups.parse_head(head)
    if fast is None:
        return False
    try:
        slow = view(build_message(head.decode("utf-8", "surrogateescape"), b""))
    except ParseError as e:
        slow = ("ParseError", e.status, str(e))
    assert view(fast) == slow, head[:200]
    return True


# --- the corpus ----------------------------------------------------------------------------


def test_torture_corpus_agrees() -> None:
    taken = sum(assert_agrees(data) for data in CORPUS)
    heads = sum(assert_head_agrees(data) for data in CORPUS)
    # The torture tests are mostly odd on purpose; a few are plain enough for the fast path.
    assert 0 < taken < len(CORPUS) and heads >= taken


INVITE = (
    b"INVITE sip:+15551234567@sip.example.com:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Caller One" <sip:+15557654321@pbx.example.net>;tag=1928301774\r\n'
    b"To: <sip:+15551234567@sip.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pbx.example.net\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:+15557654321@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"X-Custom-Header: kept verbatim\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\r\n"
)
RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"v: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKa;received=192.0.2.1\r\n"
    b"f: sipp <sip:sipp@127.0.0.1:5061>;tag=77SIPpTag001\r\n"
    b"t: service <sip:service@127.0.0.1:5060>;tag=as5f\r\n"
    b"i: 1-2@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sips:sipua@[::1]:5061;transport=tls>\r\n"
    b"l: 0\r\n"
    b"\r\n"
)


def test_common_messages_take_the_fast_path() -> None:
    for data in (INVITE, RINGING, INVITE.replace(b"Content-Length: 4", b"Content-Length: 2")):
        assert assert_agrees(data) and assert_head_agrees(data)
        msg = _speedups.parse_datagram(data)
        assert set(msg._cache) >= {"via", "from", "to", "call-id", "cseq", "contact"}


@pytest.mark.parametrize(
    ("old", "new", "taken"),
    [
        (b"Content-Length: 4", b"Content-Length: 40", False),  # longer than the datagram: 400
        (b"CSeq: 314159 INVITE", b"CSeq: 314159 INVITE\r\nCSeq: 2 INVITE", True),  # 400 on use
        (b"Max-Forwards: 70", b"Max-Forwards: 70\r\n Continued", False),  # folding
        (b"sip.example.com:5060 SIP", b"sip.example.com:99999 SIP", False),  # port out of range
        (b"Via: SIP", b"Via : SIP", True),  # whitespace before the colon is allowed
        (b"Caller One", b"Caller \xc3\xa9", False),  # UTF-8
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n", False),  # bare LF
        (b"INVITE sip:", b"INVITE  sip:", False),  # two spaces
        (b"SIP/2.0\r\nVia", b"SIP/2.1\r\nVia", False),  # another version: 505
        (b"Call-ID: a84b", b"Call-ID: a84b c", True),  # space in Call-ID: 400 on use
        (b"X-Custom-Header", b"X Custom", False),  # bad header name
        (b"INVITE sip:", b"FOO sip:", False),  # uncommon method
        (b"<sip:+15551234567@sip.example.com>", b"sip:+15551234567@sip.example.com", True),
    ],
)
def test_odd_messages_agree(old: bytes, new: bytes, taken: bool) -> None:
    data = INVITE.replace(old, new)
    assert data != INVITE
    assert assert_agrees(data) is taken
    assert assert_head_agrees(data) is (taken or old == b"Content-Length: 4")


# --- generated messages ---------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = ALNUM + "-.!%*_+`'~"
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
tokens = st.text(TOKEN, min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(st.text(ALNUM, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[::1]", "[2001:db8::7]", "[fe80::1%25eth0]"]),
)
uri_texts = st.builds(
    lambda scheme, user, pw, host, port, params: (
        f"{scheme}:{'' if user is None else user + ('' if pw is None else ':' + pw) + '@'}"
        f"{host}{'' if port is None else ':' + str(port)}"
        + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)
    ),
    st.sampled_from(["sip", "sips", "SIP", "tel", "sip"]),
    # with a few characters no user or password may hold, so the fast path must refuse them
    st.one_of(st.none(), st.text(ALNUM + "-_.!~*'()%&=+$,;?/[]@<> \"", min_size=0, max_size=10)),
    st.one_of(st.none(), st.text(ALNUM + ":&=+$,[]@<> ", min_size=0, max_size=6)),
    hosts,
    st.one_of(st.none(), st.integers(0, 70000)),
    st.lists(
        st.tuples(
            st.text(ALNUM + "-.!~*'()%[]/:&+$_", min_size=1, max_size=8),
            st.one_of(st.none(), st.text(ALNUM + "-.:[]", min_size=0, max_size=8)),
        ),
        max_size=3,
    ),
)
header_params = st.lists(
    st.tuples(tokens, st.one_of(st.none(), st.text(PRINTABLE, min_size=0, max_size=8))),
    max_size=3,
).map(lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps))
name_addrs = st.builds(
    lambda display, uri, params: (
        f"{display}<{uri}>{params}" if display is not None else uri + params
    ),
    st.one_of(
        st.none(),
        st.just(""),
        st.text(PRINTABLE, max_size=12).map(lambda d: f'"{d}" '),
        st.lists(tokens, min_size=1, max_size=3).map(lambda t: " ".join(t) + " "),
        st.lists(tokens, min_size=1, max_size=2).map(" ".join),
    ),
    uri_texts,
    header_params,
)
vias = st.builds(
    lambda proto, transport, host, port, params: (
        f"{proto}/{transport} {host}{'' if port is None else ':' + str(port)}{params}"
    ),
    st.sampled_from(["SIP/2.0", "SIP/2.0", "sip/2.0", "SIP / 2.0"]),
    st.sampled_from(["UDP", "tcp", "Tls", "WS", "X-NEW"]),
    hosts,
    st.one_of(st.none(), st.integers(0, 70000)),
    header_params,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = []
    if draw(st.booleans()):
        code = draw(st.integers(99, 700))
        lines.append(f"SIP/2.0 {code} {draw(st.text(PRINTABLE, max_size=12))}".rstrip(" ")
                     if draw(st.booleans()) else f"SIP/2.0 {code}")  # fmt: skip
    else:
        method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "INFO", "FOO"]))
        lines.append(f"{method} {draw(uri_texts)} SIP/2.0")
    fields = [
        (draw(st.sampled_from(["Via", "v", "VIA"])), draw(vias)),
        (draw(st.sampled_from(["From", "f"])), draw(name_addrs)),
        (draw(st.sampled_from(["To", "t"])), draw(name_addrs)),
        ("Call-ID", draw(st.text(PRINTABLE, min_size=1, max_size=20))),
        ("CSeq", f"{draw(st.integers(0, 10**10))} "
                 f"{draw(st.sampled_from(['INVITE', 'BYE', 'FOO', 'ACK ', ' ACK']))}"),
        (draw(st.sampled_from(["Contact", "m"])), draw(st.one_of(name_addrs, st.just("*")))),
        ("X-Extra", draw(st.text(PRINTABLE, max_size=20))),
    ]  # fmt: skip
    fields = draw(st.permutations(fields))
    fields = fields[: draw(st.integers(2, len(fields)))]
    body = draw(st.binary(max_size=20))
    length = draw(st.one_of(st.just(len(body)), st.integers(0, 40)))
    lines.extend(f"{name}: {value}" for name, value in fields)
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.too_slow],
    )


@budget(1500)
@given(messages())
def test_generated_messages_agree(data: bytes) -> None:
    assert_agrees(data)
    assert_head_agrees(data)


def mutate(seed: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for kind, pos, blob in ops:
        pos %= len(data) or 1
        if kind == 0:
            data[pos : pos + 1] = blob
        elif kind == 1:
            del data[pos : pos + len(blob)]
        else:
            data[pos:pos] = blob
    return bytes(data)


SPICE = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"@",
     b"[", b"]", b"=", b"?", b"\x00", b"\x7f", b"\xc3\xa9", b"\r\n ", b"70000", b"9999999999",
     b"Content-Length: 1\r\n", b"sips:", b"SIP/2.0", b"Via: SIP/2.0/UDP h\r\n"]
)  # fmt: skip


@budget(1500)
@given(
    st.sampled_from([INVITE, RINGING] + CORPUS),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2000), st.one_of(SPICE, st.binary(max_size=3))),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_messages_agree(seed: bytes, ops: list[tuple[int, int, bytes]]) -> None:
    data = mutate(seed, ops)
    assume(data)
    assert_agrees(data)
    assert_head_agrees(data)


def test_messages_the_stack_builds_take_the_fast_path() -> None:
    request = make_request(
        "INVITE",
        "sip:session_01@127.0.0.1:5060",
        via=str(Via("UDP", "127.0.0.1", 5062, {"branch": "z9hG4bKx1", "rport": None})),
        from_=str(NameAddr(SipUri("127.0.0.1", "alice", 5062), "Alice", {"tag": "a1"})),
        to=str(NameAddr(SipUri("127.0.0.1", "session_01"))),
        call_id="c1@127.0.0.1",
        cseq=1,
        contact=str(NameAddr(SipUri("127.0.0.1", "alice", 5062))),
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    response = make_response(
        request, 200, to_tag="b2", headers=(("Contact", "<sip:sipua@127.0.0.1>"),)
    )
    for msg in (request, response):
        assert assert_agrees(msg.to_bytes())
