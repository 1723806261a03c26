"""A small SIP test client on plain sockets (UDP, TCP, TLS), independent of sipua's own parser.

It is just enough of a UAC to drive sipua from a test: build requests, read and
frame what comes back, play the caller's side of INVITE/ACK/CANCEL/BYE and
answer requests sipua sends (its BYE after a missing ACK). It parses messages
with its own few lines of code, so a bug in ``sipua.sip`` cannot hide itself.

Everything here is blocking with timeouts (for tests that run ``sipua serve``
in another process); :class:`AsyncUdpClient` is the same over asyncio for
tests that run the user agent in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
}

DEFAULT_SDP = (
    "v=0\r\n"
    "o=test 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)


def sdp_offer(port: int = 40000, direction: str = "sendrecv", codecs: str = "0 8 101") -> bytes:
    text = DEFAULT_SDP.format(port=port).replace("a=sendrecv", f"a={direction}")
    return text.replace("RTP/AVP 0 8 101", f"RTP/AVP {codecs}").encode()


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_token() -> str:
    return secrets.token_hex(6)


# -- messages ------------------------------------------------------------------------------


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    source: tuple[str, int] | None = None  # where a datagram came from

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0] if self.is_request else ""

    @property
    def request_uri(self) -> str:
        return self.start.split(" ")[1] if self.is_request else ""

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.start.split(" ")[1])

    @property
    def reason(self) -> str:
        return "" if self.is_request else self.start.split(" ", 2)[2]

    def all(self, name: str) -> list[str]:
        """Every value of a header (comma-separated values not split)."""
        key = COMPACT.get(name.lower(), name.lower())
        return [v for n, v in self.headers if COMPACT.get(n.lower(), n.lower()) == key]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(f"no {name} in {self.start!r}")
        return value

    def __contains__(self, name: str) -> bool:
        return bool(self.all(name))

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of a header (Allow, Supported, Accept), lower-cased."""
        out: set[str] = set()
        for value in self.all(name):
            out.update(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    @property
    def call_id(self) -> str:
        return self["call-id"].strip()

    @property
    def cseq(self) -> tuple[int, str]:
        num, method = self["cseq"].split()
        return int(num), method.upper()

    @property
    def to_tag(self) -> str | None:
        return _tag(self["to"])

    @property
    def from_tag(self) -> str | None:
        return _tag(self["from"])

    @property
    def top_via(self) -> str:
        return self["via"].split(",")[0].strip()

    def via_param(self, name: str) -> str | None:
        for part in self.top_via.split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == name:
                return value.strip()
        return None

    @property
    def contact_uri(self) -> str | None:
        value = self.get("contact")
        if value is None:
            return None
        m = re.search(r"<([^>]*)>", value)
        return m.group(1) if m else value.split(";")[0].strip()

    def __repr__(self) -> str:
        return f"<SipMessage {self.start!r}>"


def _tag(value: str) -> str | None:
    m = re.search(r";\s*tag\s*=\s*([^;,\s>]+)", value.split(">")[-1] if ">" in value else value)
    return m.group(1) if m else None


def parse(data: bytes, source: tuple[str, int] | None = None) -> SipMessage:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    msg = SipMessage(lines[0], headers, body, data, source)
    length = msg.get("content-length")
    if length is not None and length.strip().isdigit():
        msg.body = body[: int(length)]
    return msg


def frame(buffer: bytearray) -> bytes | None:
    """Take one whole message (by Content-Length) off the front of a stream buffer."""
    while buffer[:2] == b"\r\n":  # keep-alive CRLFs between messages
        del buffer[:2]
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("utf-8", "replace")
    m = re.search(r"^(?:content-length|l)\s*:\s*(\d+)", head, re.I | re.M)
    length = int(m.group(1)) if m else 0
    total = end + 4 + length
    if len(buffer) < total:
        return None
    data = bytes(buffer[:total])
    del buffer[:total]
    return data


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    cseq_method: str | None = None,
    contact: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int | None = 70,
) -> bytes:
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}"]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines += [
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += [f"{n}: {v}" for n, v in headers]
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_response(
    request: SipMessage,
    status: int,
    reason: str = "OK",
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """A response to a request sipua sent us (copies Via, From, To, Call-ID, CSeq)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in request.all("via")]
    lines.append(f"From: {request['from']}")
    to = request["to"]
    if to_tag and request.to_tag is None:
        to += f";tag={to_tag}"
    lines.append(f"To: {to}")
    lines += [f"Call-ID: {request.call_id}", f"CSeq: {request['cseq']}"]
    lines += [f"{n}: {v}" for n, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- the call (the caller's dialog state) ------------------------------------------------------


@dataclass
class UacCall:
    """The caller's side of one call: what it needs to build INVITE, ACK, CANCEL, BYE."""

    uri: str
    transport: str
    local: tuple[str, int]
    user: str = "tester"
    call_id: str = field(default_factory=lambda: new_token() + "@127.0.0.1")
    from_tag: str = field(default_factory=new_token)
    cseq: int = 1
    invite_branch: str = field(default_factory=new_branch)
    invite_cseq: int = 1
    to_tag: str | None = None
    remote_target: str | None = None
    route_set: list[str] = field(default_factory=list)
    invite_extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def via_proto(self) -> str:
        return f"SIP/2.0/{self.transport.upper()}"

    def via(self, branch: str) -> str:
        return f"{self.via_proto} {self.local[0]}:{self.local[1]};branch={branch};rport"

    @property
    def from_(self) -> str:
        return f"<sip:{self.user}@{self.local[0]}>;tag={self.from_tag}"

    @property
    def to(self) -> str:
        to = f"<{self.uri}>"
        return f"{to};tag={self.to_tag}" if self.to_tag else to

    @property
    def contact(self) -> str:
        scheme_params = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{self.user}@{self.local[0]}:{self.local[1]}{scheme_params}>"

    def invite(self, body: bytes | None = None, headers: Iterable[tuple[str, str]] = ()) -> bytes:
        body = sdp_offer() if body is None else body
        self.invite_cseq = self.cseq
        return build_request(
            "INVITE",
            self.uri,
            via=self.via(self.invite_branch),
            from_=self.from_,
            to=f"<{self.uri}>",
            call_id=self.call_id,
            cseq=self.invite_cseq,
            contact=self.contact,
            headers=[*self.invite_extra, *headers],
            body=body,
            content_type="application/sdp" if body else None,
        )

    def learn(self, response: SipMessage) -> None:
        """Take the dialog state from a 1xx/2xx with a To tag (RFC 3261 §12.1.2)."""
        if response.to_tag and (self.to_tag is None or response.status >= 200):
            self.to_tag = response.to_tag
            if response.contact_uri:
                self.remote_target = response.contact_uri
            self.route_set = list(reversed(response.all("record-route")))

    def ack(self, response: SipMessage, body: bytes = b"") -> bytes:
        """ACK for a final response: its own transaction for a 2xx, the INVITE's otherwise."""
        if 200 <= response.status < 300:
            self.learn(response)
            target = self.remote_target or self.uri
            branch = new_branch()
            headers = [("Route", r) for r in self.route_set]
        else:
            target = self.uri
            branch = self.invite_branch
            headers = []
        to = f"<{self.uri}>;tag={response.to_tag}" if response.to_tag else f"<{self.uri}>"
        return build_request(
            "ACK",
            target,
            via=self.via(branch),
            from_=self.from_,
            to=to,
            call_id=self.call_id,
            cseq=self.invite_cseq,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )

    def cancel(self) -> bytes:
        # RFC 3261 §9.1: same Request-URI, Call-ID, From, To (no tag), CSeq number and branch.
        return build_request(
            "CANCEL",
            self.uri,
            via=self.via(self.invite_branch),
            from_=self.from_,
            to=f"<{self.uri}>",
            call_id=self.call_id,
            cseq=self.invite_cseq,
        )

    def in_dialog(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        return build_request(
            method,
            self.remote_target or self.uri,
            via=self.via(new_branch()),
            from_=self.from_,
            to=self.to,
            call_id=self.call_id,
            cseq=cseq,
            contact=self.contact if method == "INVITE" else None,
            headers=[*(("Route", r) for r in self.route_set), *headers],
            body=body,
            content_type=content_type,
        )

    def bye(self) -> bytes:
        return self.in_dialog("BYE")


# -- blocking client ----------------------------------------------------------------------------


def insecure_tls_context(
    *, min_version: ssl.TLSVersion | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """A client context that does not verify the server (sipua's certificate is self-signed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class SipClient:
    """One socket to one SIP server; blocking reads with timeouts."""

    def __init__(
        self,
        transport: str,
        server: tuple[str, int],
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.transport = transport
        self.server = server
        self.timeout = timeout
        self._buffer = bytearray()
        self.received: list[SipMessage] = []
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        else:
            raw = socket.create_connection(server, timeout=timeout)
            if transport == "tls":
                ctx = ssl_context or insecure_tls_context()
                try:
                    raw = ctx.wrap_socket(raw, server_hostname=server_hostname)
                except BaseException:
                    raw.close()
                    raise
            self.sock = raw
        self.local: tuple[str, int] = self.sock.getsockname()[:2]

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, to or self.server)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> SipMessage:
        """The next message; ``TimeoutError`` when none comes in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.transport != "udp":
                data = frame(self._buffer)
                if data is not None:
                    msg = parse(data, self.server)
                    self.received.append(msg)
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no SIP message in time")
            self.sock.settimeout(left)
            try:
                if self.transport == "udp":
                    data, addr = self.sock.recvfrom(65535)
                    msg = parse(data, addr[:2])
                    self.received.append(msg)
                    return msg
                chunk = self.sock.recv(65535)
            except TimeoutError:
                raise TimeoutError("no SIP message in time") from None
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk

    def recv_until(
        self, predicate: Callable[[SipMessage], bool], timeout: float | None = None
    ) -> SipMessage:
        """Read until a message satisfies ``predicate`` (others are kept in ``received``)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if predicate(msg):
                return msg

    def final_response(
        self, cseq_method: str = "INVITE", timeout: float | None = None
    ) -> SipMessage:
        return self.recv_until(
            lambda m: not m.is_request and m.status >= 200 and m.cseq[1] == cseq_method, timeout
        )

    def new_call(self, uri: str, **kw: object) -> UacCall:
        return UacCall(uri, self.transport, self.local, **kw)  # type: ignore[arg-type]

    def call(self, uri: str, *, hold: float = 0.0) -> list[int]:
        """A whole call: INVITE, (1xx), 200, ACK, BYE, 200. Returns every status seen, in order."""
        call = self.new_call(uri)
        self.send(call.invite())
        statuses: list[int] = []
        while True:
            msg = self.recv()
            if msg.is_request or msg.call_id != call.call_id:
                continue
            statuses.append(msg.status)
            if msg.status >= 200:
                break
        final = self.received[-1]
        self.send(call.ack(final))
        if final.status != 200:
            return statuses
        if hold:
            time.sleep(hold)
        self.send(call.bye())
        bye_ok = self.recv_until(
            lambda m: not m.is_request and m.call_id == call.call_id and m.cseq[1] == "BYE"
        )
        statuses.append(bye_ok.status)
        return statuses


# -- asyncio UDP client (for a user agent running in the test's event loop) --------------------


class AsyncUdpClient:
    """A UDP socket on 127.0.0.1 read and written through the running event loop."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.local: tuple[str, int] = self.sock.getsockname()[:2]
        self.transport = "udp"

    def close(self) -> None:
        self.sock.close()

    async def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, to or self.server)

    async def recv(self, timeout: float = 3.0) -> SipMessage:
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)
        return parse(data, addr[:2])

    async def recv_until(
        self, predicate: Callable[[SipMessage], bool], timeout: float = 3.0
    ) -> SipMessage:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.0, deadline - loop.time()))
            if predicate(msg):
                return msg

    async def final(self, call_id: str, method: str = "INVITE", timeout: float = 3.0) -> SipMessage:
        return await self.recv_until(
            lambda m: (
                not m.is_request
                and m.status >= 200
                and m.call_id == call_id
                and m.cseq[1] == method
            ),
            timeout,
        )

    def new_call(self, uri: str, **kw: object) -> UacCall:
        return UacCall(uri, "udp", self.local, **kw)  # type: ignore[arg-type]

    async def request(self, data: bytes, timeout: float = 3.0) -> SipMessage:
        """Send a request and return its final response (matched by Call-ID and CSeq method)."""
        sent = parse(data)
        await self.send(data)
        return await self.final(sent.call_id, sent.cseq[1], timeout)
