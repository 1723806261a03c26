"""Tests of sipua.sip.dialog: paired in-memory UAs over transaction layers, in simulated time.

Each :class:`UA` is what the asyncio UA will be, minus asyncio: a transaction
layer, a :class:`DialogRegistry`, and a transaction user that builds requests
with :class:`Dialog` and answers in-dialog requests through the registry.
"""

from __future__ import annotations

import pytest

from sipua.sip.builders import make_request, make_response
from sipua.sip.checks import Rejection
from sipua.sip.dialog import Dialog, DialogRegistry, DialogState
from sipua.sip.ids import new_branch, new_call_id, new_tag
from sipua.sip.message import Request, Response, parse_message
from sipua.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionLayer,
)
from sipua.sip.uri import SipUri

try:  # tests/sip is not a package today; stay importable if it becomes one
    from .simnet import Node, SimNet, perfect
except ImportError:
    from simnet import Node, SimNet, perfect

SDP_OFFER = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
SDP_ANSWER = b"v=0\r\no=bob 7 7 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"


class UA:
    """A user agent made of a transaction layer, dialogs, and a scripted user."""

    def __init__(self, net: SimNet, name: str, user: str, host: str) -> None:
        self.net = net
        self.name = name
        self.user = user
        self.host = host
        self.aor = f"sip:{user}@{host.split(':')[0]}"
        self.contact = f"<sip:{user}@{host}>"
        self.node: Node = net.add(name, TransactionLayer(), on_event=self.on_event)
        self.dialogs = DialogRegistry()
        # What the UAS side answers a new INVITE with: [(status, contact)], in order.
        self.answers: list[tuple[int, str | None]] = [(180, None), (200, None)]
        self.answer_body = SDP_ANSWER
        self.record_route: list[str] = []  # what "proxies" put in our INVITEs
        self.invites: dict[Transaction, Request] = {}  # client INVITE transactions
        self.acks: dict[tuple, Request] = {}  # the ACK of each 2xx, by dialog id and CSeq
        self.sent_acks: list[Request] = []
        self.server_invites: list[Transaction] = []
        self.finals: list[tuple[Transaction, Response]] = []
        self.rejected: list[Response] = []

    @property
    def layer(self) -> TransactionLayer:
        return self.node.layer

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.host};branch={new_branch()}"

    # -- UAC side --

    def call(self, peer: UA, *, call_id: str | None = None) -> Request:
        invite = make_request(
            "INVITE",
            peer.aor,
            via=self.via(),
            from_=f'"{self.user.title()}" <{self.aor}>;tag={new_tag()}',
            to=f"<{peer.aor}>",
            call_id=call_id or new_call_id(self.host.split(":")[0]),
            cseq=1,
            contact=self.contact,
            headers=tuple(("Record-Route", rr) for rr in self.record_route),
            body=SDP_OFFER,
            content_type="application/sdp",
        )
        self.send(invite, peer.name)
        return invite

    def send(self, request: Request, context: str) -> Transaction:
        tx = self.layer.send_request(request, self.net.now, context=context)
        if request.method == "INVITE":
            self.invites[tx] = request
        return tx

    def send_in_dialog(self, dialog: Dialog, method: str, **kw) -> tuple[Request, Transaction]:
        request = dialog.create_request(method, via=self.via(), **kw)
        return request, self.send(request, dialog.context)

    def _uac_response(self, tx: Transaction, response: Response) -> None:
        status = response.status
        if status >= 200:
            self.finals.append((tx, response))
        invite = self.invites.get(tx)
        if invite is None or response.to.tag is None or status == 100:
            return
        dialog = self.dialogs.find(response)
        in_dialog = invite.to.tag is not None
        if 200 <= status < 300 or (status < 200 and not in_dialog):
            if dialog is None:
                dialog = Dialog.from_uac(invite, response, context=response.context)
                self.dialogs.add(dialog)
            elif 200 <= status < 300 and dialog.state is DialogState.EARLY:
                dialog.confirm(response)
            elif in_dialog and 200 <= status < 300:
                dialog.refresh_target(response)  # §12.2.1.2: the 2xx to a target refresh
        if 200 <= status < 300:
            key = (dialog.id, invite.cseq.seq)
            ack = self.acks.get(key)
            if ack is None:  # one ACK per 2xx, sent again for each retransmission
                ack = self.acks[key] = dialog.create_ack(invite, via=self.via())
            self.sent_acks.append(ack)
            self.layer.send_stateless(ack, dialog.context)

    # -- UAS side --

    def _uas_request(self, tx: Transaction, request: Request) -> None:
        if request.to.tag is None:
            if request.method == "INVITE":
                self._new_invite(tx, request)
            else:
                self.layer.respond(tx, make_response(request, 200), self.net.now)
            return
        found = self.dialogs.receive_request(request)
        if isinstance(found, Rejection):
            response = make_response(request, found.status, found.reason)
            self.rejected.append(response)
            self.layer.respond(tx, response, self.net.now)
            return
        dialog = found
        if request.method == "INVITE":  # a re-INVITE: the peer's new Contact is the target
            dialog.refresh_target(request)
            ok = make_response(
                request,
                200,
                headers=(("Contact", dialog.local_contact or self.contact),),
                body=self.answer_body,
                content_type="application/sdp",
            )
            self.layer.respond(tx, ok, self.net.now)
        else:
            self.layer.respond(tx, make_response(request, 200), self.net.now)
            if request.method == "BYE":
                self.dialogs.remove(dialog)

    def _new_invite(self, tx: Transaction, request: Request) -> None:
        self.server_invites.append(tx)
        tag = new_tag()
        dialog = None
        for status, contact in self.answers:
            response = make_response(
                request,
                status,
                to_tag=tag,
                headers=(("Contact", contact or self.contact),),
                record_route=True,  # §12.1.1: dialog-creating responses copy Record-Route
                body=self.answer_body if status >= 200 else b"",
                content_type="application/sdp" if status >= 200 else None,
            )
            self.layer.respond(tx, response, self.net.now)
            if dialog is None:
                dialog = Dialog.from_uas(request, response, context=request.context)
                self.dialogs.add(dialog)
            elif 200 <= status < 300:
                dialog.confirm(response)

    # -- events --

    def on_event(self, node: Node, event) -> None:
        if isinstance(event, RequestReceived):
            self._uas_request(event.transaction, event.request)
        elif isinstance(event, ResponseReceived):
            self._uac_response(event.transaction, event.response)

    def only_dialog(self) -> Dialog:
        (dialog,) = list(self.dialogs)
        return dialog


