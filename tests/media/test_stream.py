"""End-to-end: real MediaStreams on loopback sockets, driven by the shared tick."""

import asyncio
import json

import pytest
from scapy.all import UDP, rdpcap

from sipua.media import EchoApp, MediaEngine
from sipua.media.apps import MediaApp
from sipua.media.events import (
    DtmfReceived,
    MediaTimedOut,
    RemoteAddressLatched,
    StreamStatsUpdated,
)
from sipua.media.rtcp import parse_compound
from sipua.media.rtp import build_rtp, parse_rtp
from sipua.media.srtp import SrtpTransform

from .helpers import (
    DATA,
    G722,
    OPUS,
    PCAPS,
    PCMA,
    PCMU,
    RawPeer,
    ToneProbe,
    crypto,
    dominant_frequency,
    params,
    port_range,
    rms,
    tone,
    until,
)

CODECS = [PCMU, PCMA, G722, OPUS]


@pytest.fixture
async def engine():
    low, high = port_range(400)
    media = MediaEngine("127.0.0.1", low, high)
    yield media
    await media.close()


async def _echo_pair(engine, codec, *, fast_path=True, suite=None, ours_app=None, **opts):
    """Our stream (echo) and a test peer stream (tone probe), started against each other."""
    probe = ToneProbe()
    events: list = []
    ours = await engine.create_stream(
        app=ours_app or EchoApp(fast_path=fast_path), on_event=events.append, **opts
    )
    peer_events: list = []
    peer = await engine.create_stream(app=probe, on_event=peer_events.append, **opts)
    ours_key = crypto(suite) if suite else None
    peer_key = crypto(suite) if suite else None
    ours.start(params(codec, peer.local_rtp_port, local=ours_key, remote=peer_key))
    peer.start(params(codec, ours.local_rtp_port, local=peer_key, remote=ours_key))
    return ours, peer, probe, events, peer_events


async def _returned_tone(engine, probe, seconds=0.6):
    frames = int(seconds * 50)
    start = probe.frames
    await until(engine.clock, lambda: probe.frames >= start + frames + 25)
    return bytes(probe.received[-frames * 640 :])


@pytest.mark.parametrize("fast_path", [True, False], ids=["relay", "decode"])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
async def test_echo_returns_the_tone(engine, codec, fast_path):
    ours, peer, probe, _, _ = await _echo_pair(engine, codec, fast_path=fast_path)
    back = await _returned_tone(engine, probe)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)
    assert rms(back) > 0.1 * 32767 * 0.3
    stats = ours.stats()
    assert stats["codec"] == codec.name
    assert stats["packets_received"] > 40 and stats["packets_sent"] > 40
    if fast_path:
        assert stats["relayed_packets"] == stats["packets_sent"]
    else:
        assert stats["relayed_packets"] == 0
    assert stats["malformed_packets"] == stats["unknown_payload_type"] == 0


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
@pytest.mark.parametrize("fast_path", [True, False], ids=["relay", "decode"])
async def test_echo_over_srtp(engine, suite, fast_path):
    ours, peer, probe, _, _ = await _echo_pair(engine, PCMU, fast_path=fast_path, suite=suite)
    back = await _returned_tone(engine, probe)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)
    for stream in (ours, peer):
        stats = stream.stats()
        assert stats["srtp"] is True
        assert stats["srtp_auth_failures"] == stats["srtp_replays"] == 0
        assert stats["packets_received"] > 40


@pytest.mark.parametrize("udp_mode", ["reader", "transport"])
async def test_echo_with_each_socket_io_mode(engine, udp_mode):
    ours, peer, probe, _, _ = await _echo_pair(
        engine, PCMU, suite="AEAD_AES_128_GCM", udp_mode=udp_mode
    )
    assert ours.udp_mode == udp_mode
    back = await _returned_tone(engine, probe, seconds=0.3)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)


