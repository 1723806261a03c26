"""HTTP routes for events, TwiML/TeXML helpers and Prometheus metrics.

- ``GET /v1/sessions/{id}/events``: the session's events with delivery status and attempts.
- ``GET /v1/sessions/{id}/twiml`` and ``/texml``: XML that connects a Twilio / Telnyx call to the
  session's media stream.
- ``GET /metrics``: Prometheus text format; open, or ``Authorization: Bearer <metrics.token>``.

The ``/v1`` routes sit behind the API-key middleware of :func:`sipua.service.api.create_app`. The
routes find what they need on ``app.state``: ``sessions`` and ``settings`` (set by
``create_app``), ``event_store`` and ``metrics`` (set by ``sipua serve``; 503 when absent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field

from sipua.service.apikey import keys_equal
from sipua.service.events_store import EventRecord
from sipua.service.metrics import CONTENT_TYPE
from sipua.service.models import SessionStatus
from sipua.service.twiml import TWIML_CONTENT_TYPE, texml_connect_stream, twiml_connect_stream

__all__ = ["events_router", "metrics_router"]

EVENT_ID_PATTERN = r"^evt_[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_NOT_FOUND = "session not found"

SessionId = Annotated[str, Path(description="Session id (`sess_` + 26 characters).")]


class ErrorMessage(BaseModel):
    detail: str


class AttemptView(BaseModel):
    attempt: int = Field(description="1 for the first POST.")
    url: str
    started_at: datetime
    duration_ms: float
    status_code: int | None = Field(description="HTTP status; null when none came back.")
    error: str | None = Field(description="Why the attempt failed (timeout, HTTP 500 …).")
    outcome: str = Field(description="delivered, retry (another attempt follows) or failed.")


class DeliveryView(BaseModel):
    status: str = Field(
        description="pending, delivered, failed (gave up), or skipped (no webhook URL)."
    )
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    attempt_log: list[AttemptView]


class EventView(BaseModel):
    id: str = Field(examples=["evt_01J0Z6Q4D5N4W8R9M3S2T1V0XY"])
    type: str = Field(examples=["session.provider.connected"])
    created_at: datetime
    session_id: str
    provider: dict[str, Any] | None = Field(
        description="Who the event is about: type (sip, twilio, telnyx, browser), the "
        "provider's id of the participant (sip_call_id, call_sid, call_control_id …) and status."
    )
    data: dict[str, Any]
    delivery: DeliveryView


class EventPageView(BaseModel):
    data: list[EventView]
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


def _event_view(record: EventRecord) -> EventView:
    body = record.event.to_dict()
    return EventView(
        **body,
        delivery=DeliveryView(
            status=record.delivery_status,
            attempts=record.attempts,
            last_error=record.last_error,
            delivered_at=record.delivered_at,
            attempt_log=[AttemptView(**a.to_dict()) for a in record.attempt_log],
        ),
    )


def _session(request: Request, session_id: str) -> Any:
    session = request.app.state.sessions.get(session_id)
    if session is None:
        raise HTTPException(404, _NOT_FOUND)
    return session


def events_router() -> APIRouter:
    bearer = HTTPBearer(auto_error=False, scheme_name="apiKey")
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorMessage, "description": "Missing or invalid API key"},
        404: {"model": ErrorMessage, "description": "No session with this id"},
    }
    router = APIRouter(prefix="/v1", dependencies=[Security(bearer)], responses=errors)

    @router.get(
        "/sessions/{session_id}/events",
        response_model=EventPageView,
        tags=["events"],
        summary="List a session's events",
        description="Events in creation order, oldest first, each with its webhook delivery "
        "status and every attempt. Events are recorded whether or not a webhook URL is set. "
        "Pass `next_after` as `after` for the next page.",
        responses={503: {"model": ErrorMessage, "description": "Event log unavailable"}},
    )
    async def list_events(
        request: Request,
        session_id: SessionId,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
        after: Annotated[
            str | None,
            Query(pattern=EVENT_ID_PATTERN, description="Return events after this event id."),
        ] = None,
    ) -> EventPageView:
        _session(request, session_id)
        store = getattr(request.app.state, "event_store", None)
        if store is None:
            raise HTTPException(503, "event log unavailable")
        page = store.list(session_id, limit, after)
        return EventPageView(data=[_event_view(r) for r in page.items], next_after=page.next_after)

    def stream_xml(request: Request, session_id: str, build: Any, provider: str) -> Response:
        session = _session(request, session_id)
        if session.status is SessionStatus.ENDED:
            raise HTTPException(409, "session has ended")
        sessions = request.app.state.sessions
        url = sessions.endpoints.stream_url(session.id)
        try:
            xml = build(url, session.stream_token, {"provider": provider})
        except ValueError as exc:
            raise HTTPException(409, f"cannot build the document: {exc}") from None
        return Response(xml, media_type=TWIML_CONTENT_TYPE)

    xml_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/xml": {}}, "description": "The XML document."},
        409: {"model": ErrorMessage, "description": "The session has ended"},
    }

    @router.get(
        "/sessions/{session_id}/twiml",
        tags=["streams"],
        summary="TwiML connecting a Twilio call to the session",
        description="`<Connect><Stream>` to the session's stream URL, the stream token as a "
        "`<Parameter>` (Twilio forbids query strings there). Return it from your Twilio voice "
        "webhook. Twilio needs a public wss:// URL: set `http.public_url`.",
        response_class=Response,
        responses=xml_responses,
    )
    async def twiml(request: Request, session_id: SessionId) -> Response:
        return stream_xml(request, session_id, twiml_connect_stream, "twilio")

    @router.get(
        "/sessions/{session_id}/texml",
        tags=["streams"],
        summary="TeXML connecting a Telnyx call to the session",
        description="The Telnyx equivalent of /twiml, bidirectional (`bidirectionalMode=rtp`, "
        "PCMU 8 kHz back to the caller).",
        response_class=Response,
        responses=xml_responses,
    )
    async def texml(request: Request, session_id: SessionId) -> Response:
        return stream_xml(request, session_id, texml_connect_stream, "telnyx")

    return router


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        description="Text exposition format. Open unless `metrics.token` is set; then it needs "
        "`Authorization: Bearer <metrics.token>`.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics(request: Request) -> Response:
        settings = request.app.state.settings
        config = getattr(settings, "metrics", None)
        if config is not None and not config.enabled:
            raise HTTPException(404, "Not Found")
        token = getattr(config, "token", None)
        if token:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not keys_equal(credentials.strip(), token):
                raise HTTPException(
                    401, "metrics token required", headers={"WWW-Authenticate": "Bearer"}
                )
        registry = getattr(request.app.state, "metrics", None)
        if registry is None:
            raise HTTPException(503, "metrics unavailable")
        return Response(registry.render(), media_type=CONTENT_TYPE)

    return router