@pytest.fixture
def net() -> SimNet:
    return SimNet(perfect(0.01))


@pytest.fixture
def alice(net) -> UA:
    return UA(net, "alice", "alice", "192.0.2.1:5060")


@pytest.fixture
def bob(net) -> UA:
    return UA(net, "bob", "bob", "192.0.2.2:5060")


def received(ua: UA, label: str) -> list[Request | Response]:
    return ua.node.received(label)


def establish(net: SimNet, alice: UA, bob: UA) -> tuple[Request, Dialog, Dialog]:
    invite = alice.call(bob)
    net.run_for(1.0)
    return invite, alice.only_dialog(), bob.only_dialog()


# -- INVITE / 200 / ACK / BYE ------------------------------------------------------------


def test_invite_200_ack_bye(net, alice, bob):
    invite, uac, uas = establish(net, alice, bob)
    alice_tag, bob_tag = invite.from_.tag, uas.local_tag
    assert uac.state is uas.state is DialogState.CONFIRMED
    assert uac.id == (invite.call_id, alice_tag, bob_tag)
    assert uas.id == (invite.call_id, bob_tag, alice_tag)
    assert uac.is_uac and not uas.is_uac
    assert str(uac.remote_target) == "sip:bob@192.0.2.2:5060"
    assert str(uas.remote_target) == "sip:alice@192.0.2.1:5060"
    assert (uac.local_seq, uac.remote_seq) == (1, None)
    assert (uas.local_seq, uas.remote_seq) == (None, 1)
    assert uac.route_set == uas.route_set == []
    assert uac.context == "bob" and uas.context == "alice"

    # The ACK of the 2xx: in the dialog, CSeq number of the INVITE, a branch of its own.
    (ack,) = received(bob, "ACK")
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.top_via.branch != invite.top_via.branch
    assert str(ack.uri) == "sip:bob@192.0.2.2:5060"
    assert (ack.from_.tag, ack.to.tag, ack.call_id) == (alice_tag, bob_tag, invite.call_id)
    (acked,) = bob.node.events_of(AckReceived)
    assert acked.transaction is bob.server_invites[0]
    assert uac.local_seq == 1  # the ACK took no new CSeq number

    bye, _ = alice.send_in_dialog(uac, "BYE")
    assert (bye.cseq.seq, bye.cseq.method) == (2, "BYE")
    assert str(bye.uri) == "sip:bob@192.0.2.2:5060"
    assert bye.get("route") is None and bye.get("contact") is None
    net.run_for(1.0)
    assert [r.status for r in received(alice, "200/BYE")] == [200]
    assert len(bob.dialogs) == 0 and uas.state is DialogState.TERMINATED
    net.run_for(100)
    for ua in (alice, bob):
        assert len(ua.layer) == 0 and ua.layer.next_timer() is None


