"""Signed webhook delivery of session events, in order per session, with retries.

Every event first goes to the event log (:mod:`sipua.service.events_store`), webhook or not. An
event whose session has a webhook URL (or the organization default, ``webhooks.default_url``) is
then POSTed there:

- **Signed**: ``Sipua-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>``
  with the session's ``webhook_secret`` (see docs/WEBHOOKS.md for the verification recipe;
  :func:`verify_signature` is the reference implementation).
- **In order per session**: each session has one queue and at most one delivery in flight; a
  later event waits until the earlier one is delivered or given up on. Sessions are delivered in
  parallel, at most ``max_concurrency`` requests at once.
- **Retried** on network errors, timeouts, 408, 429 and 5xx with exponential backoff and jitter,
  up to ``max_attempts`` tries; other answers (3xx, 4xx) fail the event at once.
- **Bounded**: intake, per-session queues and the total held in memory are capped; an event that
  does not fit is recorded as failed (``queue full``) rather than held. Each attempt has a total
  deadline, the response body is never read, and the call path only appends to a deque, so a slow
  or dead endpoint never holds up a call or the event loop.

Every attempt is recorded in the log. Events still pending at shutdown are delivered after the
next start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from sipua import __version__
from sipua.service.events import SessionEvent
from sipua.service.events_store import DeliveryAttempt, DeliveryStatus, EventStore
from sipua.service.store import StoreError

__all__ = [
    "SIGNATURE_HEADER",
    "DeliveryTarget",
    "RetryPolicy",
    "WebhookDispatcher",
    "sign_payload",
    "signature_header",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Sipua-Signature"
SIGNATURE_VERSION = "v1"
#: A receiver should refuse signatures older than this (replay window), in seconds.
DEFAULT_TOLERANCE = 300
_INTAKE_BATCH = 500
# Events gather this long before they are written to the log in one transaction: at thousands
# of calls per second a write per event would cost more than the calls.
_INTAKE_GATHER = 0.02
_RETRYABLE_STATUS = frozenset({408, 425, 429})


# -- signatures ----------------------------------------------------------------------------


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed with the secret's UTF-8 bytes."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Sipua-Signature`` value: ``t=<timestamp>,v1=<hex>``."""
    return f"t={int(timestamp)},{SIGNATURE_VERSION}={sign_payload(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of ``now``.

    Several ``v1=`` entries may be present (secret rotation); any match is enough.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SIGNATURE_VERSION:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign_payload(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


# -- policy --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    multiplier: float = 2.0

    def delay(self, failed_attempt: int, rng: random.Random) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

        Exponential with "equal jitter": half the step is fixed, half random, so retries of
        many sessions spread out but never collapse to an immediate retry.
        """
        step = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempt - 1))
        return step / 2 + rng.uniform(0, step / 2)

    @classmethod
    def from_settings(cls, webhooks: Any) -> RetryPolicy:
        return cls(
            max_attempts=webhooks.max_attempts,
            initial_backoff=webhooks.initial_backoff,
            max_backoff=webhooks.max_backoff,
        )


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where a session's events go and the secret that signs them."""

    url: str
    secret: str | None


TargetResolver = Callable[[str], DeliveryTarget | None]


class WebhookMetrics(Protocol):
    def webhook_attempt(self, outcome: str, status_code: int | None, seconds: float) -> None: ...

    def webhook_result(self, status: str) -> None: ...

    def events_dropped(self, count: int) -> None: ...

    def events_unlogged(self, count: int) -> None: ...


@dataclass(slots=True)
class _Item:
    event: SessionEvent
    body: bytes
    target: DeliveryTarget
    attempts_done: int = 0


@dataclass(slots=True)
class _Channel:
    queue: deque[_Item] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class WebhookDispatcher:
    """Persists events and delivers them to webhooks; see the module docstring.

    :meth:`submit` is synchronous and O(1): call it from anywhere on the event loop (it is an
    :class:`~sipua.service.events.EventPublisher` listener). :meth:`start` before, :meth:`stop`
    after.
    """

    def __init__(
        self,
        store: EventStore,
        resolve_target: TargetResolver,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 5.0,
        max_concurrency: int = 64,
        max_queue_per_session: int = 1000,
        max_pending: int = 100_000,
        client: httpx.AsyncClient | None = None,
        metrics: WebhookMetrics | None = None,
        rng: random.Random | None = None,
        user_agent: str = f"sipua-webhooks/{__version__}",
    ) -> None:
        self.store = store
        self.resolve_target = resolve_target
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_queue_per_session = max_queue_per_session
        self.max_pending = max_pending
        self.metrics = metrics
        self.user_agent = user_agent
        self._client = client
        self._own_client = client is None
        self._rng = rng or random.Random()
        self._intake: deque[SessionEvent] = deque()
        self._channels: dict[str, _Channel] = {}
        self._queued = 0  # items in channels (in flight included)
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._sem: asyncio.Semaphore | None = None
        self._intake_task: asyncio.Task[None] | None = None
        # The event log is written on its own thread: SQLite releases the GIL while it works,
        # so under load the writes overlap the event loop instead of taking its time.
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._accepting: asyncio.Task[None] | None = None  # a batch being written
        self._accepting_size = 0
        self.counters = {"submitted": 0, "dropped": 0, "delivered": 0, "failed": 0, "skipped": 0}

    @classmethod
    def from_settings(
        cls, store: EventStore, resolve_target: TargetResolver, webhooks: Any, **kwargs: Any
    ) -> WebhookDispatcher:
        return cls(
            store,
            resolve_target,
            policy=RetryPolicy.from_settings(webhooks),
            timeout=webhooks.timeout,
            max_concurrency=webhooks.max_concurrency,
            max_queue_per_session=webhooks.max_queue_per_session,
            max_pending=webhooks.max_pending,
            **kwargs,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, resume: bool = True) -> None:
        """Start delivering; with ``resume``, events left pending by an earlier run go first."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sem = asyncio.Semaphore(self.max_concurrency)
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=self.max_concurrency,
                    max_keepalive_connections=min(self.max_concurrency, 32),
                ),
                headers={"User-Agent": self.user_agent},
            )
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="event-log")
        if resume:
            self._resume()
        self._intake_task = asyncio.get_running_loop().create_task(
            self._intake_loop(), name="webhook-intake"
        )

    def _resume(self) -> None:
        try:
            records = self.store.pending(self.max_pending)
        except StoreError as exc:
            log.error("cannot read pending webhook events: %s", exc)
            return
        for record in records:
            target = self._resolve(record.event.session_id)
            if target is None:
                self._set_status(record.event.id, "skipped", "no webhook URL")
                continue
            self._enqueue(_Item(record.event, record.body, target, record.attempts))
        if records:
            log.info("resuming delivery of %d pending webhook events", len(records))

    async def stop(self, timeout: float = 2.0) -> None:
        """Persist what was submitted, give in-flight deliveries ``timeout`` seconds, then stop.

        Events not delivered by then stay ``pending`` in the log for the next start.
        """
        await self._flush_intake()
        if self._queued and self._idle is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        tasks = [c.task for c in self._channels.values() if c.task is not None]
        if self._intake_task is not None:
            tasks.append(self._intake_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._flush_intake()  # a batch the cancelled intake loop had started
        self._channels.clear()
        self._queued = 0
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until everything submitted so far is delivered or given up on (for tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self._flush_intake()
            if not self._queued:
                if self._writer is not None:  # the writes queued so far have been made
                    await loop.run_in_executor(self._writer, _nothing)
                return True
            assert self._idle is not None
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), remaining)

    @property
    def queued(self) -> int:
        """Events accepted and not yet delivered or given up on."""
        return self._queued + len(self._intake) + self._accepting_size

    # -- intake ------------------------------------------------------------------------------

    def submit(self, event: SessionEvent) -> None:
        """Accept an event for logging and delivery. Never blocks; drops only when over bounds."""
        self.counters["submitted"] += 1
        if len(self._intake) >= self.max_pending:
            self.counters["dropped"] += 1
            if self.metrics is not None:
                self.metrics.events_dropped(1)
            log.error(
                "event intake full (%d): event dropped",
                self.max_pending,
                extra={"session_id": event.session_id, "event_id": event.id},
            )
            return
        self._intake.append(event)
        if self._wake is not None:
            self._wake.set()

    async def _intake_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._intake:
                batch = self._take_batch()
                self._accepting_size = len(batch)
                task = self._accepting = loop.create_task(self._accept_off_loop(batch))
                # Shielded: a stop() that cancels this loop still lets the batch finish.
                await asyncio.shield(task)
            await asyncio.sleep(_INTAKE_GATHER)  # let a burst gather into one batch

    async def _flush_intake(self) -> None:
        """Accept everything submitted so far (at stop, and for wait_idle), in order.

        A batch the intake loop is writing is waited for; the rest is accepted here, on the
        loop's thread, but only while no batch is in flight: events are enqueued for delivery
        in the order they were taken, so a session's events are never delivered out of order.
        """
        while self._accepting is not None or self._intake:
            task = self._accepting
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
            else:
                self._accept(self._take_batch())

    def _take_batch(self) -> list[SessionEvent]:
        return [self._intake.popleft() for _ in range(min(_INTAKE_BATCH, len(self._intake)))]

    async def _accept_off_loop(self, batch: Sequence[SessionEvent]) -> None:
        """:meth:`_accept` with the log written by the writer thread."""
        try:
            try:
                records, items = self._sort(batch)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._writer, self._append, records)
            finally:
                self._accepting = None
                self._accepting_size = 0
            self._enqueue_all(items)
        except Exception:  # noqa: BLE001 - the intake loop must survive anything
            log.exception("webhook intake failed for %d events", len(batch))

    def _accept(self, batch: Sequence[SessionEvent]) -> None:
        records, items = self._sort(batch)
        self._append(records)
        self._enqueue_all(items)

    def _append(self, records: Sequence[tuple[SessionEvent, DeliveryStatus, str | None]]) -> None:
        """Log a batch. Never raises: a failed write must not cost the batch its deliveries."""
        try:
            self.store.append(records)
        except StoreError as exc:
            self._log_failed(len(records))
            log.error("could not record %d events: %s", len(records), exc)
        except Exception:  # noqa: BLE001 - e.g. a driver error StoreError does not wrap
            self._log_failed(len(records))
            log.exception("could not record %d events", len(records))

    def _log_failed(self, count: int) -> None:
        # The writer thread and the loop's thread both count: one += under the GIL each.
        self.counters["log_failed"] = self.counters.get("log_failed", 0) + count
        if self.metrics is not None:
            self.metrics.events_unlogged(count)

    def _enqueue_all(self, items: Sequence[_Item]) -> None:
        for item in items:
            self._enqueue(item)

    def _sort(
        self, batch: Sequence[SessionEvent]
    ) -> tuple[list[tuple[SessionEvent, DeliveryStatus, str | None]], list[_Item]]:
        """Each event's log record, and the deliveries to enqueue once it is logged."""
        records: list[tuple[SessionEvent, DeliveryStatus, str | None]] = []
        items: list[_Item] = []
        in_batch: dict[str, int] = {}
        for event in batch:
            target = self._resolve(event.session_id)
            if target is None:
                records.append((event, "skipped", "no webhook URL"))
                self._result("skipped")
                continue
            channel = self._channels.get(event.session_id)
            depth = len(channel.queue) if channel is not None else 0
            depth += in_batch.get(event.session_id, 0)
            if depth >= self.max_queue_per_session or self._queued + len(items) >= self.max_pending:
                records.append((event, "failed", "queue full"))
                self._result("failed")
                log.warning(
                    "webhook queue full: event not delivered",
                    extra={"session_id": event.session_id, "event_id": event.id},
                )
                continue
            records.append((event, "pending", None))
            items.append(_Item(event, event.body(), target))
            in_batch[event.session_id] = in_batch.get(event.session_id, 0) + 1
        return records, items

    def _resolve(self, session_id: str) -> DeliveryTarget | None:
        try:
            return self.resolve_target(session_id)
        except Exception:  # noqa: BLE001 - a lookup failure must not lose the event
            log.exception("webhook target lookup failed", extra={"session_id": session_id})
            return None

    def _enqueue(self, item: _Item) -> None:
        sid = item.event.session_id
        channel = self._channels.get(sid)
        if channel is None:
            channel = self._channels[sid] = _Channel()
        channel.queue.append(item)
        self._queued += 1
        if self._idle is not None:
            self._idle.clear()
        if channel.task is None:
            channel.task = asyncio.get_running_loop().create_task(
                self._run_channel(sid, channel), name=f"webhooks-{sid}"
            )

    # -- delivery ----------------------------------------------------------------------------

    async def _run_channel(self, session_id: str, channel: _Channel) -> None:
        try:
            while channel.queue:
                item = channel.queue[0]
                try:
                    await self._deliver(item)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one bad event must not stall the session
                    log.exception(
                        "webhook delivery crashed",
                        extra={"session_id": session_id, "event_id": item.event.id},
                    )
                    self._set_status(item.event.id, "failed", "internal error")
                channel.queue.popleft()
                self._queued -= 1
        finally:
            # No await between the empty check above and here: nothing can be appended unseen.
            if self._channels.get(session_id) is channel and not channel.queue:
                del self._channels[session_id]
            channel.task = None
            if not self._queued and self._idle is not None:
                self._idle.set()

    async def _deliver(self, item: _Item) -> None:
        event, target = item.event, item.target
        context = {"session_id": event.session_id, "event_id": event.id}
        attempt = item.attempts_done
        loop = asyncio.get_running_loop()
        while attempt < self.policy.max_attempts:
            attempt += 1
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "Sipua-Event-Id": event.id,
                "Sipua-Event-Type": event.type,
                "Sipua-Delivery-Attempt": str(attempt),
            }
            if target.secret:
                headers[SIGNATURE_HEADER] = signature_header(target.secret, timestamp, item.body)
            started = _now()
            t0 = loop.time()
            assert self._sem is not None
            async with self._sem:
                status, error, retry_after = await self._post(target.url, item.body, headers)
            seconds = loop.time() - t0
            if status is not None and 200 <= status < 300:
                outcome = "delivered"
            elif _retryable(status, error) and attempt < self.policy.max_attempts:
                outcome = "retry"
            else:
                outcome = "failed"
            if error is None and status is not None and outcome != "delivered":
                error = f"HTTP {status}"
            self._record(
                DeliveryAttempt(
                    event.id, attempt, target.url, started, seconds * 1000, status, error, outcome
                )
            )
            if self.metrics is not None:
                self.metrics.webhook_attempt(outcome, status, seconds)
            if outcome == "delivered":
                self._set_status(event.id, "delivered", delivered_at=_now())
                self._result("delivered")
                return
            if outcome == "failed":
                self._set_status(event.id, "failed", error)
                self._result("failed")
                log.warning(
                    "webhook delivery failed after %d attempts: %s", attempt, error, extra=context
                )
                return
            delay = self.policy.delay(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.max_backoff))
            log.info(
                "webhook attempt %d failed (%s); retrying in %.1fs",
                attempt,
                error,
                delay,
                extra=context,
            )
            await asyncio.sleep(delay)
        # Resumed with every attempt already used.
        self._set_status(event.id, "failed", "no attempts left")
        self._result("failed")

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None, float | None]:
        """``(status, error, retry_after)``; the response body is never read."""
        client = self._client
        assert client is not None
        try:
            # httpx's timeout is per phase; this bounds the whole attempt (a drip-feeding
            # endpoint cannot stretch it).
            async with asyncio.timeout(self.timeout):
                request = client.build_request("POST", url, content=body, headers=headers)
                response = await client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return None, f"timeout after {self.timeout:g}s", None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return None, f"invalid URL: {exc}", None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, None
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc}", None
        return response.status_code, None, _retry_after(response.headers.get("retry-after"))

    # -- bookkeeping ---------------------------------------------------------------------------

    def _record(self, attempt: DeliveryAttempt) -> None:
        self._off_loop(self._write_attempt, attempt)

    def _set_status(
        self,
        event_id: str,
        status: DeliveryStatus,
        error: str | None = None,
        *,
        delivered_at: datetime | None = None,
    ) -> None:
        self._off_loop(self._write_status, event_id, status, error, delivered_at)

    def _off_loop(self, work: Callable[..., None], *args: Any) -> None:
        """Run a bookkeeping write on the writer thread, after every write queued before it.

        The event loop never waits for SQLite (nor for its lock, which the writer thread
        holds while it logs a batch). One thread keeps the order: an event's row is written
        before its attempts and status. Without a writer (not started, or stopped): here.
        """
        writer = self._writer
        if writer is not None:
            try:
                writer.submit(work, *args)
                return
            except RuntimeError:  # shut down meanwhile
                pass
        work(*args)

    def _write_attempt(self, attempt: DeliveryAttempt) -> None:
        try:
            self.store.record_attempt(attempt)
        except StoreError as exc:
            log.error("could not record a webhook attempt: %s", exc)
        except Exception:  # noqa: BLE001 - the writer thread has no one to raise to
            log.exception("could not record a webhook attempt")

    def _write_status(
        self,
        event_id: str,
        status: DeliveryStatus,
        error: str | None,
        delivered_at: datetime | None,
    ) -> None:
        try:
            self.store.set_status(event_id, status, error=error, delivered_at=delivered_at)
        except StoreError as exc:
            log.error("could not record a delivery status: %s", exc)
        except Exception:  # noqa: BLE001 - the writer thread has no one to raise to
            log.exception("could not record a delivery status")

    def _result(self, status: str) -> None:
        self.counters[status] = self.counters.get(status, 0) + 1
        if self.metrics is not None:
            self.metrics.webhook_result(status)


def _nothing() -> None:
    pass


def _retryable(status: int | None, error: str | None) -> bool:
    if status is None:
        return not (error or "").startswith("invalid URL")
    return status >= 500 or status in _RETRYABLE_STATUS


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    return None  # an HTTP-date: rare for webhooks; our own backoff applies


def session_target_resolver(sessions: Any, webhooks: Any) -> TargetResolver:
    """Target from the session (``webhook_url``, ``webhook_secret``) or the organization default.

    Deliveries to ``webhooks.default_url`` are signed with ``webhooks.secret`` when it is set,
    else with the session's own secret.
    """

    def resolve(session_id: str) -> DeliveryTarget | None:
        session = sessions.get(session_id)
        secret_value = getattr(session, "webhook_secret", None) if session is not None else None
        session_secret = secret_value.get_secret_value() if secret_value is not None else None
        url = getattr(session, "webhook_url", None) if session is not None else None
        if url:
            return DeliveryTarget(str(url), session_secret)
        default = getattr(webhooks, "default_url", None)
        if default:
            return DeliveryTarget(str(default), getattr(webhooks, "secret", None) or session_secret)
        return None

    return resolve
