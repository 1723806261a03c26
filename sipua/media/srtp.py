"""SRTP/SRTCP for SDES-keyed streams (RFC 3711, RFC 4568, RFC 7714) via pylibsrtp.

One :class:`SrtpTransform` per stream holds two libsrtp sessions: the inbound
one keyed with the peer's ``a=crypto`` key (``srtp_remote``) unprotects what we
receive, the outbound one keyed with ours (``srtp_local``) protects what we
send. A packet that fails authentication, is replayed or cannot be parsed is
dropped and counted; no exception reaches the event loop.

We never encrypt toward a peer that offered no crypto: without ``srtp_local``
the transform passes packets through untouched.
"""

from __future__ import annotations

import logging

import pylibsrtp
from pylibsrtp import Policy, Session

from sipua.sip.rtp_params import SRTP_KEY_SALT_LENGTH, CryptoParams

logger = logging.getLogger(__name__)

# SDES suite name (RFC 4568 §6.2, RFC 7714 §14.2) -> libsrtp profile.
SUITE_PROFILES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}

# libsrtp's srtp_err_status_t texts as pylibsrtp reports them (its ERRORS table).
AUTH_FAIL = "authentication failure"
REPLAY_FAIL = ("replay check failed (bad index)", "replay check failed (index too old)")


class SrtpConfigError(ValueError):
    """The negotiated crypto cannot be used (unknown suite, MKI, bad key length)."""


def is_supported(crypto: CryptoParams) -> bool:
    """True if :class:`SrtpTransform` can use ``crypto`` (for the SDP layer's answer)."""
    return (
        crypto.suite in SUITE_PROFILES
        and crypto.mki is None
        and len(crypto.key_salt) == SRTP_KEY_SALT_LENGTH[crypto.suite]
    )


def _policy(crypto: CryptoParams, ssrc_type: int) -> Policy:
    if crypto.suite not in SUITE_PROFILES:
        raise SrtpConfigError(f"unsupported SRTP suite {crypto.suite}")
    if crypto.mki is not None:
        # pylibsrtp exposes no MKI; the SDP layer should not accept MKI lines.
        raise SrtpConfigError("SRTP MKI is not supported")
    expected = SRTP_KEY_SALT_LENGTH[crypto.suite]
    if len(crypto.key_salt) != expected:
        raise SrtpConfigError(
            f"{crypto.suite} needs {expected} octets of key||salt, got {len(crypto.key_salt)}"
        )
    return Policy(
        key=bytes(crypto.key_salt), ssrc_type=ssrc_type, srtp_profile=SUITE_PROFILES[crypto.suite]
    )


class SrtpTransform:
    """Protects outbound and unprotects inbound RTP/RTCP of one stream."""

    def __init__(self, local: CryptoParams | None, remote: CryptoParams | None) -> None:
        self.local = local
        self.remote = remote
        self._tx: Session | None = None
        self._rx: Session | None = None
        if local is not None:
            self._tx = Session(_policy(local, Policy.SSRC_ANY_OUTBOUND))
        if remote is not None:
            # With "any inbound", libsrtp clones a per-SSRC context from this
            # template only once a packet authenticates, so forged SSRCs cost nothing.
            self._rx = Session(_policy(remote, Policy.SSRC_ANY_INBOUND))
        self.auth_failures = 0
        self.replays = 0
        self.malformed = 0
        self.protect_errors = 0

    @property
    def encrypts(self) -> bool:
        return self._tx is not None

    @property
    def decrypts(self) -> bool:
        return self._rx is not None

    def same_keys(self, local: CryptoParams | None, remote: CryptoParams | None) -> bool:
        """True if a re-INVITE kept both keys, so the contexts (ROC, replay window) stay."""
        return _key(local) == _key(self.local) and _key(remote) == _key(self.remote)

    # -- outbound -----------------------------------------------------------

    def protect_rtp(self, packet: bytes) -> bytes | None:
        if self._tx is None:
            return packet
        try:
            return self._tx.protect(packet)
        except (pylibsrtp.Error, ValueError):
            self.protect_errors += 1
            return None

    def protect_rtcp(self, packet: bytes) -> bytes | None:
        if self._tx is None:
            return packet
        try:
            return self._tx.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.protect_errors += 1
            return None

    # -- inbound ------------------------------------------------------------

    def unprotect_rtp(self, packet: bytes) -> bytes | None:
        """Return the plain RTP packet, or None (counted) if it must be dropped."""
        if self._rx is None:
            return packet
        try:
            return self._rx.unprotect(packet)
        except pylibsrtp.Error as exc:
            self._count(exc)
        except ValueError:  # longer than pylibsrtp's 1500-octet buffer
            self.malformed += 1
        return None

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        if self._rx is None:
            return packet
        try:
            return self._rx.unprotect_rtcp(packet)
        except pylibsrtp.Error as exc:
            self._count(exc)
        except ValueError:
            self.malformed += 1
        return None

    def _count(self, exc: pylibsrtp.Error) -> None:
        reason = exc.args[0] if exc.args else ""
        if reason == AUTH_FAIL:
            self.auth_failures += 1
        elif reason in REPLAY_FAIL:
            self.replays += 1
        else:
            # "unsupported parameter", "error parsing data" ...: truncated or not SRTP at all
            self.malformed += 1


def _key(crypto: CryptoParams | None) -> tuple[str, bytes] | None:
    return None if crypto is None else (crypto.suite, bytes(crypto.key_salt))
