"""How fast the SIP message layer parses an INVITE and serialises a response.

Run: ``python bench/parse.py`` (``--seconds N`` per figure, default 3; ``--profile`` runs
the parse loop under pyinstrument and prints where the time goes).

Each parse iteration does what the UAS does for a new INVITE: frame the datagram, then
read the typed values the transaction and dialog layers use (top Via branch and rport,
From tag and URI user, To tag and URI user, Call-ID, CSeq, Contact URI host,
Content-Length), so the lazily parsed values are really parsed. The figure is for the
parser as installed (with the compiled fast path when it was built); the pure-Python
parser's figure is printed too. The INVITEs are all
different (branch, tags, Call-ID, numbers), so nothing parsed for one helps the next.
A bare split of the header lines is printed for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import random
import sys
import time

from sipua.sip import message as message_module
from sipua.sip.builders import make_response
from sipua.sip.message import parse_message, parse_message_py

SDP = (
    b"v=0\r\n"
    b"o=- 8000 8000 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

TEMPLATE = (
    "INVITE sip:{callee}@sip.example.com:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Caller {n}" <sip:{caller}@pbx.example.net>;tag={tag}\r\n'
    "To: <sip:{callee}@sip.example.com>\r\n"
    "Call-ID: {call_id}@pbx.example.net\r\n"
    "CSeq: {cseq} INVITE\r\n"
    "Contact: <sip:{caller}@192.0.2.10:5060;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE\r\n"
    "Supported: replaces, timer, 100rel\r\n"
    "User-Agent: ExamplePBX 18.4.0\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
)


def make_invites(count: int) -> list[bytes]:
    """Distinct INVITEs, as a trunk sends them: branch, tag, Call-ID and numbers differ."""
    rnd = random.Random(5060)
    out = []
    for n in range(count):
        head = TEMPLATE.format(
            n=n,
            callee=f"+1555{rnd.randrange(10**7):07d}",
            caller=f"+1555{rnd.randrange(10**7):07d}",
            branch=f"{rnd.getrandbits(48):012x}",
            tag=f"{rnd.getrandbits(40):010x}",
            call_id=f"{rnd.getrandbits(64)}",
            cseq=rnd.randrange(1, 10**6),
            length=len(SDP),
        )
        out.append(head.encode() + SDP)
    return out


INVITES = make_invites(4096)
_next_invite = itertools.cycle(INVITES).__next__


def typed_values(msg) -> tuple:
    """What the transaction and dialog layers read of a new INVITE."""
    via = msg.top_via
    from_ = msg.from_
    to = msg.to
    cseq = msg.cseq
    return (
        via.branch,
        via.rport,
        from_.tag,
        from_.uri.user,
        to.tag,
        to.uri.user,
        msg.call_id,
        cseq.seq,
        cseq.method,
        msg.contact[0].uri.host,
        msg.content_length,
    )


def parse_once() -> tuple:
    return typed_values(parse_message(_next_invite()))


def parse_once_py() -> tuple:
    """The same with the pure-Python parser (what runs where the C extension is absent)."""
    return typed_values(parse_message_py(_next_invite()))


def split_once() -> list:
    head, _, body = _next_invite().partition(b"\r\n\r\n")
    return [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn``: the best of many ~0.1 s rounds over about ``seconds``.

    Rounds are timed in this thread's CPU time (``time.thread_time``) and the best
    round is kept, so other processes sharing the machine disturb the figure as
    little as possible: it is the rate of one core running only this loop.
    """
    n = 100
    while True:  # calibrate a round to ~0.1 s
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        dt = time.thread_time() - t0
        if dt > 0.05:
            break
        n *= 2
    batch = max(1, int(n * 0.1 / dt))
    best = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.thread_time()
        for _ in range(batch):
            fn()
        best = max(best, batch / (time.thread_time() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per figure")
    ap.add_argument("--profile", action="store_true", help="profile the parse loop")
    args = ap.parse_args()

    request = parse_message(INVITES[0])
    request.validate()

    def respond() -> bytes:
        # What the UAS sends for every call: a 200 with a To tag, Contact and SDP.
        return make_response(
            request,
            200,
            to_tag="8d7f6e5c",
            headers=(("Contact", "<sip:sipua@192.0.2.1:5060>"),),
            body=SDP,
            content_type="application/sdp",
        ).to_bytes()

    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        profiler.start()
        for _ in range(100_000):
            parse_once()
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False))
        return

    print(
        f"python {platform.python_version()} on {platform.machine()}: "
        f"{len(INVITES)} distinct INVITEs of {len(INVITES[0])} octets"
    )
    print(f"typed values read: {parse_once()}")
    fast = "sipua.sip._speedups (C)" if message_module.SPEEDUPS else "absent: pure Python"
    print(f"compiled fast path: {fast}")
    print(f"response: {len(respond())} octets")
    print(f"bare header split:             {rate(split_once, args.seconds):>10,.0f} msg/s")
    print(f"parse INVITE + typed access:   {rate(parse_once, args.seconds):>10,.0f} msg/s")
    print(f"  the same, pure-Python parser: {rate(parse_once_py, args.seconds):>10,.0f} msg/s")
    print(f"make_response(200) + to_bytes: {rate(respond, args.seconds):>10,.0f} msg/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
