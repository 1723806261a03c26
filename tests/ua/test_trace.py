"""SIP traces (``sipua/ua/trace.py``): bounded per-call message logs, filled by the UA."""

from __future__ import annotations

from types import SimpleNamespace

from integration.sipclient import parse

from sipua.ua.events import CallDisconnected
from sipua.ua.trace import SipTrace

from .conftest import MakeUa


def _peer(port: int = 5070) -> SimpleNamespace:
    return SimpleNamespace(transport="udp", addr=("192.0.2.1", port), source=None, local=None)


def test_oldest_calls_and_excess_messages_are_forgotten() -> None:
    clock = iter(range(1000)).__next__
    trace = SipTrace(max_calls=2, max_messages=3, max_bytes=10, clock=lambda: float(clock()))
    for call in ("a", "b", "c"):
        for n in range(5):
            trace.record("in", call, f"MSG {n} of {call} and more".encode(), _peer())
    assert len(trace) == 2
    assert trace.messages(["a"]) == []  # the oldest call went first
    kept = trace.messages(["b", "c"])
    assert [m.call_id for m in kept] == ["b"] * 3 + ["c"] * 3
    assert all(len(m.data) == 10 for m in kept)  # cut to max_bytes
    assert trace.dropped == 6  # three calls, two messages each over max_messages
    trace.record("in", None, b"no call id", _peer())
    assert len(trace) == 2


def test_sessions_link_their_calls_and_a_disabled_trace_keeps_nothing() -> None:
    trace = SipTrace()
    trace.record("in", "c1", b"INVITE sip:x SIP/2.0\r\n", _peer())
    trace.record("out", "c2", b"SIP/2.0 200 OK\r\n", _peer(5080))
    trace.link("s1", "c1")
    trace.link("s1", "c2")
    trace.link("s1", "c1")
    assert trace.session_call_ids("s1") == ["c1", "c2"]
    assert [m.first_line for m in trace.session_messages("s1")] == [
        "INVITE sip:x SIP/2.0",
        "SIP/2.0 200 OK",
    ]
    assert trace.session_messages("nobody") == []
    off = SipTrace(max_calls=0)
    off.record("in", "c1", b"x", _peer())
    off.link("s1", "c1")
    assert (len(off), off.session_call_ids("s1")) == (0, [])


async def test_a_call_is_traced_in_order_both_ways(make_ua: MakeUa) -> None:
    h = await make_ua()
    call, ok = await h.connect()
    bye_ok = await h.client.request(call.bye())
    assert bye_ok.status == 200
    await h.wait_event(CallDisconnected)
    messages = h.ua.trace.session_messages("s1")
    seen = [(m.direction, m.first_line.split(" sip:")[0]) for m in messages]
    assert seen == [
        ("in", "INVITE"),
        ("out", "SIP/2.0 180 Ringing"),
        ("out", "SIP/2.0 200 OK"),
        ("in", "ACK"),
        ("in", "BYE"),
        ("out", "SIP/2.0 200 OK"),
    ]
    assert {m.call_id for m in messages} == {call.call_id}
    assert all(m.remote == h.client.local for m in messages)
    assert [m.time for m in messages] == sorted(m.time for m in messages)
    # What went out is what the client received, octet for octet.
    assert parse(messages[2].data).to_tag == ok.to_tag


def test_only_an_invite_opens_a_trace_and_the_total_is_bounded() -> None:
    trace = SipTrace(max_total_bytes=1000)
    trace.record("in", "keepalive", b"OPTIONS sip:x SIP/2.0\r\n", _peer(), opens=False)
    assert len(trace) == 0  # a scanner's or a PBX's OPTIONS never pushes a call out
    trace.record("in", "c1", b"INVITE sip:x SIP/2.0\r\n" + b"x" * 400, _peer(), opens=True)
    trace.record("out", "c1", b"SIP/2.0 200 OK\r\n", _peer(), opens=False)  # same Call-ID: kept
    assert [m.first_line for m in trace.messages(["c1"])] == [
        "INVITE sip:x SIP/2.0",
        "SIP/2.0 200 OK",
    ]
    for n in (2, 3):
        trace.record("in", f"c{n}", b"INVITE sip:y SIP/2.0\r\n" + b"y" * 400, _peer())
    # 3 x ~420 octets > 1000: the oldest call went, the newest stay.
    assert trace.messages(["c1"]) == [] and len(trace) == 2
    assert trace.total_bytes == sum(len(m.data) for m in trace.messages(["c2", "c3"]))
    assert trace.total_bytes <= 1000


async def test_out_of_dialog_options_are_not_traced(make_ua: MakeUa) -> None:
    h = await make_ua()
    r = await h.client.request(
        b"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n"
        + f"Via: SIP/2.0/UDP 127.0.0.1:{h.client.local[1]};branch=z9hG4bKopt1;rport\r\n".encode()
        + b"From: <sip:t@127.0.0.1>;tag=a\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: opt-1\r\n"
        + b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert r.status == 200
    assert len(h.ua.trace) == 0
