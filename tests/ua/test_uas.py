"""The UAS (``sipua/ua/uas.py``) driven by raw SIP over UDP on 127.0.0.1, in-process."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from integration.sipclient import (
    AsyncUdpClient,
    SipMessage,
    UacCall,
    build_request,
    build_response,
    frame,
    new_branch,
    new_token,
    parse,
    sdp_offer,
)

from sipua.sip.auth import AuthOutcome, DigestServer, HA1Table
from sipua.ua.events import CallConnected, CallDisconnected, CallFailed, DtmfReceived

from .conftest import Harness, MakeUa

RFC4475 = Path(__file__).resolve().parent.parent / "data" / "sip" / "rfc4475"


def out_of_dialog(
    h: Harness,
    method: str,
    uri: str | None = None,
    *,
    headers: list[tuple[str, str]] | tuple = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int | None = 70,
    call_id: str | None = None,
    from_tag: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
) -> bytes:
    local = h.client.local
    return build_request(
        method,
        uri or h.uri("session_s1"),
        via=f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch or new_branch()};rport",
        from_=f"<sip:tester@127.0.0.1>;tag={from_tag or new_token()}",
        to=f"<{uri or h.uri('session_s1')}>",
        call_id=call_id or new_token(),
        cseq=cseq,
        contact=f"<sip:tester@{local[0]}:{local[1]}>",
        headers=headers,
        body=body,
        content_type=content_type,
        max_forwards=max_forwards,
    )


def aimed_at(data: bytes, client: AsyncUdpClient) -> bytes:
    """A torture message with its top Via pointing at our socket (with rport), else unchanged,
    so its response comes back to the test instead of to the RFC's example hosts."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if re.match(rb"(?i)(via|v)\s*:", line):
            branch = re.search(rb"branch=([^;,\s]+)", line)
            value = f"SIP/2.0/UDP 127.0.0.1:{client.local[1]};rport"
            if branch:
                value += f";branch={branch.group(1).decode()}"
            lines[i] = b"Via: " + value.encode()
            break
    return b"\r\n".join(lines) + sep + body


# -- methods and out-of-dialog requests -----------------------------------------------------------


async def test_register_and_unknown_methods_get_405_with_allow(ua: Harness) -> None:
    for method in ("REGISTER", "FOOBAR", "SUBSCRIBE"):
        r = await ua.client.request(out_of_dialog(ua, method))
        assert r.status == 405, (method, r.start)
        assert {"invite", "ack", "bye", "cancel", "options"} <= r.tokens("allow")
        assert method.lower() not in r.tokens("allow")
        assert r.to_tag


async def test_out_of_dialog_bye_and_info_get_481(ua: Harness) -> None:
    for method in ("BYE", "INFO"):
        r = await ua.client.request(out_of_dialog(ua, method))
        assert r.status == 481, (method, r.start)


async def test_unknown_require_gets_420_with_unsupported(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(
            ua,
            "INVITE",
            headers=[("Require", "nobodyKnowsThis, 100rel")],
            body=sdp_offer(),
            content_type="application/sdp",
        )
    )
    assert r.status == 420
    assert "nobodyknowsthis" in r.tokens("unsupported")
    assert ua.events == []  # no call was started


async def test_max_forwards_zero_gets_483(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(
            ua, "INVITE", max_forwards=0, body=sdp_offer(), content_type="application/sdp"
        )
    )
    assert r.status == 483
    assert ua.events == []


async def test_merged_request_gets_482(ua: Harness) -> None:
    # RFC 3261 §8.2.2.2: same From tag, Call-ID and CSeq, another branch, no To tag.
    tag, call_id = new_token(), new_token()
    first = await ua.client.request(
        out_of_dialog(ua, "OPTIONS", call_id=call_id, from_tag=tag, cseq=7)
    )
    assert first.status == 200
    second = await ua.client.request(
        out_of_dialog(ua, "OPTIONS", call_id=call_id, from_tag=tag, cseq=7)
    )
    assert second.status == 482
    assert second.via_param("branch") != first.via_param("branch")


async def test_unknown_uri_scheme_gets_416(ua: Harness) -> None:
    r = await ua.client.request(out_of_dialog(ua, "OPTIONS", "nobodyKnowsThisScheme:opaque"))
    assert r.status == 416
    torture = (RFC4475 / "unkscm.dat").read_bytes()
    r = await ua.client.request(aimed_at(torture, ua.client))
    assert r.status == 416