async def test_srtp_auth_failure_is_counted_and_audio_continues(engine):
    ours, peer, probe, _, _ = await _echo_pair(engine, PCMU, suite="AES_CM_128_HMAC_SHA1_80")
    await _returned_tone(engine, probe, seconds=0.2)
    attacker = await RawPeer().open()
    try:
        forged = build_rtp(0, 0, 1, 2, 0x1234, b"\xff" * 160) + bytes(10)
        attacker.send(forged, ours.local_rtp_port)
        # Also a packet protected with a key the stream does not know.
        stranger = SrtpTransform(local=crypto("AES_CM_128_HMAC_SHA1_80"), remote=None)
        attacker.send(stranger.protect_rtp(forged[:-10]), ours.local_rtp_port)
        await until(engine.clock, lambda: ours.stats()["srtp_auth_failures"] >= 2)
    finally:
        attacker.close()
    back = await _returned_tone(engine, probe, seconds=0.3)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)
    assert ours.stats()["remote_address"] == ["127.0.0.1", peer.local_rtp_port]


async def test_dtmf_sent_is_received_as_digits(engine):
    ours, peer, probe, _, peer_events = await _echo_pair(engine, PCMU)
    await _returned_tone(engine, probe, seconds=0.1)
    await asyncio.wait_for(ours.send_dtmf("159#*", duration_ms=80), timeout=5)
    await until(engine.clock, lambda: len(probe.dtmf) >= 5)
    assert "".join(e.digit for e in probe.dtmf) == "159#*"
    assert all(e.duration_ms == 80 and e.source == "rfc4733" for e in probe.dtmf)
    received = [e for e in peer_events if isinstance(e, DtmfReceived)]
    assert [e.digit for e in received] == list("159#*")
    assert all(e.stream_id == peer.stream_id for e in received)
    assert ours.stats()["dtmf_sent"] == 5
    with pytest.raises(ValueError):
        ours.send_dtmf("12z")


async def test_dtmf_on_the_wire(engine):
    """RFC 4733 §2.5.1: one timestamp per event, growing duration, E three times,
    audio paused meanwhile and resuming with a timestamp past the event."""
    ours = await engine.create_stream(app=None)  # sends encoded silence
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        packets = [parse_rtp(await pbx.receive()) for _ in range(2)]
        done = ours.send_dtmf("4", duration_ms=100)
        while True:
            packets.append(parse_rtp(await pbx.receive()))
            if len(packets) > 3 and packets[-1][0] == 0 and any(p[0] == 101 for p in packets):
                break
        await asyncio.wait_for(done, 2)
    finally:
        pbx.close()
    first_event = next(i for i, p in enumerate(packets) if p[0] == 101)
    before, events, after = packets[first_event - 1], packets[first_event:-1], packets[-1]
    assert [p[0] for p in events] == [101] * 7
    assert [p[1] for p in events] == [1, 0, 0, 0, 0, 0, 0]
    assert len({p[3] for p in events}) == 1
    seqs = [p[2] for p in (before, *events, after)]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:], strict=False)] == [1] * 8
    event_ts = events[0][3]
    assert (event_ts - before[3]) & 0xFFFFFFFF == 160
    assert (after[3] - event_ts) & 0xFFFFFFFF >= 800  # past the 100 ms event
    assert after[1] == 1  # audio resumes as a new talkspurt


async def test_dtmf_from_the_sipp_pcaps_reaches_the_app(engine):
    table = json.loads((DATA / "rfc4733-telephone-event-from-sipp-pcaps.json").read_text())
    probe = ToneProbe()
    events: list = []
    ours = await engine.create_stream(app=probe, on_event=events.append)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        for entry in table["files"]:
            for frame in rdpcap(str(PCAPS / "sipp-dtmf" / entry["file"].split("/")[-1])):
                pbx.send(bytes(frame[UDP].payload), ours.local_rtp_port)
        await until(engine.clock, lambda: len(probe.dtmf) >= 12)
    finally:
        pbx.close()
    digits = [e.digit for e in events if isinstance(e, DtmfReceived)]
    assert digits == [
        {"star": "*", "pound": "#"}.get(e["digit"], e["digit"]) for e in table["files"]
    ]
    assert {e.duration_ms for e in probe.dtmf} == {280}