def test_from_and_to_keep_their_tags_and_text(net, alice, bob):
    invite, uac, uas = establish(net, alice, bob)
    from_alice, _ = alice.send_in_dialog(uac, "INFO")
    assert from_alice.get("from") == f'"Alice" <sip:alice@192.0.2.1>;tag={invite.from_.tag}'
    assert from_alice.get("to") == f"<sip:bob@192.0.2.2>;tag={uas.local_tag}"
    net.run_for(1.0)
    from_bob, _ = bob.send_in_dialog(uas, "INFO")
    # The UAS writes From from the INVITE's To and To from its From, tags swapped.
    assert from_bob.get("from") == f"<sip:bob@192.0.2.2>;tag={uas.local_tag}"
    assert from_bob.get("to") == f'"Alice" <sip:alice@192.0.2.1>;tag={invite.from_.tag}'
    assert from_bob.call_id == invite.call_id
    net.run_for(1.0)
    assert [r.status for r in received(bob, "200/INFO")] == [200]
    # Bob's first request in the dialog starts his own CSeq space (§12.1.1: empty).
    assert 1 <= from_bob.cseq.seq < 2**31
    assert uac.remote_seq == from_bob.cseq.seq


def test_bye_from_the_uas_goes_to_the_callers_contact(net, alice, bob):
    invite, uac, uas = establish(net, alice, bob)
    bye, _ = bob.send_in_dialog(uas, "BYE")
    assert str(bye.uri) == "sip:alice@192.0.2.1:5060"
    net.run_for(1.0)
    assert [r.status for r in received(bob, "200/BYE")] == [200]
    assert len(alice.dialogs) == 0


# -- re-INVITE -----------------------------------------------------------------------------


def test_reinvite_increments_cseq_refreshes_targets_and_carries_new_sdp(net, alice, bob):
    invite, uac, uas = establish(net, alice, bob)
    alice.contact = uac.local_contact = "<sip:alice@198.51.100.7:5070>"
    uas.local_contact = "<sip:bob@203.0.113.9:5080>"  # Bob moves too; his 2xx says so
    new_offer = SDP_OFFER.replace(b"o=alice 1 1", b"o=alice 1 2")
    reinvite, tx = alice.send_in_dialog(
        uac, "INVITE", body=new_offer, content_type="application/sdp"
    )
    assert (reinvite.cseq.seq, reinvite.cseq.method) == (2, "INVITE")
    assert reinvite.get("contact") == "<sip:alice@198.51.100.7:5070>"
    assert reinvite.to.tag == uas.local_tag and reinvite.from_.tag == uac.local_tag
    assert str(reinvite.uri) == "sip:bob@192.0.2.2:5060"  # still the old target
    net.run_for(1.0)
    (at_bob,) = [e.request for e in bob.node.events_of(RequestReceived) if e.request.cseq.seq == 2]
    assert at_bob.body == new_offer
    assert uas.remote_seq == 2
    assert str(uas.remote_target) == "sip:alice@198.51.100.7:5070"
    assert [r.body for r in received(alice, "200/INVITE")][-1] == SDP_ANSWER
    assert str(uac.remote_target) == "sip:bob@203.0.113.9:5080"
    acks = received(bob, "ACK")
    assert [(a.cseq.seq, a.cseq.method) for a in acks] == [(1, "ACK"), (2, "ACK")]
    assert str(acks[-1].uri) == "sip:bob@203.0.113.9:5080"
    assert acks[-1].top_via.branch != reinvite.top_via.branch
    # Both ACKs were matched to their server transactions.
    assert [e.transaction is not None for e in bob.node.events_of(AckReceived)] == [True, True]
    bye, _ = bob.send_in_dialog(uas, "BYE")
    assert str(bye.uri) == "sip:alice@198.51.100.7:5070"
    info, _ = alice.send_in_dialog(uac, "INFO")
    assert info.cseq.seq == 3


