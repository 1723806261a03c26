"""In-process cost per call of the whole service: as bench/uas_inproc.py, but with what `sipua serve`
wires behind the UAS (session store, product events, event log in SQLite, webhook intake, metrics,
security gate, SIP trace, held RTP ports as with media off).

INVITE/ACK/BYE datagrams are fed straight into the UserAgent (SIP sends counted, not made) and the
event loop runs between batches of calls so the event log and webhook intake keep up, as they do
under load. CPU time of the process, and of it the time spent in the garbage collector.

    python bench/service_inproc.py [calls] [--profile] [--objects] [--garbage] [key=value ...]

``--profile`` prints cProfile's top functions and writes the whole profile to
``$TMPDIR/service_inproc.prof`` (for ``pstats``: callers, callees).
``key=value`` are settings overrides (as ``load_settings`` takes them, e.g. ``sip__trace_calls=0``).
``--objects`` prints what the run left tracked by the collector (what lingering transactions and
dialogs retain per call); ``--garbage`` runs 200 more calls and prints what of them became cyclic
garbage (objects only the collector can free).
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path

from uas_inproc import in_dialog, invite

from sipua.service.config import load_settings
from sipua.service.models import SessionCreate
from sipua.service.server import start_service, tune_garbage_collector
from sipua.transport.peer import Peer

BATCH = 50  # calls fed between turns of the event loop


class GcClock:
    """CPU seconds spent in the collector, per generation."""

    def __init__(self) -> None:
        self.per_generation = [0.0, 0.0, 0.0]
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.per_generation[info["generation"]] += time.process_time() - self._started
            self.collections += 1


def most_common(title: str, objects: list, top: int) -> None:
    counts = collections.Counter(type(o).__qualname__ for o in objects)
    print(f"{len(objects):,} {title}; most common:")
    for name, count in counts.most_common(top):
        print(f"  {count:>9,} {name}")


async def run(calls: int, args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            api_key="bench-key-0123456789abcdef",
            sip__host="127.0.0.1",
            sip__udp_port=0,
            sip__tcp_port=0,
            sip__tls_port=0,
            http__host="127.0.0.1",
            http__port=0,
            sip__max_calls_per_session=10000,
            media__enabled=False,
            log_level="warning",
            **dict(arg.split("=", 1) for arg in args if "=" in arg),
        )
        service = await start_service(settings)
        tune_garbage_collector()
        try:
            session = service.sessions.create(SessionCreate(mode="ai_agent", source_language="en"))
            ua = service.ua
            sent: list[bytes] = []
            ua.transports.send = lambda data, peer: sent.append(data) or True  # type: ignore[method-assign]
            peer = Peer("udp", ("127.0.0.1", 5061))
            user = f"session_{session.id}".encode()

            def one_call(i: int, request: bytes) -> None:
                sent.clear()
                ua._on_datagram(request, peer)
                ua._drain()
                ok = sent[-1]
                start = ok.index(b";tag=", ok.index(b"\r\nTo:")) + 5
                tag = ok[start : ok.index(b"\r\n", start)].decode()
                for method, cseq, branch in (("ACK", 1, 5), ("BYE", 2, 7)):
                    m = in_dialog(method, i, tag, cseq, f"z9hG4bK-1-{i}-{branch}")
                    ua._on_datagram(m.replace(b"session_sess_1", user), peer)
                    ua._drain()

            invites = [invite(i).replace(b"session_sess_1", user) for i in range(calls)]
            prof = cProfile.Profile() if "--profile" in args else None
            clock = GcClock()
            gc.callbacks.append(clock)
            t0 = time.process_time()
            if prof:
                prof.enable()
            for i in range(calls):
                one_call(i, invites[i])
                if i % BATCH == BATCH - 1:
                    for _ in range(3):
                        await asyncio.sleep(0)
            for _ in range(10):
                await asyncio.sleep(0)
            if prof:
                prof.disable()
            dt = time.process_time() - t0
            gc.callbacks.remove(clock)
            in_gc = sum(clock.per_generation)
            print(
                f"{calls} calls in {dt:.3f} s: {calls / dt:,.0f} calls/s, "
                f"{1e6 * dt / calls:.1f} us per call (whole service, media off); "
                f"{clock.collections} collections took {1e6 * in_gc / calls:.1f} us per call"
            )
            print("per generation (s):", [round(x, 3) for x in clock.per_generation])
            if "--objects" in args:
                gc.collect()
                most_common("tracked objects after the run", gc.get_objects(), 25)
            if "--garbage" in args:
                gc.collect()
                gc.set_debug(gc.DEBUG_SAVEALL)
                for i in range(calls, calls + 200):
                    one_call(i, invite(i).replace(b"session_sess_1", user))
                for _ in range(10):
                    await asyncio.sleep(0)
                gc.collect()
                most_common("objects in cycles from 200 calls", gc.garbage, 40)
                gc.set_debug(0)
                gc.garbage.clear()
            if prof:
                prof.dump_stats(str(Path(tempfile.gettempdir()) / "service_inproc.prof"))
                pstats.Stats(prof).sort_stats("tottime").print_stats(40)
        finally:
            await service.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    argv = sys.argv[1:]
    n = int(argv[0]) if argv and argv[0].isdigit() else 10000
    asyncio.run(run(n, argv))
