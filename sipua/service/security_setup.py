"""Build the SIP security gate and TLS policy of ``sipua serve`` from the settings.

:func:`build_security` turns ``settings.security`` into a
:class:`~sipua.ua.security.SecurityGate` with its credential directory (configured
users plus the ``sip_credentials`` table) and the persistent nonce secret;
:meth:`SecurityRuntime.bind` connects it to the running UA and session service.
:func:`client_tls_context` and :func:`server_tls_options` apply
``security.tls`` to outbound and inbound TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipua.transport.tls import client_context
from sipua.ua.netlist import AddressList
from sipua.ua.security import SecurityGate, SecurityPolicy

from .credentials_store import (
    CredentialDirectory,
    CredentialStore,
    StoredCredential,
    ensure_digest_secret,
    hash_password,
    open_credential_store,
)
from .security_config import SecuritySettings, SipUserSettings

if TYPE_CHECKING:
    from sipua.ua.core import UserAgent

    from .config import Settings

__all__ = [
    "SecurityRuntime",
    "build_security",
    "client_tls_context",
    "configured_credentials",
    "security_policy",
    "server_tls_options",
]

log = logging.getLogger("sipua.security")


def security_policy(settings: Settings) -> SecurityPolicy:
    sec: SecuritySettings = settings.security
    return SecurityPolicy(
        auth_required=sec.auth == "required",
        realm=sec.realm,
        proxy_challenge=sec.challenge == 407,
        algorithms=tuple(sec.algorithms),
        nonce_lifetime=sec.nonce_lifetime,
        uri_check=sec.uri_check,
        unauthenticated_methods=frozenset(sec.unauthenticated_methods),
        allowlist=AddressList(sec.allowlist),
        allowlist_action=sec.allowlist_action,
        max_auth_failures=sec.max_auth_failures,
        failure_window=sec.failure_window,
        ban_time=sec.ban_time,
        ban_action=sec.ban_action,
        scanner_user_agents=tuple(sec.scanner_user_agents),
        ban_scanners=sec.ban_scanners,
        scan_requests_per_second=sec.scan_requests_per_second,
        scan_request_burst=sec.scan_request_burst,
        requests_per_second=sec.requests_per_second,
        request_burst=sec.request_burst,
        max_transactions_per_source=sec.max_transactions_per_source,
        # RFC 3261 Timers H and J: no server transaction outlives 64*T1.
        transaction_window=64 * settings.sip.t1,
        max_headers=sec.max_headers,
        max_transactions=sec.max_transactions,
        overload_lag=sec.overload_lag,
        overload_queue_delay=sec.overload_queue_delay,
        retry_after=sec.retry_after,
    )


def _configured(user: SipUserSettings, default_realm: str) -> StoredCredential:
    realm = user.realm or default_realm
    if user.password is not None:
        ha1 = hash_password(user.username, realm, user.password.get_secret_value())
    else:
        ha1 = {
            name: value.lower()
            for name, value in (
                ("MD5", user.ha1_md5),
                ("SHA-256", user.ha1_sha256),
                ("SHA-512-256", user.ha1_sha512_256),
            )
            if value
        }
    digest = hashlib.sha256(f"{user.username}\x00{realm}".encode()).hexdigest()[:20]
    return StoredCredential(
        id=f"cfg_{digest}",
        username=user.username,
        realm=realm,
        ha1=ha1,
        allowed_ips=tuple(user.allowed_ips),
        session_id=user.session_id,
        organization=user.organization,
        source="config",
    )


def configured_credentials(security: SecuritySettings) -> list[StoredCredential]:
    """The users of ``security.users``, their passwords hashed (and then dropped)."""
    return [_configured(user, security.realm) for user in security.users]


@dataclass
class SecurityRuntime:
    gate: SecurityGate
    directory: CredentialDirectory
    store: CredentialStore | None

    def bind(self, ua: UserAgent, sessions: Any) -> None:
        """Let the gate find sessions, dialogs and the transaction count of ``ua``."""
        self.gate.bind(
            sessions=sessions.resolve_sip_user,
            dialogs=ua.uas.dialogs.find,
            transactions=lambda: len(ua.layer),
        )
        try:
            self.gate.start(asyncio.get_running_loop())
        except RuntimeError:
            pass

    def admit_address(self, ip: str) -> bool:
        """For :attr:`ListenConfig.admit_address`: a new TCP or TLS connection from ``ip``."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return True
        return self.gate.admit(ip, "tcp", now)

    def close(self) -> None:
        self.gate.close()
        if self.store is not None:
            self.store.close()


def build_security(settings: Settings, *, store: CredentialStore | None = None) -> SecurityRuntime:
    """The gate for ``settings``; ``store`` defaults to the table in ``<data_dir>/sipua.db``."""
    sec: SecuritySettings = settings.security
    if store is None:
        store = open_credential_store(settings.data_dir)
    directory = CredentialDirectory(
        store, default_realm=sec.realm, configured=configured_credentials(sec)
    )
    unusable = [c.username for c in directory.list() if c.realm != sec.realm]
    if unusable:
        log.warning(
            "SIP credentials in realms other than %r are not used: %s",
            sec.realm,
            ", ".join(sorted(set(unusable))[:10]),
        )
    if sec.auth == "required" and not any(c.realm == sec.realm for c in directory.list()):
        log.warning(
            "security.auth is 'required' but no credential exists in realm %r yet: every "
            "request is refused until one is created (POST /v1/sip-credentials)",
            sec.realm,
        )
    gate = SecurityGate(
        security_policy(settings),
        directory,
        secret=ensure_digest_secret(settings.data_dir),
    )
    return SecurityRuntime(gate, directory, store)


def client_tls_context(settings: Settings) -> ssl.SSLContext:
    """Outbound TLS: certificate verification (system store or ``security.tls.ca_file``).

    The server name for SNI and the hostname check is the host of the address
    connected to (``ConnectionPool`` passes it as ``server_hostname``); an IP
    literal is checked against the certificate's IP addresses and sends no SNI.
    """
    tls = settings.security.tls
    return client_context(
        verify=tls.verify_certificate, ca_file=tls.ca_file, min_version=settings.sip.tls_min_version
    )


def server_tls_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :func:`sipua.transport.tls.server_context` (client certificates)."""
    tls = settings.security.tls
    if tls.client_certificates == "off":
        return {}
    return {
        "client_ca": tls.client_ca_file,
        "require_client_cert": tls.client_certificates == "require",
    }
