"""What an SDP offer/answer exchange decides for one RTP stream.

These are plain values: ``sipua.sip.sdp`` produces them when it negotiates, and
the media layer (``sipua.media``) consumes them to run the stream. Keeping them
here lets the media layer take them without parsing any SDP itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# SDES crypto suites we implement (RFC 4568 §6.2, RFC 7714 §14.2), strongest first.
SRTP_SUITES: tuple[str, ...] = (
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
)

# Length of master key || master salt for each suite, in octets.
SRTP_KEY_SALT_LENGTH: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format of an m-line (``a=rtpmap`` plus ``a=fmtp``)."""

    name: str  # as in the rtpmap, e.g. "PCMU", "PCMA", "G722", "opus", "telephone-event"
    payload_type: int
    clock_rate: int  # the RTP clock: 8000 for G.722 although it samples at 16 kHz
    channels: int = 1
    fmtp: tuple[tuple[str, str], ...] = ()  # ordered key/value pairs

    def fmtp_dict(self) -> dict[str, str]:
        return dict(self.fmtp)


@dataclass(frozen=True, slots=True)
class CryptoParams:
    """One SDES ``a=crypto`` line (RFC 4568 §9.1), with the key decoded."""

    tag: int
    suite: str
    key_salt: bytes  # master key || master salt
    lifetime: int | None = None  # in packets, if given
    mki: tuple[int, int] | None = None  # (value, length in octets), if given


@dataclass(frozen=True, slots=True)
class RtpParameters:
    """The outcome of offer/answer for one audio stream, from our point of view."""

    codec: Codec  # what we send, and what we expect to receive
    codecs: tuple[Codec, ...]  # every payload type of the stream we accept on receive
    dtmf: Codec | None  # telephone-event at the codec's clock rate, if negotiated
    remote_rtp: tuple[str, int] | None  # None when the peer holds (c=0.0.0.0) or port 0
    remote_rtcp: tuple[str, int] | None
    direction: str = "sendrecv"  # ours: sendrecv, sendonly, recvonly, inactive
    ptime: int = 20  # milliseconds of audio per packet we send
    srtp_local: CryptoParams | None = None  # our key: protects what we send
    srtp_remote: CryptoParams | None = None  # the peer's key: unprotects what we receive
    rtcp_mux: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def secure(self) -> bool:
        return self.srtp_local is not None
