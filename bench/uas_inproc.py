"""In-process UAS cost per call: INVITE/ACK/BYE datagrams fed straight into the UserAgent.

No sockets for SIP (sends are counted, not made), so this measures what sipua's Python code costs per
call, without the event loop's I/O. `python bench/uas_inproc.py [calls] [--profile] [--default-gc]`
(the collector is tuned as `sipua serve` tunes it unless --default-gc).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time

from sipua.transport.manager import ListenConfig
from sipua.transport.peer import Peer
from sipua.ua.core import UaConfig, UserAgent
from sipua.ua.media import HeldPortsBackend

SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(i: int) -> bytes:
    return (
        f"INVITE sip:session_sess_1@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-{i}-0\r\n"
        f"From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag00{i}\r\n"
        f"To: session_sess_1 <sip:session_sess_1@127.0.0.1:5060>\r\n"
        f"Call-ID: {i}-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n"
        f"Subject: Performance Test\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def in_dialog(method: str, i: int, to_tag: str, cseq: int, branch: str) -> bytes:
    return (
        f"{method} sip:session_sess_1@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n"
        f"From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag00{i}\r\n"
        f"To: session_sess_1 <sip:session_sess_1@127.0.0.1:5060>;tag={to_tag}\r\n"
        f"Call-ID: {i}-1@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n"
        f"Subject: Performance Test\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Session:
    id = "sess_1"
    status = "active"
    accepting_calls = True
    provider = None


class Resolver:
    def resolve_sip_user(self, user: str):
        return Session() if user in ("session_sess_1", "sess_1") else None


class NullBackend:
    class Leg:
        local_host = "127.0.0.1"
        local_port = 10000

        def start(self, params):
            pass

        update = start

        def close(self):
            pass

        def stats(self):
            return {}

    def open_leg(self, session, leg_id, on_event=None):
        return self.Leg()

    async def close(self):
        pass


async def run(calls: int, profile: bool, ports: bool) -> None:
    media = HeldPortsBackend("127.0.0.1", "127.0.0.1") if ports else NullBackend()
    config = UaConfig()
    config.max_calls_per_session = 10**9
    ua = UserAgent(
        config,
        ListenConfig(host="127.0.0.1", udp_port=0, tcp_port=None, tls_port=None),
        Resolver(),
        media,
    )
    await ua.start()
    sent: list[bytes] = []
    ua.transports.send = lambda data, peer: sent.append(data) or True  # type: ignore[method-assign]
    peer = Peer("udp", ("127.0.0.1", 5061))
    invites = [invite(i) for i in range(calls)]
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    for i in range(calls):
        sent.clear()
        ua._on_datagram(invites[i], peer)
        ua._drain()
        ok = sent[-1]
        tag = ok[ok.index(b";tag=", ok.index(b"\r\nTo:")) + 5 :].split(b"\r\n", 1)[0].decode()
        ua._on_datagram(in_dialog("ACK", i, tag, 1, f"z9hG4bK-1-{i}-5"), peer)
        ua._drain()
        ua._on_datagram(in_dialog("BYE", i, tag, 2, f"z9hG4bK-1-{i}-7"), peer)
        ua._drain()
    if prof:
        prof.disable()
    dt = time.process_time() - t0
    print(
        f"{calls} calls in {dt:.3f} s: {calls / dt:,.0f} calls/s, {1e6 * dt / calls:.1f} us per call "
        f"({'with' if ports else 'without'} RTP port binding)"
    )
    assert ua.uas.counters["calls_ended"] == calls, ua.uas.counters
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    await ua.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 20000
    if "--default-gc" not in sys.argv:
        # As `sipua serve` runs: without it, full collections over the calls' objects (and the
        # SIP trace) take a growing share and the figure says more about the GC than the UAS.
        from sipua.service.server import tune_garbage_collector

        tune_garbage_collector()
    asyncio.run(run(n, "--profile" in sys.argv, "--ports" in sys.argv))