# -- CSeq order and unknown dialogs ---------------------------------------------------------


@pytest.mark.parametrize("delta", [0, -1])
def test_lower_or_equal_cseq_is_rejected_with_500(net, alice, bob, delta):
    invite, uac, uas = establish(net, alice, bob)
    info, _ = alice.send_in_dialog(uac, "INFO")  # CSeq 2
    net.run_for(1.0)
    assert uas.remote_seq == 2
    stale, _ = alice.send_in_dialog(uac, "INFO", cseq=2 + delta)
    net.run_for(1.0)
    (rejected,) = bob.rejected
    assert (rejected.status, rejected.reason) == (500, "Server Internal Error")
    assert rejected.cseq.seq == 2 + delta
    assert [r.status for r in received(alice, "500/INFO")] == [500]
    assert uas.remote_seq == 2  # unchanged by the rejected request
    alice.send_in_dialog(uac, "INFO")  # CSeq 3: accepted
    net.run_for(1.0)
    assert uas.remote_seq == 3
    assert len(bob.rejected) == 1


def test_ack_and_cancel_are_not_checked_against_cseq():
    dialog = Dialog(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="<sip:l@x>",
        remote_uri="<sip:r@y>",
        remote_target=SipUri("y"),
        route_set=[],
        local_seq=None,
        remote_seq=5,
    )
    for method in ("ACK", "CANCEL"):
        req = make_request(
            method,
            "sip:l@x",
            via="SIP/2.0/UDP y;branch=z9hG4bKa",
            from_="<sip:r@y>;tag=r",
            to="<sip:l@x>;tag=l",
            call_id="c",
            cseq=5,
        )
        assert dialog.receive_request(req) is None
    assert dialog.remote_seq == 5
    bye = make_request(
        "BYE",
        "sip:l@x",
        via="SIP/2.0/UDP y;branch=z9hG4bKb",
        from_="<sip:r@y>;tag=r",
        to="<sip:l@x>;tag=l",
        call_id="c",
        cseq=4,
    )
    rejection = dialog.receive_request(bye)
    assert rejection is not None and rejection.status == 500


@pytest.mark.parametrize("which", ["to-tag", "from-tag", "call-id"])
def test_request_for_unknown_dialog_gets_481(net, alice, bob, which):
    invite, uac, uas = establish(net, alice, bob)
    bye = uac.create_request("BYE", via=alice.via())
    if which == "to-tag":
        bye.set("To", f"<sip:bob@192.0.2.2>;tag={new_tag()}")
    elif which == "from-tag":
        bye.set("From", f"<sip:alice@192.0.2.1>;tag={new_tag()}")
    else:
        bye.set("Call-ID", new_call_id())
    alice.send(bye, "bob")
    net.run_for(1.0)
    (rejected,) = bob.rejected
    assert rejected.status == 481
    assert [r.status for r in received(alice, "481/BYE")] == [481]
    assert len(bob.dialogs) == 1 and uas.state is DialogState.CONFIRMED


def test_registry_find_and_remove():
    registry = DialogRegistry()
    assert registry.receive_request(_in_dialog_request("c", "ours", "theirs")).status == 481
    dialog = Dialog(
        call_id="c",
        local_tag="ours",
        remote_tag="theirs",
        local_uri="<sip:o@x>",
        remote_uri="<sip:t@y>",
        remote_target=SipUri("y"),
        route_set=[],
        local_seq=1,
        remote_seq=None,
    )
    registry.add(dialog)
    assert registry.receive_request(_in_dialog_request("c", "ours", "theirs")) is dialog
    assert dialog.remote_seq == 1
    # Responses to our requests are found by From tag (ours) and To tag (theirs).
    response = make_response(_in_dialog_request("c", "theirs", "ours"), 200)
    assert registry.find(response) is dialog
    registry.remove(dialog)
    assert len(registry) == 0 and dialog.state is DialogState.TERMINATED
    assert registry.find(response) is None


