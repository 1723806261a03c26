"""The blocking driver: one ``select`` loop over SIP, the timers and the RTP schedule."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..sip.builders import make_response
from ..sip.dialog import Dialog
from ..sip.errors import ParseError
from ..sip.ids import new_branch
from ..sip.message import Request, Response, parse_message
from ..sip.sdp import (
    SdpError,
    parse_sdp,
)
from ..sip.transaction import (
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TimerConfig,
    Transaction,
    TransactionFailed,
    TransactionLayer,
    TransactionTimedOut,
)
from ..sip.transaction_fsm import State
from ..sip.uri import SipUri, Uri
from .capture import (
    CapturedCall,
    is_rtcp,
    is_rtp,
    load_capture,
)
from .common import (
    CANCEL_WAIT,
    DEFAULT_MAX_SECONDS,
    DRAIN_SECONDS,
    T1,
    TIMER_B,
    ReplayUsageError,
)
from .invite import (
    answer_summary,
    build_cancel,
    build_invite,
    hostport,
    replay_request_uri,
)
from .links import Address, _TcpLink, _UdpLink, local_ip_for, parse_target, resolve
from .result import ReplayResult

# -- the driver --------------------------------------------------------------------------------


@dataclass
class ReplayOptions:
    target: Address
    transport: str
    uri: str | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    answer_timeout: float = TIMER_B
    connect_timeout: float = 5.0


class Replay:
    """One replayed call, from the INVITE to the 200 of our BYE, with bounded waits."""

    def __init__(
        self, call: CapturedCall, options: ReplayOptions, log: Callable[[str], None] | None = None
    ) -> None:
        self.call = call
        self.options = options
        self.log = log
        self.layer = TransactionLayer(TimerConfig(t1=T1))
        target = options.target
        self.family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self.link: _UdpLink | _TcpLink | None = None
        self.rtp_sock: socket.socket | None = None
        self.send_due: Callable[[float], float | None] | None = None
        self.invite: Request | None = None
        self.invite_tx: Transaction | None = None
        self.bye_tx: Transaction | None = None
        self.dialog: Dialog | None = None
        self.ack: tuple[bytes, Address] | None = None
        self.provisional_dialogs: dict[str, Dialog] = {}
        self.pracked: set[tuple[str, int]] = set()
        self.seen: set[bytes] = set()
        self.result = ReplayResult(
            capture=call.path,
            invite_frame=call.frame,
            caller=call.caller,
            target=hostport(*target),
            transport=options.transport,
            request_uri="",
            rtp_captured=len(call.rtp),
        )

    # -- the steps ------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        try:
            self._open()
        except OSError as e:
            self.result.error = f"cannot open sockets towards {self.result.target}: {_reason(e)}"
        else:
            self._run()
        finally:
            if self.link is not None:
                self.link.close()
            if self.rtp_sock is not None:
                self.rtp_sock.close()
        return self.result

    def _open(self) -> None:
        local_ip = local_ip_for(self.options.target)
        self.link = (
            _TcpLink(local_ip, self.family, self.options.connect_timeout)
            if self.options.transport == "tcp"
            else _UdpLink(local_ip, self.family)
        )
        self.rtp_sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.rtp_sock.bind((local_ip, 0))
        try:
            self.rtp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass  # a smaller buffer only risks counting fewer echoes in a burst
        self.rtp_sock.setblocking(False)

    def _run(self) -> None:
        result, call, options = self.result, self.call, self.options
        if call.srtp:
            result.media = call.srtp
            result.notes.append(
                f"media is {call.srtp}: the captured packets are replayed as the ciphertext "
                "they are, keyed by the captured offer; packets received are counted, not "
                "checked as an echo"
            )
        if call.captured_answer is not None:
            result.captured_answer = answer_summary(call.captured_answer)
        target = options.target
        uri = replay_request_uri(
            call.invite.uri, target[0], target[1], options.transport, options.uri
        )
        result.request_uri = str(uri)
        try:
            local = self.link.local(target)
        except OSError as e:
            result.error = f"cannot connect to {hostport(*target)} over TCP: {_reason(e)}"
            return
        rtp_local = self.rtp_sock.getsockname()[:2]
        invite = build_invite(
            call, request_uri=uri, transport=options.transport, local=local, rtp=rtp_local
        )
        self.invite = invite
        result.call_id = invite.call_id
        self.invite_tx = self._send_request(invite, target)

        deadline = time.monotonic() + options.answer_timeout
        self._pump(lambda: result.final_status is not None or result.error is not None, deadline)
        if result.final_status is None and result.error is None:
            if result.responses:
                result.notes.append(f"no final response in {options.answer_timeout:g} s: CANCEL")
                self._send_request(build_cancel(invite), target)
                self._pump(lambda: result.final_status is not None, time.monotonic() + CANCEL_WAIT)
                if result.final_status is None:
                    result.error = "no final response to the INVITE, even after CANCEL"
            else:
                result.error = (
                    f"no response from {hostport(*target)} in {options.answer_timeout:g} s"
                )
        if not result.answered or self.dialog is None:
            return
        self._media()
        if result.hung_up_by == "remote" or result.error is not None:
            return
        self._hang_up()

    def _media(self) -> None:
        """Play the caller's RTP with its captured timing, counting what comes back."""
        result, answer = self.result, self.result.answer
        target = answer.target if answer is not None else None
        packets = self.call.rtp
        if answer is None:
            result.notes.append("the 2xx carries no SDP answer: no media sent")
        elif target is None:
            result.notes.append("the answer gives no RTP address (port 0 or c=0.0.0.0)")
        elif answer.direction in ("sendonly", "inactive"):
            result.notes.append(f"the answer is {answer.direction}: no media sent")
            target = None
        if not packets:
            result.notes.append("no RTP from the caller's SDP address in the capture")
        if target is not None and packets and answer is not None:
            captured_pts = {p.data[1] & 0x7F for p in packets}
            if answer.payload_type is not None and answer.payload_type not in captured_pts:
                result.notes.append(
                    f"the answer chose PT {answer.payload_type} ({answer.codec}) but the "
                    f"captured RTP carries PT {', '.join(map(str, sorted(captured_pts)))}: "
                    "the UAS may drop what we send"
                )
            captured = result.captured_answer
            if (
                self.call.srtp == "SRTP (SDES)"
                and captured is not None
                and captured.crypto
                and answer.crypto
                and captured.crypto.split()[0] != answer.crypto.split()[0]
            ):
                # The caller keyed its packets with the line the captured answer accepted.
                result.notes.append(
                    f"the UAS accepted crypto {answer.crypto}, the captured call "
                    f"{captured.crypto}: the UAS cannot decrypt the replayed packets"
                )
        first = packets[0].time if packets else 0.0
        schedule = [
            (p.time - first, p.data)
            for p in packets
            if target is not None and p.time - first <= self.options.max_seconds
        ]
        if target is not None and len(schedule) < len(packets):
            result.notes.append(
                f"media cut at --max-seconds {self.options.max_seconds:g} "
                f"({len(schedule)} of {len(packets)} packets)"
            )
        start = time.monotonic()
        position = 0

        def send_due(now: float) -> float | None:
            nonlocal position
            while position < len(schedule) and start + schedule[position][0] <= now:
                try:
                    self.rtp_sock.sendto(schedule[position][1], target)
                except BlockingIOError:
                    pass  # the send buffer is full: a lost packet, as on the network
                except OSError as e:
                    result.notes.append(f"sending RTP failed, media stopped: {_reason(e)}")
                    position = len(schedule)
                    break
                else:
                    result.rtp_sent += 1
                position += 1
            return start + schedule[position][0] if position < len(schedule) else None

        self.send_due = send_due
        end = start + (schedule[-1][0] if schedule else 0.0)
        self._pump(
            lambda: position >= len(schedule) or result.hung_up_by is not None,
            end + 1.0,
        )
        self.send_due = None
        self._pump(lambda: result.hung_up_by is not None, time.monotonic() + DRAIN_SECONDS)

    def _hang_up(self) -> None:
        result = self.result
        assert self.dialog is not None
        destination = self._next_hop()
        try:
            bye = self.dialog.create_request("BYE", via=self._via(destination))
        except OSError as e:  # a TCP connection to the Contact that cannot be made
            result.error = f"cannot send BYE to {hostport(*destination)}: {_reason(e)}"
            return
        self.bye_tx = self._send_request(bye, destination)
        result.hung_up_by = "us"
        # Timer F (64*T1) ends the BYE transaction; one more second for its report.
        self._pump(
            lambda: result.bye_status is not None or result.error is not None,
            time.monotonic() + TIMER_B + 1.0,
        )
        if result.bye_status is None and result.error is None:
            result.error = "no response to BYE"

    # -- the loop ---------------------------------------------------------------------------

    def _pump(self, done: Callable[[], bool], deadline: float) -> None:
        """Run sockets, timers and the RTP schedule until ``done()`` or ``deadline``."""
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return
            wake = deadline
            timer = self.layer.next_timer()
            if timer is not None:
                wake = min(wake, timer)
            if self.send_due is not None:
                due = self.send_due(now)
                if due is not None:
                    wake = min(wake, due)
            sockets = [*self.link.sockets(), self.rtp_sock]
            readable, _, _ = select.select(sockets, [], [], max(0.0, wake - now))
            for sock in readable:
                if sock is self.rtp_sock:
                    self._receive_rtp()
                else:
                    self._receive_sip(sock)
            self.layer.handle_timer(time.monotonic())
            self._flush()
            self._dispatch()

    def _receive_rtp(self) -> None:
        for _ in range(256):
            try:
                data = self.rtp_sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if is_rtp(data):
                self.result.rtp_received += 1
            elif is_rtcp(data):
                self.result.rtcp_received += 1

    def _receive_sip(self, sock: socket.socket) -> None:
        try:
            items = self.link.receive(sock)
        except ConnectionRefusedError:
            self._fail_pending("ICMP port unreachable: nothing listens there")
            return
        except ParseError as e:
            self._fail_pending(f"the UAS sent an unframeable TCP stream: {e.detail}")
            return
        except OSError as e:
            self._fail_pending(_reason(e))
            return
        now = time.monotonic()
        for data, source in items:
            try:
                message = parse_message(data) if isinstance(data, bytes) else data
                message.context = source
                if self.log is not None:
                    self.log(f"<<< from {hostport(*source)}\n{_head(message)}")
                self.layer.receive(message, now, reliable=self.link.reliable)
            except ParseError:
                continue  # RFC 3261 §18.1.2 / §18.2.1: a malformed message is dropped
        self._flush()

    def _fail_pending(self, reason: str) -> None:
        """A transport failure for the requests that have had no response yet.

        An ICMP error on an unconnected socket does not say which datagram caused it; a
        transaction that has heard from its peer is alive, so it is not the one.
        """
        now = time.monotonic()
        for tx in list(self.layer.client.values()):
            if tx.state in (State.CALLING, State.TRYING):
                self.layer.transport_error(tx, now, reason)

    def _send_request(self, request: Request, destination: Address) -> Transaction:
        tx = self.layer.send_request(
            request, time.monotonic(), context=destination, reliable=self.link.reliable
        )
        self._flush()
        return tx

    def _flush(self) -> None:
        for out in self.layer.messages_to_send():
            if self.log is not None:
                self.log(f">>> to {hostport(*out.context)}\n{_head(out.message)}")
            try:
                self.link.send(out.data, out.context)
            except OSError as e:
                message = out.message
                if isinstance(message, Request) and message.method != "ACK":
                    tx = self.layer.client.get((message.top_via.branch, message.method))
                    if tx is not None:
                        self.layer.transport_error(tx, time.monotonic(), _reason(e))

    def _dispatch(self) -> None:
        for event in self.layer.events():
            if isinstance(event, ResponseReceived):
                if event.transaction is self.invite_tx:
                    self._on_invite_response(event.response)
                elif event.transaction is self.bye_tx and event.response.status >= 200:
                    self.result.bye_status = event.response.status
            elif isinstance(event, StrayResponseReceived):
                self._on_stray(event.response)
            elif isinstance(event, TransactionTimedOut | TransactionFailed):
                self._on_failure(event)
            elif isinstance(event, RequestReceived):
                self._on_request(event.request, event.transaction)
        self._flush()

    # -- SIP events ------------------------------------------------------------------------

    def _record(self, response: Response) -> bool:
        """Note a response once: retransmissions are the same octets."""
        raw = response.to_bytes()
        if raw in self.seen:
            return False
        self.seen.add(raw)
        self.result.responses.append(response.status)
        self.result.reasons.append(response.reason)
        return True

    def _on_invite_response(self, response: Response) -> None:
        result, invite = self.result, self.invite
        assert invite is not None
        new = self._record(response)
        status = response.status
        if status < 200:
            if new:
                self._prack(response)
            return
        if status >= 300:
            result.final_status = status  # the transaction layer has ACKed it on its branch
            return
        if self.dialog is None:
            result.final_status = status
            self.dialog = self._dialog_for(response)
            if response.body:
                try:
                    result.answer = answer_summary(parse_sdp(response.body))
                except SdpError as e:
                    result.notes.append(f"the SDP answer is malformed: {e.detail}")
            self._send_ack(response)
        elif response.to.tag == self.dialog.remote_tag:
            self._resend_ack()  # RFC 3261 §13.2.2.4: every 2xx retransmission is ACKed
        else:
            result.notes.append(f"a second 2xx (forked, To tag {response.to.tag}) was ACKed")
            self._send_ack(response, keep=False)

    def _on_stray(self, response: Response) -> None:
        if (
            self.dialog is not None
            and 200 <= response.status < 300
            and response.get("call-id") == self.dialog.call_id
            and response.cseq.method == "INVITE"
        ):
            self._resend_ack()

    def _on_failure(self, event: TransactionTimedOut | TransactionFailed) -> None:
        tx = event.transaction
        why = f"Timer {event.timer}" if isinstance(event, TransactionTimedOut) else event.reason
        target = hostport(*tx.context)
        if tx is self.invite_tx:
            self.result.error = f"no answer to the INVITE from {target} ({why})"
        elif tx is self.bye_tx:
            self.result.error = f"no answer to the BYE from {target} ({why})"

    def _on_request(self, request: Request, tx: Transaction) -> None:
        dialog = self.dialog
        try:
            ours = (
                dialog is not None
                and request.call_id == dialog.call_id
                and request.to.tag == dialog.local_tag
            )
        except ParseError as e:
            self.layer.respond(tx, make_response(request, e.status), time.monotonic())
            return
        if not ours:
            status = 481  # RFC 3261 §12.2.2: no such dialog
        elif request.method == "BYE":
            status = 200
            if self.result.hung_up_by is None:
                self.result.hung_up_by = "remote"
        elif request.method == "OPTIONS":
            status = 200
        elif request.method in ("INVITE", "UPDATE"):
            status = 488  # a replay does not renegotiate; RFC 3261 §14.2 keeps the session
        else:
            status = 501
        self.layer.respond(tx, make_response(request, status), time.monotonic())

    def _dialog_for(self, response: Response) -> Dialog:
        assert self.invite is not None
        early = self.provisional_dialogs.get(response.to.tag or "")
        if early is not None:
            early.confirm(response)
            return early
        try:
            return Dialog.from_uac(self.invite, response, context=self.options.target)
        except ValueError:
            # A 2xx without Contact: in-dialog requests go where the INVITE went.
            self.result.notes.append("the 2xx has no Contact: ACK and BYE go to --to")
            dialog = Dialog.from_uac(self.invite, _with_contact(response, self.invite.uri))
            return dialog

    def _prack(self, response: Response) -> None:
        """RFC 3262: a reliable provisional response is acknowledged with PRACK."""
        rseq = response.get("rseq")
        tag = response.to.tag
        if "100rel" not in response.option_tags("require") or rseq is None or tag is None:
            return
        if not rseq.strip().isdigit() or (tag, int(rseq)) in self.pracked:
            return
        self.pracked.add((tag, int(rseq)))
        assert self.invite is not None
        dialog = self.provisional_dialogs.get(tag)
        if dialog is None:
            try:
                dialog = Dialog.from_uac(self.invite, response, context=self.options.target)
            except ValueError:
                return
            self.provisional_dialogs[tag] = dialog
        rack = f"{int(rseq)} {self.invite.cseq.seq} INVITE"
        destination = self._next_hop(dialog)
        try:
            via = self._via(destination)
        except OSError as e:
            self.result.notes.append(f"cannot send PRACK to {hostport(*destination)}: {_reason(e)}")
            return
        prack = dialog.create_request("PRACK", via=via, headers=[("RAck", rack)])
        self._send_request(prack, destination)

    def _send_ack(self, response: Response, *, keep: bool = True) -> None:
        assert self.invite is not None and self.dialog is not None
        try:
            dialog = self.dialog if keep else Dialog.from_uac(self.invite, response)
        except ValueError:
            return  # a forked 2xx without Contact: nowhere to send its ACK
        destination = self._next_hop(dialog)
        try:
            via = self._via(destination)
        except OSError as e:
            self.result.error = f"cannot send ACK to {hostport(*destination)}: {_reason(e)}"
            return
        ack = dialog.create_ack(self.invite, via=via)
        if keep:
            self.ack = (ack.to_bytes(), destination)
        self.layer.send_stateless(ack, destination)
        self._flush()

    def _resend_ack(self) -> None:
        if self.ack is not None:
            data, destination = self.ack
            try:
                self.link.send(data, destination)
            except OSError as e:
                self.result.notes.append(f"an ACK retransmission failed: {_reason(e)}")

    def _via(self, destination: Address) -> str:
        """A Via with a new branch naming the socket (or TCP connection) we send from."""
        host, port = self.link.local(destination)
        transport = self.options.transport.upper()
        return f"SIP/2.0/{transport} {hostport(host, port)};branch={new_branch()};rport"

    def _next_hop(self, dialog: Dialog | None = None) -> Address:
        """Where the dialog's requests go: its first route or the remote Contact (§12.2.1.1).

        A Contact that does not resolve, or names another family, falls back to ``--to``:
        the operator pointed us there.
        """
        dialog = dialog or self.dialog
        uri = dialog.next_hop() if dialog is not None else None
        if not isinstance(uri, SipUri):
            return self.options.target
        port = uri.port or (5061 if uri.secure else 5060)
        try:
            return resolve(uri.host_bare, port, self.family)
        except OSError:
            return self.options.target


