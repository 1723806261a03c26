"""Prometheus metrics for ``GET /metrics``.

Two kinds of figures:

- **Read at scrape time** from the counters the SIP stack keeps anyway (``ua.counters``,
  ``ua.requests_by_method``, ``ua.responses_sent``, ``ua.uas.counters``, ``ua.layer.counters``,
  ``ua.transports.counters()``) by a custom collector, so the SIP hot path pays nothing for them.
- **Observed** as things happen, off the hot path: product events (media quality of each
  participant that leaves, from ``session.provider.disconnected``), webhook attempts and results,
  and stream connections, which the WebSocket stream endpoints report through
  :meth:`Metrics.stream_connected` / :meth:`Metrics.stream_disconnected`.

Each :class:`Metrics` has its own registry (no process-global state), so several services or
tests can live in one process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from sipua.service.events import SessionEvent

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The *_created timestamp series double every counter's output and nobody graphs them.
disable_created_metrics()
_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")

MOS_BUCKETS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 4.5, 5.0)
JITTER_MS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 100, 200, 500)
LOSS_PERCENT_BUCKETS = (0.0, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100)
RTT_MS_BUCKETS = (5, 10, 20, 50, 100, 150, 200, 300, 500, 1000, 2000)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WEBHOOK_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _name(text: str) -> str:
    return _NAME_RE.sub("_", text)


def _status_class(status: int | None) -> str:
    return "none" if status is None else f"{status // 100}xx"


class _StackCollector:
    """Reads the SIP stack's counters when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        ua = m.ua
        if m.sessions is not None:
            try:
                active = len(m.sessions.active_sessions)
            except Exception:  # noqa: BLE001 - a scrape must not fail on one figure
                active = 0
            yield GaugeMetricFamily("sipua_sessions_active", "Sessions not ended.", value=active)
        if m.webhooks is not None:
            yield GaugeMetricFamily(
                "sipua_webhook_queue_depth",
                "Events accepted and not yet delivered or given up on.",
                value=m.webhooks.queued,
            )
        if ua is None:
            return
        uas = ua.uas
        yield GaugeMetricFamily(
            "sipua_calls_active",
            "SIP calls (participants) from INVITE to hang-up.",
            value=sum(len(calls) for calls in list(uas.calls_by_session.values())),
        )
        by_method = CounterMetricFamily(
            "sipua_sip_requests_received", "SIP requests received, by method.", labels=["method"]
        )
        for method, count in sorted(dict(ua.requests_by_method).items()):
            by_method.add_metric([method], count)
        yield by_method
        by_code = CounterMetricFamily(
            "sipua_sip_responses_sent", "SIP responses sent, by status code.", labels=["code"]
        )
        for code, count in sorted(dict(ua.responses_sent).items()):
            by_code.add_metric([str(code)], count)
        yield by_code
        # requests_received is the sum of the by-method family above (same name): left out.
        ua_counters = {k: v for k, v in dict(ua.counters).items() if k != "requests_received"}
        yield from _counter_dict("sipua_sip_", ua_counters, "SIP user agent counter")
        yield from _counter_dict("sipua_", uas.counters, "Call control counter")
        layer = ua.layer
        yield from _counter_dict("sipua_sip_transaction_", layer.counters, "Transaction layer")
        transactions = sum(len(getattr(layer, name, ())) for name in ("server", "client"))
        yield GaugeMetricFamily(
            "sipua_sip_transactions", "SIP transactions in memory.", value=transactions
        )
        yield GaugeMetricFamily(
            "sipua_sip_transaction_tombstones",
            "Settled server transactions kept as tombstones until their timer ends them.",
            value=getattr(layer, "tombstones", 0),
        )
        try:
            transport = dict(ua.transports.counters())
        except Exception:  # noqa: BLE001
            transport = {}
        open_connections = transport.pop("connections_open", None)
        if open_connections is not None:
            yield GaugeMetricFamily(
                "sipua_transport_connections_open",
                "TCP/TLS connections open.",
                value=open_connections,
            )
        yield from _counter_dict("sipua_transport_", transport, "Transport counter")


def _counter_dict(prefix: str, counters: Mapping[str, int], doc: str) -> Iterator[Metric]:
    for key, value in sorted(dict(counters).items()):
        yield CounterMetricFamily(f"{prefix}{_name(key)}", f"{doc}: {key}.", value=value)


