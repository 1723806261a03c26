"""Product events: mapping of the UA's bus events, provider events of every kind, session.ended."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest

from sipua.service.events import (
    EVENT_TYPES,
    EventPublisher,
    SessionEvent,
    new_event_id,
    quality_from_stats,
)
from sipua.ua.events import (
    CallConnected,
    CallConnecting,
    CallDisconnected,
    CallFailed,
    DtmfReceived,
    EventBus,
    TransferAccepted,
    TransferCompleted,
    TransferFailed,
)

SID = "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"
COMMON = {
    "session_id": SID,
    "call_id": "a84b4c76e66710@pbx.test",
    "leg_id": "leg_0123456789abcdef",
    "transport": "udp",
    "remote": "192.0.2.10:5060",
}
STATS = {
    "stream_id": "s1",
    "codec": "PCMU",
    "packets_sent": 1500,
    "packets_received": 1490,
    "packets_expected": 1500,
    "packets_lost": 10,
    "loss_percent": 0.667,
    "jitter_ms": 2.5,
    "rtt_ms": 40.0,
    "r_factor": 90.1,
    "mos": 4.31,
    "srtp": False,
    "remote": {"fraction_lost": 0.0, "packets_lost": 2, "jitter_ms": 1.2},
    "decode_errors": 0,  # not a quality figure: left out
}


@pytest.fixture
def collected() -> list[SessionEvent]:
    return []


@pytest.fixture
def publisher(collected: list[SessionEvent]) -> EventPublisher:
    return EventPublisher([collected.append], ended_grace=0.2)


def shapes(events: list[SessionEvent]) -> list[tuple[str, str | None]]:
    return [(e.type, (e.provider or {}).get("status")) for e in events]


def test_bus_events_map_to_product_events(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    bus = EventBus()
    unsubscribe = publisher.attach(bus)
    bus.publish(CallConnecting(**COMMON))
    bus.publish(CallConnected(**COMMON, codec="PCMU", secure=True))
    bus.publish(DtmfReceived(**COMMON, digit="5", duration_ms=160, source="rfc4733"))
    bus.publish(CallDisconnected(**COMMON, reason="remote-bye", duration=12.3456, stats=STATS))
    assert shapes(collected) == [
        ("session.provider.connecting", "connecting"),
        ("session.provider.connected", "connected"),
        ("session.dtmf", "connected"),
        ("session.provider.disconnected", "disconnected"),
    ]
    for e in collected:
        assert e.session_id == SID
        assert e.id.startswith("evt_")
        assert e.provider is not None
        assert e.provider["type"] == "sip"
        assert e.provider["sip_call_id"] == COMMON["call_id"]  # the SIP Call-ID
        assert e.data["participant_id"] == COMMON["leg_id"]
    connecting, connected, dtmf, gone = (e.to_dict() for e in collected)
    assert connecting["data"] == {
        "participant_id": COMMON["leg_id"],
        "transport": "udp",
        "remote": "192.0.2.10:5060",
    }
    assert connected["data"]["codec"] == "PCMU" and connected["data"]["secure"] is True
    assert dtmf["data"] == {
        "participant_id": COMMON["leg_id"],
        "digit": "5",
        "duration_ms": 160,
        "source": "rfc4733",
    }
    assert gone["data"]["reason"] == "remote-bye"
    assert gone["data"]["duration_s"] == 12.346
    assert gone["data"]["quality"]["mos"] == 4.31
    assert gone["data"]["quality"]["packets_lost"] == 10
    assert gone["data"]["quality"]["remote"] == {
        "fraction_lost": 0.0,
        "packets_lost": 2,
        "jitter_ms": 1.2,
    }
    assert "stats" not in gone["data"] and "decode_errors" not in gone["data"]["quality"]
    # Ids sort in creation order; bodies are JSON of the documented envelope.
    ids = [e.id for e in collected]
    assert ids == sorted(ids) and len(set(ids)) == 4
    envelope = json.loads(collected[0].body())
    assert set(envelope) == {"id", "type", "created_at", "session_id", "provider", "data"}
    assert envelope["created_at"].endswith("Z")
    unsubscribe()
    bus.publish(CallConnecting(**COMMON))
    assert len(collected) == 4


def test_failed_call(publisher: EventPublisher, collected: list[SessionEvent]) -> None:
    publisher.on_call_event(CallConnecting(**COMMON))
    publisher.on_call_event(CallFailed(**COMMON, status=487, reason="cancelled"))
    failed = collected[-1]
    assert failed.type == "session.provider.failed"
    assert failed.data["status_code"] == 487 and failed.data["reason"] == "cancelled"
    assert "quality" not in failed.data


def test_stream_providers_use_the_same_path(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    publisher.publish_provider_event(
        SID, "twilio", {"call_sid": "CA123", "stream_sid": "MZ456"}, "connected", {"codec": "PCMU"}
    )
    publisher.publish_provider_event(SID, "telnyx", {"call_control_id": "v3:abc"}, "connecting")
    publisher.publish_provider_event(SID, "browser", {"connection_id": "ws-1"}, "failed")
    twilio, telnyx, browser = collected
    assert twilio.provider == {
        "type": "twilio",
        "call_sid": "CA123",
        "stream_sid": "MZ456",
        "status": "connected",
    }
    assert twilio.data == {"participant_id": "CA123", "codec": "PCMU"}
    assert telnyx.provider == {
        "type": "telnyx",
        "call_control_id": "v3:abc",
        "status": "connecting",
    }
    assert browser.type == "session.provider.failed"
    assert browser.data["participant_id"] == "ws-1"
    with pytest.raises(ValueError):
        publisher.publish_provider_event(SID, "twilio", {"call_sid": "CA1"}, "ringing")


async def test_session_ended_waits_for_the_last_participant(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    first = {**COMMON, "leg_id": "leg_a", "call_id": "a@test"}
    second = {**COMMON, "leg_id": "leg_b", "call_id": "b@test"}
    publisher.on_call_event(CallConnecting(**first))
    publisher.on_call_event(CallConnected(**first, codec="PCMU"))
    publisher.on_call_event(CallConnecting(**second))
    publisher.on_call_event(CallConnected(**second, codec="G722"))
    publisher.on_call_event(CallDisconnected(**first, reason="remote-bye", duration=3, stats=STATS))
    publisher.publish_provider_event(SID, "twilio", {"call_sid": "CA9"}, "connected")
    ended_at = datetime(2025, 1, 7, 10, 0, 0, tzinfo=UTC)
    publisher.session_ended(SID, ended_at=ended_at)
    assert "session.ended" not in [e.type for e in collected]  # two still connected
    publisher.on_call_event(CallDisconnected(**second, reason="session-ended", duration=4))
    assert "session.ended" not in [e.type for e in collected]
    publisher.publish_provider_event(
        SID, "twilio", {"call_sid": "CA9"}, "disconnected", {"reason": "stream-closed"}
    )
    ended = collected[-1]
    assert ended.type == "session.ended" and ended.provider is None
    assert ended.data["ended_at"] == "2025-01-07T10:00:00.000Z"
    participants = ended.data["participants"]
    assert [p["participant_id"] for p in participants] == ["leg_a", "leg_b", "CA9"]
    assert participants[0]["quality"]["mos"] == 4.31
    assert participants[0]["provider"]["sip_call_id"] == "a@test"
    assert participants[1]["reason"] == "session-ended" and participants[1]["quality"] == {}
    assert participants[2]["provider"]["type"] == "twilio"
    # Once only.
    publisher.session_ended(SID)
    assert [e.type for e in collected].count("session.ended") == 1


async def test_session_ended_at_once_without_participants(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    publisher.session_ended(SID)
    assert [e.type for e in collected] == ["session.ended"]
    assert collected[0].data["participants"] == []


async def test_session_ended_after_the_grace_period(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    publisher.on_call_event(CallConnecting(**COMMON))
    publisher.on_call_event(CallConnected(**COMMON))
    ended = asyncio.Event()
    publisher.listeners.append(lambda e: ended.set() if e.type == "session.ended" else None)
    publisher.session_ended(SID)
    await asyncio.wait_for(ended.wait(), 5)
    (participant,) = collected[-1].data["participants"]
    assert participant["reason"] == "still-connected"
    # The late hang-up is still reported, but session.ended is not repeated.
    publisher.on_call_event(CallDisconnected(**COMMON, reason="local-bye", duration=1))
    assert [e.type for e in collected].count("session.ended") == 1
    assert collected[-1].type == "session.provider.disconnected"


def test_a_broken_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[SessionEvent] = []

    def broken(event: SessionEvent) -> None:
        raise RuntimeError("boom")

    publisher = EventPublisher([broken, seen.append])
    with caplog.at_level(logging.ERROR):
        publisher.on_call_event(CallConnecting(**COMMON))
    assert len(seen) == 1
    assert any(getattr(r, "session_id", None) == SID for r in caplog.records)


def test_call_lines_are_logged_with_call_context(caplog: pytest.LogCaptureFixture) -> None:
    publisher = EventPublisher()
    with caplog.at_level(logging.INFO, logger="sipua.service.events"):
        publisher.on_call_event(CallConnected(**COMMON, codec="PCMU"))
    (record,) = [r for r in caplog.records if r.name == "sipua.service.events"]
    assert record.session_id == SID  # type: ignore[attr-defined]
    assert record.call_id == COMMON["call_id"]  # type: ignore[attr-defined]
    assert record.leg_id == COMMON["leg_id"]  # type: ignore[attr-defined]
    assert record.peer == COMMON["remote"]  # type: ignore[attr-defined]


def test_transfer_events_map_to_session_transfer_events(
    publisher: EventPublisher, collected: list[SessionEvent]
) -> None:
    bus = EventBus()
    publisher.attach(bus)
    target = "sip:agent-7@pbx.test"
    bus.publish(TransferAccepted(**COMMON, target=target))
    bus.publish(
        TransferFailed(
            **COMMON, target=target, status=486, reason="target-failed", detail="Busy Here"
        )
    )
    bus.publish(TransferCompleted(**COMMON, target=target, status=200))
    bus.publish(TransferFailed(**COMMON, target=target, reason="call-ended", detail="bye"))
    assert shapes(collected) == [
        ("session.transfer.accepted", "connected"),
        ("session.transfer.failed", "connected"),
        ("session.transfer.completed", "connected"),
        ("session.transfer.failed", "disconnected"),
    ]
    accepted, failed, completed, ended = (e.to_dict() for e in collected)
    assert accepted["provider"]["sip_call_id"] == COMMON["call_id"]
    assert accepted["data"] == {
        "participant_id": COMMON["leg_id"],
        "target": target,
        "transport": "udp",
        "remote": "192.0.2.10:5060",
    }
    assert {k: failed["data"][k] for k in ("status_code", "reason", "detail")} == {
        "status_code": 486,
        "reason": "target-failed",
        "detail": "Busy Here",
    }
    assert completed["data"]["status_code"] == 200
    assert ended["data"]["status_code"] is None  # no SIP status decided it
    # Not participants of their own: session.ended is not held back by them.
    publisher.session_ended(SID)
    assert collected[-1].type == "session.ended"


def test_quality_from_stats() -> None:
    assert quality_from_stats(None) == {}
    assert quality_from_stats({}) == {}
    flat = quality_from_stats(STATS)
    assert flat["codec"] == "PCMU" and flat["jitter_ms"] == 2.5 and flat["rtt_ms"] == 40.0
    no_rtcp = quality_from_stats({**STATS, "rtt_ms": None, "remote": None})
    assert "rtt_ms" not in no_rtcp and "remote" not in no_rtcp
    worse = {**STATS, "packets_lost": 50, "jitter_ms": 9.0, "mos": 3.1, "loss_percent": 3.3}
    merged = quality_from_stats({"streams": [STATS, worse]})
    assert merged["packets_lost"] == 60 and merged["packets_received"] == 2980
    assert merged["jitter_ms"] == 9.0 and merged["mos"] == 3.1 and merged["loss_percent"] == 3.3
    assert len(merged["streams"]) == 2


def test_event_ids_and_types() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(len(i) == 30 for i in ids)
    assert set(EVENT_TYPES) == {
        "session.provider.connecting",
        "session.provider.connected",
        "session.provider.disconnected",
        "session.provider.failed",
        "session.dtmf",
        "session.transfer.accepted",
        "session.transfer.completed",
        "session.transfer.failed",
        "session.ended",
    }
