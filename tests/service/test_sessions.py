from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sipua.media.conference import ConferenceApp
from sipua.media.play import tone_frequencies
from sipua.service.config import Settings, load_settings
from sipua.service.ids import new_session_id
from sipua.service.media_backend import app_for_session
from sipua.service.models import (
    Session,
    SessionCreate,
    SessionMode,
    SessionStatus,
    SipProvider,
)
from sipua.service.sessions import (
    CallInfo,
    PublicEndpoints,
    SessionRequestError,
    SessionService,
)
from sipua.service.store import MemorySessionRepository, SessionRepository, open_repository


class CountingRepo:
    """Wraps a repository and counts reads, to prove lookups are served from memory."""

    def __init__(self, inner: SessionRepository) -> None:
        self.inner = inner
        self.gets = 0

    def create(self, session: Session) -> None:
        self.inner.create(session)

    def get(self, session_id: str) -> Session | None:
        self.gets += 1
        return self.inner.get(session_id)

    def list(
        self, limit: int, after: str | None = None, status: SessionStatus | None = None
    ) -> Sequence[Session]:
        return self.inner.list(limit, after, status)

    def update(self, session: Session) -> None:
        self.inner.update(session)

    def set_status(
        self, session_id: str, status: SessionStatus, ended_at: datetime | None
    ) -> Session | None:
        return self.inner.set_status(session_id, status, ended_at)

    def close(self) -> None:
        self.inner.close()


def echo() -> SessionCreate:
    return SessionCreate(mode=SessionMode.ECHO)


def request(**data: Any) -> SessionCreate:
    return SessionCreate.model_validate(data)


# -- public endpoints -------------------------------------------------------------------------


def test_uris_omit_default_ports(settings: Settings) -> None:
    ep = PublicEndpoints.from_settings(settings)
    sid = "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"
    assert ep.sip_uri(sid) == f"sip:session_{sid}@sip.example.test"
    assert ep.sips_uri(sid) == f"sips:session_{sid}@sip.example.test"
    assert ep.stream_url(sid) == f"ws://sip.example.test:8080/v1/streams/{sid}"


def test_uris_carry_non_default_ports() -> None:
    s = load_settings(public_host="192.0.2.7", sip__udp_port=5070, sip__tls_port=5071)
    ep = PublicEndpoints.from_settings(s, http_port=18080)
    assert ep.sip_uri("sess_X") == "sip:session_sess_X@192.0.2.7:5070"
    assert ep.sips_uri("sess_X") == "sips:session_sess_X@192.0.2.7:5071"
    assert ep.stream_url("sess_X") == "ws://192.0.2.7:18080/v1/streams/sess_X"


def test_bound_ports_replace_configured_ones() -> None:
    s = load_settings(public_host="h.test", sip__udp_port=0, sip__tls_port=0, http__port=0)
    ep = PublicEndpoints.from_settings(s, udp_port=40001, tls_port=40002, http_port=40003)
    assert ep.sip_uri("sess_X").endswith("@h.test:40001")
    assert ep.sips_uri("sess_X") == "sips:session_sess_X@h.test:40002"
    assert ep.stream_url("sess_X").startswith("ws://h.test:40003/")


def test_ipv6_hosts_are_bracketed() -> None:
    ep = PublicEndpoints.from_settings(load_settings(public_host="2001:db8::1"))
    assert ep.sip_uri("sess_X") == "sip:session_sess_X@[2001:db8::1]"
    assert ep.stream_url("sess_X") == "ws://[2001:db8::1]:8080/v1/streams/sess_X"


def test_transport_choices() -> None:
    tcp_only = PublicEndpoints.from_settings(
        load_settings(public_host="h.test", sip__transports=["tcp"], sip__tcp_port=5080)
    )
    assert tcp_only.sip_uri("sess_X") == "sip:session_sess_X@h.test:5080;transport=tcp"
    assert tcp_only.sips_uri("sess_X") is None
    tls_only = PublicEndpoints.from_settings(
        load_settings(public_host="h.test", sip__transports=["tls"])
    )
    assert tls_only.sip_uri("sess_X") == "sip:session_sess_X@h.test;transport=tls"
    assert tls_only.sips_uri("sess_X") == "sips:session_sess_X@h.test"


