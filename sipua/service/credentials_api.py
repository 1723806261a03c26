"""HTTP routes for SIP digest credentials and the security gate's state.

- ``POST /v1/sip-credentials``: make a credential; its password is in this response only.
- ``GET /v1/sip-credentials``, ``GET /v1/sip-credentials/{id}``: list / read (no secrets).
- ``DELETE /v1/sip-credentials/{id}``: remove one (credentials from the config file stay).
- ``GET /v1/sip-security``: counters, bans in force, overload state.
- ``DELETE /v1/sip-security/bans/{address}``: lift a ban early.

The routes sit behind the API-key middleware of :func:`sipua.service.api.create_app` and find
what they need on ``app.state``: ``sip_credentials`` (a
:class:`~sipua.service.credentials_store.CredentialDirectory`) and ``sip_security`` (the
:class:`~sipua.ua.security.SecurityGate`), both set by ``sipua serve``; 503 when absent.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from sipua.service.credentials_store import CredentialConflict, StoredCredential
from sipua.service.store import StoreError
from sipua.ua.netlist import parse_address, parse_network

__all__ = ["credentials_router"]

_USERNAME = r'^[^"\\\x00-\x1f\x7f\s]{1,128}$'
_REALM = r'^[^"\\\x00-\x1f\x7f]{1,128}$'
_SESSION_ID = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
GENERATED_PASSWORD_BYTES = 18  # 24 base64url characters, 144 bits

CredentialId = Annotated[
    str, Path(description="Credential id.", pattern=r"^(cred|cfg)_[0-9A-Za-z]{1,40}$")
]


class ErrorMessage(BaseModel):
    detail: str


class SipCredentialCreate(BaseModel):
    """``POST /v1/sip-credentials`` body."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"username": "pbx-berlin", "allowed_ips": ["203.0.113.0/28", "2001:db8:5::/48"]}
            ]
        },
    )

    username: str = Field(pattern=_USERNAME, description="The digest username the trunk sends.")
    password: SecretStr | None = Field(
        None,
        min_length=8,
        max_length=256,
        description="At least 8 characters; generated (24 characters) when omitted. Only its "
        "HA1 values are stored; it is returned once, in this response.",
    )
    realm: str | None = Field(
        None, pattern=_REALM, description="Defaults to the server's security.realm."
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="CIDR networks (IPv4 or IPv6) this credential may be used from; [] = any "
        "address the global allowlist lets in.",
    )
    session_id: str | None = Field(
        None, pattern=_SESSION_ID, description="Only calls into this session."
    )
    organization: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Only calls into sessions whose metadata.organization is this value.",
    )

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(parse_network(v)) for v in value]

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and _CONTROL.search(value.get_secret_value()):
            raise ValueError("password must not contain control characters")
        return value

    @field_validator("organization")
    @classmethod
    def _organization(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise ValueError("organization must not contain control characters")
        return value


class SipCredentialView(BaseModel):
    id: str = Field(examples=["cred_01J0Z6Q4D5N4W8R9M3S2T1V0XY"])
    username: str
    realm: str
    active: bool = Field(
        description="False when the realm is not the server's security.realm (kept, unused)."
    )
    algorithms: list[str] = Field(description="Digest algorithms an HA1 is stored for.")
    allowed_ips: list[str]
    session_id: str | None
    organization: str | None
    source: str = Field(description="'api' (stored) or 'config' (from the configuration file).")
    created_at: datetime | None


class SipCredentialCreated(SipCredentialView):
    password: str = Field(description="Shown once: it is not stored and cannot be read again.")


class SipCredentialList(BaseModel):
    data: list[SipCredentialView]


class BanView(BaseModel):
    address: str
    reason: str
    seconds_left: float


class SipSecurityView(BaseModel):
    auth: str = Field(description="'required' or 'off'.")
    realm: str
    counters: dict[str, int]
    bans: list[BanView]
    overloaded: bool
    loop_lag_ms: float | None
    queue_delay_ms: float | None = None


def _view(credential: StoredCredential, realm: str) -> dict[str, Any]:
    return {
        "id": credential.id,
        "username": credential.username,
        "realm": credential.realm,
        "active": credential.realm == realm,
        "algorithms": sorted(credential.ha1),
        "allowed_ips": list(credential.allowed_ips),
        "session_id": credential.session_id,
        "organization": credential.organization,
        "source": credential.source,
        "created_at": credential.created_at if credential.source == "api" else None,
    }


def _directory(request: Request) -> Any:
    directory = getattr(request.app.state, "sip_credentials", None)
    if directory is None:
        raise HTTPException(503, "SIP credentials unavailable")
    return directory


def _gate(request: Request) -> Any:
    gate = getattr(request.app.state, "sip_security", None)
    if gate is None:
        raise HTTPException(503, "SIP security state unavailable")
    return gate


def credentials_router() -> APIRouter:
    bearer = HTTPBearer(auto_error=False, scheme_name="apiKey")
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorMessage, "description": "Missing or invalid API key"},
        503: {"model": ErrorMessage, "description": "Not available in this process"},
    }
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorMessage, "description": "No credential with this id"}
    }
    router = APIRouter(
        prefix="/v1", tags=["sip security"], dependencies=[Security(bearer)], responses=errors
    )

    @router.post(
        "/sip-credentials",
        status_code=201,
        response_model=SipCredentialCreated,
        summary="Create a SIP credential",
        description="A digest username/password a PBX trunk authenticates with when "
        "`security.auth` is 'required'. The password (given, or generated) is returned in "
        "this response only; sipua keeps its HA1 values (MD5, SHA-256, SHA-512-256).",
        responses={
            409: {"model": ErrorMessage, "description": "The username exists in this realm"}
        },
    )
    async def create_credential(
        request: Request, body: SipCredentialCreate, response: Response
    ) -> SipCredentialCreated:
        directory = _directory(request)
        if body.session_id is not None:
            sessions = getattr(request.app.state, "sessions", None)
            if sessions is not None and sessions.get(body.session_id) is None:
                raise HTTPException(422, f"session {body.session_id} does not exist")
        password = (
            body.password.get_secret_value()
            if body.password is not None
            else secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        )
        try:
            credential = directory.create(
                body.username,
                password,
                realm=body.realm,
                allowed_ips=body.allowed_ips,
                session_id=body.session_id,
                organization=body.organization,
            )
        except CredentialConflict:
            raise HTTPException(
                409, "a credential with this username exists in this realm"
            ) from None
        except StoreError as exc:
            raise HTTPException(503, f"credential store unavailable: {exc}") from None
        response.headers["Location"] = f"/v1/sip-credentials/{credential.id}"
        return SipCredentialCreated(**_view(credential, directory.default_realm), password=password)

    @router.get("/sip-credentials", response_model=SipCredentialList, summary="List credentials")
    async def list_credentials(request: Request) -> SipCredentialList:
        directory = _directory(request)
        return SipCredentialList(
            data=[SipCredentialView(**_view(c, directory.default_realm)) for c in directory.list()]
        )

    @router.get(
        "/sip-credentials/{credential_id}",
        response_model=SipCredentialView,
        summary="Get a credential",
        responses=not_found,
    )
    async def get_credential(request: Request, credential_id: CredentialId) -> SipCredentialView:
        directory = _directory(request)
        credential = directory.get(credential_id)
        if credential is None:
            raise HTTPException(404, "credential not found")
        return SipCredentialView(**_view(credential, directory.default_realm))

    @router.delete(
        "/sip-credentials/{credential_id}",
        status_code=204,
        response_class=Response,
        summary="Delete a credential",
        description="Requests authenticating with it are refused from now on; calls it "
        "already set up go on. Credentials from the configuration file answer 409.",
        responses={
            **not_found,
            409: {"model": ErrorMessage, "description": "From the configuration file"},
        },
    )
    async def delete_credential(request: Request, credential_id: CredentialId) -> Response:
        directory = _directory(request)
        try:
            deleted = directory.delete(credential_id)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        except StoreError as exc:
            raise HTTPException(503, f"credential store unavailable: {exc}") from None
        if not deleted:
            raise HTTPException(404, "credential not found")
        return Response(status_code=204)

    @router.get(
        "/sip-security",
        response_model=SipSecurityView,
        summary="Security gate state",
        description="Counters (challenges, failures, bans, drops …), the bans in force and "
        "whether sipua is refusing new requests for overload.",
    )
    async def security_state(request: Request) -> SipSecurityView:
        gate = _gate(request)
        # Bans are timed on the UA's loop clock; the route runs in that loop.
        return SipSecurityView(**gate.status(asyncio.get_running_loop().time()))

    @router.delete(
        "/sip-security/bans/{address}",
        status_code=204,
        response_class=Response,
        summary="Lift a ban",
        responses={404: {"model": ErrorMessage, "description": "No ban on this address"}},
    )
    async def lift_ban(request: Request, address: str) -> Response:
        gate = _gate(request)
        if parse_address(address) is None:
            raise HTTPException(422, "not an IP address")
        if not gate.lift_ban(address):
            raise HTTPException(404, "no ban on this address")
        return Response(status_code=204)

    return router
