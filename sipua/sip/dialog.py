"""Dialogs (RFC 3261 §12): state, in-dialog request building, and CSeq rules.

A :class:`Dialog` is made from the INVITE and the response that creates it,
on the UAS side (:meth:`Dialog.from_uas`, §12.1.1) or the UAC side
(:meth:`Dialog.from_uac`, §12.1.2). It builds requests within the dialog with
the right Request-URI and Route set (loose routing, and strict routing for
old proxies, §12.2.1.1) and checks requests received in it (§12.2.2).
:class:`DialogRegistry` finds the dialog of an in-dialog request, or says 481.
"""

from __future__ import annotations

import secrets
from enum import Enum

from .checks import Rejection
from .errors import ParseError
from .grammar import QUOTED_RE, WS, split_outside
from .headers import NameAddr, parse_name_addr
from .message import Request, Response
from .uri import SipUri, Uri

# Methods that refresh the remote target when they succeed (RFC 3261 §12.2, RFC 3515, RFC 3311).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def _strip_tag(value: str, addr: NameAddr | None = None) -> str:
    """A From/To value without its tag parameter; other parameters are kept as written.

    LWS may surround the ``;`` and ``=`` of a parameter (RFC 3261 §25.1 SEMI,
    EQUAL), so ``<sip:a@b> ; tag = 7`` carries a tag as well. ``addr`` is the
    value already parsed, when the caller has it.
    """
    if addr is None:
        try:
            addr = parse_name_addr(value)
        except ParseError:
            return value  # not a name-addr: nothing we could strip a tag from
    tag = addr.params.get("tag", False)
    if tag is False:
        return value
    if tag and value.endswith(f";tag={tag}") and (addr.bracketed or value.count(";") == 1):
        return value[: -len(tag) - 5]  # the usual spelling, last
    if addr.bracketed:
        start = 0
        if value[:1] == '"':
            quoted = QUOTED_RE.match(value)
            start = quoted.end() if quoted else 0
        end = value.find(">", value.find("<", start)) + 1
    else:
        end = value.find(";")  # an addr-spec's parameters are the header's (§20.10)
    kept = [
        part.strip(WS)
        for part in split_outside(value[end:], ";")[1:]
        if part.split("=", 1)[0].strip(WS).lower() != "tag"
    ]
    return value[:end] + "".join(";" + part for part in kept)


