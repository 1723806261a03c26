"""The security gate in-process: each hook on parsed requests, simulated clocks, no sockets."""

from __future__ import annotations

import pytest

from sipua.service.credentials_store import (
    CredentialDirectory,
    MemoryCredentialStore,
    StoredCredential,
    hash_password,
)
from sipua.ua.gate import Decision
from sipua.ua.netlist import AddressList
from sipua.ua.overload import LoopLagMonitor
from sipua.ua.security import SecurityGate, SecurityPolicy

from .conftest import SESSION, URI, FakeSession, answer, peer, request

PBX = "198.51.100.7"
OTHER = "203.0.113.9"
T0 = 1_800_000_000.0  # wall clock of the nonces


class Clock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def directory(*extra: StoredCredential, realm: str = "sipua") -> CredentialDirectory:
    d = CredentialDirectory(MemoryCredentialStore(), default_realm=realm, configured=extra)
    d.create("trunk", "correct horse", allowed_ips=[f"{PBX}/32", "2001:db8::/32"])
    return d


def make_gate(clock: Clock | None = None, **policy) -> tuple[SecurityGate, Clock]:
    clock = clock or Clock()
    policy.setdefault("auth_required", True)
    policy.setdefault("overload_lag", 0)  # no loop in these tests
    gate = SecurityGate(SecurityPolicy(**policy), directory(), secret=b"k" * 32, wall_clock=clock)
    return gate, clock


def challenge(gate: SecurityGate, req=None, ip: str = PBX, now: float = 0.0) -> Decision:
    decision = gate.check_request(req or request(), peer(ip), now)
    assert decision.status == 401, decision
    return decision


def authed(
    gate, decision, *, password="correct horse", username="trunk", method="INVITE", uri=URI, **kw
):
    name, value = answer(decision.headers, method, uri, username=username, password=password)
    return request(method, uri, headers=[(name, value)], **kw)


# -- digest authentication ---------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_qop_opaque_and_one_nonce():
    gate, _ = make_gate()
    decision = challenge(gate)
    values = [v for n, v in decision.headers if n == "WWW-Authenticate"]
    assert len(values) == 2
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    for value in values:
        assert 'qop="auth"' in value and 'opaque="' in value and 'realm="sipua"' in value
    nonces = {v.split('nonce="')[1].split('"')[0] for v in values}
    assert len(nonces) == 1
    assert gate.counters["auth_challenges"] == 1 and gate.counters["auth_failures"] == 0


def test_md5_first_when_configured_for_old_clients():
    gate, _ = make_gate(algorithms=("MD5", "SHA-256"))
    values = [v for _, v in challenge(gate).headers]
    assert "algorithm=MD5" in values[0]


def test_right_password_passes_with_the_identity():
    gate, _ = make_gate()
    decision = gate.check_request(authed(gate, challenge(gate)), peer(PBX), 1.0)
    assert decision.allowed and decision.identity == "trunk"
    assert gate.counters["auth_ok"] == 1


def test_md5_answer_passes_too():
    gate, _ = make_gate()
    c = challenge(gate)
    name, value = answer(c.headers, username="trunk", password="correct horse", algorithms=["MD5"])
    assert "algorithm=MD5" in value
    assert gate.check_request(request(headers=[(name, value)]), peer(PBX), 1.0).allowed


@pytest.mark.parametrize("username,password", [("trunk", "wrong"), ("nobody", "correct horse")])
def test_wrong_password_and_unknown_user_get_the_same_403(username, password):
    gate, _ = make_gate()
    decision = gate.check_request(
        authed(gate, challenge(gate), username=username, password=password), peer(PBX), 1.0
    )
    assert (decision.status, decision.reason, decision.headers, decision.drop) == (
        403,
        "Forbidden",
        (),
        False,
    )
    assert gate.counters["auth_failures"] == 1


def test_expired_nonce_with_the_right_password_is_stale():
    gate, clock = make_gate(nonce_lifetime=60)
    c = challenge(gate)
    clock.now += 61
    decision = gate.check_request(authed(gate, c), peer(PBX), 2.0)
    assert decision.status == 401
    assert all("stale=true" in v for _, v in decision.headers)
    assert gate.counters["auth_stale"] == 1 and gate.counters["auth_failures"] == 0
    # The same old nonce with a wrong password is a plain failure: stale needs the password.
    bad = gate.check_request(authed(gate, c, password="wrong"), peer(PBX), 3.0)
    assert bad.status == 403


