"""The sessions HTTP API (FastAPI).

``create_app(settings, sessions, calls)`` returns an ASGI app; ``sipua serve`` runs it with
uvicorn in the same event loop as SIP. Every HTTP route under ``/v1`` needs
``Authorization: Bearer <api key>`` (WebSocket routes under ``/v1/streams`` authenticate with the
session's stream token instead and are not covered here). ``/healthz`` is open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sipua import __version__
from sipua.service.apikey import ensure_api_key, keys_equal
from sipua.service.config import Settings
from sipua.service.credentials_api import credentials_router
from sipua.service.events_api import events_router, metrics_router
from sipua.service.models import (
    DialResponse,
    SessionCreate,
    SessionPage,
    SessionResponse,
    SessionStatus,
    TransferCreate,
    TransferResponse,
)
from sipua.service.sessions import CallInfo, SessionRequestError, SessionService
from sipua.service.store import StoreError
from sipua.service.streams import install_streams
from sipua.service.trace_api import trace_router
from sipua.ua.transfer import InvalidTransferTarget, ParticipantNotFound, TransferError
from sipua.ua.uac import session_endpoints

__all__ = ["CallInfo", "create_app"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SESSION_ID_PATTERN = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_PROTECTED_PREFIX = "/v1/"
_NOT_FOUND = "session not found"

SessionId = Annotated[
    str,
    Path(
        description="Session id (`sess_` + 26 characters).",
        examples=["sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY"],
    ),
]

ParticipantId = Annotated[
    str,
    Path(
        max_length=128,
        description="Participant id, as `participants[].participant_id` of the session shows it.",
        examples=["leg_5f0c2a9e41d7b3c8"],
    ),
]


class ErrorMessage(BaseModel):
    detail: str = Field(examples=["session not found"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str


def _json_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class _ApiKeyMiddleware:
    """401 for any HTTP request under ``/v1/`` without the right bearer key.

    Done ahead of routing so an unauthenticated client learns nothing from body parsing,
    validation or size errors, and routes others add under ``/v1`` are covered too.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            challenge = 'Bearer realm="sipua"'
            response = _json_response(401, "missing API key", {"WWW-Authenticate": challenge})
        elif not keys_equal(credentials.strip(), self.api_key):
            challenge = 'Bearer realm="sipua", error="invalid_token"'
            response = _json_response(401, "invalid API key", {"WWW-Authenticate": challenge})
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