def test_public_url_gives_wss() -> None:
    s = load_settings(public_host="h.test", http__public_url="https://voice.example.test/api/")
    ep = PublicEndpoints.from_settings(s)
    assert ep.stream_url("sess_X") == "wss://voice.example.test/api/v1/streams/sess_X"


# -- create -----------------------------------------------------------------------------------


def test_create_fills_in_settings_defaults(service: SessionService) -> None:
    session = service.create(request(mode="transcription", provider={"type": "sip"}))
    assert session.id.startswith("sess_")
    assert session.status is SessionStatus.ACTIVE and session.accepting_calls
    assert session.ended_at is None
    assert (datetime.now(UTC) - session.created_at).total_seconds() < 60
    assert isinstance(session.provider, SipProvider)
    assert session.provider.codecs == ["opus", "G722", "PCMU", "PCMA"]
    assert session.provider.srtp is not None and session.provider.srtp.enabled == "optional"
    assert session.media.app == "echo"
    assert len(session.stream_token) >= 22
    assert service.repo.get(session.id) == session  # written through


def test_create_gives_fresh_ids_and_tokens(service: SessionService) -> None:
    a, b = service.create(echo()), service.create(echo())
    assert a.id < b.id
    assert a.stream_token != b.stream_token


def test_media_app_inference(data_dir: Path) -> None:
    s = load_settings(data_dir=data_dir, media__default_app="record")
    service = SessionService(MemorySessionRepository(), s)
    assert service.create(request(mode="ai_agent")).media.app == "record"
    assert service.create(request(mode="echo")).media.app == "echo"
    bridged = service.create(request(mode="ai_agent", media={"bridge_url": "wss://a.test/x"}))
    assert bridged.media.app == "bridge"
    played = service.create(request(mode="ai_agent", media={"play_file": "hello.wav"}))
    assert played.media.app == "play"
    toned = service.create(request(mode="ai_agent", media={"play_tone": "350+440"}))
    assert toned.media.app == "play"
    app = app_for_session(s, toned, "leg_1")
    assert tone_frequencies(app.source) == [350.0, 440.0]
    explicit = service.create(request(mode="echo", media={"app": "record"}))
    assert explicit.media.app == "record"


def test_conference_mode_picks_the_conference_app_bound_to_the_session(data_dir: Path) -> None:
    s = load_settings(data_dir=data_dir, media__default_app="record")
    service = SessionService(MemorySessionRepository(), s)
    room = service.create(request(mode="conference"))
    assert room.media.app == "conference"
    legs = [app_for_session(s, room, leg) for leg in ("leg_1", "leg_2")]
    assert all(isinstance(app, ConferenceApp) for app in legs)
    assert legs[0] is not legs[1]  # one app per participant, one mixer per session
    assert {app.session_id for app in legs} == {room.id}
    # explicit options still win, and the app can be asked for in any mode
    assert service.create(request(mode="conference", media={"app": "echo"})).media.app == "echo"
    played = service.create(request(mode="conference", media={"play_tone": "440"}))
    assert played.media.app == "play"
    agent = service.create(request(mode="ai_agent", media={"app": "conference"}))
    assert agent.media.app == "conference"
    assert isinstance(app_for_session(s, agent, "leg_3"), ConferenceApp)
    assert service.create(request(mode="ai_agent")).media.app == "record"  # unchanged


def test_default_bridge_app_needs_a_url(data_dir: Path) -> None:
    s = load_settings(data_dir=data_dir, media__default_app="bridge")
    service = SessionService(MemorySessionRepository(), s)
    with pytest.raises(SessionRequestError) as info:
        service.create(request(mode="ai_agent"))
    assert info.value.loc == ("body", "media", "bridge_url")
    assert "bridge_url is required" in info.value.msg
    assert info.value.errors()[0]["loc"] == ("body", "media", "bridge_url")