def test_replayed_nc_is_refused():
    gate, _ = make_gate()
    req = authed(gate, challenge(gate))
    assert gate.check_request(req, peer(PBX), 1.0).allowed
    replay = request(headers=[("Authorization", req.get("authorization"))])
    decision = gate.check_request(replay, peer(PBX), 2.0)
    assert decision.status == 401 and "stale=true" in decision.headers[0][1]


def test_credentials_computed_for_another_uri_are_not_accepted():
    gate, _ = make_gate()
    name, value = answer(challenge(gate).headers, uri="sip:other@192.0.2.10")
    decision = gate.check_request(request(headers=[(name, value)]), peer(PBX), 1.0)
    assert decision.status == 401 and "stale" not in decision.headers[0][1]
    assert gate.counters["auth_failures"] == 1


def test_host_uri_check_takes_sipps_form():
    gate, _ = make_gate(uri_check="host")
    name, value = answer(challenge(gate).headers, uri="sip:192.0.2.10:5060")
    assert gate.check_request(request(headers=[(name, value)]), peer(PBX), 1.0).allowed
    strict, _ = make_gate()
    name, value = answer(challenge(strict).headers, uri="sip:192.0.2.10:5060")
    assert not strict.check_request(request(headers=[(name, value)]), peer(PBX), 1.0).allowed


def test_malformed_credentials_get_400():
    gate, _ = make_gate()
    decision = gate.check_request(
        request(headers=[("Authorization", 'Digest username="x", realm=')]), peer(PBX), 1.0
    )
    assert decision.status == 400
    assert gate.counters["auth_malformed"] == 1


def test_proxy_mode_uses_407_and_proxy_authorization():
    gate, _ = make_gate(proxy_challenge=True)
    decision = gate.check_request(request(), peer(PBX), 0.0)
    assert decision.status == 407
    assert {n for n, _ in decision.headers} == {"Proxy-Authenticate"}
    name, value = answer(decision.headers)
    assert name == "Proxy-Authorization"
    assert gate.check_request(request(headers=[(name, value)]), peer(PBX), 1.0).allowed
    # A WWW-style Authorization is not what a proxy reads: challenged again.
    assert (
        gate.check_request(request(headers=[("Authorization", value)]), peer(PBX), 1.0).status
        == 407
    )


def test_every_method_is_challenged_unless_exempted():
    gate, _ = make_gate()
    assert gate.check_request(request("OPTIONS"), peer(PBX), 0.0).status == 401
    assert gate.check_request(request("MESSAGE"), peer(PBX), 0.0).status == 401
    open_options, _ = make_gate(unauthenticated_methods=frozenset({"OPTIONS"}))
    assert open_options.check_request(request("OPTIONS"), peer(PBX), 0.0).allowed
    assert open_options.check_request(request("INVITE"), peer(PBX), 0.0).status == 401


def test_auth_off_lets_everything_through():
    gate, _ = make_gate(auth_required=False)
    assert gate.check_request(request(), peer(OTHER), 0.0).allowed


def test_in_dialog_requests_of_a_known_dialog_are_not_challenged():
    gate, _ = make_gate()
    known = request("BYE", to_tag="abc", call_id="known")
    gate.bind(dialogs=lambda r: object() if r.call_id == "known" else None)
    assert gate.check_request(known, peer(PBX), 0.0).allowed
    assert gate.counters["in_dialog_allowed"] == 1
    stranger = request("BYE", to_tag="abc", call_id="guessed")
    assert gate.check_request(stranger, peer(PBX), 0.0).status == 401


# -- per-credential addresses and scope ---------------------------------------------------------


def test_a_credential_used_from_outside_its_networks_fails_like_a_wrong_password():
    gate, _ = make_gate()
    decision = gate.check_request(authed(gate, challenge(gate, ip=OTHER)), peer(OTHER), 1.0)
    assert decision.status == 403 and decision.headers == ()
    assert gate.counters["auth_failures"] == 1
    v6 = gate.check_request(
        authed(gate, challenge(gate, ip="2001:db8::5")), peer("2001:db8::5"), 1.0
    )
    assert v6.allowed


