"""Per-stream reception statistics (RFC 3550 A.1, A.3, A.8) and a MOS estimate.

The MOS comes from the ITU-T G.107 E-model, reduced to the terms a media
endpoint can measure: ``R = 93.2 - Id - Ie,eff`` (default values for every
other parameter give R0 - Is = 93.2), with

- ``Id = 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3)``: delay impairment for a
  one-way delay ``Ta`` ms (the simplified form of G.107 §3.5 used throughout
  VoIP monitoring, e.g. by Cole & Rosenbluth);
- ``Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)`` (G.107 §3.6), with
  random loss (BurstR = 1);
- ``MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6`` for 0 < R < 100 (G.107 Annex B).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_DROPOUT = 3000  # RFC 3550 A.1
MAX_MISORDER = 100
SEQ_MOD = 1 << 16
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


@dataclass(frozen=True, slots=True)
class Impairment:
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor


# G.113 Appendix I: G.711 Ie = 0, Bpl = 4.3 without PLC and 25.1 with PLC; we and
# nearly every phone conceal losses, so 25.1. G.113 lists no narrowband-scale
# values for G.722 or Opus: on the narrowband scale neither is worse than G.711
# at the bit rates we use (Ie = 0); for loss robustness G.722 gets G.711+PLC's
# Bpl (its PLC, as ours, repeats and fades), and Opus a higher one for its
# built-in PLC and in-band FEC. Those three are estimates, not ITU values.
CODEC_IMPAIRMENT: dict[str, Impairment] = {
    "PCMU": Impairment(ie=0.0, bpl=25.1),
    "PCMA": Impairment(ie=0.0, bpl=25.1),
    "G722": Impairment(ie=0.0, bpl=25.1),
    "OPUS": Impairment(ie=0.0, bpl=30.0),
}
_DEFAULT_IMPAIRMENT = Impairment(ie=0.0, bpl=25.1)


def impairment_of(codec_name: str) -> Impairment:
    return CODEC_IMPAIRMENT.get(codec_name.upper(), _DEFAULT_IMPAIRMENT)


def r_factor(
    impairment: Impairment, loss_percent: float, delay_ms: float, burst_ratio: float = 1.0
) -> float:
    delay_ms = max(0.0, delay_ms)
    idd = 0.024 * delay_ms
    if delay_ms > 177.3:
        idd += 0.11 * (delay_ms - 177.3)
    ppl = max(0.0, min(100.0, loss_percent))
    ie_eff = impairment.ie + (95.0 - impairment.ie) * ppl / (ppl / burst_ratio + impairment.bpl)
    return 93.2 - idd - ie_eff


def mos_from_r(r: float) -> float:
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def estimate_mos(
    codec_name: str, loss_percent: float, rtt_ms: float | None, jitter_buffer_ms: float
) -> tuple[float, float]:
    """``(R, MOS)``; one-way delay is taken as RTT/2 plus the jitter buffer's delay."""
    delay = (rtt_ms or 0.0) / 2 + jitter_buffer_ms
    r = r_factor(impairment_of(codec_name), loss_percent, delay)
    return r, mos_from_r(r)


