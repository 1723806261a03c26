"""The SDP offer/answer model (RFC 3264) for one audio stream, with SDES-SRTP.

Two roles:

- answerer: :func:`answer` takes the peer's offer and returns our answer SDP and
  the :class:`~sipua.sip.rtp_params.RtpParameters` it settles, or raises
  :class:`OfferRejected` with the 488 and ``Warning`` to send;
- offerer: :func:`make_offer` (late offer in a 200 OK, outbound calls,
  re-INVITEs we start) and :func:`process_answer` for the SDP that comes back.

Everything is deterministic given ``random_bytes`` (keys and the o= session id
come from it), so tests inject a fixed generator.

The state carried from one exchange to the next (RFC 3264 §8) is an
:class:`AnswerState`: the SDP we last sent and what it negotiated. ``answer``
returns one; after ``process_answer`` build it as
``AnswerState(offer_state.sdp, params)``. Either kind can be passed as
``previous`` to the next ``answer`` or ``make_offer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from .errors import SipError
from .ids import random_bytes as pooled_random_bytes
from .rtp_params import SRTP_SUITES, Codec, CryptoParams, RtpParameters
from .sdes import SdesError, format_crypto, generate_crypto, parse_crypto
from .sdp import (
    DIRECTIONS,
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    format_fmtp_params,
    parse_sdp,
)

__all__ = [
    "AnswerState",
    "MediaPolicy",
    "OfferRejected",
    "OfferState",
    "answer",
    "make_offer",
    "process_answer",
]

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class _KnownCodec:
    name: str  # as we write it in a=rtpmap
    clock_rate: int  # the RTP clock
    channels: int  # as in the rtpmap (Opus is always "/2", RFC 7587 §7)
    payload_type: int  # what we offer: the static PT, or our dynamic choice

    def rtpmap(self, payload_type: int) -> RtpMap:
        return RtpMap(
            payload_type, self.name, self.clock_rate, self.channels if self.channels > 1 else None
        )

    def matches(self, codec: Codec) -> bool:
        if codec.name.lower() != self.name.lower():
            return False
        if codec.clock_rate == self.clock_rate:
            return True
        # G.722 runs an 8000 Hz RTP clock (RFC 3551 §4.5.2), but some endpoints
        # write "G722/16000" on PT 9 (SIPp's pfca scenarios do); it is the same codec.
        return self.name == "G722" and codec.clock_rate == 16000


# The codecs the media layer implements, by lower-case name.
KNOWN_CODECS: dict[str, _KnownCodec] = {
    "opus": _KnownCodec("opus", 48000, 2, 111),
    "g722": _KnownCodec("G722", 8000, 1, 9),
    "pcmu": _KnownCodec("PCMU", 8000, 1, 0),
    "pcma": _KnownCodec("PCMA", 8000, 1, 8),
}
# RFC 4733 telephone-event PTs we offer, by clock rate.
TELEPHONE_EVENT_PAYLOAD_TYPES: dict[int, int] = {8000: 101, 48000: 110}
TELEPHONE_EVENT_EVENTS = "0-16"  # DTMF 0-9 * # A-D and flash (RFC 4733 §3.2)
SRTP_MODES = ("required", "optional", "off")

# RFC 3261 §20.43 warning codes.
W_INCOMPATIBLE_NETWORK_PROTOCOL = 300
W_INCOMPATIBLE_ADDRESS_FORMAT = 301
W_INCOMPATIBLE_TRANSPORT = 302
W_MEDIA_TYPE_NOT_AVAILABLE = 304
W_INCOMPATIBLE_MEDIA_FORMAT = 305
W_MISC = 399
_WARNING_TEXT = {
    300: "Incompatible network protocol",
    301: "Incompatible network address formats",
    302: "Incompatible transport protocol",
    304: "Media type not available",
    305: "Incompatible media format",
    399: "Miscellaneous warning",
}


class OfferRejected(SipError):
    """The SDP cannot be accepted.

    A UAS answers the INVITE (or re-INVITE) with ``status`` ``reason`` (488 Not
    Acceptable Here, RFC 3261 §21.4.26) and a ``Warning: <warning>`` header; a
    re-INVITE rejected this way leaves the previous session in place (RFC 3261
    §14.2). ``code`` is the warning code, ``detail`` the human-readable reason.
    """

    def __init__(
        self,
        code: int,
        detail: str,
        *,
        agent: str = "sipua",
        status: int = 488,
        reason: str = "Not Acceptable Here",
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.agent = agent
        self.status = status
        self.reason = reason

    @property
    def warning(self) -> str:
        """The ``Warning`` header value: ``305 sipua "Incompatible media format: …"``."""
        text = f"{_WARNING_TEXT.get(self.code, 'Warning')}: {self.detail}"
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.code} {self.agent} "{text}"'

    def __repr__(self) -> str:
        return f"OfferRejected({self.status}, {self.warning})"


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """What we accept and offer. Codec names are case-insensitive."""

    codecs: tuple[str, ...] = ("opus", "G722", "PCMU", "PCMA")  # our preference order
    srtp: str = "optional"  # required | optional | off
    crypto_suites: tuple[str, ...] = SRTP_SUITES  # allowed; offered in this order
    ptime: int = 20  # ms, when the peer does not ask for a usable one
    dtmf: bool = True  # negotiate RFC 4733 telephone-event
    rtcp_mux: bool = True  # accept a=rtcp-mux when offered (RTP and RTCP on one port)
    session_name: str = "sipua"  # s=
    username: str = "-"  # o= username
    session_id: int | None = None  # o= sess-id; None draws one from random_bytes
    session_version: int | None = None  # first o= sess-version; None: same as sess-id
    warning_agent: str = "sipua"  # warn-agent of the Warning header

    def __post_init__(self) -> None:
        codecs = (self.codecs,) if isinstance(self.codecs, str) else tuple(self.codecs)
        object.__setattr__(self, "codecs", codecs)
        object.__setattr__(self, "crypto_suites", tuple(self.crypto_suites))
        if not codecs:
            raise ValueError("MediaPolicy.codecs is empty")
        for name in codecs:
            if name.lower() not in KNOWN_CODECS:
                known = ", ".join(c.name for c in KNOWN_CODECS.values())
                raise ValueError(f"codec {name!r} is not implemented (known: {known})")
        if self.srtp not in SRTP_MODES:
            raise ValueError(f"MediaPolicy.srtp must be one of {SRTP_MODES}, not {self.srtp!r}")
        for suite in self.crypto_suites:
            if suite not in SRTP_SUITES:
                raise ValueError(f"crypto suite {suite!r} is not one of {SRTP_SUITES}")
        if self.srtp != "off" and not self.crypto_suites:
            raise ValueError(f"srtp={self.srtp!r} needs at least one crypto suite")
        if self.ptime % 10 or not 10 <= self.ptime <= 60:
            raise ValueError(f"ptime must be a multiple of 10 in 10..60 ms, not {self.ptime}")

    def known_codecs(self) -> list[_KnownCodec]:
        return [KNOWN_CODECS[name.lower()] for name in self.codecs]


class AnswerState(NamedTuple):
    """The SDP we last sent in a session and what that exchange negotiated.

    Unpacks as ``(sdp, params)``. Pass it as ``previous`` to the next
    :func:`answer` or :func:`make_offer` of the same session (RFC 3264 §8).
    """

    sdp: SessionDescription
    params: RtpParameters


@dataclass(frozen=True, slots=True)
class OfferState:
    """What :func:`make_offer` offered, needed to read the answer."""

    sdp: SessionDescription
    policy: MediaPolicy
    codecs: tuple[Codec, ...]  # the audio codecs we offered, our PTs
    telephone_events: tuple[Codec, ...]
    cryptos: tuple[CryptoParams, ...]  # our keys, one per offered a=crypto
    direction: str


# --- helpers shared by both roles --------------------------------------------------


def _reject(policy: MediaPolicy, code: int, detail: str) -> OfferRejected:
    return OfferRejected(code, detail, agent=policy.warning_agent)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _new_origin(policy: MediaPolicy, local_addr: str, random_bytes: RandomBytes) -> Origin:
    if policy.session_id is not None:
        session_id = policy.session_id
    else:
        # RFC 8866 §5.2 suggests an NTP timestamp; any number unique enough will do.
        session_id = int.from_bytes(bytes(random_bytes(4)), "big") & 0x7FFFFFFF
    version = policy.session_version if policy.session_version is not None else session_id
    return Origin(
        username=policy.username,
        session_id=session_id,
        session_version=version,
        address=local_addr,
        addrtype=_addrtype(local_addr),
    )


def _next_origin(
    previous: AnswerState | OfferState | None,
    policy: MediaPolicy,
    local_addr: str,
    random_bytes: RandomBytes,
) -> Origin:
    if previous is None:
        return _new_origin(policy, local_addr, random_bytes)
    # RFC 3264 §8: the o= line of a new SDP in the session is the previous one with
    # sess-version incremented by one. (§8 also allows an identical SDP with the
    # same version; we always increment, which is simpler for peers to compare.)
    old = previous.sdp.origin
    return replace(old, session_version=old.session_version + 1)


def _session(
    origin: Origin, policy: MediaPolicy, local_addr: str, media: Iterable[MediaDescription]
) -> SessionDescription:
    return SessionDescription(
        origin=origin,
        session_name=policy.session_name,
        connection=Connection(address=local_addr, addrtype=_addrtype(local_addr)),
        media=tuple(media),
    )


def _telephone_event(codecs: Iterable[Codec], clock_rate: int) -> Codec | None:
    # RFC 4733 §2.1: events share the audio stream's timestamps, so only a
    # telephone-event at the codec's own clock rate is usable with it.
    for codec in codecs:
        if codec.name.lower() == "telephone-event" and codec.clock_rate == clock_rate:
            return codec
    return None


def _choose_ptime(media: MediaDescription, default: int) -> int:
    """The peer's a=ptime if it is a multiple of 10 in 10..60 and ≤ a=maxptime, else ours."""
    maxptime = media.maxptime
    limit = min(60, maxptime) if maxptime is not None else 60
    ptime = media.ptime
    if ptime is not None and ptime % 10 == 0 and 10 <= ptime <= limit:
        return ptime
    if default <= limit:
        return default
    return max(10, limit - limit % 10)