def scoped_gate(**scope) -> SecurityGate:
    cred = StoredCredential(
        id="cfg_1",
        username="scoped",
        realm="sipua",
        ha1=hash_password("scoped", "sipua", "pw"),
        **scope,
    )
    gate = SecurityGate(
        SecurityPolicy(auth_required=True, overload_lag=0),
        directory(cred),
        secret=b"k" * 32,
        wall_clock=Clock(),
    )
    sessions = {
        SESSION: FakeSession(SESSION, metadata={"organization": "acme"}),
        "sess_01J0Z6Q4D5N4W8R9M3S2T1V0ZZ": FakeSession("sess_01J0Z6Q4D5N4W8R9M3S2T1V0ZZ"),
    }
    gate.bind(sessions=lambda user: sessions.get(user.removeprefix("session_")))
    return gate


@pytest.mark.parametrize("scope", [{"session_id": SESSION}, {"organization": "acme"}])
def test_scoped_credentials_reach_only_their_sessions(scope):
    gate = scoped_gate(**scope)
    ok = authed(gate, challenge(gate), username="scoped", password="pw")
    assert gate.check_request(ok, peer(PBX), 1.0).allowed
    for target in (
        "sip:session_sess_01J0Z6Q4D5N4W8R9M3S2T1V0ZZ@192.0.2.10",
        "sip:nosuch@192.0.2.10",
    ):
        c = challenge(gate, request(uri=target))
        refused = gate.check_request(
            authed(gate, c, username="scoped", password="pw", uri=target), peer(PBX), 1.0
        )
        assert refused.status == 403  # the same answer as a wrong password


# -- bans after failures -------------------------------------------------------------------------


def test_failures_ban_the_source_and_the_good_password_waits_for_the_ban_to_end():
    gate, clock = make_gate(
        max_auth_failures=3, failure_window=60, ban_time=30, ban_action="reject"
    )
    now = 0.0
    for _ in range(3):
        bad = authed(gate, challenge(gate, now=now), password="guess")
        assert gate.check_request(bad, peer(PBX), now).status == 403
        now += 1
    assert gate.counters["bans"] == 1
    # Banned: even the right password is refused, before any digest work.
    good = authed(gate, challenge_unchecked(gate))
    assert gate.check_request(good, peer(PBX), now).status == 403
    assert gate.check_request(request(), peer(PBX), now).status == 403  # not even a challenge
    assert gate.counters["banned_refused"] == 2
    assert gate.admit(PBX, "udp", now) is True  # reject mode answers, it does not drop
    # Another source is not affected.
    assert gate.check_request(request(), peer(OTHER), now).status == 401
    # Just before the end of the ban: still refused. At its end: the good password works.
    ban_end = 2.0 + 30
    assert (
        gate.check_request(
            authed(gate, challenge_unchecked(gate)), peer(PBX), ban_end - 0.01
        ).status
        == 403
    )
    late = authed(gate, challenge(gate, now=ban_end), password="correct horse")
    assert gate.check_request(late, peer(PBX), ban_end).allowed


def challenge_unchecked(gate: SecurityGate) -> Decision:
    """A challenge as a fresh source would get it (the banned source gets none)."""
    return gate.check_request(request(), peer("192.0.2.200"), 0.0)


def test_drop_mode_bans_drop_at_admit_and_screen():
    gate, _ = make_gate(max_auth_failures=2, ban_time=10)  # ban_action defaults to drop
    for t in (0.0, 1.0):
        gate.check_request(authed(gate, challenge(gate, now=t), password="x"), peer(PBX), t)
    assert gate.admit(PBX, "udp", 2.0) is False
    assert gate.admit(PBX, "tcp", 2.0) is False
    assert gate.screen(request(), peer(PBX, "tcp"), 2.0) is False
    assert gate.check_request(request(), peer(PBX), 2.0).drop
    assert gate.admit(PBX, "udp", 11.0) is True


def test_failures_outside_the_window_do_not_ban():
    gate, _ = make_gate(max_auth_failures=3, failure_window=10, ban_time=30)
    for t in (0.0, 6.0, 12.0, 18.0):
        gate.check_request(authed(gate, challenge(gate, now=t), password="x"), peer(PBX), t)
    assert gate.counters["bans"] == 0 and gate.admit(PBX, "udp", 19.0)


def test_lifting_a_ban():
    gate, _ = make_gate(max_auth_failures=1, ban_time=100)
    gate.check_request(authed(gate, challenge(gate), password="x"), peer(PBX), 0.0)
    assert not gate.admit(PBX, "udp", 1.0)
    assert gate.lift_ban(PBX) and gate.admit(PBX, "udp", 1.0)
    status = gate.status(1.0)
    assert status["bans"] == [] and status["counters"]["bans"] == 1


