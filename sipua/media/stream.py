"""One call leg's media: RTP/RTCP (optionally SRTP) between a peer and an application.

Lifecycle, as the call layer drives it::

    pair = allocator.allocate()                 # ports for the SDP answer
    stream = MediaStream(pair, clock=clock, app=app, on_event=forward)
    await stream.open()
    stream.start(params)                        # negotiated RtpParameters
    stream.update(params)                       # re-INVITE: hold/resume, codec, keys
    await stream.close()                        # hang-up

Receive path (``datagram_received``): SRTP unprotect -> RTP header check ->
payload type must be negotiated -> source check (symmetric RTP) ->
statistics -> by payload kind: telephone-event to the DTMF receiver, comfort
noise noted, audio either relayed at once (echo fast path) or put in the
playout buffer. Send path: the shared :class:`~sipua.media.clock.MediaClock`
tick pulls one frame from the playout buffer for the application, then sends
DTMF or one frame of the application's queued audio (or silence), RTCP when due.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

from sipua.sip.rtp_params import Codec, RtpParameters

from . import codecs as codec_registry
from .apps import MediaApp, overrides_on_tick
from .clock import MediaClock
from .codecs import AudioDecoder, AudioEncoder
from .concealment import Concealer
from .dtmf import DtmfReceiver, DtmfSender
from .events import (
    DtmfReceived,
    MediaEvent,
    MediaTimedOut,
    RemoteAddressLatched,
    StreamStatsUpdated,
)
from .frame import SAMPLE_WIDTH, AudioFrame
from .jitter import Playout, PlayoutBuffer
from .participant import StreamParticipant
from .ports import PortPair
from .rtcp import ReceptionReport, RtcpSession, parse_compound
from .rtp import RTCP_PACKET_TYPES, RtpSender, parse_rtp
from .srtp import SrtpTransform
from .stats import SourceStatistics, estimate_mos, ntp_middle, ntp_now
from .udp import ReaderEndpoint, TransportEndpoint, open_endpoint

logger = logging.getLogger(__name__)

AUDIO, DTMF, CN = 0, 1, 2
SENDING_DIRECTIONS = ("sendrecv", "sendonly")
RECEIVING_DIRECTIONS = ("sendrecv", "recvonly")
MAX_QUEUED_SECONDS = 60  # application audio we hold before dropping the oldest
HOUSEKEEPING_TICKS = 10  # DTMF timeouts and media timeout checked every 200 ms
_stream_ids = itertools.count(1)


def _target(address: tuple[str, int] | None, family: socket.AddressFamily) -> Any:
    """A sendto address for our socket's family (IPv4 peers on a dual-stack socket)."""
    if address is None:
        return None
    host, port = address
    ip = ipaddress.ip_address(host)  # ValueError for a host name: the call layer resolves
    if family == socket.AF_INET6 and ip.version == 4:
        return (f"::ffff:{ip}", port)
    if family == socket.AF_INET and ip.version == 6:
        raise ValueError(f"IPv6 peer {host} on an IPv4 media socket")
    return (str(ip), port)