def test_codecs_must_be_enabled_on_the_server(data_dir: Path) -> None:
    s = load_settings(data_dir=data_dir, media__codecs=["PCMU", "PCMA"])
    service = SessionService(MemorySessionRepository(), s)
    with pytest.raises(SessionRequestError) as info:
        service.create(request(mode="echo", provider={"type": "sip", "codecs": ["opus"]}))
    assert info.value.loc == ("body", "provider", "sip", "codecs")
    assert "opus is not enabled" in info.value.msg
    ok = service.create(request(mode="echo", provider={"type": "sip", "codecs": ["PCMA"]}))
    assert isinstance(ok.provider, SipProvider) and ok.provider.codecs == ["PCMA"]


@pytest.mark.parametrize(("server", "session"), [("off", True), ("required", False)])
def test_srtp_policy_conflicts(data_dir: Path, server: str, session: bool) -> None:
    s = load_settings(data_dir=data_dir, media__srtp=server)
    service = SessionService(MemorySessionRepository(), s)
    with pytest.raises(SessionRequestError) as info:
        service.create(request(mode="echo", provider={"type": "sip", "srtp": {"enabled": session}}))
    assert info.value.loc[-2:] == ("srtp", "enabled")


def test_non_sip_provider_is_kept(service: SessionService) -> None:
    session = service.create(request(mode="echo", provider={"type": "telnyx"}))
    assert session.provider is not None and session.provider.type == "telnyx"


# -- lookups ----------------------------------------------------------------------------------


def test_resolve_sip_user_forms(service: SessionService) -> None:
    session = service.create(echo())
    assert service.resolve_sip_user(f"session_{session.id}") == session
    assert service.resolve_sip_user(session.id) == session
    assert service.resolve_sip_user(f"session_{session.id.lower()}") is None
    assert service.resolve_sip_user(session.id.upper().replace("SESS_", "sess_") + "0") is None
    assert service.resolve_sip_user(f"session_{new_session_id()}") is None
    assert service.resolve_sip_user("alice") is None
    assert service.resolve_sip_user("") is None


def test_lookups_of_active_sessions_do_not_touch_the_store(settings: Settings) -> None:
    repo = CountingRepo(MemorySessionRepository())
    service = SessionService(repo, settings)
    session = service.create(echo())
    for _ in range(100):
        assert service.resolve_sip_user(f"session_{session.id}") is session
        assert service.get(session.id) is session
    assert service.resolve_sip_user("not-an-id") is None  # garbage never reaches the store
    assert repo.gets == 0


def test_active_sessions_are_loaded_on_start(data_dir: Path, settings: Settings) -> None:
    first_repo = open_repository(data_dir)
    first = SessionService(first_repo, settings)
    kept = [first.create(echo()) for _ in range(3)]
    first.close()

    repo = CountingRepo(open_repository(data_dir))
    second = SessionService(repo, settings)
    try:
        assert {s.id for s in second.active_sessions} == {s.id for s in kept}
        assert second.resolve_sip_user(kept[1].id) == kept[1]
        assert repo.gets == 0
    finally:
        second.close()


def test_ended_sessions_are_found_and_not_accepting(settings: Settings) -> None:
    inner = MemorySessionRepository()
    writer = SessionService(inner, settings)
    session = writer.create(echo())
    asyncio.run(writer.end(session.id))
    # A fresh service only caches active sessions; an ended one comes from the store once.
    repo = CountingRepo(inner)
    reader = SessionService(repo, settings)
    for _ in range(5):
        found = reader.resolve_sip_user(f"session_{session.id}")
        assert found is not None and not found.accepting_calls
    assert repo.gets == 1


def test_list_pages(service: SessionService) -> None:
    ids = [service.create(echo()).id for _ in range(5)]
    page = service.list(limit=2)
    assert [s.id for s in page.items] == ids[:2] and page.next_after == ids[1]
    page = service.list(limit=2, after=page.next_after)
    assert [s.id for s in page.items] == ids[2:4] and page.next_after == ids[3]
    page = service.list(limit=2, after=page.next_after)
    assert [s.id for s in page.items] == ids[4:] and page.next_after is None
    exact = service.list(limit=5)
    assert len(exact.items) == 5 and exact.next_after is None


