"""The INVITE the replay sends: fresh Via/Contact/tags, the captured caller's headers and
its SDP offer pointed at our own RTP socket."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..sip.builders import make_cancel, make_request
from ..sip.errors import ParseError
from ..sip.headers import NameAddr
from ..sip.ids import new_branch, new_call_id, new_tag
from ..sip.message import Request
from ..sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    RtcpAttribute,
    SessionDescription,
)
from ..sip.uri import SipUri, Uri, parse_uri
from .capture import (
    CapturedCall,
    _first_audio,
)
from .common import (
    _ICE_ATTRIBUTES,
    _NOT_CARRIED,
    ReplayUsageError,
)

# -- the INVITE we send ---------------------------------------------------------------------


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def replay_request_uri(
    captured: Uri, host: str, port: int, transport: str, override: str | None = None
) -> Uri:
    """``--uri`` when given, else the captured Request-URI sent to ``host:port``.

    The user part and parameters (``user=phone`` …) are the customer's and stay;
    ``maddr`` would send the request elsewhere and goes; a ``transport`` parameter says
    the replay's transport, not the captured one.
    """
    if override is not None:
        try:
            uri = parse_uri(override)
        except ParseError as e:
            raise ReplayUsageError(f"bad --uri {override!r}: {e.detail}") from None
        if not isinstance(uri, SipUri):
            raise ReplayUsageError(f"--uri must be a sip: or sips: URI, not {override!r}")
        return uri
    if not isinstance(captured, SipUri):
        raise ReplayUsageError(f"the captured Request-URI {captured} is not a SIP URI: give --uri")
    params = {k: v for k, v in captured.params.items() if k != "maddr"}
    if "transport" in params:
        params["transport"] = transport
    host_text = f"[{host}]" if ":" in host else host
    return captured.replace(host=host_text, port=port, params=params)


def rewrite_offer(offer: SessionDescription, address: str, port: int) -> SessionDescription:
    """The caller's offer with its media pointed at our RTP socket.

    c= (session and media level) and the first audio m= port become ours, and so does
    ``a=rtcp``, so that the UAS's RTCP comes to the socket we read instead of the
    customer's phone. Other media streams are offered with port 0 (disabled, RFC 3264
    §5.1): we do not replay them. ICE attributes name captured candidates and are left
    out. Codecs, formats, crypto and every other attribute stay as captured.
    """
    addrtype = "IP6" if ":" in address else "IP4"
    ours = Connection(address=address, addrtype=addrtype)
    audio = _first_audio(offer)
    media: list[MediaDescription] = []
    for m in offer.media:
        attributes = tuple(a for a in m.attributes if a.name not in _ICE_ATTRIBUTES)
        if m is audio:
            attributes = tuple(
                Attribute("rtcp", str(RtcpAttribute(port, ours))) if a.name == "rtcp" else a
                for a in attributes
            )
            connections = (ours,) if m.connections or offer.connection is None else ()
            media.append(replace(m, port=port, connections=connections, attributes=attributes))
        else:
            media.append(replace(m, port=0, attributes=attributes))
    session_attributes = tuple(a for a in offer.attributes if a.name not in _ICE_ATTRIBUTES)
    return replace(
        offer,
        connection=ours if offer.connection is not None else None,
        media=tuple(media),
        attributes=session_attributes,
    )


def carried_headers(invite: Request) -> list[tuple[str, str]]:
    """The captured INVITE's headers that describe the caller to a UAS, as written."""
    return [(name, value) for key, name, value in invite.fields if key not in _NOT_CARRIED]


def build_invite(
    call: CapturedCall,
    *,
    request_uri: Uri,
    transport: str,
    local: tuple[str, int],
    rtp: tuple[str, int],
    branch: str | None = None,
    from_tag: str | None = None,
    call_id: str | None = None,
) -> Request:
    """The replay's INVITE: the caller's identity and offer, our addresses (RFC 3261 §8.1.1)."""
    captured = call.invite
    sent_by = hostport(*local)
    via = f"SIP/2.0/{transport.upper()} {sent_by};branch={branch or new_branch()};rport"
    from_ = str(captured.from_.with_tag(from_tag or new_tag()))
    to = captured.get("to") or ""
    if captured.to.tag is not None:  # a captured re-INVITE: the new call has no To tag yet
        params = {k: v for k, v in captured.to.params.items() if k != "tag"}
        to = str(NameAddr(captured.to.uri_text, captured.to.display_name, params))
    from_uri = captured.from_.uri
    user = from_uri.user if isinstance(from_uri, SipUri) and from_uri.user else "replay"
    contact = f"<sip:{user}@{sent_by}{';transport=tcp' if transport == 'tcp' else ''}>"
    body = rewrite_offer(call.offer, rtp[0], rtp[1]).to_bytes()
    return make_request(
        "INVITE",
        str(request_uri),
        via=via,
        from_=from_,
        to=to,
        call_id=call_id or new_call_id(),
        cseq=1,
        contact=contact,
        headers=carried_headers(captured),
        body=body,
        content_type="application/sdp",
    )


build_cancel = make_cancel  # RFC 3261 §9.1, as the user agent's outbound calls build it


@dataclass(frozen=True)
class AnswerMedia:
    codec: str | None  # "PCMU/8000"
    payload_type: int | None
    address: str | None
    port: int
    direction: str
    crypto: str | None  # the answer's a=crypto suite (with its tag), if any

    @property
    def target(self) -> tuple[str, int] | None:
        if not self.port or not self.address or self.address in ("0.0.0.0", "::"):
            return None
        return self.address, self.port

    def describe(self) -> str:
        where = hostport(*self.target) if self.target else "no address"
        crypto = f", crypto {self.crypto}" if self.crypto else ""
        codec = f"{self.codec or 'no codec'} (PT {self.payload_type})"
        return f"{codec} at {where}, {self.direction}{crypto}"


def answer_summary(sdp: SessionDescription) -> AnswerMedia | None:
    """The accepted audio stream of an SDP answer: its first codec, address and direction."""
    audio = _first_audio(sdp)
    if audio is None:
        return None
    codecs = audio.rtp_codecs()
    codec = codecs[0] if codecs else None
    conn = sdp.effective_connection(audio)
    crypto = audio.crypto_lines[0].split()[:2] if audio.crypto_lines else None
    return AnswerMedia(
        codec=f"{codec.name}/{codec.clock_rate}" if codec else None,
        payload_type=codec.payload_type if codec else None,
        address=conn.address if conn else None,
        port=audio.port,
        direction=sdp.effective_direction(audio),
        crypto=" ".join(crypto) if crypto else None,
    )