class MediaStream:
    def __init__(
        self,
        ports: PortPair,
        *,
        clock: MediaClock,
        app: MediaApp | None = None,
        on_event: Callable[[MediaEvent], None] | None = None,
        stream_id: str | None = None,
        symmetric_rtp: bool = True,
        latch_probation: int = 5,
        send_silence: bool = True,
        rtp_timeout: float = 30.0,
        rtp_hold_timeout: float = 0.0,
        rtcp_interval: float = 5.0,
        cname: str | None = None,
        on_closed: Callable[[MediaStream], None] | None = None,
        udp_mode: str = "auto",
    ) -> None:
        self.ports = ports
        self.clock = clock
        self.app = app
        self.on_event = on_event
        self.on_closed = on_closed
        self.stream_id = stream_id or f"media-{next(_stream_ids)}"
        self.symmetric_rtp = symmetric_rtp
        self.latch_probation = latch_probation
        self.send_silence = send_silence
        self.rtp_timeout = rtp_timeout
        self.rtp_hold_timeout = rtp_hold_timeout
        self.cname = (cname or self.stream_id).encode()[:255]
        self.sample_rate = app.sample_rate if app is not None else 16000
        self.frame_samples = self.sample_rate // 50
        self.participant = StreamParticipant(self)
        self.params: RtpParameters | None = None
        self.state = "created"  # -> "started" -> "closed"

        self._relay = bool(app is not None and app.relay_rtp)
        self._needs_audio = bool(app is not None and app.needs_audio)
        self._app_ticks = app is not None and overrides_on_tick(app)
        self.udp_mode = udp_mode
        self._rtp_transport: TransportEndpoint | ReaderEndpoint | None = None
        self._rtcp_transport: TransportEndpoint | ReaderEndpoint | None = None

        # negotiated state (see _apply)
        self._accepted: dict[int, int] = {}
        self._codecs: dict[int, Codec] = {}
        self._send_codec: Codec | None = None
        self._send_key: tuple[Any, ...] | None = None
        self._send_pt = 0
        self._dtmf_pt: int | None = None
        self._sending = False
        self._receiving = False
        self._held = False
        self._rtcp_mux = False
        self._srtp = SrtpTransform(None, None)
        self._srtp_in = False
        self._srtp_out = False
        self._remote_rtp: Any = None
        self._remote_rtcp: Any = None

        # symmetric RTP
        self._latched: Any = None
        self._latched_rtcp: Any = None
        self._candidate: Any = None
        self._candidate_count = 0

        # send side
        self._sender = RtpSender(8000)
        self._encoder: AudioEncoder | None = None
        self._pcm_out = bytearray()
        self._partial_waited = False
        self._audio_marker = True  # RFC 3551 §4.1: marker on the first packet of a talkspurt
        self._relay_offset: int | None = None
        self._dtmf_sender = DtmfSender()
        self._dtmf_waiters: list[tuple[int, asyncio.Future[None]]] = []

        # receive side
        self._remote_ssrc: int | None = None
        self._sources = SourceStatistics(8000)
        self._rx = self._sources.current  # the source we hear now (RTCP reports on it)
        self._playout = PlayoutBuffer()
        self._decoders: dict[int, AudioDecoder] = {}
        self._concealer = Concealer(self.frame_samples)
        self._pcm_in = bytearray()
        self._rx_samples = 0
        self._cn_level: int | None = None
        self._dtmf_receiver = DtmfReceiver()
        self._rtcp = RtcpSession(minimum_interval=rtcp_interval)
        self._last_rx = 0.0
        self._timed_out = False

        # counters
        self.packets_received = 0
        self.bytes_received = 0
        self.malformed_packets = 0
        self.unknown_payload_type = 0
        self.foreign_source_drops = 0
        self.not_started_drops = 0
        self.sequence_jumps = 0
        self.ssrc_changes = 0
        self.send_errors = 0
        self.concealed_frames = 0
        self.dtmf_received = 0
        self.relayed_packets = 0
        self.app_errors = 0
        self.queue_overflows = 0

    # -- lifecycle ----------------------------------------------------------

    @property
    def local_host(self) -> str:
        return self.ports.host

    @property
    def local_rtp_port(self) -> int:
        return self.ports.rtp_port

    @property
    def local_rtcp_port(self) -> int:
        return self.ports.rtcp_port

    @property
    def family(self) -> socket.AddressFamily:
        return self.ports.family

    async def open(self) -> None:
        """Start listening on the port pair (before the SDP answer goes out)."""
        self._rtp_transport = await open_endpoint(
            self.ports.rtp_socket, self.receive_rtp, self._count_send_error, mode=self.udp_mode
        )
        self._rtcp_transport = await open_endpoint(
            self.ports.rtcp_socket, self.receive_rtcp, self._count_send_error, mode=self.udp_mode
        )

    def _count_send_error(self) -> None:
        self.send_errors += 1

    def start(self, params: RtpParameters) -> None:
        """Begin media with the outcome of offer/answer."""
        if self.state != "created":
            raise RuntimeError(f"cannot start a {self.state} stream")
        if self._rtp_transport is None:
            raise RuntimeError("open() the stream before start()")
        self.clock.subscribe(self, self._on_tick)
        self._sender = RtpSender(params.codec.clock_rate)
        self._sender.start(self.clock.tick)
        try:
            self._apply(params, first=True)
        except Exception:
            self.clock.unsubscribe(self)
            raise
        self.state = "started"
        now = self.clock.loop.time()
        self._last_rx = now
        self._rtcp.schedule(now, initial=True)
        if self.app is not None:
            self._call_app(self.app.on_start, self.participant)
            if self._held:
                self._call_app(self.app.on_hold, self.participant, True)

    def update(self, params: RtpParameters) -> None:
        """Apply a re-INVITE's outcome: direction (hold/resume), codec, address, keys."""
        if self.state != "started":
            raise RuntimeError(f"cannot update a {self.state} stream")
        was_held = self._held
        self._apply(params, first=False)
        if self.app is not None and was_held != self._held:
            self._call_app(self.app.on_hold, self.participant, self._held)

    async def close(self) -> None:
        """Stop media, send RTCP BYE, tell the application, free the ports."""
        if self.state == "closed":
            return
        started = self.state == "started"
        self.state = "closed"
        self.clock.unsubscribe(self)
        if started:
            self._send_rtcp(self.clock.loop.time(), bye=True)
            if self.app is not None:
                self._call_app(self.app.on_hangup, self.participant)
        self._cancel_dtmf_waiters()
        for endpoint in (self._rtp_transport, self._rtcp_transport):
            if endpoint is not None:
                try:
                    await endpoint.close()
                except (TimeoutError, OSError):
                    logger.warning("media socket of %s did not close cleanly", self.stream_id)
        self.ports.close()
        if self.on_closed is not None:
            self.on_closed(self)

    # -- negotiation --------------------------------------------------------

    def _apply(self, params: RtpParameters, *, first: bool) -> None:
        codec = params.codec
        if not codec_registry.is_supported(codec):
            raise ValueError(f"cannot send {codec.name}/{codec.clock_rate}")
        srtp = self._srtp
        if first or not srtp.same_keys(params.srtp_local, params.srtp_remote):
            srtp = SrtpTransform(params.srtp_local, params.srtp_remote)  # may raise
        remote_rtp = _target(params.remote_rtp, self.family)
        remote_rtcp = _target(params.remote_rtcp, self.family)

        accepted: dict[int, int] = {codec_registry.CN_STATIC_PAYLOAD_TYPE: CN}
        codecs: dict[int, Codec] = {}
        for c in (codec, *params.codecs):
            if codec_registry.is_supported(c):
                accepted[c.payload_type] = AUDIO
                codecs[c.payload_type] = c
            elif codec_registry.is_comfort_noise(c):
                accepted[c.payload_type] = CN
        if params.dtmf is not None:
            accepted[params.dtmf.payload_type] = DTMF

        self.params = params
        self._srtp = srtp
        self._srtp_in = srtp.decrypts
        self._srtp_out = srtp.encrypts
        self._accepted = accepted
        self._codecs = codecs
        self._send_codec = codec
        self._send_pt = codec.payload_type
        self._dtmf_pt = params.dtmf.payload_type if params.dtmf is not None else None
        self._rtcp_mux = params.rtcp_mux
        self._sending = params.direction in SENDING_DIRECTIONS and remote_rtp is not None
        self._receiving = params.direction in RECEIVING_DIRECTIONS
        self._held = params.direction in ("recvonly", "inactive") or remote_rtp is None

        if first or remote_rtp != self._remote_rtp:
            # A new address from signalling: learn the real source again.
            self._latched = self._latched_rtcp = self._candidate = None
        self._remote_rtp = remote_rtp
        self._remote_rtcp = remote_rtcp

        send_key = (codec.name.lower(), codec.clock_rate, codec.channels, codec.fmtp, params.ptime)
        if send_key != self._send_key:
            self._send_key = send_key
            self._encoder = None  # made on first use with the new codec
            self._sender.set_clock_rate(codec.clock_rate, self.clock.current_tick())
            self._sources.set_clock_rate(codec.clock_rate)
            self._relay_offset = None
        self._decoders = {pt: d for pt, d in self._decoders.items() if codecs.get(pt) == d.codec}
        if self._playout.payload_type not in codecs:
            self._playout.reset()
        dtmf_rate = params.dtmf.clock_rate if params.dtmf is not None else codec.clock_rate
        self._dtmf_receiver.clock_rate = dtmf_rate
        self._dtmf_sender.clock_rate = dtmf_rate
        if not self._sending:
            self._audio_marker = True
        if self._dtmf_pt is None and self._dtmf_sender.busy:
            self._dtmf_sender.clear()
            self._cancel_dtmf_waiters()

    # -- receive ------------------------------------------------------------

    def receive_rtp(self, data: bytes, addr: Any) -> None:
        """One datagram from the RTP socket (the datagram protocol calls this)."""
        if self.state != "started":
            self.not_started_drops += 1
            return
        if self._rtcp_mux and len(data) > 1 and data[1] in RTCP_PACKET_TYPES:
            self._on_rtcp(data, addr, muxed=True)
            return
        if self._srtp_in:
            data = self._srtp.unprotect_rtp(data)  # type: ignore[assignment]
            if data is None:
                return
        try:
            pt, marker, seq, timestamp, ssrc, start, end = parse_rtp(data)
        except ValueError:
            self.malformed_packets += 1
            return
        kind = self._accepted.get(pt)
        if kind is None:
            self.unknown_payload_type += 1
            return
        if addr != self._latched and not self._check_source(addr):
            return
        now = self.clock.loop.time()
        self._last_rx = now
        if ssrc != self._remote_ssrc:
            self._new_source(ssrc)
        if not self._rx.update(seq, timestamp, now, end - start, timing=kind != DTMF):
            self.sequence_jumps += 1
            return
        self.packets_received += 1  # across SSRC changes, unlike the RFC 3550 figures
        self.bytes_received += end - start
        if kind == AUDIO:
            if not self._receiving:
                return
            self._cn_level = None
            if self._relay:
                self._relay_packet(pt, marker, timestamp, data[start:end])
            elif self._needs_audio:
                self._playout.put(pt, seq, timestamp, data[start:end])
        elif kind == DTMF:
            self._on_dtmf_packet(timestamp, data[start:end], now)
        else:  # RFC 3389 comfort noise: first octet is the level in -dBov
            self._cn_level = data[start] & 0x7F if end > start else 127

    def _check_source(self, addr: Any) -> bool:
        """Symmetric RTP: latch on the first source; follow a new one only if it persists."""
        if not self.symmetric_rtp:
            return True
        if self._latched is None:
            self._latch(addr)
            return True
        if addr == self._candidate:
            self._candidate_count += 1
        else:
            self._candidate = addr
            self._candidate_count = 1
        if self._candidate_count >= self.latch_probation:
            self._latch(addr)
            return True
        self.foreign_source_drops += 1
        return False

    def _latch(self, addr: Any) -> None:
        self._latched = addr
        self._candidate = None
        self._candidate_count = 0
        if self._remote_rtp is None or tuple(addr[:2]) != tuple(self._remote_rtp[:2]):
            self._emit(RemoteAddressLatched(address=(addr[0], addr[1]), stream_id=self.stream_id))

    def _new_source(self, ssrc: int) -> None:
        if self._remote_ssrc is not None:
            self.ssrc_changes += 1
        self._remote_ssrc = ssrc
        self._rx = self._sources.select(ssrc)
        self._playout.reset()
        self._relay_offset = None
        self._rtcp.forget_sender()

    def _relay_packet(self, pt: int, marker: int, timestamp: int, payload: bytes) -> None:
        if not self._sending or self._dtmf_sender.busy:
            return
        offset = self._relay_offset
        if offset is None:
            ours = self._sender.timestamp_at(self.clock.current_tick())
            offset = self._relay_offset = (ours - timestamp) & 0xFFFFFFFF
            marker = 1
        packet = self._sender.packet(pt, marker, (timestamp + offset) & 0xFFFFFFFF, payload)
        self.relayed_packets += 1
        self._send_rtp(packet)

    def _on_dtmf_packet(self, timestamp: int, payload: bytes, now: float) -> None:
        try:
            presses = self._dtmf_receiver.feed(timestamp, payload, now)
        except ValueError:
            self.malformed_packets += 1
            return
        for press in presses:
            self._report_dtmf(press.digit, press.duration_ms)

    def signalled_dtmf(self, digit: str, duration_ms: int, source: str = "sip-info") -> None:
        """A key press that came in signalling (SIP INFO), for the application.

        Call control reports it on the event bus itself, so it is not emitted again here."""
        self.dtmf_received += 1
        if self.app is not None and self.state == "started":
            event = DtmfReceived(
                digit=digit, duration_ms=duration_ms, source=source, stream_id=self.stream_id
            )
            self._call_app(self.app.on_dtmf, self.participant, event)

    def _report_dtmf(self, digit: str, duration_ms: int) -> None:
        self.dtmf_received += 1
        event = DtmfReceived(digit=digit, duration_ms=duration_ms, stream_id=self.stream_id)
        if self.app is not None:
            self._call_app(self.app.on_dtmf, self.participant, event)
        self._emit(event)

    def receive_rtcp(self, data: bytes, addr: Any) -> None:
        """One datagram from the RTCP socket."""
        if self.state != "started":
            self.not_started_drops += 1
            return
        self._on_rtcp(data, addr, muxed=False)

    def _on_rtcp(self, data: bytes, addr: Any, *, muxed: bool) -> None:
        if self._srtp_in:
            data = self._srtp.unprotect_rtcp(data)  # type: ignore[assignment]
            if data is None:
                return
        try:
            packets = parse_compound(data)
        except ValueError:
            self.malformed_packets += 1
            return
        now = self.clock.loop.time()
        self._last_rx = now
        if not muxed and self.symmetric_rtp and self._latched_rtcp is None:
            self._latched_rtcp = addr
        self._rtcp.received(
            packets,
            now=now,
            arrival_ntp_middle=ntp_middle(ntp_now()),
            our_ssrc=self._sender.ssrc,
            remote_ssrc=self._remote_ssrc,
        )

    # -- the tick -----------------------------------------------------------

    def _on_tick(self, tick: int, now: float) -> None:
        if self.state != "started":
            return
        if self._needs_audio and self._receiving:
            self._play_out()
        if self._app_ticks:
            self._call_app(self.app.on_tick, self.participant)  # type: ignore[union-attr]
        if self._sending:
            self._send_tick(tick)
        if now >= self._rtcp.next_report:
            self._send_rtcp(now)
            self._rtcp.schedule(now)
            if self.on_event is not None:
                self._emit(StreamStatsUpdated(stats=self.stats(), stream_id=self.stream_id))
        if tick % HOUSEKEEPING_TICKS == 0:
            self._housekeeping(now)

    def _play_out(self) -> None:
        need = self.frame_samples * SAMPLE_WIDTH
        pcm_in = self._pcm_in
        status = Playout.EMPTY
        for _ in range(4):  # peers sending 10 ms packets need two per tick
            if len(pcm_in) >= need:
                break
            status, frame = self._playout.pop()
            if status is not Playout.FRAME or frame is None:
                break
            decoder = self._decoder_for(self._playout.payload_type)
            if decoder is not None:
                pcm_in += decoder.decode(frame.data, frame.timestamp)
        if pcm_in:
            if len(pcm_in) < need:
                pcm_in += bytes(need - len(pcm_in))  # decoder start-up delay
            pcm = bytes(pcm_in[:need])
            del pcm_in[:need]
            self._concealer.good(pcm)
        elif self._cn_level is not None:
            pcm = self._concealer.comfort_noise(self._cn_level)
        else:
            if status in (Playout.LOST, Playout.WAIT):
                self.concealed_frames += 1
            pcm = self._concealer.conceal()
        frame_out = AudioFrame(pcm, self.sample_rate, self._rx_samples)
        self._rx_samples += self.frame_samples
        self._call_app(self.app.on_audio, self.participant, frame_out)  # type: ignore[union-attr]

    def _decoder_for(self, pt: int | None) -> AudioDecoder | None:
        if pt is None:
            return None
        decoder = self._decoders.get(pt)
        if decoder is None:
            codec = self._codecs.get(pt)
            if codec is None:
                return None
            decoder = self._decoders[pt] = AudioDecoder(codec, self.sample_rate)
        return decoder

    def _send_tick(self, tick: int) -> None:
        sender = self._sender
        if self._dtmf_sender.busy and self._dtmf_pt is not None:
            packet = self._dtmf_sender.next_packet(sender.timestamp_at(tick))
            if packet is not None:
                if packet.marker and self._encoder is not None:
                    self._encoder.reset_packet()
                self._send_rtp(
                    sender.packet(self._dtmf_pt, packet.marker, packet.timestamp, packet.payload)
                )
                self._audio_marker = True
                self._relay_offset = None
                if packet.last_of_event:
                    self._wake_dtmf_waiters()
                return
        pcm = self._take_audio()
        if pcm is None and (self._relay or not self.send_silence):
            self._audio_marker = True  # a gap: the next packet starts a talkspurt
            return
        encoder = self._encoder
        if encoder is None:
            assert self.params is not None and self._send_codec is not None
            encoder = self._encoder = AudioEncoder(
                self._send_codec, self.sample_rate, self.params.ptime
            )
        payloads = encoder.encode_silence() if pcm is None else encoder.encode(pcm)
        if not payloads:
            return
        # The packet's audio began frames_per_packet - 1 ticks ago.
        timestamp = sender.timestamp_at(tick - encoder.frames_per_packet + 1)
        for payload in payloads:
            marker = 1 if self._audio_marker else 0
            self._audio_marker = False
            self._send_rtp(sender.packet(self._send_pt, marker, timestamp, payload))
            timestamp = (timestamp + encoder.timestamp_increment) & 0xFFFFFFFF
        self._relay_offset = None

    def _take_audio(self) -> bytes | None:
        """One 20 ms frame of queued application audio, or None."""
        need = self.frame_samples * SAMPLE_WIDTH
        queue = self._pcm_out
        if not queue:
            return None
        if len(queue) < need:
            # A partial frame: give the application one tick to complete it.
            if not self._partial_waited:
                self._partial_waited = True
                return None
            queue += bytes(need - len(queue))
        self._partial_waited = False
        pcm = bytes(queue[:need])
        del queue[:need]
        return pcm

    def _queue_audio(self, pcm: bytes) -> None:
        if self.state == "closed":
            return
        if len(pcm) % SAMPLE_WIDTH:
            pcm = pcm[: len(pcm) - 1]
        self._pcm_out += pcm
        limit = MAX_QUEUED_SECONDS * self.sample_rate * SAMPLE_WIDTH
        if len(self._pcm_out) > limit:
            self.queue_overflows += 1
            del self._pcm_out[: len(self._pcm_out) - limit]

    def _send_rtp(self, packet: bytes) -> None:
        if self._srtp_out:
            packet = self._srtp.protect_rtp(packet)  # type: ignore[assignment]
            if packet is None:
                return
        target = self._latched if self._latched is not None else self._remote_rtp
        if target is None or self._rtp_transport is None:
            return
        try:
            self._rtp_transport.sendto(packet, target)
        except (OSError, ValueError, TypeError):
            self.send_errors += 1

    def _send_rtcp(self, now: float, *, bye: bool = False) -> None:
        if self._rtcp_mux:
            transport = self._rtp_transport
            target = self._latched if self._latched is not None else self._remote_rtp
        else:
            transport = self._rtcp_transport
            target = self._latched_rtcp or self._remote_rtcp
            if target is None:
                rtp = self._latched if self._latched is not None else self._remote_rtp
                if rtp is not None:
                    target = (rtp[0], rtp[1] + 1)  # RFC 3550 §11: the next port up
        if target is None or transport is None:
            return
        receiver = None
        if self._remote_ssrc is not None and self._rx.max_seq is not None:
            receiver = ReceptionReport(
                ssrc=self._remote_ssrc,
                fraction_lost=self._rx.fraction_lost(),
                packets_lost=self._rx.lost,
                highest_sequence=self._rx.extended_max,
                jitter=self._rx.jitter,
            )
        sender = self._sender
        data = self._rtcp.report(
            now,
            ssrc=sender.ssrc,
            cname=self.cname,
            packets_sent=sender.packets,
            octets_sent=sender.octets,
            rtp_timestamp=sender.timestamp_at(self.clock.current_tick(now)),
            ntp_timestamp=ntp_now(),
            receiver=receiver,
            bye=bye,
        )
        if self._srtp_out:
            data = self._srtp.protect_rtcp(data)  # type: ignore[assignment]
            if data is None:
                return
        try:
            transport.sendto(data, target)
        except (OSError, ValueError, TypeError):
            self.send_errors += 1

    def _housekeeping(self, now: float) -> None:
        for press in self._dtmf_receiver.poll(now):
            self._report_dtmf(press.digit, press.duration_ms)
        # A peer holding us (we are recvonly) may legitimately send nothing.
        timeout = self.rtp_hold_timeout if self._held else self.rtp_timeout
        expecting = self._receiving and not self._rtcp.bye_received and timeout > 0
        idle = now - self._last_rx
        if expecting and idle >= timeout:
            if not self._timed_out:
                self._timed_out = True
                self._emit(MediaTimedOut(idle_seconds=round(idle, 3), stream_id=self.stream_id))
        else:
            self._timed_out = False

    # -- DTMF ---------------------------------------------------------------

    def send_dtmf(
        self, digits: str, duration_ms: int = 100, gap_ms: int = 60
    ) -> asyncio.Future[None]:
        """Queue RFC 4733 events; the future completes when the last end packet is out."""
        if self._dtmf_pt is None:
            raise RuntimeError("telephone-event was not negotiated")
        if self.state != "started":
            raise RuntimeError(f"cannot send DTMF on a {self.state} stream")
        self._dtmf_sender.queue(digits, duration_ms, gap_ms)
        future: asyncio.Future[None] = self.clock.loop.create_future()
        target = self._dtmf_sender.events_sent + self._queued_events()
        self._dtmf_waiters.append((target, future))
        return future

    def _queued_events(self) -> int:
        return self._dtmf_sender.pending

    def _cancel_dtmf_waiters(self) -> None:
        for _, waiter in self._dtmf_waiters:
            if not waiter.done():
                waiter.cancel()
        self._dtmf_waiters.clear()

    def _wake_dtmf_waiters(self) -> None:
        sent = self._dtmf_sender.events_sent
        still = []
        for target, waiter in self._dtmf_waiters:
            if sent >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self._dtmf_waiters = still

    # -- reporting ----------------------------------------------------------

    def _call_app(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self.app_errors += 1
            logger.exception("media app %s failed in %s", type(self.app).__name__, hook.__name__)

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("media event handler failed for %r", event)

    def stats(self) -> dict[str, Any]:
        """JSON-friendly statistics of this stream."""
        sources = self._sources  # every SSRC heard, not only the current one
        codec = self._send_codec
        rtt = self._rtcp.rtt
        expected = sources.expected
        lost = sources.lost
        loss = 100.0 * lost / expected if expected else 0.0
        jitter_ms = sources.jitter_ms
        jitter_buffer_ms = 20.0 + 2 * jitter_ms
        r, mos = estimate_mos(
            codec.name if codec else "", loss, None if rtt is None else 1000 * rtt, jitter_buffer_ms
        )
        remote = self._rtcp.remote_report
        clock_rate = codec.clock_rate if codec else 8000
        out: dict[str, Any] = {
            "stream_id": self.stream_id,
            "state": self.state,
            "local_port": self.local_rtp_port,
            "remote_address": _address(
                self._latched if self._latched is not None else self._remote_rtp
            ),
            "direction": self.params.direction if self.params else None,
            "codec": codec.name if codec else None,
            "payload_type": self._send_pt if codec else None,
            "srtp": self._srtp_out,
            "ssrc": self._sender.ssrc,
            "remote_ssrc": self._remote_ssrc,
            "packets_sent": self._sender.packets,
            "bytes_sent": self._sender.octets,
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "packets_expected": expected,
            "packets_lost": lost,
            "loss_percent": round(loss, 3),
            "fraction_lost": round(self._rx.last_fraction_lost / 256, 4),
            "jitter_ms": round(jitter_ms, 3),
            "rtt_ms": None if rtt is None else round(1000 * rtt, 3),
            "r_factor": round(r, 2),
            "mos": round(mos, 3),
            "remote": None
            if remote is None
            else {
                "fraction_lost": round(remote.fraction_lost / 256, 4),
                "packets_lost": remote.packets_lost,
                "jitter_ms": round(1000 * remote.jitter / clock_rate, 3),
            },
            "rtcp_sent": self._rtcp.reports_sent,
            "rtcp_received": self._rtcp.packets_received,
            "malformed_packets": self.malformed_packets + self._srtp.malformed,
            "unknown_payload_type": self.unknown_payload_type,
            "srtp_auth_failures": self._srtp.auth_failures,
            "srtp_replays": self._srtp.replays,
            "foreign_source_drops": self.foreign_source_drops,
            "sequence_jumps": self.sequence_jumps,
            "ssrc_changes": self.ssrc_changes,
            "send_errors": self.send_errors,
            "concealed_frames": self.concealed_frames,
            "jitter_buffer_discards": self._playout.discarded,
            "decode_errors": sum(d.errors for d in self._decoders.values()),
            "relayed_packets": self.relayed_packets,
            "dtmf_received": self.dtmf_received,
            "dtmf_sent": self._dtmf_sender.events_sent,
            "app_errors": self.app_errors,
        }
        return out


def _address(addr: Any) -> list[Any] | None:
    return None if addr is None else [addr[0], addr[1]]
