"""Media engine load test: N concurrent echo calls over loopback.

The engine runs in a child process (so its CPU time is its own): N MediaStreams
with the echo application. This process is the load generator: for every call
it sends a 20 ms G.711 RTP packet every 20 ms (calls spread over the 20 ms
period, as real calls are), optionally SRTP-protected, and receives the echo.
Each payload carries a packet number, so the echo's arrival gives the round
trip through the engine (RTP in -> RTP out, plus two loopback hops and the
generator's own scheduling, so an upper bound of the engine's added latency).

    python bench/media.py --calls 400 --duration 30 --srtp
    python bench/media.py --calls 100 --duration 20 --decode   # no fast path
    SIPUA_BENCH_APP_RATE=8000 python bench/media.py --calls 300 --decode  # 8 kHz app (Twilio-format bridge)
    SIPUA_BENCH_PROFILE=/tmp/engine.prof python bench/media.py ...  # cProfile of the engine

Prints packet loss, engine CPU (total and per call) and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import multiprocessing as mp
import os
import struct
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipua.media import EchoApp, MediaEngine  # noqa: E402
from sipua.media.rtp import build_rtp, parse_rtp  # noqa: E402
from sipua.media.srtp import SrtpTransform  # noqa: E402
from sipua.sip.rtp_params import Codec, CryptoParams, RtpParameters  # noqa: E402

SUITE = "AES_CM_128_HMAC_SHA1_80"
CODECS = {"pcmu": Codec("PCMU", 0, 8000), "pcma": Codec("PCMA", 8, 8000)}
SLOTS = 10  # the 20 ms period is split into 10 slots of 2 ms
ID = struct.Struct("!Q")


def _use_uvloop(enabled: bool) -> str:
    if enabled:
        try:
            import uvloop

            uvloop.install()
            return "uvloop"
        except ImportError:
            pass
    return "asyncio"


# -- the engine (child process) ---------------------------------------------


def engine_main(
    conn, calls: int, codec_name: str, srtp: bool, decode: bool, uv: bool, udp_mode: str
) -> None:
    _use_uvloop(uv)
    asyncio.run(_engine(conn, calls, codec_name, srtp, decode, udp_mode))


async def _engine(
    conn, calls: int, codec_name: str, srtp: bool, decode: bool, udp_mode: str
) -> None:
    loop = asyncio.get_running_loop()
    engine = MediaEngine(
        "127.0.0.1", 30000, 30000 + 4 * calls + 100, rtp_timeout=0, udp_mode=udp_mode
    )
    rate = int(os.environ.get("SIPUA_BENCH_APP_RATE", "16000"))
    streams = [
        await engine.create_stream(app=EchoApp(fast_path=not decode, sample_rate=rate))
        for _ in range(calls)
    ]
    conn.send([s.local_rtp_port for s in streams])
    peer_ports, rtcp_sink, keys = await loop.run_in_executor(None, conn.recv)
    codec = CODECS[codec_name]
    for stream, port, (ours, theirs) in zip(streams, peer_ports, keys, strict=True):
        stream.start(
            RtpParameters(
                codec=codec,
                codecs=(codec,),
                dtmf=None,
                remote_rtp=("127.0.0.1", port),
                remote_rtcp=("127.0.0.1", rtcp_sink),
                srtp_local=CryptoParams(1, SUITE, ours) if srtp else None,
                srtp_remote=CryptoParams(1, SUITE, theirs) if srtp else None,
            )
        )
    gc_pauses: list[tuple[int, float]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

    conn.send("ready")
    await loop.run_in_executor(None, conn.recv)  # "go"
    engine.clock.max_lateness = 0.0
    engine.clock.late_wakeups = 0
    gc.callbacks.append(on_gc)
    profile_to = os.environ.get("SIPUA_BENCH_PROFILE")  # cProfile the engine into this file
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    gc.callbacks.remove(on_gc)
    totals: dict[str, int] = {}
    for stream in streams:
        for key, value in stream.stats().items():
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and key not in ("ssrc", "remote_ssrc", "local_port", "payload_type")
            ):
                totals[key] = totals.get(key, 0) + value
    gc_report = {
        f"gen{g}": (
            sum(1 for gen, _ in gc_pauses if gen == g),
            round(1000 * max((d for gen, d in gc_pauses if gen == g), default=0.0), 2),
        )
        for g in (0, 1, 2)
    }
    conn.send(
        {
            "cpu": cpu,
            "wall": wall,
            "totals": totals,
            "clock_skipped": engine.clock.ticks_skipped,
            "clock_max_lateness_ms": round(1000 * engine.clock.max_lateness, 2),
            "clock_late_wakeups": engine.clock.late_wakeups,
            "gc": gc_report,
        }
    )
    await engine.close()


# -- the load generator (this process) --------------------------------------


class Call(asyncio.DatagramProtocol):
    def __init__(self, bench: Bench, index: int, srtp: bool) -> None:
        self.bench = bench
        self.index = index
        self.ssrc = 0x10000 + index
        self.seq = index * 7
        self.ts = index * 1000
        self.key_out = os.urandom(30)  # ours: the engine's srtp_remote
        self.key_in = os.urandom(30)  # the engine's: our srtp_remote
        self.srtp = (
            SrtpTransform(CryptoParams(1, SUITE, self.key_out), CryptoParams(1, SUITE, self.key_in))
            if srtp
            else None
        )
        self.transport: asyncio.DatagramTransport | None = None
        self.target: tuple[str, int] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, packet_id: int, pt: int) -> None:
        payload = ID.pack(packet_id) + b"\xff" * 152
        data = build_rtp(pt, 0, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, self.ssrc, payload)
        self.seq += 1
        self.ts += 160
        if self.srtp is not None:
            data = self.srtp.protect_rtp(data)
        self.transport.sendto(data, self.target)

    def datagram_received(self, data: bytes, addr) -> None:
        now = time.perf_counter()
        if self.srtp is not None:
            data = self.srtp.unprotect_rtp(data)
            if data is None:
                self.bench.bad += 1
                return
        try:
            _pt, _m, _seq, _ts, _ssrc, start, end = parse_rtp(data)
        except ValueError:
            self.bench.bad += 1
            return
        if end - start < 8:
            self.bench.bad += 1
            return
        if self.bench.decode:
            # Decoding and re-encoding changes the payload: count, no packet number.
            self.bench.echo_count += self.bench.measuring
            return
        packet_id = ID.unpack_from(data, start)[0]
        self.bench.received(packet_id, now)


class Bench:
    def __init__(self, calls: int, seconds: float, warmup: float, decode: bool) -> None:
        self.calls = calls
        self.decode = decode
        self.echo_count = 0
        self.capacity = int((seconds + warmup + 5) * 50 * calls) + calls
        self.sent_at = array("d", bytes(8 * self.capacity))
        self.measured = bytearray(self.capacity)  # 1: sent inside the measuring window
        self.echoed = bytearray(self.capacity)
        self.latencies = array("d")
        self.next_id = 0
        self.bad = 0
        self.duplicates = 0
        self.measuring = False

    def new_id(self, now: float) -> int:
        packet_id = self.next_id
        self.next_id += 1
        self.sent_at[packet_id] = now
        self.measured[packet_id] = 1 if self.measuring else 0
        return packet_id

    def received(self, packet_id: int, now: float) -> None:
        if packet_id >= self.next_id:
            self.bad += 1
            return
        if self.echoed[packet_id]:
            self.duplicates += 1
            return
        self.echoed[packet_id] = 1
        if self.measured[packet_id]:
            self.latencies.append(now - self.sent_at[packet_id])


async def generate(args) -> dict:
    loop = asyncio.get_running_loop()
    parent, child = mp.Pipe()
    ctx = mp.get_context("spawn")
    engine = ctx.Process(
        target=engine_main,
        args=(child, args.calls, args.codec, args.srtp, args.decode, args.uvloop, args.udp_mode),
        daemon=True,
    )
    engine.start()
    try:
        engine_ports = await loop.run_in_executor(None, parent.recv)
        bench = Bench(args.calls, args.duration, args.warmup, args.decode)
        calls: list[Call] = []
        for index, port in enumerate(engine_ports):
            call = Call(bench, index, args.srtp)
            await loop.create_datagram_endpoint(lambda c=call: c, local_addr=("127.0.0.1", 0))
            call.target = ("127.0.0.1", port)
            calls.append(call)
        rtcp_sink, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        parent.send(
            (
                [c.transport.get_extra_info("sockname")[1] for c in calls],
                rtcp_sink.get_extra_info("sockname")[1],
                [(c.key_in, c.key_out) for c in calls],
            )
        )
        assert await loop.run_in_executor(None, parent.recv) == "ready"

        pt = CODECS[args.codec].payload_type
        groups = [calls[i::SLOTS] for i in range(SLOTS)]
        period = 0.020
        origin = loop.time() + 0.05
        end_warmup = origin + args.warmup
        end = end_warmup + args.duration
        done = loop.create_future()
        cpu0 = 0.0

        def fire(slot_number: int) -> None:
            nonlocal cpu0
            now = loop.time()
            if not bench.measuring and now >= end_warmup:
                bench.measuring = True
                parent.send("go")
                cpu0 = time.process_time()
            if now >= end:
                done.set_result(None)
                return
            stamp = time.perf_counter()
            for call in groups[slot_number % SLOTS]:
                call.send(bench.new_id(stamp), pt)
            slot_number += 1
            loop.call_at(origin + slot_number * period / SLOTS, fire, slot_number)

        loop.call_at(origin, fire, 0)
        await done
        bench.measuring = False
        generator_cpu = time.process_time() - cpu0
        parent.send("stop")
        await asyncio.sleep(0.5)  # let the last echoes arrive
        report = await loop.run_in_executor(None, parent.recv)
        for call in calls:
            call.transport.close()
        rtcp_sink.close()
    finally:
        engine.join(timeout=10)
        if engine.is_alive():
            engine.terminate()

    sent = sum(bench.measured[: bench.next_id])
    if args.decode:
        echoed = bench.echo_count  # echoes received while measuring (the window is shifted)
    else:
        echoed = sum(1 for i in range(bench.next_id) if bench.measured[i] and bench.echoed[i])
    latencies = sorted(bench.latencies)

    def pct(p: float) -> float:
        return (
            1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]
            if latencies
            else float("nan")
        )

    return {
        "load_average_1m_before_after": f"{args.load_before:.2f} / {os.getloadavg()[0]:.2f}",
        "calls": args.calls,
        "duration_s": args.duration,
        "srtp": args.srtp,
        "path": "decode+encode" if args.decode else "relay (fast path)",
        "loop": args.loop_name,
        "udp_mode": args.udp_mode,
        "sent": sent,
        "echoed": echoed,
        "loss_percent": 100.0 * (sent - echoed) / sent if sent else float("nan"),
        "engine_cpu_percent": 100 * report["cpu"] / report["wall"],
        "engine_cpu_per_call_percent": 100 * report["cpu"] / report["wall"] / args.calls,
        "generator_cpu_percent": 100 * generator_cpu / args.duration,
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": pct(1.0),
        "engine_drops": {
            k: report["totals"].get(k, 0)
            for k in (
                "malformed_packets",
                "srtp_auth_failures",
                "srtp_replays",
                "send_errors",
                "unknown_payload_type",
            )
        },
        "engine_clock_ticks_skipped": report["clock_skipped"],
        "engine_loop_lag_max_ms": report["clock_max_lateness_ms"],
        "engine_wakeups_over_20ms_late": report["clock_late_wakeups"],
        "engine_gc_runs_and_max_pause_ms": report["gc"],
        "bad_or_duplicate_echoes": bench.bad + bench.duplicates,
    }


async def micro(args) -> dict:
    """CPU per packet inside the engine, no sockets: receive_rtp -> relay/decode -> "send"."""

    class NullTransport:
        def sendto(self, data, addr):
            pass

        def close(self):
            pass

    results = {}
    for label, decode, srtp in (
        ("relay_plain_us", False, False),
        ("relay_srtp_us", False, True),
        ("decode_encode_srtp_us", True, True),
    ):
        engine = MediaEngine("127.0.0.1", 30000, 30100, rtp_timeout=0)
        rate = int(os.environ.get("SIPUA_BENCH_APP_RATE", "16000"))
        stream = await engine.create_stream(app=EchoApp(fast_path=not decode, sample_rate=rate))
        ours, theirs = os.urandom(30), os.urandom(30)
        codec = CODECS[args.codec]
        stream.start(
            RtpParameters(
                codec=codec,
                codecs=(codec,),
                dtmf=None,
                remote_rtp=("127.0.0.1", 9),
                remote_rtcp=None,
                srtp_local=CryptoParams(1, SUITE, ours) if srtp else None,
                srtp_remote=CryptoParams(1, SUITE, theirs) if srtp else None,
            )
        )
        engine.clock.unsubscribe(stream)  # we run its ticks ourselves
        real, stream._rtp_transport = stream._rtp_transport, NullTransport()
        peer = SrtpTransform(CryptoParams(1, SUITE, theirs) if srtp else None, None)
        count = 2000 if decode else 20000
        packets = [
            peer.protect_rtp(build_rtp(0, 0, i & 0xFFFF, 160 * i, 77, b"\x7f\x10" * 80))
            for i in range(count)
        ]
        address = ("127.0.0.1", 9)
        cpu0 = time.process_time()
        for i, data in enumerate(packets):
            stream.receive_rtp(data, address)
            if decode:
                stream._on_tick(i, 0.0)
        results[label] = 1e6 * (time.process_time() - cpu0) / count
        assert stream._sender.packets >= count - 2
        stream._rtp_transport = real
        await engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--srtp", action="store_true", help=f"SRTP ({SUITE}) both ways")
    parser.add_argument(
        "--decode", action="store_true", help="echo through decode+encode, not the relay"
    )
    parser.add_argument("--codec", choices=sorted(CODECS), default="pcmu")
    parser.add_argument(
        "--no-uvloop", dest="uvloop", action="store_false", help="plain asyncio loops"
    )
    parser.add_argument("--micro", action="store_true", help="engine CPU per packet, no sockets")
    parser.add_argument(
        "--udp-mode",
        choices=("auto", "reader", "transport"),
        default="auto",
        help="engine socket I/O",
    )
    args = parser.parse_args()
    args.loop_name = _use_uvloop(args.uvloop)
    args.load_before = os.getloadavg()[0]  # other processes skew latency and loss, not CPU time
    result = asyncio.run(micro(args) if args.micro else generate(args))
    width = max(map(len, result))
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.3f}"
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