# -- allowlist ---------------------------------------------------------------------------------


def test_global_allowlist_reject_mode():
    gate, _ = make_gate(auth_required=False, allowlist=AddressList(["10.0.0.0/8", "2001:db8::/32"]))
    assert gate.admit(OTHER, "udp", 0.0)  # answered 403 below rather than dropped
    assert gate.check_request(request(), peer(OTHER), 0.0).status == 403
    assert not gate.admit(OTHER, "tcp", 0.0) and not gate.admit(OTHER, "tls", 0.0)
    assert gate.admit("10.9.8.7", "tcp", 0.0)
    assert gate.check_request(request(), peer("10.9.8.7"), 0.0).allowed
    assert gate.check_request(request(), peer("2001:db8:1::1"), 0.0).allowed
    assert gate.check_request(request(), peer("::ffff:10.1.1.1"), 0.0).allowed
    assert gate.check_request(request(), peer("2001:db9::1"), 0.0).status == 403


def test_global_allowlist_drop_mode():
    gate, _ = make_gate(
        auth_required=False, allowlist=AddressList(["10.0.0.0/8"]), allowlist_action="drop"
    )
    assert not gate.admit(OTHER, "udp", 0.0)
    assert not gate.screen(request(), peer(OTHER, "tcp"), 0.0)
    assert gate.check_request(request(), peer(OTHER), 0.0).drop
    assert gate.counters["allowlist_refused"] == 3


# -- scanners, rates, limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent", ["friendly-scanner", "sipvicious 0.3", "SIPCLI/v1.8", "VaxSIPUserAgent/3.1"]
)
def test_scanners_are_dropped_and_banned(agent):
    gate, _ = make_gate(auth_required=False)
    assert (
        gate.screen(request("OPTIONS", headers=[("User-Agent", agent)]), peer(OTHER), 0.0) is False
    )
    assert gate.counters["scanners_dropped"] == 1
    assert not gate.admit(OTHER, "udp", 1.0)  # banned for ban_time
    assert gate.screen(
        request("OPTIONS", headers=[("User-Agent", "Asterisk PBX 20")]), peer(PBX), 1.0
    )


def test_scanner_detection_can_be_disabled():
    gate, _ = make_gate(auth_required=False, scanner_user_agents=())
    assert gate.screen(
        request("OPTIONS", headers=[("User-Agent", "friendly-scanner")]), peer(OTHER), 0.0
    )


def test_options_and_register_floods_are_rate_limited_per_source():
    gate, _ = make_gate(auth_required=False, scan_requests_per_second=10, scan_request_burst=20)
    passed = sum(gate.screen(request("OPTIONS"), peer(OTHER), 0.0) for _ in range(100))
    assert passed == 20
    assert gate.counters["rate_limited"] == 80
    # INVITEs and in-dialog requests are not in this budget; other sources have their own.
    assert gate.screen(request("INVITE"), peer(OTHER), 0.0)
    assert gate.screen(request("OPTIONS", to_tag="t"), peer(OTHER), 0.0)
    assert gate.screen(request("REGISTER"), peer(PBX), 0.0)
    # Refilled at the configured rate.
    assert sum(gate.screen(request("OPTIONS"), peer(OTHER), 1.0) for _ in range(50)) == 10


def test_general_request_rate():
    gate, _ = make_gate(auth_required=False, requests_per_second=100, request_burst=50)
    assert sum(gate.screen(request("INVITE"), peer(OTHER), 0.0) for _ in range(80)) == 50


def test_transactions_per_source_get_503_with_retry_after():
    gate, _ = make_gate(
        auth_required=False, max_transactions_per_source=5, transaction_window=32, retry_after=7
    )
    statuses = [gate.check_request(request(), peer(OTHER), 0.0).status for _ in range(8)]
    assert statuses == [0] * 5 + [503] * 3
    refused = gate.check_request(request(), peer(OTHER), 0.0)
    assert ("Retry-After", "7") in refused.headers
    assert gate.check_request(request(), peer(PBX), 0.0).allowed
    assert gate.check_request(request(), peer(OTHER), 33.0).allowed  # the window moved on


def test_too_many_headers_get_400():
    gate, _ = make_gate(auth_required=False, max_headers=20)
    many = request("OPTIONS", headers=[(f"X-H{i}", "v") for i in range(30)])
    decision = gate.check_request(many, peer(OTHER), 0.0)
    assert decision.status == 400 and gate.counters["too_many_headers"] == 1
    assert gate.check_request(request("OPTIONS"), peer(OTHER), 0.0).allowed