# -- end and observers ------------------------------------------------------------------------


async def test_end_is_idempotent_and_notifies_once(service: SessionService) -> None:
    session = service.create(echo())
    seen_sync: list[str] = []
    seen_async: list[str] = []

    async def async_observer(s: Session) -> None:
        await asyncio.sleep(0)
        seen_async.append(s.id)

    service.on_ended.append(lambda s: seen_sync.append(s.id))
    service.on_ended.append(async_observer)

    ended = await service.end(session.id)
    assert ended is not None
    assert ended.status is SessionStatus.ENDED and ended.ended_at is not None
    assert not ended.accepting_calls
    assert seen_sync == [session.id] and seen_async == [session.id]

    again = await service.end(session.id)
    assert again == ended
    assert seen_sync == [session.id] and seen_async == [session.id]
    assert service.get(session.id) == ended
    assert session.id not in {s.id for s in service.active_sessions}
    stored = service.repo.get(session.id)
    assert stored is not None and stored.status is SessionStatus.ENDED


async def test_concurrent_ends_notify_once(service: SessionService) -> None:
    session = service.create(echo())
    calls: list[str] = []
    gate = asyncio.Event()

    async def observer(s: Session) -> None:
        calls.append(s.id)
        await gate.wait()

    service.on_ended.append(observer)
    first = asyncio.create_task(service.end(session.id))
    second = asyncio.create_task(service.end(session.id))
    done_second = await asyncio.wait_for(second, timeout=5)
    assert done_second is not None and done_second.status is SessionStatus.ENDED
    gate.set()
    await asyncio.wait_for(first, timeout=5)
    assert calls == [session.id]


async def test_end_unknown(service: SessionService) -> None:
    assert await service.end(new_session_id()) is None
    assert await service.end("garbage") is None


async def test_failing_observers_do_not_stop_others(
    service: SessionService, caplog: pytest.LogCaptureFixture
) -> None:
    session = service.create(echo())
    seen: list[str] = []

    def broken_sync(s: Session) -> None:
        raise RuntimeError("sync boom")

    async def broken_async(s: Session) -> None:
        raise RuntimeError("async boom")

    service.on_ended.extend([broken_sync, broken_async, lambda s: seen.append(s.id)])
    ended = await service.end(session.id)
    assert ended is not None and ended.status is SessionStatus.ENDED
    assert seen == [session.id]
    assert "sync boom" in caplog.text and "async boom" in caplog.text


async def test_slow_observer_is_cancelled_not_awaited_forever(
    repo: Any, settings: Settings
) -> None:
    service = SessionService(repo, settings, observer_timeout=0.05)
    session = service.create(echo())
    cancelled = asyncio.Event()

    async def stuck(s: Session) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    service.on_ended.append(stuck)
    ended = await asyncio.wait_for(service.end(session.id), timeout=5)
    assert ended is not None and ended.status is SessionStatus.ENDED
    await asyncio.wait_for(cancelled.wait(), timeout=5)


def test_describe(service: SessionService) -> None:
    session = service.create(
        request(mode="bidirectional_translation", source_language="en", target_language="fr")
    )
    view = service.describe(session, calls=2)
    assert view.id == session.id and view.calls == 2
    assert view.sip.uri == f"sip:session_{session.id}@sip.example.test"
    assert view.sip.tls_uri == f"sips:session_{session.id}@sip.example.test"
    assert view.stream.url == f"ws://sip.example.test:8080/v1/streams/{session.id}"
    assert view.stream.token == session.stream_token
    assert (view.source_language, view.target_language) == ("en", "fr")


def test_call_info_protocol_is_structural() -> None:
    class Calls:
        def active_calls(self, session_id: str) -> int:
            return 0

        async def end_calls(self, session_id: str) -> int:
            return 0

    assert isinstance(Calls(), CallInfo)
    assert not isinstance(object(), CallInfo)