def ntp_now() -> int:
    """The current wall-clock time as a 64-bit NTP timestamp (RFC 3550 §4)."""
    now = time.time() + NTP_EPOCH_OFFSET
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as LSR and RTT arithmetic use (§6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def clamp_lost(count: int) -> int:
    """Cumulative loss is a signed 24-bit field (RFC 3550 §6.4.1)."""
    return max(-(1 << 23), min((1 << 23) - 1, count))


class ReceiveStatistics:
    """What we know about the source we receive from (one SSRC at a time)."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.reset(None)

    def reset(self, ssrc: int | None) -> None:
        self.ssrc = ssrc
        self.base_seq = 0
        self.max_seq: int | None = None
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1  # RFC 3550 A.1: "so seq == bad_seq is false"
        self.received = 0
        self.octets = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0  # in timestamp units, RFC 3550 A.8
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self.last_fraction_lost = 0  # of the last report interval, 0-255

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update(
        self, seq: int, timestamp: int, arrival: float, octets: int, *, timing: bool = True
    ) -> bool:
        """Account one packet; False if it was set aside as a sequence jump (A.1).

        ``arrival`` is in seconds on any monotonic clock. ``timing`` is False for
        packets whose timestamp does not advance with time (telephone-events):
        they are counted but do not feed the jitter estimate.
        """
        max_seq = self.max_seq
        if max_seq is None:
            self._init_seq(seq)
        else:
            udelta = (seq - max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < max_seq:
                    self.cycles += SEQ_MOD  # wrapped
                self.max_seq = seq
            elif udelta <= SEQ_MOD - MAX_MISORDER:
                # A very large jump: accept it only if the next packet follows it
                # (the source restarted); otherwise treat it as a stray.
                if seq == self.bad_seq:
                    self._init_seq(seq)
                else:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return False
            # else: a duplicate or a reordered packet
        self.received += 1
        self.octets += octets
        if timing:
            self._update_jitter(timestamp, arrival)
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        # RFC 3550 A.8: D(i-1, i) = (Rj - Ri) - (Sj - Si), both in timestamp units.
        if self._last_arrival is not None:
            dts = ((timestamp - self._last_timestamp + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            d = (arrival - self._last_arrival) * self.clock_rate - dts
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last_arrival = arrival
        self._last_timestamp = timestamp

    def restart_timing(self) -> None:
        """The timestamp clock changed (codec switch): start the jitter estimate again."""
        self._last_arrival = None

    @property
    def extended_max(self) -> int:
        return 0 if self.max_seq is None else self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.max_seq is None:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return clamp_lost(self.expected - self.received)

    def fraction_lost(self) -> int:
        """RFC 3550 A.3: loss since the previous call, as a fraction of 256."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        self.last_fraction_lost = fraction
        return fraction

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate

    @property
    def has_timing(self) -> bool:
        """Whether a timed (audio) packet fed the jitter estimate since the last timing restart."""
        return self._last_arrival is not None


class SourceStatistics:
    """Reception statistics of every synchronization source a stream heard (RFC 3550 §6.4.1
    keeps them per SSRC), and the stream's totals across them.

    A peer may change SSRC in a call (SIPp plays its DTMF pcap with an SSRC and sequence of its
    own; a PBX re-anchors media) and even alternate between sources: each source keeps its own
    sequence state, so going back to a source continues its figures instead of restarting them.
    The totals sum the sources; a source's loss counts as zero when duplicates made it negative
    (RFC 3550 A.3 lets the RTCP figure go negative, a call's packet loss cannot).
    """

    MAX_SOURCES = 8  # the oldest source beyond this is retired into the totals

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._sources: dict[int, ReceiveStatistics] = {}
        self._retired_expected = 0
        self._retired_lost = 0
        self._retired_jitter = 0.0
        self.current = ReceiveStatistics(clock_rate)  # before the first packet: all zero

    def select(self, ssrc: int) -> ReceiveStatistics:
        """The statistics of ``ssrc``, now the current source (new ones start empty)."""
        stats = self._sources.pop(ssrc, None)
        if stats is None:
            if len(self._sources) >= self.MAX_SOURCES:
                oldest = self._sources.pop(next(iter(self._sources)))
                self._retired_expected += oldest.expected
                self._retired_lost += max(0, oldest.lost)
                if oldest.has_timing:
                    self._retired_jitter = oldest.jitter_ms
            stats = ReceiveStatistics(self.clock_rate)
            stats.reset(ssrc)
        self._sources[ssrc] = stats  # most recently heard last
        self.current = stats
        return stats

    def set_clock_rate(self, clock_rate: int) -> None:
        """The codec's RTP clock changed: every source's jitter estimate starts again."""
        self.clock_rate = clock_rate
        for stats in (self.current, *self._sources.values()):
            stats.clock_rate = clock_rate
            stats.restart_timing()

    @property
    def expected(self) -> int:
        return self._retired_expected + sum(s.expected for s in self._sources.values())

    @property
    def lost(self) -> int:
        return self._retired_lost + sum(max(0, s.lost) for s in self._sources.values())

    @property
    def jitter_ms(self) -> float:
        """The jitter of the most recently heard source that sent audio (telephone-events and
        silence do not feed it), so a DTMF-only source does not hide the audio's figure."""
        for stats in reversed(self._sources.values()):
            if stats.has_timing or stats.jitter:
                return stats.jitter_ms
        return self._retired_jitter