async def test_malformed_requests_get_400_with_warning(ua: Harness) -> None:
    # badinv01: the Via itself is broken, so the answer goes back to where the request came from.
    for name, aim in (("badinv01", False), ("mismatch01", True)):
        data = (RFC4475 / f"{name}.dat").read_bytes()
        if aim:
            data = aimed_at(data, ua.client)
        await ua.client.send(data)
        r = await ua.client.recv_until(lambda m, name=name: m.status >= 200 and name in m.call_id)
        assert r.status == 400, (name, r.start)
        warning = r.get("warning")
        assert warning is not None and warning.startswith("399 "), (name, warning)
    assert ua.events == []


async def test_accept_without_sdp_gets_406(ua: Harness) -> None:
    ua.sessions.add("user")  # sdp01 calls sip:user@example.com
    data = aimed_at((RFC4475 / "sdp01.dat").read_bytes(), ua.client)
    await ua.client.send(data)
    r = await ua.client.recv_until(lambda m: m.status >= 200 and m.call_id.startswith("sdp01"))
    assert r.status == 406
    assert ua.ua.uas.active_calls("user") == 0


async def test_non_sdp_body_gets_415(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(ua, "INVITE", body=b"hello", content_type="text/plain")
    )
    assert r.status == 415
    assert "application/sdp" in r.tokens("accept")


async def test_no_common_codec_gets_488_with_warning(ua: Harness) -> None:
    offer = sdp_offer(codecs="18").replace(
        b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        b"a=rtpmap:18 G729/8000\r\n",
    )
    assert b"G729" in offer and b"PCMU" not in offer
    r = await ua.client.request(
        out_of_dialog(ua, "INVITE", body=offer, content_type="application/sdp")
    )
    assert r.status == 488
    assert r.get("warning") is not None and r["warning"].startswith("3")  # 3xx warn-code: SDP
    assert ua.ua.uas.active_calls("s1") == 0
    # The attempt is reported (an operator wants to know why a trunk's calls fail), never connected.
    assert [(type(e).__name__, e.status) for e in ua.events] == [("CallFailed", 488)]


async def test_unknown_and_ended_sessions_get_404(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(
            ua, "INVITE", ua.uri("session_nope"), body=sdp_offer(), content_type="application/sdp"
        )
    )
    assert r.status == 404
    assert r.to_tag
    ua.sessions.add("gone", status="ended")
    r = await ua.client.request(
        out_of_dialog(
            ua, "INVITE", ua.uri("session_gone"), body=sdp_offer(), content_type="application/sdp"
        )
    )
    assert r.status == 404


async def test_session_not_accepting_calls_gets_480_with_retry_after(ua: Harness) -> None:
    paused = ua.sessions.add("paused", accepting_calls=False)
    call = ua.client.new_call(ua.uri("session_paused"))
    r = await ua.client.request(call.invite())
    await ua.client.send(call.ack(r))
    assert r.status == 480
    retry_after = r.get("retry-after")
    assert retry_after is not None and int(retry_after.split(";")[0]) > 0
    assert r.to_tag
    assert ua.ua.uas.active_calls("paused") == 0
    assert ua.events == []  # refused before any call was started
    # The same session is answered once it accepts calls again.
    paused.accepting_calls = True
    _, ok = await ua.connect("session_paused")
    assert ok.status == 200
    assert ua.ua.uas.active_calls("paused") == 1


async def test_full_session_gets_480(make_ua: MakeUa) -> None:
    h = await make_ua(max_calls_per_session=1)
    call, _ = await h.connect()
    r = await h.client.request(
        out_of_dialog(h, "INVITE", body=sdp_offer(), content_type="application/sdp")
    )
    assert r.status == 480
    assert r.get("retry-after") is not None
    # When the first caller leaves there is room again.
    assert (await h.client.request(call.bye())).status == 200
    await h.wait_event(CallDisconnected)
    second, ok = await h.connect()
    assert ok.status == 200


# -- in-dialog requests -----------------------------------------------------------------------


def sdp_direction(body: bytes) -> str:
    for line in body.decode().splitlines():
        if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            return line[2:]
    return "sendrecv"