async def test_signalled_dtmf_goes_to_the_app_only(engine):
    probe = ToneProbe()
    events: list = []
    ours = await engine.create_stream(app=probe, on_event=events.append)
    ours.signalled_dtmf("5", 100)  # before start: no application yet to tell
    assert probe.dtmf == []
    ours.start(params(PCMU, 40000))
    ours.signalled_dtmf("9", 160, "sip-info")
    assert [(e.digit, e.duration_ms, e.source) for e in probe.dtmf] == [("9", 160, "sip-info")]
    assert not [e for e in events if isinstance(e, DtmfReceived)]  # call control reports it


async def test_hold_stops_sending_and_keeps_receiving(engine):
    ours, peer, probe, _, _ = await _echo_pair(engine, PCMU, ours_app=ToneProbe(440))
    ours_app = ours.app
    await until(engine.clock, lambda: peer.stats()["packets_received"] > 10)
    # The peer put us on hold: our direction becomes recvonly.
    ours.update(params(PCMU, peer.local_rtp_port, direction="recvonly"))
    assert ours_app.holds == [True]
    sent = ours.stats()["packets_sent"]
    received = ours.stats()["packets_received"]
    await until(engine.clock, lambda: ours.stats()["packets_received"] >= received + 25)
    assert ours.stats()["packets_sent"] == sent
    # Resume.
    ours.update(params(PCMU, peer.local_rtp_port))
    assert ours_app.holds == [True, False]
    await until(engine.clock, lambda: ours.stats()["packets_sent"] >= sent + 10)


async def test_inactive_stops_both_ways_but_rtcp_continues(engine):
    ours = await engine.create_stream(app=ToneProbe(), rtcp_interval=0.1)
    pbx = await RawPeer().open()
    pbx_rtcp = await RawPeer().open(pbx.port + 1) if pbx.port < 65535 else None
    try:
        ours.start(params(PCMU, pbx.port, direction="inactive"))
        assert pbx_rtcp is not None
        report = await pbx_rtcp.receive()
        assert parse_compound(report)  # an RR (we sent nothing)
        assert pbx.queue.empty()
        assert ours.stats()["packets_sent"] == 0
    finally:
        pbx.close()
        if pbx_rtcp:
            pbx_rtcp.close()


async def test_first_packet_and_first_after_silence_carry_the_marker(engine):
    class Talker(MediaApp):
        needs_audio = False

    app = Talker()
    ours = await engine.create_stream(app=app, send_silence=False)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        # 100 ms of audio; the encoder's resampler holds back part of a frame.
        ours.participant.send_audio(tone(440, 0.1, 16000))
        first = [parse_rtp(await pbx.receive()) for _ in range(3)]
        assert [p[1] for p in first] == [1, 0, 0]
        assert [(b[2] - a[2]) & 0xFFFF for a, b in zip(first, first[1:], strict=False)] == [1, 1]
        assert [(b[3] - a[3]) & 0xFFFFFFFF for a, b in zip(first, first[1:], strict=False)] == [
            160,
            160,
        ]
        # A talkspurt later: marker again, timestamp advanced by the silence too.
        await until(engine.clock, lambda: ours.participant.queued_ms == 0)
        first.append(parse_rtp(await pbx.receive()))
        await until(engine.clock, lambda: ours.participant.queued_ms == 0)
        await until(engine.clock, lambda: True)
        ours.participant.send_audio(tone(440, 0.1, 16000))
        later = [parse_rtp(await pbx.receive()) for _ in range(2)]
        assert [p[1] for p in later] == [1, 0]
        assert (later[0][2] - first[-1][2]) & 0xFFFF == 1  # no sequence gap
        assert (later[0][3] - first[-1][3]) & 0xFFFFFFFF > 160  # but a timestamp gap
    finally:
        pbx.close()


async def test_clear_drops_queued_audio_for_barge_in(engine):
    ours = await engine.create_stream(app=None)  # silence when nothing is queued
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        ours.participant.send_audio(tone(1000, 5.0, 16000))
        assert ours.participant.queued_ms == pytest.approx(5000)
        for _ in range(5):
            packet = await pbx.receive()
        assert packet[12:] != b"\xff" * 160  # the tone is playing
        ours.participant.clear()
        assert ours.participant.queued_ms == 0
        # After what the encoder still holds, only silence follows.
        tail = [await pbx.receive() for _ in range(6)]
        assert all(p[12:] == b"\xff" * 160 for p in tail[2:])
    finally:
        pbx.close()