class _BodyLimitMiddleware:
    """413 for request bodies above ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _json_response(413, "request body too large")(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading as this response.
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited_receive, send)


def create_app(
    settings: Settings,
    sessions: SessionService,
    calls: CallInfo | None = None,
    *,
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    end_calls_timeout: float = 10.0,
) -> FastAPI:
    """The HTTP API app.

    ``api_key`` defaults to :func:`ensure_api_key` (``SIPUA_API_KEY`` or ``<data_dir>/api_key``).
    ``calls`` supplies live call counts and hangs up calls when a session is ended; without it
    counts are 0. ``settings``, ``sessions`` and ``calls`` are also on ``app.state``.
    """
    key = api_key if api_key is not None else ensure_api_key(settings)[0]
    if not key:
        raise ValueError("api_key must not be empty")

    app = FastAPI(
        title="sipua",
        version=__version__,
        summary="SIP edge for real-time voice sessions.",
        description=(
            "Create a session, then let a PBX or SIP trunk dial its `sip.uri` (or `sip.tls_uri`); "
            "sipua answers and connects the call's audio to the session's media app. The "
            "session's `stream.url` and `stream.token` give a client the media stream.\n\n"
            "Every `/v1` route needs `Authorization: Bearer <api key>`."
        ),
        openapi_tags=[
            {"name": "sessions", "description": "Create, inspect, list and end sessions."},
            {"name": "events", "description": "Session events and their webhook deliveries."},
            {"name": "streams", "description": "TwiML/TeXML connecting calls to a session."},
            {"name": "health", "description": "Liveness probe and metrics."},
            {"name": "sip security", "description": "SIP digest credentials, bans, counters."},
        ],
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.calls = calls

    # Outermost first: authentication, then the body limit.
    app.add_middleware(_BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(_ApiKeyMiddleware, api_key=key)

    @app.exception_handler(StoreError)
    async def _store_failed(request: Request, exc: StoreError) -> Response:
        log.error("session store failed: %s", exc)
        return _json_response(503, "session store unavailable")

    def calls_of(session_id: str) -> int:
        if calls is None:
            return 0
        try:
            return int(calls.active_calls(session_id))
        except Exception:
            log.exception("active_calls failed", extra={"session_id": session_id})
            return 0

    def participants_of(session_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for source in (calls, getattr(app.state, "streams", None)):
            lister = getattr(source, "participants", None)
            if lister is None:
                continue
            try:
                out.extend(lister(session_id))
            except Exception:
                log.exception("participants failed", extra={"session_id": session_id})
        return out

    def view(session_id: str) -> SessionResponse:
        session = sessions.get(session_id)
        if session is None:
            raise HTTPException(404, _NOT_FOUND)
        return sessions.describe(session, calls_of(session.id), participants_of(session.id))

    # The middleware enforces the key; this declares it in the OpenAPI document.
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="apiKey",
        description="The API key: SIPUA_API_KEY, or the key generated into <data_dir>/api_key.",
    )
    unauthorized: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorMessage, "description": "Missing or invalid API key"}
    }
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorMessage, "description": "No session with this id"}
    }
    router = APIRouter(
        prefix="/v1", tags=["sessions"], dependencies=[Security(bearer)], responses=unauthorized
    )

    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionResponse,
        summary="Create a session",
        description="Creates an active session and returns its SIP URIs and media stream. "
        "The `Location` header names the new session.",
    )
    async def create_session(body: SessionCreate, response: Response) -> SessionResponse:
        try:
            session = sessions.create(body)
        except SessionRequestError as exc:
            raise RequestValidationError(exc.errors(), body=None) from None
        response.headers["Location"] = f"/v1/sessions/{session.id}"
        created = sessions.describe(session, 0)
        if session.webhook_secret is not None:
            # Shown once: later reads of the session leave it null.
            secret = session.webhook_secret.get_secret_value()
            created = created.model_copy(update={"webhook_secret": secret})
        return created

    @router.get(
        "/sessions/{session_id}",
        response_model=SessionResponse,
        summary="Get a session",
        responses=not_found,
    )
    async def get_session(session_id: SessionId) -> SessionResponse:
        return view(session_id)

    @router.get(
        "/sessions",
        response_model=SessionPage,
        summary="List sessions",
        description="Sessions in creation order, oldest first. Pass `next_after` from one page "
        "as `after` to get the next; it is null on the last page.",
    )
    async def list_sessions(
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
        after: Annotated[
            str | None,
            Query(pattern=SESSION_ID_PATTERN, description="Return sessions created after this id."),
        ] = None,
        status: Annotated[SessionStatus | None, Query(description="Only this status.")] = None,
    ) -> SessionPage:
        page = sessions.list(limit=limit, after=after, status=status)
        return SessionPage(
            data=[sessions.describe(s, calls_of(s.id)) for s in page.items],
            next_after=page.next_after,
        )

    @router.post(
        "/sessions/{session_id}/end",
        response_model=SessionResponse,
        summary="End a session",
        description="Ends the session and hangs up its calls. Ending an ended session "
        "returns it unchanged.",
        responses=not_found,
    )
    async def end_session(session_id: SessionId) -> SessionResponse:
        session = await sessions.end(session_id)
        if session is None:
            raise HTTPException(404, _NOT_FOUND)
        if calls is not None:
            try:
                await asyncio.wait_for(calls.end_calls(session_id), timeout=end_calls_timeout)
            except TimeoutError:
                log.warning(
                    "ending calls took over %.1fs",
                    end_calls_timeout,
                    extra={"session_id": session_id},
                )
            except Exception:
                log.exception("end_calls failed", extra={"session_id": session_id})
        return sessions.describe(session, calls_of(session_id), participants_of(session_id))

    @router.post(
        "/sessions/{session_id}/participants/{participant_id}/transfer",
        status_code=202,
        response_model=TransferResponse,
        summary="Transfer a participant",
        description="Hands a connected SIP participant over to `target` (blind transfer): sipua "
        "sends REFER in the call, the participant's PBX calls the target, and when the target "
        "answers sipua hangs up its own leg. 202 means the REFER was sent; the outcome arrives "
        "as `session.transfer.accepted`, `session.transfer.completed` or "
        "`session.transfer.failed` events. One transfer at a time per participant.",
        responses={
            404: {"model": ErrorMessage, "description": "No such session or participant"},
            409: {
                "model": ErrorMessage,
                "description": "Not a connected SIP call, or a transfer is already in progress",
            },
            503: {"model": ErrorMessage, "description": "The REFER could not be sent"},
        },
    )
    async def transfer_participant(
        session_id: SessionId, participant_id: ParticipantId, body: TransferCreate
    ) -> TransferResponse:
        if sessions.get(session_id) is None:
            raise HTTPException(404, _NOT_FOUND)
        transfer = getattr(calls, "transfer_participant", None)
        try:
            if transfer is None:
                raise ParticipantNotFound(participant_id)
            sent = transfer(session_id, participant_id, body.target)
        except ParticipantNotFound:
            others = participants_of(session_id)  # a media stream is there but cannot be REFERred
            if any(p.get("participant_id") == participant_id for p in others):
                raise HTTPException(409, "only SIP participants can be transferred") from None
            raise HTTPException(404, "participant not found") from None
        except InvalidTransferTarget as exc:
            error = {"type": "value_error", "loc": ("body", "target"), "msg": str(exc)}
            raise RequestValidationError([{**error, "input": body.target}], body=None) from None
        except TransferError as exc:  # not connected, or a transfer already in progress
            raise HTTPException(409, str(exc)) from None
        if not sent:
            raise HTTPException(503, "the REFER could not be sent (session.transfer.failed)")
        return TransferResponse(
            session_id=session_id, participant_id=participant_id, target=body.target
        )

    @router.post(
        "/sessions/{session_id}/dial",
        status_code=202,
        response_model=DialResponse,
        summary="Call the session's PBX (again)",
        description="Places an outbound call to the session's `provider.sip_uri` and "
        "`endpoints`, as session creation does; use it to call again after a failed or ended "
        "call. The outcome arrives as `session.provider.connecting`, `.connected` or "
        "`.failed` events.",
        responses={
            404: {"model": ErrorMessage, "description": "No such session"},
            409: {
                "model": ErrorMessage,
                "description": "The session has ended, names nothing to call, or is full",
            },
            503: {"model": ErrorMessage, "description": "No SIP user agent in this process"},
        },
    )
    async def dial_session(session_id: SessionId) -> DialResponse:
        session = sessions.get(session_id)
        if session is None:
            raise HTTPException(404, _NOT_FOUND)
        if session.status is SessionStatus.ENDED:
            raise HTTPException(409, "the session has ended")
        dialer = getattr(calls, "dialer", None)
        if dialer is None:
            raise HTTPException(503, "no SIP user agent in this process")
        endpoints = session_endpoints(session)
        if not endpoints:
            raise HTTPException(409, "the session's provider names no sip_uri or endpoints")
        if calls_of(session_id) >= settings.sip.max_calls_per_session:
            raise HTTPException(409, "the session has max_calls_per_session calls already")
        call = dialer.dial(session)
        return DialResponse(
            session_id=session_id, participant_id=call.id, endpoints=[e.uri for e in endpoints]
        )

    app.include_router(router)
    app.include_router(events_router())
    app.include_router(trace_router())
    app.include_router(metrics_router())
    app.include_router(credentials_router())
    # /v1/streams/{id} (WebSockets: stream token, not the API key) and the /demo page.
    install_streams(app, settings, sessions)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness probe")
    async def healthz() -> Health:
        return Health(status="ok", version=__version__)

    return app


def openapi_json(app: FastAPI) -> str:
    """The OpenAPI document as JSON text (for docs builds and clients)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True)