async def test_reinvite_hold_is_answered_with_recvonly(ua: Harness) -> None:
    call, ok = await ua.connect()
    assert sdp_direction(ok.body) == "sendrecv"
    first_version = int(ok.body.decode().split("o=")[1].split()[2])
    hold = await ua.client.request(
        call.in_dialog(
            "INVITE", body=sdp_offer(direction="sendonly"), content_type="application/sdp"
        )
    )
    assert hold.status == 200
    assert hold.get("content-type") == "application/sdp"
    assert sdp_direction(hold.body) == "recvonly"
    # RFC 3264 §8: a changed session description has a higher o= version.
    assert int(hold.body.decode().split("o=")[1].split()[2]) > first_version
    await ua.client.send(call.ack(hold))
    resume = await ua.client.request(
        call.in_dialog("INVITE", body=sdp_offer(), content_type="application/sdp")
    )
    assert resume.status == 200 and sdp_direction(resume.body) == "sendrecv"
    await ua.client.send(call.ack(resume))
    assert (await ua.client.request(call.bye())).status == 200


async def test_in_dialog_options(ua: Harness) -> None:
    call, _ = await ua.connect()
    r = await ua.client.request(call.in_dialog("OPTIONS"))
    assert r.status == 200
    assert "invite" in r.tokens("allow")
    assert r.to_tag == call.to_tag


async def test_info_dtmf_relay_is_published(ua: Harness) -> None:
    call, _ = await ua.connect()
    r = await ua.client.request(
        call.in_dialog(
            "INFO", body=b"Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay"
        )
    )
    assert r.status == 200
    event = await ua.wait_event(DtmfReceived)
    assert (event.digit, event.duration_ms, event.source) == ("5", 160, "sip-info")
    assert event.call_id == call.call_id and event.session_id == "s1"
    r = await ua.client.request(call.in_dialog("INFO", body=b"hi", content_type="text/plain"))
    assert r.status == 415


async def test_info_dtmf_reaches_the_media_application(ua: Harness) -> None:
    pressed: list[tuple[str, int, str]] = []
    open_leg = ua.ua.uas.media.open_leg

    def leg_with_dtmf(*args, **kwargs):
        leg = open_leg(*args, **kwargs)
        leg.dtmf = lambda digit, duration, source: pressed.append((digit, duration, source))
        return leg

    ua.ua.uas.media.open_leg = leg_with_dtmf
    call, _ = await ua.connect()
    for body in (b"Signal=#\r\nDuration=120\r\n", b"Signal=11\r\n"):
        info = call.in_dialog("INFO", body=body, content_type="application/dtmf-relay")
        assert (await ua.client.request(info)).status == 200
    info = call.in_dialog("INFO", body=b"7", content_type="application/dtmf")
    assert (await ua.client.request(info)).status == 200
    assert pressed == [("#", 120, "sip-info"), ("#", 250, "sip-info"), ("7", 250, "sip-info")]


async def test_lower_cseq_in_dialog_gets_500(ua: Harness) -> None:
    call, _ = await ua.connect()
    assert (await ua.client.request(call.in_dialog("OPTIONS", cseq=10))).status == 200
    r = await ua.client.request(call.in_dialog("OPTIONS", cseq=5))
    assert r.status == 500  # RFC 3261 §12.2.2


async def test_bye_ends_the_call(ua: Harness) -> None:
    call, _ = await ua.connect()
    assert ua.ua.uas.active_calls("s1") == 1
    assert (await ua.client.request(call.bye())).status == 200
    event = await ua.wait_event(CallDisconnected)
    assert event.reason == "remote-bye"
    assert ua.ua.uas.active_calls("s1") == 0
    # The dialog is gone: another BYE in it is 481.
    assert (await ua.client.request(call.bye())).status == 481


async def test_an_ended_call_is_not_kept_alive_by_its_lingering_transaction(ua: Harness) -> None:
    # After the BYE the INVITE server transaction lingers (Accepted, Timer L: 32 s) to absorb
    # retransmissions. It must not hold the call (SDP, media leg, messages) for that long.
    call, _ = await ua.connect()
    (ended,) = ua.ua.uas.all_calls()
    ref = weakref.ref(ended)
    tx = ended.invite_tx
    del ended
    assert (await ua.client.request(call.bye())).status == 200
    await ua.wait_event(CallDisconnected)
    assert ua.ua.layer.remembers(tx.key) and tx.user_data is None
    gc.collect()
    assert ref() is None
    # The lingering transaction still absorbs a retransmitted INVITE: no new call, no event.
    connected = len([e for e in ua.events if isinstance(e, CallConnected)])
    await ua.client.send(tx.request.to_bytes())
    assert (await ua.client.request(call.bye())).status == 481  # the exchange was processed
    assert ua.ua.uas.active_calls("s1") == 0
    assert len([e for e in ua.events if isinstance(e, CallConnected)]) == connected