async def test_relay_repacketises_with_our_ssrc_seq_and_timestamps(engine):
    ours = await engine.create_stream(app=EchoApp())
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        for i in range(5):
            pbx.send(
                build_rtp(0, int(i == 0), 1000 + i, 5000 + 160 * i, 0xABCD, bytes([i]) * 160),
                ours.local_rtp_port,
            )
        back = []
        while len(back) < 5:
            packet = parse_rtp(await pbx.receive())
            if packet[0] == 0 and packet[4] != 0xABCD:
                back.append(packet)
        assert {p[4] for p in back} == {ours.stats()["ssrc"]}
        assert [(p[2] - back[0][2]) & 0xFFFF for p in back] == [0, 1, 2, 3, 4]
        assert [(p[3] - back[0][3]) & 0xFFFFFFFF for p in back] == [0, 160, 320, 480, 640]
        assert back[0][1] == 1
    finally:
        pbx.close()


async def test_unknown_payload_types_are_dropped_and_counted(engine):
    probe = ToneProbe()
    ours = await engine.create_stream(app=probe)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        pbx.send(
            build_rtp(18, 0, 1, 160, 7, bytes(20)), ours.local_rtp_port
        )  # G.729, not negotiated
        pbx.send(
            build_rtp(8, 0, 2, 320, 7, bytes(160)), ours.local_rtp_port
        )  # PCMA, not negotiated
        pbx.send(b"\x00" * 40, ours.local_rtp_port)  # not RTP at all
        pbx.send(build_rtp(0, 0, 3, 480, 7, b"\xff" * 160), ours.local_rtp_port)
        await until(engine.clock, lambda: ours.stats()["packets_received"] == 1)
        stats = ours.stats()
        assert stats["unknown_payload_type"] == 2
        assert stats["malformed_packets"] == 1
    finally:
        pbx.close()


async def test_comfort_noise_is_accepted(engine):
    probe = ToneProbe()
    ours = await engine.create_stream(app=probe)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        pbx.send(build_rtp(0, 1, 1, 0, 7, b"\x80" * 160), ours.local_rtp_port)
        pbx.send(build_rtp(13, 0, 2, 160, 7, bytes([40])), ours.local_rtp_port)  # -40 dBov
        await until(engine.clock, lambda: ours.stats()["packets_received"] == 2)
        start = probe.frames
        await until(engine.clock, lambda: probe.frames >= start + 10)
        noise = bytes(probe.received[-5 * 640 :])
        assert 0 < rms(noise) < 32767 * 10 ** (-30 / 20)
        stats = ours.stats()
        assert (
            stats["malformed_packets"] == stats["unknown_payload_type"] == stats["app_errors"] == 0
        )
    finally:
        pbx.close()


async def test_lost_packets_are_concealed_and_counted(engine):
    probe = ToneProbe()
    ours = await engine.create_stream(app=probe)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        encoder_stream = await engine.create_stream(app=None)  # only to borrow an encoder
        await encoder_stream.close()
        from sipua.media.codecs import AudioEncoder

        encoder = AudioEncoder(PCMU, 16000)
        pcm = tone(1000, 1.2, 16000)
        payloads = [p for i in range(60) for p in encoder.encode(pcm[i * 640 : (i + 1) * 640])]
        sent = 0
        for seq, payload in enumerate(payloads):
            if seq % 7 == 3:
                continue  # lost
            pbx.send(build_rtp(0, 0, seq, 160 * seq, 9, payload), ours.local_rtp_port)
            sent += 1
            await until(engine.clock, lambda: True)  # pace at the tick
        await until(engine.clock, lambda: ours.stats()["packets_received"] == sent)
        stats = ours.stats()
        assert stats["packets_lost"] == len(payloads) - sent
        assert stats["concealed_frames"] >= len(payloads) - sent
        assert stats["loss_percent"] > 5 and stats["mos"] < 4.3
        assert dominant_frequency(bytes(probe.received[-20 * 640 :]), 16000) == pytest.approx(
            1000, abs=20
        )
    finally:
        pbx.close()