def _in_dialog_request(call_id: str, to_tag: str, from_tag: str, cseq: int = 1) -> Request:
    return make_request(
        "INFO",
        "sip:o@x",
        via=f"SIP/2.0/UDP y;branch={new_branch()}",
        from_=f"<sip:t@y>;tag={from_tag}",
        to=f"<sip:o@x>;tag={to_tag}",
        call_id=call_id,
        cseq=cseq,
    )


# -- Record-Route, loose and strict routing --------------------------------------------------


RR_NEAR_BOB = "<sip:p1.example.com;lr>"
RR_NEAR_ALICE = "<sip:p2.example.com;lr;transport=tcp>"


@pytest.mark.parametrize("one_line", [False, True])
def test_record_route_gives_route_sets_uas_in_order_uac_reversed(net, alice, bob, one_line):
    # Proxies add Record-Route on top: the one nearest Bob is first.
    alice.record_route = (
        [f"{RR_NEAR_BOB}, {RR_NEAR_ALICE}"] if one_line else [RR_NEAR_BOB, RR_NEAR_ALICE]
    )
    invite, uac, uas = establish(net, alice, bob)
    assert uas.route_set == [RR_NEAR_BOB, RR_NEAR_ALICE]
    assert uac.route_set == [RR_NEAR_ALICE, RR_NEAR_BOB]
    # Loose routing: Route is the route set, the Request-URI the remote target.
    info, _ = alice.send_in_dialog(uac, "INFO")
    assert info.get_all("route") == [RR_NEAR_ALICE, RR_NEAR_BOB]
    assert str(info.uri) == "sip:bob@192.0.2.2:5060"
    req, _ = bob.send_in_dialog(uas, "INFO")
    assert req.get_all("route") == [RR_NEAR_BOB, RR_NEAR_ALICE]
    assert str(req.uri) == "sip:alice@192.0.2.1:5060"
    # The ACK of the 2xx follows the route set as well (§13.2.2.4).
    (ack,) = received(bob, "ACK")
    assert ack.get_all("route") == [RR_NEAR_ALICE, RR_NEAR_BOB]
    net.run_for(1.0)
    assert [r.status for r in received(alice, "200/INFO")] == [200]
    assert [r.status for r in received(bob, "200/INFO")] == [200]


def test_strict_routing_puts_the_first_route_in_the_request_uri(net, alice, bob):
    strict = "<sip:strict.example.com;maddr=192.0.2.99;transport=udp;method=INVITE>"
    alice.record_route = [RR_NEAR_BOB, strict]  # nearest Alice: an RFC 2543 proxy, no lr
    invite, uac, uas = establish(net, alice, bob)
    assert uac.route_set == [strict, RR_NEAR_BOB]
    req, _ = alice.send_in_dialog(uac, "INFO")
    uri = req.uri
    assert isinstance(uri, SipUri)
    # The method parameter is not allowed in a Request-URI; maddr and transport are.
    assert (uri.host, uri.params) == (
        "strict.example.com",
        {"maddr": "192.0.2.99", "transport": "udp"},
    )
    assert uri.headers is None
    # The rest of the route set in order, then the remote target last.
    assert req.get_all("route") == [RR_NEAR_BOB, "<sip:bob@192.0.2.2:5060>"]
    # Parsing the wire form gives the same.
    again = parse_message(req.to_bytes())
    assert str(again.uri) == str(uri)
    assert again.values("route") == [RR_NEAR_BOB, "<sip:bob@192.0.2.2:5060>"]
    # Bob's first hop is a loose router: loose routing from his side.
    back, _ = bob.send_in_dialog(uas, "INFO")
    assert str(back.uri) == "sip:alice@192.0.2.1:5060"
    assert back.get_all("route") == [RR_NEAR_BOB, strict]


def test_strict_route_with_uri_headers_drops_them():
    dialog = Dialog(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="<sip:l@x>",
        remote_uri="<sip:r@y>",
        remote_target=SipUri("y", user="r"),
        route_set=['"Old, proxy" <sip:old.example.com;ttl=3?Subject=hi>'],
        local_seq=1,
        remote_seq=None,
    )
    uri, routes = dialog.request_target()
    assert str(uri) == "sip:old.example.com;ttl=3"
    assert routes == ["<sip:r@y>"]