def _hold_direction(direction: str) -> str:
    # RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) means "do not send to me".
    return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)


def _our_direction(peer_direction: str, wish: str) -> str:
    """Our direction, given the peer's (as written in its SDP) and what we want (RFC 3264 §6.1)."""
    we_send = peer_direction in ("sendrecv", "recvonly") and wish in ("sendrecv", "sendonly")
    we_receive = peer_direction in ("sendrecv", "sendonly") and wish in ("sendrecv", "recvonly")
    if we_send and we_receive:
        return "sendrecv"
    if we_send:
        return "sendonly"
    if we_receive:
        return "recvonly"
    return "inactive"


def _connection(
    sdp: SessionDescription, media: MediaDescription, policy: MediaPolicy
) -> Connection:
    conn = sdp.effective_connection(media)
    if conn is None:
        raise _reject(policy, W_INCOMPATIBLE_ADDRESS_FORMAT, "no c= line for the audio stream")
    if conn.nettype.upper() != "IN":
        raise _reject(
            policy, W_INCOMPATIBLE_NETWORK_PROTOCOL, f"network type {conn.nettype!r} is not IN"
        )
    if conn.addrtype.upper() not in ("IP4", "IP6"):
        raise _reject(
            policy,
            W_INCOMPATIBLE_ADDRESS_FORMAT,
            f"address type {conn.addrtype!r} is not IP4 or IP6",
        )
    return conn