async def test_symmetric_rtp_answers_where_the_peer_really_is(engine):
    events: list = []
    ours = await engine.create_stream(app=EchoApp(), on_event=events.append)
    pbx = await RawPeer().open()
    decoy = await RawPeer().open()  # what the SDP said; a NAT changed it
    try:
        ours.start(params(PCMU, decoy.port))
        pbx.send(build_rtp(0, 1, 1, 0, 9, b"\xff" * 160), ours.local_rtp_port)
        echoed = parse_rtp(await pbx.receive())
        assert echoed[0] == 0
        assert decoy.queue.empty()
        latched = [e for e in events if isinstance(e, RemoteAddressLatched)]
        assert latched and latched[0].address == ("127.0.0.1", pbx.port)
    finally:
        pbx.close()
        decoy.close()


async def test_without_symmetric_rtp_we_send_where_the_sdp_says(engine):
    ours = await engine.create_stream(app=EchoApp(), symmetric_rtp=False)
    pbx = await RawPeer().open()
    sdp_address = await RawPeer().open()
    try:
        ours.start(params(PCMU, sdp_address.port))
        pbx.send(build_rtp(0, 1, 1, 0, 9, b"\xff" * 160), ours.local_rtp_port)
        assert parse_rtp(await sdp_address.receive())[0] == 0
        assert pbx.queue.empty()
    finally:
        pbx.close()
        sdp_address.close()


async def test_a_stranger_cannot_steal_the_stream_with_one_packet(engine):
    ours = await engine.create_stream(app=EchoApp(), latch_probation=3)
    pbx = await RawPeer().open()
    stranger = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        pbx.send(build_rtp(0, 1, 1, 0, 9, b"\xff" * 160), ours.local_rtp_port)
        await pbx.receive()
        stranger.send(build_rtp(0, 0, 2, 160, 9, b"\xff" * 160), ours.local_rtp_port)
        pbx.send(build_rtp(0, 0, 3, 320, 9, b"\xff" * 160), ours.local_rtp_port)
        await pbx.receive()
        assert ours.stats()["foreign_source_drops"] == 1
        assert stranger.queue.empty()
        # A source that keeps sending (NAT rebinding) is followed.
        for seq in range(4, 8):
            stranger.send(build_rtp(0, 0, seq, 160 * seq, 9, b"\xff" * 160), ours.local_rtp_port)
        await stranger.receive()
    finally:
        pbx.close()
        stranger.close()


async def test_plain_rtp_toward_a_peer_without_crypto(engine):
    class Silent(MediaApp):
        needs_audio = False

    ours = await engine.create_stream(app=Silent())
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))  # no srtp_local: plain RTP
        packet = await pbx.receive()
        pt, marker, seq, ts, ssrc, start, end = parse_rtp(packet)
        assert pt == 0 and packet[start:end] == b"\xff" * 160 and end == len(packet)
    finally:
        pbx.close()


async def test_rtcp_reports_give_rtt_and_stats_events(engine):
    ours, peer, probe, events, _ = await _echo_pair(engine, PCMU, rtcp_interval=0.1)
    await until(
        engine.clock,
        lambda: ours.stats()["rtt_ms"] is not None and peer.stats()["rtt_ms"] is not None,
    )
    stats = ours.stats()
    assert 0 <= stats["rtt_ms"] < 100
    assert stats["remote"] is not None and stats["remote"]["packets_lost"] == 0
    assert stats["rtcp_sent"] >= 1 and stats["rtcp_received"] >= 1
    assert 4.0 < stats["mos"] <= 4.5
    updates = [e for e in events if isinstance(e, StreamStatsUpdated)]
    assert updates and updates[-1].stream_id == ours.stream_id
    json.dumps(updates[-1].stats)  # JSON-friendly


async def test_media_timeout_is_reported_once(engine):
    events: list = []
    ours = await engine.create_stream(app=None, on_event=events.append, rtp_timeout=0.3)
    pbx = await RawPeer().open()
    try:
        ours.start(params(PCMU, pbx.port))
        await until(engine.clock, lambda: any(isinstance(e, MediaTimedOut) for e in events))
        timeouts = [e for e in events if isinstance(e, MediaTimedOut)]
        assert timeouts[0].idle_seconds >= 0.3
        # Not repeated while the silence lasts.
        await until(engine.clock, lambda: True)
        assert len([e for e in events if isinstance(e, MediaTimedOut)]) == 1
    finally:
        pbx.close()


