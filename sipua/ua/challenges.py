"""Answering Digest challenges to the requests sipua sends (RFC 3261 §22.2, §22.3).

Today those are the BYEs that end calls from our side: a PBX that authenticates
every request challenges them with 401 (or 407 from a proxy on the path). The
credentials are the session's (``provider.username`` / ``provider.password``, the
ones the customer gave for its trunk). Each challenge is answered once; a second
challenge to an answered one (not ``stale``) means the password is wrong, and the
request is given up, never retried in a loop (:class:`sipua.sip.auth.DigestClient`).
"""

from __future__ import annotations

import logging
from typing import Any

from sipua.sip.auth import Authorization, DigestClient, GiveUp, challenge_header_name
from sipua.sip.message import Request, Response

log = logging.getLogger(__name__)


def session_credentials(session: Any) -> tuple[str, str] | None:
    """The username and password a session's provider gave for its trunk, if any."""
    provider = getattr(session, "provider", None)
    username = getattr(provider, "username", None)
    password = getattr(provider, "password", None)
    if not username or password is None:
        return None
    if hasattr(password, "get_secret_value"):
        password = password.get_secret_value()
    return str(username), str(password)


class ChallengeResponder:
    """Per call leg, a Digest client and the credentials each pending request carried."""

    def __init__(self) -> None:
        self._clients: dict[str, DigestClient] = {}
        self._sent: dict[str, tuple[Authorization, ...]] = {}  # leg -> what its request carried

    def answer(
        self, leg_id: str, session: Any, request: Request, response: Response
    ) -> tuple[Authorization, ...] | None:
        """The credentials to resend ``request`` with after ``response`` (401/407), or None
        when it should not be resent (no credentials, nothing we can answer, or refused)."""
        proxy = response.status == 407
        challenges = response.get_all(challenge_header_name(proxy))
        client = self._clients.get(leg_id)
        if client is None:
            credentials = session_credentials(session)
            if credentials is None:
                log.warning(
                    "leg %s: %s challenged with %d but the session has no provider credentials",
                    leg_id,
                    request.method,
                    response.status,
                )
                return None
            client = self._clients[leg_id] = DigestClient(*credentials)
        result = client.respond(
            challenges,
            request.method,
            str(request.uri),
            sent=self._sent.get(leg_id, ()),
            proxy=proxy,
            body=request.body,
        )
        if isinstance(result, GiveUp):
            log.warning(
                "leg %s: %s challenged with %d, not resent: %s",
                leg_id,
                request.method,
                response.status,
                result.reason,
            )
            self._sent.pop(leg_id, None)
            return None
        self._sent[leg_id] = result.authorizations
        return result.authorizations

    def forget(self, leg_id: str) -> None:
        self._clients.pop(leg_id, None)
        self._sent.pop(leg_id, None)