def _remote_addresses(
    conn: Connection, media: MediaDescription, rtcp_mux: bool, hold: bool
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    if hold or media.port == 0:
        return None, None
    rtp = (conn.address, media.port)
    if rtcp_mux:
        return rtp, rtp
    rtcp_attr = media.rtcp
    if rtcp_attr is not None:
        # RFC 3605 §2.1: the port, and optionally the address, of the peer's RTCP.
        address = rtcp_attr.connection.address if rtcp_attr.connection else conn.address
        return rtp, (address, rtcp_attr.port)
    if media.port + 1 > 65535:
        return rtp, None
    return rtp, (conn.address, media.port + 1)  # RFC 3550 §11: the next port up


def _rtp_proto_kind(proto: str) -> str | None:
    """'plain' for RTP/AVP(F), 'sdes' for RTP/SAVP(F), None for anything else."""
    upper = proto.upper()
    if upper in ("RTP/AVP", "RTP/AVPF"):
        return "plain"
    if upper in ("RTP/SAVP", "RTP/SAVPF"):
        return "sdes"
    return None


def _unsupported_proto(policy: MediaPolicy, proto: str) -> OfferRejected:
    if "TLS" in proto.upper():
        return _reject(
            policy,
            W_INCOMPATIBLE_TRANSPORT,
            f"{proto} (DTLS-SRTP) is not supported; use RTP/SAVP with a=crypto (SDES)",
        )
    return _reject(
        policy, W_INCOMPATIBLE_TRANSPORT, f"transport {proto!r} is not RTP/AVP or RTP/SAVP"
    )


def _parse_cryptos(media: MediaDescription) -> tuple[list[CryptoParams], list[str]]:
    """The usable a=crypto lines in order, and a note on each one skipped."""
    usable, skipped = [], []
    for value in media.crypto_lines:
        try:
            params = parse_crypto(value)
        except SdesError as exc:
            skipped.append(exc.detail)
            continue
        if params is None:
            skipped.append(f"suite {value.split()[1]} unknown")  # parse_crypto checked the shape
        else:
            usable.append(params)
    return usable, skipped


def _describe(codecs: Iterable[Codec]) -> str:
    return ", ".join(f"{c.name}/{c.clock_rate}" for c in codecs) or "none we can name"


def _codec_attributes(
    codec: Codec, rtpmap: RtpMap, fmtp: tuple[tuple[str, str], ...]
) -> list[Attribute]:
    attrs = [Attribute("rtpmap", str(rtpmap))]
    if fmtp:
        attrs.append(Attribute("fmtp", f"{codec.payload_type} {format_fmtp_params(fmtp)}"))
    return attrs


def _answer_fmtp(known: _KnownCodec, codec: Codec) -> tuple[tuple[str, str], ...]:
    if known.name == "opus":
        # RFC 7587 §7: sprop-* describe the offerer's own sending; the rest are
        # receiver preferences we can honour too, so they are echoed.
        return tuple((k, v) for k, v in codec.fmtp if not k.lower().startswith("sprop-"))
    return codec.fmtp


# --- answerer ----------------------------------------------------------------------


def answer(
    offer: SessionDescription | bytes | str,
    policy: MediaPolicy,
    local_addr: str,
    local_port: int,
    *,
    previous: AnswerState | OfferState | None = None,
    direction: str = "sendrecv",
    random_bytes: RandomBytes = pooled_random_bytes,
) -> AnswerState:
    """Answer ``offer`` (RFC 3264 §6): returns ``(answer_sdp, params)`` as an AnswerState.

    The first audio m-line we can use is accepted; every other m-line is
    answered with port 0. ``direction`` is what we want (``sendonly`` while we
    hold the peer); the answer is its intersection with the offer's.
    ``previous`` is the state of the session's last exchange on a re-INVITE.
    Raises :class:`OfferRejected` (488 + Warning), or :class:`SdpError` (400)
    when ``offer`` is bytes that do not parse.
    """
    _check_direction(direction)
    if not isinstance(offer, SessionDescription):
        offer = parse_sdp(offer)
    accepted: tuple[int, MediaDescription, RtpParameters] | None = None
    problems: list[OfferRejected] = []
    for index, media in enumerate(offer.media):
        if media.media.lower() != "audio" or media.port == 0:
            continue  # port 0: a stream the offerer has disabled (RFC 3264 §5.1)
        try:
            accepted = (
                index,
                *_answer_audio(offer, media, policy, local_port, previous, direction, random_bytes),
            )
        except OfferRejected as exc:
            problems.append(exc)
            continue
        break
    if accepted is None:
        if problems:
            raise problems[0]
        raise _reject(policy, W_MEDIA_TYPE_NOT_AVAILABLE, "the offer has no active audio stream")

    accepted_index, accepted_media, params = accepted
    # RFC 3264 §6: same number and order of m-lines; a refused stream has port 0
    # and keeps the offered format list.
    media_out = [
        accepted_media
        if index == accepted_index
        else MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)
        for index, media in enumerate(offer.media)
    ]
    origin = _next_origin(previous, policy, local_addr, random_bytes)
    return AnswerState(_session(origin, policy, local_addr, media_out), params)