def _with_contact(response: Response, uri: Uri) -> Response:
    fields = [*response.fields, ("contact", "Contact", f"<{uri}>")]
    return Response(response.status, response.reason, fields, response.body)


def _head(message: Request | Response) -> str:
    return message.to_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def replay(
    path: str,
    target: str,
    *,
    uri: str | None = None,
    transport: str | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    answer_timeout: float = TIMER_B,
    log: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replay the caller's side of the capture's first INVITE against ``target`` (HOST:PORT).

    Raises :class:`ReplayUsageError` for what the operator must fix (exit status 2).
    """
    if transport not in (None, "udp", "tcp"):
        raise ReplayUsageError(f"--transport must be udp or tcp, not {transport!r}")
    if max_seconds < 0 or answer_timeout <= 0:
        raise ReplayUsageError("--max-seconds must be >= 0 and --answer-timeout > 0")
    address = parse_target(target)
    if uri is not None:
        # Before the capture is read (seconds, for a large one): a typo is a usage error.
        replay_request_uri(SipUri(address[0]), *address, transport or "udp", uri)
    call = load_capture(path)
    options = ReplayOptions(
        target=address,
        transport=transport or call.transport,
        uri=uri,
        max_seconds=max_seconds,
        answer_timeout=answer_timeout,
    )
    replay_request_uri(call.invite.uri, *address, options.transport, uri)
    return Replay(call, options, log).run()