def test_next_hop_is_the_first_route_else_the_remote_target():
    def dialog(route_set: list[str]) -> Dialog:
        return Dialog(
            call_id="c",
            local_tag="l",
            remote_tag="r",
            local_uri="<sip:l@x>",
            remote_uri="<sip:r@y>",
            remote_target=SipUri("192.0.2.9", user="r", port=5070),
            route_set=route_set,
            local_seq=1,
            remote_seq=None,
        )

    assert str(dialog([]).next_hop()) == "sip:r@192.0.2.9:5070"
    hop = dialog(
        ["<sip:p1.example.com:5080;lr;transport=tcp>", "<sip:p2.example.com;lr>"]
    ).next_hop()
    assert isinstance(hop, SipUri)
    assert (hop.host, hop.port, hop.transport) == ("p1.example.com", 5080, "tcp")


# -- REFER and NOTIFY in the dialog (RFC 3515, RFC 6665) ----------------------------------------


def test_refer_and_notify_in_the_dialog(net, alice, bob):
    alice.record_route = [RR_NEAR_BOB, RR_NEAR_ALICE]
    invite, uac, uas = establish(net, alice, bob)
    assert uas.local_contact == bob.contact and uac.local_contact == alice.contact

    # Bob transfers Alice. RFC 3515 §2: a REFER "MUST contain a single Contact header field
    # value", and in a dialog it "MUST follow the Route/Record-Route logic of that dialog".
    refer, _ = bob.send_in_dialog(uas, "REFER", headers=[("Refer-To", "<sip:carol@192.0.2.3>")])
    assert str(refer.uri) == "sip:alice@192.0.2.1:5060"  # the remote target
    assert refer.get_all("route") == [RR_NEAR_BOB, RR_NEAR_ALICE]
    assert refer.get_all("contact") == [bob.contact]
    assert refer.get("refer-to") == "<sip:carol@192.0.2.3>"
    assert refer.cseq.method == "REFER" and 1 <= refer.cseq.seq < 2**31
    assert (refer.from_.tag, refer.to.tag) == (uas.local_tag, uac.local_tag)
    net.run_for(1.0)
    assert [r.status for r in received(bob, "200/REFER")] == [200]
    assert uac.remote_seq == refer.cseq.seq

    # Alice reports on the referred call with NOTIFY (RFC 3515 §2.4.4). NOTIFY is a target
    # refresh request (RFC 6665 §3.2), so it carries her Contact as well.
    notifies = []
    for status in (b"100 Trying", b"200 OK"):
        notify, _ = alice.send_in_dialog(
            uac,
            "NOTIFY",
            headers=[("Event", "refer"), ("Subscription-State", "active;expires=60")],
            body=b"SIP/2.0 " + status + b"\r\n",
            content_type="message/sipfrag",
        )
        notifies.append(notify)
    for notify in notifies:
        assert str(notify.uri) == "sip:bob@192.0.2.2:5060"
        assert notify.get_all("route") == [RR_NEAR_ALICE, RR_NEAR_BOB]
        assert notify.get_all("contact") == [alice.contact]
        assert notify.get("event") == "refer"
    # Alice's CSeq space goes on from her INVITE's 1, one number per request.
    assert [(n.cseq.seq, n.cseq.method) for n in notifies] == [(2, "NOTIFY"), (3, "NOTIFY")]
    net.run_for(1.0)
    assert [r.status for r in received(alice, "200/NOTIFY")] == [200, 200]
    assert uas.remote_seq == 3
    at_bob = [
        e.request for e in bob.node.events_of(RequestReceived) if e.request.method == "NOTIFY"
    ]
    assert [r.body for r in at_bob] == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]

    # Bob's next request in the dialog takes the next number in his own space.
    again, _ = bob.send_in_dialog(uas, "REFER", headers=[("Refer-To", "<sip:dave@192.0.2.4>")])
    assert again.cseq.seq == refer.cseq.seq + 1


# -- early dialogs ----------------------------------------------------------------------------


