"""Product events: what a customer's webhook receives and ``GET /v1/sessions/{id}/events`` lists.

The user agent publishes call-control facts on its :class:`~sipua.ua.events.EventBus`
(``CallConnecting``, ``CallConnected``, ``CallDisconnected``, ``CallFailed``, ``DtmfReceived``,
``TransferAccepted``, ``TransferCompleted``, ``TransferFailed``).
:class:`EventPublisher` turns them into :class:`SessionEvent` values in the product's shape::

    {"id": "evt_01J…", "type": "session.provider.connected", "created_at": "2024-…Z",
     "session_id": "sess_01J…",
     "provider": {"type": "sip", "sip_call_id": "a84b4c76e66710", "status": "connected"},
     "data": {"participant_id": "leg_…", "codec": "PCMU", "secure": false, …}}

Every provider goes through the same door, :meth:`EventPublisher.publish_provider_event`, so the
WebSocket stream endpoints (Twilio, Telnyx, browser) report their participants exactly as SIP
calls are reported. The publisher also keeps, per session, the participants still connected and
the quality figures of those that left, so ``session.ended`` can carry every participant's media
statistics once the last one has gone.

Nothing here blocks: listeners (the webhook dispatcher, metrics) must queue their work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sipua.service.ids import UlidGenerator
from sipua.ua.events import (
    CallConnected,
    CallConnecting,
    CallDisconnected,
    CallEvent,
    CallFailed,
    DtmfReceived,
    EventBus,
    TransferAccepted,
    TransferCompleted,
    TransferFailed,
)

__all__ = [
    "EVENT_TYPES",
    "PROVIDER_ID_FIELDS",
    "EventPublisher",
    "ProviderStatus",
    "ProviderType",
    "SessionEvent",
    "new_event_id",
    "quality_from_stats",
]

log = logging.getLogger(__name__)

ProviderType = Literal["sip", "twilio", "telnyx", "browser"]
ProviderStatus = Literal["connecting", "connected", "disconnected", "failed"]

PROVIDER_STATUSES: tuple[str, ...] = ("connecting", "connected", "disconnected", "failed")
_PROVIDER_TYPES = {status: f"session.provider.{status}" for status in PROVIDER_STATUSES}
TRANSFER_OUTCOMES: tuple[str, ...] = ("accepted", "completed", "failed")
EVENT_TYPES: tuple[str, ...] = (
    *(f"session.provider.{status}" for status in PROVIDER_STATUSES),
    "session.dtmf",
    *(f"session.transfer.{outcome}" for outcome in TRANSFER_OUTCOMES),
    "session.ended",
)
#: The id a provider gives a participant, by provider type; more ids may ride along
#: (``stream_sid`` for Twilio, ``stream_id`` for Telnyx) but this one is expected.
PROVIDER_ID_FIELDS: dict[str, str] = {
    "sip": "sip_call_id",
    "twilio": "call_sid",
    "telnyx": "call_control_id",
    "browser": "connection_id",
}
EVENT_ID_PREFIX = "evt_"
#: At most this many participants' summaries are kept per session for ``session.ended``.
MAX_PARTICIPANTS_KEPT = 200
#: Ended sessions remembered so ``session.ended`` is published once and late events keep no state.
ENDED_REMEMBERED = 10000

_ids = UlidGenerator()


def new_event_id() -> str:
    """``evt_<ULID>``: ids sort in creation order, which keyset paging of the log relies on."""
    return EVENT_ID_PREFIX + _ids.new()


_last_iso: tuple[datetime, str] = (datetime.min, "")


def _iso(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``. An event's time is written twice (log row, body) and
    events come in bursts within a millisecond: the last one written is remembered."""
    global _last_iso
    last, text = _last_iso
    if moment == last and (moment.tzinfo is None) == (last.tzinfo is None):
        return text
    if moment.tzinfo is UTC:  # the usual case: the publisher's clock; no conversion needed
        text = moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    else:
        text = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _last_iso = (moment, text)
    return text


