import pytest

from sipua.media import EchoApp, MediaEngine, PortsExhausted

from .helpers import PCMU, RawPeer, params, port_range


async def test_streams_share_one_clock_and_are_forgotten_when_closed():
    low, high = port_range(10)
    engine = MediaEngine("127.0.0.1", low, high, rtp_timeout=0)
    try:
        streams = [await engine.create_stream(app=EchoApp()) for _ in range(3)]
        assert {s.stream_id for s in streams} == set(engine.streams)
        assert all(s.clock is engine.clock for s in streams)
        assert all(s.rtp_timeout == 0 for s in streams)  # engine-wide defaults
        peers = [await RawPeer().open() for _ in streams]
        for stream, peer in zip(streams, peers, strict=True):
            stream.start(params(PCMU, peer.port))
        assert len(engine.clock) == 3  # one subscription each, one timer in all
        await streams[1].close()
        assert streams[1].stream_id not in engine.streams
        assert len(engine.clock) == 2
        with pytest.raises(PortsExhausted):
            for _ in range(10):
                await engine.create_stream()
        for peer in peers:
            peer.close()
    finally:
        await engine.close()
    assert engine.streams == {}
    assert engine.ports.in_use == 0
    assert not engine.clock.running
