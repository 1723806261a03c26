"""Hypothesis strategies that mutate valid SIP messages, octets and header lines.

Seeds are valid requests and responses written here, plus the RFC 4475 torture
messages (``tests/data/sip/rfc4475``). A mutation is a short list of operations
applied in order: octet flips, inserts, deletes, truncations, and line edits
(drop, duplicate, swap, rewrite a header value, add headers, change the
start line or Content-Length, mix line endings).

Generated messages never carry ``maddr`` (which would direct responses to
another host), so everything sipua answers stays on loopback.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import strategies as st

_MADDR = re.compile(rb"(?i)maddr")
DATA = Path(__file__).resolve().parent.parent / "data" / "sip" / "rfc4475"

_SDP = (
    "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\n"
)
_AUTH = (
    'Digest username="trunk", realm="sipua", nonce="AQAAAaIOX_8EZHApr8qAGcHPpzNgJ_sUNxMpnB2WO4JKfZNbXVFl", '
    'uri="sip:session_x@127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5, '
    'cnonce="abc", nc=00000001, qop=auth, opaque="3r-8Xso6t5fEqSVc"'
)


def _message(start: str, headers: list[str], body: str = "") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _common(method: str, cseq: int = 1, to_tag: str = "") -> list[str]:
    return [
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKfuzz1;rport",
        "Max-Forwards: 70",
        'From: "PBX" <sip:pbx@127.0.0.1>;tag=f1',
        f"To: <sip:session_x@127.0.0.1>{to_tag}",
        "Call-ID: fuzz-1@127.0.0.1",
        f"CSeq: {cseq} {method}",
    ]


SEEDS: list[bytes] = [
    _message(
        "INVITE sip:session_x@127.0.0.1 SIP/2.0",
        [
            *_common("INVITE"),
            "Contact: <sip:pbx@127.0.0.1:5090>",
            "User-Agent: Asterisk PBX 20.5.0",
            f"Authorization: {_AUTH}",
            "Supported: replaces, timer",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
            "Content-Type: application/sdp",
        ],
        _SDP,
    ),
    _message("OPTIONS sip:127.0.0.1 SIP/2.0", [*_common("OPTIONS"), "Accept: application/sdp"]),
    _message(
        "REGISTER sip:127.0.0.1 SIP/2.0",
        [
            *_common("REGISTER", 2),
            "Contact: <sip:pbx@127.0.0.1:5090>;expires=60",
            f"Authorization: {_AUTH}",
        ],
    ),  # fmt: skip
    _message("BYE sip:pbx@127.0.0.1:5090 SIP/2.0", _common("BYE", 3, ";tag=t9")),
    _message("ACK sip:session_x@127.0.0.1 SIP/2.0", _common("ACK", 1, ";tag=t9")),
    _message("CANCEL sip:session_x@127.0.0.1 SIP/2.0", _common("CANCEL")),
    _message(
        "INFO sip:pbx@127.0.0.1:5090 SIP/2.0",
        [*_common("INFO", 4, ";tag=t9"), "Content-Type: application/dtmf-relay"],
        "Signal=5\r\nDuration=160\r\n",
    ),
    _message(
        "SIP/2.0 200 OK",
        [
            "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKfuzz2",
            "From: <sip:a@127.0.0.1>;tag=1",
            "To: <sip:b@127.0.0.1>;tag=2",
            "Call-ID: resp-1",
            "CSeq: 1 BYE",
        ],
    ),  # fmt: skip
    # Compact forms and folding.
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKc1\r\n"
    b"f: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:b@127.0.0.1>\r\ni: compact-1\r\nCSeq: 1\r\n OPTIONS\r\n"
    b"Max-Forwards: 70\r\nl: 0\r\n\r\n",
]
if DATA.is_dir():
    SEEDS += [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]

_HEADER_NAMES = [
    "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Content-Length",
    "Content-Type", "Authorization", "Proxy-Authorization", "Route", "Record-Route",
    "Require", "Supported", "User-Agent", "Expires", "Accept", "v", "f", "t", "i", "l", "m",
]  # fmt: skip
_METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "PRACK", "NOTIFY", "X"]
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60
) | st.sampled_from(
    [
        "", " ", "\t", ",", ";", "<", ">", '"', "\\", "sip:", "sips:", "tel:", "*", "-1",
        "4294967296", "99999999999999999999", "SIP/2.0/UDP", "z9hG4bK", ";branch=",
        ";tag=", 'Digest username="', "Digest realm=sipua, nonce=", "0" * 300, "\x00",
        "\r", "%00", "[::1]", "[", "]:", "0.0.0.0", "\u00e9\u4e2d", "<sip:a@b;lr>",
    ]
)  # fmt: skip


def _octet_op():
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
        st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
        st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 64)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("truncate"), st.integers(0, 10_000)),
        st.tuples(
            st.just("repeat"), st.integers(0, 10_000), st.integers(1, 200), st.integers(1, 50)
        ),
    )


def _line_op():
    return st.one_of(
        st.tuples(st.just("drop_line"), st.integers(0, 60)),
        st.tuples(st.just("dup_line"), st.integers(0, 60), st.integers(1, 40)),
        st.tuples(st.just("swap_lines"), st.integers(0, 60), st.integers(0, 60)),
        st.tuples(st.just("value"), st.integers(0, 60), _TEXT),
        st.tuples(st.just("add_header"), st.sampled_from(_HEADER_NAMES), _TEXT),
        st.tuples(st.just("start"), st.sampled_from(_METHODS), _TEXT, _TEXT),
        st.tuples(st.just("length"), st.integers(-5, 100_000)),
        st.tuples(st.just("endings"), st.sampled_from(["\n", "\r", "\r\n\r\n", " \r\n"])),
        st.tuples(st.just("many_headers"), st.integers(50, 2000)),
    )


def _apply(data: bytes, op: tuple) -> bytes:
    kind = op[0]
    n = max(len(data), 1)
    if kind == "flip":
        i = op[1] % n
        return data[:i] + bytes([(data[i : i + 1] or b"\0")[0] ^ (1 << op[2])]) + data[i + 1 :]
    if kind == "set":
        i = op[1] % n
        return data[:i] + bytes([op[2]]) + data[i + 1 :]
    if kind == "delete":
        i = op[1] % n
        return data[:i] + data[i + op[2] :]
    if kind == "insert":
        i = op[1] % (len(data) + 1)
        return data[:i] + op[2] + data[i:]
    if kind == "truncate":
        return data[: op[1] % (len(data) + 1)]
    if kind == "repeat":
        i = op[1] % n
        return data[: i + op[2]] + data[i : i + op[2]] * op[3] + data[i + op[2] :]
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if kind == "drop_line" and len(lines) > 1:
        del lines[op[1] % len(lines)]
    elif kind == "dup_line":
        i = op[1] % len(lines)
        lines[i + 1 : i + 1] = [lines[i]] * op[2]
    elif kind == "swap_lines":
        i, j = op[1] % len(lines), op[2] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "value" and len(lines) > 1:
        i = 1 + op[1] % (len(lines) - 1)
        name = lines[i].split(b":", 1)[0]
        lines[i] = name + b": " + op[2].encode("utf-8", "surrogatepass")
    elif kind == "add_header":
        lines.insert(1, f"{op[1]}: {op[2]}".encode("utf-8", "surrogatepass"))
    elif kind == "start":
        lines[0] = f"{op[1]} {op[2]} {op[3] or 'SIP/2.0'}".encode("utf-8", "surrogatepass")
    elif kind == "length":
        lines = [line for line in lines if not line.lower().startswith((b"content-length", b"l:"))]
        lines.append(f"Content-Length: {op[1]}".encode())
    elif kind == "endings":
        return (b"\r\n".join(lines) + sep + body).replace(b"\r\n", op[1].encode())
    elif kind == "many_headers":
        lines[1:1] = [b"X-Fuzz-%d: v" % i for i in range(op[1])]
    return b"\r\n".join(lines) + sep + body


def mutate(seed: bytes, ops: list[tuple]) -> bytes:
    data = seed
    for op in ops:
        data = _apply(data, op)
    # Responses must stay on loopback: no maddr (RFC 3261 §18.2.2) in anything we send.
    return _MADDR.sub(b"xaddr", data)[:70_000]


messages = st.builds(
    mutate,
    st.sampled_from(SEEDS),
    st.lists(st.one_of(_octet_op(), _line_op()), min_size=1, max_size=5),
)