def _answer_audio(
    offer: SessionDescription,
    media: MediaDescription,
    policy: MediaPolicy,
    local_port: int,
    previous: AnswerState | OfferState | None,
    wish: str,
    random_bytes: RandomBytes,
) -> tuple[MediaDescription, RtpParameters]:
    kind = _rtp_proto_kind(media.proto)
    if kind is None:
        raise _unsupported_proto(policy, media.proto)
    if kind == "sdes" and policy.srtp == "off":
        raise _reject(
            policy, W_INCOMPATIBLE_TRANSPORT, f"{media.proto} offered but SRTP is disabled here"
        )
    conn = _connection(offer, media, policy)

    offered = media.rtp_codecs()
    common = [
        (known, found)
        for known in policy.known_codecs()
        if (found := next((c for c in offered if known.matches(c)), None)) is not None
    ]
    match = common[0] if common else None
    if policy.dtmf and match is not None and _telephone_event(offered, match[0].clock_rate) is None:
        # RFC 4733 events must share the codec's clock. A peer that offers Opus but
        # telephone-event only at 8000 gets a narrowband codec with DTMF rather than
        # Opus without it: a voice agent that cannot hear key presses is broken.
        match = next((m for m in common if _telephone_event(offered, m[0].clock_rate)), match)
    if match is None:
        raise _reject(
            policy,
            W_INCOMPATIBLE_MEDIA_FORMAT,
            f"no common codec (offered {_describe(offered)}; we accept {', '.join(policy.codecs)})",
        )
    chosen_known, chosen = match
    # What we send and receive: the offerer's PT, our name and clock (RFC 3264 §6.1).
    codec = Codec(
        name=chosen_known.name,
        payload_type=chosen.payload_type,
        clock_rate=chosen_known.clock_rate,
        channels=chosen_known.channels,
        fmtp=chosen.fmtp,
    )
    dtmf = _telephone_event(offered, chosen_known.clock_rate) if policy.dtmf else None

    srtp_remote, srtp_local = _answer_crypto(media, kind, policy, previous, random_bytes)

    hold = conn.is_unspecified
    peer_direction = offer.effective_direction(media)
    if hold:
        peer_direction = _hold_direction(peer_direction)
    our_direction = _our_direction(peer_direction, wish)
    rtcp_mux = media.rtcp_mux and policy.rtcp_mux
    remote_rtp, remote_rtcp = _remote_addresses(conn, media, rtcp_mux, hold)
    ptime = _choose_ptime(media, policy.ptime)

    attributes = _codec_attributes(
        codec, chosen_known.rtpmap(codec.payload_type), _answer_fmtp(chosen_known, codec)
    )
    formats = [str(codec.payload_type)]
    if dtmf is not None:
        formats.append(str(dtmf.payload_type))
        attributes += _codec_attributes(
            dtmf,
            RtpMap(dtmf.payload_type, "telephone-event", dtmf.clock_rate),
            dtmf.fmtp or ((TELEPHONE_EVENT_EVENTS, ""),),
        )
    attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute(our_direction))
    if rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))
    if srtp_local is not None:
        attributes.append(Attribute("crypto", format_crypto(srtp_local)))
    answer_media = MediaDescription(
        media=media.media,
        port=local_port,
        # The offered profile, echoed: RTP/SAVP(F) for SDES (never a fingerprint),
        # and RTP/AVP even when best-effort crypto was accepted on it.
        proto=media.proto,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )
    params = RtpParameters(
        codec=codec,
        codecs=(codec,) if dtmf is None else (codec, dtmf),
        dtmf=dtmf,
        remote_rtp=remote_rtp,
        remote_rtcp=remote_rtcp,
        direction=our_direction,
        ptime=ptime,
        srtp_local=srtp_local,
        srtp_remote=srtp_remote,
        rtcp_mux=rtcp_mux,
    )
    return answer_media, params


