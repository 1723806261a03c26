import random

import pytest

from sipua.media.stats import (
    ReceiveStatistics,
    clamp_lost,
    estimate_mos,
    impairment_of,
    mos_from_r,
    ntp_middle,
    ntp_now,
    r_factor,
)


def _feed(stats: ReceiveStatistics, seqs, *, spacing=0.02, jitter=None, rng=None):
    for i, seq in enumerate(seqs):
        arrival = i * spacing + (jitter(rng) if jitter else 0.0)
        stats.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, arrival, 160)


def test_no_loss():
    stats = ReceiveStatistics(8000)
    _feed(stats, range(100))
    assert (stats.expected, stats.received, stats.lost) == (100, 100, 0)
    assert stats.fraction_lost() == 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)


def test_loss_and_fraction_per_interval():
    stats = ReceiveStatistics(8000)
    _feed(stats, [s for s in range(100) if s % 10 != 3])  # 10 % lost
    assert stats.expected == 100 and stats.lost == 10
    assert stats.fraction_lost() == int(10 * 256 / 100)
    _feed(stats, range(100, 200))  # no loss in the next interval
    assert stats.fraction_lost() == 0
    assert stats.lost == 10


def test_duplicates_can_make_interval_loss_negative_but_fraction_stays_zero():
    stats = ReceiveStatistics(8000)
    _feed(stats, [0, 1, 1, 2, 2, 3])
    assert stats.lost == -2
    assert stats.fraction_lost() == 0


def test_sequence_wrap_counts_cycles():
    stats = ReceiveStatistics(8000)
    _feed(stats, range(65500, 65600))
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + (65599 & 0xFFFF)
    assert stats.expected == 100 and stats.lost == 0


def test_a_stray_far_jump_is_ignored_but_a_restart_is_followed():
    stats = ReceiveStatistics(8000)
    _feed(stats, range(10))
    assert not stats.update(30000, 0, 1.0, 160)  # a stray
    assert stats.expected == 10
    assert stats.update(11 - 1 + 1, 160 * 11, 1.0, 160)  # normal flow continues
    assert not stats.update(40000, 0, 1.1, 160)
    assert stats.update(40001, 160, 1.12, 160)  # the jump was real: resync
    assert stats.expected == 1 and stats.received == 1


def test_jitter_follows_rfc3550_a8():
    # Arrival times alternating +-5 ms around the 20 ms grid: |D| = 10 ms = 80
    # timestamp units each step, so J converges to 80.
    stats = ReceiveStatistics(8000)
    for i in range(400):
        stats.update(i, 160 * i, i * 0.02 + (0.005 if i % 2 else -0.005), 160)
    assert stats.jitter == pytest.approx(80, rel=0.01)
    assert stats.jitter_ms == pytest.approx(10, rel=0.01)


def test_random_jitter_is_positive_and_bounded():
    stats = ReceiveStatistics(8000)
    rng = random.Random(1)
    _feed(stats, range(500), jitter=lambda r: r.uniform(0, 0.01), rng=rng)
    assert 0 < stats.jitter_ms < 10


def test_e_model_reference_points():
    g711 = impairment_of("PCMU")
    assert (g711.ie, g711.bpl) == (0.0, 25.1)
    assert r_factor(g711, 0, 0) == pytest.approx(93.2)
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    # Loss: Ie,eff = 95 * 2 / (2 + 25.1) for 2 % random loss.
    assert r_factor(g711, 2.0, 0) == pytest.approx(93.2 - 95 * 2 / 27.1)
    # Delay: beyond 177.3 ms the delay impairment grows faster.
    assert r_factor(g711, 0, 100) == pytest.approx(93.2 - 2.4)
    assert r_factor(g711, 0, 300) == pytest.approx(93.2 - 0.024 * 300 - 0.11 * (300 - 177.3))
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5
    r, mos = estimate_mos("PCMA", 5.0, rtt_ms=100, jitter_buffer_ms=40)
    assert r == pytest.approx(r_factor(g711, 5.0, 90))
    assert 3.0 < mos < 4.2
    assert estimate_mos("opus", 5.0, None, 40)[1] > mos  # more robust to loss


def test_mos_decreases_with_loss_and_delay():
    previous = 5.0
    for loss in (0, 1, 3, 10, 30):
        _, mos = estimate_mos("PCMU", loss, 50, 40)
        assert mos < previous
        previous = mos


def test_ntp_helpers():
    ntp = ntp_now()
    assert ntp >> 32 > 3_900_000_000  # after 2023
    assert ntp_middle(0x0123456789ABCDEF) == 0x456789AB
    assert clamp_lost(1 << 30) == (1 << 23) - 1 and clamp_lost(-(1 << 30)) == -(1 << 23)


def test_source_statistics_keep_figures_per_ssrc_and_never_count_negative_loss():
    from sipua.media.stats import SourceStatistics

    sources = SourceStatistics(8000)
    _feed(sources.select(0x1111), [s for s in range(100) if s != 50])  # audio: 1 lost
    dtmf = sources.select(0x2222)  # SIPp's DTMF pcap: its own SSRC and sequence numbers
    _feed(dtmf, [7000, 7001, 7002, 7002, 7002, 7003])  # end packets repeated: duplicates
    assert dtmf.lost < 0  # the RFC 3550 figure may go negative ...
    assert sources.expected == 100 + 4
    assert sources.lost == 1  # ... a call's loss does not
    _feed(sources.select(0x1111), range(100, 150))  # back to the first source: it continues
    assert sources.expected == 150 + 4 and sources.lost == 1
    assert sources.jitter_ms >= 0


def test_source_statistics_retire_old_sources_into_the_totals():
    from sipua.media.stats import SourceStatistics

    sources = SourceStatistics(8000)
    for n in range(SourceStatistics.MAX_SOURCES + 3):
        _feed(sources.select(1000 + n), [s for s in range(10) if s != 5])
    assert sources.expected == 10 * (SourceStatistics.MAX_SOURCES + 3)
    assert sources.lost == SourceStatistics.MAX_SOURCES + 3
