"""Prometheus metrics: the stack's counters read at scrape time, observed events, /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipua.service.api import create_app
from sipua.service.config import Settings, load_settings
from sipua.service.events import SessionEvent, new_event_id
from sipua.service.metrics import Metrics
from sipua.service.sessions import SessionService
from sipua.service.store import open_repository

KEY = "test-api-key-0123456789abcdef"


def fake_ua() -> SimpleNamespace:
    """The attributes of UserAgent the collector reads, with known values."""
    return SimpleNamespace(
        counters={"requests_received": 9, "parse_errors": 2, "dropped_by_gate": 1},
        requests_by_method={"INVITE": 4, "ACK": 3, "BYE": 2},
        responses_sent={100: 4, 180: 4, 200: 6, 486: 1},
        uas=SimpleNamespace(
            counters={
                "calls_answered": 3,
                "calls_connected": 3,
                "calls_failed": 1,
                "calls_ended": 2,
            },
            calls_by_session={"sess_a": {object(), object()}, "sess_b": {object()}},
        ),
        layer=SimpleNamespace(
            counters={"retransmissions_sent": 5, "timeouts": 1},
            server={1: None, 2: None},
            client={3: None},
            tombstones=7,
        ),
        transports=SimpleNamespace(
            counters=lambda: {"udp_datagrams_received": 20, "connections_open": 2}
        ),
    )


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    names: list[str] = []
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.append(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert len(names) == len(set(names)), "a metric family is exposed twice"
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_stack_counters_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    ua = fake_ua()
    metrics.bind(ua=ua, sessions=SimpleNamespace(active_sessions=[1, 2, 3]))
    s = scrape(metrics)
    assert value(s, "sipua_calls_active") == 3
    assert value(s, "sipua_sessions_active") == 3
    assert value(s, "sipua_sip_requests_received_total", method="INVITE") == 4
    assert value(s, "sipua_sip_responses_sent_total", code="200") == 6
    assert value(s, "sipua_sip_responses_sent_total", code="486") == 1
    assert value(s, "sipua_calls_connected_total") == 3
    assert value(s, "sipua_calls_failed_total") == 1
    assert value(s, "sipua_sip_parse_errors_total") == 2
    assert value(s, "sipua_sip_transaction_retransmissions_sent_total") == 5
    assert value(s, "sipua_sip_transactions") == 3
    assert value(s, "sipua_sip_transaction_tombstones") == 7
    assert value(s, "sipua_transport_udp_datagrams_received_total") == 20
    assert value(s, "sipua_transport_connections_open") == 2
    # Nothing is cached: the next scrape sees the counters move.
    ua.requests_by_method["INVITE"] += 10
    ua.responses_sent[503] = 7
    ua.uas.calls_by_session.clear()
    s = scrape(metrics)
    assert value(s, "sipua_sip_requests_received_total", method="INVITE") == 14
    assert value(s, "sipua_sip_responses_sent_total", code="503") == 7
    assert value(s, "sipua_calls_active") == 0


def disconnected(provider: str, quality: dict[str, Any], duration: float = 30.0) -> SessionEvent:
    return SessionEvent(
        new_event_id(),
        "session.provider.disconnected",
        datetime.now(UTC),
        "sess_x",
        {"type": provider, "status": "disconnected"},
        {"participant_id": "p", "reason": "remote-bye", "duration_s": duration, "quality": quality},
    )


def test_quality_of_participants_that_leave() -> None:
    metrics = Metrics()
    good = {
        "packets_received": 1000,
        "packets_sent": 1000,
        "packets_lost": 3,
        "loss_percent": 0.3,
        "jitter_ms": 4.0,
        "rtt_ms": 30.0,
        "mos": 4.4,
    }
    bad = {
        "packets_received": 800,
        "packets_sent": 1000,
        "packets_lost": 200,
        "loss_percent": 20.0,
        "jitter_ms": 80.0,
        "mos": 2.1,
    }
    metrics.observe_event(disconnected("sip", good))
    metrics.observe_event(disconnected("sip", bad, 5.0))
    metrics.observe_event(disconnected("sip", {}))  # signalling only: no quality figures
    metrics.observe_event(disconnected("twilio", {"packets_received": 0, "mos": 1.0}))
    s = scrape(metrics)
    assert value(s, "sipua_events_total", type="session.provider.disconnected") == 4
    assert value(s, "sipua_rtp_packets_received_total", provider="sip") == 1800
    assert value(s, "sipua_rtp_packets_lost_total", provider="sip") == 203
    assert value(s, "sipua_call_mos_count", provider="sip") == 2
    assert value(s, "sipua_call_mos_sum", provider="sip") == pytest.approx(6.5)
    assert value(s, "sipua_call_mos_bucket", provider="sip", le="2.5") == 1
    assert value(s, "sipua_call_mos_bucket", provider="sip", le="4.5") == 2
    assert value(s, "sipua_rtp_jitter_ms_count", provider="sip") == 2
    assert value(s, "sipua_rtp_rtt_ms_count", provider="sip") == 1  # one had no RTCP
    assert value(s, "sipua_call_duration_seconds_count", provider="sip") == 3
    assert ("sipua_call_mos_count", (("provider", "twilio"),)) not in s  # no media: no MOS


def test_stream_connections_and_webhooks() -> None:
    metrics = Metrics()
    metrics.stream_connected("twilio")
    metrics.stream_connected("twilio")
    metrics.stream_connected("browser")
    metrics.stream_disconnected("twilio")
    metrics.webhook_attempt("retry", 500, 0.02)
    metrics.webhook_attempt("delivered", 200, 0.01)
    metrics.webhook_attempt("retry", None, 5.0)
    metrics.webhook_result("delivered")
    metrics.webhook_result("skipped")
    metrics.events_dropped(2)
    metrics.bind(webhooks=SimpleNamespace(queued=7))
    s = scrape(metrics)
    assert value(s, "sipua_stream_connections_total", provider="twilio") == 2
    assert value(s, "sipua_stream_connections_active", provider="twilio") == 1
    assert value(s, "sipua_stream_connections_active", provider="browser") == 1
    assert value(s, "sipua_webhook_attempts_total", outcome="retry", status_class="5xx") == 1
    assert value(s, "sipua_webhook_attempts_total", outcome="retry", status_class="none") == 1
    assert value(s, "sipua_webhook_deliveries_total", status="delivered") == 1
    assert value(s, "sipua_webhook_attempt_seconds_count") == 3
    assert value(s, "sipua_events_dropped_total") == 2
    assert value(s, "sipua_webhook_queue_depth") == 7


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.stream_connected("telnyx")
    assert ("sipua_stream_connections_total", (("provider", "telnyx"),)) not in scrape(b)


# -- the route -------------------------------------------------------------------------------


async def get_metrics(
    settings: Settings,
    data_dir: Path,
    headers: dict[str, str] | None = None,
    metrics: Metrics | None = None,
) -> httpx.Response:
    service = SessionService(open_repository(data_dir), settings)
    try:
        app = create_app(settings, service, api_key=KEY)
        if metrics is not None:
            app.state.metrics = metrics
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            return await c.get("/metrics", headers=headers or {})
    finally:
        service.close()


async def test_metrics_route_is_open_by_default(settings: Settings, data_dir: Path) -> None:
    metrics = Metrics()
    metrics.bind(ua=fake_ua())
    response = await get_metrics(settings, data_dir, metrics=metrics)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'sipua_sip_requests_received_total{method="INVITE"} 4.0' in response.text
    assert (await get_metrics(settings, data_dir)).status_code == 503  # nothing to report


async def test_metrics_token(data_dir: Path) -> None:
    token = "metrics-token-0123456789"
    settings = load_settings(None, data_dir=data_dir, metrics={"token": token})
    metrics = Metrics()
    assert (await get_metrics(settings, data_dir, metrics=metrics)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456"}
    assert (await get_metrics(settings, data_dir, wrong, metrics)).status_code == 401
    api_key = {"Authorization": f"Bearer {KEY}"}  # the API key is not the metrics token
    assert (await get_metrics(settings, data_dir, api_key, metrics)).status_code == 401
    right = {"Authorization": f"Bearer {token}"}
    assert (await get_metrics(settings, data_dir, right, metrics)).status_code == 200


async def test_metrics_can_be_disabled(data_dir: Path) -> None:
    settings = load_settings(None, data_dir=data_dir, metrics={"enabled": False})
    assert (await get_metrics(settings, data_dir, metrics=Metrics())).status_code == 404