def _answer_crypto(
    media: MediaDescription,
    kind: str,
    policy: MediaPolicy,
    previous: AnswerState | OfferState | None,
    random_bytes: RandomBytes,
) -> tuple[CryptoParams | None, CryptoParams | None]:
    """(their key, our key) for the stream, or (None, None) for plain RTP."""
    if policy.srtp == "off":
        return None, None  # an RTP/SAVP offer was refused before; crypto on RTP/AVP is ignored
    usable, skipped = _parse_cryptos(media)
    # RFC 4568 §7.1.1: the answerer takes the first line, in the offerer's order,
    # that it supports.
    remote = next((c for c in usable if c.suite in policy.crypto_suites), None)
    if remote is None:
        if kind == "sdes" or policy.srtp == "required":
            offered = (
                "; ".join([f"{c.suite} not allowed" for c in usable] + skipped)
                or "no a=crypto line"
            )
            raise _reject(
                policy,
                W_INCOMPATIBLE_TRANSPORT,
                f"SRTP {'is required' if kind != 'sdes' else 'offered'} but no usable a=crypto "
                f"({offered}; we allow {', '.join(policy.crypto_suites)})",
            )
        # Best-effort SRTP we cannot do, or plain RTP: never encrypt toward a peer
        # whose crypto we did not accept.
        return None, None
    return remote, _our_key(remote, previous, random_bytes)