async def test_codec_change_on_reinvite(engine):
    ours, peer, probe, _, _ = await _echo_pair(engine, PCMU, fast_path=False)
    await _returned_tone(engine, probe, seconds=0.2)
    ours.update(params(PCMA, peer.local_rtp_port))
    peer.update(params(PCMA, ours.local_rtp_port))
    received = peer.stats()["packets_received"]
    await until(engine.clock, lambda: peer.stats()["packets_received"] > received + 30)
    back = await _returned_tone(engine, probe, seconds=0.4)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)
    assert ours.stats()["codec"] == "PCMA"


async def test_close_sends_bye_tells_the_app_and_frees_the_ports(engine):
    probe = ToneProbe()
    ours = await engine.create_stream(app=probe)
    pbx = await RawPeer().open()
    rtcp = await RawPeer().open(pbx.port + 1)
    try:
        ours.start(params(PCMU, pbx.port))
        port = ours.local_rtp_port
        await ours.close()
        await ours.close()
        assert probe.hangups == 1
        report = parse_compound(await rtcp.receive())
        assert type(report[-1]).__name__ == "RtcpByePacket"
        assert ours.ports.closed and engine.ports.in_use == 0
        assert ours.stream_id not in engine.streams
        # The port can be bound again.
        again = await RawPeer().open(port)
        again.close()
    finally:
        pbx.close()
        rtcp.close()


async def test_packets_before_start_are_dropped(engine):
    ours = await engine.create_stream(app=EchoApp())
    pbx = await RawPeer().open()
    try:
        pbx.send(build_rtp(0, 0, 1, 0, 9, b"\xff" * 160), ours.local_rtp_port)
        ours_params = params(PCMU, pbx.port)
        await until(engine.clock, lambda: ours.not_started_drops == 1)
        ours.start(ours_params)
        assert ours.stats()["packets_received"] == 0
        with pytest.raises(RuntimeError):
            ours.start(ours_params)
    finally:
        pbx.close()


async def test_rtcp_mux(engine):
    ours = await engine.create_stream(app=EchoApp(), rtcp_interval=0.1)
    pbx = await RawPeer().open()
    try:
        from dataclasses import replace

        ours.start(replace(params(PCMU, pbx.port), rtcp_mux=True))
        while True:
            data = await pbx.receive()
            if data[1] in range(192, 224):
                assert parse_compound(data)
                break
        # RTCP coming in on the RTP port is taken as RTCP, not as a bad RTP packet.
        rr = bytes.fromhex("80c90001") + (0x1234).to_bytes(4, "big")
        pbx.send(rr, ours.local_rtp_port)
        await until(engine.clock, lambda: ours.stats()["rtcp_received"] == 1)
        assert ours.stats()["malformed_packets"] == ours.stats()["unknown_payload_type"] == 0
    finally:
        pbx.close()


async def test_an_app_exception_does_not_break_the_stream(engine):
    class Broken(ToneProbe):
        def on_audio(self, participant, frame):
            super().on_audio(participant, frame)
            raise RuntimeError("app bug")

    ours, peer, probe, _, _ = await _echo_pair(engine, PCMU, fast_path=True)
    broken = Broken()
    other = await engine.create_stream(app=broken)
    other.start(params(PCMU, peer.local_rtp_port))
    await until(engine.clock, lambda: broken.frames > 5)
    assert other.stats()["app_errors"] >= 5
    back = await _returned_tone(engine, probe, seconds=0.2)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=20)


async def test_bad_keys_make_start_fail_without_leaking_a_subscription(engine):
    from sipua.sip.rtp_params import CryptoParams

    ours = await engine.create_stream(app=EchoApp())
    subscribers = len(engine.clock)
    with pytest.raises(ValueError):
        ours.start(params(PCMU, 9, local=CryptoParams(1, "AES_CM_128_HMAC_SHA1_80", b"short")))
    assert len(engine.clock) == subscribers