def test_global_transaction_count_gives_503():
    gate, _ = make_gate(auth_required=False, max_transactions=10)
    alive = {"n": 5}
    gate.bind(transactions=lambda: alive["n"])
    assert gate.check_request(request(), peer(OTHER), 0.0).allowed
    alive["n"] = 11
    refused = gate.check_request(request(), peer(OTHER), 0.0)
    assert refused.status == 503 and ("Retry-After", "5") in refused.headers
    alive["n"] = 3
    assert gate.check_request(request(), peer(OTHER), 0.0).allowed  # recovers by itself


def test_loop_lag_gives_503_and_recovers():
    gate, _ = make_gate(auth_required=False, overload_lag=0.2)
    monitor = gate.monitor
    assert monitor is not None
    monitor.observe(0.3, now=10.0)  # the loop woke 300 ms late: smoothed 0.15
    assert gate.check_request(request(), peer(OTHER), 10.0).allowed  # one spike is tolerated
    monitor.observe(0.5, now=10.5)  # and then 500 ms: it persists
    refused = gate.check_request(request(), peer(OTHER), 10.5)
    assert refused.status == 503 and any(n == "Retry-After" for n, _ in refused.headers)
    for t in (11.0, 11.05, 11.1):
        monitor.observe(0.001, now=t)
    assert gate.check_request(request(), peer(OTHER), 11.1).allowed
    assert gate.counters["overload_refused"] == 1


def test_overload_refuses_new_requests_only_and_reports_the_retry_after_to_shed_with():
    gate, _ = make_gate(auth_required=False, overload_queue_delay=0.2, retry_after=9)
    gate.monitor = LoopLagMonitor(30.0, queue_threshold=0.2)  # no loop: queue delay alone
    assert gate.observe_queue_delay(0.01, 1.0) is None
    assert gate.observe_queue_delay(1.0, 1.1) == 9  # waited 1 s: shed, Retry-After 9
    refused = gate.check_request(request(), peer(OTHER), 1.1)
    assert refused.status == 503 and ("Retry-After", "9") in refused.headers
    bye = request("BYE", to_tag="uas-tag")  # in a dialog: a call already paid for
    assert gate.check_request(bye, peer(OTHER), 1.1).allowed
    assert gate.counters["overload_refused"] == 1


def test_per_source_transaction_limit_still_counts_in_dialog_requests():
    gate, _ = make_gate(auth_required=False, max_transactions_per_source=2)
    for _ in range(2):
        assert gate.check_request(request("BYE", to_tag="t"), peer(OTHER), 1.0).allowed
    assert gate.check_request(request("BYE", to_tag="t"), peer(OTHER), 1.0).status == 503


# -- TLS policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sips_request_uri_needs_tls(transport):
    gate, _ = make_gate(auth_required=False)
    sips = request("INVITE", "sips:session_x@192.0.2.10", transport=transport.upper())
    decision = gate.check_request(sips, peer(OTHER, transport), 0.0)
    assert decision.status == 416
    assert gate.check_request(sips, peer(OTHER, "tls"), 0.0).allowed


def test_a_session_that_requires_tls_and_srtp_refuses_other_transports():
    from types import SimpleNamespace

    gate, _ = make_gate(auth_required=False)
    provider = SimpleNamespace(
        type="sip", transport="tls", srtp=SimpleNamespace(enabled="required")
    )
    relaxed = SimpleNamespace(type="sip", transport="tls", srtp=SimpleNamespace(enabled="optional"))
    sessions = {
        "strict": FakeSession("strict", provider=provider),
        "relaxed": FakeSession("relaxed", provider=relaxed),
    }
    gate.bind(sessions=lambda user: sessions.get(user.removeprefix("session_")))
    strict_uri = "sip:session_strict@192.0.2.10"
    for transport in ("udp", "tcp"):
        decision = gate.check_request(request(uri=strict_uri), peer(OTHER, transport), 0.0)
        assert decision.status == 480
        assert any(n == "Warning" and v.startswith("381 ") for n, v in decision.headers)
    assert gate.check_request(request(uri=strict_uri), peer(OTHER, "tls"), 0.0).allowed
    assert gate.check_request(
        request(uri="sip:session_relaxed@192.0.2.10"), peer(OTHER), 0.0
    ).allowed
    assert gate.counters["tls_required_refused"] == 2
