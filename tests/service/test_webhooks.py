"""Webhook delivery: signatures (with the documented recipe), retries, order, bounds, restarts.

Every test runs a real HTTP endpoint on 127.0.0.1 (tests/service/webhook_receiver.py) and the
dispatcher in the test's event loop with short backoffs; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sipua.service.events import SessionEvent, new_event_id
from sipua.service.events_store import SqliteEventStore
from sipua.service.ids import new_session_id
from sipua.service.store import StoreError
from sipua.service.webhooks import (
    SIGNATURE_HEADER,
    DeliveryTarget,
    RetryPolicy,
    WebhookDispatcher,
    signature_header,
    verify_signature,
)

from .webhook_receiver import HANG, WebhookReceiver, receiving

DOCS = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"
FAST = RetryPolicy(max_attempts=5, initial_backoff=0.02, max_backoff=0.1)
WAIT = 10.0


def load_recipe() -> Callable[..., bool]:
    """The verification snippet from docs/WEBHOOKS.md, exactly as a customer would paste it."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    recipe = next(b for b in blocks if "def verify_sipua_signature" in b)
    namespace: dict[str, Any] = {}
    exec(compile(recipe, str(DOCS), "exec"), namespace)
    return namespace["verify_sipua_signature"]


def event(session_id: str, n: int = 0, type_: str = "session.provider.connected") -> SessionEvent:
    return SessionEvent(
        id=new_event_id(),
        type=type_,
        created_at=datetime.now(UTC),
        session_id=session_id,
        provider={"type": "sip", "sip_call_id": f"call-{n}@test", "status": "connected"},
        data={"participant_id": f"leg_{n}", "n": n, "text": "ünïcode & <xml>"},
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    s = SqliteEventStore(tmp_path / "sipua.db")
    yield s
    s.close()


class Targets(dict[str, DeliveryTarget]):
    def __call__(self, session_id: str) -> DeliveryTarget | None:
        return self.get(session_id)


@pytest.fixture
def targets() -> Targets:
    return Targets()


@pytest.fixture
async def dispatcher(store: SqliteEventStore, targets: Targets) -> AsyncIterator[WebhookDispatcher]:
    d = WebhookDispatcher(
        store, targets, policy=FAST, timeout=1.0, rng=random.Random(7), max_concurrency=8
    )
    await d.start()
    yield d
    await d.stop(timeout=0.5)


def body_of(received: Any) -> dict[str, Any]:
    return json.loads(received.body)


# -- signatures ------------------------------------------------------------------------------


async def test_documented_recipe_verifies_real_deliveries(
    receiver: WebhookReceiver, dispatcher: WebhookDispatcher, targets: Targets
) -> None:
    verify = load_recipe()
    sid = new_session_id()
    secret = "whsec_test-secret-0123456789"
    targets[sid] = DeliveryTarget(receiver.url(), secret)
    sent = [event(sid, n) for n in range(3)]
    for e in sent:
        dispatcher.submit(e)
    assert await receiver.until(lambda rs: len(rs) >= 3, WAIT)
    for got, e in zip(receiver.delivered(), sent, strict=True):
        header = got.headers[SIGNATURE_HEADER.lower()]
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
        assert verify(secret, header, got.body)
        assert verify_signature(secret, header, got.body)
        # The body is the event, byte for byte what was signed.
        assert got.body == e.body()
        assert got.headers["content-type"] == "application/json"
        assert got.headers["sipua-event-id"] == e.id
        assert got.headers["sipua-event-type"] == e.type
        # Tampering, another secret, or a replay outside the window fail.
        assert not verify(secret, header, got.body + b" ")
        assert not verify(secret, header, got.body.replace(b'"n":', b'"m":'))
        assert not verify("whsec_another-secret-0123456", header, got.body)
        t = int(header.split(",")[0][2:])
        old = signature_header(secret, t - 3600, got.body)
        assert not verify(secret, old, got.body)
        assert not verify(secret, "v1=" + header.split("v1=")[1], got.body)  # no timestamp


def test_signature_scheme_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"evt_x"}'
    header = signature_header("k" * 20, 1700000000, body)
    expected = hmac.new(b"k" * 20, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("k" * 20, header, body, now=1700000100)
    assert not verify_signature("k" * 20, header, body, now=1700000000 + 301)
    # Rotation: any of several v1 entries may match.
    assert verify_signature("k" * 20, f"t=1700000000,v1={'0' * 64},v1={expected}", body, now=1.7e9)


# -- retries -----------------------------------------------------------------------------------


async def test_retries_after_500s_then_delivers(
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    targets: Targets,
    store: SqliteEventStore,
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/flaky"), "whsec_secret-for-retries-000")
    receiver.script("/flaky", 500, 503)
    e = event(sid)
    dispatcher.submit(e)
    assert await dispatcher.wait_idle(WAIT)
    assert [r.answered for r in receiver.requests] == [500, 503, 200]
    assert [r.headers["sipua-delivery-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert {r.body for r in receiver.requests} == {e.body()}
    # Each attempt is signed afresh and verifies.
    for r in receiver.requests:
        assert verify_signature(
            "whsec_secret-for-retries-000", r.headers["sipua-signature"], r.body
        )
    record = store.get(e.id)
    assert record is not None
    assert record.delivery_status == "delivered" and record.attempts == 3
    assert record.delivered_at is not None
    assert [(a.attempt, a.status_code, a.outcome) for a in record.attempt_log] == [
        (1, 500, "retry"),
        (2, 503, "retry"),
        (3, 200, "delivered"),
    ]
    # Backoff: the retries did not come back to back.
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(g >= FAST.initial_backoff / 2 * 0.9 for g in gaps)


async def test_gives_up_after_max_attempts(
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    targets: Targets,
    store: SqliteEventStore,
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/down"), "whsec_x-0123456789abcdef")
    receiver.script("/down", *([502] * 10))
    e = event(sid)
    dispatcher.submit(e)
    assert await dispatcher.wait_idle(WAIT)
    assert len(receiver.requests) == FAST.max_attempts
    record = store.get(e.id)
    assert record is not None and record.delivery_status == "failed"
    assert record.last_error == "HTTP 502"
    assert [a.outcome for a in record.attempt_log] == ["retry"] * (FAST.max_attempts - 1) + [
        "failed"
    ]


async def test_client_errors_are_not_retried(
    receiver: WebhookReceiver,
    dispatcher: WebhookDispatcher,
    targets: Targets,
    store: SqliteEventStore,
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/gone"), "whsec_x-0123456789abcdef")
    receiver.script("/gone", 410)
    e = event(sid)
    dispatcher.submit(e)
    assert await dispatcher.wait_idle(WAIT)
    assert len(receiver.requests) == 1
    record = store.get(e.id)
    assert record is not None and record.delivery_status == "failed"
    assert record.attempt_log[0].status_code == 410


async def test_429_and_timeouts_are_retried(
    receiver: WebhookReceiver,
    store: SqliteEventStore,
    targets: Targets,
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/slow"), "whsec_x-0123456789abcdef")
    receiver.script("/slow", HANG, 429)
    d = WebhookDispatcher(store, targets, policy=FAST, timeout=0.3, rng=random.Random(1))
    await d.start()
    try:
        e = event(sid)
        d.submit(e)
        assert await d.wait_idle(WAIT)
    finally:
        await d.stop(timeout=0.1)
    record = store.get(e.id)
    assert record is not None and record.delivery_status == "delivered"
    first, second, third = record.attempt_log
    assert first.status_code is None and first.error is not None and "timeout" in first.error
    assert first.duration_ms < 1000  # the attempt's deadline held
    assert second.status_code == 429 and second.outcome == "retry"
    assert third.outcome == "delivered"


async def test_connection_refused_is_retried_and_recorded(
    store: SqliteEventStore, targets: Targets
) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sid = new_session_id()
    targets[sid] = DeliveryTarget(f"http://127.0.0.1:{port}/x", "whsec_x-0123456789abcdef")
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
    d = WebhookDispatcher(store, targets, policy=policy, timeout=1.0)
    await d.start()
    try:
        e = event(sid)
        d.submit(e)
        assert await d.wait_idle(WAIT)
    finally:
        await d.stop()
    record = store.get(e.id)
    assert record is not None and record.delivery_status == "failed"
    assert [a.outcome for a in record.attempt_log] == ["retry", "failed"]
    assert all(a.status_code is None and a.error for a in record.attempt_log)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=8.0)
    rng = random.Random(3)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        delays = {policy.delay(attempt, rng) for _ in range(50)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered


# -- order and parallelism -------------------------------------------------------------------


async def test_order_is_kept_per_session_under_retries(
    receiver: WebhookReceiver, dispatcher: WebhookDispatcher, targets: Targets
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/ordered"), "whsec_x-0123456789abcdef")
    # The first event fails twice, the third once: nothing may overtake them.
    receiver.script("/ordered", 500, 500, 200, 200, 500)
    sent = [event(sid, n) for n in range(6)]
    for e in sent:
        dispatcher.submit(e)
    assert await dispatcher.wait_idle(WAIT)
    seen = [body_of(r)["data"]["n"] for r in receiver.requests]
    assert seen == [0, 0, 0, 1, 2, 2, 3, 4, 5]
    assert [body_of(r)["id"] for r in receiver.delivered()] == [e.id for e in sent]


async def test_sessions_are_delivered_in_parallel(
    receiver: WebhookReceiver, dispatcher: WebhookDispatcher, targets: Targets
) -> None:
    stuck, free = new_session_id(), new_session_id()
    targets[stuck] = DeliveryTarget(receiver.url("/stuck"), "whsec_x-0123456789abcdef")
    targets[free] = DeliveryTarget(receiver.url("/free"), "whsec_x-0123456789abcdef")
    receiver.script("/stuck", HANG)
    dispatcher.submit(event(stuck, 0))
    dispatcher.submit(event(stuck, 1))
    assert await receiver.until(lambda rs: any(r.path == "/stuck" for r in rs), WAIT)
    started = time.monotonic()
    dispatcher.submit(event(free, 0))
    assert await receiver.until(lambda rs: any(r.path == "/free" for r in rs), WAIT)
    # The free session did not wait for the stuck one's timeout (1 s).
    assert time.monotonic() - started < 0.8
    # The stuck session's second event waited for its first.
    assert [body_of(r)["data"]["n"] for r in receiver.requests if r.path == "/stuck"] == [0]
    assert await dispatcher.wait_idle(WAIT)
    stuck_seen = [body_of(r)["data"]["n"] for r in receiver.requests if r.path == "/stuck"]
    assert stuck_seen == [0, 0, 1]  # timed out, retried, then the next one


# -- bounds, logging without a webhook, restarts -------------------------------------------------


async def test_events_without_a_webhook_are_logged_as_skipped(
    receiver: WebhookReceiver, dispatcher: WebhookDispatcher, store: SqliteEventStore
) -> None:
    sid = new_session_id()
    e = event(sid)
    dispatcher.submit(e)
    assert await dispatcher.wait_idle(WAIT)
    record = store.get(e.id)
    assert record is not None
    assert record.delivery_status == "skipped" and record.attempts == 0
    assert record.event.body() == e.body() and record.body == e.body()
    assert receiver.requests == []


async def test_a_full_session_queue_marks_events_failed_without_blocking(
    receiver: WebhookReceiver, store: SqliteEventStore, targets: Targets
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/hang"), "whsec_x-0123456789abcdef")
    receiver.default = HANG
    d = WebhookDispatcher(store, targets, policy=FAST, timeout=5.0, max_queue_per_session=2)
    await d.start()
    try:
        sent = [event(sid, n) for n in range(5)]
        started = time.monotonic()
        for e in sent:
            d.submit(e)
        assert time.monotonic() - started < 0.05  # submit never waits on the endpoint
        assert await receiver.until(lambda rs: len(rs) >= 1, WAIT)
        statuses = [store.get(e.id).delivery_status for e in sent]  # type: ignore[union-attr]
        assert statuses == ["pending", "pending", "failed", "failed", "failed"]
        assert store.get(sent[4].id).last_error == "queue full"  # type: ignore[union-attr]
    finally:
        await d.stop(timeout=0.1)


async def test_pending_events_are_delivered_after_a_restart(
    receiver: WebhookReceiver, store: SqliteEventStore, targets: Targets, tmp_path: Path
) -> None:
    sid = new_session_id()
    targets[sid] = DeliveryTarget(receiver.url("/later"), "whsec_x-0123456789abcdef")
    receiver.script("/later", 503)  # the first attempt fails, then the service stops
    slow = RetryPolicy(max_attempts=5, initial_backoff=30.0, max_backoff=30.0)
    first = WebhookDispatcher(store, targets, policy=slow, timeout=1.0)
    await first.start()
    sent = [event(sid, n) for n in range(3)]
    for e in sent:
        first.submit(e)
    assert await receiver.until(lambda rs: len(rs) == 1, WAIT)
    await first.stop(timeout=0.1)
    assert [store.get(e.id).delivery_status for e in sent] == ["pending"] * 3  # type: ignore[union-attr]

    reopened = SqliteEventStore(tmp_path / "sipua.db")
    second = WebhookDispatcher(reopened, targets, policy=FAST, timeout=1.0)
    await second.start()
    try:
        assert await second.wait_idle(WAIT)
    finally:
        await second.stop()
        reopened.close()
    assert [body_of(r)["id"] for r in receiver.delivered()] == [e.id for e in sent]
    record = store.get(sent[0].id)
    assert record is not None and record.delivery_status == "delivered"
    assert [a.attempt for a in record.attempt_log] == [1, 2]  # numbering carried on


class StoreWrapper:
    """The SQLite store, with the methods a test overrides; the rest passes through."""

    def __init__(self, store: SqliteEventStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class GatedStore(StoreWrapper):
    """The SQLite store, with append() recording its thread and waiting for a gate to open."""

    def __init__(self, store: SqliteEventStore) -> None:
        super().__init__(store)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[threading.Thread] = []

    def append(self, records: Any) -> None:
        self.threads.append(threading.current_thread())
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        self.store.append(records)


async def test_the_event_log_is_written_off_the_event_loop_and_stop_loses_nothing(
    store: SqliteEventStore, targets: Targets
) -> None:
    """A slow log write does not hold up the loop; stop() waits for the batch it was writing."""
    gated = GatedStore(store)
    d = WebhookDispatcher(gated, targets, policy=FAST, timeout=1.0)  # type: ignore[arg-type]
    await d.start()
    sid = new_session_id()
    first = [event(sid, n) for n in range(3)]
    for e in first:
        d.submit(e)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, gated.entered.wait, WAIT)  # the batch is being written
    assert gated.threads[0] is not threading.main_thread()
    assert d.queued == 3  # in flight, still counted
    later = [event(sid, n) for n in range(3, 5)]  # submitted while the write is blocked
    for e in later:
        d.submit(e)
    stopping = loop.create_task(d.stop(timeout=0.1))
    await asyncio.sleep(0)  # stop() is waiting on the blocked write
    assert not stopping.done()
    gated.gate.set()
    await asyncio.wait_for(stopping, WAIT)
    for e in first + later:
        record = store.get(e.id)
        assert record is not None and record.delivery_status == "skipped", e.id


async def test_a_batch_of_events_is_logged_in_one_statement(store: SqliteEventStore) -> None:
    """Bodies are stored byte for byte, whatever they hold, and a duplicate id fails the batch."""
    sid = new_session_id()
    sent = [event(sid, n) for n in range(300)]
    store.append([(e, "skipped", "no webhook URL") for e in sent])
    for e in (sent[0], sent[-1]):
        record = store.get(e.id)
        assert record is not None and record.body == e.body()
        assert record.last_error == "no webhook URL"
    page = store.list(sid, limit=500)
    assert [r.event.id for r in page.items] == [e.id for e in sent]
    with pytest.raises(StoreError):
        store.append([(event(sid, 900), "pending", None), (sent[5], "pending", None)])
    assert len(store.list(sid, limit=500).items) == 300  # all or nothing


async def test_events_are_delivered_in_order_when_a_flush_meets_a_batch_in_flight(
    receiver: WebhookReceiver, store: SqliteEventStore, targets: Targets
) -> None:
    """wait_idle() (as stop()) accepts what is left only while no batch is being written."""
    gated = GatedStore(store)
    d = WebhookDispatcher(gated, targets, policy=FAST, timeout=2.0)  # type: ignore[arg-type]
    await d.start()
    try:
        sid = new_session_id()
        targets[sid] = DeliveryTarget(receiver.url("/in-order"), "whsec_x-0123456789abcdef")
        sent = [event(sid, n) for n in range(3)]
        for e in sent:
            d.submit(e)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, gated.entered.wait, WAIT)  # first batch blocked
        later = [event(sid, n) for n in range(3, 3 + 700)]  # more than one intake batch
        for e in later:
            d.submit(e)
        idle = loop.create_task(d.wait_idle(60.0))
        await asyncio.sleep(0)
        gated.gate.set()
        assert await asyncio.wait_for(idle, 90.0)
        delivered = [body_of(r)["id"] for r in receiver.delivered()]
        assert delivered == [e.id for e in sent + later]
    finally:
        await d.stop(timeout=0.5)


class BrokenStore(StoreWrapper):
    """The SQLite store, with append() failing the way a driver bug would (not a StoreError)."""

    def __init__(self, store: SqliteEventStore) -> None:
        super().__init__(store)
        self.appends = 0

    def append(self, records: Any) -> None:
        self.appends += 1
        raise RuntimeError("driver bug")


class UnloggedMetrics:
    """Counts what the dispatcher reports as not logged; ignores the rest."""

    def __init__(self) -> None:
        self.unlogged = 0

    def events_unlogged(self, count: int) -> None:
        self.unlogged += count

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_events_are_still_delivered_when_the_log_write_fails_unexpectedly(
    receiver: WebhookReceiver, store: SqliteEventStore, targets: Targets
) -> None:
    """A log write that raises anything loses the log records, counted, never the deliveries."""
    broken = BrokenStore(store)
    metrics = UnloggedMetrics()
    d = WebhookDispatcher(
        broken,  # type: ignore[arg-type]
        targets,
        policy=FAST,
        timeout=2.0,
        metrics=metrics,  # type: ignore[arg-type]
    )
    await d.start()
    try:
        sid = new_session_id()
        targets[sid] = DeliveryTarget(receiver.url("/broken-log"), "whsec_x-0123456789abcdef")
        sent = [event(sid, n) for n in range(5)]
        for e in sent:
            d.submit(e)
        assert await d.wait_idle(WAIT)
        assert [body_of(r)["id"] for r in receiver.delivered()] == [e.id for e in sent]
        assert broken.appends >= 1
        assert d.counters["log_failed"] == 5
        assert metrics.unlogged == 5
        later = event(sid, 5)  # the intake loop survived: a later event goes out too
        d.submit(later)
        assert await d.wait_idle(WAIT)
        assert body_of(receiver.delivered()[-1])["id"] == later.id
    finally:
        await d.stop(timeout=0.5)


class ThreadRecordingStore(StoreWrapper):
    """The SQLite store, noting which thread makes each bookkeeping write."""

    def __init__(self, store: SqliteEventStore) -> None:
        super().__init__(store)
        self.threads: list[tuple[str, threading.Thread]] = []

    def record_attempt(self, attempt: Any) -> None:
        self.threads.append(("attempt", threading.current_thread()))
        self.store.record_attempt(attempt)

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        self.threads.append(("status", threading.current_thread()))
        self.store.set_status(*args, **kwargs)


async def test_delivery_bookkeeping_is_written_off_the_event_loop_and_in_order(
    receiver: WebhookReceiver, store: SqliteEventStore, targets: Targets
) -> None:
    """Attempts and statuses go to the writer thread; wait_idle() returns once they are made."""
    recording = ThreadRecordingStore(store)
    d = WebhookDispatcher(recording, targets, policy=FAST, timeout=2.0)  # type: ignore[arg-type]
    await d.start()
    try:
        sid = new_session_id()
        targets[sid] = DeliveryTarget(receiver.url("/bookkeeping"), "whsec_x-0123456789abcdef")
        receiver.script("/bookkeeping", 500)  # one retry: two attempts, then the status
        sent = event(sid, 1)
        d.submit(sent)
        assert await d.wait_idle(WAIT)
        kinds = [kind for kind, _ in recording.threads]
        assert kinds == ["attempt", "attempt", "status"]
        assert all(t is not threading.main_thread() for _, t in recording.threads)
        record = store.get(sent.id)
        assert record is not None and record.delivery_status == "delivered"
        assert record.attempts == 2
    finally:
        await d.stop(timeout=0.5)