async def test_late_offer_answered_in_ack(ua: Harness) -> None:
    call = ua.client.new_call(ua.uri("session_s1"))
    ok = await ua.client.request(call.invite(b""))
    assert ok.status == 200 and b"m=audio" in ok.body  # our offer
    port = int(ok.body.decode().split("m=audio ")[1].split()[0])
    answer = sdp_offer(port=41000, codecs="0")
    answer = answer.replace(b"a=rtpmap:8 PCMA/8000\r\n", b"")
    await ua.client.send(call.ack(ok, body=answer))
    event = await ua.wait_event(CallConnected)
    assert event.codec is not None and event.codec.upper() == "PCMU"
    assert port > 0


# -- transport details ------------------------------------------------------------------------------


async def test_response_goes_to_the_source_port_with_rport(ua: Harness) -> None:
    # RFC 3581 §4: with rport the response goes to the packet's source, whatever the Via says.
    elsewhere = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    elsewhere.bind(("127.0.0.1", 0))
    elsewhere.setblocking(False)
    other_port = elsewhere.getsockname()[1]
    try:
        for rport in (True, False):
            via = f"SIP/2.0/UDP 127.0.0.1:{other_port};branch={new_branch()}" + (
                ";rport" if rport else ""
            )
            request = build_request(
                "OPTIONS",
                ua.uri("ping"),
                via=via,
                from_=f"<sip:tester@127.0.0.1>;tag={new_token()}",
                to=f"<{ua.uri('ping')}>",
                call_id=new_token(),
                cseq=1,
            )
            await ua.client.send(request)
            if rport:
                r = await ua.client.recv()
                assert r.status == 200
                assert r.via_param("rport") == str(ua.client.local[1])
                assert r.via_param("received") == "127.0.0.1"
            else:
                # RFC 3261 §18.2.2: without rport, to the port in the Via's sent-by.
                loop = asyncio.get_running_loop()
                data = await asyncio.wait_for(loop.sock_recv(elsewhere, 65535), 3.0)
                r = parse(data)
                assert r.status == 200
                assert r.via_param("rport") is None
    finally:
        elsewhere.close()


def _options_to(host: str, port: int, transport: str, local: tuple[str, int]) -> bytes:
    def hostport(h: str, p: int) -> str:
        return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"

    return build_request(
        "OPTIONS",
        f"sip:ping@{hostport(host, port)}",
        via=f"SIP/2.0/{transport.upper()} {hostport(*local)};branch={new_branch()};rport",
        from_=f"<sip:tester@{hostport(*local)}>;tag={new_token()}",
        to=f"<sip:ping@{hostport(host, port)}>",
        call_id=new_token(),
        cseq=1,
    )


async def _udp_options(host: str, port: int) -> tuple[SipMessage, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.setblocking(False)
        await loop.sock_sendto(
            sock, _options_to(host, port, "udp", sock.getsockname()[:2]), (host, port)
        )
        data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 3.0)
    return parse(data), source[:2]


async def _tcp_options(host: str, port: int) -> SipMessage:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3.0)
    try:
        writer.write(_options_to(host, port, "tcp", writer.get_extra_info("sockname")[:2]))
        await writer.drain()
        buffer = bytearray()
        while (data := frame(buffer)) is None:
            chunk = await asyncio.wait_for(reader.read(65536), 3.0)
            assert chunk, "the connection closed before a response"
            buffer += chunk
        return parse(data)
    finally:
        writer.close()