def _previous_params(previous: AnswerState | OfferState | None) -> RtpParameters | None:
    return previous.params if isinstance(previous, AnswerState) else None


def _our_key(
    remote: CryptoParams,
    previous: AnswerState | OfferState | None,
    random_bytes: RandomBytes,
) -> CryptoParams:
    params = _previous_params(previous)
    if (
        params is not None
        and params.srtp_local is not None
        and params.srtp_remote is not None
        and params.srtp_local.suite == remote.suite
        and params.srtp_remote.suite == remote.suite
        and params.srtp_remote.key_salt == remote.key_salt
    ):
        # Re-INVITE with the peer's key unchanged: keep ours, so our SRTP context
        # (ROC, replay state) carries on (RFC 4568 §7.1.4). The tag is the offer's.
        return replace(params.srtp_local, tag=remote.tag)
    return generate_crypto(remote.tag, remote.suite, random_bytes)


# --- offerer -----------------------------------------------------------------------


def make_offer(
    policy: MediaPolicy,
    local_addr: str,
    local_port: int,
    *,
    previous: AnswerState | OfferState | None = None,
    direction: str = "sendrecv",
    random_bytes: RandomBytes = pooled_random_bytes,
) -> tuple[SessionDescription, OfferState]:
    """An offer with one audio m-line: all our codecs in preference order.

    SRTP ``required`` offers RTP/SAVP with one a=crypto per allowed suite;
    ``optional`` offers the same crypto lines on RTP/AVP (best-effort SRTP, which
    PBXes that do SDES understand); ``off`` offers plain RTP/AVP.
    """
    _check_direction(direction)
    codecs = []
    attributes: list[Attribute] = []
    for known in policy.known_codecs():
        codec = Codec(known.name, known.payload_type, known.clock_rate, known.channels)
        codecs.append(codec)
        attributes.append(Attribute("rtpmap", str(known.rtpmap(known.payload_type))))
    events = []
    if policy.dtmf:
        for rate in sorted({c.clock_rate for c in codecs}):
            pt = TELEPHONE_EVENT_PAYLOAD_TYPES[rate]
            events.append(Codec("telephone-event", pt, rate, fmtp=((TELEPHONE_EVENT_EVENTS, ""),)))
            attributes.append(Attribute("rtpmap", str(RtpMap(pt, "telephone-event", rate))))
            attributes.append(Attribute("fmtp", f"{pt} {TELEPHONE_EVENT_EVENTS}"))
    attributes.append(Attribute("ptime", str(policy.ptime)))
    attributes.append(Attribute(direction))

    cryptos: list[CryptoParams] = []
    if policy.srtp != "off":
        # Keep the key in use across re-INVITEs; an unanswered OfferState has none.
        params = _previous_params(previous)
        previous_local = params.srtp_local if params is not None else None
        for tag, suite in enumerate(policy.crypto_suites, 1):
            if previous_local is not None and previous_local.suite == suite:
                crypto = replace(previous_local, tag=tag)
            else:
                crypto = generate_crypto(tag, suite, random_bytes)
            cryptos.append(crypto)
            attributes.append(Attribute("crypto", format_crypto(crypto)))
    proto = "RTP/SAVP" if policy.srtp == "required" else "RTP/AVP"
    media = MediaDescription(
        media="audio",
        port=local_port,
        proto=proto,
        formats=tuple(str(c.payload_type) for c in (*codecs, *events)),
        attributes=tuple(attributes),
    )
    origin = _next_origin(previous, policy, local_addr, random_bytes)
    sdp = _session(origin, policy, local_addr, [media])
    state = OfferState(
        sdp=sdp,
        policy=policy,
        codecs=tuple(codecs),
        telephone_events=tuple(events),
        cryptos=tuple(cryptos),
        direction=direction,
    )
    return sdp, state