def test_early_dialog_confirmed_by_2xx_with_new_contact(net, alice, bob):
    bob.answers = [(183, "<sip:bob-early@192.0.2.2:5062>"), (200, "<sip:bob@192.0.2.2:5064>")]
    alice.record_route = [RR_NEAR_BOB]
    invite = alice.call(bob)  # Bob sends 183 and 200 at once: early, then confirmed
    net.run_for(1.0)
    uac = alice.only_dialog()
    assert uac.state is DialogState.CONFIRMED
    assert str(uac.remote_target) == "sip:bob@192.0.2.2:5064"
    assert uac.route_set == [RR_NEAR_BOB]
    (ack,) = received(bob, "ACK")
    assert str(ack.uri) == "sip:bob@192.0.2.2:5064"
    assert invite.cseq.seq == ack.cseq.seq


def test_early_dialog_state_before_the_2xx(net, alice, bob):
    bob.answers = [(180, "<sip:bob-early@192.0.2.2:5062>")]
    invite = alice.call(bob)
    net.run_for(1.0)
    uac, uas = alice.only_dialog(), bob.only_dialog()
    assert uac.state is uas.state is DialogState.EARLY
    assert str(uac.remote_target) == "sip:bob-early@192.0.2.2:5062"
    assert uac.id == (invite.call_id, invite.from_.tag, uas.local_tag)
    # Now Bob answers from another Contact (and a proxy record-routes the 2xx).
    tx = bob.server_invites[0]
    ok = make_response(
        tx.request,
        200,
        to_tag=uas.local_tag,
        headers=(("Contact", "<sip:bob@192.0.2.2:5090>"), ("Record-Route", RR_NEAR_BOB)),
        body=SDP_ANSWER,
        content_type="application/sdp",
    )
    bob.layer.respond(tx, ok, net.now)
    uas.confirm(ok)
    net.run_for(1.0)
    assert uac.state is uas.state is DialogState.CONFIRMED
    assert alice.only_dialog() is uac
    assert str(uac.remote_target) == "sip:bob@192.0.2.2:5090"
    # §12.1.2 / §13.2.2.4: the route set is recomputed from the 2xx.
    assert uac.route_set == [RR_NEAR_BOB]
    assert [e.transaction for e in bob.node.events_of(AckReceived)] == [tx]


def test_forked_early_dialogs_are_distinct():
    invite = make_request(
        "INVITE",
        "sip:bob@example.com",
        via=f"SIP/2.0/UDP 192.0.2.1;branch={new_branch()}",
        from_="<sip:alice@example.com>;tag=a",
        to="<sip:bob@example.com>",
        call_id="fork",
        cseq=1,
        contact="<sip:alice@192.0.2.1>",
    )
    registry = DialogRegistry()
    for tag, contact in (("b1", "<sip:bob@192.0.2.11>"), ("b2", "<sip:bob@192.0.2.12>")):
        ringing = make_response(invite, 180, to_tag=tag, headers=(("Contact", contact),))
        registry.add(Dialog.from_uac(invite, ringing))
    assert len(registry) == 2
    ok = make_response(invite, 200, to_tag="b2", headers=(("Contact", "<sip:bob@192.0.2.22>"),))
    dialog = registry.find(ok)
    assert dialog is not None and dialog.remote_tag == "b2"
    dialog.confirm(ok)
    states = {d.remote_tag: (d.state, str(d.remote_target)) for d in registry}
    assert states == {
        "b1": (DialogState.EARLY, "sip:bob@192.0.2.11"),
        "b2": (DialogState.CONFIRMED, "sip:bob@192.0.2.22"),
    }


# -- building blocks ------------------------------------------------------------------------------


def _invite_and_ok(from_: str, to: str, contact: str | None = "<sip:bob@192.0.2.2>"):
    invite = make_request(
        "INVITE",
        "sip:bob@example.com",
        via=f"SIP/2.0/UDP 192.0.2.1;branch={new_branch()}",
        from_=from_,
        to=to,
        call_id="c1",
        cseq=7,
        contact="<sip:alice@192.0.2.1>",
    )
    headers = (("Contact", contact),) if contact else ()
    ok = make_response(invite, 200, to_tag="bt", headers=headers)
    return invite, ok