class Metrics:
    """The service's metrics; see the module docstring. Bind the live objects with :meth:`bind`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.ua: Any = None
        self.sessions: Any = None
        self.webhooks: Any = None
        r = self.registry
        self.events = Counter(
            "sipua_events", "Session events published, by type.", ["type"], registry=r
        )
        self.events_dropped_total = Counter(
            "sipua_events_dropped", "Events dropped because the intake was full.", registry=r
        )
        self.events_unlogged_total = Counter(
            "sipua_events_unlogged",
            "Events the event log could not record (their webhooks still go out).",
            registry=r,
        )
        self.stream_connections = Counter(
            "sipua_stream_connections",
            "Media stream WebSocket connections accepted, by provider.",
            ["provider"],
            registry=r,
        )
        self.stream_connections_active = Gauge(
            "sipua_stream_connections_active",
            "Media stream WebSocket connections open, by provider.",
            ["provider"],
            registry=r,
        )
        self.rtp_packets_received = Counter(
            "sipua_rtp_packets_received",
            "RTP packets received by participants that left.",
            ["provider"],
            registry=r,
        )
        self.rtp_packets_sent = Counter(
            "sipua_rtp_packets_sent",
            "RTP packets sent to participants that left.",
            ["provider"],
            registry=r,
        )
        self.rtp_packets_lost = Counter(
            "sipua_rtp_packets_lost",
            "RTP packets lost toward us (RFC 3550 cumulative loss) of participants that left.",
            ["provider"],
            registry=r,
        )
        self.rtp_loss_percent = Histogram(
            "sipua_rtp_loss_percent",
            "Receive loss of each participant over its call, percent.",
            ["provider"],
            buckets=LOSS_PERCENT_BUCKETS,
            registry=r,
        )
        self.rtp_jitter_ms = Histogram(
            "sipua_rtp_jitter_ms",
            "Interarrival jitter (RFC 3550 A.8) of each participant at hang-up, ms.",
            ["provider"],
            buckets=JITTER_MS_BUCKETS,
            registry=r,
        )
        self.rtp_rtt_ms = Histogram(
            "sipua_rtp_rtt_ms",
            "Round-trip time from RTCP of each participant at hang-up, ms.",
            ["provider"],
            buckets=RTT_MS_BUCKETS,
            registry=r,
        )
        self.call_mos = Histogram(
            "sipua_call_mos",
            "Estimated MOS (E-model, ITU-T G.107) of each participant's call.",
            ["provider"],
            buckets=MOS_BUCKETS,
            registry=r,
        )
        self.call_duration = Histogram(
            "sipua_call_duration_seconds",
            "Connected time of each participant.",
            ["provider"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.webhook_attempts = Counter(
            "sipua_webhook_attempts",
            "Webhook POSTs, by outcome (delivered, retry, failed) and HTTP status class.",
            ["outcome", "status_class"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "sipua_webhook_deliveries",
            "Events by final delivery status (delivered, failed, skipped: no webhook URL).",
            ["status"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "sipua_webhook_attempt_seconds",
            "Duration of webhook POSTs.",
            buckets=WEBHOOK_SECONDS_BUCKETS,
            registry=r,
        )
        self.registry.register(_StackCollector(self))

    def bind(self, *, ua: Any = None, sessions: Any = None, webhooks: Any = None) -> None:
        """Give the collector the live objects it reads at scrape time."""
        if ua is not None:
            self.ua = ua
        if sessions is not None:
            self.sessions = sessions
        if webhooks is not None:
            self.webhooks = webhooks

    # -- for the stream endpoints --------------------------------------------------------------

    def stream_connected(self, provider: str) -> None:
        """A media stream WebSocket (twilio, telnyx, browser) was accepted."""
        self.stream_connections.labels(provider).inc()
        self.stream_connections_active.labels(provider).inc()

    def stream_disconnected(self, provider: str) -> None:
        """A media stream WebSocket closed (call once per :meth:`stream_connected`)."""
        self.stream_connections_active.labels(provider).dec()

    # -- event listener ------------------------------------------------------------------------

    def _labelled(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus_client's lookup takes a lock."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_event(self, event: SessionEvent) -> None:
        """An :class:`~sipua.service.events.EventPublisher` listener."""
        self._labelled(self.events, event.type).inc()
        if event.type != "session.provider.disconnected":
            return
        provider = str((event.provider or {}).get("type", "unknown"))
        data = event.data
        duration = data.get("duration_s")
        if isinstance(duration, int | float):
            self.call_duration.labels(provider).observe(duration)
        quality = data.get("quality") or {}
        for key, counter in (
            ("packets_received", self.rtp_packets_received),
            ("packets_sent", self.rtp_packets_sent),
            ("packets_lost", self.rtp_packets_lost),
        ):
            value = quality.get(key)
            if isinstance(value, int | float) and value > 0:
                counter.labels(provider).inc(value)
        if not quality.get("packets_received"):
            return  # no media came in: loss, jitter and MOS would be made up
        for key, histogram in (
            ("loss_percent", self.rtp_loss_percent),
            ("jitter_ms", self.rtp_jitter_ms),
            ("rtt_ms", self.rtp_rtt_ms),
            ("mos", self.call_mos),
        ):
            value = quality.get(key)
            if isinstance(value, int | float):
                histogram.labels(provider).observe(value)

    # -- webhook dispatcher hooks ----------------------------------------------------------------

    def webhook_attempt(self, outcome: str, status_code: int | None, seconds: float) -> None:
        self.webhook_attempts.labels(outcome, _status_class(status_code)).inc()
        self.webhook_seconds.observe(seconds)

    def webhook_result(self, status: str) -> None:
        self._labelled(self.webhook_deliveries, status).inc()

    def events_dropped(self, count: int) -> None:
        self.events_dropped_total.inc(count)

    def events_unlogged(self, count: int) -> None:
        self.events_unlogged_total.inc(count)

    # -- exposition ------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