# One compact encoder for every event body, built once (``json.dumps`` with options builds a
# JSONEncoder per call). Event payloads are our own dicts, never circular.
_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False
)
_dumps = _encoder.encode


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One product event. ``body()`` is exactly what is signed and POSTed."""

    id: str
    type: str
    created_at: datetime
    session_id: str
    provider: Mapping[str, Any] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": _iso(self.created_at),
            "session_id": self.session_id,
            "provider": None if self.provider is None else dict(self.provider),
            "data": dict(self.data),
        }

    def body(self) -> bytes:
        """Compact UTF-8 JSON; computed once per delivery attempt set, never re-ordered."""
        return _dumps(self.to_dict()).encode()


# -- media quality ---------------------------------------------------------------------------

# Keys of a media leg's ``stats()`` (sipua.media.stream.MediaStream.stats) that make the quality
# summary of a participant. Absent keys are left out: a signalling-only backend reports none.
_QUALITY_KEYS = (
    "codec",
    "packets_sent",
    "packets_received",
    "packets_expected",
    "packets_lost",
    "loss_percent",
    "jitter_ms",
    "rtt_ms",
    "r_factor",
    "mos",
    "srtp",
)


def quality_from_stats(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """The media quality figures of one participant, from what ``CallDisconnected.stats`` carries.

    Accepts a stream's flat stats dict, or a dict with a ``streams`` list of them (one per media
    stream of the leg), summed for counts and worst-of for loss, jitter, RTT and MOS.
    """
    if not stats:
        return {}
    streams = stats.get("streams")
    if isinstance(streams, list) and streams:
        parts = [quality_from_stats(s) for s in streams if isinstance(s, Mapping)]
        return _merge_quality([p for p in parts if p])
    out: dict[str, Any] = {}
    for key in _QUALITY_KEYS:
        value = stats.get(key)
        if value is not None:
            out[key] = value
    remote = stats.get("remote")
    if isinstance(remote, Mapping) and remote:
        out["remote"] = {
            k: remote[k]
            for k in ("fraction_lost", "packets_lost", "jitter_ms")
            if remote.get(k) is not None
        }
    return out


def _merge_quality(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for key in ("packets_sent", "packets_received", "packets_expected", "packets_lost"):
        values = [p[key] for p in parts if isinstance(p.get(key), int | float)]
        if values:
            out[key] = sum(values)
    for key in ("loss_percent", "jitter_ms", "rtt_ms"):
        values = [p[key] for p in parts if isinstance(p.get(key), int | float)]
        if values:
            out[key] = max(values)
    for key in ("mos", "r_factor"):
        values = [p[key] for p in parts if isinstance(p.get(key), int | float)]
        if values:
            out[key] = min(values)
    codecs = [p["codec"] for p in parts if p.get("codec")]
    if codecs:
        out["codec"] = codecs[0]
    out["streams"] = parts
    return out


# -- the publisher ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Participant:
    participant_id: str
    provider: dict[str, Any]
    connected_at: datetime | None = None


@dataclass(slots=True)
class _SessionState:
    live: dict[str, _Participant] = field(default_factory=dict)
    left: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # summaries not kept (over MAX_PARTICIPANTS_KEPT)
    ending: dict[str, Any] | None = None  # session.ended waiting for the last participant
    timer: asyncio.TimerHandle | None = None


EventListener = Callable[[SessionEvent], None]


class EventPublisher:
    """Builds product events and hands them to listeners (delivery, metrics), in order.

    ``listeners`` are called synchronously, in the caller's thread (the event loop's), and must
    not block. A listener that raises is logged and skipped; the others still run.
    """

    def __init__(
        self,
        listeners: list[EventListener] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        ended_grace: float = 40.0,
    ) -> None:
        self.listeners: list[EventListener] = list(listeners or [])
        self._clock = clock or (lambda: datetime.now(UTC))
        #: How long ``session.ended`` waits for participants still hanging up (a BYE sent
        #: only after an ACK arrives can take 64*T1 = 32 s).
        self.ended_grace = ended_grace
        self._sessions: dict[str, _SessionState] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()

    # -- the one door ---------------------------------------------------------------------

    def publish(self, event: SessionEvent) -> SessionEvent:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break calls
                log.exception(
                    "event listener failed",
                    extra={"session_id": event.session_id, "event_id": event.id},
                )
        return event

    def make_event(
        self,
        type_: str,
        session_id: str,
        provider: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None = None,
    ) -> SessionEvent:
        return self._event(type_, session_id, provider, dict(data or {}))

    def _event(
        self,
        type_: str,
        session_id: str,
        provider: Mapping[str, Any] | None,
        data: dict[str, Any],
    ) -> SessionEvent:
        """:meth:`make_event` with ``data`` a new dict of the caller's, taken as it is."""
        now = self._clock()
        return SessionEvent(
            new_event_id(),
            type_,
            # Milliseconds, as serialized: the logged event equals the live one.
            now.replace(microsecond=now.microsecond // 1000 * 1000),
            session_id,
            provider,
            data,
        )

    def publish_provider_event(
        self,
        session_id: str,
        provider_type: ProviderType | str,
        provider_ids: Mapping[str, str],
        status: ProviderStatus | str,
        data: Mapping[str, Any] | None = None,
        *,
        participant_id: str | None = None,
    ) -> SessionEvent:
        """Report a participant's progress: ``session.provider.<status>``.

        ``provider_ids`` holds the provider's own ids of the participant (``{"sip_call_id":
        …}``, ``{"call_sid": …, "stream_sid": …}``, ``{"call_control_id": …}``, ``{"connection_id":
        …}``). ``participant_id`` identifies the participant across its events (defaults to the
        provider's main id). For ``disconnected`` pass ``data["stats"]`` (a media stats dict) to
        have its quality figures reported, here and in ``session.ended``.
        """
        if status not in PROVIDER_STATUSES:
            raise ValueError(f"unknown provider status {status!r}")
        provider = _provider_block(provider_type, provider_ids, status)
        pid = participant_id or _main_id(provider_type, provider_ids)
        payload = dict(data or {})
        stats = payload.pop("stats", None)
        if status == "disconnected":
            payload["quality"] = quality_from_stats(stats if isinstance(stats, Mapping) else None)
        payload = {"participant_id": pid, **payload}
        event = self._event(_PROVIDER_TYPES[status], session_id, provider, payload)
        self.publish(event)
        # After publishing: the last participant's disconnected comes before session.ended.
        self._track(session_id, pid, provider, status, event, payload)
        return event

    def publish_dtmf(
        self,
        session_id: str,
        digit: str,
        duration_ms: int,
        source: str,
        *,
        provider_type: ProviderType | str,
        provider_ids: Mapping[str, str],
        participant_id: str | None = None,
    ) -> SessionEvent:
        """``session.dtmf``: a participant pressed a key (``source``: rfc4733, sip-info, twilio…)."""
        provider: dict[str, Any] = {"type": provider_type}
        provider.update({k: v for k, v in provider_ids.items() if v is not None})
        provider["status"] = "connected"
        pid = participant_id or _main_id(provider_type, provider_ids)
        data = {
            "participant_id": pid,
            "digit": digit,
            "duration_ms": int(duration_ms),
            "source": source,
        }
        return self.publish(self.make_event("session.dtmf", session_id, provider, data))

    def publish_transfer(
        self,
        session_id: str,
        outcome: str,
        data: Mapping[str, Any],
        *,
        provider_type: ProviderType | str,
        provider_ids: Mapping[str, str],
        participant_id: str | None = None,
        provider_status: ProviderStatus | str = "connected",
    ) -> SessionEvent:
        """``session.transfer.<outcome>``: the progress of a participant's hand-over to another
        party (``data["target"]``). Not tracked for ``session.ended``: the participant's own
        ``session.provider.disconnected`` (reason ``transferred``) follows a completed one."""
        if outcome not in TRANSFER_OUTCOMES:
            raise ValueError(f"unknown transfer outcome {outcome!r}")
        provider = _provider_block(provider_type, provider_ids, provider_status)
        pid = participant_id or _main_id(provider_type, provider_ids)
        payload = {"participant_id": pid, **data}
        event = self.make_event(f"session.transfer.{outcome}", session_id, provider, payload)
        return self.publish(event)

    # -- session end ---------------------------------------------------------------------

    def session_ended(self, session_id: str, *, ended_at: datetime | None = None) -> None:
        """The session ended: publish ``session.ended`` when its last participant has left.

        Without live participants it is published at once; otherwise when the last one
        disconnects, or after :attr:`ended_grace` seconds with whatever is known then.
        """
        if session_id in self._ended:
            return
        state = self._sessions.setdefault(session_id, _SessionState())
        if state.ending is not None:
            return
        state.ending = {"ended_at": _iso(ended_at or self._clock())}
        if not state.live:
            self._publish_ended(session_id)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish_ended(session_id)
            return
        state.timer = loop.call_later(self.ended_grace, self._publish_ended, session_id)

    def on_session_ended(self, session: Any) -> None:
        """An observer for :attr:`SessionService.on_ended`."""
        self.session_ended(session.id, ended_at=getattr(session, "ended_at", None))

    def _publish_ended(self, session_id: str) -> None:
        state = self._sessions.pop(session_id, None)
        if state is None or state.ending is None:
            return
        self._ended[session_id] = None
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        if state.timer is not None:
            state.timer.cancel()
        participants = list(state.left)
        for live in state.live.values():  # still there after the grace period
            participants.append(
                {
                    "participant_id": live.participant_id,
                    "provider": {**live.provider, "status": "connected"},
                    "reason": "still-connected",
                    "quality": {},
                }
            )
        data: dict[str, Any] = {**state.ending, "participants": participants}
        if state.dropped:
            data["participants_omitted"] = state.dropped
        self.publish(self.make_event("session.ended", session_id, None, data))

    def _track(
        self,
        session_id: str,
        pid: str,
        provider: dict[str, Any],
        status: str,
        event: SessionEvent,
        payload: dict[str, Any],
    ) -> None:
        if session_id in self._ended:
            return  # a straggler of an ended session: reported, not tracked
        state = self._sessions.get(session_id)
        if status in ("connecting", "connected"):
            if state is None:
                state = self._sessions[session_id] = _SessionState()
            part = state.live.get(pid)
            if part is None:
                part = state.live[pid] = _Participant(pid, _ids_only(provider))
            if status == "connected":
                part.connected_at = event.created_at
            return
        if state is None:
            return  # never seen connecting: nothing to keep for session.ended
        part = state.live.pop(pid, None)
        summary: dict[str, Any] = {
            "participant_id": pid,
            "provider": provider,
            "reason": payload.get("reason", ""),
            "duration_s": payload.get("duration_s"),
            "quality": payload.get("quality", {}),
        }
        if status == "failed":
            summary["status_code"] = payload.get("status_code")
        if part is not None or status == "disconnected":
            if len(state.left) < MAX_PARTICIPANTS_KEPT:
                state.left.append(summary)
            else:
                state.dropped += 1
        if state.ending is not None and not state.live:
            self._publish_ended(session_id)
        elif state.ending is None and not state.live and not state.left and not state.dropped:
            self._sessions.pop(session_id, None)

    # -- the user agent's bus ---------------------------------------------------------------

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to the UA's bus; returns the unsubscribe function."""
        return bus.subscribe(self.on_call_event)

    def on_call_event(self, event: CallEvent) -> None:
        """Map one UA bus event to product events (SIP participants)."""
        ids = {"sip_call_id": event.call_id}
        common = {"transport": event.transport, "remote": event.remote}
        # The event classes are disjoint: the three of every call are tested first, and the
        # log context is only built when the record would be emitted.
        if isinstance(event, CallConnecting):
            status, data = "connecting", common
            if log.isEnabledFor(logging.DEBUG):
                log.debug("call connecting", extra=_log_context(event))
        elif isinstance(event, CallConnected):
            status = "connected"
            data = {**common, "codec": event.codec, "secure": event.secure}
            if log.isEnabledFor(logging.INFO):
                log.info("call connected (%s)", event.codec, extra=_log_context(event))
        elif isinstance(event, CallDisconnected):
            status = "disconnected"
            data = {
                **common,
                "reason": event.reason,
                "duration_s": round(event.duration, 3),
                "stats": event.stats,
            }
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "call disconnected: %s after %.1fs",
                    event.reason,
                    event.duration,
                    extra=_log_context(event),
                )
        elif isinstance(event, CallFailed):
            status = "failed"
            data = {**common, "reason": event.reason, "status_code": event.status or None}
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "call failed: %s %s", event.status, event.reason, extra=_log_context(event)
                )
        elif isinstance(event, DtmfReceived):
            self.publish_dtmf(
                event.session_id,
                event.digit,
                event.duration_ms,
                event.source,
                provider_type="sip",
                provider_ids=ids,
                participant_id=event.leg_id,
            )
            log.debug("DTMF %s received", event.digit, extra=_log_context(event))
            return
        elif isinstance(event, TransferAccepted | TransferCompleted | TransferFailed):
            self._on_transfer(event, ids, {"target": event.target, **common}, _log_context(event))
            return
        else:
            return
        self.publish_provider_event(
            event.session_id, "sip", ids, status, data, participant_id=event.leg_id
        )

    def _on_transfer(
        self,
        event: TransferAccepted | TransferCompleted | TransferFailed,
        ids: dict[str, str],
        data: dict[str, Any],
        context: dict[str, str],
    ) -> None:
        provider_status = "connected"
        if isinstance(event, TransferAccepted):
            outcome = "accepted"
            log.info("transfer to %s accepted", event.target, extra=context)
        elif isinstance(event, TransferCompleted):
            outcome = "completed"
            data["status_code"] = event.status
            log.info("transferred to %s", event.target, extra=context)
        else:
            outcome = "failed"
            data.update(status_code=event.status or None, reason=event.reason, detail=event.detail)
            if event.reason == "call-ended":
                provider_status = "disconnected"
            log.info(
                "transfer to %s failed: %s %s",
                event.target,
                event.status,
                event.reason,
                extra=context,
            )
        self.publish_transfer(
            event.session_id,
            outcome,
            data,
            provider_type="sip",
            provider_ids=ids,
            participant_id=event.leg_id,
            provider_status=provider_status,
        )


def _provider_block(provider_type: str, provider_ids: Mapping[str, Any], status: str) -> dict:
    """An event's ``provider``: its type, the provider's ids of the participant, its status."""
    provider: dict[str, Any] = {"type": provider_type}
    provider.update({k: v for k, v in provider_ids.items() if v is not None})
    provider["status"] = status
    return provider


def _main_id(provider_type: str, provider_ids: Mapping[str, str]) -> str:
    key = PROVIDER_ID_FIELDS.get(provider_type)
    if key and provider_ids.get(key):
        return str(provider_ids[key])
    for value in provider_ids.values():
        if value:
            return str(value)
    return f"{provider_type}-unknown"


def _log_context(event: CallEvent) -> dict[str, str]:
    return {
        "session_id": event.session_id,
        "call_id": event.call_id,
        "leg_id": event.leg_id,
        "transport": event.transport,
        "peer": event.remote,
    }


def _ids_only(provider: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in provider.items() if k != "status"}