@pytest.mark.parametrize(
    ("from_", "expected_local_uri"),
    [
        ("Alice <sip:alice@example.com>;tag=at", "Alice <sip:alice@example.com>"),
        ("<sip:alice@example.com>;x=1;tag=at;y=2", "<sip:alice@example.com>;x=1;y=2"),
        ("sip:alice@example.com;tag=at", "sip:alice@example.com"),
        (
            '"A;tag=no" <sip:alice@example.com;tag=uri>;tag=at',
            '"A;tag=no" <sip:alice@example.com;tag=uri>',
        ),
        ("<sip:alice@example.com> ; tag = at ; y", "<sip:alice@example.com>;y"),
        ("<sip:alice@example.com>;TAG=at", "<sip:alice@example.com>"),
    ],
)
def test_from_tag_is_stripped_once_whatever_the_spelling(from_, expected_local_uri):
    invite, ok = _invite_and_ok(from_, "<sip:bob@example.com>")
    uac = Dialog.from_uac(invite, ok)
    assert uac.local_tag == "at"
    assert uac.local_uri == expected_local_uri
    request = uac.create_request("BYE", via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
    again = parse_message(request.to_bytes())
    assert again.from_.tag == "at"
    assert again.get("from").lower().count("tag") == expected_local_uri.lower().count("tag") + 1
    uas = Dialog.from_uas(invite, ok)
    assert uas.remote_uri == expected_local_uri
    assert (
        parse_message(
            uas.create_request("BYE", via="SIP/2.0/UDP b;branch=z9hG4bKy").to_bytes()
        ).to.tag
        == "at"
    )


def test_dialog_creation_needs_tags_and_contacts():
    invite, ok = _invite_and_ok("<sip:a@example.com>;tag=at", "<sip:b@example.com>", contact=None)
    with pytest.raises(ValueError):
        Dialog.from_uac(invite, ok)
    no_tag = make_response(invite, 200, headers=(("Contact", "<sip:b@192.0.2.2>"),))
    with pytest.raises(ValueError):
        Dialog.from_uas(invite, no_tag)
    invite.remove("Contact")
    _, ok = _invite_and_ok("<sip:a@example.com>;tag=at", "<sip:b@example.com>")
    with pytest.raises(ValueError):
        Dialog.from_uas(invite, ok)


def test_secure_flag_and_contact_star():
    invite, ok = _invite_and_ok("<sip:a@example.com>;tag=at", "<sip:b@example.com>")
    invite.uri = SipUri("example.com", user="bob", scheme="sips")
    assert Dialog.from_uac(invite, ok).secure is True
    assert Dialog.from_uas(invite, ok, secure=True).secure is True
    assert Dialog.from_uas(invite, ok, secure=False).secure is False
    dialog = Dialog.from_uac(invite, ok)
    star = make_response(invite, 200, to_tag="bt", headers=(("Contact", "*"),))
    dialog.refresh_target(star)
    assert str(dialog.remote_target) == "sip:bob@192.0.2.2"


def test_local_cseq_starts_below_2_31_and_counts_up():
    _, ok = _invite_and_ok("<sip:a@example.com>;tag=at", "<sip:b@example.com>")
    invite, _ = _invite_and_ok("<sip:a@example.com>;tag=at", "<sip:b@example.com>")
    uas = Dialog.from_uas(invite, ok)
    first = uas.next_local_seq()
    assert 1 <= first < 2**31
    assert uas.next_local_seq() == first + 1
    ack = uas.create_ack(invite, via="SIP/2.0/UDP b;branch=z9hG4bKz")
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert uas.local_seq == first + 1


def test_uas_early_dialog_confirmed_takes_the_2xx_contact_as_its_own(net, alice, bob):
    bob.answers = [(180, "<sip:bob-early@192.0.2.2:5062>"), (200, "<sip:bob@192.0.2.2:5064>")]
    invite, uac, uas = establish(net, alice, bob)
    # Alice targets the 2xx's Contact; Bob's target refreshes must advertise the same.
    assert str(uac.remote_target) == "sip:bob@192.0.2.2:5064"
    assert uas.local_contact == "<sip:bob@192.0.2.2:5064>"
    reinvite, _ = bob.send_in_dialog(uas, "INVITE", body=SDP_ANSWER, content_type="application/sdp")
    assert reinvite.get("contact") == "<sip:bob@192.0.2.2:5064>"
    net.run_for(1.0)
    assert str(uac.remote_target) == "sip:bob@192.0.2.2:5064"


def test_strip_tag_leaves_what_it_cannot_parse():
    from sipua.sip.dialog import _strip_tag

    assert _strip_tag("") == ""
    assert _strip_tag("not a uri") == "not a uri"