def process_answer(
    offer_state: OfferState, answer_sdp: SessionDescription | bytes | str
) -> RtpParameters:
    """Read the answer to our offer (RFC 3264 §7); raises OfferRejected if unusable.

    The caller ends the session (BYE, or CANCEL/ACK+BYE) when it raises: the
    answer has no codec of ours, refuses the audio stream, or lacks the SRTP
    our policy requires.
    """
    policy = offer_state.policy
    if not isinstance(answer_sdp, SessionDescription):
        try:
            answer_sdp = parse_sdp(answer_sdp)
        except SdpError as exc:
            raise _reject(policy, W_MISC, f"malformed SDP answer: {exc.detail}") from None
    ours = offer_state.sdp.media
    if len(answer_sdp.media) != len(ours):
        raise _reject(
            policy,
            W_MISC,
            f"the answer has {len(answer_sdp.media)} m-lines for the {len(ours)} offered "
            "(RFC 3264 §6)",
        )
    media = answer_sdp.media[0]
    if media.port == 0:
        raise _reject(policy, W_MEDIA_TYPE_NOT_AVAILABLE, "the peer refused the audio stream")
    kind = _rtp_proto_kind(media.proto)
    if kind is None:
        raise _unsupported_proto(policy, media.proto)
    conn = _connection(answer_sdp, media, policy)

    answered = media.rtp_codecs()
    # The answerer's order is its preference (RFC 3264 §6.1); take the first of ours.
    match = next(
        (
            (mine, theirs)
            for theirs in answered
            for mine in offer_state.codecs
            if KNOWN_CODECS[mine.name.lower()].matches(theirs)
        ),
        None,
    )
    if match is None:
        raise _reject(
            policy,
            W_INCOMPATIBLE_MEDIA_FORMAT,
            f"the answer has no codec from our offer (answered {_describe(answered)})",
        )
    mine, theirs = match
    # RFC 3264 §5.1: the PTs in the answer are what the answerer receives.
    codec = replace(mine, payload_type=theirs.payload_type, fmtp=theirs.fmtp)
    dtmf = None
    if _telephone_event(offer_state.telephone_events, codec.clock_rate) is not None:
        dtmf = _telephone_event(answered, codec.clock_rate)

    srtp_local, srtp_remote = _answered_crypto(offer_state, media, kind)

    hold = conn.is_unspecified
    peer_direction = answer_sdp.effective_direction(media)
    if hold:
        peer_direction = _hold_direction(peer_direction)
    # We never offer a=rtcp-mux, so an answer cannot turn it on (RFC 5761 §5.1.1).
    remote_rtp, remote_rtcp = _remote_addresses(conn, media, False, hold)
    return RtpParameters(
        codec=codec,
        codecs=(codec,) if dtmf is None else (codec, dtmf),
        dtmf=dtmf,
        remote_rtp=remote_rtp,
        remote_rtcp=remote_rtcp,
        direction=_our_direction(peer_direction, offer_state.direction),
        ptime=_choose_ptime(media, policy.ptime),
        srtp_local=srtp_local,
        srtp_remote=srtp_remote,
        rtcp_mux=False,
    )


def _answered_crypto(
    offer_state: OfferState, media: MediaDescription, kind: str
) -> tuple[CryptoParams | None, CryptoParams | None]:
    """(our key, their key) from the answer's a=crypto, checked against our offer."""
    policy = offer_state.policy
    lines = media.crypto_lines
    if not offer_state.cryptos:
        if kind == "sdes" or lines:
            raise _reject(
                policy, W_INCOMPATIBLE_TRANSPORT, "the answer uses SRTP, which we did not offer"
            )
        return None, None
    if not lines:
        if policy.srtp == "required" or kind == "sdes":
            raise _reject(
                policy, W_INCOMPATIBLE_TRANSPORT, "SRTP is required but the answer has no a=crypto"
            )
        return None, None  # best-effort SRTP declined: plain RTP both ways
    if len(lines) != 1:
        raise _reject(
            policy, W_INCOMPATIBLE_TRANSPORT, f"the answer has {len(lines)} a=crypto lines, not 1"
        )
    try:
        remote = parse_crypto(lines[0])
    except SdesError as exc:
        raise _reject(policy, W_INCOMPATIBLE_TRANSPORT, f"answer a=crypto: {exc.detail}") from None
    # RFC 4568 §7.1.3: the answer names one of our tags, with the same suite.
    local = next(
        (
            c
            for c in offer_state.cryptos
            if remote is not None and c.tag == remote.tag and c.suite == remote.suite
        ),
        None,
    )
    if remote is None or local is None:
        raise _reject(
            policy,
            W_INCOMPATIBLE_TRANSPORT,
            f"the answer's a=crypto does not match a tag and suite we offered: {lines[0]!r}",
        )
    return local, remote