async def test_ipv4_and_ipv6_together(make_ua: MakeUa) -> None:
    # The machine must have IPv6 loopback: without it this test fails, it does not skip.
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as e:
        pytest.fail(f"::1 is not available on this machine ({e}); IPv6 loopback is required")
    h = await make_ua(tcp=True, ipv6=True)
    listening = h.ua.transports.listening
    # A loopback IPv4 listener gets the loopback IPv6 twin, not every IPv6 interface.
    assert [host for host, _ in listening.udp] == ["127.0.0.1", "::1"]
    assert [host for host, _ in listening.tcp] == ["127.0.0.1", "::1"]
    for i, host in enumerate(("127.0.0.1", "::1")):
        udp_port, tcp_port = listening.udp[i][1], listening.tcp[i][1]
        r, source = await _udp_options(host, udp_port)
        assert r.status == 200, (host, r.start)
        assert source == (host, udp_port)  # answered from the socket of the family asked
        assert "invite" in r.tokens("allow")
        r = await _tcp_options(host, tcp_port)
        assert r.status == 200, (host, r.start)
        assert r.top_via.startswith("SIP/2.0/TCP ")


class _Peer:
    """The far end of a call: UDP and TCP on one port of 127.0.0.1; what arrives is queued."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[tuple[str, SipMessage | None]] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        peer = self

        class Datagrams(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                peer.arrived.put_nowait(("udp", parse(data, addr[:2])))

        for _ in range(20):  # a free TCP port whose UDP number is free too
            server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    Datagrams, local_addr=("127.0.0.1", port)
                )
            except OSError:
                server.close()
                continue
            self._server, self.port = server, port
            return
        pytest.fail("no port free for both UDP and TCP on 127.0.0.1")

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.writers.append(writer)
        self.arrived.put_nowait(("tcp-connect", None))
        buffer = bytearray()
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while (data := frame(buffer)) is not None:
                    self.arrived.put_nowait(("tcp", parse(data)))
        except ConnectionError:
            pass

    async def next_message(self, timeout: float = 3.0) -> tuple[str, SipMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            transport, message = await asyncio.wait_for(
                self.arrived.get(), max(0.0, deadline - loop.time())
            )
            if message is not None:
                return transport, message

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class _CallFrom(UacCall):
    """A caller whose Contact (the dialog's remote target) is ``contact_uri``."""

    contact_uri: str = ""

    @property
    def contact(self) -> str:
        return f"<{self.contact_uri}>"


async def _call_with_contact(h: Harness, contact_uri: str) -> _CallFrom:
    call = _CallFrom(h.uri("session_s1"), "udp", h.client.local, contact_uri=contact_uri)
    ok = await h.client.request(call.invite())
    assert ok.status == 200, ok.start
    await h.client.send(call.ack(ok))
    await h.wait_event(CallConnected)
    return call


async def test_bye_follows_the_transport_parameter_of_the_remote_target(
    make_ua: MakeUa,
) -> None:
    h = await make_ua(tcp=True)
    peer = _Peer()
    await peer.start()
    try:
        target = f"sip:peer@127.0.0.1:{peer.port};transport=tcp"
        call = await _call_with_contact(h, target)  # the call itself came over UDP
        await h.ua.uas.end_calls("s1")
        transport, bye = await peer.next_message()
        assert (transport, bye.method, bye.call_id) == ("tcp", "BYE", call.call_id)
        assert bye.request_uri == target
        assert bye.top_via.startswith("SIP/2.0/TCP ")
        assert bye.to_tag == call.from_tag
        peer.writers[0].write(build_response(bye, 200))
        await peer.writers[0].drain()
    finally:
        await peer.close()


async def test_bye_to_a_sips_target_without_tls_is_not_sent(
    make_ua: MakeUa, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 3261 §26.2.2: a sips: hop is reached over TLS or not at all; with no TLS listener
    # the BYE must not go out over UDP or TCP instead.
    h = await make_ua(tcp=True)
    peer = _Peer()
    await peer.start()
    try:
        await _call_with_contact(h, f"sips:peer@127.0.0.1:{peer.port}")
        assert len(h.ua.uas.dialogs) == 1
        caplog.set_level(logging.WARNING, logger="sipua.ua.uas")
        await h.ua.uas.end_calls("s1")
        assert len(h.ua.uas.dialogs) == 0
        event = await h.wait_event(CallDisconnected)
        assert event.reason == "session-ended"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("BYE not sent" in r.getMessage() for r in warnings), caplog.text
        # Nothing arrives: not at the target's port (UDP or TCP), not at the caller's socket.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(peer.arrived.get(), 0.5)
        with pytest.raises(TimeoutError):
            await h.client.recv_until(lambda m: m.is_request, timeout=0.2)
    finally:
        await peer.close()


async def test_missing_ack_ends_with_bye(make_ua: MakeUa) -> None:
    h = await make_ua(t1=0.02, t2=0.16)
    call = h.client.new_call(h.uri("session_s1"))
    await h.client.send(call.invite())
    oks = 0
    while True:
        msg = await h.client.recv(timeout=3.0)
        if msg.is_request:
            break
        if msg.status == 200:
            oks += 1
    assert msg.method == "BYE"
    assert oks >= 5  # 0.02, 0.04, 0.08, 0.16, 0.16 … within 64*T1 = 1.28 s
    await h.client.send(build_response(msg, 200))
    event = await h.wait_event(CallDisconnected)
    assert event.reason == "ack-timeout"


async def test_cancel_while_ringing(make_ua: MakeUa) -> None:
    h = await make_ua(answer_delay=30.0)
    call = h.client.new_call(h.uri("session_s1"))
    await h.client.send(call.invite())
    ringing = await h.client.recv_until(lambda m: m.status == 180)
    cancel_ok = await h.client.request(call.cancel())
    assert cancel_ok.status == 200 and cancel_ok.to_tag == ringing.to_tag
    final = await h.client.final(call.call_id)
    assert final.status == 487
    await h.client.send(call.ack(final))
    event = await h.wait_event(CallFailed)
    assert (event.status, event.reason) == (487, "cancelled")
    assert h.ua.uas.active_calls("s1") == 0


# -- more edges ---------------------------------------------------------------------------------


async def test_reinvite_before_the_ack_gets_500_with_retry_after(ua: Harness) -> None:
    call = ua.client.new_call(ua.uri("session_s1"))
    ok = await ua.client.request(call.invite())
    call.learn(ok)
    r = await ua.client.request(
        call.in_dialog("INVITE", body=sdp_offer(), content_type="application/sdp")
    )
    assert r.status == 500  # RFC 3261 §14.2
    assert r.get("retry-after") is not None
    await ua.client.send(call.ack(ok))
    await ua.wait_event(CallConnected)


async def test_in_dialog_request_for_an_unknown_dialog_gets_481(ua: Harness) -> None:
    call = ua.client.new_call(ua.uri("session_s1"))
    call.to_tag = "nosuchtag"
    assert (await ua.client.request(call.in_dialog("OPTIONS"))).status == 481
    assert (await ua.client.request(call.bye())).status == 481


async def test_cancel_matching_nothing_gets_481(ua: Harness) -> None:
    call = ua.client.new_call(ua.uri("session_s1"))
    assert (await ua.client.request(call.cancel())).status == 481


async def test_compressed_body_gets_415(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(
            ua,
            "INVITE",
            body=sdp_offer(),
            content_type="application/sdp",
            headers=[("Content-Encoding", "gzip")],
        )
    )
    assert r.status == 415
    assert "identity" in r.tokens("accept-encoding")


async def test_broken_sdp_gets_400_with_warning(ua: Harness) -> None:
    r = await ua.client.request(
        out_of_dialog(ua, "INVITE", body=b"this is not sdp\r\n", content_type="application/sdp")
    )
    assert r.status == 400
    assert r.get("warning") is not None
    assert ua.ua.uas.active_calls("s1") == 0


async def test_dtmf_info_plain_digit(ua: Harness) -> None:
    call, _ = await ua.connect()
    r = await ua.client.request(call.in_dialog("INFO", body=b"#", content_type="application/dtmf"))
    assert r.status == 200
    assert (await ua.wait_event(DtmfReceived)).digit == "#"


async def test_bye_before_the_ack_ends_the_call_without_a_bye_of_ours(make_ua: MakeUa) -> None:
    h = await make_ua(t1=0.01, t2=0.04)
    call = h.client.new_call(h.uri("session_s1"))
    ok = await h.client.request(call.invite())
    call.learn(ok)
    assert (await h.client.request(call.bye())).status == 200
    event = await h.wait_event(CallDisconnected)
    assert event.reason == "remote-bye"
    assert h.ua.uas.active_calls("s1") == 0
    # Past 64*T1 the missing ACK must not make sipua hang up a call that is already over.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 64 * 0.01 + 0.3
    requests = []
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await h.client.recv(timeout=left)
        except TimeoutError:
            break
        if msg.is_request:
            requests.append(msg.start)
    assert requests == []


async def test_shutdown_byes_calls_and_refuses_new_ones(make_ua: MakeUa) -> None:
    h = await make_ua(t1=0.05)
    h.ua.uas.shutdown_grace = 5.0
    call, _ = await h.connect()
    stopping = asyncio.ensure_future(h.ua.uas.shutdown())
    bye = await h.client.recv_until(lambda m: m.is_request)
    assert bye.method == "BYE" and bye.call_id == call.call_id
    assert not stopping.done()  # waiting for the BYE to be answered
    late = h.client.new_call(h.uri("session_s1"))
    refused = await h.client.request(late.invite())
    assert refused.status == 503  # no new call while shutting down
    await h.client.send(build_response(bye, 200))
    await asyncio.wait_for(stopping, 2.0)
    event = await h.wait_event(CallDisconnected)
    assert event.reason == "shutdown"


# -- digest challenges to our own requests (RFC 3261 §22.2) ------------------------------------


class _Pbx:
    """The far end of the call as a PBX that authenticates every request it receives."""

    realm = "pbx.example.net"

    def __init__(self, password: str) -> None:
        self.server = DigestServer(algorithms=("SHA-256", "MD5"))
        self.users = HA1Table()
        self.users.add("trunk-7", self.realm, password)

    def challenge(self, request: SipMessage, proxy: bool = False) -> bytes:
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        values = self.server.challenge(self.realm, time.time(), proxy=proxy)
        status, reason = (407, "Proxy Authentication Required") if proxy else (401, "Unauthorized")
        return build_response(request, status, reason, headers=[(name, v) for v in values])

    def verify(self, request: SipMessage, proxy: bool = False):
        header = request.get("proxy-authorization" if proxy else "authorization")
        assert header is not None, request.start
        return self.server.verify(
            request.method,
            header,
            self.users,
            time.time(),
            request_uri=request.request_uri,
            proxy=proxy,
        )


async def _challenged_bye(h: Harness, pbx: _Pbx, proxy: bool) -> tuple[SipMessage, SipMessage]:
    await h.connect()
    await h.ua.uas.end_calls("s1")
    first = await h.client.recv_until(lambda m: m.is_request)
    assert first.method == "BYE" and "authorization" not in first
    await h.client.send(pbx.challenge(first, proxy=proxy))
    second = await h.client.recv_until(lambda m: m.is_request and m.cseq != first.cseq)
    return first, second


async def test_challenged_bye_is_resent_once_with_the_session_credentials(make_ua: MakeUa) -> None:
    h = await make_ua()
    h.sessions.by_id["s1"].provider = SimpleNamespace(username="trunk-7", password="s3cret")
    pbx = _Pbx("s3cret")
    for proxy in (False, True):
        first, second = await _challenged_bye(h, pbx, proxy)
        assert second.method == "BYE" and second.call_id == first.call_id
        assert second.cseq[0] == first.cseq[0] + 1  # a new request in the same dialog
        result = pbx.verify(second, proxy=proxy)
        assert result.outcome is AuthOutcome.OK, result
        assert result.algorithm == "SHA-256"  # the strongest offered
        await h.client.send(build_response(second, 200))
        event = await h.wait_event(CallDisconnected)
        h.events.clear()
        assert event.call_id == first.call_id
        assert len(h.ua.uas.dialogs) == 0


async def test_a_refused_bye_password_is_not_tried_again(make_ua: MakeUa) -> None:
    h = await make_ua()
    h.sessions.by_id["s1"].provider = SimpleNamespace(username="trunk-7", password="wrong")
    pbx = _Pbx("s3cret")
    _, second = await _challenged_bye(h, pbx, proxy=False)
    assert pbx.verify(second).outcome is not AuthOutcome.OK
    await h.client.send(pbx.challenge(second))  # the same answer to a wrong password
    with pytest.raises(TimeoutError):
        await h.client.recv_until(lambda m: m.is_request, timeout=1.5)
    assert len(h.ua.uas.dialogs) == 0  # given up: the dialog is gone, no loop


async def test_a_challenged_bye_without_credentials_ends_the_dialog(make_ua: MakeUa) -> None:
    h = await make_ua()
    pbx = _Pbx("s3cret")
    await h.connect()
    await h.ua.uas.end_calls("s1")
    bye = await h.client.recv_until(lambda m: m.is_request)
    await h.client.send(pbx.challenge(bye))
    with pytest.raises(TimeoutError):
        await h.client.recv_until(lambda m: m.is_request, timeout=1.0)
    assert len(h.ua.uas.dialogs) == 0
