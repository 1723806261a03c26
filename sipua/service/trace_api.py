"""HTTP routes for operators: a session's SIP trace, as JSON or as a pcap file.

- ``GET /v1/sessions/{id}/sip-trace``: every SIP message of the session's calls that sipua
  received or sent (newest calls kept, see :mod:`sipua.ua.trace`), oldest first.
- ``GET /v1/sessions/{id}/sip-trace.pcap``: the same as a pcap file (scapy writes it), for
  Wireshark, tshark or sngrep: each message in an IP/UDP or IP/TCP packet between the peer's
  address and ours, stamped with the time sipua saw it.

They sit behind the API key like every ``/v1`` route and find the user agent on
``app.state.ua`` (set by ``sipua serve``; 503 without one).
"""

from __future__ import annotations

import io
import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from sipua.ua.trace import TracedMessage

__all__ = ["trace_router", "to_pcap"]

SessionId = Annotated[str, Path(description="Session id (`sess_` + 26 characters).")]
PCAP_CONTENT_TYPE = "application/vnd.tcpdump.pcap"


class TracedMessageView(BaseModel):
    time: datetime
    direction: str = Field(description="in: received by sipua; out: sent by sipua.")
    transport: str
    remote: str = Field(description="host:port of the peer.")
    local: str | None = Field(description="host:port of sipua, when known.")
    call_id: str
    first_line: str
    text: str = Field(description="The message as it went on the wire (UTF-8, lossy).")


class SipTraceView(BaseModel):
    session_id: str
    call_ids: list[str]
    messages: list[TracedMessageView]


def _hostport(addr: tuple[str, int] | None) -> str | None:
    if addr is None:
        return None
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _trace_for(request: Request, session_id: str) -> tuple[list[str], list[TracedMessage], Any]:
    sessions = request.app.state.sessions
    if sessions.get(session_id) is None:
        raise HTTPException(404, "session not found")
    ua = getattr(request.app.state, "ua", None)
    if ua is None:
        raise HTTPException(503, "no SIP user agent in this process")
    trace = ua.trace
    call_ids = trace.session_call_ids(session_id)
    return call_ids, trace.messages(call_ids), ua


def _local_address(ua: Any, message: TracedMessage) -> tuple[str, int]:
    """Our side of the packet: what the transport knew, else our listening address."""
    if message.local is not None:
        return message.local
    listening = getattr(ua.transports, "listening", None)
    bound = getattr(listening, message.transport, None) if listening is not None else None
    if bound:
        host, port = bound[0][:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return host, port
    return ("0.0.0.0", 0)


def to_pcap(messages: list[TracedMessage], local_of: Any) -> bytes:
    """A pcap file of ``messages``; ``local_of(message)`` gives our address for each."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw
    from scapy.utils import PcapWriter

    out = io.BytesIO()
    writer = PcapWriter(out, linktype=101, sync=True)  # LINKTYPE_RAW: packets start at IP
    seqs: dict[tuple, int] = {}
    for m in messages:
        local = local_of(m)
        src, dst = (m.remote, local) if m.direction == "in" else (local, m.remote)
        try:
            v6 = (
                ipaddress.ip_address(src[0]).version == 6
                or ipaddress.ip_address(dst[0]).version == 6
            )
        except ValueError:
            continue  # not an address (should not happen): leave the packet out
        ip = IPv6(src=src[0], dst=dst[0]) if v6 else IP(src=src[0], dst=dst[0])
        if m.transport == "udp":
            l4 = UDP(sport=src[1], dport=dst[1])
        else:
            key = (src, dst)
            seq = seqs.get(key, 1)
            seqs[key] = seq + len(m.data)
            l4 = TCP(sport=src[1], dport=dst[1], flags="PA", seq=seq)
        packet = ip / l4 / Raw(m.data)
        packet.time = m.time
        writer.write(packet)
    writer.flush()
    data = out.getvalue()
    writer.close()
    return data


def trace_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["operations"])

    @router.get(
        "/sessions/{session_id}/sip-trace",
        response_model=SipTraceView,
        summary="A session's SIP trace",
        description="Every SIP message of the session's calls that sipua received or sent, "
        "oldest first, as it went on the wire. Kept in memory for recent calls only "
        "(`sip.trace_calls`, `sip.trace_messages`).",
        responses={404: {"description": "Unknown session."}},
    )
    async def sip_trace(session_id: SessionId, request: Request) -> SipTraceView:
        call_ids, messages, _ = _trace_for(request, session_id)
        return SipTraceView(
            session_id=session_id,
            call_ids=call_ids,
            messages=[
                TracedMessageView(
                    time=datetime.fromtimestamp(m.time, UTC),
                    direction=m.direction,
                    transport=m.transport,
                    remote=_hostport(m.remote) or "",
                    local=_hostport(m.local),
                    call_id=m.call_id,
                    first_line=m.first_line,
                    text=m.data.decode("utf-8", "replace"),
                )
                for m in messages
            ],
        )

    @router.get(
        "/sessions/{session_id}/sip-trace.pcap",
        summary="A session's SIP trace as a pcap file",
        description="The same messages as a pcap file (raw IP link type) for Wireshark, tshark "
        "or sngrep.",
        response_class=Response,
        responses={
            200: {"content": {PCAP_CONTENT_TYPE: {}}},
            404: {"description": "Unknown session."},
        },
    )
    async def sip_trace_pcap(session_id: SessionId, request: Request) -> Response:
        _, messages, ua = _trace_for(request, session_id)
        data = to_pcap(messages, lambda m: _local_address(ua, m))
        return Response(
            data,
            media_type=PCAP_CONTENT_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{session_id}-sip.pcap"'},
        )

    return router