class Dialog:
    """The state of one dialog, from our side."""

    __slots__ = (
        "call_id",
        "local_tag",
        "remote_tag",
        "local_uri",
        "remote_uri",
        "remote_target",
        "route_set",
        "local_seq",
        "remote_seq",
        "secure",
        "state",
        "local_contact",
        "is_uac",
        "context",
        "user_data",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: str,
        remote_uri: str,
        remote_target: Uri,
        route_set: list[str],
        local_seq: int | None,
        remote_seq: int | None,
        secure: bool = False,
        state: DialogState = DialogState.CONFIRMED,
        local_contact: str | None = None,
        is_uac: bool = False,
        context: object = None,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri  # From/To value without tag, as to be written
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set  # name-addr values, first hop first
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.state = state
        self.local_contact = local_contact
        self.is_uac = is_uac
        self.context = context  # the transport context in-dialog requests go to
        self.user_data: object = None

    @property
    def id(self) -> tuple[str, str, str | None]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state.value}>"

    # -- creation ----------------------------------------------------------------

    @classmethod
    def from_uas(
        cls, request: Request, response: Response, *, secure: bool = False, context: object = None
    ) -> Dialog:
        """RFC 3261 §12.1.1: the UAS side, from the INVITE and our 1xx/2xx with a To tag."""
        local_tag = response.to.tag
        if local_tag is None:
            raise ValueError("a dialog-creating response needs a To tag")
        contacts = request.contact
        if not contacts:
            raise ValueError("a dialog-creating request needs a Contact")
        uri = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_uri=_strip_tag(request.get("to") or "", request.to),
            remote_uri=_strip_tag(request.get("from") or "", request.from_),
            remote_target=contacts[0].uri,
            route_set=request.values("record-route"),
            local_seq=None,
            remote_seq=request.cseq.seq,
            secure=secure and isinstance(uri, SipUri) and uri.secure,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            local_contact=response.get("contact"),
            is_uac=False,
            context=context,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response, *, context: object = None) -> Dialog:
        """RFC 3261 §12.1.2: the UAC side, from our INVITE and a 1xx/2xx with a To tag."""
        contacts = response.contact
        if not contacts:
            raise ValueError("a dialog-creating response needs a Contact")
        uri = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag,
            local_uri=_strip_tag(request.get("from") or "", request.from_),
            remote_uri=_strip_tag(request.get("to") or "", request.to),
            remote_target=contacts[0].uri,
            route_set=list(reversed(response.values("record-route"))),
            local_seq=request.cseq.seq,
            remote_seq=None,
            secure=isinstance(uri, SipUri) and uri.secure,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            local_contact=request.get("contact"),
            is_uac=True,
            context=context,
        )

    def confirm(self, response: Response) -> None:
        """A 2xx confirmed an early dialog (RFC 3261 §12.1.2: route set and target are recomputed).

        On the UAS side ``response`` is our own 2xx: its Contact is what the
        peer now targets, so it becomes the Contact of our target refreshes.
        """
        if self.is_uac:
            contacts = response.contact
            if contacts:
                self.remote_target = contacts[0].uri
            self.route_set = list(reversed(response.values("record-route")))
        else:
            contact = response.get("contact")
            if contact is not None:
                self.local_contact = contact
        self.state = DialogState.CONFIRMED

    # -- requests we receive ---------------------------------------------------------

    def receive_request(self, request: Request) -> Rejection | None:
        """RFC 3261 §12.2.2: CSeq order. Returns the rejection to send, or None."""
        method = request.method
        if method in ("ACK", "CANCEL"):
            return None  # they carry the CSeq number of the request they belong to
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            return Rejection(
                500, "Server Internal Error", f"CSeq {seq} is not above {self.remote_seq}"
            )
        self.remote_seq = seq
        return None

    def refresh_target(self, message: Request | Response) -> None:
        """A target refresh request (or its 2xx) carries the peer's new Contact (§12.2)."""
        contacts = message.contact
        if contacts and contacts[0].uri_text != "*":
            self.remote_target = contacts[0].uri

    # -- requests we send ----------------------------------------------------------------

    def next_local_seq(self) -> int:
        if self.local_seq is None:
            # RFC 3261 §8.1.1.5: any value below 2**31.
            self.local_seq = secrets.randbelow(2**31 - 1) + 1
        else:
            self.local_seq += 1
        return self.local_seq

    def next_hop(self) -> Uri:
        """Where a request in this dialog is sent: the first route, else the remote target
        (RFC 3261 §12.2.1.1 with §8.1.2)."""
        return _route_uri(self.route_set[0]) if self.route_set else self.remote_target

    def request_target(self) -> tuple[Uri, list[str]]:
        """Request-URI and Route values for a request in this dialog (RFC 3261 §12.2.1.1)."""
        routes = self.route_set
        if not routes:
            return self.remote_target, []
        first = _route_uri(routes[0])
        if isinstance(first, SipUri) and first.lr:
            return self.remote_target, list(routes)
        # Strict routing (RFC 2543 proxies): the first route becomes the
        # Request-URI and the remote target goes last in Route. Of a SIP URI's
        # parts only the method parameter and headers are not allowed in a
        # Request-URI (RFC 3261 §19.1.1, Table 1); maddr, ttl and transport stay.
        stripped = first
        if isinstance(first, SipUri) and (first.headers is not None or "method" in first.params):
            params = {k: v for k, v in first.params.items() if k != "method"}
            stripped = first.replace(headers=None, params=params)
        return stripped, list(routes[1:]) + [f"<{self.remote_target}>"]

    def create_request(
        self,
        method: str,
        *,
        via: str,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> Request:
        """A request within the dialog. ``via`` is the Via value with a fresh branch."""
        if cseq is None:
            cseq = self.next_local_seq()
        uri, routes = self.request_target()
        to = (
            self.remote_uri
            if self.remote_tag is None
            else f"{self.remote_uri};tag={self.remote_tag}"
        )
        fields = [("via", "Via", via), ("max-forwards", "Max-Forwards", str(max_forwards))]
        fields.extend(("route", "Route", r) for r in routes)
        fields += [
            ("from", "From", f"{self.local_uri};tag={self.local_tag}"),
            ("to", "To", to),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
        ]
        if self.local_contact is not None and method in TARGET_REFRESH_METHODS | {"ACK"}:
            fields.append(("contact", "Contact", self.local_contact))
        for name, value in headers:
            fields.append((name.lower(), name, value))
        if content_type is not None:
            fields.append(("content-type", "Content-Type", content_type))
        return Request(method, uri, fields, body)

    def create_ack(
        self, invite: Request, *, via: str, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK of a 2xx (RFC 3261 §13.2.2.4): CSeq number of the INVITE, a new branch."""
        return self.create_request(
            "ACK", via=via, cseq=invite.cseq.seq, body=body, content_type=content_type
        )


def _route_uri(value: str) -> Uri:
    return parse_name_addr(value.strip(WS), "Route").uri


class DialogRegistry:
    """The dialogs of a UA, found by Call-ID and tags (RFC 3261 §12.2.2)."""

    def __init__(self) -> None:
        self._dialogs: dict[tuple[str, str, str | None], Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]
        dialog.state = DialogState.TERMINATED

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self):
        return iter(list(self._dialogs.values()))

    def find(self, message: Request | Response) -> Dialog | None:
        """The dialog a received request (or a response to our request) belongs to."""
        if isinstance(message, Request):
            key = (message.call_id, message.to.tag or "", message.from_.tag)
        else:
            key = (message.call_id, message.from_.tag or "", message.to.tag)
        return self._dialogs.get(key)

    def receive_request(self, request: Request) -> Dialog | Rejection:
        """The dialog of an in-dialog request (To tag present), after its CSeq check; else 481."""
        dialog = self.find(request)
        if dialog is None:
            return Rejection(
                481, "Call/Transaction Does Not Exist", "no dialog matches the request"
            )
        rejection = dialog.receive_request(request)
        return rejection if rejection is not None else dialog
